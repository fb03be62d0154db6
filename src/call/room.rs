//! Rooms: one session that carries every publisher of a room (an SFU's multistream
//! subscription, such as Janus VideoRoom's).
//!
//! The room's session is a *carrier*: it owns the webrtcbin, answers the server's offers and
//! builds a chain per m-line. Each publisher the supervisor announces
//! ([`super::CallCmd::ParticipantAdded`]) becomes a *member* session once the server's m-line
//! table gives them tracks: a participant like any other (files, manifest entry, mixes), fed
//! from the carrier's track tees instead of a webrtcbin of its own.
//!
//! The table comes before each offer that changes it, and the members follow it once that
//! offer is answered. An m-line can pass from one publisher to another without a new pad
//! (the server reuses m-lines), so a member whose m-line goes to someone else ends there, and
//! the new owner is fed from the same tee with a keyframe request. The supervisor's
//! `ParticipantRemoved` is what ends a member otherwise (the server's table may go on listing
//! a departed publisher's m-lines), or the media timeout; a member that fell silent is
//! recorded again, into new files, when its media returns.

use std::collections::BTreeMap;
use std::time::Instant;

use gst::prelude::*;
use tracing::{debug, info};

use super::incoming;
use super::negotiation::display_label;
use super::session::{Role, Session, SessionState, Track};
use super::Call;
use crate::names;
use crate::signalling::{MediaKind, ParticipantInfo, RemoteStream};

/// What a carrier knows of its room.
#[derive(Debug, Default)]
pub(crate) struct RoomLink {
    /// The latest m-line table from the server.
    pub streams: Vec<RemoteStream>,
    /// Each participant's member session key, by participant id.
    pub members: BTreeMap<String, String>,
    /// Participants whose member ended, and when they may have one again.
    pub ended: BTreeMap<String, Ended>,
    /// Members created so far, for unique session keys.
    created: u64,
}

/// Why a participant of a room has no member session for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Left, failed, or their m-line went to someone else: not until they publish again.
    Gone,
    /// Their media stopped at this running time (ns): again once it comes back.
    Silent(u64),
}

impl RoomLink {
    /// The participant the table gives an m-line to (active audio or video m-lines only).
    fn owner(&self, mline: u32) -> Option<&str> {
        self.streams
            .iter()
            .find(|s| s.mline == mline && s.active)
            .filter(|s| matches!(s.kind, MediaKind::Audio | MediaKind::Video))
            .and_then(|s| s.participant_id.as_deref())
    }

    /// Each participant's active audio and video m-lines, by participant id.
    fn mlines_by_participant(&self) -> BTreeMap<String, Vec<u32>> {
        let mut by = BTreeMap::<String, Vec<u32>>::new();
        for s in &self.streams {
            if let Some(owner) = self.owner(s.mline) {
                by.entry(owner.to_owned()).or_default().push(s.mline);
            }
        }
        by
    }
}

impl Call {
    /// A room's session has started on the server: a carrier with no files of its own.
    pub(super) fn start_room_session(
        &mut self,
        session_id: &str,
        room_id: &str,
    ) -> Result<(), String> {
        if self.sessions.contains_key(session_id) {
            return Err("duplicate session id".into());
        }
        self.next_output += 1;
        let element = format!("webrtc-room-{}", self.next_output);
        let pads = incoming::new_table(true);
        let webrtcbin = self.add_webrtcbin(&element, session_id, pads.clone())?;
        let name = format!("room-{}", names::safe_name(room_id));
        info!(call = %self.settings.name, session = %session_id, room = %name, "room session started");
        let mut session = Session::new(
            session_id,
            room_id,
            name.clone(),
            name,
            webrtcbin,
            None,
            Role::Carrier(RoomLink::default()),
        );
        session.pads = pads;
        self.sessions.insert(session_id.to_owned(), session);
        Ok(())
    }

    /// The room's m-line table for the next offer: kept until that offer is answered.
    pub(super) fn on_streams_changed(&mut self, session_id: &str, streams: Vec<RemoteStream>) {
        let table: Vec<String> = streams
            .iter()
            .map(|s| {
                format!(
                    "{}:{}{}",
                    s.mline,
                    s.participant_id.as_deref().unwrap_or("-"),
                    if s.active { "" } else { "(inactive)" }
                )
            })
            .collect();
        debug!(call = %self.settings.name, session = %session_id, ?table, "room's m-lines");
        if let Some(room) = self.room_mut(session_id) {
            room.streams = streams;
        }
    }

    /// A publisher in the room (again, if they published before: new files).
    pub(super) fn on_participant_added(&mut self, participant: ParticipantInfo) {
        let id = participant.id.clone();
        for carrier in self.carriers() {
            if let Some(member) = self.room_mut(&carrier).and_then(|r| r.members.remove(&id)) {
                self.end_session(&member, "published again");
            }
            if let Some(room) = self.room_mut(&carrier) {
                room.ended.remove(&id);
            }
        }
        debug!(call = %self.settings.name, participant = %id, "publisher announced");
        self.publishers.insert(id, participant);
        // Their tracks come with the server's next offer (see `sync_room`); a carrier that
        // already lists them (a publisher the call learnt of late) takes them now.
        for carrier in self.carriers() {
            self.sync_room(&carrier);
        }
    }

    /// A publisher stopped publishing or left: their files end.
    pub(super) fn on_participant_removed(&mut self, participant_id: &str, reason: &str) {
        self.publishers.remove(participant_id);
        for carrier in self.carriers() {
            let member = self
                .room_mut(&carrier)
                .and_then(|r| r.members.get(participant_id).cloned());
            if let Some(member) = member {
                self.end_session(&member, reason);
            }
        }
    }

    /// Brings a carrier's members in line with its table, once an offer is answered: members
    /// whose m-lines went elsewhere end, new publishers get a member, and members get the
    /// m-lines they gained.
    pub(super) fn sync_room(&mut self, carrier: &str) {
        let Some(session) = self.sessions.get(carrier) else {
            return;
        };
        let Role::Carrier(room) = &session.role else {
            return;
        };
        if !session.remote_set {
            return;
        }
        let wanted = room.mlines_by_participant();
        // Members whose m-lines now carry someone else, or nothing.
        let mut moved = vec![];
        for (participant, key) in &room.members {
            let Some(member) = self.sessions.get(key) else {
                continue;
            };
            let lost = member
                .offered
                .iter()
                .any(|t| room.owner(t.mline).is_some_and(|o| o != participant));
            let none_left = !wanted.contains_key(participant);
            if lost || none_left {
                moved.push((key.clone(), lost));
            }
        }
        for (key, lost) in moved {
            let reason = if lost {
                "their stream was given to another publisher"
            } else {
                "their streams ended"
            };
            self.end_session(&key, reason);
        }
        for (participant, mlines) in wanted {
            if !self.publishers.contains_key(&participant) {
                // Not announced (yet), or not to be recorded.
                continue;
            }
            let Some(room) = self.room_mut(carrier) else {
                return;
            };
            match room.members.get(&participant).cloned() {
                Some(member) => self.extend_member(carrier, &member, &mlines),
                None if !room.ended.contains_key(&participant) => {
                    if let Err(e) = self.create_member(carrier, &participant, &mlines) {
                        self.warn(format!("participant {participant}: cannot record: {e}"));
                    }
                }
                None => {}
            }
        }
    }

    /// A member session for a participant of a carrier's room, with outputs for its
    /// m-lines, fed at once from the tracks that already flow.
    fn create_member(
        &mut self,
        carrier: &str,
        participant: &str,
        mlines: &[u32],
    ) -> Result<(), String> {
        let info = self
            .publishers
            .get(participant)
            .cloned()
            .ok_or("not announced")?;
        let (webrtcbin, offered, serial) = {
            let session = self.sessions.get_mut(carrier).ok_or("session gone")?;
            let offered: Vec<_> = session
                .offered
                .iter()
                .filter(|t| mlines.contains(&t.mline))
                .cloned()
                .collect();
            let Role::Carrier(room) = &mut session.role else {
                return Err("not a room's session".into());
            };
            room.created += 1;
            (session.webrtcbin.clone(), offered, room.created)
        };
        let name = self.unique_name(names::participant_name(participant, &info.meta));
        let label = display_label(&info.meta).unwrap_or_else(|| name.clone());
        let key = format!("{carrier}/{serial}");
        let index = self.add_participant_entry(participant, &name, info.meta.clone(), carrier);
        info!(call = %self.settings.name, session = %carrier, participant = %name, mlines = ?mlines, "participant joined");
        let mut member = Session::new(
            &key,
            participant,
            name,
            label,
            webrtcbin,
            Some(index),
            Role::Member {
                carrier: carrier.to_owned(),
            },
        );
        member.offered = offered;
        member.state = SessionState::Connected;
        member.connected_at = Some(Instant::now());
        member.remote_set = true;
        self.sessions.insert(key.clone(), member);
        if let Some(room) = self.room_mut(carrier) {
            room.members.insert(participant.to_owned(), key.clone());
        }
        self.create_participant_outputs(&key);
        for &mline in mlines {
            self.give_track(carrier, &key, mline);
        }
        self.save_manifest();
        Ok(())
    }

    /// A member gained m-lines (a renegotiation added a stream of theirs): it expects them,
    /// and takes those that already flow.
    fn extend_member(&mut self, carrier: &str, member: &str, mlines: &[u32]) {
        let added: Vec<_> = {
            let Some(c) = self.sessions.get(carrier) else {
                return;
            };
            let Some(m) = self.sessions.get(member) else {
                return;
            };
            c.offered
                .iter()
                .filter(|t| mlines.contains(&t.mline))
                .filter(|t| !m.offered.iter().any(|o| o.mline == t.mline))
                .cloned()
                .collect()
        };
        if let Some(m) = self.sessions.get_mut(member) {
            m.offered.extend(added.iter().cloned());
        }
        for t in added {
            self.give_track(carrier, member, t.mline);
        }
    }

    /// Feeds a member from the carrier's chain for `mline`, if it exists and the member has
    /// not got it yet (the chain comes later otherwise, see [`Call::on_room_track`]).
    fn give_track(&mut self, carrier: &str, member: &str, mline: u32) {
        let Some(track) = self
            .sessions
            .get(carrier)
            .and_then(|c| c.tracks.get(&mline))
        else {
            return;
        };
        let (codec, chain) = (track.codec, track.chain.clone());
        if self
            .sessions
            .get(member)
            .is_none_or(|m| m.tracks.contains_key(&mline))
        {
            return;
        }
        self.on_track(member, mline, codec, chain);
    }

    /// The carrier built a chain for an m-line: it keeps it, and the m-line's member (if
    /// any) is fed from it.
    pub(super) fn on_room_track(
        &mut self,
        carrier: &str,
        mline: u32,
        codec: &'static super::media::Codec,
        chain: super::media::TrackChain,
    ) {
        let Some(session) = self.sessions.get_mut(carrier) else {
            return;
        };
        session.tracks.insert(
            mline,
            Track {
                kind: codec.kind,
                codec,
                chain,
                last_keyframe_request: None,
                layers: vec![],
                layer_count: 0,
            },
        );
        if let Some(member) = self.member_for(carrier, mline) {
            self.give_track(carrier, &member, mline);
        }
    }

    /// The member session an m-line of a carrier feeds now.
    pub(super) fn member_for(&self, carrier: &str, mline: u32) -> Option<String> {
        let Role::Carrier(room) = &self.sessions.get(carrier)?.role else {
            return None;
        };
        room.members.get(room.owner(mline)?).cloned()
    }

    /// A member session is over: the carrier forgets it, and the participant gets no new one
    /// until they publish again (see [`Call::mark_silent`] for media that stopped).
    pub(super) fn forget_member(&mut self, carrier: &str, participant: &str, member: &str) {
        let Some(room) = self.room_mut(carrier) else {
            return;
        };
        if room.members.get(participant).is_some_and(|m| m == member) {
            room.members.remove(participant);
        }
        room.ended.insert(participant.to_owned(), Ended::Gone);
    }

    /// A participant's member ended because their media stopped: they get a new one when it
    /// flows again.
    pub(super) fn mark_silent(&mut self, carrier: &str, participant: &str) {
        let now = self
            .pipeline
            .current_running_time()
            .map_or(0, |t| t.nseconds());
        if let Some(room) = self.room_mut(carrier) {
            room.ended
                .insert(participant.to_owned(), Ended::Silent(now));
        }
    }

    /// Members that fell silent and whose media flows again get new files.
    pub(super) fn revive_silent_members(&mut self) {
        for carrier in self.carriers() {
            let Some(session) = self.sessions.get(&carrier) else {
                continue;
            };
            let Role::Carrier(room) = &session.role else {
                continue;
            };
            let wanted = room.mlines_by_participant();
            let revived: Vec<String> = room
                .ended
                .iter()
                .filter_map(|(participant, ended)| match ended {
                    Ended::Silent(since) => Some((participant, *since)),
                    Ended::Gone => None,
                })
                .filter(|(participant, since)| {
                    wanted.get(*participant).is_some_and(|mlines| {
                        mlines.iter().any(|m| {
                            session.tracks.get(m).is_some_and(|t| {
                                t.chain
                                    .last_seen_ns
                                    .load(std::sync::atomic::Ordering::Relaxed)
                                    > *since
                            })
                        })
                    })
                })
                .map(|(participant, _)| participant.clone())
                .collect();
            if revived.is_empty() {
                continue;
            }
            if let Some(room) = self.room_mut(&carrier) {
                for participant in &revived {
                    room.ended.remove(participant);
                }
            }
            info!(call = %self.settings.name, participants = ?revived, "media is back; recording again");
            self.sync_room(&carrier);
        }
    }

    /// The members of a carrier, by session key.
    pub(super) fn members_of(&self, carrier: &str) -> Vec<String> {
        match self.sessions.get(carrier).map(|s| &s.role) {
            Some(Role::Carrier(room)) => room.members.values().cloned().collect(),
            _ => vec![],
        }
    }

    /// A carrier's connection is up: its members' media timeouts count from now.
    pub(super) fn room_connected(&mut self, carrier: &str) {
        for member in self.members_of(carrier) {
            if let Some(m) = self.sessions.get_mut(&member) {
                m.connected_at = Some(Instant::now());
            }
        }
    }

    fn carriers(&self) -> Vec<String> {
        self.sessions
            .values()
            .filter(|s| matches!(s.role, Role::Carrier(_)))
            .map(|s| s.id.clone())
            .collect()
    }

    fn room_mut(&mut self, carrier: &str) -> Option<&mut RoomLink> {
        match &mut self.sessions.get_mut(carrier)?.role {
            Role::Carrier(room) => Some(room),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(mline: u32, kind: MediaKind, active: bool, who: Option<&str>) -> RemoteStream {
        RemoteStream {
            mid: mline.to_string(),
            mline,
            kind,
            active,
            participant_id: who.map(str::to_owned),
            display: None,
            source_mid: None,
            codec: None,
        }
    }

    #[test]
    fn the_table_says_whose_each_mline_is() {
        let room = RoomLink {
            streams: vec![
                stream(0, MediaKind::Audio, true, Some("alice")),
                stream(1, MediaKind::Video, true, Some("alice")),
                stream(2, MediaKind::Audio, false, Some("bob")),
                stream(3, MediaKind::Data, true, Some("carol")),
                stream(4, MediaKind::Video, true, Some("bob")),
                stream(5, MediaKind::Video, true, None),
            ],
            ..Default::default()
        };
        assert_eq!(room.owner(1), Some("alice"));
        // Inactive m-lines and data channels carry no one.
        assert_eq!(room.owner(2), None);
        assert_eq!(room.owner(3), None);
        assert_eq!(room.owner(5), None);
        assert_eq!(room.owner(9), None);
        let by = room.mlines_by_participant();
        assert_eq!(by["alice"], vec![0, 1]);
        assert_eq!(by["bob"], vec![4]);
        assert!(!by.contains_key("carol"));
    }
}
