//! Rooms (Janus VideoRoom): a room is one call, its publishers are the participants, and
//! one session of the server carries all their media.
//!
//! The supervisor keeps each followed room's publishers, starts the room's call at its first
//! publisher (after the usual admission), asks the server for the room's session while the
//! call has publishers and no session, and tells the call who comes and goes. A room's call
//! lingers once nobody publishes there, as a call of producers does once its last session
//! ends.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;
use tracing::{debug, info, warn};

use super::{matches_filter, CallHandle, PendingStart, SourceId, SourcedId, Supervisor};
use crate::call::{CallCmd, CallId, SessionKind};
use crate::signalling::{ParticipantInfo, RoomInfo, SignalCommand};

/// A room that a source follows.
#[derive(Debug)]
pub(super) struct RoomEntry {
    /// What the server said of it (its meta goes to the call's participants' filter).
    pub meta: Value,
    /// Who publishes there and is to be recorded, by participant id.
    pub publishers: BTreeMap<String, ParticipantInfo>,
    /// Refused for want of room (`max_calls`, `min_free_mb`); admitted when there is room.
    pub waiting: bool,
}

impl RoomEntry {
    fn new(meta: Value) -> Self {
        RoomEntry {
            meta,
            publishers: BTreeMap::new(),
            waiting: false,
        }
    }
}

/// The grouping key of a room's call, apart from producers' `g:` and `p:` keys.
fn room_key(source: SourceId, room_id: &str) -> String {
    format!("{}/r:{room_id}", source.0)
}

/// A participant's meta for `[recording.filter]`: the room's, with the participant's own
/// keys over it, so a filter may name either.
fn filter_meta(room: &Value, participant: &Value) -> Value {
    let mut merged = room.as_object().cloned().unwrap_or_default();
    if let Some(own) = participant.as_object() {
        merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Value::Object(merged)
}

impl Supervisor {
    /// The server follows a room: nothing is recorded until someone publishes there.
    pub(super) fn on_room_added(&mut self, source: SourceId, room: RoomInfo) {
        debug!(source = %self.source_name(source), room = %room.id, "following a room");
        self.rooms
            .entry((source, room.id.clone()))
            .or_insert_with(|| RoomEntry::new(Value::Null))
            .meta = room.meta;
    }

    /// A room is gone (destroyed, or the connection lost): its session and publishers have
    /// ended already (those events come first).
    pub(super) fn on_room_removed(&mut self, source: SourceId, room_id: String, reason: &str) {
        debug!(source = %self.source_name(source), room = %room_id, %reason, "room gone");
        let room = (source, room_id);
        self.rooms.remove(&room);
        if self.pending.remove(&room).is_some() {
            self.recount_pending();
        }
    }

    /// Someone publishes in a room: they join the room's call (started now if need be), and
    /// the room's session is asked for if there is none.
    pub(super) fn on_participant_added(
        &mut self,
        source: SourceId,
        room_id: String,
        participant: ParticipantInfo,
    ) {
        let entry = self
            .rooms
            .entry((source, room_id.clone()))
            .or_insert_with(|| RoomEntry::new(Value::Null));
        let meta = filter_meta(&entry.meta, &participant.meta);
        if !matches_filter(&meta, &self.settings.config.recording.filter) {
            debug!(room = %room_id, participant = %participant.id, "publisher does not match [recording.filter]; not recording them");
            return;
        }
        if entry.publishers.get(&participant.id) == Some(&participant) {
            // Announced again as it was (the server's list reconciled): nothing changed.
            return;
        }
        entry
            .publishers
            .insert(participant.id.clone(), participant.clone());
        if self.draining {
            return;
        }
        let key = room_key(source, &room_id);
        match self.by_key.get(&key).copied() {
            Some(call) => self.tell_call(call, CallCmd::ParticipantAdded { participant }),
            // A new call is told of every publisher when it starts.
            None => {
                if self.start_room_call(source, &room_id).is_none() {
                    return;
                }
            }
        }
        self.ensure_room_session(source, &room_id);
        self.recount_pending();
    }

    /// Someone stopped publishing in a room: their files end.
    pub(super) fn on_participant_removed(
        &mut self,
        source: SourceId,
        room_id: String,
        participant_id: String,
        reason: String,
    ) {
        let room = (source, room_id);
        if let Some(entry) = self.rooms.get_mut(&room) {
            entry.publishers.remove(&participant_id);
        }
        // The room's current call, and the call holding the room's session if that is an
        // older one still finishing.
        let mut calls: Vec<CallId> = self
            .by_key
            .get(&room_key(source, &room.1))
            .copied()
            .into_iter()
            .collect();
        if let Some(call) = self
            .producers_in_session
            .get(&room)
            .and_then(|session| self.sessions.get(&(source, session.clone())))
        {
            if !calls.contains(call) {
                calls.push(*call);
            }
        }
        for call in calls {
            self.tell_call(
                call,
                CallCmd::ParticipantRemoved {
                    participant_id: participant_id.clone(),
                    reason: reason.clone(),
                },
            );
        }
        self.recount_pending();
    }

    /// Starts a room's call, after the usual admission, and tells it who publishes there.
    fn start_room_call(&mut self, source: SourceId, room_id: &str) -> Option<CallId> {
        let room = (source, room_id.to_owned());
        let name = self
            .settings
            .config
            .sources
            .get(source.0)?
            .call_name(room_id);
        if let Some(why) = self.refusal() {
            warn!(call = %name, "not recording room {room_id}: {why}; it will be recorded once there is room");
            if let Some(entry) = self.rooms.get_mut(&room) {
                entry.waiting = true;
            }
            return None;
        }
        let key = room_key(source, room_id);
        let id = match self.start_call(source, &key, &name) {
            Ok(id) => id,
            Err(e) => {
                warn!(call = %name, "not recording room {room_id}: {e}");
                return None;
            }
        };
        if let Some(call) = self.calls.get_mut(&id) {
            call.room = Some(room.clone());
        }
        info!(call = %name, room = %room_id, "recording a room");
        let publishers: Vec<ParticipantInfo> = self
            .rooms
            .get_mut(&room)
            .map(|entry| {
                entry.waiting = false;
                entry.publishers.values().cloned().collect()
            })
            .unwrap_or_default();
        for participant in publishers {
            self.tell_call(id, CallCmd::ParticipantAdded { participant });
        }
        Some(id)
    }

    /// Asks the server for a room's session if its call has publishers and neither a
    /// session nor a request for one.
    pub(super) fn ensure_room_session(&mut self, source: SourceId, room_id: &str) {
        let room = (source, room_id.to_owned());
        if self.pending.contains_key(&room) || self.producers_in_session.contains_key(&room) {
            return;
        }
        let Some(entry) = self.rooms.get(&room) else {
            return;
        };
        if entry.publishers.is_empty() {
            return;
        }
        let meta = entry.meta.clone();
        let Some(&call) = self.by_key.get(&room_key(source, room_id)) else {
            return;
        };
        let start = SignalCommand::StartSession {
            peer_id: room_id.to_owned(),
            offer: None,
        };
        let Some(tx) = self.signal_tx(source) else {
            return;
        };
        if let Err(e) = tx.try_send(start) {
            // Tried again on the next tick.
            debug!(room = %room_id, "the signalling client is not keeping up ({e})");
            return;
        }
        debug!(room = %room_id, "asking for the room's session");
        self.pending.insert(
            room,
            PendingStart {
                call,
                meta,
                asked_at: Instant::now(),
                kind: SessionKind::Room,
            },
        );
    }

    /// Every tick: rooms whose call lost its session (ended, failed, the server restarted)
    /// ask for a new one, and rooms refused for want of room are tried again.
    pub(super) fn tend_rooms(&mut self, admit: bool) {
        let rooms: Vec<(SourcedId, bool)> = self
            .rooms
            .iter()
            .filter(|(_, e)| !e.publishers.is_empty())
            .map(|(r, e)| (r.clone(), e.waiting))
            .collect();
        for ((source, room_id), waiting) in rooms {
            if self.draining {
                return;
            }
            if waiting {
                if admit && !self.by_key.contains_key(&room_key(source, &room_id)) {
                    self.start_room_call(source, &room_id);
                }
                continue;
            }
            self.ensure_room_session(source, &room_id);
        }
    }

    /// True if a room call has nobody publishing (its linger runs then).
    pub(super) fn room_is_empty(&self, call: &CallHandle) -> Option<bool> {
        let room = call.room.as_ref()?;
        Some(self.rooms.get(room).is_none_or(|e| e.publishers.is_empty()))
    }

    /// Hands a command to a call without waiting (its queue is full only when flooded).
    fn tell_call(&mut self, call: CallId, cmd: CallCmd) {
        if let Some(handle) = self.calls.get(&call) {
            if let Err(e) = handle.tx.try_send(cmd) {
                warn!(call = %handle.name, "the call is not keeping up; a room update is lost ({e})");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_filter_sees_room_and_participant_meta() {
        let merged = filter_meta(
            &json!({"source": "j", "room": 1234, "description": "standup"}),
            &json!({"room": 1234, "feed": 7, "name": "alice"}),
        );
        assert_eq!(merged["description"], "standup");
        assert_eq!(merged["name"], "alice");
        assert_eq!(filter_meta(&Value::Null, &Value::Null), json!({}));
    }

    #[test]
    fn room_keys_differ_from_producer_keys_and_sources() {
        assert_eq!(room_key(SourceId(1), "1234"), "1/r:1234");
        assert_ne!(room_key(SourceId(0), "x"), room_key(SourceId(1), "x"));
    }
}
