//! The subscription: one multistream subscriber handle per recorded room, whose handle id
//! is the session id. Janus offers, callrec answers with `start`; publishers who come are
//! added with `update`, and Janus drops those who go by itself. Also the supervisor's
//! commands, which all concern a subscription.

use tracing::debug;

use super::messages::{Body, Join, Jsep, JsepKind, LocalCandidate, RemoteCandidate};
use super::rooms::{Follower, Subscriber};
use super::{
    mapping, Janus, PluginEvent, Req, Role, Session, MAX_CANDIDATE_LEN, MAX_EARLY_CANDIDATES,
    MAX_JOIN_ATTEMPTS,
};
use crate::signalling::{SignalCommand, SignalEvent};

impl Janus {
    /// The subscription is gone: its session has ended.
    pub(super) fn subscriber_lost(&mut self, key: &str, why: &str, still_attached: bool) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let old = std::mem::replace(&mut room.subscriber, Subscriber::None);
        if let Some(handle) = old.handle() {
            self.early_candidates.remove(&handle);
        }
        let handle = match old {
            Subscriber::Active { handle, .. } => {
                debug!(room = key, "{why}");
                self.emit(SignalEvent::SessionEnded {
                    session_id: handle.to_string(),
                });
                Some(handle)
            }
            Subscriber::Starting { handle, .. } => handle,
            Subscriber::None => None,
        };
        if let Some(handle) = handle {
            if still_attached {
                self.detach(handle);
            } else {
                self.handles.remove(&handle);
            }
        }
    }

    /// The subscriber handle exists: join with every stream published now.
    pub(super) fn on_subscriber_attached(&mut self, key: String, handle: u64) {
        self.handles.insert(handle, Role::Subscriber(key.clone()));
        let starting = self
            .rooms
            .get(&key)
            .is_some_and(|r| matches!(r.subscriber, Subscriber::Starting { .. }));
        if !starting {
            // The recording was ended while attaching.
            self.detach(handle);
            return;
        }
        if !self.join_subscription(&key, handle, 1) {
            let source = self.settings.source.clone();
            self.report(format!(
                "Janus ({source}) room {key} has no publisher left to record"
            ));
            self.undo(&Req::JoinSubscriber(key));
        }
    }

    /// Sends the subscriber `join` with every stream published now; false if there is none.
    pub(super) fn join_subscription(&mut self, key: &str, handle: u64, attempts: u8) -> bool {
        let Some(room) = self.rooms.get_mut(key) else {
            return false;
        };
        let (streams, asked) = room.all_streams();
        if streams.is_empty() {
            return false;
        }
        room.subscriber = Subscriber::Starting {
            handle: Some(handle),
            attempts,
            asked,
        };
        let private_id = match room.follower {
            Follower::In { private_id, .. } => private_id,
            _ => None,
        };
        let room_id = room.id.clone();
        let (pin, token) = self.access(&room_id);
        let join = Join::Subscriber {
            room: room_id,
            streams,
            private_id,
            pin,
            token,
            autoupdate: true,
        };
        self.message(
            handle,
            Body::Join(join),
            None,
            Req::JoinSubscriber(key.to_owned()),
        );
        true
    }

    /// A subscriber join named a publisher that left meanwhile: join again with those that
    /// remain, a few times at most.
    pub(super) fn retry_join(&mut self, key: &str) -> bool {
        let Some(room) = self.rooms.get(key) else {
            return false;
        };
        let Subscriber::Starting {
            handle: Some(handle),
            attempts,
            ..
        } = room.subscriber
        else {
            return false;
        };
        attempts < MAX_JOIN_ATTEMPTS && self.join_subscription(key, handle, attempts + 1)
    }

    /// The subscription exists: the session starts, with its m-line table and offer.
    pub(super) fn on_attached(&mut self, key: &str, event: PluginEvent) -> Result<(), String> {
        let PluginEvent { sender, data, jsep } = event;
        let Some(Jsep {
            kind: JsepKind::Offer,
            sdp,
        }) = jsep
        else {
            self.undo(&Req::JoinSubscriber(key.to_owned()));
            return Err("a subscription attached without an offer".into());
        };
        let table = data.streams.unwrap_or_default();
        let Some(room) = self.rooms.get_mut(key) else {
            return Ok(());
        };
        let Subscriber::Starting { asked, .. } = &room.subscriber else {
            return Ok(());
        };
        let mut asked = asked.clone();
        asked.extend(mapping::granted(&table));
        room.subscriber = Subscriber::Active {
            handle: sender,
            asked,
        };
        let session_id = sender.to_string();
        self.emit(SignalEvent::SessionStarted {
            session_id: session_id.clone(),
            peer_id: key.to_owned(),
        });
        self.emit(SignalEvent::StreamsChanged {
            session_id: session_id.clone(),
            streams: mapping::streams(table),
        });
        self.emit(SignalEvent::Offer {
            session_id: session_id.clone(),
            sdp,
        });
        for (candidate, mline_index) in self.early_candidates.remove(&sender).unwrap_or_default() {
            self.emit(SignalEvent::Ice {
                session_id: session_id.clone(),
                candidate,
                mline_index,
            });
        }
        // Publishers who came while joining.
        self.subscribe_missing(key);
        Ok(())
    }

    /// The subscription changed (our `update`, or Janus's own when a publisher left).
    pub(super) fn on_updated(&mut self, key: &str, event: PluginEvent) -> Result<(), String> {
        let PluginEvent { sender, data, jsep } = event;
        let Some(room) = self.rooms.get_mut(key) else {
            return Ok(());
        };
        let Subscriber::Active { handle, asked } = &mut room.subscriber else {
            return Ok(());
        };
        if *handle != sender {
            return Ok(());
        }
        let session_id = sender.to_string();
        // Without `streams` nothing changed; without a jsep there is nothing to negotiate.
        if let Some(table) = data.streams {
            asked.extend(mapping::granted(&table));
            self.emit(SignalEvent::StreamsChanged {
                session_id: session_id.clone(),
                streams: mapping::streams(table),
            });
        }
        match jsep {
            Some(Jsep {
                kind: JsepKind::Offer,
                sdp,
            }) => {
                self.emit(SignalEvent::Offer { session_id, sdp });
                Ok(())
            }
            Some(_) => Err("an answer on a subscription (Janus offers there)".into()),
            None => Ok(()),
        }
    }

    /// Asks the room's subscription for the streams it lacks (new publishers, new streams).
    pub(super) fn subscribe_missing(&mut self, key: &str) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Subscriber::Active { handle, .. } = room.subscriber else {
            return;
        };
        let refs = room.take_unasked();
        if refs.is_empty() {
            return;
        }
        self.message(
            handle,
            Body::Update {
                subscribe: refs.clone(),
            },
            None,
            Req::Update(key.to_owned(), refs),
        );
    }

    /// One of Janus's ICE candidates (with `full_trickle`), for the subscription's session.
    pub(super) fn on_remote_candidate(
        &mut self,
        sender: u64,
        candidate: RemoteCandidate,
    ) -> Result<(), String> {
        // Only the subscriber has a PeerConnection.
        if !matches!(self.handles.get(&sender), Some(Role::Subscriber(_))) {
            return Ok(());
        }
        match candidate {
            RemoteCandidate::Candidate { candidate, mline } => {
                if candidate.len() > MAX_CANDIDATE_LEN {
                    return Err("an oversized ICE candidate".into());
                }
                // Janus bundles everything on the first m-line.
                let mline_index = mline.unwrap_or(0);
                let started = self
                    .rooms
                    .by_subscriber(sender)
                    .is_some_and(|r| matches!(r.subscriber, Subscriber::Active { .. }));
                debug!(handle = sender, started, "Janus: a candidate");
                if !started {
                    // Janus trickled before its offer reached us: kept for the session.
                    let early = self.early_candidates.entry(sender).or_default();
                    if early.len() < MAX_EARLY_CANDIDATES {
                        early.push((candidate, mline_index));
                    }
                    return Ok(());
                }
                self.emit(SignalEvent::Ice {
                    session_id: sender.to_string(),
                    candidate,
                    mline_index,
                });
            }
            RemoteCandidate::Completed { completed } => {
                debug!(handle = sender, completed, "Janus: end of its candidates");
            }
        }
        Ok(())
    }

    /// A command from the supervisor; each concerns a room's subscription.
    pub(super) fn on_command(&mut self, command: &SignalCommand) {
        match command {
            SignalCommand::StartSession { peer_id, offer } => {
                self.start_recording(peer_id, offer.is_some())
            }
            SignalCommand::Answer { session_id, sdp } => {
                if let Some((key, handle)) = self.subscription(session_id) {
                    let jsep = Jsep {
                        kind: JsepKind::Answer,
                        sdp: sdp.clone(),
                    };
                    self.message(handle, Body::Start, Some(jsep), Req::Start(key));
                }
            }
            SignalCommand::Ice {
                session_id,
                candidate,
                mline_index,
            } => {
                if let Some((_, handle)) = self.subscription(session_id) {
                    let candidate = LocalCandidate::Candidate {
                        candidate: candidate.clone(),
                        mline: *mline_index,
                    };
                    self.trickle(handle, candidate);
                }
            }
            SignalCommand::EndOfCandidates { session_id } => {
                if let Some((_, handle)) = self.subscription(session_id) {
                    self.trickle(handle, LocalCandidate::Completed { completed: true });
                }
            }
            SignalCommand::EndSession { session_id } => {
                if let Some((key, handle)) = self.subscription(session_id) {
                    if let Some(room) = self.rooms.get_mut(&key) {
                        room.subscriber = Subscriber::None;
                    }
                    self.detach(handle);
                }
            }
        }
    }

    /// The room and handle of a live subscription, by session id.
    pub(super) fn subscription(&self, session_id: &str) -> Option<(String, u64)> {
        let handle: u64 = session_id.parse().ok()?;
        let room = self.rooms.by_subscriber(handle)?;
        if !matches!(room.subscriber, Subscriber::Active { .. }) {
            return None;
        }
        debug_assert_eq!(
            self.handles.get(&handle),
            Some(&Role::Subscriber(room.key()))
        );
        Some((room.key(), handle))
    }

    /// The supervisor asks for a room's media: subscribe to everything published there.
    pub(super) fn start_recording(&mut self, key: &str, offers: bool) {
        let source = self.settings.source.clone();
        if offers {
            self.report(format!(
                "callrec cannot offer to Janus ({source}) room {key}: Janus makes the offers"
            ));
            return;
        }
        if !matches!(self.session, Session::Up(_)) {
            self.report(format!(
                "cannot record Janus ({source}) room {key}: no Janus session yet"
            ));
            return;
        }
        let Some(room) = self.rooms.get_mut(key) else {
            self.report(format!(
                "cannot record Janus ({source}) room {key}: callrec does not follow it"
            ));
            return;
        };
        if room.subscriber != Subscriber::None {
            debug!(room = key, "the room is being recorded already");
            return;
        }
        if !room.has_publishers() {
            self.report(format!(
                "cannot record Janus ({source}) room {key}: nobody publishes there (yet)"
            ));
            return;
        }
        room.subscriber = Subscriber::Starting {
            handle: None,
            attempts: 0,
            asked: Default::default(),
        };
        self.attach(
            format!("callrec-record-{key}"),
            Req::AttachSubscriber(key.to_owned()),
        );
    }
}
