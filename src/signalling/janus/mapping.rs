//! How Janus's words become callrec's: a room is a call, a publisher (feed) a participant,
//! a subscription m-line a track. Every text is cut to a bound here, and kept untrusted.

use serde_json::json;

use super::messages::{self, JanusId, SubscriptionStream};
use super::rooms::{self, Publisher, Room, MAX_STREAMS_PER_PUBLISHER};
use crate::signalling::{MediaKind, ParticipantInfo, RemoteStream, RoomInfo};

/// m-lines kept from one subscription's streams table; Janus would need more than 100
/// publishers to go past it.
pub const MAX_STREAMS: usize = 512;

/// The publisher callrec keeps from Janus's listing: `None` for a placeholder (`dummy`) or
/// an id callrec cannot use. Data channels are left out: callrec records media only.
pub fn publisher(p: messages::Publisher) -> Option<Publisher> {
    if p.dummy || !rooms::id_ok(&p.id) {
        return None;
    }
    let mids = p
        .streams
        .into_iter()
        .filter(|s| !s.disabled && s.kind != "data")
        .filter_map(|s| s.mid)
        .filter(|m| m.len() <= rooms::MAX_ID_LEN)
        .take(MAX_STREAMS_PER_PUBLISHER)
        .collect();
    Some(Publisher {
        id: p.id,
        display: rooms::cut(p.display),
        mids,
    })
}

/// The room as callrec announces it.
pub fn room_info(source: &str, room: &Room) -> RoomInfo {
    RoomInfo {
        id: room.key(),
        source: source.to_owned(),
        description: room.description.clone(),
        meta: json!({
            "source": source,
            "room": room.id.to_json(),
            "description": room.description,
        }),
    }
}

/// A publisher as callrec announces it: the display name is their `name`, and the room and
/// feed ids are in the meta so the manifest can tell who they were on Janus.
pub fn participant(source: &str, room: &JanusId, p: &Publisher) -> ParticipantInfo {
    ParticipantInfo {
        id: p.id.to_string(),
        display: p.display.clone(),
        meta: json!({
            "source": source,
            "room": room.to_json(),
            "feed": p.id.to_json(),
            "name": p.display,
        }),
    }
}

/// A subscription's streams table as callrec's m-line table (at most [`MAX_STREAMS`]).
pub fn streams(table: Vec<SubscriptionStream>) -> Vec<RemoteStream> {
    table
        .into_iter()
        .take(MAX_STREAMS)
        .map(|s| RemoteStream {
            kind: MediaKind::from_name(&s.kind),
            mline: s.mindex,
            active: s.active && s.feed_id.is_some(),
            participant_id: s.feed_id.filter(rooms::id_ok).map(|id| id.to_string()),
            display: rooms::cut(s.feed_display),
            source_mid: s.feed_mid.filter(|m| m.len() <= rooms::MAX_ID_LEN),
            codec: s.codec.filter(|c| c.len() <= 32),
            mid: s.mid.chars().take(rooms::MAX_ID_LEN).collect(),
        })
        .collect()
}

/// The `(feed, mid)` pairs a streams table carries, to know what the subscription holds.
pub fn granted(table: &[SubscriptionStream]) -> Vec<(String, String)> {
    table
        .iter()
        .filter(|s| s.active)
        .filter_map(|s| Some((s.feed_id.as_ref()?.to_string(), s.feed_mid.clone()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(json: serde_json::Value) -> messages::Publisher {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn placeholders_data_and_disabled_streams_are_left_out() {
        assert!(publisher(listed(json!({"id": 1, "dummy": true}))).is_none());
        assert!(publisher(listed(json!({"id": ""}))).is_none());
        let p = publisher(listed(json!({"id": 5, "display": "Bob", "streams": [
            {"type": "video", "mid": "video0", "disabled": true},
            {"type": "audio", "mid": "audio1", "codec": "opus"},
            {"type": "data", "mid": "data2"},
        ]})))
        .unwrap();
        assert_eq!(p.mids.iter().collect::<Vec<_>>(), vec!["audio1"]);
    }

    #[test]
    fn participant_meta_names_room_and_feed() {
        let p = publisher(listed(json!({"id": 42, "display": "<b>Al"}))).unwrap();
        let info = participant("janus1", &JanusId::Num(1234), &p);
        assert_eq!(info.id, "42");
        assert_eq!(
            info.meta,
            json!({"source": "janus1", "room": 1234, "feed": 42, "name": "<b>Al"})
        );
        let s = participant("j", &JanusId::Str("r".into()), &p);
        assert_eq!(s.meta["room"], json!("r"));
    }
}
