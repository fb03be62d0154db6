//! The supervisor: the one owner of the call table.
//!
//! It decides which producers to record and which call each belongs to, starts sessions,
//! routes signalling events to call tasks, keeps each call alive through its linger, and
//! drains every call on shutdown within the grace period. A reload hands it new settings
//! (see [`SettingsUpdate`]); calls already running keep the settings they started with.
//!
//! Events come from several sources (`[[source]]`), each with its own signalling client.
//! Peer and session ids are unique within one source only, so every table is keyed by
//! [`SourceId`] as well, a call belongs to one source, and commands go back to the client
//! its events came from.

mod grouping;
mod rooms;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::call::{self, CallCmd, CallId, CallNote, CallSettings, SessionKind};
use crate::config::{self, Config};
use crate::offline::post::{PostPlan, PostQueue};
use crate::recording::CallStatus;
use crate::signalling::{SignalCommand, SignalEvent};
use crate::templates::{Scope, Template, TemplateError, TemplateSet};
pub use grouping::{call_key, matches_filter};

/// How long stopping waits for running post-processing to notice and clean up.
const POST_STOP_GRACE: Duration = Duration::from_secs(5);
/// Room for the calls' reports to the supervisor.
const NOTE_QUEUE: usize = 1024;
/// Producers refused for want of room (`max_calls`, `min_free_mb`) that are remembered and
/// admitted once there is room again; beyond this many, the oldest are forgotten.
const MAX_WAITING: usize = 10_000;

/// Settings derived from the config. A reload replaces them for calls that start afterwards.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// The parsed config.
    pub config: Config,
    /// The templates every call runs.
    pub templates: Arc<Vec<Template>>,
    /// Fallback for tracks that arrive after their participant's file started.
    pub late_track_template: Option<Template>,
    /// The `post` templates run over each finished call.
    pub post_templates: Vec<Template>,
}

impl SupervisorSettings {
    /// Selects the configured templates from a loaded set: `[recording] templates` must be
    /// live scopes, `[post] templates` must be `post` scope.
    pub fn new(config: Config, set: &TemplateSet) -> Result<Self, crate::templates::TemplateError> {
        let templates = set.select(&config.recording.templates)?;
        let post_templates = set.select(&config.post.templates)?;
        let misplaced = |t: &Template, list: &str, hint: &str| TemplateError::Syntax {
            path: t.path.clone(),
            line: 1,
            message: format!(
                "template {} has scope {} and cannot be listed in {list}; {hint}",
                t.name, t.scope
            ),
        };
        if let Some(t) = templates.iter().find(|t| t.scope == Scope::Post) {
            return Err(misplaced(
                t,
                "[recording] templates",
                "list it in [post] templates",
            ));
        }
        if let Some(t) = post_templates.iter().find(|t| t.scope != Scope::Post) {
            return Err(misplaced(
                t,
                "[post] templates",
                "only `# scope: post` templates run after a call",
            ));
        }
        // `track-mkv` if there is one, else any track template: one file for the late track.
        let track_templates = || set.all().iter().filter(|t| t.scope == Scope::Track);
        let late_track_template = track_templates()
            .find(|t| t.name == "track-mkv")
            .or_else(|| track_templates().find(|t| t.layers == crate::templates::Layers::Best))
            .or_else(|| track_templates().next())
            .cloned();
        Ok(Self {
            config,
            templates: Arc::new(templates),
            late_track_template,
            post_templates,
        })
    }
}

/// New settings from a reload, and who to tell once the supervisor uses them.
#[derive(Debug)]
pub struct SettingsUpdate {
    /// The settings for calls that start from now on.
    pub settings: SupervisorSettings,
    /// Fired once they are in use, so the daemon tells systemd only then.
    pub applied: oneshot::Sender<()>,
}

/// A configured source: its index in [`Config::sources`] (a reload keeps the list, see
/// [`Config::keep_restart_only`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub usize);

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "source #{}", self.0)
    }
}

/// A peer or session id, with the source it belongs to.
type SourcedId = (SourceId, String);

struct CallHandle {
    /// The grouping key it was started for (see [`call_key`]), with its source's index.
    key: String,
    /// Where its producers come from: its sessions' commands go to that client.
    source: SourceId,
    name: String,
    /// The linger the call started with (a reload changes it for new calls only).
    linger: Duration,
    tx: mpsc::Sender<CallCmd>,
    sessions: usize,
    pending: usize,
    empty_since: Option<Instant>,
    /// Told to finish (its linger ran out); it no longer takes sessions.
    finishing: bool,
    /// Remote candidates dropped because the call's queue was full (logged once).
    dropped_ice: u64,
    /// What runs over its recordings once it has ended, fixed when it started.
    post: PostPlan,
    /// The room it records, for a room's call (see [`rooms`]).
    room: Option<SourcedId>,
}

struct PendingStart {
    call: CallId,
    meta: Value,
    asked_at: Instant,
    /// Who offers, and whether it is a room's session (see [`rooms`]).
    kind: SessionKind,
}

/// The call table and its routing.
pub struct Supervisor {
    settings: SupervisorSettings,
    /// Every call task still running, finishing ones included.
    calls: HashMap<CallId, CallHandle>,
    /// The call that new producers of a key join (finishing calls are not here).
    by_key: HashMap<String, CallId>,
    next_id: u64,
    pending: HashMap<SourcedId, PendingStart>,
    sessions: HashMap<SourcedId, CallId>,
    /// Each producer's session (the session id, of the same source).
    producers_in_session: HashMap<SourcedId, String>,
    /// Session ends a signalling client had no room for; retried every tick.
    unsent_ends: Vec<SourcedId>,
    /// Producers refused for want of room, oldest first, with their meta: they are admitted
    /// when a call ends or space is freed (the server announces a producer only once).
    waiting: std::collections::VecDeque<(SourcedId, Option<Value>)>,
    /// When waiting producers were last tried.
    last_admission: Instant,
    /// The rooms each source follows (see [`rooms`]).
    rooms: HashMap<SourcedId, rooms::RoomEntry>,
    /// When rooms refused for want of room were last tried.
    last_room_admission: Instant,
    /// Each source's signalling client, by [`SourceId`].
    signal_txs: Vec<mpsc::Sender<SignalCommand>>,
    notes_tx: mpsc::Sender<CallNote>,
    notes_rx: mpsc::Receiver<CallNote>,
    tracker: TaskTracker,
    draining: bool,
    post: PostQueue,
}

/// How the daemon's run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every call finished within the grace period.
    Clean,
    /// Some calls were still finishing when the grace period ran out.
    TimedOut(usize),
}

impl Supervisor {
    /// A supervisor that sends each source's signalling commands through its entry of
    /// `signal_txs` (one per configured source, in order).
    pub fn new(settings: SupervisorSettings, signal_txs: Vec<mpsc::Sender<SignalCommand>>) -> Self {
        let (notes_tx, notes_rx) = mpsc::channel(NOTE_QUEUE);
        let post = PostQueue::new(settings.config.post.concurrency);
        post.resume(
            &settings.config.recording.dir,
            &settings.post_templates,
            config::secs(settings.config.post.timeout_secs),
        );
        Self {
            post,
            settings,
            calls: HashMap::new(),
            by_key: HashMap::new(),
            next_id: 0,
            pending: HashMap::new(),
            sessions: HashMap::new(),
            producers_in_session: HashMap::new(),
            unsent_ends: vec![],
            waiting: std::collections::VecDeque::new(),
            last_admission: Instant::now(),
            rooms: HashMap::new(),
            last_room_admission: Instant::now(),
            signal_txs,
            notes_tx,
            notes_rx,
            tracker: TaskTracker::new(),
            draining: false,
        }
    }

    /// Runs until `shutdown` fires, then drains every call within the grace period.
    /// `on_event` is told of every signalling event first (the daemon uses it for sd_notify).
    /// Settings arriving on `updates` apply to calls started after them.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<(SourceId, SignalEvent)>,
        mut updates: mpsc::Receiver<SettingsUpdate>,
        shutdown: CancellationToken,
        mut on_event: impl FnMut(SourceId, &SignalEvent),
    ) -> Drained {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = events.recv() => match ev {
                    Some((source, ev)) => {
                        on_event(source, &ev);
                        self.on_signal(source, ev);
                    }
                    None => break,
                },
                Some(note) = self.notes_rx.recv() => self.on_note(note),
                Some(update) = updates.recv() => self.apply(update),
                _ = tick.tick() => self.on_tick(),
            }
        }
        self.drain().await
    }

    /// Uses reloaded settings from now on. Running calls hold their own snapshot
    /// ([`CallSettings`]), so they finish with what they started with.
    fn apply(&mut self, update: SettingsUpdate) {
        self.settings = update.settings;
        debug!(
            calls = self.calls.len(),
            "new settings in use for calls that start from now on"
        );
        let _ = update.applied.send(());
    }

    /// The name of a source, for logs.
    fn source_name(&self, source: SourceId) -> &str {
        self.settings
            .config
            .sources
            .get(source.0)
            .map_or("?", |s| s.name.as_str())
    }

    fn on_signal(&mut self, source: SourceId, ev: SignalEvent) {
        match ev {
            SignalEvent::Connected => {
                info!(source = %self.source_name(source), "registered with the signalling server")
            }
            SignalEvent::Disconnected { .. } => {
                // The server forgets sessions it had not started yet, and lists its producers
                // again on reconnect. Other sources are not concerned.
                self.pending.retain(|(s, _), _| *s != source);
                self.waiting.retain(|((s, _), _)| *s != source);
                self.recount_pending();
            }
            SignalEvent::ProducerAdded { peer_id, meta } => {
                self.on_producer((source, peer_id), meta)
            }
            SignalEvent::ProducerRemoved { peer_id } => {
                let peer = (source, peer_id);
                self.waiting.retain(|(p, _)| *p != peer);
                if self.pending.remove(&peer).is_some() {
                    self.recount_pending();
                }
            }
            SignalEvent::SessionStarted {
                session_id,
                peer_id,
            } => {
                let Some(start) = self.pending.remove(&(source, peer_id.clone())) else {
                    warn!(%session_id, %peer_id, source = %self.source_name(source), "a session started that callrec did not ask for; ending it");
                    self.end_remote((source, session_id));
                    return;
                };
                self.recount_pending();
                let Some(call) = self.calls.get_mut(&start.call).filter(|c| !c.finishing) else {
                    self.end_remote((source, session_id));
                    return;
                };
                let cmd = CallCmd::StartSession {
                    session_id: session_id.clone(),
                    peer_id: peer_id.clone(),
                    meta: start.meta,
                    kind: start.kind,
                };
                if let Err(e) = call.tx.try_send(cmd) {
                    warn!(call = %call.name, %peer_id, "not recording: the call is not keeping up ({e})");
                    self.end_remote((source, session_id));
                    return;
                }
                call.sessions += 1;
                call.empty_since = None;
                self.sessions
                    .insert((source, session_id.clone()), start.call);
                self.producers_in_session
                    .insert((source, peer_id), session_id);
            }
            SignalEvent::Offer { session_id, sdp } => {
                let cmd = CallCmd::Offer {
                    session_id: session_id.clone(),
                    sdp,
                };
                self.route((source, session_id), cmd);
            }
            SignalEvent::Answer { session_id, sdp } => {
                // The call checks that it offered (and ends the session if not).
                let cmd = CallCmd::Answer {
                    session_id: session_id.clone(),
                    sdp,
                };
                self.route((source, session_id), cmd);
            }
            SignalEvent::Ice {
                session_id,
                candidate,
                mline_index,
            } => {
                let cmd = CallCmd::Ice {
                    session_id: session_id.clone(),
                    mline: mline_index,
                    candidate,
                };
                self.route((source, session_id), cmd);
            }
            SignalEvent::SessionEnded { session_id } => {
                let cmd = CallCmd::RemoteEnded {
                    session_id: session_id.clone(),
                    reason: "session ended by the producer or the server".into(),
                };
                self.route((source, session_id), cmd);
            }
            SignalEvent::ServerError { details } => {
                warn!(source = %self.source_name(source), details = %details.chars().take(500).collect::<String>(), "signalling server reported an error");
            }
            SignalEvent::RoomAdded { room } => self.on_room_added(source, room),
            SignalEvent::RoomRemoved { room_id, reason } => {
                self.on_room_removed(source, room_id, &reason)
            }
            SignalEvent::ParticipantAdded {
                room_id,
                participant,
            } => self.on_participant_added(source, room_id, participant),
            SignalEvent::ParticipantRemoved {
                room_id,
                participant_id,
                reason,
            } => self.on_participant_removed(source, room_id, participant_id, reason),
            SignalEvent::StreamsChanged {
                session_id,
                streams,
            } => {
                let cmd = CallCmd::StreamsChanged {
                    session_id: session_id.clone(),
                    streams,
                };
                self.route((source, session_id), cmd);
            }
        }
    }

    /// A producer appeared: decide whether and where to record it, and start a session.
    fn on_producer(&mut self, peer: SourcedId, meta: Option<Value>) {
        if self.draining
            || self.pending.contains_key(&peer)
            || self.producers_in_session.contains_key(&peer)
        {
            return;
        }
        let (source, peer_id) = (peer.0, peer.1.as_str());
        let Some(source_config) = self.settings.config.sources.get(source.0) else {
            return;
        };
        let meta = meta.unwrap_or(Value::Null);
        let rec = &self.settings.config.recording;
        if !matches_filter(&meta, &rec.filter) {
            debug!(%peer_id, "producer does not match [recording.filter]; not recording it");
            return;
        }
        let (key, name) = call_key(peer_id, &meta, &rec.group_key);
        let key = format!("{}/{key}", source.0);
        let name = source_config.call_name(&name);
        let id = match self.by_key.get(&key) {
            Some(&id) => id,
            None => {
                if let Some(why) = self.refusal() {
                    warn!(%peer_id, call = %name, "not recording: {why}; it will be recorded once there is room");
                    self.wait_for_room(peer, meta);
                    return;
                }
                match self.start_call(source, &key, &name) {
                    Ok(id) => id,
                    Err(e) => {
                        warn!(%peer_id, call = %name, "not recording: {e}");
                        return;
                    }
                }
            }
        };
        // Where callrec offers, the call makes the offer and sends `StartSession` with it.
        let offerer = self
            .settings
            .config
            .sources
            .get(source.0)
            .map_or(config::Offerer::Producer, |s| s.offerer);
        let kind = match offerer {
            config::Offerer::Producer => SessionKind::ProducerOffers,
            config::Offerer::Callrec => SessionKind::CallrecOffers,
        };
        let sent = if kind == SessionKind::CallrecOffers {
            let prepare = CallCmd::PrepareOffer {
                peer_id: peer_id.to_owned(),
                meta: meta.clone(),
            };
            match self.calls.get(&id) {
                Some(call) => call.tx.try_send(prepare).map_err(|e| e.to_string()),
                None => Err("the call is gone".to_owned()),
            }
        } else {
            let start = SignalCommand::StartSession {
                peer_id: peer_id.to_owned(),
                offer: None,
            };
            match self.signal_tx(source) {
                Some(tx) => tx.try_send(start).map_err(|e| e.to_string()),
                None => Err("the source has no signalling client".to_owned()),
            }
        };
        if let Err(e) = sent {
            warn!(%peer_id, call = %name, "not recording: the signalling client is not keeping up ({e})");
            self.recount_pending();
            return;
        }
        info!(%peer_id, call = %name, "starting a session with producer");
        self.pending.insert(
            peer,
            PendingStart {
                call: id,
                meta,
                asked_at: Instant::now(),
                kind,
            },
        );
        self.recount_pending();
    }

    /// Why a new call cannot start now (`max_calls` reached, the disk below `min_free_mb`),
    /// if it cannot.
    fn refusal(&self) -> Option<String> {
        let rec = &self.settings.config.recording;
        // Finishing calls still count: their pipelines are still running.
        if self.calls.len() >= rec.max_calls {
            return Some(format!(
                "recording.max_calls reached ({} calls)",
                rec.max_calls
            ));
        }
        if rec.min_free_mb > 0 {
            match crate::recording::free_mb(&rec.dir) {
                Ok(free) if free < rec.min_free_mb => {
                    return Some(format!(
                        "the recordings disk {} has {free} MB free, below [recording] min_free_mb ({}); free space or lower the floor",
                        rec.dir.display(),
                        rec.min_free_mb
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(dir = %rec.dir.display(), "cannot read the free space of the recordings directory: {e}");
                }
            }
        }
        None
    }

    /// The signalling client of `source` (there is one for every source configured at
    /// start-up, and every [`SourceId`] comes from one of them).
    fn signal_tx(&self, source: SourceId) -> Option<&mpsc::Sender<SignalCommand>> {
        self.signal_txs.get(source.0)
    }

    /// Remembers a producer refused for want of room, to admit it later (bounded).
    fn wait_for_room(&mut self, peer: SourcedId, meta: Value) {
        if self.waiting.iter().any(|(p, _)| *p == peer) {
            return;
        }
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front();
        }
        self.waiting.push_back((peer, Some(meta)));
    }

    /// Admits waiting producers while there is room: as many as there are free call slots,
    /// oldest first. One still refused goes back to the end of the line.
    fn admit_waiting(&mut self) {
        if self.draining || self.waiting.is_empty() {
            return;
        }
        // Once a second at most, and only when the disk has room: a refused producer is
        // logged again each time it is tried.
        if self.last_admission.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_admission = Instant::now();
        let rec = &self.settings.config.recording;
        if rec.min_free_mb > 0
            && crate::recording::free_mb(&rec.dir).is_ok_and(|free| free < rec.min_free_mb)
        {
            return;
        }
        let room = self
            .settings
            .config
            .recording
            .max_calls
            .saturating_sub(self.calls.len());
        for _ in 0..room.min(self.waiting.len()) {
            let Some((peer, meta)) = self.waiting.pop_front() else {
                break;
            };
            self.on_producer(peer, meta);
        }
    }

    fn start_call(&mut self, source: SourceId, key: &str, name: &str) -> Result<CallId, String> {
        let cfg = &self.settings.config;
        let source_config = cfg
            .sources
            .get(source.0)
            .ok_or_else(|| format!("{source} is not configured"))?;
        let signal_tx = self
            .signal_tx(source)
            .ok_or_else(|| format!("{source} has no signalling client"))?
            .clone();
        let settings = CallSettings {
            name: name.to_owned(),
            recordings_dir: cfg.recording.dir.clone(),
            templates: self.settings.templates.clone(),
            late_track_template: self.settings.late_track_template.clone(),
            ice: cfg.ice.clone(),
            track_wait: config::secs(cfg.recording.track_wait_secs),
            keyframe_interval: Duration::from_millis(cfg.recording.keyframe_request_interval_ms),
            negotiation_timeout: config::secs(source_config.negotiation_timeout_secs),
            source: source_config.name.clone(),
            media_timeout: config::secs(cfg.recording.media_timeout_secs),
            graphs: cfg.debug.graphs,
        };
        // Fixed now, so a reload changes post-processing only for calls that start later.
        let post = PostPlan {
            templates: self.settings.post_templates.clone(),
            timeout: config::secs(cfg.post.timeout_secs),
        };
        let (tx, rx) = mpsc::channel(call::COMMAND_QUEUE);
        self.next_id += 1;
        let id = CallId(self.next_id);
        let handle = call::spawn(id, settings, rx, self.notes_tx.clone(), signal_tx)?;
        // The tracker waits on the call's task on shutdown.
        self.tracker.spawn(async move {
            let _ = handle.await;
        });
        self.calls.insert(
            id,
            CallHandle {
                key: key.to_owned(),
                source,
                name: name.to_owned(),
                linger: config::secs(self.settings.config.recording.linger_secs),
                tx,
                sessions: 0,
                pending: 0,
                empty_since: None,
                finishing: false,
                dropped_ice: 0,
                post,
                room: None,
            },
        );
        self.by_key.insert(key.to_owned(), id);
        Ok(id)
    }

    /// Hands a signalling message to the session's call without waiting. A call's queue is
    /// full only when a producer floods it: extra candidates are dropped, and anything else
    /// that does not fit ends that session (and nothing else).
    fn route(&mut self, session: SourcedId, cmd: CallCmd) {
        let session_id = session.1.as_str();
        let Some(call) = self
            .sessions
            .get(&session)
            .and_then(|id| self.calls.get_mut(id))
        else {
            debug!(%session_id, "signalling message for a session callrec does not have; ignoring");
            return;
        };
        match call.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(CallCmd::Ice { .. })) => {
                call.dropped_ice += 1;
                if call.dropped_ice == 1 {
                    warn!(call = %call.name, %session_id, "the call's queue is full; dropping ICE candidates");
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(call = %call.name, %session_id, "the call's queue is full (a producer is flooding it); ending the session");
                self.end_remote(session);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!(%session_id, "the call has ended; ignoring a signalling message");
            }
        }
    }

    /// Asks the server to end a session, now or on a later tick if the client has no room.
    fn end_remote(&mut self, (source, session_id): SourcedId) {
        let Some(tx) = self.signal_tx(source) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(SignalCommand::EndSession { session_id })) =
            tx.try_send(SignalCommand::EndSession { session_id })
        {
            self.unsent_ends.push((source, session_id));
        }
    }

    fn on_note(&mut self, note: CallNote) {
        match note {
            CallNote::SessionClosed {
                call,
                session_id,
                reason,
            } => {
                let Some(source) = self.calls.get(&call).map(|c| c.source) else {
                    return;
                };
                let session = (source, session_id);
                if self.sessions.get(&session) == Some(&call) {
                    self.sessions.remove(&session);
                    self.producers_in_session
                        .retain(|(s, _), id| *s != source || *id != session.1);
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.sessions = c.sessions.saturating_sub(1);
                    }
                    self.recount_pending();
                }
                debug!(session_id = %session.1, %reason, "session closed");
                // Harmless if the server already ended it.
                self.end_remote(session);
            }
            CallNote::Ended { call, status, dir } => {
                debug!(%call, ?status, "call task ended");
                if let Some(post) = self.forget_call(call) {
                    self.post_process(dir, status, post);
                }
            }
        }
    }

    /// Queues the call's post-processing (fixed when it started) if it ended well and left
    /// recordings.
    fn post_process(&self, dir: Option<std::path::PathBuf>, status: CallStatus, plan: PostPlan) {
        let Some(dir) = dir else { return };
        if status == CallStatus::Complete {
            self.post.submit(dir, plan);
        }
    }

    /// Forgets a call whose task has ended. Only that call: a successor with the same key
    /// keeps its handle, sessions and pending starts.
    /// Returns the call's post-processing plan.
    fn forget_call(&mut self, id: CallId) -> Option<PostPlan> {
        let handle = self.calls.remove(&id)?;
        if self.by_key.get(&handle.key) == Some(&id) {
            self.by_key.remove(&handle.key);
        }
        self.sessions.retain(|_, c| *c != id);
        let live: std::collections::HashSet<(SourceId, &str)> = self
            .sessions
            .keys()
            .map(|(s, id)| (*s, id.as_str()))
            .collect();
        self.producers_in_session
            .retain(|(source, _), session| live.contains(&(*source, session.as_str())));
        self.pending.retain(|_, p| p.call != id);
        Some(handle.post)
    }

    /// Tells a call to finish; it stops taking producers at once, so a group that meets again
    /// gets a new call while this one finalises.
    fn finish_call(&mut self, id: CallId, reason: &str) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.finishing {
            let cmd = CallCmd::Finish {
                reason: reason.to_owned(),
            };
            if call.tx.try_send(cmd).is_err() {
                // Full: try again on the next tick (a closed queue means it already ended).
                if !call.tx.is_closed() {
                    return;
                }
            }
            call.finishing = true;
        }
        if self.by_key.get(&call.key) == Some(&id) {
            self.by_key.remove(&call.key);
        }
        self.pending.retain(|_, p| p.call != id);
    }

    fn recount_pending(&mut self) {
        for call in self.calls.values_mut() {
            call.pending = 0;
        }
        for p in self.pending.values() {
            if let Some(call) = self.calls.get_mut(&p.call) {
                call.pending += 1;
            }
        }
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            let Some(call) = self.calls.get(&id) else {
                continue;
            };
            // A room's call is empty when nobody publishes there, whatever its session.
            let nobody = self.room_is_empty(call).unwrap_or(call.sessions == 0);
            let empty = nobody && call.pending == 0;
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            if empty {
                call.empty_since.get_or_insert_with(Instant::now);
            } else {
                call.empty_since = None;
            }
        }
    }

    /// Expires unanswered session starts and finishes calls whose linger is over.
    fn on_tick(&mut self) {
        let sources = &self.settings.config.sources;
        let before = self.pending.len();
        self.pending.retain(|(source, peer), p| {
            let timeout = sources
                .get(source.0)
                .map_or(Duration::ZERO, |s| config::secs(s.negotiation_timeout_secs));
            let keep = p.asked_at.elapsed() < timeout;
            if !keep {
                warn!(peer_id = %peer, %source, "the server never started the session; giving up on this producer");
            }
            keep
        });
        if self.pending.len() != before {
            self.recount_pending();
        }
        let done: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| !c.finishing)
            .filter(|(_, c)| c.empty_since.is_some_and(|t| t.elapsed() >= c.linger))
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            if let Some(call) = self.calls.get(&id) {
                info!(call = %call.name, "last participant left and the linger is over; finishing the call");
            }
            self.finish_call(id, "all participants left");
        }
        let unsent = std::mem::take(&mut self.unsent_ends);
        for session in unsent {
            self.end_remote(session);
        }
        let admit = self.last_room_admission.elapsed() >= Duration::from_secs(1);
        if admit {
            self.last_room_admission = Instant::now();
        }
        self.tend_rooms(admit);
        self.admit_waiting();
    }

    /// Finishes every call, bounded by the grace period.
    async fn drain(mut self) -> Drained {
        self.draining = true;
        // Finalising calls comes first: post-processing stops now, and the calls that end
        // while draining only get their jobs marked `queued` for the next start.
        self.post.cancel();
        let grace = config::secs(self.settings.config.recording.stop_grace_secs);
        info!(
            calls = self.calls.len(),
            grace_s = grace.as_secs_f64(),
            "stopping: finalising every call"
        );
        for call in self.calls.values() {
            // A full queue drains fast (calls never wait in their loop), so a short wait
            // suffices; the grace period below bounds the whole drain anyway.
            let finish = call.tx.send(CallCmd::Finish {
                reason: "callrec is shutting down".into(),
            });
            let _ = tokio::time::timeout(Duration::from_secs(1), finish).await;
        }
        self.tracker.close();
        let tracker = self.tracker.clone();
        let waiting = tracker.wait();
        tokio::pin!(waiting);
        let deadline = tokio::time::Instant::now() + grace;
        let drained = loop {
            tokio::select! {
                _ = &mut waiting => break Drained::Clean,
                Some(note) = self.notes_rx.recv() => self.on_draining_note(note),
                _ = tokio::time::sleep_until(deadline) => {
                    break Drained::TimedOut(self.tracker.len());
                }
            }
        };
        while let Ok(note) = self.notes_rx.try_recv() {
            self.on_draining_note(note);
        }
        // Post-processing stops here; what did not finish stays queued for the next start.
        self.post.stop(POST_STOP_GRACE).await;
        drained
    }

    /// While draining, session closes still ask the server to end sessions, and calls that
    /// end get their post-processing queued (it runs on the next start).
    fn on_draining_note(&self, note: CallNote) {
        match note {
            CallNote::SessionClosed {
                call, session_id, ..
            } => {
                let tx = self.calls.get(&call).and_then(|c| self.signal_tx(c.source));
                if let Some(tx) = tx {
                    let _ = tx.try_send(SignalCommand::EndSession { session_id });
                }
            }
            CallNote::Ended { call, status, dir } => {
                if let Some(handle) = self.calls.get(&call) {
                    self.post_process(dir, status, handle.post.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Peer `id` of the first source.
    fn peer(id: &str) -> SourcedId {
        (SourceId(0), id.to_owned())
    }

    /// A supervisor recording into `rec` with the shipped templates and `recording` extra
    /// `[recording]` lines, and the receiving end of its signalling commands.
    fn supervisor(
        rec: &std::path::Path,
        recording: &str,
    ) -> (Supervisor, mpsc::Receiver<SignalCommand>) {
        gst::init().unwrap();
        let pipelines = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");
        let config = Config::parse(&format!(
            "[signalling]\nurl = \"ws://127.0.0.1:9\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{pipelines}\"\n{recording}",
            rec.display()
        ))
        .unwrap();
        let set = TemplateSet::load_dir(std::path::Path::new(pipelines)).unwrap();
        let (signal_tx, signal_rx) = mpsc::channel(64);
        let sup = Supervisor::new(
            SupervisorSettings::new(config, &set).unwrap(),
            vec![signal_tx],
        );
        (sup, signal_rx)
    }

    /// A group that meets again while its previous call is still finishing gets a new call,
    /// and the old call's end does not touch the new one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_ending_late_does_not_drop_its_successor() {
        let rec = tempfile::tempdir().unwrap();
        let (mut sup, mut signal_rx) = supervisor(rec.path(), "");
        let meta = json!({"call": "standup"});
        sup.on_producer(peer("p1"), Some(meta.clone()));
        let first = *sup.by_key.get("0/g:standup").expect("a call for the group");
        // Its linger ran out: it is told to finish and takes no one new.
        sup.finish_call(first, "all participants left");
        assert!(!sup.by_key.contains_key("0/g:standup"));
        // The group meets again before the old task has ended.
        sup.on_producer(peer("p2"), Some(meta));
        let second = *sup.by_key.get("0/g:standup").expect("a new call");
        assert_ne!(first, second);
        assert_eq!(sup.pending[&peer("p2")].call, second);
        // Now the old call's end arrives.
        let ended = CallNote::Ended {
            call: first,
            status: CallStatus::Complete,
            dir: None,
        };
        sup.on_note(ended);
        assert!(!sup.calls.contains_key(&first));
        assert!(
            sup.calls.contains_key(&second),
            "the new call keeps its handle"
        );
        assert_eq!(sup.by_key.get("0/g:standup"), Some(&second));
        assert_eq!(
            sup.pending[&peer("p2")].call,
            second,
            "and its pending start"
        );
        while signal_rx.try_recv().is_ok() {}
        sup.drain().await;
    }

    /// A producer refused at `max_calls` is recorded once a call has ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn producers_refused_for_room_are_admitted_later() {
        let rec = tempfile::tempdir().unwrap();
        let (mut sup, mut signal_rx) = supervisor(rec.path(), "max_calls = 1\nmin_free_mb = 0\n");
        sup.on_producer(peer("a"), Some(json!({"call": "one"})));
        sup.on_producer(peer("b"), Some(json!({"call": "two"})));
        assert!(sup.pending.contains_key(&peer("a")));
        assert!(
            !sup.pending.contains_key(&peer("b")),
            "refused: max_calls is 1"
        );
        assert_eq!(sup.waiting.len(), 1);
        let first = *sup.by_key.get("0/g:one").unwrap();
        sup.on_note(CallNote::Ended {
            call: first,
            status: CallStatus::Complete,
            dir: None,
        });
        sup.last_admission = Instant::now() - Duration::from_secs(2);
        sup.on_tick();
        assert!(
            sup.pending.contains_key(&peer("b")),
            "admitted once the call ended"
        );
        assert!(sup.waiting.is_empty());
        // A producer that leaves while waiting is forgotten.
        sup.on_producer(peer("c"), Some(json!({"call": "three"})));
        assert_eq!(sup.waiting.len(), 1);
        sup.on_signal(
            SourceId(0),
            SignalEvent::ProducerRemoved {
                peer_id: "c".into(),
            },
        );
        assert!(sup.waiting.is_empty());
        while signal_rx.try_recv().is_ok() {}
        sup.drain().await;
    }

    /// Two sources with the same peer ids and group names: separate calls, commands to the
    /// right client, and one source's disconnection leaves the other's starts alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sources_are_kept_apart() {
        gst::init().unwrap();
        let rec = tempfile::tempdir().unwrap();
        let pipelines = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");
        let config = Config::parse(&format!(
            "[[source]]\nname = \"a\"\nprotocol = \"gst-webrtc\"\nurl = \"ws://127.0.0.1:9\"\n\
             [[source]]\nname = \"b\"\nprotocol = \"gst-webrtc\"\nurl = \"ws://127.0.0.1:10\"\n\
             [recording]\ndir = \"{}\"\npipelines_dir = \"{pipelines}\"\n",
            rec.path().display()
        ))
        .unwrap();
        let set = TemplateSet::load_dir(std::path::Path::new(pipelines)).unwrap();
        let (tx_a, mut rx_a) = mpsc::channel(64);
        let (tx_b, mut rx_b) = mpsc::channel(64);
        let mut sup = Supervisor::new(
            SupervisorSettings::new(config, &set).unwrap(),
            vec![tx_a, tx_b],
        );
        let meta = json!({"call": "standup"});
        let (a, b) = (SourceId(0), SourceId(1));
        sup.on_producer((a, "p1".into()), Some(meta.clone()));
        sup.on_producer((b, "p1".into()), Some(meta.clone()));
        let call_a = sup.by_key["0/g:standup"];
        let call_b = sup.by_key["1/g:standup"];
        assert_ne!(call_a, call_b);
        assert_eq!(sup.calls[&call_a].name, "a-standup");
        assert_eq!(sup.calls[&call_b].name, "b-standup");
        let started = |rx: &mut mpsc::Receiver<SignalCommand>| matches!(rx.try_recv(), Ok(SignalCommand::StartSession { peer_id, .. }) if peer_id == "p1");
        assert!(started(&mut rx_a) && started(&mut rx_b));
        // The same session id from both servers goes to each source's own call.
        for source in [a, b] {
            sup.on_signal(
                source,
                SignalEvent::SessionStarted {
                    session_id: "s1".into(),
                    peer_id: "p1".into(),
                },
            );
        }
        assert_eq!(sup.sessions[&(a, "s1".to_owned())], call_a);
        assert_eq!(sup.sessions[&(b, "s1".to_owned())], call_b);
        // A second producer waits for its session on each; source a drops its connection.
        sup.on_producer((a, "p2".into()), Some(meta.clone()));
        sup.on_producer((b, "p2".into()), Some(meta));
        sup.on_signal(
            a,
            SignalEvent::Disconnected {
                reason: "test".into(),
            },
        );
        assert!(!sup.pending.contains_key(&(a, "p2".to_owned())));
        assert!(sup.pending.contains_key(&(b, "p2".to_owned())));
        // A session ending on source b is ended on b's client only.
        while rx_a.try_recv().is_ok() {}
        while rx_b.try_recv().is_ok() {}
        sup.on_note(CallNote::SessionClosed {
            call: call_b,
            session_id: "s1".into(),
            reason: "test".into(),
        });
        assert!(
            matches!(rx_b.try_recv(), Ok(SignalCommand::EndSession { session_id }) if session_id == "s1")
        );
        assert!(rx_a.try_recv().is_err());
        assert_eq!(
            sup.sessions[&(a, "s1".to_owned())],
            call_a,
            "a's session is untouched"
        );
        sup.drain().await;
    }

    /// A room: its first publisher starts the call and asks for the room's one session;
    /// later publishers only join; the call lingers once nobody publishes, and a filter on
    /// the participant's meta leaves others out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_room_is_one_call_with_one_session() {
        use crate::signalling::{ParticipantInfo, RoomInfo};
        gst::init().unwrap();
        let rec = tempfile::tempdir().unwrap();
        let pipelines = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");
        let config = Config::parse(&format!(
            "[[source]]\nname = \"j\"\nprotocol = \"janus\"\nurl = \"ws://127.0.0.1:9\"\nrooms = [1234]\n\
             [recording]\ndir = \"{}\"\npipelines_dir = \"{pipelines}\"\n[recording.filter]\nrecord = \"yes\"\n",
            rec.path().display()
        ))
        .unwrap();
        let set = TemplateSet::load_dir(std::path::Path::new(pipelines)).unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let mut sup = Supervisor::new(SupervisorSettings::new(config, &set).unwrap(), vec![tx]);
        let j = SourceId(0);
        let who = |id: &str, record: &str| ParticipantInfo {
            id: id.into(),
            display: Some(id.into()),
            meta: json!({"room": 1234, "feed": id, "name": id, "record": record}),
        };
        sup.on_signal(
            j,
            SignalEvent::RoomAdded {
                room: RoomInfo {
                    id: "1234".into(),
                    source: "j".into(),
                    description: None,
                    meta: json!({"source": "j", "room": 1234}),
                },
            },
        );
        assert!(sup.calls.is_empty(), "nobody publishes yet");
        // Filtered out: no call.
        sup.on_signal(
            j,
            SignalEvent::ParticipantAdded {
                room_id: "1234".into(),
                participant: who("carol", "no"),
            },
        );
        assert!(sup.calls.is_empty());
        sup.on_signal(
            j,
            SignalEvent::ParticipantAdded {
                room_id: "1234".into(),
                participant: who("alice", "yes"),
            },
        );
        let call = sup.by_key["0/r:1234"];
        assert_eq!(sup.calls[&call].name, "j-1234");
        assert!(
            matches!(rx.try_recv(), Ok(SignalCommand::StartSession { peer_id, offer: None }) if peer_id == "1234")
        );
        assert_eq!(sup.pending[&(j, "1234".to_owned())].kind, SessionKind::Room);
        sup.on_signal(
            j,
            SignalEvent::ParticipantAdded {
                room_id: "1234".into(),
                participant: who("bob", "yes"),
            },
        );
        assert!(rx.try_recv().is_err(), "one session for the room");
        sup.on_signal(
            j,
            SignalEvent::SessionStarted {
                session_id: "77".into(),
                peer_id: "1234".into(),
            },
        );
        assert_eq!(sup.sessions[&(j, "77".to_owned())], call);
        sup.on_tick();
        assert!(rx.try_recv().is_err(), "the room has its session");
        assert!(sup.calls[&call].empty_since.is_none());
        for id in ["alice", "bob"] {
            sup.on_signal(
                j,
                SignalEvent::ParticipantRemoved {
                    room_id: "1234".into(),
                    participant_id: id.into(),
                    reason: "left".into(),
                },
            );
        }
        assert!(
            sup.calls[&call].empty_since.is_some(),
            "nobody publishes: the linger runs, though the session is up"
        );
        // The session ends (the server restarted, say) while someone publishes again: the
        // same call asks for a new session.
        sup.on_note(CallNote::SessionClosed {
            call,
            session_id: "77".into(),
            reason: "test".into(),
        });
        while rx.try_recv().is_ok() {}
        sup.on_signal(
            j,
            SignalEvent::ParticipantAdded {
                room_id: "1234".into(),
                participant: who("alice", "yes"),
            },
        );
        assert_eq!(sup.by_key["0/r:1234"], call);
        assert!(sup.calls[&call].empty_since.is_none());
        assert!(
            matches!(rx.try_recv(), Ok(SignalCommand::StartSession { peer_id, .. }) if peer_id == "1234")
        );
        sup.on_signal(
            j,
            SignalEvent::RoomRemoved {
                room_id: "1234".into(),
                reason: "destroyed".into(),
            },
        );
        assert!(!sup.pending.contains_key(&(j, "1234".to_owned())));
        sup.drain().await;
    }
}
