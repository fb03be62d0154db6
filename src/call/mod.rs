//! One call: one tokio task owning one GStreamer pipeline, with a webrtcbin per participant
//! session, a chain per incoming track and a bin per template instance.
//!
//! The task selects over commands from the supervisor, events forwarded from GStreamer's
//! threads (callbacks hold weak references and only send), the pipeline's bus and a timer.
//! It never waits inside its loop: answering an offer and finalising a leaving participant's
//! files are jobs that report back as events, so one stuck participant cannot hold up the
//! others. Its state only moves forward ([`CallState`]); finishing is idempotent and every
//! wait in it is bounded. A failure ends this call only.

mod gate;
mod graphs;
mod incoming;
mod lag;
pub mod media;
pub mod mix;
mod negotiation;
mod offering;
pub mod output;
mod room;
mod routing;
mod session;
mod simulcast;
mod state;
mod teardown;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gst::prelude::*;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::config::IceConfig;
use crate::recording::{self, CallStatus, Manifest};
use crate::signalling::{ParticipantInfo, RemoteStream, SignalCommand};
use crate::templates::{Scope, Template};
use session::{Session, SessionState, Track};
pub use state::CallState;

/// How long sinks get to see EOS before their bin is stopped anyway.
const EOS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a live mix gets to drain at the call's end: it may hold seconds of raw video
/// queued before its encoder on a busy machine, and all of it is the call's last moments.
const MIX_EOS_TIMEOUT: Duration = Duration::from_secs(8);
/// How long one state change to NULL may take before the element is abandoned.
const NULL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the call's timers run.
const TICK: Duration = Duration::from_millis(100);
/// Room for commands from the supervisor. The task never waits inside its loop, so this
/// fills only when a producer floods it; the supervisor then drops or refuses, see there.
pub const COMMAND_QUEUE: usize = 512;
/// Room for events from GStreamer's threads and the call's jobs.
const EVENT_QUEUE: usize = 4096;
/// Remote ICE candidates kept for one session; a producer sending more is hostile or broken.
const MAX_REMOTE_CANDIDATES: usize = 1000;
/// Offers one session may make per minute before it is ended (a renegotiation flood).
const MAX_OFFERS_PER_MINUTE: u32 = 60;

/// Identifies one spawned call for its whole life. Keys of calls (group values) repeat when a
/// group meets again; ids never do, so a note from a call that is ending cannot be mistaken
/// for one from its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a call needs to know, fixed when it starts.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// The call's name as the network gave it.
    pub name: String,
    /// The recordings directory.
    pub recordings_dir: PathBuf,
    /// The templates this call runs.
    pub templates: Arc<Vec<Template>>,
    /// A track template for tracks that arrive after their participant's file started.
    pub late_track_template: Option<Template>,
    /// STUN/TURN.
    pub ice: IceConfig,
    /// How long an output waits for its tracks.
    pub track_wait: Duration,
    /// Keyframe request period.
    pub keyframe_interval: Duration,
    /// How long a session may take to get from start to connected.
    pub negotiation_timeout: Duration,
    /// Silence after which a connected session is considered gone.
    pub media_timeout: Duration,
    /// Write pipeline graphs into `<call_dir>/debug/` (`[debug] graphs`).
    pub graphs: bool,
    /// The source its producers come from (`[[source]] name`), for the manifest.
    pub source: String,
}

/// What kind of session the server started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// One producer, who offers; callrec answers.
    ProducerOffers,
    /// One producer, who answers the offer callrec made ([`CallCmd::PrepareOffer`]).
    CallrecOffers,
    /// A room's session, carrying the room's participants (`peer_id` is the room): they come
    /// as [`CallCmd::ParticipantAdded`]. The server offers.
    Room,
}

/// Orders from the supervisor.
#[derive(Debug)]
pub enum CallCmd {
    /// A session with a producer has started on the server.
    StartSession {
        /// The server's session id.
        session_id: String,
        /// The producer's peer id on the server.
        peer_id: String,
        /// The producer's meta, as sent (untrusted).
        meta: serde_json::Value,
        /// Who offers, and whether it is a room's session.
        kind: SessionKind,
    },
    /// Make an offer to receive a producer's media, for a source where callrec offers: the
    /// call sends it in `StartSession`, and the server's session then arrives as
    /// [`CallCmd::StartSession`] with [`SessionKind::CallrecOffers`].
    PrepareOffer {
        /// The producer's peer id on the server.
        peer_id: String,
        /// The producer's meta, as sent (untrusted).
        meta: serde_json::Value,
    },
    /// The producer's answer to callrec's offer.
    Answer {
        /// The session it is for.
        session_id: String,
        /// The SDP text (untrusted).
        sdp: String,
    },
    /// A participant publishes in the call's room (again, after a removal: new files).
    ParticipantAdded {
        /// Who.
        participant: ParticipantInfo,
    },
    /// A participant of the call's room stopped publishing or left.
    ParticipantRemoved {
        /// [`ParticipantInfo::id`].
        participant_id: String,
        /// Why, for the manifest.
        reason: String,
    },
    /// Which participant and track each m-line of a room's session carries, for the offer
    /// that follows.
    StreamsChanged {
        /// The room's session.
        session_id: String,
        /// Every m-line, in order.
        streams: Vec<RemoteStream>,
    },
    /// The producer's offer.
    Offer {
        /// The session it is for.
        session_id: String,
        /// The SDP text (untrusted).
        sdp: String,
    },
    /// A remote ICE candidate.
    Ice {
        /// The session it is for.
        session_id: String,
        /// The m-line it belongs to.
        mline: u32,
        /// The candidate line (untrusted).
        candidate: String,
    },
    /// The server ended a session.
    RemoteEnded {
        /// The session that ended.
        session_id: String,
        /// What ended it, for the manifest.
        reason: String,
    },
    /// Finalise everything and end the call.
    Finish {
        /// What ends the call, for the manifest (`all participants left`, a shutdown...).
        reason: String,
    },
}

/// Reports to the supervisor.
#[derive(Debug)]
pub enum CallNote {
    /// A session of this call is over (for any reason).
    SessionClosed {
        /// The call.
        call: CallId,
        /// The session that is over.
        session_id: String,
        /// What ended it.
        reason: String,
    },
    /// The call task has ended.
    Ended {
        /// The call.
        call: CallId,
        /// How it ended.
        status: CallStatus,
        /// Its directory, if it left one (a call nobody joined leaves none).
        dir: Option<std::path::PathBuf>,
    },
}

/// Hands events to the call's task from GStreamer's threads and from the call's jobs.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: mpsc::Sender<CallEvent>,
    dropped: Arc<AtomicU64>,
}

impl EventSender {
    fn new(tx: mpsc::Sender<CallEvent>) -> Self {
        Self {
            tx,
            dropped: Arc::default(),
        }
    }

    /// From a GStreamer thread: never waits. The queue is large and the task never stalls, so
    /// a full queue means something floods the call; the event is dropped and logged.
    fn send(&self, event: CallEvent) {
        if self.tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                warn!(
                    dropped = n + 1,
                    "a call's event queue is full; dropping GStreamer events"
                );
            }
        }
    }

    /// From a job: waits for room (a job may wait; the call's loop does not).
    async fn report(&self, event: CallEvent) {
        let _ = self.tx.send(event).await;
    }
}

/// Events from GStreamer threads and from the call's jobs.
#[derive(Debug)]
enum CallEvent {
    /// webrtcbin produced a local ICE candidate.
    LocalIce {
        /// The session it concerns.
        session: String,
        /// The m-line of the track.
        mline: u32,
        /// The candidate line to send.
        candidate: String,
    },
    /// webrtcbin has gathered all its local candidates.
    GatheringComplete {
        /// The session it concerns.
        session: String,
    },
    /// An incoming track's chain is built and its tee is ready.
    TrackReady {
        /// The session it concerns.
        session: String,
        /// The m-line of the track.
        mline: u32,
        /// What it carries.
        codec: &'static media::Codec,
        /// Its depayloading chain, ending in a tee.
        chain: media::TrackChain,
    },
    /// Another simulcast layer of a track joined its chain.
    LayerAdded {
        /// The session it concerns.
        session: String,
        /// The track's m-line.
        mline: u32,
        /// The layer's rid, if its packets carry one.
        rid: Option<String>,
        /// Its elements (stopped with the track's) and its own tee.
        layer: simulcast::Layer,
    },
    /// A simulcast track is recorded from another layer from now on.
    LayerSwitched {
        /// The session it concerns.
        session: String,
        /// The track's m-line.
        mline: u32,
        /// The layer, and when.
        change: simulcast::LayerChange,
    },
    /// A new stream arrived on a room's m-line that has a chain (the server reused it): it
    /// flows into that chain.
    TrackRenewed {
        /// The room's session.
        session: String,
        /// The m-line.
        mline: u32,
    },
    /// An incoming track callrec cannot record was discarded.
    TrackDiscarded {
        /// The session it concerns.
        session: String,
        /// The m-line of the track.
        mline: u32,
        /// The encoding it came in.
        encoding: String,
        /// Why it cannot be recorded.
        reason: String,
        /// The fakesink it went to.
        sink: Option<gst::Element>,
    },
    /// An output input got its first usable buffer.
    FirstBuffer {
        /// The session it concerns.
        session: String,
        /// The output (template instance) it feeds.
        output: usize,
        /// The m-line of the track.
        mline: u32,
        /// Its running time.
        running: gst::ClockTime,
    },
    /// A decoded video track's size is known or changed.
    VideoSize {
        /// The session it concerns.
        session: String,
        /// Width / height.
        aspect: f64,
    },
    /// webrtcbin's peer connection state changed.
    Connection {
        /// The session it concerns.
        session: String,
        /// The new state.
        state: gst_webrtc::WebRTCPeerConnectionState,
    },
    /// A negotiation job is done: the answer's SDP, or why there is none.
    Negotiated {
        /// The session it concerns.
        session: String,
        /// What the offer said the producer sends.
        offered: Vec<crate::media::sdp::OfferedTrack>,
        /// The answer to send.
        answer: Result<String, String>,
    },
    /// callrec's offer to a producer is made (or why not).
    OfferMade {
        /// The session it concerns.
        session: String,
        /// The offer's SDP, set locally.
        offer: Result<String, String>,
    },
    /// The producer's answer to callrec's offer is applied (or why not).
    AnswerApplied {
        /// The session it concerns.
        session: String,
        /// What the answer says the producer sends.
        sent: Vec<crate::media::sdp::OfferedTrack>,
        /// Whether webrtcbin took it.
        result: Result<(), String>,
    },
    /// A leaving session's outputs saw EOS (or ran out of time): its files are final.
    SessionFlushed {
        /// The session, handed back by the job.
        session: Box<Session>,
        /// Why it ended.
        reason: String,
        /// Outputs that did not finish in time.
        unfinished: usize,
    },
}

/// A running call.
struct Call {
    id: CallId,
    state: CallState,
    settings: CallSettings,
    dir: PathBuf,
    pipeline: gst::Pipeline,
    manifest: Manifest,
    mixes: Vec<mix::Mix>,
    sessions: HashMap<String, Session>,
    /// The publishers of the call's room (a room's call only), by participant id.
    publishers: BTreeMap<String, ParticipantInfo>,
    /// The session key of each server session id that differs from it (sessions callrec
    /// offered, which exist before the server names them).
    session_keys: HashMap<String, String>,
    /// Sessions whose files a job is finalising, with their top-level elements (errors
    /// from those concern only that session).
    flushing: HashMap<String, Vec<gst::Element>>,
    /// Element teardowns under way (bounded each); the call's end waits for them.
    teardowns: tokio::task::JoinSet<()>,
    used_names: HashSet<String>,
    next_output: usize,
    events_tx: EventSender,
    signal_tx: mpsc::Sender<SignalCommand>,
    notes_tx: mpsc::Sender<CallNote>,
    failed: Option<String>,
    graphs: graphs::Graphs,
}

/// Starts a call task. The call directory and manifest are created before it returns, so a
/// call that cannot write is refused at once.
pub fn spawn(
    id: CallId,
    settings: CallSettings,
    cmds: mpsc::Receiver<CallCmd>,
    notes_tx: mpsc::Sender<CallNote>,
    signal_tx: mpsc::Sender<SignalCommand>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let dir =
        recording::create_call_dir(&settings.recordings_dir, &settings.name).map_err(|e| {
            format!(
            "cannot create a call directory in {}: {e} (check [recording] dir and its permissions)",
            settings.recordings_dir.display()
        )
        })?;
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let manifest = Manifest::new(&settings.name, &dir_name);
    recording::write_manifest(&dir, &manifest)
        .and_then(|()| recording::reserve_space(&dir))
        .map_err(|e| {
            let _ = std::fs::remove_file(dir.join(recording::RESERVE_FILE));
            let _ = std::fs::remove_file(dir.join(recording::MANIFEST_FILE));
            let _ = std::fs::remove_dir(&dir);
            format!("cannot write the manifest in {}: {e}", dir.display())
        })?;
    let pipeline = gst::Pipeline::with_name(&format!("call-{dir_name}"));
    let mut manifest = manifest;
    let mixes = create_mixes(&settings, &pipeline, &dir, &dir_name, &mut manifest);
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start the call pipeline: {e}"))?;
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    info!(call = %settings.name, %id, dir = %dir.display(), "call started");
    let graphs = graphs::Graphs::new(settings.graphs, &dir);
    let call = Call {
        id,
        state: CallState::Negotiating,
        settings,
        dir,
        pipeline,
        manifest,
        mixes,
        sessions: HashMap::new(),
        publishers: BTreeMap::new(),
        session_keys: HashMap::new(),
        flushing: HashMap::new(),
        teardowns: tokio::task::JoinSet::new(),
        used_names: HashSet::new(),
        next_output: 0,
        events_tx: EventSender::new(events_tx),
        signal_tx,
        notes_tx,
        failed: None,
        graphs,
    };
    Ok(tokio::spawn(call.run(cmds, events_rx)))
}

impl Call {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<CallCmd>,
        mut events: mpsc::Receiver<CallEvent>,
    ) {
        let Some(bus) = self.pipeline.bus() else {
            self.failed = Some("the pipeline has no bus".into());
            self.finish("the pipeline has no bus", &mut events).await;
            return;
        };
        let mut bus_stream = bus.stream();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reason = loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(CallCmd::Finish { reason }) => break reason,
                    Some(cmd) => self.on_command(cmd),
                    None => break "callrec is shutting down".to_owned(),
                },
                Some(ev) = events.recv() => self.on_event(ev),
                Some(msg) = bus_stream.next() => self.on_bus(&msg),
                Some(_) = self.teardowns.join_next(), if !self.teardowns.is_empty() => {}
                _ = tick.tick() => self.on_tick(),
            }
            if let Some(reason) = self.failed.clone() {
                break reason;
            }
        };
        self.finish(&reason, &mut events).await;
    }

    fn on_command(&mut self, cmd: CallCmd) {
        let cmd = self.with_local_session(cmd);
        match cmd {
            CallCmd::StartSession {
                session_id,
                peer_id,
                meta,
                kind,
            } => {
                if self.state >= CallState::Draining {
                    self.close_session_note(&session_id, "the call is ending");
                    return;
                }
                let started = match kind {
                    SessionKind::Room => self.start_room_session(&session_id, &peer_id),
                    SessionKind::ProducerOffers => self.start_session(&session_id, &peer_id, meta),
                    SessionKind::CallrecOffers => self.bind_offer(&session_id, &peer_id),
                };
                if let Err(e) = started {
                    warn!(call = %self.settings.name, session = %session_id, "cannot start session: {e}");
                    self.end_session(&session_id, &format!("could not start: {e}"));
                    if !self.sessions.contains_key(&session_id)
                        && !self.flushing.contains_key(&session_id)
                    {
                        // It never made it into the table: tell the supervisor all the same.
                        self.close_session_note(&session_id, &format!("could not start: {e}"));
                    }
                }
            }
            CallCmd::PrepareOffer { peer_id, meta } => {
                if self.state < CallState::Draining {
                    self.prepare_offer(&peer_id, meta);
                }
            }
            CallCmd::Answer { session_id, sdp } => self.on_answer(&session_id, sdp),
            CallCmd::Offer { session_id, sdp } => {
                if !self.sessions.contains_key(&session_id) {
                    // Queued before callrec ended that session (a flood, usually).
                    debug!(call = %self.settings.name, session = %session_id, "offer for an ended session; ignoring it");
                    return;
                }
                if let Err(e) = self.on_offer(&session_id, sdp) {
                    warn!(call = %self.settings.name, session = %session_id, "cannot answer the offer: {e}");
                    self.end_session(&session_id, &format!("negotiation failed: {e}"));
                }
            }
            CallCmd::Ice {
                session_id,
                mline,
                candidate,
            } => self.on_remote_ice(&session_id, mline, candidate),
            CallCmd::RemoteEnded { session_id, reason } => {
                self.end_session(&session_id, &reason);
            }
            CallCmd::ParticipantAdded { participant } => {
                if self.state < CallState::Draining {
                    self.on_participant_added(participant);
                }
            }
            CallCmd::ParticipantRemoved {
                participant_id,
                reason,
            } => self.on_participant_removed(&participant_id, &reason),
            CallCmd::StreamsChanged {
                session_id,
                streams,
            } => self.on_streams_changed(&session_id, streams),
            CallCmd::Finish { .. } => {}
        }
    }

    /// A producer's trickled candidate: added now, or kept until the offer is applied.
    fn on_remote_ice(&mut self, session_id: &str, mline: u32, candidate: String) {
        let Some(s) = self.sessions.get_mut(session_id) else {
            return;
        };
        s.remote_candidates += 1;
        if s.remote_candidates > MAX_REMOTE_CANDIDATES {
            if s.remote_candidates == MAX_REMOTE_CANDIDATES + 1 {
                warn!(call = %self.settings.name, session = %session_id, "more than {MAX_REMOTE_CANDIDATES} ICE candidates; ignoring the rest");
            }
            return;
        }
        if s.remote_set {
            s.webrtcbin
                .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
        } else {
            s.pending_ice.push((mline, candidate));
        }
    }

    fn on_event(&mut self, ev: CallEvent) {
        match ev {
            CallEvent::LocalIce {
                session,
                mline,
                candidate,
            } => {
                let Some(s) = self.sessions.get_mut(&session) else {
                    return;
                };
                match s.signal_id.clone() {
                    Some(session_id) => self.signal(SignalCommand::Ice {
                        session_id,
                        candidate,
                        mline_index: mline,
                    }),
                    // Sent once the server names the session.
                    None => s.unsent_ice.push((mline, candidate)),
                }
            }
            CallEvent::GatheringComplete { session } => {
                let Some(s) = self.sessions.get_mut(&session) else {
                    return;
                };
                match s.signal_id.clone() {
                    Some(session_id) => self.signal(SignalCommand::EndOfCandidates { session_id }),
                    None => s.gathered = true,
                }
            }
            CallEvent::OfferMade { session, offer } => self.on_offer_made(&session, offer),
            CallEvent::AnswerApplied {
                session,
                sent,
                result,
            } => self.on_answer_applied(&session, sent, result),
            CallEvent::TrackReady {
                session,
                mline,
                codec,
                chain,
            } => {
                let carrier = self.sessions.get(&session).map(|s| !s.is_participant());
                if carrier == Some(true) {
                    self.on_room_track(&session, mline, codec, chain);
                } else if carrier == Some(false) {
                    self.on_track(&session, mline, codec, chain);
                } else {
                    // The session left while webrtcbin was building the track.
                    self.stop_in_background(chain.elements.clone());
                }
            }
            CallEvent::TrackDiscarded {
                session,
                mline,
                encoding,
                reason,
                sink,
            } => self.on_track_discarded(&session, mline, &encoding, reason, sink),
            CallEvent::LayerAdded {
                session,
                mline,
                rid,
                layer,
            } => self.on_layer_added(&session, mline, rid, layer),
            CallEvent::LayerSwitched {
                session,
                mline,
                change,
            } => self.on_layer_switched(&session, mline, change),
            CallEvent::TrackRenewed { session, mline } => {
                debug!(call = %self.settings.name, %session, mline, "a new stream on a reused m-line");
                if let Some(member) = self.member_for(&session, mline) {
                    self.request_keyframe(&member, mline);
                }
            }
            CallEvent::FirstBuffer {
                session,
                output,
                mline,
                running,
            } => self.on_first_buffer(&session, output, mline, running),
            CallEvent::VideoSize { session, aspect } => {
                let now = self.now_ms();
                for m in &mut self.mixes {
                    m.set_aspect(&session, aspect, now);
                }
            }
            CallEvent::Connection { session, state } => {
                use gst_webrtc::WebRTCPeerConnectionState as S;
                debug!(call = %self.settings.name, %session, ?state, "connection state");
                match state {
                    S::Connected => {
                        if let Some(s) = self.sessions.get_mut(&session) {
                            if s.state < SessionState::Connected {
                                s.state = SessionState::Connected;
                                s.connected_at = Some(Instant::now());
                            }
                        }
                        self.room_connected(&session);
                    }
                    S::Failed | S::Closed => {
                        self.end_session(&session, &format!("peer connection {state:?}"));
                    }
                    _ => {}
                }
            }
            CallEvent::Negotiated {
                session,
                offered,
                answer,
            } => self.on_negotiated(&session, offered, answer),
            CallEvent::SessionFlushed {
                session,
                reason,
                unfinished,
            } => self.on_session_flushed(*session, &reason, unfinished),
        }
    }

    fn on_track_discarded(
        &mut self,
        session: &str,
        mline: u32,
        encoding: &str,
        reason: String,
        sink: Option<gst::Element>,
    ) {
        let Some(s) = self.sessions.get_mut(session) else {
            self.stop_in_background(sink.into_iter().collect());
            return;
        };
        s.discarded.extend(sink);
        if s.is_participant() && s.tracks.contains_key(&mline) {
            // Another stream on a track that records (a simulcast layer too many, say): the
            // track goes on. Logged, not kept in the manifest: a sender could send thousands.
            warn!(call = %self.settings.name, participant = %s.name, mline, "a further stream on the m-line left out: {reason}");
            return;
        }
        if !s.is_participant() {
            // A room's m-line: the participant it carries does without it.
            if let Some(member) = self.member_for(session, mline) {
                self.on_track_discarded(&member, mline, encoding, reason, None);
            }
            return;
        }
        // Outputs waiting for this track need not wait any longer.
        for out in &mut s.outputs {
            out.release(mline);
        }
        let participant = s.peer_id.clone();
        let kind = s
            .offered
            .iter()
            .find(|t| t.mline == mline)
            .map_or("unknown", |t| t.kind.as_str());
        self.skip_track(&participant, mline, kind, encoding, reason);
        self.check_outputs(session);
    }

    fn on_tick(&mut self) {
        let now = self.now_ms();
        let mut mixes_changed = false;
        for m in &mut self.mixes {
            mixes_changed |= m.on_tick(now);
        }
        if mixes_changed {
            // When a mix fell behind and when it caught up survive a crash.
            self.save_manifest();
        }
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            self.check_outputs(&id);
            let Some(session) = self.sessions.get(&id) else {
                continue;
            };
            // Keep asking for keyframes while any video input waits for one.
            for mline in session.video_waiting_for_keyframe() {
                self.request_keyframe(&id, mline);
            }
            let Some(session) = self.sessions.get(&id) else {
                continue;
            };
            if session.state < SessionState::Connected
                && session.created.elapsed() > self.settings.negotiation_timeout
            {
                let reason = format!(
                    "producer did not {} within {:.0}s",
                    if session.state == SessionState::AwaitingOffer && session.callrec_offers {
                        "answer callrec's offer"
                    } else if session.state == SessionState::AwaitingOffer {
                        "send an offer"
                    } else {
                        "connect"
                    },
                    self.settings.negotiation_timeout.as_secs_f64()
                );
                warn!(call = %self.settings.name, session = %id, "{reason}");
                self.end_session(&id, &reason);
            } else if session.state == SessionState::Connected
                && session.is_participant()
                && self.media_silent(session)
            {
                // A room's session goes on while its publishers are silent; each of them
                // times out on their own.
                let reason = format!(
                    "no media for {:.0}s",
                    self.settings.media_timeout.as_secs_f64()
                );
                let member = session
                    .carrier()
                    .map(|c| (c.to_owned(), session.peer_id.clone()));
                warn!(call = %self.settings.name, session = %id, "{reason}");
                self.end_session(&id, &reason);
                if let Some((carrier, participant)) = member {
                    self.mark_silent(&carrier, &participant);
                }
            }
        }
        self.revive_silent_members();
    }

    fn on_bus(&mut self, msg: &gst::Message) {
        use gst::MessageView;
        match msg.view() {
            MessageView::Error(err) => {
                self.graphs.dump(&self.pipeline, "error");
                let src = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let text = format!(
                    "{} ({src}): {}",
                    err.error(),
                    err.debug().unwrap_or_default()
                );
                if err.error().matches(gst::ResourceError::NoSpaceLeft) {
                    // Every file of the call shares the disk: end the call, keep what it wrote.
                    error!(call = %self.settings.name, "disk full: {text}");
                    self.failed
                        .get_or_insert_with(|| format!("disk full: {text}"));
                    return;
                }
                // An error inside one session's elements ends that session; anything else
                // fails the call.
                let owner = self
                    .sessions
                    .values()
                    .find(|s| msg.src().is_some_and(|src| s.owns(src)))
                    .map(|s| s.id.clone());
                let mix = msg
                    .src()
                    .and_then(|src| self.mixes.iter_mut().find(|m| owns(src, &m.bin)));
                if let Some(mix) = mix {
                    // A broken mix ends only that mix; passthrough recordings go on.
                    mix.entry.status = recording::MixStatus::Failed;
                    let message = format!("mix {} failed: {text}", mix.template.name);
                    self.warn(message);
                    return;
                }
                if let Some(src) = msg.src() {
                    if self.stop_failed_decoder(src, &text) {
                        return;
                    }
                }
                match owner {
                    Some(session) => {
                        warn!(call = %self.settings.name, %session, "pipeline error: {text}");
                        self.end_session(&session, &format!("pipeline error: {text}"));
                    }
                    None if self.owned_by_leaving_session(msg) => {
                        debug!(call = %self.settings.name, "error from a leaving session's elements: {text}");
                    }
                    None => {
                        error!(call = %self.settings.name, "pipeline error: {text}");
                        self.failed = Some(format!("pipeline error: {text}"));
                    }
                }
            }
            MessageView::Element(e) => {
                if let Some(level) = e.structure().filter(|s| s.name() == "level") {
                    self.on_level(msg, level);
                }
            }
            MessageView::Warning(w) => {
                debug!(call = %self.settings.name, "pipeline warning: {}", w.error());
            }
            MessageView::StateChanged(change)
                if change.current() == gst::State::Playing
                    && msg.src() == Some(self.pipeline.upcast_ref()) =>
            {
                self.graphs.dump(&self.pipeline, "playing");
            }
            _ => {}
        }
    }

    /// A track's decoder for the mixes failed (`src` is one of its elements): it is cut off
    /// from the track, so the participant's files go on and the mixes keep showing their last
    /// picture. Ending the session instead would lose the recording for the mixes' sake, and
    /// av1dec fails for good on one frame it cannot decode. True if `src` was such a decoder
    /// (already cut off, its later errors are dropped in silence).
    fn stop_failed_decoder(&mut self, src: &gst::Object, text: &str) -> bool {
        let found = self.sessions.values().find_map(|s| {
            s.decoders
                .iter()
                .find(|(_, d)| d.elements.iter().any(|e| owns(src, e)))
                .map(|(mline, d)| (s.name.clone(), *mline, d.clone()))
        });
        let Some((participant, mline, decoder)) = found else {
            return false;
        };
        let Some(peer) = decoder.tee_pad.peer() else {
            return true;
        };
        let _ = decoder.tee_pad.unlink(&peer);
        self.warn(format!(
            "participant {participant}: m-line {mline} is frozen in the mixes, its decoder failed (the recording goes on): {text}"
        ));
        true
    }

    /// True if a message comes from elements no live session or mix owns: a session being
    /// finalised or torn down, whose errors concern only that session.
    fn owned_by_leaving_session(&self, msg: &gst::Message) -> bool {
        let Some(src) = msg.src() else { return false };
        self.flushing.values().flatten().any(|e| owns(src, e))
    }

    /// Asks the signalling client to send something. Never waits: the client's queue is
    /// large and drained by its own task, so a full one means it is gone or stuck.
    fn signal(&self, cmd: SignalCommand) {
        if let Err(e) = self.signal_tx.try_send(cmd) {
            warn!(call = %self.settings.name, "cannot hand a message to the signalling client: {e}");
        }
    }

    /// Tells the supervisor a session is over.
    fn close_session_note(&self, session_id: &str, reason: &str) {
        let note = CallNote::SessionClosed {
            call: self.id,
            session_id: session_id.to_owned(),
            reason: reason.to_owned(),
        };
        if let Err(e) = self.notes_tx.try_send(note) {
            error!(call = %self.settings.name, "cannot tell the supervisor a session closed: {e}");
        }
    }

    /// Moves the call's state forward (never back).
    fn advance(&mut self, to: CallState) {
        if self.state.advance(to) {
            debug!(call = %self.settings.name, state = ?self.state, "call state");
        }
    }

    /// Ends every session and the call, writes the final manifest and stops the pipeline.
    /// Every wait here is bounded; it runs once, after the loop.
    async fn finish(mut self, reason: &str, events: &mut mpsc::Receiver<CallEvent>) {
        self.advance(CallState::Draining);
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            self.end_session(&id, reason);
        }
        // The sessions' jobs report back; other events no longer matter.
        let deadline = tokio::time::Instant::now() + EOS_TIMEOUT + NULL_TIMEOUT;
        while !self.flushing.is_empty() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(CallEvent::SessionFlushed {
                    session,
                    reason,
                    unfinished,
                })) => self.on_session_flushed(*session, &reason, unfinished),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if !self.flushing.is_empty() {
            error!(call = %self.settings.name, sessions = self.flushing.len(), "sessions did not finalise in time");
        }
        let _ = tokio::time::timeout_at(deadline, async {
            while self.teardowns.join_next().await.is_some() {}
        })
        .await;
        self.finish_mixes().await;
        self.manifest.status = if self.failed.is_some() {
            CallStatus::Failed
        } else {
            CallStatus::Complete
        };
        self.manifest.ended_at = Some(recording::now_rfc3339());
        self.manifest.end_reason = Some(reason.to_owned());
        if self.manifest.participants.is_empty() && self.failed.is_none() {
            // Nobody joined (the session never started): leave no directory behind, not even
            // the mixes of an empty canvas or the graphs of a pipeline that recorded nothing.
            let files = self.manifest.mixes.iter().flat_map(|m| m.files.iter());
            for file in files.filter(|f| crate::names::is_safe_component(f)) {
                let _ = std::fs::remove_file(self.dir.join(file));
            }
            let _ = std::fs::remove_dir_all(self.dir.join(graphs::GRAPHS_DIR));
            let _ = std::fs::remove_file(self.dir.join(recording::RESERVE_FILE));
            let _ = std::fs::remove_file(self.dir.join(recording::MANIFEST_FILE));
            let _ = std::fs::remove_dir(&self.dir);
        } else {
            self.save_manifest();
            self.graphs.dump(&self.pipeline, "eos");
            // The final manifest is written: the space kept for it can go.
            let _ = std::fs::remove_file(self.dir.join(recording::RESERVE_FILE));
        }
        let pipeline = self.pipeline.clone();
        let stopped = tokio::time::timeout(
            NULL_TIMEOUT,
            tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)),
        )
        .await;
        if stopped.is_err() {
            error!(call = %self.settings.name, "the pipeline did not stop within {}s", NULL_TIMEOUT.as_secs());
        }
        self.advance(if self.failed.is_some() {
            CallState::Failed
        } else {
            CallState::Finished
        });
        info!(call = %self.settings.name, dir = %self.dir.display(), status = ?self.manifest.status, "call finished");
        let note = CallNote::Ended {
            call: self.id,
            status: self.manifest.status,
            dir: self
                .dir
                .join(recording::MANIFEST_FILE)
                .is_file()
                .then(|| self.dir.clone()),
        };
        if tokio::time::timeout(NULL_TIMEOUT, self.notes_tx.send(note))
            .await
            .is_err()
        {
            error!(call = %self.settings.name, "the supervisor did not take the call's end");
        }
    }

    /// Ends every live mix: EOS from its sources, then a bounded wait for its files.
    async fn finish_mixes(&mut self) {
        let now = self.now_ms();
        for m in &mut self.mixes {
            m.send_eos(now);
        }
        let deadline = tokio::time::Instant::now() + MIX_EOS_TIMEOUT;
        while self.mixes.iter().any(|m| !m.finished()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for m in &mut self.mixes {
            m.settle();
            if m.entry.status == recording::MixStatus::Recording {
                m.entry.status = if m.finished() {
                    recording::MixStatus::Complete
                } else {
                    recording::MixStatus::Interrupted
                };
            }
        }
    }

    /// An audio level message: the loudest channel's RMS goes to the mixes' speaker choice.
    fn on_level(&mut self, msg: &gst::Message, level: &gst::StructureRef) {
        let Some(src) = msg.src() else { return };
        let session = self.sessions.values().find(|s| {
            s.decoders.values().any(|d| {
                d.level
                    .as_ref()
                    .is_some_and(|l| src == l.upcast_ref::<gst::Object>())
            })
        });
        let Some(session) = session.map(|s| s.id.clone()) else {
            return;
        };
        let Some(db) = crate::mix::loudest_rms_db(level) else {
            return;
        };
        let now = self.now_ms();
        for m in &mut self.mixes {
            m.on_level(&session, db, now);
        }
    }

    /// The pipeline's running time in ms (the call's clock: 0 when the call started).
    fn now_ms(&self) -> u64 {
        self.pipeline
            .current_running_time()
            .map_or(0, |t| t.mseconds())
    }

    fn warn(&mut self, message: String) {
        warn!(call = %self.settings.name, "{message}");
        self.manifest.warnings.push(message);
        self.save_manifest();
    }

    /// Rewrites manifest.json. A full disk fails the call (what was written stays, and so
    /// does the previous manifest if even the reserve did not suffice).
    fn save_manifest(&mut self) {
        let mut manifest = self.manifest.clone();
        manifest.mixes = self.mixes.iter().map(|m| m.entry.clone()).collect();
        if let Err(e) =
            tokio::task::block_in_place(|| recording::write_manifest(&self.dir, &manifest))
        {
            error!(call = %self.settings.name, dir = %self.dir.display(), "cannot write manifest.json: {e}");
            if recording::is_disk_full(&e) {
                self.failed
                    .get_or_insert_with(|| format!("disk full: cannot write manifest.json: {e}"));
            }
        }
    }
}

/// Builds the call's live mixes (its `call`-scope templates) into a pipeline that is not
/// playing yet. A mix that cannot be built is a warning in the manifest; the call goes on.
fn create_mixes(
    settings: &CallSettings,
    pipeline: &gst::Pipeline,
    dir: &std::path::Path,
    dir_name: &str,
    manifest: &mut Manifest,
) -> Vec<mix::Mix> {
    let mut mixes = vec![];
    for template in settings.templates.iter().filter(|t| t.scope == Scope::Call) {
        let mut vars = BTreeMap::new();
        vars.insert("call_dir", dir.to_string_lossy().into_owned());
        vars.insert("call", dir_name.to_owned());
        vars.insert("template", template.name.clone());
        let built = template
            .instantiate(&vars)
            .map_err(|e| e.to_string())
            .and_then(|(bin, text)| mix::Mix::create(template, bin, text, pipeline, dir));
        match built {
            Ok(m) => mixes.push(m),
            Err(e) => {
                let message = format!("mix {} could not start: {e}", template.name);
                warn!(call = %settings.name, "{message}");
                manifest.warnings.push(message);
            }
        }
    }
    mixes
}

/// Limits a webrtcbin's ICE candidates to the given local addresses (none given: every
/// interface). Operators use it to keep media on one interface; tests keep it on loopback.
pub(crate) fn restrict_ice_addresses(
    webrtcbin: &gst::Element,
    addresses: &[String],
) -> Result<(), String> {
    if addresses.is_empty() {
        return Ok(());
    }
    let agent = webrtcbin.property::<glib::Object>("ice-agent");
    if glib::subclass::signal::SignalId::lookup("add-local-ip-address", agent.type_()).is_none() {
        return Err(
            "this GStreamer's ICE agent cannot limit local addresses ([ice] local_addresses)"
                .into(),
        );
    }
    for address in addresses {
        if !agent.emit_by_name::<bool>("add-local-ip-address", &[address]) {
            return Err(format!("the ICE agent refused local address {address}"));
        }
    }
    Ok(())
}

/// True if `src` is `element` or inside it.
pub(super) fn owns(src: &gst::Object, element: &impl IsA<gst::Object>) -> bool {
    src == element.upcast_ref::<gst::Object>() || src.has_as_ancestor(element)
}
