//! One call: one tokio task owning one GStreamer pipeline, with a webrtcbin per participant
//! session, a chain per incoming track and a bin per template instance.
//!
//! The task selects over commands from the supervisor, events forwarded from GStreamer's
//! threads (callbacks hold weak references and only send), the pipeline's bus and a timer.
//! Its state only moves forward (`Recording → Draining → Finished | Failed`); finishing is
//! idempotent and every wait in it is bounded. A failure ends this call only.

pub mod media;
mod negotiation;
pub mod output;
mod routing;
pub mod sdp;
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
use crate::templates::{Kind, Template};
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
    manifest_index: usize,
}

/// A running call.
struct Call {
    key: String,
    settings: CallSettings,
    dir: PathBuf,
    pipeline: gst::Pipeline,
    manifest: Manifest,
    sessions: HashMap<String, Session>,
    used_names: HashSet<String>,
    next_output: usize,
    events_tx: mpsc::UnboundedSender<CallEvent>,
    signal_tx: mpsc::Sender<SignalCommand>,
    notes_tx: mpsc::UnboundedSender<CallNote>,
    failed: Option<String>,
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
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start the call pipeline: {e}"))?;
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    info!(call = %settings.name, dir = %dir.display(), "call started");
    let call = Call {
        key,
        settings,
        dir,
        pipeline,
        manifest,
        sessions: HashMap::new(),
        used_names: HashSet::new(),
        next_output: 0,
        events_tx,
        signal_tx,
        notes_tx,
        failed: None,
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
            MessageView::Warning(w) => {
                debug!(call = %self.settings.name, "pipeline warning: {}", w.error());
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
        self.manifest.status = if self.failed.is_some() {
            CallStatus::Failed
        } else {
            CallStatus::Complete
        };
        self.manifest.ended_at = Some(recording::now_rfc3339());
        self.manifest.end_reason = Some(reason.to_owned());
        if self.manifest.participants.is_empty() && self.failed.is_none() {
            // Nobody joined (the session never started): leave no empty directory behind.
            let _ = std::fs::remove_file(self.dir.join(recording::MANIFEST_FILE));
            let _ = std::fs::remove_dir(&self.dir);
        } else {
            self.save_manifest();
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
        });
    }

    async fn fail(mut self, reason: &str) {
        self.failed = Some(reason.to_owned());
        let (_tx, mut rx) = mpsc::unbounded_channel();
        self.finish(reason, &mut rx).await;
    }

    fn warn(&mut self, message: String) {
        warn!(call = %self.settings.name, "{message}");
        self.manifest.warnings.push(message);
        self.save_manifest();
    }

    fn save_manifest(&self) {
        if let Err(e) =
            tokio::task::block_in_place(|| recording::write_manifest(&self.dir, &self.manifest))
        {
            error!(call = %self.settings.name, dir = %self.dir.display(), "cannot write manifest.json: {e}");
        }
    }
}

/// Limits a webrtcbin's ICE candidates to the given local addresses (none given: every
/// interface). Operators use it to keep media on one interface; tests keep it on loopback.
pub fn restrict_ice_addresses(
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
