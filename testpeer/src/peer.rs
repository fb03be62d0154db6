//! One producer connection: registers with the signalling server, answers `startSession`
//! with a [`Session`], relays SDP and ICE, starts and stops media on timers, and ends
//! everything when its time is up. Bad messages from the server are logged, never fatal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gst_plugin_webrtc_signalling_protocol as proto;
use gst_webrtc::WebRTCPeerConnectionState;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, error, info, warn};

use crate::report::{emit, excerpt};
use crate::session::{wait_for_caps, EventTx, Session, SessionEvent, SessionEventKind, BIN_PREFIX};
use crate::signalling::{self, Ws};
use crate::{Shared, Stop};

/// How long a peer waits for its first connected session.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How a peer finished.
#[derive(Debug)]
pub enum Outcome {
    /// Sent media (or was stopped by a signal).
    Completed,
    /// Never got a connected session.
    NeverConnected,
    /// Could not talk to the signalling server at all.
    Failed(anyhow::Error),
}

/// Why a peer's main loop ended.
#[derive(Debug)]
enum Exit {
    Stopped,
    Deadline,
    ConnectTimeout,
    SignallingLost,
}

/// One producer connection to the signalling server.
pub struct Peer {
    index: u32,
    shared: Arc<Shared>,
    ws: Option<Ws>,
    peer_id: Option<String>,
    sessions: HashMap<String, Session>,
    tx: EventTx,
    first_connected: Option<Instant>,
    session_counter: u64,
    teardowns: Vec<JoinHandle<()>>,
}

/// Sleeps until `deadline`, or forever if there is none.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Peer {
    /// Runs one producer until the duration is over or the process is stopped.
    pub async fn run(shared: Arc<Shared>, index: u32, mut stop: watch::Receiver<Stop>) -> Outcome {
        let Some(url) = shared.args.url.clone() else {
            return Outcome::Failed(anyhow::anyhow!("no --url to connect to"));
        };
        let ws = match signalling::connect(&url, shared.args.ca_file.as_deref(), &mut stop).await {
            Ok(Some(ws)) => ws,
            Ok(None) => return Outcome::Completed,
            Err(e) => return Outcome::Failed(e),
        };
        info!(peer = index, "connected to {url}");
        let (tx, rx) = mpsc::unbounded_channel();
        let peer = Peer {
            index,
            shared,
            ws: Some(ws),
            peer_id: None,
            sessions: HashMap::new(),
            tx,
            first_connected: None,
            session_counter: 0,
            teardowns: Vec::new(),
        };
        peer.main_loop(rx, stop).await
    }

    /// Dispatches signalling messages, callback events, timers and stop requests.
    async fn main_loop(
        mut self,
        mut events: mpsc::UnboundedReceiver<SessionEvent>,
        mut stop: watch::Receiver<Stop>,
    ) -> Outcome {
        let keep_alive = self.shared.args.keep_alive;
        let connect_deadline = (!keep_alive).then(|| Instant::now() + CONNECT_TIMEOUT);
        let exit = loop {
            if *stop.borrow() != Stop::Running {
                break Exit::Stopped;
            }
            let deadline = match self.first_connected {
                Some(t) if !keep_alive => Some(t + self.shared.args.duration),
                Some(_) => None,
                None => connect_deadline,
            };
            tokio::select! {
                msg = signalling::next_message(&mut self.ws) => {
                    if !self.on_ws(msg).await && self.nothing_to_wait_for() {
                        break Exit::SignallingLost;
                    }
                }
                Some(event) = events.recv() => self.on_event(event).await,
                res = stop.changed() => {
                    if res.is_err() {
                        break Exit::Stopped;
                    }
                }
                _ = sleep_until_opt(deadline) => {
                    break if self.first_connected.is_some() {
                        Exit::Deadline
                    } else {
                        Exit::ConnectTimeout
                    };
                }
            }
        };
        self.shutdown(exit).await
    }

    /// True when the signalling is gone and no session can still connect.
    fn nothing_to_wait_for(&self) -> bool {
        self.ws.is_none()
            && self.first_connected.is_none()
            && self.sessions.is_empty()
            && !self.shared.args.keep_alive
    }

    /// Handles one WebSocket read; returns false once the connection is gone.
    async fn on_ws(&mut self, msg: Option<Result<Message, tungstenite::Error>>) -> bool {
        match msg {
            Some(Ok(Message::Text(text))) => {
                self.on_text(text.as_str()).await;
                true
            }
            Some(Ok(Message::Binary(data))) => {
                warn!(
                    peer = self.index,
                    len = data.len(),
                    "ignoring binary message"
                );
                true
            }
            Some(Ok(Message::Close(frame))) => {
                warn!(
                    peer = self.index,
                    ?frame,
                    "signalling server closed the connection; sessions keep streaming"
                );
                self.ws = None;
                false
            }
            Some(Ok(_)) => true, // ping/pong, handled by tungstenite
            Some(Err(e)) => {
                warn!(
                    peer = self.index,
                    "signalling connection lost ({e}); sessions keep streaming"
                );
                self.ws = None;
                false
            }
            None => {
                warn!(
                    peer = self.index,
                    "signalling connection ended; sessions keep streaming"
                );
                self.ws = None;
                false
            }
        }
    }

    /// Sends a message to the server; a failure marks the connection as gone.
    async fn send(&mut self, msg: &proto::IncomingMessage) {
        let Some(ws) = self.ws.as_mut() else {
            debug!(peer = self.index, ?msg, "signalling gone; not sending");
            return;
        };
        let text = match serde_json::to_string(msg) {
            Ok(text) => text,
            Err(e) => {
                error!("cannot serialize {msg:?}: {e}");
                return;
            }
        };
        if let Err(e) = signalling::send_text(ws, text).await {
            warn!(
                peer = self.index,
                "cannot send to the signalling server ({e}); sessions keep streaming"
            );
            self.ws = None;
        }
    }

    /// Our peer id, or an empty string before `welcome`.
    fn id(&self) -> &str {
        self.peer_id.as_deref().unwrap_or_default()
    }

    /// Handles one text message from the server; never fails on bad input.
    async fn on_text(&mut self, text: &str) {
        let msg = match serde_json::from_str::<proto::OutgoingMessage>(text) {
            Ok(msg) => msg,
            Err(e) => {
                warn!(
                    peer = self.index,
                    "ignoring unexpected message ({e}): {:?}",
                    excerpt(text)
                );
                return;
            }
        };
        match msg {
            proto::OutgoingMessage::Welcome { peer_id } => self.on_welcome(peer_id).await,
            proto::OutgoingMessage::StartSession {
                peer_id,
                session_id,
                offer,
            } => self.on_start_session(peer_id, session_id, offer).await,
            proto::OutgoingMessage::EndSession(proto::EndSessionMessage { session_id }) => {
                if self.sessions.contains_key(&session_id) {
                    info!(peer = self.index, %session_id, "consumer ended the session");
                    self.end_session(&session_id, false).await;
                } else {
                    debug!(peer = self.index, %session_id, "endSession for unknown session");
                }
            }
            proto::OutgoingMessage::Peer(proto::PeerMessage {
                session_id,
                peer_message,
            }) => self.on_peer_message(&session_id, peer_message).await,
            proto::OutgoingMessage::Error { details } => {
                warn!(
                    peer = self.index,
                    "signalling server error: {}",
                    excerpt(&details)
                );
            }
            other => debug!(peer = self.index, ?other, "ignoring message"),
        }
    }

    /// `welcome`: remember our id and register as a producer.
    async fn on_welcome(&mut self, peer_id: String) {
        if let Some(old) = &self.peer_id {
            warn!(peer = self.index, %old, new = %peer_id, "ignoring second welcome");
            return;
        }
        info!(peer = self.index, %peer_id, "welcomed");
        emit(json!({"event": "welcome", "peer_id": peer_id}));
        self.peer_id = Some(peer_id);
        let status = proto::IncomingMessage::SetPeerStatus(proto::PeerStatus {
            roles: vec![proto::PeerRole::Producer],
            meta: Some(self.shared.args.meta.clone()),
            peer_id: None,
        });
        self.send(&status).await;
    }

    /// `startSession`: a consumer wants our media.
    async fn on_start_session(
        &mut self,
        consumer_id: String,
        session_id: String,
        offer: Option<String>,
    ) {
        if self.peer_id.is_none() {
            warn!(peer = self.index, %session_id, "startSession before welcome; ignoring");
            return;
        }
        if self.sessions.contains_key(&session_id) {
            warn!(peer = self.index, %session_id, "duplicate startSession; ignoring");
            return;
        }
        let with_offer = offer.is_some();
        info!(peer = self.index, %session_id, %consumer_id, with_offer, "session requested");
        if !with_offer && self.shared.args.answer_only {
            warn!(peer = self.index, %session_id, "the consumer sent no offer, and this producer only answers; ending the session");
            let end = proto::EndSessionMessage { session_id };
            self.send(&proto::IncomingMessage::EndSession(end)).await;
            return;
        }
        self.session_counter += 1;
        let name = format!("{}{}-{}", BIN_PREFIX, self.index, self.session_counter);
        let mut session = match Session::start(
            &self.shared.media,
            &self.shared.args.ice_addresses,
            &name,
            &session_id,
            &self.tx,
        ) {
            Ok(session) => session,
            Err(e) => {
                error!(peer = self.index, %session_id, "cannot start session: {e:#}");
                let end = proto::EndSessionMessage { session_id };
                self.send(&proto::IncomingMessage::EndSession(end)).await;
                return;
            }
        };
        emit(json!({
            "event": "session",
            "peer_id": self.id(),
            "session_id": session_id,
            "consumer_id": consumer_id,
        }));
        session.remote_offer = offer;
        let wait = wait_for_caps(&session.sink_pads, &self.tx, &session_id);
        session.timers.push(wait);
        self.sessions.insert(session_id, session);
    }

    /// Creates our offer, or answers the consumer's, once the media caps are known.
    async fn negotiate(&mut self, sid: &str) {
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        let res = match session.remote_offer.take() {
            Some(sdp) => session.answer_offer(&sdp, &self.tx),
            None => {
                session.create_offer(&self.tx);
                Ok(())
            }
        };
        if let Err(e) = res {
            warn!(peer = self.index, session_id = %sid, "{e:#}");
            self.end_session(sid, true).await;
        }
    }

    /// `peer`: SDP answer or ICE candidate from the consumer.
    async fn on_peer_message(&mut self, session_id: &str, msg: proto::PeerMessageInner) {
        let Some(session) = self.sessions.get(session_id) else {
            debug!(peer = self.index, %session_id, "peer message for unknown session");
            return;
        };
        match msg {
            proto::PeerMessageInner::Sdp(proto::SdpMessage::Answer { sdp }) => {
                debug!(peer = self.index, %session_id, "received answer");
                if let Err(e) = session.apply_answer(&sdp, &self.tx) {
                    warn!(peer = self.index, %session_id, "{e:#}");
                    self.end_session(session_id, true).await;
                }
            }
            proto::PeerMessageInner::Sdp(proto::SdpMessage::Offer { .. }) => {
                warn!(peer = self.index, %session_id, "ignoring renegotiation offer from consumer");
            }
            proto::PeerMessageInner::Ice {
                candidate,
                sdp_m_line_index,
            } => session.add_ice_candidate(sdp_m_line_index, &candidate),
        }
    }

    /// Handles an event from webrtcbin callbacks or a timer.
    async fn on_event(&mut self, event: SessionEvent) {
        let sid = event.session_id;
        if !self.sessions.contains_key(&sid) {
            debug!(session_id = %sid, ?event.what, "event for a finished session");
            return;
        }
        match event.what {
            SessionEventKind::LocalSdp { answer, sdp } => {
                let sdp = if answer {
                    proto::SdpMessage::Answer { sdp }
                } else {
                    proto::SdpMessage::Offer { sdp }
                };
                debug!(peer = self.index, session_id = %sid, answer, "sending local SDP");
                let msg = proto::PeerMessage {
                    session_id: sid,
                    peer_message: proto::PeerMessageInner::Sdp(sdp),
                };
                self.send(&proto::IncomingMessage::Peer(msg)).await;
            }
            SessionEventKind::Ice { mline, candidate } => {
                let msg = proto::PeerMessage {
                    session_id: sid,
                    peer_message: proto::PeerMessageInner::Ice {
                        candidate,
                        sdp_m_line_index: mline,
                    },
                };
                self.send(&proto::IncomingMessage::Peer(msg)).await;
            }
            SessionEventKind::GatheringComplete => {} // trickled: nothing to send
            SessionEventKind::State(state) => self.on_state(&sid, state).await,
            SessionEventKind::CapsReady => self.negotiate(&sid).await,
            SessionEventKind::Failed(reason) => {
                warn!(peer = self.index, session_id = %sid, "negotiation failed: {reason}");
                self.end_session(&sid, true).await;
            }
            SessionEventKind::Valve { kind, open } => {
                let Some(session) = self.sessions.get(&sid) else {
                    return;
                };
                if session.set_flowing(kind, open) {
                    let event = if open { "media" } else { "media_stopped" };
                    info!(peer = self.index, session_id = %sid, "{} {event}", kind.as_str());
                    emit(json!({
                        "event": event,
                        "peer_id": self.id(),
                        "session_id": sid,
                        "kind": kind.as_str(),
                    }));
                }
            }
        }
    }

    /// Connection state changes: start media on connect, drop failed sessions.
    async fn on_state(&mut self, sid: &str, state: WebRTCPeerConnectionState) {
        debug!(peer = self.index, session_id = %sid, ?state, "connection state");
        match state {
            WebRTCPeerConnectionState::Connected => {
                let args = &self.shared.args;
                let Some(session) = self.sessions.get_mut(sid) else {
                    return;
                };
                let now = Instant::now();
                if !session.start_media(args, &self.tx, now) {
                    return;
                }
                self.shared.schedule_resize();
                info!(peer = self.index, session_id = %sid, "peer connection connected");
                emit(json!({"event": "connected", "peer_id": self.id(), "session_id": sid}));
                if self.first_connected.is_none() {
                    self.first_connected = Some(now);
                    if !args.keep_alive {
                        info!(
                            peer = self.index,
                            "sending for {:.3} s",
                            args.duration.as_secs_f64()
                        );
                    }
                }
            }
            WebRTCPeerConnectionState::Failed => {
                warn!(peer = self.index, session_id = %sid, "peer connection failed");
                self.end_session(sid, true).await;
            }
            _ => {}
        }
    }

    /// Ends a session: tells the server (if `notify_server`), reports it and tears it down.
    async fn end_session(&mut self, sid: &str, notify_server: bool) {
        let Some(session) = self.sessions.remove(sid) else {
            return;
        };
        session.close_valves();
        if notify_server {
            let end = proto::EndSessionMessage {
                session_id: sid.to_owned(),
            };
            self.send(&proto::IncomingMessage::EndSession(end)).await;
        }
        emit(json!({"event": "session_ended", "peer_id": self.id(), "session_id": sid}));
        let pipeline = self.shared.media.pipeline.clone();
        self.teardowns
            .push(tokio::spawn(session.teardown(pipeline)));
    }

    /// Stops media, ends all sessions, closes the WebSocket and reports `done`.
    async fn shutdown(mut self, exit: Exit) -> Outcome {
        let stopped_at = Instant::now();
        info!(peer = self.index, ?exit, "stopping");
        for session in self.sessions.values() {
            session.close_valves();
        }
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for sid in ids {
            self.end_session(&sid, true).await;
        }
        if let Some(ws) = self.ws.take() {
            signalling::close(ws, self.index).await;
        }
        let sent = self
            .first_connected
            .map(|t| stopped_at.saturating_duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        if let Some(peer_id) = &self.peer_id {
            emit(json!({
                "event": "done",
                "peer_id": peer_id,
                "sent_secs": (sent * 1000.0).round() / 1000.0,
            }));
        }
        for teardown in self.teardowns.drain(..) {
            let _ = teardown.await;
        }
        match exit {
            Exit::ConnectTimeout => {
                eprintln!(
                    "callrec-testpeer: error: peer {} ({}) got no connected session within {} s",
                    self.index,
                    self.id(),
                    CONNECT_TIMEOUT.as_secs()
                );
                Outcome::NeverConnected
            }
            Exit::SignallingLost => {
                eprintln!(
                    "callrec-testpeer: error: peer {} ({}) lost the signalling \
                     connection before any session connected",
                    self.index,
                    self.id()
                );
                Outcome::NeverConnected
            }
            Exit::Stopped | Exit::Deadline => Outcome::Completed,
        }
    }
}
