//! One call: one tokio task owning one GStreamer pipeline, with a webrtcbin per participant
//! session, a chain per incoming track and a bin per template instance.
//!
//! The task selects over commands from the supervisor, events forwarded from GStreamer's
//! threads (callbacks hold weak references and only send), the pipeline's bus and a timer.
//! Its state only moves forward (`Recording → Draining → Finished | Failed`); finishing is
//! idempotent and every wait in it is bounded. A failure ends this call only.

pub mod media;
pub mod output;
pub mod sdp;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gst::prelude::*;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::config::IceConfig;
use crate::names;
use crate::recording::{self, CallStatus, Manifest, ParticipantEntry, PipelineEntry, TrackEntry};
use crate::signalling::SignalCommand;
use crate::templates::{Kind, Scope, Template};
use output::Output;

/// How long sinks get to see EOS before their bin is stopped anyway.
const EOS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one state change to NULL may take before the element is abandoned.
const NULL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the call's timers run.
const TICK: Duration = Duration::from_millis(50);

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
    let dir = recording::create_call_dir(&settings.recordings_dir, &settings.name).map_err(|e| {
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

    fn start_session(
        &mut self,
        session_id: &str,
        peer_id: &str,
        meta: serde_json::Value,
    ) -> Result<(), String> {
        if self.sessions.contains_key(session_id) {
            return Err("duplicate session id".into());
        }
        let base = names::safe_name(peer_id);
        let mut name = base.clone();
        let mut n = 2;
        while self.used_names.contains(&name) {
            name = format!("{base}+{n}");
            n += 1;
        }
        self.used_names.insert(name.clone());
        let webrtcbin = gst::ElementFactory::make("webrtcbin")
            .name(format!("webrtc-{name}"))
            .property_from_str("bundle-policy", "max-bundle")
            .build()
            .map_err(|e| format!("cannot create webrtcbin: {e}"))?;
        if let Some(stun) = &self.settings.ice.stun_server {
            webrtcbin.set_property("stun-server", stun);
        }
        for turn in &self.settings.ice.turn_servers {
            webrtcbin.emit_by_name::<bool>("add-turn-server", &[turn]);
        }
        self.connect_signals(&webrtcbin, session_id);
        self.pipeline
            .add(&webrtcbin)
            .map_err(|e| format!("cannot add webrtcbin: {e}"))?;
        webrtcbin
            .sync_state_with_parent()
            .map_err(|e| format!("cannot start webrtcbin: {e}"))?;
        self.manifest.participants.push(ParticipantEntry {
            id: peer_id.to_owned(),
            name: name.clone(),
            meta,
            session: session_id.to_owned(),
            joined_at: recording::now_rfc3339(),
            left_at: None,
            end_reason: None,
        });
        let manifest_index = self.manifest.participants.len() - 1;
        info!(call = %self.settings.name, session = %session_id, participant = %name, "participant joined");
        self.sessions.insert(
            session_id.to_owned(),
            Session {
                id: session_id.to_owned(),
                peer_id: peer_id.to_owned(),
                name,
                state: SessionState::AwaitingOffer,
                created: Instant::now(),
                connected_at: None,
                webrtcbin,
                remote_set: false,
                pending_ice: vec![],
                offered: vec![],
                tracks: BTreeMap::new(),
                discarded: vec![],
                outputs: vec![],
                manifest_index,
            },
        );
        self.save_manifest();
        Ok(())
    }

    /// Wires webrtcbin's signals to the call's event channel (weak references only).
    fn connect_signals(&self, webrtcbin: &gst::Element, session_id: &str) {
        let tx = self.events_tx.clone();
        let session = session_id.to_owned();
        webrtcbin.connect("on-ice-candidate", false, move |values| {
            let mline = values.get(1).and_then(|v| v.get::<u32>().ok())?;
            let candidate = values.get(2).and_then(|v| v.get::<String>().ok())?;
            let _ = tx.send(CallEvent::LocalIce {
                session: session.clone(),
                mline,
                candidate,
            });
            None
        });
        let tx = self.events_tx.clone();
        let session = session_id.to_owned();
        webrtcbin.connect_notify(Some("connection-state"), move |bin, _| {
            let state = bin.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state");
            let _ = tx.send(CallEvent::Connection {
                session: session.clone(),
                state,
            });
        });
        let tx = self.events_tx.clone();
        let session = session_id.to_owned();
        let pipeline = self.pipeline.downgrade();
        webrtcbin.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let Some(pipeline) = pipeline.upgrade() else {
                return;
            };
            on_pad_added(&pipeline, pad, &session, &tx);
        });
    }

    async fn on_offer(&mut self, session_id: &str, sdp_text: &str) -> Result<(), String> {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return Err("unknown session".into());
        };
        if session.state != SessionState::AwaitingOffer {
            return Err("a second offer (renegotiation is not supported)".into());
        }
        let (msg, offered) = sdp::offered_tracks(sdp_text).map_err(|e| e.to_string())?;
        let offer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, msg);
        let webrtcbin = session.webrtcbin.clone();
        let (promise, fut) = gst::Promise::new_future();
        webrtcbin.emit_by_name::<()>("set-remote-description", &[&offer, &promise]);
        await_promise(fut, "set-remote-description").await?;
        let (promise, fut) = gst::Promise::new_future();
        webrtcbin.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
        let reply = await_promise(fut, "create-answer").await?;
        let answer = reply
            .and_then(|r| r.get::<gst_webrtc::WebRTCSessionDescription>("answer").ok())
            .ok_or("webrtcbin gave no answer (the offer has nothing callrec can receive)")?;
        let (promise, fut) = gst::Promise::new_future();
        webrtcbin.emit_by_name::<()>("set-local-description", &[&answer, &promise]);
        await_promise(fut, "set-local-description").await?;
        let sdp_answer = answer
            .sdp()
            .as_text()
            .map_err(|e| format!("cannot serialise the answer: {e}"))?;

        let Some(session) = self.sessions.get_mut(session_id) else {
            return Err("session ended while negotiating".into());
        };
        session.remote_set = true;
        session.state = SessionState::Answered;
        for (mline, candidate) in session.pending_ice.drain(..) {
            webrtcbin.emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
        }
        debug!(call = %self.settings.name, session = %session_id, ?offered, "offer");
        session.offered = offered;
        let _ = self
            .signal_tx
            .send(SignalCommand::Answer {
                session_id: session_id.to_owned(),
                sdp: sdp_answer,
            })
            .await;
        self.create_participant_outputs(session_id);
        self.save_manifest();
        Ok(())
    }

    /// Creates the participant-scope outputs with an input per offered track they accept.
    fn create_participant_outputs(&mut self, session_id: &str) {
        let templates = self.settings.templates.clone();
        for template in templates.iter().filter(|t| t.scope == Scope::Participant) {
            let Some(session) = self.sessions.get(session_id) else {
                return;
            };
            let tracks: Vec<(u32, Kind)> = session
                .offered
                .iter()
                .filter(|t| template.input_for(t.kind).is_some())
                .filter(|t| {
                    t.encodings.iter().any(|enc| {
                        media::codec_for(enc)
                            .is_some_and(|c| c.available() && template.accepts(c.media_type))
                    })
                })
                .map(|t| (t.mline, t.kind))
                .collect();
            if tracks.is_empty() {
                continue;
            }
            let name = session.name.clone();
            let vars = self.vars(&name, None);
            if let Err(e) = self.add_output(session_id, template, &vars, &tracks, None) {
                self.warn(format!(
                    "participant {name}: template {} could not start: {e}",
                    template.name
                ));
            }
        }
    }

    fn vars(&self, participant: &str, track: Option<(&str, Kind, &str)>) -> BTreeMap<&'static str, String> {
        let mut vars = BTreeMap::new();
        vars.insert("call_dir", self.dir.to_string_lossy().into_owned());
        vars.insert("call", self.manifest.dir.clone());
        vars.insert("participant", participant.to_owned());
        if let Some((track, kind, codec)) = track {
            vars.insert("track", track.to_owned());
            vars.insert("kind", kind.as_str().to_owned());
            vars.insert("codec", codec.to_owned());
        }
        vars
    }

    fn add_output(
        &mut self,
        session_id: &str,
        template: &Template,
        vars: &BTreeMap<&'static str, String>,
        tracks: &[(u32, Kind)],
        track_name: Option<String>,
    ) -> Result<usize, String> {
        let (bin, text) = template.instantiate(vars).map_err(|e| e.to_string())?;
        let id = self.next_output;
        self.next_output += 1;
        let output = Output::create(
            id,
            template,
            bin,
            &self.pipeline,
            tracks,
            &self.dir,
        )?;
        let Some(session) = self.sessions.get_mut(session_id) else {
            return Err("session gone".into());
        };
        self.manifest.pipelines.push(PipelineEntry {
            template: template.name.clone(),
            scope: template.scope.to_string(),
            participant: session.peer_id.clone(),
            track: track_name,
            files: output.files.clone(),
            pipeline: text,
        });
        debug!(call = %self.settings.name, template = %template.name, files = ?output.files, "output created");
        session.outputs.push(output);
        Ok(id)
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
                    s.peer_id.clone()
                });
                if let Some(participant) = participant {
                    self.skip_track(&participant, mline, "unknown", &encoding, reason);
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

    fn on_track(
        &mut self,
        session_id: &str,
        mline: u32,
        codec: &'static media::Codec,
        chain: media::TrackChain,
    ) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        info!(call = %self.settings.name, participant = %session.name, mline, codec = codec.name, "track arrived");
        let track_name = format!("{}{mline}", codec.kind.as_str());
        let participant = session.name.clone();
        let peer_id = session.peer_id.clone();
        session.tracks.insert(
            mline,
            Track {
                kind: codec.kind,
                chain: chain.clone(),
                last_keyframe_request: None,
            },
        );
        let mut recorded = false;
        // Participant outputs that expect this m-line.
        let mut attach_errors = vec![];
        let mut wrong_codec = vec![];
        for out in session.outputs.iter_mut().filter(|o| o.scope() == Scope::Participant) {
            let expects = out.inputs.iter().any(|i| i.mline == mline && !i.released);
            if !expects {
                continue;
            }
            if !out.template.accepts(codec.media_type) {
                out.release(mline);
                wrong_codec.push(out.template.name.clone());
                continue;
            }
            match out.attach(mline, &chain.tee, session_id, &self.events_tx) {
                Ok(()) => {
                    recorded = true;
                    let entry = TrackEntry {
                        participant: peer_id.clone(),
                        kind: codec.kind.as_str().into(),
                        codec: codec.name.into(),
                        mline,
                        template: Some(out.template.name.clone()),
                        file: out.files.first().cloned(),
                        status: "recording".into(),
                        start_offset_ms: None,
                        duration_ms: None,
                        bytes: None,
                        note: None,
                    };
                    self.manifest.tracks.push(entry);
                    if let Some(input) = out.inputs.iter_mut().find(|i| i.mline == mline) {
                        input.manifest_track = Some(self.manifest.tracks.len() - 1);
                    }
                }
                Err(e) => attach_errors.push(format!("{}: {e}", out.template.name)),
            }
        }
        // Track outputs: every configured track template, plus the late-track fallback when
        // no participant output could take it because it started without this track.
        let mut track_templates: Vec<Template> = self
            .settings
            .templates
            .iter()
            .filter(|t| t.scope == Scope::Track && t.accepts(codec.media_type))
            .cloned()
            .collect();
        let participant_started_without = session
            .outputs
            .iter()
            .any(|o| o.scope() == Scope::Participant && o.inputs.iter().any(|i| i.mline == mline && i.released) && o.template.accepts(codec.media_type));
        if !recorded && track_templates.is_empty() && participant_started_without {
            if let Some(t) = &self.settings.late_track_template {
                if t.accepts(codec.media_type) {
                    self.manifest.warnings.push(format!(
                        "participant {participant}: {track_name} arrived after their file started; recorded to its own file with {}",
                        t.name
                    ));
                    track_templates.push(t.clone());
                }
            }
        }
        for template in track_templates {
            let vars = self.vars(&participant, Some((&track_name, codec.kind, codec.name)));
            let result = self
                .add_output(session_id, &template, &vars, &[(mline, codec.kind)], Some(track_name.clone()))
                .and_then(|id| {
                    let session = self.sessions.get_mut(session_id).ok_or("session gone")?;
                    let out = session.outputs.iter_mut().find(|o| o.id == id).ok_or("output gone")?;
                    out.attach(mline, &chain.tee, session_id, &self.events_tx)?;
                    Ok(out)
                        .map(|out| (out.template.name.clone(), out.files.first().cloned(), id))
                });
            match result {
                Ok((name, file, id)) => {
                    recorded = true;
                    self.manifest.tracks.push(TrackEntry {
                        participant: peer_id.clone(),
                        kind: codec.kind.as_str().into(),
                        codec: codec.name.into(),
                        mline,
                        template: Some(name),
                        file,
                        status: "recording".into(),
                        start_offset_ms: None,
                        duration_ms: None,
                        bytes: None,
                        note: None,
                    });
                    let idx = self.manifest.tracks.len() - 1;
                    if let Some(input) = self
                        .sessions
                        .get_mut(session_id)
                        .and_then(|s| s.outputs.iter_mut().find(|o| o.id == id))
                        .and_then(|o| o.inputs.first_mut())
                    {
                        input.manifest_track = Some(idx);
                    }
                }
                Err(e) => attach_errors.push(format!("{}: {e}", template.name)),
            }
        }
        for e in attach_errors {
            self.warn(format!("participant {participant}: {track_name}: {e}"));
        }
        if !recorded {
            let reason = if wrong_codec.is_empty() {
                format!(
                    "no configured template accepts {} ({})",
                    codec.media_type,
                    self.settings.templates.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            } else {
                format!("templates {} do not accept {}", wrong_codec.join(", "), codec.media_type)
            };
            self.skip_track(&peer_id, mline, codec.kind.as_str(), codec.name, reason);
        }
        self.request_keyframe(session_id, mline);
        self.check_outputs(session_id);
        self.save_manifest();
    }

    fn skip_track(&mut self, peer_id: &str, mline: u32, kind: &str, codec: &str, reason: String) {
        warn!(call = %self.settings.name, participant = %peer_id, mline, codec, "track skipped: {reason}");
        self.manifest
            .warnings
            .push(format!("participant {peer_id}: track m-line {mline} ({codec}) skipped: {reason}"));
        self.manifest.tracks.push(TrackEntry {
            participant: peer_id.to_owned(),
            kind: kind.to_owned(),
            codec: codec.to_lowercase(),
            mline,
            template: None,
            file: None,
            status: "skipped".into(),
            start_offset_ms: None,
            duration_ms: None,
            bytes: None,
            note: Some(reason),
        });
        self.save_manifest();
    }

    fn on_first_buffer(&mut self, session_id: &str, output: usize, mline: u32, running: gst::ClockTime) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        if let Some(out) = session.outputs.iter_mut().find(|o| o.id == output) {
            out.first_input_at.get_or_insert_with(Instant::now);
            if let Some(input) = out.inputs.iter_mut().find(|i| i.mline == mline) {
                input.first = Some(running);
                if let Some(idx) = input.manifest_track {
                    if let Some(t) = self.manifest.tracks.get_mut(idx) {
                        t.start_offset_ms = Some((running.mseconds()) as i64);
                    }
                }
            }
        }
        self.check_outputs(session_id);
        self.save_manifest();
    }

    /// Starts outputs whose inputs are all there, or whose wait is over.
    fn check_outputs(&mut self, session_id: &str) {
        let wait = self.settings.track_wait;
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        let mut notes = vec![];
        for out in &mut session.outputs {
            if out.started {
                continue;
            }
            let waited = out.first_input_at.is_some_and(|t| t.elapsed() >= wait);
            if out.ready() || waited {
                for mline in out.start() {
                    notes.push(format!(
                        "participant {}: m-line {mline} sent nothing within {:.1}s; {} started without it",
                        session.name,
                        wait.as_secs_f64(),
                        out.template.name
                    ));
                }
                info!(call = %self.settings.name, participant = %session.name, template = %out.template.name, "recording");
            }
        }
        for n in notes {
            self.warn(n);
        }
    }

    /// Asks the sender for a keyframe (PLI) on a video track, at most once per interval.
    fn request_keyframe(&mut self, session_id: &str, mline: u32) {
        let interval = self.settings.keyframe_interval;
        let Some(track) = self
            .sessions
            .get_mut(session_id)
            .and_then(|s| s.tracks.get_mut(&mline))
        else {
            return;
        };
        if track.kind != Kind::Video || track.last_keyframe_request.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        track.last_keyframe_request = Some(Instant::now());
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        track.chain.depay.send_event(event);
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
                .filter(|i| i.kind == Kind::Video && !i.released && i.first.is_none() && i.tee_pad.is_some())
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
                    if session.state == SessionState::AwaitingOffer { "send an offer" } else { "connect" },
                    self.settings.negotiation_timeout.as_secs_f64()
                );
                warn!(call = %self.settings.name, session = %id, "{reason}");
                self.end_session(&id, &reason).await;
            } else if session.state == SessionState::Connected && self.media_silent(session) {
                let reason = format!("no media for {:.0}s", self.settings.media_timeout.as_secs_f64());
                warn!(call = %self.settings.name, session = %id, "{reason}");
                self.end_session(&id, &reason).await;
            }
        }
    }

    /// True when a connected session has received nothing for the media timeout.
    fn media_silent(&self, session: &Session) -> bool {
        let timeout = self.settings.media_timeout;
        let last = session
            .outputs
            .iter()
            .flat_map(|o| o.inputs.iter().map(move |i| (o.base, i)))
            .filter_map(|(base, i)| {
                let end = i.stats.last_end_ns.load(std::sync::atomic::Ordering::Relaxed);
                (end > 0).then(|| end + base.map_or(0, |b| b.nseconds()))
            })
            .max();
        match (last, self.pipeline.current_running_time()) {
            (Some(last), Some(now)) => {
                now.nseconds().saturating_sub(last) > timeout.as_nanos() as u64
            }
            _ => session.connected_at.is_some_and(|t| t.elapsed() > timeout),
        }
    }

    /// Ends one session: finalises its outputs (EOS, bounded), stops its webrtcbin and
    /// records why. Idempotent.
    async fn end_session(&mut self, session_id: &str, reason: &str) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        if session.state == SessionState::Ended {
            return;
        }
        session.state = SessionState::Ended;
        info!(call = %self.settings.name, participant = %session.name, %reason, "participant left");
        // Data that waited for a missing track goes out now.
        for out in &mut session.outputs {
            out.start();
        }
        // EOS into every output that has data, each from its own thread: a muxer can hold one
        // input's streaming thread while it waits for another, so the order must not matter.
        let mut sends = vec![];
        for out in &mut session.outputs {
            if !out.has_data() {
                continue;
            }
            out.eos_sent = true;
            for ghost in out.live_inputs() {
                sends.push(tokio::task::spawn_blocking(move || {
                    ghost.send_event(gst::event::Eos::new());
                }));
            }
        }
        let deadline = tokio::time::Instant::now() + EOS_TIMEOUT;
        let _ = tokio::time::timeout_at(deadline, futures::future::join_all(sends)).await;
        let mut unfinished = 0;
        while let Some(session) = self.sessions.get_mut(session_id) {
            unfinished = 0;
            for out in session.outputs.iter_mut().filter(|o| o.eos_sent) {
                out.completed = out.finished();
                unfinished += usize::from(!out.completed);
            }
            if unfinished == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if unfinished > 0 {
            self.warn(format!(
                "session {session_id}: {unfinished} output(s) did not finish within {}s; their files may lack an index",
                EOS_TIMEOUT.as_secs()
            ));
        }
        let Some(mut session) = self.sessions.remove(session_id) else {
            return;
        };
        // Tear down: webrtcbin and track chains first (nothing flows any more), then outputs.
        let mut elements = vec![session.webrtcbin.clone()];
        for track in session.tracks.values() {
            elements.extend(track.chain.elements.iter().cloned());
        }
        elements.extend(session.discarded.iter().cloned());
        for out in &mut session.outputs {
            out.detach();
            elements.push(out.bin.clone().upcast());
        }
        stop_and_remove(&self.pipeline, elements).await;
        self.finalise_entries(&session, reason);
        let _ = self.notes_tx.send(CallNote::SessionClosed {
            call: self.key.clone(),
            session_id: session.id.clone(),
            reason: reason.to_owned(),
        });
        self.save_manifest();
    }

    /// Fills in the manifest entries of a finished session's tracks and files.
    fn finalise_entries(&mut self, session: &Session, reason: &str) {
        if let Some(p) = self.manifest.participants.get_mut(session.manifest_index) {
            p.left_at = Some(recording::now_rfc3339());
            p.end_reason = Some(reason.to_owned());
        }
        for out in &session.outputs {
            let bytes = out
                .files
                .iter()
                .filter_map(|f| std::fs::metadata(self.dir.join(f)).ok())
                .map(|m| m.len())
                .sum::<u64>();
            if !out.has_data() {
                for f in &out.files {
                    let _ = std::fs::remove_file(self.dir.join(f));
                }
            }
            for input in &out.inputs {
                let Some(idx) = input.manifest_track else {
                    continue;
                };
                let Some(entry) = self.manifest.tracks.get_mut(idx) else {
                    continue;
                };
                match input.first {
                    Some(first) => {
                        let base = out.base.unwrap_or(first);
                        let end = input.stats.last_end_ns.load(std::sync::atomic::Ordering::Relaxed);
                        let start_in_file = first.nseconds().saturating_sub(base.nseconds());
                        entry.duration_ms = Some(end.saturating_sub(start_in_file) / 1_000_000);
                        entry.bytes = Some(bytes);
                        entry.status = if out.completed {
                            "complete".into()
                        } else {
                            "interrupted".into()
                        };
                    }
                    None => {
                        entry.status = "empty".into();
                        entry.file = None;
                        entry.note = Some("no media arrived for this track".into());
                    }
                }
            }
        }
    }

    async fn on_bus(&mut self, msg: &gst::Message) {
        use gst::MessageView;
        match msg.view() {
            MessageView::Error(err) => {
                let src = msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                let text = format!("{} ({src}): {}", err.error(), err.debug().unwrap_or_default());
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
                        self.end_session(&session, &format!("pipeline error: {text}")).await;
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
        self.save_manifest();
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
        if let Err(e) = tokio::task::block_in_place(|| recording::write_manifest(&self.dir, &self.manifest)) {
            error!(call = %self.settings.name, dir = %self.dir.display(), "cannot write manifest.json: {e}");
        }
    }
}

/// True if `src` is `element` or inside it.
fn owns(src: &gst::Object, element: &impl IsA<gst::Object>) -> bool {
    src == element.upcast_ref::<gst::Object>() || src.has_as_ancestor(element)
}

/// webrtcbin's pad-added: build the track's chain right here (a src pad must be linked before
/// data flows), then tell the call task.
fn on_pad_added(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    session: &str,
    tx: &mpsc::UnboundedSender<CallEvent>,
) {
    let mline = pad
        .property::<Option<gst_webrtc::WebRTCRTPTransceiver>>("transceiver")
        .map(|t| t.mlineindex())
        .unwrap_or(u32::MAX);
    let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)));
    let encoding = caps
        .as_ref()
        .and_then(|c| c.structure(0))
        .and_then(|s| s.get::<String>("encoding-name").ok())
        .unwrap_or_default();
    let discard = |reason: String| {
        let sink = media::discard(pipeline, pad).ok();
        let _ = tx.send(CallEvent::TrackDiscarded {
            session: session.to_owned(),
            mline,
            encoding: encoding.clone(),
            reason,
            sink,
        });
    };
    let Some(codec) = media::codec_for(&encoding) else {
        discard(format!("callrec cannot record RTP encoding {encoding:?}"));
        return;
    };
    if !codec.available() {
        discard(format!(
            "{} needs {} and {}, which are not installed",
            codec.name,
            codec.depay,
            codec.parse.unwrap_or("nothing else")
        ));
        return;
    }
    match media::build_chain(pipeline, pad, codec) {
        Ok(chain) => {
            let _ = tx.send(CallEvent::TrackReady {
                session: session.to_owned(),
                mline,
                codec,
                chain,
            });
        }
        Err(e) => discard(format!("cannot build the {} chain: {e}", codec.name)),
    }
}

async fn await_promise(
    fut: gst::promise::PromiseFuture,
    what: &str,
) -> Result<Option<gst::Structure>, String> {
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(Ok(reply)) => {
            let reply = reply.map(|r| r.to_owned());
            if let Some(err) = reply.as_ref().and_then(|r| r.get::<glib::Error>("error").ok()) {
                return Err(format!("{what}: {err}"));
            }
            Ok(reply)
        }
        Ok(Err(e)) => Err(format!("{what}: {e:?}")),
        Err(_) => Err(format!("{what} timed out")),
    }
}

/// Sets elements to NULL off the async threads (bounded) and removes them from the pipeline.
async fn stop_and_remove(pipeline: &gst::Pipeline, elements: Vec<gst::Element>) {
    let pipeline = pipeline.clone();
    let job = tokio::task::spawn_blocking(move || {
        for e in &elements {
            let _ = e.set_locked_state(true);
            let _ = e.set_state(gst::State::Null);
            let _ = pipeline.remove(e);
        }
    });
    if tokio::time::timeout(NULL_TIMEOUT, job).await.is_err() {
        error!("elements did not stop within {}s; abandoning them", NULL_TIMEOUT.as_secs());
    }
}
