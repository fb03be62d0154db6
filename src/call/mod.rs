//! One call: one tokio task owning one GStreamer pipeline, with a webrtcbin per participant
//! session, a chain per incoming track and a bin per template instance.
//!
//! The task selects over commands from the supervisor, events forwarded from GStreamer's
//! threads (callbacks hold weak references and only send), the pipeline's bus and a timer.
//! Its state only moves forward (`Recording → Draining → Finished | Failed`); finishing is
//! idempotent and every wait in it is bounded. A failure ends this call only.

mod fade;
mod graphs;
pub mod layout;
pub mod media;
pub mod mix;
mod negotiation;
pub mod output;
mod routing;
pub mod sdp;
pub mod speaker;
mod teardown;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gst::prelude::*;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::config::IceConfig;
use crate::recording::{self, CallStatus, Manifest};
use crate::signalling::SignalCommand;
use crate::templates::{Kind, Scope, Template};
use output::Output;

/// How long sinks get to see EOS before their bin is stopped anyway.
const EOS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one state change to NULL may take before the element is abandoned.
const NULL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the call's timers run.
const TICK: Duration = Duration::from_millis(100);

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
    /// What runs over the recordings once the call has ended (handed back when it ends).
    pub post: crate::post::PostPlan,
}

/// Orders from the supervisor.
#[derive(Debug)]
pub enum CallCmd {
    /// A session with a producer has started on the server.
    StartSession {
        /// Session id.
        session_id: String,
        /// Producer id.
        peer_id: String,
        /// Producer meta.
        meta: serde_json::Value,
    },
    /// The producer's offer.
    Offer {
        /// Session id.
        session_id: String,
        /// SDP.
        sdp: String,
    },
    /// A remote ICE candidate.
    Ice {
        /// Session id.
        session_id: String,
        /// m-line.
        mline: u32,
        /// Candidate.
        candidate: String,
    },
    /// The server ended a session.
    RemoteEnded {
        /// Session id.
        session_id: String,
        /// Why.
        reason: String,
    },
    /// Finalise everything and end the call.
    Finish {
        /// Why.
        reason: String,
    },
}

/// Reports to the supervisor.
#[derive(Debug)]
pub enum CallNote {
    /// A session of this call is over (for any reason).
    SessionClosed {
        /// The call's key.
        call: String,
        /// Session id.
        session_id: String,
        /// Why.
        reason: String,
    },
    /// The call task has ended.
    Ended {
        /// The call's key.
        call: String,
        /// How it ended.
        status: CallStatus,
        /// Its directory, if it left one (a call nobody joined leaves none).
        dir: Option<std::path::PathBuf>,
        /// Its post-processing, as fixed when it started.
        post: crate::post::PostPlan,
    },
}

/// Events from GStreamer threads.
#[derive(Debug)]
pub enum CallEvent {
    /// webrtcbin produced a local ICE candidate.
    LocalIce {
        /// Session.
        session: String,
        /// m-line.
        mline: u32,
        /// Candidate.
        candidate: String,
    },
    /// An incoming track's chain is built and its tee is ready.
    TrackReady {
        /// Session.
        session: String,
        /// m-line.
        mline: u32,
        /// Codec.
        codec: &'static media::Codec,
        /// The elements.
        chain: media::TrackChain,
    },
    /// An incoming track callrec cannot record was discarded.
    TrackDiscarded {
        /// Session.
        session: String,
        /// m-line.
        mline: u32,
        /// The encoding it came in.
        encoding: String,
        /// Why.
        reason: String,
        /// The fakesink it went to.
        sink: Option<gst::Element>,
    },
    /// An output input got its first usable buffer.
    FirstBuffer {
        /// Session.
        session: String,
        /// Output id.
        output: usize,
        /// m-line.
        mline: u32,
        /// Its running time.
        running: gst::ClockTime,
    },
    /// A decoded video track's size is known or changed.
    VideoSize {
        /// Session.
        session: String,
        /// Width / height.
        aspect: f64,
    },
    /// webrtcbin's peer connection state changed.
    Connection {
        /// Session.
        session: String,
        /// New state.
        state: gst_webrtc::WebRTCPeerConnectionState,
    },
}

/// Where a session stands; it only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SessionState {
    AwaitingOffer,
    Answered,
    Connected,
    Ended,
}

#[derive(Debug)]
struct Track {
    kind: Kind,
    codec: &'static media::Codec,
    chain: media::TrackChain,
    last_keyframe_request: Option<Instant>,
}

#[derive(Debug)]
struct Session {
    id: String,
    peer_id: String,
    name: String,
    /// What the mix shows for them: their meta name, or their safe name.
    label: String,
    state: SessionState,
    created: Instant,
    connected_at: Option<Instant>,
    webrtcbin: gst::Element,
    remote_set: bool,
    pending_ice: Vec<(u32, String)>,
    offered: Vec<sdp::OfferedTrack>,
    tracks: BTreeMap<u32, Track>,
    discarded: Vec<gst::Element>,
    outputs: Vec<Output>,
    decoders: BTreeMap<u32, media::DecodeChain>,
    manifest_index: usize,
}

/// A running call.
struct Call {
    key: String,
    settings: CallSettings,
    dir: PathBuf,
    pipeline: gst::Pipeline,
    manifest: Manifest,
    mixes: Vec<mix::Mix>,
    sessions: HashMap<String, Session>,
    used_names: HashSet<String>,
    next_output: usize,
    events_tx: mpsc::UnboundedSender<CallEvent>,
    signal_tx: mpsc::Sender<SignalCommand>,
    notes_tx: mpsc::UnboundedSender<CallNote>,
    failed: Option<String>,
    graphs: graphs::Graphs,
}

/// Starts a call task. The call directory and manifest are created before it returns, so a
/// call that cannot write is refused at once.
pub fn spawn(
    key: String,
    settings: CallSettings,
    cmds: mpsc::UnboundedReceiver<CallCmd>,
    notes_tx: mpsc::UnboundedSender<CallNote>,
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
        .map_err(|e| format!("cannot write the manifest in {}: {e}", dir.display()))?;
    let pipeline = gst::Pipeline::with_name(&format!("call-{dir_name}"));
    let mut manifest = manifest;
    let mixes = create_mixes(&settings, &pipeline, &dir, &dir_name, &mut manifest);
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start the call pipeline: {e}"))?;
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    info!(call = %settings.name, dir = %dir.display(), "call started");
    let graphs = graphs::Graphs::new(settings.graphs, &dir);
    let call = Call {
        key,
        settings,
        dir,
        pipeline,
        manifest,
        mixes,
        sessions: HashMap::new(),
        used_names: HashSet::new(),
        next_output: 0,
        events_tx,
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
        mut cmds: mpsc::UnboundedReceiver<CallCmd>,
        mut events: mpsc::UnboundedReceiver<CallEvent>,
    ) {
        let Some(bus) = self.pipeline.bus() else {
            self.fail("the pipeline has no bus").await;
            return;
        };
        let mut bus_stream = bus.stream();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reason = loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(CallCmd::Finish { reason }) => break reason,
                    Some(cmd) => self.on_command(cmd).await,
                    None => break "callrec is shutting down".to_owned(),
                },
                Some(ev) = events.recv() => self.on_event(ev).await,
                Some(msg) = bus_stream.next() => self.on_bus(&msg).await,
                _ = tick.tick() => self.on_tick().await,
            }
            if let Some(reason) = self.failed.clone() {
                break reason;
            }
        };
        self.finish(&reason, &mut events).await;
    }

    async fn on_command(&mut self, cmd: CallCmd) {
        match cmd {
            CallCmd::StartSession {
                session_id,
                peer_id,
                meta,
            } => {
                if let Err(e) = self.start_session(&session_id, &peer_id, meta) {
                    warn!(call = %self.settings.name, session = %session_id, "cannot start session: {e}");
                    self.end_session(&session_id, &format!("could not start: {e}"))
                        .await;
                }
            }
            CallCmd::Offer { session_id, sdp } => {
                if let Err(e) = self.on_offer(&session_id, &sdp).await {
                    warn!(call = %self.settings.name, session = %session_id, "cannot answer the offer: {e}");
                    self.end_session(&session_id, &format!("negotiation failed: {e}"))
                        .await;
                }
            }
            CallCmd::Ice {
                session_id,
                mline,
                candidate,
            } => {
                if let Some(s) = self.sessions.get_mut(&session_id) {
                    if s.remote_set {
                        s.webrtcbin
                            .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
                    } else if s.pending_ice.len() < 256 {
                        s.pending_ice.push((mline, candidate));
                    }
                }
            }
            CallCmd::RemoteEnded { session_id, reason } => {
                self.end_session(&session_id, &reason).await;
            }
            CallCmd::Finish { .. } => {}
        }
    }

    async fn on_event(&mut self, ev: CallEvent) {
        match ev {
            CallEvent::LocalIce {
                session,
                mline,
                candidate,
            } => {
                if self.sessions.contains_key(&session) {
                    let _ = self
                        .signal_tx
                        .send(SignalCommand::Ice {
                            session_id: session,
                            candidate,
                            mline_index: mline,
                        })
                        .await;
                }
            }
            CallEvent::TrackReady {
                session,
                mline,
                codec,
                chain,
            } => self.on_track(&session, mline, codec, chain),
            CallEvent::TrackDiscarded {
                session,
                mline,
                encoding,
                reason,
                sink,
            } => {
                let participant = self.sessions.get_mut(&session).map(|s| {
                    s.discarded.extend(sink);
                    // Outputs waiting for this track need not wait any longer.
                    for out in &mut s.outputs {
                        out.release(mline);
                    }
                    s.peer_id.clone()
                });
                if let Some(participant) = participant {
                    let kind = self
                        .sessions
                        .get(&session)
                        .and_then(|s| s.offered.iter().find(|t| t.mline == mline))
                        .map_or("unknown", |t| t.kind.as_str());
                    self.skip_track(&participant, mline, kind, &encoding, reason);
                    self.check_outputs(&session);
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
                    }
                    S::Failed | S::Closed => {
                        self.end_session(&session, &format!("peer connection {state:?}"))
                            .await;
                    }
                    _ => {}
                }
            }
        }
    }

    async fn on_tick(&mut self) {
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            self.check_outputs(&id);
            let Some(session) = self.sessions.get(&id) else {
                continue;
            };
            // Keep asking for keyframes while any video input waits for one.
            let waiting: Vec<u32> = session
                .outputs
                .iter()
                .flat_map(|o| o.inputs.iter())
                .filter(|i| {
                    i.kind == Kind::Video && !i.released && i.first.is_none() && i.tee_pad.is_some()
                })
                .map(|i| i.mline)
                .collect();
            for mline in waiting {
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
                    if session.state == SessionState::AwaitingOffer {
                        "send an offer"
                    } else {
                        "connect"
                    },
                    self.settings.negotiation_timeout.as_secs_f64()
                );
                warn!(call = %self.settings.name, session = %id, "{reason}");
                self.end_session(&id, &reason).await;
            } else if session.state == SessionState::Connected && self.media_silent(session) {
                let reason = format!(
                    "no media for {:.0}s",
                    self.settings.media_timeout.as_secs_f64()
                );
                warn!(call = %self.settings.name, session = %id, "{reason}");
                self.end_session(&id, &reason).await;
            }
        }
    }

    async fn on_bus(&mut self, msg: &gst::Message) {
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
                // An error inside one session's elements ends that session; anything else
                // fails the call.
                let owner = self
                    .sessions
                    .values()
                    .find(|s| {
                        msg.src().is_some_and(|src| {
                            owns(src, &s.webrtcbin)
                                || s.outputs.iter().any(|o| owns(src, &o.bin))
                                || s.tracks
                                    .values()
                                    .any(|t| t.chain.elements.iter().any(|e| owns(src, e)))
                        })
                    })
                    .map(|s| s.id.clone());
                let mix = msg
                    .src()
                    .and_then(|src| self.mixes.iter_mut().find(|m| owns(src, &m.bin)));
                if let Some(mix) = mix {
                    // A broken mix ends only that mix; passthrough recordings go on.
                    mix.entry.status = "failed".into();
                    let message = format!("mix {} failed: {text}", mix.template.name);
                    self.warn(message);
                    return;
                }
                match owner {
                    Some(session) => {
                        warn!(call = %self.settings.name, %session, "pipeline error: {text}");
                        self.end_session(&session, &format!("pipeline error: {text}"))
                            .await;
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

    /// Ends every session and the call, writes the final manifest and stops the pipeline.
    async fn finish(mut self, reason: &str, events: &mut mpsc::UnboundedReceiver<CallEvent>) {
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            self.end_session(&id, reason).await;
        }
        while events.try_recv().is_ok() {}
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
            let _ = std::fs::remove_file(self.dir.join(recording::MANIFEST_FILE));
            let _ = std::fs::remove_dir(&self.dir);
        } else {
            self.save_manifest();
            self.graphs.dump(&self.pipeline, "eos");
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
        info!(call = %self.settings.name, dir = %self.dir.display(), status = ?self.manifest.status, "call finished");
        let _ = self.notes_tx.send(CallNote::Ended {
            call: self.key.clone(),
            status: self.manifest.status,
            dir: self
                .dir
                .join(recording::MANIFEST_FILE)
                .is_file()
                .then(|| self.dir.clone()),
            post: self.settings.post.clone(),
        });
    }

    /// Ends every live mix: EOS from its sources, then a bounded wait for its files.
    async fn finish_mixes(&mut self) {
        let now = self.now_ms();
        for m in &mut self.mixes {
            m.send_eos(now);
        }
        let deadline = tokio::time::Instant::now() + EOS_TIMEOUT;
        while self.mixes.iter().any(|m| !m.finished()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for m in &mut self.mixes {
            if m.entry.status == "recording" {
                m.entry.status = if m.finished() {
                    "complete"
                } else {
                    "interrupted"
                }
                .into();
            }
        }
    }

    async fn fail(mut self, reason: &str) {
        self.failed = Some(reason.to_owned());
        let (_tx, mut rx) = mpsc::unbounded_channel();
        self.finish(reason, &mut rx).await;
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
        let Some(db) = media::loudest_rms_db(level) else {
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

    fn save_manifest(&self) {
        let mut manifest = self.manifest.clone();
        manifest.mixes = self.mixes.iter().map(|m| m.entry.clone()).collect();
        if let Err(e) =
            tokio::task::block_in_place(|| recording::write_manifest(&self.dir, &manifest))
        {
            error!(call = %self.settings.name, dir = %self.dir.display(), "cannot write manifest.json: {e}");
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
fn owns(src: &gst::Object, element: &impl IsA<gst::Object>) -> bool {
    src == element.upcast_ref::<gst::Object>() || src.has_as_ancestor(element)
}
