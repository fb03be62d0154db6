//! The supervisor: the one owner of the call table.
//!
//! It decides which producers to record and which call each belongs to, starts sessions,
//! routes signalling events to call tasks, keeps each call alive through its linger, and
//! drains every call on shutdown within the grace period. A reload hands it new settings
//! (see [`SettingsUpdate`]); calls already running keep the settings they started with.

mod grouping;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::call::{self, CallCmd, CallId, CallNote, CallSettings};
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
        let late_track_template = set.all().iter().find(|t| t.scope == Scope::Track).cloned();
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

struct CallHandle {
    /// The grouping key it was started for (see [`call_key`]).
    key: String,
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
}

struct PendingStart {
    call: CallId,
    meta: Value,
    asked_at: Instant,
}

/// The call table and its routing.
pub struct Supervisor {
    settings: SupervisorSettings,
    /// Every call task still running, finishing ones included.
    calls: HashMap<CallId, CallHandle>,
    /// The call that new producers of a key join (finishing calls are not here).
    by_key: HashMap<String, CallId>,
    next_id: u64,
    pending: HashMap<String, PendingStart>,
    sessions: HashMap<String, CallId>,
    producers_in_session: HashMap<String, String>,
    /// Session ends the signalling client had no room for; retried every tick.
    unsent_ends: Vec<String>,
    /// Producers refused for want of room, oldest first, with their meta: they are admitted
    /// when a call ends or space is freed (the server announces a producer only once).
    waiting: std::collections::VecDeque<(String, Option<Value>)>,
    /// When waiting producers were last tried.
    last_admission: Instant,
    signal_tx: mpsc::Sender<SignalCommand>,
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
    /// A supervisor that sends signalling commands through `signal_tx`.
    pub fn new(settings: SupervisorSettings, signal_tx: mpsc::Sender<SignalCommand>) -> Self {
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
            signal_tx,
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
        mut events: mpsc::Receiver<SignalEvent>,
        mut updates: mpsc::Receiver<SettingsUpdate>,
        shutdown: CancellationToken,
        mut on_event: impl FnMut(&SignalEvent),
    ) -> Drained {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = events.recv() => match ev {
                    Some(ev) => {
                        on_event(&ev);
                        self.on_signal(ev);
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

    fn on_signal(&mut self, ev: SignalEvent) {
        match ev {
            SignalEvent::Connected => info!("registered with the signalling server"),
            SignalEvent::Disconnected { .. } => {
                // The server forgets sessions it had not started yet, and lists its producers
                // again on reconnect.
                self.pending.clear();
                self.waiting.clear();
                self.recount_pending();
            }
            SignalEvent::ProducerAdded { peer_id, meta } => self.on_producer(peer_id, meta),
            SignalEvent::ProducerRemoved { peer_id } => {
                self.waiting.retain(|(p, _)| *p != peer_id);
                if self.pending.remove(&peer_id).is_some() {
                    self.recount_pending();
                }
            }
            SignalEvent::SessionStarted {
                session_id,
                peer_id,
            } => {
                let Some(start) = self.pending.remove(&peer_id) else {
                    warn!(%session_id, %peer_id, "a session started that callrec did not ask for; ending it");
                    self.end_remote(session_id);
                    return;
                };
                self.recount_pending();
                let Some(call) = self.calls.get_mut(&start.call).filter(|c| !c.finishing) else {
                    self.end_remote(session_id);
                    return;
                };
                let cmd = CallCmd::StartSession {
                    session_id: session_id.clone(),
                    peer_id: peer_id.clone(),
                    meta: start.meta,
                };
                if let Err(e) = call.tx.try_send(cmd) {
                    warn!(call = %call.name, %peer_id, "not recording: the call is not keeping up ({e})");
                    self.end_remote(session_id);
                    return;
                }
                call.sessions += 1;
                call.empty_since = None;
                self.sessions.insert(session_id.clone(), start.call);
                self.producers_in_session.insert(peer_id, session_id);
            }
            SignalEvent::Offer { session_id, sdp } => {
                self.route(
                    &session_id,
                    CallCmd::Offer {
                        session_id: session_id.clone(),
                        sdp,
                    },
                );
            }
            SignalEvent::Answer { session_id, .. } => {
                warn!(%session_id, "unexpected SDP answer (callrec does not offer); ending the session");
                self.route(
                    &session_id,
                    CallCmd::RemoteEnded {
                        session_id: session_id.clone(),
                        reason: "producer sent an answer to an offer callrec never made".into(),
                    },
                );
            }
            SignalEvent::Ice {
                session_id,
                candidate,
                mline_index,
            } => {
                self.route(
                    &session_id,
                    CallCmd::Ice {
                        session_id: session_id.clone(),
                        mline: mline_index,
                        candidate,
                    },
                );
            }
            SignalEvent::SessionEnded { session_id } => {
                self.route(
                    &session_id,
                    CallCmd::RemoteEnded {
                        session_id: session_id.clone(),
                        reason: "session ended by the producer or the server".into(),
                    },
                );
            }
            SignalEvent::ServerError { details } => {
                warn!(details = %details.chars().take(500).collect::<String>(), "signalling server reported an error");
            }
            // Rooms of several participants over one session (the Janus adapter): no source
            // sends these yet; see `signalling::janus` for what recording them needs.
            SignalEvent::RoomAdded { .. }
            | SignalEvent::RoomRemoved { .. }
            | SignalEvent::ParticipantAdded { .. }
            | SignalEvent::ParticipantRemoved { .. }
            | SignalEvent::StreamsChanged { .. } => {
                debug!(
                    ?ev,
                    "multi-participant session events are not handled yet; ignoring"
                );
            }
        }
    }

    /// A producer appeared: decide whether and where to record it, and start a session.
    fn on_producer(&mut self, peer_id: String, meta: Option<Value>) {
        if self.draining
            || self.pending.contains_key(&peer_id)
            || self.producers_in_session.contains_key(&peer_id)
        {
            return;
        }
        let meta = meta.unwrap_or(Value::Null);
        let rec = &self.settings.config.recording;
        if !matches_filter(&meta, &rec.filter) {
            debug!(%peer_id, "producer does not match [recording.filter]; not recording it");
            return;
        }
        let (key, name) = call_key(&peer_id, &meta, &rec.group_key);
        let id = match self.by_key.get(&key) {
            Some(&id) => id,
            None => {
                // Finishing calls still count: their pipelines are still running.
                if self.calls.len() >= rec.max_calls {
                    warn!(%peer_id, call = %name, max = rec.max_calls, "not recording: recording.max_calls reached; it will be recorded once a call ends");
                    self.wait_for_room(peer_id, meta);
                    return;
                }
                if rec.min_free_mb > 0 {
                    match crate::recording::free_mb(&rec.dir) {
                        Ok(free) if free < rec.min_free_mb => {
                            warn!(%peer_id, call = %name, free_mb = free, min_free_mb = rec.min_free_mb, dir = %rec.dir.display(),
                                "not recording: the recordings disk is below [recording] min_free_mb; free space or lower the floor");
                            self.wait_for_room(peer_id, meta);
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            warn!(dir = %rec.dir.display(), "cannot read the free space of the recordings directory: {e}");
                        }
                    }
                }
                match self.start_call(&key, &name) {
                    Ok(id) => id,
                    Err(e) => {
                        warn!(%peer_id, call = %name, "not recording: {e}");
                        return;
                    }
                }
            }
        };
        let start = SignalCommand::StartSession {
            peer_id: peer_id.clone(),
            offer: None,
        };
        if let Err(e) = self.signal_tx.try_send(start) {
            warn!(%peer_id, call = %name, "not recording: the signalling client is not keeping up ({e})");
            self.recount_pending();
            return;
        }
        self.pending.insert(
            peer_id.clone(),
            PendingStart {
                call: id,
                meta,
                asked_at: Instant::now(),
            },
        );
        self.recount_pending();
        info!(%peer_id, call = %name, "starting a session with producer");
    }

    /// Remembers a producer refused for want of room, to admit it later (bounded).
    fn wait_for_room(&mut self, peer_id: String, meta: Value) {
        if self.waiting.iter().any(|(p, _)| *p == peer_id) {
            return;
        }
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front();
        }
        self.waiting.push_back((peer_id, Some(meta)));
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
            let Some((peer_id, meta)) = self.waiting.pop_front() else {
                break;
            };
            self.on_producer(peer_id, meta);
        }
    }

    fn start_call(&mut self, key: &str, name: &str) -> Result<CallId, String> {
        let cfg = &self.settings.config;
        let settings = CallSettings {
            name: name.to_owned(),
            recordings_dir: cfg.recording.dir.clone(),
            templates: self.settings.templates.clone(),
            late_track_template: self.settings.late_track_template.clone(),
            ice: cfg.ice.clone(),
            track_wait: config::secs(cfg.recording.track_wait_secs),
            keyframe_interval: Duration::from_millis(cfg.recording.keyframe_request_interval_ms),
            negotiation_timeout: config::secs(cfg.signalling.negotiation_timeout_secs),
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
        let handle = call::spawn(
            id,
            settings,
            rx,
            self.notes_tx.clone(),
            self.signal_tx.clone(),
        )?;
        // The tracker waits on the call's task on shutdown.
        self.tracker.spawn(async move {
            let _ = handle.await;
        });
        self.calls.insert(
            id,
            CallHandle {
                key: key.to_owned(),
                name: name.to_owned(),
                linger: config::secs(self.settings.config.recording.linger_secs),
                tx,
                sessions: 0,
                pending: 0,
                empty_since: None,
                finishing: false,
                dropped_ice: 0,
                post,
            },
        );
        self.by_key.insert(key.to_owned(), id);
        Ok(id)
    }

    /// Hands a signalling message to the session's call without waiting. A call's queue is
    /// full only when a producer floods it: extra candidates are dropped, and anything else
    /// that does not fit ends that session (and nothing else).
    fn route(&mut self, session_id: &str, cmd: CallCmd) {
        let Some(call) = self
            .sessions
            .get(session_id)
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
                self.end_remote(session_id.to_owned());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!(%session_id, "the call has ended; ignoring a signalling message");
            }
        }
    }

    /// Asks the server to end a session, now or on a later tick if the client has no room.
    fn end_remote(&mut self, session_id: String) {
        if let Err(mpsc::error::TrySendError::Full(SignalCommand::EndSession { session_id })) = self
            .signal_tx
            .try_send(SignalCommand::EndSession { session_id })
        {
            self.unsent_ends.push(session_id);
        }
    }

    fn on_note(&mut self, note: CallNote) {
        match note {
            CallNote::SessionClosed {
                call,
                session_id,
                reason,
            } => {
                if self.sessions.get(&session_id) == Some(&call) {
                    self.sessions.remove(&session_id);
                    self.producers_in_session.retain(|_, s| *s != session_id);
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.sessions = c.sessions.saturating_sub(1);
                    }
                    self.recount_pending();
                }
                debug!(%session_id, %reason, "session closed");
                // Harmless if the server already ended it.
                self.end_remote(session_id);
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
        let live: std::collections::HashSet<&String> = self.sessions.keys().collect();
        self.producers_in_session.retain(|_, s| live.contains(s));
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
        for call in self.calls.values_mut() {
            if call.sessions == 0 && call.pending == 0 {
                call.empty_since.get_or_insert_with(Instant::now);
            } else {
                call.empty_since = None;
            }
        }
    }

    /// Expires unanswered session starts and finishes calls whose linger is over.
    fn on_tick(&mut self) {
        let timeout = config::secs(self.settings.config.signalling.negotiation_timeout_secs);
        let before = self.pending.len();
        self.pending.retain(|peer, p| {
            let keep = p.asked_at.elapsed() < timeout;
            if !keep {
                warn!(peer_id = %peer, "the server never started the session; giving up on this producer");
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
        for session_id in unsent {
            self.end_remote(session_id);
        }
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
            CallNote::SessionClosed { session_id, .. } => {
                let _ = self
                    .signal_tx
                    .try_send(SignalCommand::EndSession { session_id });
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
        let sup = Supervisor::new(SupervisorSettings::new(config, &set).unwrap(), signal_tx);
        (sup, signal_rx)
    }

    /// A group that meets again while its previous call is still finishing gets a new call,
    /// and the old call's end does not touch the new one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_ending_late_does_not_drop_its_successor() {
        let rec = tempfile::tempdir().unwrap();
        let (mut sup, mut signal_rx) = supervisor(rec.path(), "");
        let meta = json!({"call": "standup"});
        sup.on_producer("p1".into(), Some(meta.clone()));
        let first = *sup.by_key.get("g:standup").expect("a call for the group");
        // Its linger ran out: it is told to finish and takes no one new.
        sup.finish_call(first, "all participants left");
        assert!(!sup.by_key.contains_key("g:standup"));
        // The group meets again before the old task has ended.
        sup.on_producer("p2".into(), Some(meta));
        let second = *sup.by_key.get("g:standup").expect("a new call");
        assert_ne!(first, second);
        assert_eq!(sup.pending["p2"].call, second);
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
        assert_eq!(sup.by_key.get("g:standup"), Some(&second));
        assert_eq!(sup.pending["p2"].call, second, "and its pending start");
        while signal_rx.try_recv().is_ok() {}
        sup.drain().await;
    }

    /// A producer refused at `max_calls` is recorded once a call has ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn producers_refused_for_room_are_admitted_later() {
        let rec = tempfile::tempdir().unwrap();
        let (mut sup, mut signal_rx) = supervisor(rec.path(), "max_calls = 1\nmin_free_mb = 0\n");
        sup.on_producer("a".into(), Some(json!({"call": "one"})));
        sup.on_producer("b".into(), Some(json!({"call": "two"})));
        assert!(sup.pending.contains_key("a"));
        assert!(!sup.pending.contains_key("b"), "refused: max_calls is 1");
        assert_eq!(sup.waiting.len(), 1);
        let first = *sup.by_key.get("g:one").unwrap();
        sup.on_note(CallNote::Ended {
            call: first,
            status: CallStatus::Complete,
            dir: None,
        });
        sup.last_admission = Instant::now() - Duration::from_secs(2);
        sup.on_tick();
        assert!(
            sup.pending.contains_key("b"),
            "admitted once the call ended"
        );
        assert!(sup.waiting.is_empty());
        // A producer that leaves while waiting is forgotten.
        sup.on_producer("c".into(), Some(json!({"call": "three"})));
        assert_eq!(sup.waiting.len(), 1);
        sup.on_signal(SignalEvent::ProducerRemoved {
            peer_id: "c".into(),
        });
        assert!(sup.waiting.is_empty());
        while signal_rx.try_recv().is_ok() {}
        sup.drain().await;
    }
}
