//! The rooms callrec follows on one Janus server: each room's publishers (its participants,
//! with the streams they publish), and where callrec's two handles in the room stand. Plain
//! data with bounds; the wire format and the requests are the adapter's business.
//!
//! Per room, callrec has a *follower* handle (a publisher that never publishes, to hear of
//! publishers coming and going) and, while the room is recorded, a *subscriber* handle (one
//! multistream subscription carrying every publisher's streams). What the subscription has
//! asked for is kept per `(feed, mid)`, so a publisher that adds a stream later, or publishes
//! again after stopping, is subscribed to again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::messages::{FeedRef, JanusId};

/// Rooms followed at once; further rooms in a listing are ignored (and logged).
pub const MAX_ROOMS: usize = 256;
/// Publishers kept per room; further ones are not recorded (and logged).
pub const MAX_PUBLISHERS: usize = 128;
/// Streams kept per publisher.
pub const MAX_STREAMS_PER_PUBLISHER: usize = 16;
/// Longest display name or description kept, in characters; longer ones are cut.
pub const MAX_TEXT: usize = 256;
/// Longest string id (room, feed) accepted; a longer one is ignored.
pub const MAX_ID_LEN: usize = 128;

/// A display name or description, cut to [`MAX_TEXT`] characters.
pub fn cut(text: Option<String>) -> Option<String> {
    text.map(|t| match t.char_indices().nth(MAX_TEXT) {
        Some((end, _)) => t[..end].to_owned(),
        None => t,
    })
}

/// True for an id callrec can use as a name and a map key.
pub fn id_ok(id: &JanusId) -> bool {
    !matches!(id, JanusId::Str(s) if s.is_empty()) && id.text_len() <= MAX_ID_LEN
}

/// A publisher in a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Publisher {
    /// Their feed id.
    pub id: JanusId,
    /// Their display name, cut (untrusted).
    pub display: Option<String>,
    /// The mids of the streams they publish now (disabled ones left out).
    pub mids: BTreeSet<String>,
}

/// Where the follower handle stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Follower {
    /// Not in the room: join once `retry_at` has passed.
    Out {
        /// When to try.
        retry_at: Instant,
    },
    /// Attaching (no handle yet) or joining.
    Joining {
        /// The handle, once attached.
        handle: Option<u64>,
    },
    /// In the room.
    In {
        /// The handle.
        handle: u64,
        /// Our private id, which the subscriber gives for rooms with `require_pvtid`.
        private_id: Option<u64>,
    },
}

/// Where the subscriber handle stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Subscriber {
    /// The room is not recorded.
    None,
    /// Attaching (no handle yet) or joining.
    Starting {
        /// The handle, once attached.
        handle: Option<u64>,
        /// Joins sent (a join naming a feed that just left fails, and is sent again).
        attempts: u8,
        /// The `(feed, mid)` pairs the join asked for.
        asked: BTreeSet<(String, String)>,
    },
    /// The subscription exists; its session id is the handle's id.
    Active {
        /// The handle.
        handle: u64,
        /// The `(feed, mid)` pairs asked for, or granted in a streams table.
        asked: BTreeSet<(String, String)>,
    },
}

impl Subscriber {
    /// The subscriber's handle, if it has one.
    pub fn handle(&self) -> Option<u64> {
        match *self {
            Subscriber::Starting { handle, .. } => handle,
            Subscriber::Active { handle, .. } => Some(handle),
            Subscriber::None => None,
        }
    }
}

/// One room.
#[derive(Debug)]
pub struct Room {
    /// Its id.
    pub id: JanusId,
    /// Its description, cut (untrusted).
    pub description: Option<String>,
    /// The follower handle.
    pub follower: Follower,
    /// The subscriber handle.
    pub subscriber: Subscriber,
    /// `RoomAdded` was sent for it.
    pub announced: bool,
    publishers: BTreeMap<String, Publisher>,
}

/// What adding a publisher did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// A new participant.
    New,
    /// Already known; its streams were brought up to date.
    Known,
    /// The room is at [`MAX_PUBLISHERS`]; not kept.
    Full,
}

impl Room {
    /// A room not followed yet, to join from `retry_at`.
    fn new(id: JanusId, retry_at: Instant) -> Self {
        Room {
            id,
            description: None,
            follower: Follower::Out { retry_at },
            subscriber: Subscriber::None,
            announced: false,
            publishers: BTreeMap::new(),
        }
    }

    /// The room's key: its id as text.
    pub fn key(&self) -> String {
        self.id.to_string()
    }

    /// The publishers, in feed-id text order.
    #[cfg(test)]
    pub fn publishers(&self) -> impl Iterator<Item = &Publisher> {
        self.publishers.values()
    }

    /// True if anyone publishes.
    pub fn has_publishers(&self) -> bool {
        !self.publishers.is_empty()
    }

    /// A publisher, by feed id text.
    #[cfg(test)]
    pub fn publisher(&self, feed: &str) -> Option<&Publisher> {
        self.publishers.get(feed)
    }

    /// Adds a publisher, or brings a known one's display name and streams up to date.
    pub fn add_publisher(&mut self, publisher: Publisher) -> Added {
        let key = publisher.id.to_string();
        if let Some(known) = self.publishers.get_mut(&key) {
            *known = publisher;
            self.forget_stale_asks(&key);
            return Added::Known;
        }
        if self.publishers.len() >= MAX_PUBLISHERS {
            return Added::Full;
        }
        self.publishers.insert(key, publisher);
        Added::New
    }

    /// Removes a publisher (they stopped publishing or left); `None` if unknown, which makes
    /// Janus's repeated notices harmless.
    pub fn remove_publisher(&mut self, feed: &str) -> Option<Publisher> {
        let gone = self.publishers.remove(feed)?;
        // Janus drops their streams from the subscription by itself (autoupdate); if they
        // publish again, they are asked for again.
        if let Subscriber::Active { asked, .. } = &mut self.subscriber {
            asked.retain(|(f, _)| f != feed);
        }
        Some(gone)
    }

    /// Makes the publishers exactly `current` (a fresh `joined` list): returns those that
    /// are new and those that are gone.
    pub fn reconcile(&mut self, current: Vec<Publisher>) -> (Vec<Publisher>, Vec<Publisher>) {
        let keep: BTreeSet<String> = current.iter().map(|p| p.id.to_string()).collect();
        let gone_keys: Vec<String> = self
            .publishers
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        let gone = gone_keys
            .iter()
            .filter_map(|k| self.remove_publisher(k))
            .collect();
        let mut added = vec![];
        for p in current {
            if self.add_publisher(p.clone()) == Added::New {
                added.push(p);
            }
        }
        (added, gone)
    }

    /// Removes every publisher, returning them (the room is gone).
    pub fn clear_publishers(&mut self) -> Vec<Publisher> {
        self.subscriber_asks_clear();
        std::mem::take(&mut self.publishers).into_values().collect()
    }

    /// The streams published now that the subscription has not asked for, as `subscribe`
    /// entries; they count as asked from now on.
    pub fn take_unasked(&mut self) -> Vec<FeedRef> {
        let Subscriber::Active { asked, .. } = &mut self.subscriber else {
            return vec![];
        };
        let mut refs = vec![];
        for p in self.publishers.values() {
            let feed = p.id.to_string();
            for mid in &p.mids {
                if asked.insert((feed.clone(), mid.clone())) {
                    refs.push(FeedRef {
                        feed: p.id.clone(),
                        mid: Some(mid.clone()),
                    });
                }
            }
        }
        refs
    }

    /// Every stream published now, as the `streams` of a subscriber `join`, with the pairs
    /// they stand for.
    pub fn all_streams(&self) -> (Vec<FeedRef>, BTreeSet<(String, String)>) {
        let mut refs = vec![];
        let mut pairs = BTreeSet::new();
        for p in self.publishers.values() {
            for mid in &p.mids {
                refs.push(FeedRef {
                    feed: p.id.clone(),
                    mid: Some(mid.clone()),
                });
                pairs.insert((p.id.to_string(), mid.clone()));
            }
        }
        (refs, pairs)
    }

    /// Forgets asks for `(feed, mid)` pairs (a `subscribe` Janus refused), so they are asked
    /// for again later.
    pub fn unask(&mut self, refs: &[FeedRef]) {
        if let Subscriber::Active { asked, .. } = &mut self.subscriber {
            for r in refs {
                if let Some(mid) = &r.mid {
                    asked.remove(&(r.feed.to_string(), mid.clone()));
                }
            }
        }
    }

    /// The follower's handle, if attached.
    pub fn follower_handle(&self) -> Option<u64> {
        match self.follower {
            Follower::Joining { handle } => handle,
            Follower::In { handle, .. } => Some(handle),
            Follower::Out { .. } => None,
        }
    }

    /// The subscriber's handle, if attached.
    pub fn subscriber_handle(&self) -> Option<u64> {
        self.subscriber.handle()
    }

    /// A stream the publisher no longer publishes (disabled, removed) is forgotten as asked,
    /// so it is asked for again if it comes back.
    fn forget_stale_asks(&mut self, feed: &str) {
        let mids = match self.publishers.get(feed) {
            Some(p) => p.mids.clone(),
            None => BTreeSet::new(),
        };
        if let Subscriber::Active { asked, .. } = &mut self.subscriber {
            asked.retain(|(f, m)| f != feed || mids.contains(m));
        }
    }

    /// Forgets every ask (nobody publishes any more).
    fn subscriber_asks_clear(&mut self) {
        if let Subscriber::Active { asked, .. } = &mut self.subscriber {
            asked.clear();
        }
    }
}

/// The rooms followed, by key.
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: BTreeMap<String, Room>,
}

impl Rooms {
    /// The room, adding it (not followed yet, to join from `now`) if new. `None` if it is
    /// new and [`MAX_ROOMS`] are followed already.
    pub fn entry(&mut self, id: &JanusId, now: Instant) -> Option<&mut Room> {
        let key = id.to_string();
        if !self.rooms.contains_key(&key) && self.rooms.len() >= MAX_ROOMS {
            return None;
        }
        Some(
            self.rooms
                .entry(key)
                .or_insert_with(|| Room::new(id.clone(), now)),
        )
    }

    /// A room by key.
    pub fn get(&self, key: &str) -> Option<&Room> {
        self.rooms.get(key)
    }

    /// A room by key, to change it.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Room> {
        self.rooms.get_mut(key)
    }

    /// Stops following a room.
    pub fn remove(&mut self, key: &str) -> Option<Room> {
        self.rooms.remove(key)
    }

    /// The keys, in order.
    pub fn keys(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// How many rooms are followed.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Forgets every room.
    pub fn clear(&mut self) {
        self.rooms.clear();
    }

    /// The room whose subscriber handle is `handle`.
    pub fn by_subscriber(&self, handle: u64) -> Option<&Room> {
        self.rooms
            .values()
            .find(|r| r.subscriber_handle() == Some(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher(id: u64, mids: &[&str]) -> Publisher {
        Publisher {
            id: JanusId::Num(id),
            display: Some(format!("p{id}")),
            mids: mids.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn room() -> Room {
        Room::new(JanusId::Num(1234), Instant::now())
    }

    fn active(room: &mut Room) {
        let (_, asked) = room.all_streams();
        room.subscriber = Subscriber::Active { handle: 7, asked };
    }

    #[test]
    fn text_is_cut_on_characters() {
        assert_eq!(cut(None), None);
        assert_eq!(cut(Some("short".into())).as_deref(), Some("short"));
        let long = "é".repeat(MAX_TEXT + 10);
        let cut = cut(Some(long)).unwrap();
        assert_eq!(cut.chars().count(), MAX_TEXT);
    }

    #[test]
    fn ids_are_bounded() {
        assert!(id_ok(&JanusId::Num(0)));
        assert!(id_ok(&JanusId::Str("room-a".into())));
        assert!(!id_ok(&JanusId::Str(String::new())));
        assert!(!id_ok(&JanusId::Str("x".repeat(MAX_ID_LEN + 1))));
    }

    #[test]
    fn publishers_come_and_go_idempotently() {
        let mut r = room();
        assert_eq!(r.add_publisher(publisher(1, &["a"])), Added::New);
        assert_eq!(r.add_publisher(publisher(1, &["a", "v"])), Added::Known);
        assert_eq!(r.publisher("1").unwrap().mids.len(), 2);
        assert!(r.remove_publisher("1").is_some());
        // Janus sends `unpublished` twice, then `leaving`: only the first counts.
        assert!(r.remove_publisher("1").is_none());
        assert!(!r.has_publishers());
    }

    #[test]
    fn publishers_per_room_are_bounded() {
        let mut r = room();
        for i in 0..MAX_PUBLISHERS as u64 {
            assert_eq!(r.add_publisher(publisher(i, &["a"])), Added::New);
        }
        assert_eq!(r.add_publisher(publisher(9999, &["a"])), Added::Full);
        assert_eq!(r.add_publisher(publisher(0, &["a"])), Added::Known);
    }

    #[test]
    fn reconcile_reports_the_difference() {
        let mut r = room();
        r.add_publisher(publisher(1, &["a"]));
        r.add_publisher(publisher(2, &["a"]));
        let (added, gone) = r.reconcile(vec![publisher(2, &["a"]), publisher(3, &["a"])]);
        assert_eq!(added, vec![publisher(3, &["a"])]);
        assert_eq!(gone, vec![publisher(1, &["a"])]);
        assert_eq!(r.publishers().count(), 2);
    }

    #[test]
    fn the_subscription_asks_for_each_stream_once() {
        let mut r = room();
        r.add_publisher(publisher(1, &["audio1", "video0"]));
        let (refs, _) = r.all_streams();
        assert_eq!(refs.len(), 2);
        active(&mut r);
        assert!(r.take_unasked().is_empty(), "all asked at join");
        // A new publisher, and a known one adding a stream (a screen share).
        r.add_publisher(publisher(2, &["a"]));
        r.add_publisher(publisher(1, &["audio1", "video0", "screen"]));
        let refs = r.take_unasked();
        let names: Vec<String> = refs
            .iter()
            .map(|f| format!("{}/{}", f.feed, f.mid.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(names, vec!["1/screen", "2/a"]);
        assert!(r.take_unasked().is_empty());
        // Refused asks are asked again.
        r.unask(&refs);
        assert_eq!(r.take_unasked().len(), 2);
    }

    #[test]
    fn a_republished_feed_is_asked_for_again() {
        let mut r = room();
        r.add_publisher(publisher(1, &["a", "v"]));
        active(&mut r);
        r.remove_publisher("1");
        r.add_publisher(publisher(1, &["a", "v"]));
        assert_eq!(r.take_unasked().len(), 2);
        // A disabled stream is forgotten, so its return is asked for.
        r.add_publisher(publisher(1, &["a"]));
        r.add_publisher(publisher(1, &["a", "v"]));
        assert_eq!(r.take_unasked().len(), 1);
    }

    #[test]
    fn rooms_are_bounded() {
        let mut rooms = Rooms::default();
        let now = Instant::now();
        for i in 0..MAX_ROOMS as u64 {
            assert!(rooms.entry(&JanusId::Num(i), now).is_some());
        }
        assert!(rooms.entry(&JanusId::Num(99_999), now).is_none());
        assert!(
            rooms.entry(&JanusId::Num(0), now).is_some(),
            "known rooms stay"
        );
        assert_eq!(rooms.len(), MAX_ROOMS);
    }
}
