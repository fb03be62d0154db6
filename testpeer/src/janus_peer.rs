//! One publisher in a Janus VideoRoom (`--janus URL --janus-room ROOM`): a Janus session over
//! Janus's WebSocket API (subprotocol `janus-protocol`), kept alive every
//! [`KEEPALIVE_EVERY`], one VideoRoom handle joined as a publisher (`--display`,
//! `--janus-pin-file`), then the same [`Session`] bin as the other modes, its offer sent with
//! `publish`, Janus's answer applied, and candidates trickled both ways. With
//! `--janus-republish-after SECS` it unpublishes SECS after the first connection and
//! publishes again on the same handle (the same feed id) with a new session bin, since Janus
//! closes a publisher's PeerConnection on `unpublish` (after `--janus-republish-gap SECS`,
//! so that another publisher can take the m-lines it left). At the end of `--duration`, and on
//! SIGTERM/SIGINT, it sends `leave` and destroys its Janus session; SIGKILL is the publisher
//! that disappears without a word.
//!
//! Events, as the other modes print them, so that tests read all alike: `welcome` once
//! joined (`peer_id` is the **feed id**, which is how Janus and callrec know the publisher,
//! with `room`, `display`, `private_id`), `session` when Janus answered a publish
//! (`session_id` is `publish-N`, N counting from 1; `audio_codec`, `video_codec` as Janus
//! took them), `connected`, `media`, `media_stopped`, `session_ended` (with the seconds that
//! session sent, `sent_secs`), `done`; and these of its own: `janus_webrtcup`, `janus_media`
//! (`kind`, `receiving`: Janus's own word that it gets our media), `unpublished`, `left`,
//! `janus_error` (`request`, `code`, `error`) when Janus refuses a request, and `janus_lost`
//! (`reason`) when the connection, the Janus session or the PeerConnection is lost.
//!
//! A lost Janus (its WebSocket gone, e.g. a restart) ends the peer: Janus sessions do not
//! survive a restart, and tests that restart Janus start a new publisher afterwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use gst_webrtc::WebRTCPeerConnectionState;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, info, warn};

use crate::janus::{self, Incoming, Request, Requests, RoomEvent};
use crate::peer::{Outcome, CONNECT_TIMEOUT};
use crate::report::{emit, excerpt};
use crate::session::{wait_for_caps, EventTx, Session, SessionEvent, SessionEventKind, BIN_PREFIX};
use crate::signalling::{self, Ws};
use crate::{Shared, Stop};

/// How often the Janus session is kept alive: well within any `session_timeout` of 30 s or
/// more (Janus's default is 60 s), as janus.js does (25 s).
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(20);

/// How long the end waits for Janus to confirm `leave`, and then `destroy`.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a republish waits for Janus to hang up the old PeerConnection after the
/// `unpublish` reply, before it publishes anyway.
const HANGUP_WAIT: Duration = Duration::from_secs(3);

/// What a request in flight was, to know what its reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Create,
    Attach,
    Join,
    Publish,
    Unpublish,
    Leave,
    Keepalive,
    Trickle,
    Destroy,
}

impl Pending {
    /// Its name in `janus_error` events.
    fn as_str(self) -> &'static str {
        match self {
            Pending::Create => "create",
            Pending::Attach => "attach",
            Pending::Join => "join",
            Pending::Publish => "publish",
            Pending::Unpublish => "unpublish",
            Pending::Leave => "leave",
            Pending::Keepalive => "keepalive",
            Pending::Trickle => "trickle",
            Pending::Destroy => "destroy",
        }
    }

    /// Whether a refusal of it leaves nothing to do.
    fn is_fatal(self) -> bool {
        matches!(
            self,
            Pending::Create | Pending::Attach | Pending::Join | Pending::Publish
        )
    }

    /// Whether Janus answers it with an event after the `ack` (a plugin message).
    fn is_plugin_message(self) -> bool {
        matches!(
            self,
            Pending::Join | Pending::Publish | Pending::Unpublish | Pending::Leave
        )
    }
}

/// Where the publisher is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Creating the Janus session, attaching, joining.
    Joining,
    /// A session bin exists and its offer is (being) sent.
    Publishing,
    /// Janus answered.
    Published,
    /// `unpublish` sent; the next publish follows its reply and Janus's hangup of the old
    /// PeerConnection (which comes after the reply; see [`JanusPeer::ready_to_republish`]).
    Unpublishing { unpublished: bool, hung_up: bool },
    /// Unpublished, waiting `--janus-republish-gap` before publishing again.
    Pausing,
}

/// Why the main loop ended.
#[derive(Debug)]
enum Exit {
    /// SIGTERM/SIGINT or a pipeline failure.
    Stopped,
    /// `--duration` is over.
    Deadline,
    /// Not connected within [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// The WebSocket, the Janus session or the PeerConnection is gone.
    Lost(String),
    /// Janus refused a request that the publisher cannot do without.
    Failed(anyhow::Error),
}

/// A publisher in one Janus VideoRoom.
pub struct JanusPeer {
    shared: Arc<Shared>,
    room: u64,
    pin: Option<String>,
    ws: Option<Ws>,
    requests: Requests,
    pending: HashMap<String, Pending>,
    janus_session: Option<u64>,
    handle: Option<u64>,
    /// Our feed id, once joined.
    feed: Option<String>,
    tx: EventTx,
    /// The current publish's bin.
    session: Option<Session>,
    /// Whether the current publish's offer went to Janus; local candidates wait for it.
    offer_sent: bool,
    /// Local candidates reported before the offer was sent.
    early_candidates: Vec<(u32, String)>,
    /// Whether gathering completed before the offer was sent.
    gathered: bool,
    /// How many publishes were started; the current one's events carry `publish-N`.
    publishes: u32,
    phase: Phase,
    first_connected: Option<Instant>,
    /// When to unpublish (while published), or to publish again without waiting any longer
    /// for Janus's hangup (while unpublishing).
    republish_at: Option<Instant>,
    /// Whether Janus confirmed our `leave`.
    left: bool,
    teardowns: Vec<JoinHandle<()>>,
}

/// Sleeps until `deadline`, or forever if there is none.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The first line of a secret's file, without its line ending.
fn first_line(path: &std::path::Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

impl JanusPeer {
    /// Publishes until the duration is over, the process is stopped or Janus is lost.
    pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<Stop>) -> Outcome {
        let (Some(url), Some(room)) = (shared.args.janus.clone(), shared.args.janus_room) else {
            return Outcome::Failed(anyhow!("no --janus URL or --janus-room"));
        };
        let secrets = (
            shared.args.janus_pin_file.as_deref().map(first_line),
            shared.args.janus_api_secret_file.as_deref().map(first_line),
        );
        let (pin, api_secret) = match secrets {
            (Some(Err(e)), _) | (_, Some(Err(e))) => return Outcome::Failed(e),
            (pin, secret) => (pin.and_then(Result::ok), secret.and_then(Result::ok)),
        };
        let ca_file = shared.args.ca_file.clone();
        let ws = match signalling::connect_with_subprotocol(
            &url,
            ca_file.as_deref(),
            Some(janus::SUBPROTOCOL),
            &mut stop,
        )
        .await
        {
            Ok(Some(ws)) => ws,
            Ok(None) => return Outcome::Completed,
            Err(e) => return Outcome::Failed(e),
        };
        info!(room, "connected to Janus at {url}");
        let (tx, rx) = mpsc::unbounded_channel();
        let mut peer = JanusPeer {
            shared,
            room,
            pin,
            ws: Some(ws),
            requests: Requests::new(&format!("testpeer-{}", std::process::id()), api_secret),
            pending: HashMap::new(),
            janus_session: None,
            handle: None,
            feed: None,
            tx,
            session: None,
            offer_sent: false,
            early_candidates: Vec::new(),
            gathered: false,
            publishes: 0,
            phase: Phase::Joining,
            first_connected: None,
            republish_at: None,
            left: false,
            teardowns: Vec::new(),
        };
        let create = peer.requests.create();
        peer.send(Pending::Create, create).await;
        let exit = peer.main_loop(rx, stop).await;
        peer.shutdown(exit).await
    }

    /// Dispatches Janus's messages, callback events, timers and stop requests.
    async fn main_loop(
        &mut self,
        mut events: mpsc::UnboundedReceiver<SessionEvent>,
        mut stop: watch::Receiver<Stop>,
    ) -> Exit {
        let keep_alive = self.shared.args.keep_alive;
        let connect_deadline = (!keep_alive).then(|| Instant::now() + CONNECT_TIMEOUT);
        let mut keepalive =
            tokio::time::interval_at(Instant::now() + KEEPALIVE_EVERY, KEEPALIVE_EVERY);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *stop.borrow() != Stop::Running {
                return Exit::Stopped;
            }
            if self.ws.is_none() {
                return Exit::Lost("the WebSocket to Janus is gone".into());
            }
            let deadline = match self.first_connected {
                Some(t) if !keep_alive => Some(t + self.shared.args.duration),
                Some(_) => None,
                None => connect_deadline,
            };
            tokio::select! {
                msg = signalling::next_message(&mut self.ws) => {
                    if let Some(exit) = self.on_ws(msg).await {
                        return exit;
                    }
                }
                Some(event) = events.recv() => {
                    if let Some(exit) = self.on_event(event).await {
                        return exit;
                    }
                }
                _ = keepalive.tick() => {
                    if let Some(session) = self.janus_session {
                        let req = self.requests.keepalive(session);
                        self.send(Pending::Keepalive, req).await;
                    }
                }
                _ = sleep_until_opt(self.republish_at) => {
                    self.republish_at = None;
                    let publish = match self.phase {
                        Phase::Unpublishing { unpublished: true, .. } => {
                            warn!("no hangup from Janus {} s after unpublish; publishing again",
                                  HANGUP_WAIT.as_secs());
                            true
                        }
                        Phase::Pausing => true,
                        _ => false,
                    };
                    if !publish {
                        self.unpublish().await;
                    } else if let Err(e) = self.start_publish() {
                        return Exit::Failed(e);
                    }
                }
                res = stop.changed() => {
                    if res.is_err() {
                        return Exit::Stopped;
                    }
                }
                _ = sleep_until_opt(deadline) => {
                    return if self.first_connected.is_some() {
                        Exit::Deadline
                    } else {
                        Exit::ConnectTimeout
                    };
                }
            }
        }
    }

    /// Our feed id, or an empty string before we joined.
    fn id(&self) -> &str {
        self.feed.as_deref().unwrap_or_default()
    }

    /// The key of the current publish's events.
    fn session_key(&self) -> String {
        format!("publish-{}", self.publishes)
    }

    /// Sends a request and remembers what it was; a failure marks the connection as gone.
    async fn send(&mut self, what: Pending, req: Request) {
        let Some(ws) = self.ws.as_mut() else {
            debug!(request = what.as_str(), "Janus gone; not sending");
            return;
        };
        debug!(request = what.as_str(), transaction = %req.transaction, "to Janus");
        self.pending.insert(req.transaction, what);
        if let Err(e) = signalling::send_text(ws, req.text).await {
            warn!("cannot send to Janus: {e}");
            self.ws = None;
        }
    }

    /// Sends a plugin message on our handle (once there is one).
    async fn message(&mut self, what: Pending, body: Value, jsep: Option<Value>) {
        let (Some(session), Some(handle)) = (self.janus_session, self.handle) else {
            warn!(request = what.as_str(), "no Janus handle yet; not sending");
            return;
        };
        let req = self.requests.message(session, handle, body, jsep);
        self.send(what, req).await;
    }

    /// Handles one WebSocket read; `Some` ends the peer.
    async fn on_ws(&mut self, msg: Option<Result<Message, tungstenite::Error>>) -> Option<Exit> {
        let reason = match msg {
            Some(Ok(Message::Text(text))) => return self.on_text(text.as_str()).await,
            Some(Ok(Message::Close(frame))) => format!("Janus closed the WebSocket ({frame:?})"),
            Some(Ok(_)) => return None, // binary, ping, pong
            Some(Err(e)) => format!("the WebSocket to Janus failed: {e}"),
            None => "the WebSocket to Janus ended".to_owned(),
        };
        self.ws = None;
        Some(Exit::Lost(reason))
    }

    /// Handles one message from Janus; bad input is logged, never fatal.
    async fn on_text(&mut self, text: &str) -> Option<Exit> {
        let msg = match janus::parse(text) {
            Ok(msg) => msg,
            Err(e) => {
                warn!("ignoring a message from Janus ({e:#}): {:?}", excerpt(text));
                return None;
            }
        };
        match msg {
            Incoming::Success { transaction, id } => {
                self.on_success(transaction, id).await;
                None
            }
            Incoming::Error {
                transaction,
                code,
                reason,
            } => {
                let what = transaction.and_then(|t| self.pending.remove(&t));
                self.refused(what, code, &reason)
            }
            Incoming::Ack { transaction } => {
                // A plugin message's reply is still to come; keepalives and trickles are done.
                if self
                    .pending
                    .get(&transaction)
                    .is_some_and(|what| !what.is_plugin_message())
                {
                    self.pending.remove(&transaction);
                }
                None
            }
            Incoming::Event {
                transaction,
                data,
                jsep,
                ..
            } => {
                let what = transaction.and_then(|t| self.pending.remove(&t));
                self.on_room_event(what, &data, jsep).await
            }
            Incoming::Trickle { candidate, .. } => {
                if let (Some(c), Some(session)) = (candidate, &self.session) {
                    debug!(candidate = %c.candidate, "Janus candidate");
                    session.add_ice_candidate(c.mline, &c.candidate);
                }
                None
            }
            Incoming::WebrtcUp { .. } => {
                info!("Janus: PeerConnection up");
                emit(json!({"event": "janus_webrtcup", "peer_id": self.id()}));
                None
            }
            Incoming::Media {
                kind, receiving, ..
            } => {
                info!(kind, receiving, "Janus: media");
                emit(json!({
                    "event": "janus_media",
                    "peer_id": self.id(),
                    "kind": kind,
                    "receiving": receiving,
                }));
                None
            }
            Incoming::Hangup { reason, .. } => {
                info!(%reason, "Janus hung up our PeerConnection");
                // Expected after our own unpublish; otherwise the publish is over.
                match self.phase {
                    Phase::Published | Phase::Publishing => {
                        Some(Exit::Lost(format!("Janus hung up: {reason}")))
                    }
                    Phase::Unpublishing { unpublished, .. } => {
                        self.phase = Phase::Unpublishing {
                            unpublished,
                            hung_up: true,
                        };
                        self.ready_to_republish().err().map(Exit::Failed)
                    }
                    Phase::Joining | Phase::Pausing => None,
                }
            }
            Incoming::Timeout => Some(Exit::Lost("Janus timed our session out".into())),
            Incoming::Other(kind) => {
                debug!(kind, "from Janus");
                None
            }
        }
    }

    /// A core request succeeded: the next step of getting into the room.
    async fn on_success(&mut self, transaction: String, id: Option<u64>) {
        match (self.pending.remove(&transaction), id) {
            (Some(Pending::Create), Some(id)) => {
                debug!(session = id, "Janus session");
                self.janus_session = Some(id);
                let req = self.requests.attach(id);
                self.send(Pending::Attach, req).await;
            }
            (Some(Pending::Attach), Some(id)) => {
                debug!(handle = id, "VideoRoom handle");
                self.handle = Some(id);
                let display = self.shared.args.display.clone();
                let body = janus::join(self.room, display.as_deref(), self.pin.as_deref());
                self.message(Pending::Join, body, None).await;
            }
            (what, id) => debug!(?what, ?id, "success"),
        }
    }

    /// Janus refused a request: reported; fatal for the steps a publisher cannot skip.
    fn refused(&mut self, what: Option<Pending>, code: i64, error: &str) -> Option<Exit> {
        let request = what.map_or("?", Pending::as_str);
        warn!(request, code, "Janus refused: {}", excerpt(error));
        emit(json!({
            "event": "janus_error",
            "peer_id": self.id(),
            "request": request,
            "code": code,
            "error": error,
        }));
        match what {
            Some(what) if what.is_fatal() => Some(Exit::Failed(anyhow!(
                "Janus refused {request}: {code} {}",
                excerpt(error)
            ))),
            Some(Pending::Keepalive) => Some(Exit::Lost(format!(
                "Janus refused a keepalive: {code} {}",
                excerpt(error)
            ))),
            _ => None,
        }
    }

    /// A VideoRoom event: the reply to `what` (a request of ours), or news.
    async fn on_room_event(
        &mut self,
        what: Option<Pending>,
        data: &Value,
        jsep: Option<janus::Jsep>,
    ) -> Option<Exit> {
        match janus::room_event(data) {
            RoomEvent::Joined { feed, private_id } => {
                info!(room = self.room, %feed, "joined as a publisher");
                emit(json!({
                    "event": "welcome",
                    "peer_id": feed,
                    "room": self.room,
                    "display": self.shared.args.display,
                    "private_id": private_id,
                }));
                self.feed = Some(feed);
                if let Err(e) = self.start_publish() {
                    return Some(Exit::Failed(e));
                }
                None
            }
            RoomEvent::Configured => {
                let Some(jsep) = jsep.filter(|j| j.kind == "answer") else {
                    debug!(?what, "configured without an answer");
                    return None;
                };
                let Some(session) = &self.session else {
                    return None;
                };
                if let Err(e) = session.apply_answer(&jsep.sdp, &self.tx) {
                    return Some(Exit::Failed(e.context("bad answer from Janus")));
                }
                self.phase = Phase::Published;
                info!(session_id = %self.session_key(), "Janus answered our publish");
                emit(json!({
                    "event": "session",
                    "peer_id": self.id(),
                    "session_id": self.session_key(),
                    "consumer_id": "janus",
                    "room": self.room,
                    "audio_codec": data["audio_codec"],
                    "video_codec": data["video_codec"],
                }));
                None
            }
            RoomEvent::Unpublished => {
                info!("unpublished");
                self.end_session();
                emit(json!({"event": "unpublished", "peer_id": self.id()}));
                let hung_up = matches!(self.phase, Phase::Unpublishing { hung_up: true, .. });
                self.phase = Phase::Unpublishing {
                    unpublished: true,
                    hung_up,
                };
                self.republish_at = Some(Instant::now() + HANGUP_WAIT);
                self.ready_to_republish().err().map(Exit::Failed)
            }
            RoomEvent::Left => {
                self.left = true;
                None
            }
            RoomEvent::Error { code, error } => self.refused(what, code, &error),
            RoomEvent::Other => {
                debug!(?what, "room event: {}", excerpt(&data.to_string()));
                None
            }
        }
    }

    /// Builds the next publish's session bin; its offer follows once the caps are known.
    fn start_publish(&mut self) -> anyhow::Result<()> {
        self.publishes += 1;
        let key = self.session_key();
        let name = format!("{BIN_PREFIX}janus-{}", self.publishes);
        let mut session = Session::start(
            &self.shared.media,
            &self.shared.args.ice_addresses,
            &name,
            &key,
            &self.tx,
        )?;
        let wait = wait_for_caps(&session.sink_pads, &self.tx, &key);
        session.timers.push(wait);
        self.session = Some(session);
        self.phase = Phase::Publishing;
        self.offer_sent = false;
        self.early_candidates.clear();
        self.gathered = false;
        Ok(())
    }

    /// Publishes again once Janus both confirmed the unpublish and hung up the old
    /// PeerConnection: its hangup comes after the reply, and an offer sent before it would
    /// race the old PeerConnection's teardown on the same handle.
    fn ready_to_republish(&mut self) -> anyhow::Result<()> {
        if self.phase
            == (Phase::Unpublishing {
                unpublished: true,
                hung_up: true,
            })
        {
            let gap = self.shared.args.janus_republish_gap;
            if gap.is_zero() {
                info!("publishing again");
                self.republish_at = None;
                self.start_publish()?;
            } else {
                info!("publishing again in {:.3} s", gap.as_secs_f64());
                self.phase = Phase::Pausing;
                self.republish_at = Some(Instant::now() + gap);
            }
        }
        Ok(())
    }

    /// `--janus-republish-after`: stops the media and unpublishes; the reply publishes again.
    async fn unpublish(&mut self) {
        if self.phase != Phase::Published {
            debug!(phase = ?self.phase, "not published; no republish");
            return;
        }
        info!("unpublishing (to publish again)");
        if let Some(session) = &self.session {
            session.close_valves();
        }
        self.phase = Phase::Unpublishing {
            unpublished: false,
            hung_up: false,
        };
        self.message(Pending::Unpublish, janus::unpublish(), None)
            .await;
    }

    /// Trickles one local candidate, or (`None`) the end of them.
    async fn trickle(&mut self, candidate: Option<(u32, String)>) {
        let (Some(session), Some(handle)) = (self.janus_session, self.handle) else {
            return;
        };
        let candidate = candidate.as_ref().map(|(m, c)| (*m, c.as_str()));
        let req = self.requests.trickle(session, handle, candidate);
        self.send(Pending::Trickle, req).await;
    }

    /// Ends the current publish's bin and reports how long it sent.
    fn end_session(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        session.close_valves();
        let sent = session
            .connected_at
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        emit(json!({
            "event": "session_ended",
            "peer_id": self.id(),
            "session_id": self.session_key(),
            "sent_secs": (sent * 1000.0).round() / 1000.0,
        }));
        let pipeline = self.shared.media.pipeline.clone();
        self.teardowns
            .push(tokio::spawn(session.teardown(pipeline)));
    }

    /// Handles an event from webrtcbin callbacks or a timer; `Some` ends the peer.
    async fn on_event(&mut self, event: SessionEvent) -> Option<Exit> {
        if event.session_id != self.session_key() || self.session.is_none() {
            debug!(session_id = %event.session_id, ?event.what, "event of an ended publish");
            return None;
        }
        match event.what {
            SessionEventKind::CapsReady => {
                if let Some(session) = &self.session {
                    session.create_offer_set_first(&self.tx);
                }
            }
            SessionEventKind::LocalSdp { answer: false, sdp } => {
                debug!("sending our offer with publish");
                self.message(
                    Pending::Publish,
                    janus::publish(),
                    Some(janus::offer_jsep(&sdp)),
                )
                .await;
                self.offer_sent = true;
                for (mline, candidate) in std::mem::take(&mut self.early_candidates) {
                    self.trickle(Some((mline, candidate))).await;
                }
                if std::mem::take(&mut self.gathered) {
                    self.trickle(None).await;
                }
            }
            SessionEventKind::LocalSdp { answer: true, .. } => {
                warn!("webrtcbin made an answer, but we only offer; ignoring it");
            }
            SessionEventKind::Ice { mline, candidate } => {
                debug!(mline, %candidate, offer_sent = self.offer_sent, "local candidate");
                if candidate.trim().is_empty() {
                    // An end-of-candidates marker: GatheringComplete says it too.
                } else if self.offer_sent {
                    self.trickle(Some((mline, candidate))).await;
                } else {
                    self.early_candidates.push((mline, candidate));
                }
            }
            SessionEventKind::GatheringComplete => {
                if self.offer_sent {
                    self.trickle(None).await;
                } else {
                    self.gathered = true;
                }
            }
            SessionEventKind::State(state) => return self.on_state(state),
            SessionEventKind::Failed(reason) => {
                return Some(Exit::Failed(anyhow!("negotiation failed: {reason}")));
            }
            SessionEventKind::Valve { kind, open } => {
                let session = self.session.as_ref()?;
                if session.set_flowing(kind, open) {
                    let event = if open { "media" } else { "media_stopped" };
                    info!("{} {event}", kind.as_str());
                    emit(json!({
                        "event": event,
                        "peer_id": self.id(),
                        "session_id": self.session_key(),
                        "kind": kind.as_str(),
                    }));
                }
            }
        }
        None
    }

    /// Connection state changes: media starts on connect; a failure ends the peer.
    fn on_state(&mut self, state: WebRTCPeerConnectionState) -> Option<Exit> {
        debug!(?state, "connection state");
        match state {
            WebRTCPeerConnectionState::Connected => {
                let now = Instant::now();
                let key = self.session_key();
                let session = self.session.as_mut()?;
                if !session.start_media(&self.shared.args, &self.tx, now) {
                    return None;
                }
                self.shared.schedule_resize();
                info!(session_id = %key, "peer connection connected");
                emit(json!({
                    "event": "connected",
                    "peer_id": self.id(),
                    "session_id": key,
                }));
                if self.first_connected.is_none() {
                    self.first_connected = Some(now);
                    self.republish_at = self.shared.args.janus_republish_after.map(|d| now + d);
                    if !self.shared.args.keep_alive {
                        info!(
                            "sending for {:.3} s",
                            self.shared.args.duration.as_secs_f64()
                        );
                    }
                }
                None
            }
            WebRTCPeerConnectionState::Failed
                if !matches!(self.phase, Phase::Unpublishing { .. }) =>
            {
                Some(Exit::Lost("the peer connection failed".into()))
            }
            _ => None,
        }
    }

    /// Waits (bounded) for the reply to `what`, handling nothing else meanwhile.
    async fn wait_reply(&mut self, what: Pending, until: Instant) -> bool {
        while let Some(ws) = self.ws.as_mut() {
            let msg = match tokio::time::timeout_at(until, signalling::next_message_of(ws)).await {
                Err(_) => return false,
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(_))) => continue,
                Ok(_) => {
                    self.ws = None;
                    return false;
                }
            };
            let (transaction, left) = match janus::parse(msg.as_str()) {
                Ok(Incoming::Event {
                    transaction, data, ..
                }) => (transaction, janus::room_event(&data) == RoomEvent::Left),
                Ok(Incoming::Success { transaction, .. }) => (Some(transaction), false),
                Ok(Incoming::Error { transaction, .. }) => (transaction, false),
                _ => continue,
            };
            self.left |= left;
            if transaction.is_some_and(|t| self.pending.remove(&t) == Some(what)) {
                return true;
            }
        }
        false
    }

    /// Stops media, leaves the room and destroys the Janus session (unless Janus is gone),
    /// reports `done` and tears the bins down.
    async fn shutdown(mut self, exit: Exit) -> Outcome {
        let stopped_at = Instant::now();
        match &exit {
            // `{:#}`: the Debug form of an error would add a backtrace under RUST_BACKTRACE.
            Exit::Failed(e) => info!("stopping: {e:#}"),
            other => info!(exit = ?other, "stopping"),
        }
        if let Some(session) = &self.session {
            session.close_valves();
        }
        if let Exit::Lost(reason) = &exit {
            emit(json!({"event": "janus_lost", "peer_id": self.id(), "reason": reason}));
        }
        if self.handle.is_some() && self.feed.is_some() {
            self.message(Pending::Leave, janus::leave(), None).await;
            let until = Instant::now() + GOODBYE_TIMEOUT;
            if self.wait_reply(Pending::Leave, until).await || self.left {
                info!("left the room");
                emit(json!({"event": "left", "peer_id": self.id()}));
            }
        }
        if let Some(session) = self.janus_session {
            let req = self.requests.destroy(session);
            self.send(Pending::Destroy, req).await;
            let until = Instant::now() + GOODBYE_TIMEOUT;
            self.wait_reply(Pending::Destroy, until).await;
        }
        self.end_session();
        if let Some(ws) = self.ws.take() {
            signalling::close(ws, 0).await;
        }
        let sent = self
            .first_connected
            .map(|t| stopped_at.saturating_duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        emit(json!({
            "event": "done",
            "peer_id": self.id(),
            "sent_secs": (sent * 1000.0).round() / 1000.0,
        }));
        for teardown in self.teardowns.drain(..) {
            let _ = teardown.await;
        }
        match exit {
            Exit::Stopped | Exit::Deadline => Outcome::Completed,
            Exit::Lost(_) if self.first_connected.is_some() => Outcome::Completed,
            Exit::Lost(reason) => {
                eprintln!(
                    "callrec-testpeer: error: Janus publisher {}: {reason} before it connected",
                    self.id()
                );
                Outcome::NeverConnected
            }
            Exit::ConnectTimeout => {
                eprintln!(
                    "callrec-testpeer: error: Janus publisher {} got no connected session \
                     within {} s",
                    self.id(),
                    CONNECT_TIMEOUT.as_secs()
                );
                Outcome::NeverConnected
            }
            Exit::Failed(e) => Outcome::Failed(e),
        }
    }
}
