//! The Janus VideoRoom protocol (Janus 1.x over WebSocket, subprotocol `janus-protocol`), as
//! a recorder speaks it. Plain data: wire text in, events and wire text out, no I/O.
//!
//! One connection holds one Janus session, created by [`Protocol::hello`] and kept alive by
//! a keepalive every [`KEEPALIVE_EVERY`]. Janus sessions do not survive a Janus restart or a
//! lost connection, so each connection starts from nothing: rooms and publishers are found
//! afresh, and [`Protocol::disconnected`] ends everything the old session carried.
//!
//! In every room it follows (a configured list, or all that the plugin's `list` shows,
//! listed again every [`RELIST_EVERY`]), callrec attaches a *follower* handle and joins as a
//! publisher that never publishes, to hear of publishers through `publishers`,
//! `unpublished`, `leaving` and `kicked`. A room is announced with `RoomAdded`, each
//! publisher with `ParticipantAdded`. When the supervisor asks to record a room
//! (`StartSession { peer_id: <room id> }`), callrec attaches a *subscriber* handle and joins
//! one multistream subscription carrying every publisher's streams; the subscriber handle's
//! id is the session id. Janus offers (`attached`, then `updated` on every change), callrec
//! answers each offer with `start`, and each offer comes after a `StreamsChanged` saying
//! whose each m-line is. New publishers are added with `update`; Janus drops leaving
//! publishers' streams by itself (`autoupdate`).
//!
//! Every request carries a transaction id and waits in a bounded table until Janus answers
//! (see [`transactions`]); a request unanswered for 30 s is undone and reported. A Janus
//! error becomes `SignalEvent::ServerError` with a sentence naming what failed. Malformed or
//! unexpected messages give a [`ProtocolError`]; harmless ones (acks, media notices) are
//! ignored. Rooms, publishers, streams and texts are bounded (see [`rooms`], [`mapping`]).
//!
//! Here: the session, and the dispatch of Janus's messages. [`follow`]: rooms and their
//! publishers. [`subscribe`]: the subscription and the supervisor's commands.
//! [`failures`]: refused and unanswered requests. [`messages`]: the wire format.
//! [`settings`]: what a source is configured with.

mod failures;
mod follow;
mod mapping;
mod messages;
mod rooms;
mod settings;
mod subscribe;
mod transactions;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use tracing::debug;

pub use messages::JanusId;
use messages::{Body, FeedRef, Incoming, Jsep, LocalCandidate, Request, VideoRoom};
use rooms::{Follower, Rooms};
pub use settings::{
    read_pins, read_secret, JanusSettings, RoomAccess, RoomSelection, Secret, SecretFileError,
};
use transactions::Pending;

use super::{Output, Protocol, ProtocolError, SignalCommand, SignalEvent};

/// The WebSocket subprotocol Janus's API requires (the handshake fails without it).
pub const SUBPROTOCOL: &str = "janus-protocol";
/// How often the session is kept alive: Janus drops a session after `session_timeout`
/// (60 s by default) without a request; this leaves room for two lost keepalives.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(20);
/// How often rooms are listed again (to find new ones), and failed joins retried.
pub const RELIST_EVERY: Duration = Duration::from_secs(30);
/// How long after a failed or unanswered `create` it is sent again.
const CREATE_RETRY: Duration = Duration::from_secs(5);
/// Subscriber joins sent for one recording before giving up (a join naming a publisher
/// that left in the meantime fails, and is sent again with those that remain).
const MAX_JOIN_ATTEMPTS: u8 = 3;
const VIDEOROOM: &str = "janus.plugin.videoroom";
/// Janus's core error for a session it does not have (expired, or Janus restarted).
const NO_SUCH_SESSION: i64 = 458;
/// The VideoRoom's error for a feed that is not (or no longer) publishing.
const NO_SUCH_FEED: i64 = 428;
/// Longest ICE candidate line accepted from Janus.
const MAX_CANDIDATE_LEN: usize = 2048;
/// Candidates kept for a subscription that has not started yet.
const MAX_EARLY_CANDIDATES: usize = 64;

/// What a handle is for.
#[derive(Debug, Clone, PartialEq)]
enum Role {
    /// Lists rooms.
    Control,
    /// Follows a room (by key).
    Follower(String),
    /// Receives a room's media (by key).
    Subscriber(String),
}

/// What a waiting request was, to act on its answer or undo it.
#[derive(Debug, Clone, PartialEq)]
enum Req {
    /// `create` (the session).
    Create,
    /// `attach` of the handle that lists rooms.
    AttachControl,
    /// `list`.
    List,
    /// `attach` of a room's follower (room key).
    AttachFollower(String),
    /// The follower's publisher `join`.
    JoinFollower(String),
    /// `attach` of a room's subscriber.
    AttachSubscriber(String),
    /// The subscriber `join`.
    JoinSubscriber(String),
    /// `update`, with the streams it asks for.
    Update(String, Vec<FeedRef>),
    /// `start` with our answer.
    Start(String),
    /// `detach` of any handle.
    Detach,
}

impl Req {
    /// The request in words, for error reports.
    fn describe(&self) -> String {
        match self {
            Req::Create => "creating a session".into(),
            Req::AttachControl => "attaching to the VideoRoom plugin".into(),
            Req::List => "listing rooms".into(),
            Req::AttachFollower(r) | Req::JoinFollower(r) => format!("following room {r}"),
            Req::AttachSubscriber(r) | Req::JoinSubscriber(r) => {
                format!("subscribing to room {r}")
            }
            Req::Update(r, _) => format!("adding publishers to the subscription of room {r}"),
            Req::Start(r) => format!("answering the offer of room {r}"),
            Req::Detach => "detaching a handle".into(),
        }
    }
}

/// Where the Janus session stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Session {
    /// Not connected.
    Idle,
    /// `create` sent.
    Creating,
    /// `create` failed: send it again at this time.
    Retry(Instant),
    /// The session exists.
    Up(u64),
}

/// The handle that lists rooms (only with [`RoomSelection::All`]).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Control {
    None,
    Attaching,
    Ready(u64),
}

/// A plugin event: the handle it is for, what the VideoRoom says, and any SDP beside it.
struct PluginEvent {
    sender: u64,
    data: VideoRoom,
    jsep: Option<Jsep>,
}

/// A reply to a request, whatever its `janus` type.
enum Reply {
    /// `success`: a new handle's or session's id, or a synchronous plugin reply.
    Success {
        id: Option<u64>,
        data: Option<VideoRoom>,
    },
    /// The event that settles an asynchronous plugin request.
    Event(PluginEvent),
}

impl Reply {
    fn plugin(&self) -> Option<&VideoRoom> {
        match self {
            Reply::Success { data, .. } => data.as_ref(),
            Reply::Event(event) => Some(&event.data),
        }
    }

    /// The VideoRoom's error in a reply (it comes in `success` for synchronous requests).
    fn plugin_error(&self) -> Option<String> {
        let data = self.plugin()?;
        let code = data.error_code?;
        Some(format!(
            "{} ({code})",
            data.error.as_deref().unwrap_or("no reason given")
        ))
    }
}

/// The Janus VideoRoom adapter of one source (see the module documentation).
pub struct Janus {
    settings: JanusSettings,
    /// The time of the latest [`Protocol::tick`] (or of creation): requests are stamped with
    /// it, so tests can step time.
    now: Instant,
    session: Session,
    control: Control,
    last_keepalive: Instant,
    next_relist: Instant,
    rooms: Rooms,
    handles: HashMap<u64, Role>,
    pending: Pending<Req>,
    out: Output,
    /// Janus's candidates for subscriptions not started yet (Janus may trickle before its
    /// `attached` event arrives), by handle: sent after the session's offer.
    early_candidates: HashMap<u64, Vec<(String, u32)>>,
}

impl fmt::Debug for Janus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Janus")
            .field("source", &self.settings.source)
            .field("session", &self.session)
            .field("rooms", &self.rooms.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Protocol for Janus {
    fn hello(&mut self) -> Vec<String> {
        self.reset();
        self.session = Session::Creating;
        self.send(Request::new("create", String::new()), Some(Req::Create));
        std::mem::take(&mut self.out.messages)
    }

    fn parse(&mut self, text: &str) -> Result<Vec<SignalEvent>, ProtocolError> {
        let msg: Incoming =
            serde_json::from_str(text).map_err(|source| ProtocolError::Malformed {
                source,
                excerpt: ProtocolError::excerpt(text),
            })?;
        match self.on_message(msg) {
            Ok(()) => Ok(std::mem::take(&mut self.out.events)),
            // Events that came before the fault stay in the output, which the client
            // forwards after the error is logged.
            Err(what) => Err(ProtocolError::Unexpected {
                what,
                excerpt: ProtocolError::excerpt(text),
            }),
        }
    }

    fn encode(&mut self, command: &SignalCommand) -> Vec<String> {
        self.on_command(command);
        std::mem::take(&mut self.out.messages)
    }

    fn subprotocol(&self) -> Option<&'static str> {
        Some(SUBPROTOCOL)
    }

    fn tick(&mut self, now: Instant) -> Vec<String> {
        self.now = now;
        self.on_tick();
        std::mem::take(&mut self.out.messages)
    }

    fn take_output(&mut self) -> Output {
        std::mem::take(&mut self.out)
    }

    fn disconnected(&mut self) -> Vec<SignalEvent> {
        self.end_everything("the connection to Janus was lost");
        self.reset();
        std::mem::take(&mut self.out.events)
    }
}

impl Janus {
    /// An adapter that has not connected yet.
    pub fn new(settings: JanusSettings) -> Self {
        let now = Instant::now();
        Janus {
            settings,
            now,
            session: Session::Idle,
            control: Control::None,
            last_keepalive: now,
            next_relist: now,
            rooms: Rooms::default(),
            handles: HashMap::new(),
            pending: Pending::default(),
            out: Output::default(),
            early_candidates: HashMap::new(),
        }
    }

    /// Forgets the session and everything in it, without a word (see `end_everything`).
    fn reset(&mut self) {
        self.session = Session::Idle;
        self.control = Control::None;
        self.rooms.clear();
        self.handles.clear();
        self.pending.clear();
        self.out.messages.clear();
        self.early_candidates.clear();
    }

    /// Queues a request with a fresh transaction id; with `kind`, it waits for its answer.
    fn send(&mut self, mut request: Request, kind: Option<Req>) {
        request.transaction = self.pending.next_id();
        if let Session::Up(id) = self.session {
            if request.janus != "create" {
                request.session_id = Some(id);
            }
        }
        request.apisecret = self.settings.api_secret.as_ref().map(Secret::expose);
        // These types hold only strings, numbers and options, which always serialise.
        let text = serde_json::to_string(&request).unwrap_or_default();
        self.out.messages.push(text);
        if let Some(kind) = kind {
            if let Some(evicted) = self.pending.insert(request.transaction, kind, self.now) {
                self.fail(&evicted, "forgotten: too many requests were waiting");
            }
        }
    }

    fn attach(&mut self, opaque_id: String, kind: Req) {
        let mut r = Request::new("attach", String::new());
        r.plugin = Some(VIDEOROOM);
        r.opaque_id = Some(opaque_id);
        self.send(r, Some(kind));
    }

    fn message(&mut self, handle: u64, body: Body, jsep: Option<Jsep>, kind: Req) {
        let mut r = Request::new("message", String::new());
        r.handle_id = Some(handle);
        r.body = Some(body);
        r.jsep = jsep;
        self.send(r, Some(kind));
    }

    fn detach(&mut self, handle: u64) {
        self.handles.remove(&handle);
        let mut r = Request::new("detach", String::new());
        r.handle_id = Some(handle);
        self.send(r, Some(Req::Detach));
    }

    fn trickle(&mut self, handle: u64, candidate: LocalCandidate) {
        let mut r = Request::new("trickle", String::new());
        r.handle_id = Some(handle);
        r.candidate = Some(candidate);
        // Acks only; candidates are not worth a place in the table.
        self.send(r, None);
    }

    fn emit(&mut self, event: SignalEvent) {
        self.out.events.push(event);
    }

    /// Reports a failure as a `ServerError` (the supervisor logs those).
    fn report(&mut self, details: String) {
        self.emit(SignalEvent::ServerError { details });
    }

    fn access(&self, room: &JanusId) -> (Option<String>, Option<String>) {
        let access = self.settings.access.get(room);
        (
            access.and_then(|a| a.pin.as_ref()).map(Secret::expose),
            access.and_then(|a| a.token.as_ref()).map(Secret::expose),
        )
    }

    fn on_tick(&mut self) {
        for stale in self.pending.expire(self.now) {
            self.fail(&stale, "Janus did not answer within 30 s");
        }
        match self.session {
            Session::Retry(at) if self.now >= at => {
                self.session = Session::Creating;
                self.send(Request::new("create", String::new()), Some(Req::Create));
            }
            Session::Up(_) => {
                if self.now.saturating_duration_since(self.last_keepalive) >= KEEPALIVE_EVERY {
                    self.last_keepalive = self.now;
                    self.send(Request::new("keepalive", String::new()), None);
                }
                if self.now >= self.next_relist {
                    self.next_relist = self.now + RELIST_EVERY;
                    self.relist();
                }
            }
            _ => {}
        }
    }

    /// Lists rooms again (or attaches to list them), retries rooms not followed, and asks
    /// each subscription for streams it lacks.
    fn relist(&mut self) {
        if self.settings.rooms == RoomSelection::All {
            match self.control {
                Control::None => {
                    self.control = Control::Attaching;
                    self.attach("callrec-list".into(), Req::AttachControl);
                }
                Control::Ready(handle) => self.list(handle),
                Control::Attaching => {}
            }
        }
        for key in self.rooms.keys() {
            let due = matches!(
                self.rooms.get(&key).map(|r| &r.follower),
                Some(Follower::Out { retry_at }) if *retry_at <= self.now
            );
            if due {
                self.follow(&key);
            }
            self.subscribe_missing(&key);
        }
    }

    fn list(&mut self, handle: u64) {
        let admin_key = self.settings.admin_key.as_ref().map(Secret::expose);
        self.message(handle, Body::List { admin_key }, None, Req::List);
    }

    fn on_created(&mut self, id: u64) {
        self.session = Session::Up(id);
        self.last_keepalive = self.now;
        self.next_relist = self.now + RELIST_EVERY;
        match self.settings.rooms.clone() {
            RoomSelection::All => {
                self.control = Control::Attaching;
                self.attach("callrec-list".into(), Req::AttachControl);
            }
            RoomSelection::List(ids) => {
                for id in ids {
                    self.add_room(&id);
                }
            }
        }
    }

    /// The Janus session is gone while connected (expired, or Janus restarted behind a
    /// proxy): end what it carried and create a new one.
    fn session_lost(&mut self, reason: &str) {
        self.report(format!(
            "the Janus session is gone ({reason}); creating a new one"
        ));
        self.end_everything(reason);
        self.reset();
        self.session = Session::Creating;
        self.send(Request::new("create", String::new()), Some(Req::Create));
    }

    fn take_pending(&mut self, transaction: Option<&str>) -> Option<Req> {
        transaction.and_then(|t| self.pending.take(t))
    }

    fn on_message(&mut self, msg: Incoming) -> Result<(), String> {
        match msg {
            Incoming::Success {
                transaction,
                data: created,
                plugindata,
            } => {
                let Some(kind) = self.take_pending(transaction.as_deref()) else {
                    debug!("a success for no waiting request (answered late); ignoring it");
                    return Ok(());
                };
                let data = match plugindata {
                    Some(p) if p.plugin != VIDEOROOM => {
                        self.undo(&kind);
                        return Err(format!("a reply from the plugin {:?}", p.plugin));
                    }
                    p => p.map(|p| p.data),
                };
                let id = created.map(|c| c.id);
                self.on_reply(kind, Reply::Success { id, data })
            }
            // Janus may ack after the result; the result settles the request.
            Incoming::Ack {} => Ok(()),
            Incoming::Event {
                transaction,
                sender,
                plugindata,
                jsep,
            } => {
                if plugindata.plugin != VIDEOROOM {
                    return Err(format!("an event from the plugin {:?}", plugindata.plugin));
                }
                let event = PluginEvent {
                    sender,
                    data: plugindata.data,
                    jsep,
                };
                match self.take_pending(transaction.as_deref()) {
                    Some(kind) => self.on_reply(kind, Reply::Event(event)),
                    None => self.on_news(event),
                }
            }
            Incoming::Error {
                transaction,
                session_id,
                error,
            } => {
                let kind = self.take_pending(transaction.as_deref());
                self.on_core_error(kind, session_id, error);
                Ok(())
            }
            Incoming::Trickle { sender, candidate } => self.on_remote_candidate(sender, candidate),
            Incoming::Webrtcup { sender } => {
                debug!(handle = sender, "Janus: the PeerConnection is up");
                Ok(())
            }
            Incoming::Hangup { sender, reason } => {
                if let Some(Role::Subscriber(key)) = self.handles.get(&sender).cloned() {
                    let reason = rooms::cut(reason).unwrap_or_default();
                    self.subscriber_lost(&key, &format!("Janus hung up ({reason})"), true);
                }
                Ok(())
            }
            Incoming::Detached { sender } => {
                match self.handles.remove(&sender) {
                    Some(Role::Control) => self.control = Control::None,
                    Some(Role::Follower(key)) => {
                        self.follower_lost(&key, "Janus detached its handle", false)
                    }
                    Some(Role::Subscriber(key)) => {
                        self.subscriber_lost(&key, "Janus detached its handle", false)
                    }
                    None => {}
                }
                Ok(())
            }
            Incoming::Timeout { session_id } => {
                if self.session == Session::Up(session_id) {
                    self.session_lost("Janus timed it out");
                }
                Ok(())
            }
            Incoming::Other => Ok(()),
        }
    }

    /// The answer to a request of ours.
    fn on_reply(&mut self, kind: Req, reply: Reply) -> Result<(), String> {
        if let Some(error) = reply.plugin_error() {
            let code = reply.plugin().and_then(|d| d.error_code).unwrap_or(0);
            self.refused(kind, code, error);
            return Ok(());
        }
        match (kind, reply) {
            (Req::Create, Reply::Success { id: Some(id), .. }) => self.on_created(id),
            (Req::AttachControl, Reply::Success { id: Some(id), .. }) => {
                self.control = Control::Ready(id);
                self.handles.insert(id, Role::Control);
                self.list(id);
            }
            (
                Req::List,
                Reply::Success {
                    data: Some(data), ..
                },
            ) if data.list.is_some() => self.on_listed(data),
            (Req::AttachFollower(key), Reply::Success { id: Some(id), .. }) => {
                self.on_follower_attached(key, id)
            }
            (Req::JoinFollower(key), Reply::Event(e)) if e.data.videoroom == "joined" => {
                self.on_joined(&key, e.data)
            }
            (Req::AttachSubscriber(key), Reply::Success { id: Some(id), .. }) => {
                self.on_subscriber_attached(key, id)
            }
            (Req::JoinSubscriber(key), Reply::Event(e)) if e.data.videoroom == "attached" => {
                return self.on_attached(&key, e);
            }
            (Req::Update(key, _), Reply::Event(e)) if e.data.videoroom == "updated" => {
                return self.on_updated(&key, e);
            }
            // Janus is still negotiating an earlier change; the offer comes later, as news.
            (Req::Update(..), Reply::Event(e)) if e.data.videoroom == "updating" => {}
            // `started`: the answer is in.
            (Req::Start(_), Reply::Event(_)) | (Req::Detach, _) => {}
            (kind, _) => {
                let what = format!("an answer to {} that callrec cannot use", kind.describe());
                self.undo(&kind);
                return Err(what);
            }
        }
        Ok(())
    }

    /// News from a handle (no transaction): the room's publishers, or a re-offer.
    fn on_news(&mut self, event: PluginEvent) -> Result<(), String> {
        let sender = event.sender;
        match self.handles.get(&sender).cloned() {
            Some(Role::Follower(key)) => {
                self.on_room_event(&key, event.data);
                Ok(())
            }
            Some(Role::Subscriber(key)) => match event.data.videoroom.as_str() {
                "updated" => self.on_updated(&key, event),
                "destroyed" => {
                    self.room_destroyed(&key);
                    Ok(())
                }
                _ => {
                    if let Some(error) = event.data.error {
                        let source = self.settings.source.clone();
                        let error = rooms::cut(Some(error)).unwrap_or_default();
                        self.report(format!("Janus ({source}) room {key}: {error}"));
                    }
                    // Simulcast layer switches, slow links: nothing to record.
                    Ok(())
                }
            },
            Some(Role::Control) => Ok(()),
            None => {
                // A handle callrec detached, whose last news was on the way.
                debug!(
                    handle = sender,
                    "news for a handle callrec no longer has; ignoring it"
                );
                Ok(())
            }
        }
    }
}
