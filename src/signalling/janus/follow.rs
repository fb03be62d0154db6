//! Following rooms: finding them (the configured list, or the plugin's `list`), joining
//! each as a publisher that never publishes, and turning what the follower hears into
//! rooms and participants. A room that goes ends its session and participants with it.

use tracing::{debug, warn};

use super::messages::{Body, JanusId, Join, VideoRoom};
use super::rooms::{self, Added, Follower, Subscriber};
use super::{mapping, Janus, Req, Role, RoomSelection, RELIST_EVERY};
use crate::signalling::SignalEvent;

impl Janus {
    /// Starts following a room (listed or configured) unless it is followed already.
    pub(super) fn add_room(&mut self, id: &JanusId) {
        if !rooms::id_ok(id) {
            debug!(source = %self.settings.source, "ignoring a room with an unusable id");
            return;
        }
        let now = self.now;
        let Some(room) = self.rooms.entry(id, now) else {
            warn!(source = %self.settings.source, room = %id, max = rooms::MAX_ROOMS, "not following the room: too many rooms");
            return;
        };
        if matches!(room.follower, Follower::Out { retry_at } if retry_at <= now) {
            let key = room.key();
            self.follow(&key);
        }
    }

    /// Attaches a follower handle for the room; the join follows the attach.
    pub(super) fn follow(&mut self, key: &str) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        room.follower = Follower::Joining { handle: None };
        self.attach(
            format!("callrec-follow-{key}"),
            Req::AttachFollower(key.to_owned()),
        );
    }

    /// Ends every room and session of this connection, with the events that say so.
    pub(super) fn end_everything(&mut self, reason: &str) {
        for key in self.rooms.keys() {
            self.end_room(&key, reason, false);
        }
    }

    /// The rooms Janus lists: follows those not followed yet (bounded).
    pub(super) fn on_listed(&mut self, data: VideoRoom) {
        let list = data.list.unwrap_or_default();
        if list.len() > rooms::MAX_ROOMS {
            warn!(source = %self.settings.source, listed = list.len(), max = rooms::MAX_ROOMS, "Janus lists more rooms than callrec follows; following the first ones");
        }
        for listed in list.into_iter().take(rooms::MAX_ROOMS) {
            let now = self.now;
            if let Some(room) = self.rooms.entry(&listed.room, now) {
                if room.description.is_none() {
                    room.description = rooms::cut(listed.description);
                }
            }
            self.add_room(&listed.room);
        }
    }

    /// The follower handle exists: join as a publisher that never publishes.
    pub(super) fn on_follower_attached(&mut self, key: String, handle: u64) {
        self.handles.insert(handle, Role::Follower(key.clone()));
        let Some(room) = self.rooms.get_mut(&key) else {
            self.detach(handle);
            return;
        };
        room.follower = Follower::Joining {
            handle: Some(handle),
        };
        let room_id = room.id.clone();
        let (pin, token) = self.access(&room_id);
        let join = Join::Publisher {
            room: room_id,
            display: self.settings.display.clone(),
            pin,
            token,
        };
        self.message(handle, Body::Join(join), None, Req::JoinFollower(key));
    }

    /// In the room: announce it, and make its publishers what Janus lists.
    pub(super) fn on_joined(&mut self, key: &str, data: VideoRoom) {
        let source = self.settings.source.clone();
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some(handle) = room.follower_handle() else {
            return;
        };
        room.follower = Follower::In {
            handle,
            private_id: data.private_id,
        };
        if let Some(description) = rooms::cut(data.description) {
            room.description = Some(description);
        }
        let listed: Vec<_> = data.publishers.unwrap_or_default();
        let count = listed.len();
        let current: Vec<_> = listed
            .into_iter()
            .filter_map(mapping::publisher)
            .take(rooms::MAX_PUBLISHERS)
            .collect();
        if count > rooms::MAX_PUBLISHERS {
            warn!(%source, room = key, max = rooms::MAX_PUBLISHERS, "more publishers than callrec records in one room; recording the first ones");
        }
        let mut events = vec![];
        if !room.announced {
            room.announced = true;
            events.push(SignalEvent::RoomAdded {
                room: mapping::room_info(&source, room),
            });
        }
        let (added, gone) = room.reconcile(current);
        for p in gone {
            events.push(SignalEvent::ParticipantRemoved {
                room_id: key.to_owned(),
                participant_id: p.id.to_string(),
                reason: "no longer publishing when callrec joined the room again".into(),
            });
        }
        for p in added {
            events.push(SignalEvent::ParticipantAdded {
                room_id: key.to_owned(),
                participant: mapping::participant(&source, &room.id, &p),
            });
        }
        self.out.events.extend(events);
        self.subscribe_missing(key);
    }

    /// What the follower hears: publishers come and go; the room may go, or throw us out.
    pub(super) fn on_room_event(&mut self, key: &str, data: VideoRoom) {
        if data.videoroom == "destroyed" {
            self.room_destroyed(key);
            return;
        }
        if let Some(error) = data.error {
            let source = self.settings.source.clone();
            let error = rooms::cut(Some(error)).unwrap_or_default();
            self.report(format!("Janus ({source}) room {key}: {error}"));
            return;
        }
        if let Some(list) = data.publishers {
            for p in list.into_iter().filter_map(mapping::publisher) {
                self.publisher_added(key, p);
            }
            self.subscribe_missing(key);
        }
        if let Some(id) = data.unpublished.filter(|id| !id.is_ok_marker()) {
            self.publisher_removed(key, &id, "stopped publishing");
        }
        if let Some(id) = data.leaving {
            if id.is_ok_marker() {
                let why = match data.reason.as_deref() {
                    Some("kicked") => "Janus kicked callrec out of the room",
                    _ => "Janus says callrec left the room",
                };
                self.follower_lost(key, why, true);
            } else {
                self.publisher_removed(key, &id, "left the room");
            }
        }
        if let Some(id) = data.kicked {
            self.publisher_removed(key, &id, "was kicked out of the room");
        }
    }

    /// A publisher appears (or publishes more streams): a participant if new.
    pub(super) fn publisher_added(&mut self, key: &str, p: rooms::Publisher) {
        let source = self.settings.source.clone();
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let info = mapping::participant(&source, &room.id, &p);
        match room.add_publisher(p) {
            Added::New => self.emit(SignalEvent::ParticipantAdded {
                room_id: key.to_owned(),
                participant: info,
            }),
            Added::Known => {}
            Added::Full => {
                warn!(%source, room = key, max = rooms::MAX_PUBLISHERS, "more publishers than callrec records in one room; not recording this one")
            }
        }
    }

    /// A publisher is gone; Janus says so more than once, and only the first counts.
    pub(super) fn publisher_removed(&mut self, key: &str, id: &JanusId, reason: &str) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if room.remove_publisher(&id.to_string()).is_some() {
            self.emit(SignalEvent::ParticipantRemoved {
                room_id: key.to_owned(),
                participant_id: id.to_string(),
                reason: reason.into(),
            });
        }
    }

    /// The follower is out of the room, which goes on: the recording (if any) carries on,
    /// and the follower joins again at the next listing; the publishers are reconciled then.
    pub(super) fn follower_lost(&mut self, key: &str, why: &str, still_attached: bool) {
        let retry_at = self.now + RELIST_EVERY;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let handle = room.follower_handle();
        room.follower = Follower::Out { retry_at };
        if let Some(handle) = handle {
            if still_attached {
                self.detach(handle);
            } else {
                self.handles.remove(&handle);
            }
        }
        let source = self.settings.source.clone();
        self.report(format!(
            "callrec is out of Janus ({source}) room {key}: {why}; it joins again within {} s",
            RELIST_EVERY.as_secs()
        ));
    }

    /// The room was destroyed on Janus.
    pub(super) fn room_destroyed(&mut self, key: &str) {
        self.end_room(key, "the room was destroyed", true);
        // A listed room is found again if it comes back; a configured one is retried.
        if self.settings.rooms == RoomSelection::All {
            self.rooms.remove(key);
        }
    }

    /// Ends a room's session, participants and announcement, with their events, and puts it
    /// back to not followed. With `detach`, its handles are detached on Janus too.
    pub(super) fn end_room(&mut self, key: &str, reason: &str, detach: bool) {
        let retry_at = self.now + RELIST_EVERY;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let follower = room.follower_handle();
        let subscriber = room.subscriber_handle();
        let active = matches!(room.subscriber, Subscriber::Active { .. });
        room.follower = Follower::Out { retry_at };
        room.subscriber = Subscriber::None;
        let gone = room.clear_publishers();
        let announced = std::mem::replace(&mut room.announced, false);
        if let (true, Some(handle)) = (active, subscriber) {
            self.emit(SignalEvent::SessionEnded {
                session_id: handle.to_string(),
            });
        }
        for p in gone {
            self.emit(SignalEvent::ParticipantRemoved {
                room_id: key.to_owned(),
                participant_id: p.id.to_string(),
                reason: reason.into(),
            });
        }
        if announced {
            self.emit(SignalEvent::RoomRemoved {
                room_id: key.to_owned(),
                reason: reason.into(),
            });
        }
        for handle in [follower, subscriber].into_iter().flatten() {
            if detach {
                self.detach(handle);
            } else {
                self.handles.remove(&handle);
            }
        }
    }
}
