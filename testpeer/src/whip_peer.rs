//! One producer publishing over WHIP (`--whip`): the same [`Session`] bin as the signalling
//! mode, an offer `POST`ed to the endpoint, the answer applied, local candidates trickled by
//! `PATCH` (`--whip-trickle`) or all put in the offer, media on the same timers, and a
//! `DELETE` at the end (unless `--whip-no-delete`).
//!
//! It reports the same events as a signalling peer, so tests read both alike: `welcome`
//! (a fresh random `peer_id`: WHIP has none), `session` (`session_id` = the last path segment
//! of the session URL, `location` = that URL, `consumer_id` = the endpoint), `connected`,
//! `media`, `media_stopped`, `session_ended` and `done`; and these of its own:
//! `whip_refused` (`status`, `body`) when the POST gets anything but 201, `whip_patched`
//! (`status`, `candidates`, `end`) per PATCH, `whip_deleted` (`status`) after the DELETE.
//!
//! Failures of the endpoint (a refusal, a broken 201, an answer webrtcbin rejects) end the
//! peer with an error; a session it created is still deleted.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use gst_webrtc::WebRTCPeerConnectionState;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use url::Url;

use crate::peer::{Outcome, CONNECT_TIMEOUT};
use crate::report::{emit, excerpt};
use crate::session::{wait_for_caps, EventTx, Session, SessionEvent, SessionEventKind, BIN_PREFIX};
use crate::whip::{self, Client, OfferIce, Reply};
use crate::{Shared, Stop};

/// How long the POST is retried while nothing listens at the endpoint.
const CONNECT_RETRY: Duration = Duration::from_secs(10);

/// How long the offer waits for ICE gathering without `--whip-trickle`.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// The key of the one session in [`SessionEvent`]s (its WHIP id is known only after the POST).
const SESSION_KEY: &str = "whip";

/// Why the main loop ended.
#[derive(Debug)]
enum Exit {
    /// SIGTERM/SIGINT or a pipeline failure.
    Stopped,
    /// `--duration` is over.
    Deadline,
    /// Not connected within [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// The peer connection failed.
    ConnectionFailed,
    /// The endpoint refused or broke the exchange, or the session could not be negotiated.
    Failed(anyhow::Error),
}

/// A session the endpoint created.
struct Resource {
    url: Url,
    etag: Option<String>,
    /// Its id in the reports.
    id: String,
}

/// To the trickle task, in the order they happen.
#[derive(Debug)]
enum Trickle {
    /// A local candidate of m-line `mline`.
    Candidate(u32, String),
    /// Gathering is complete.
    End,
    /// The session exists: send what is queued, then everything as it comes.
    Ready { url: Url, etag: Option<String> },
}

/// A producer publishing to one WHIP endpoint.
pub struct WhipPeer {
    shared: Arc<Shared>,
    client: Client,
    endpoint: Url,
    peer_id: String,
    tx: EventTx,
    session: Option<Session>,
    /// Our offer, as created (no candidates), once webrtcbin made it.
    offer: Option<String>,
    /// The POST in flight.
    post: Option<JoinHandle<anyhow::Result<Reply>>>,
    /// Whether the offer was POSTed (later candidates go by PATCH, or nowhere).
    posted: bool,
    /// Candidates for the offer (without `--whip-trickle`).
    gathered: Vec<(u32, String)>,
    /// When the offer goes without waiting any longer for gathering.
    gather_deadline: Option<Instant>,
    /// The trickle task's queue (with `--whip-trickle`, once the offer exists).
    trickle: Option<mpsc::UnboundedSender<Trickle>>,
    trickle_task: Option<JoinHandle<()>>,
    resource: Option<Resource>,
    /// Whether the `session` event is out (so `session_ended` may follow).
    announced: bool,
    first_connected: Option<Instant>,
    /// The process's stop requests, for the POST's retries.
    stop: watch::Receiver<Stop>,
}

/// Sleeps until `deadline`, or forever if there is none.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The result of a task, or pending forever if there is none.
async fn join_opt<T>(task: &mut Option<JoinHandle<anyhow::Result<T>>>) -> anyhow::Result<T> {
    match task {
        Some(task) => task.await.map_err(|e| anyhow!("request task: {e}"))?,
        None => std::future::pending().await,
    }
}

/// A random peer id in the shape of the signalling server's UUIDs, from std's randomly keyed
/// hasher (each `RandomState` has new keys), so no random crate is needed for a test id.
fn random_peer_id() -> String {
    let word = || {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        hasher.finish()
    };
    let (a, b) = (word(), word());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

impl WhipPeer {
    /// Publishes until the duration is over or the process is stopped.
    pub async fn run(shared: Arc<Shared>, stop: watch::Receiver<Stop>) -> Outcome {
        let Some(endpoint) = shared.args.whip.clone() else {
            return Outcome::Failed(anyhow!("no --whip endpoint"));
        };
        let client = match Client::new(
            shared.args.ca_file.as_deref(),
            shared.args.whip_token.clone(),
        ) {
            Ok(client) => client,
            Err(e) => return Outcome::Failed(e),
        };
        let peer_id = random_peer_id();
        info!(%peer_id, "publishing to {endpoint}");
        emit(json!({"event": "welcome", "peer_id": peer_id}));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut peer = WhipPeer {
            shared,
            client,
            endpoint,
            peer_id,
            tx,
            session: None,
            offer: None,
            post: None,
            posted: false,
            gathered: Vec::new(),
            gather_deadline: None,
            trickle: None,
            trickle_task: None,
            resource: None,
            announced: false,
            first_connected: None,
            stop: stop.clone(),
        };
        let exit = match peer.start_session() {
            Ok(()) => peer.main_loop(rx, stop).await,
            Err(e) => Exit::Failed(e),
        };
        peer.shutdown(exit).await
    }

    /// Builds the session bin; the offer follows once the caps are known.
    fn start_session(&mut self) -> anyhow::Result<()> {
        let name = format!("{BIN_PREFIX}whip");
        let mut session = Session::start(
            &self.shared.media,
            &self.shared.args.ice_addresses,
            &name,
            SESSION_KEY,
            &self.tx,
        )?;
        let wait = wait_for_caps(&session.sink_pads, &self.tx, SESSION_KEY);
        session.timers.push(wait);
        self.session = Some(session);
        Ok(())
    }

    /// Dispatches callback events, the POST's reply, timers and stop requests.
    async fn main_loop(
        &mut self,
        mut events: mpsc::UnboundedReceiver<SessionEvent>,
        mut stop: watch::Receiver<Stop>,
    ) -> Exit {
        let keep_alive = self.shared.args.keep_alive;
        let connect_deadline = (!keep_alive).then(|| Instant::now() + CONNECT_TIMEOUT);
        loop {
            if *stop.borrow() != Stop::Running {
                return Exit::Stopped;
            }
            let deadline = match self.first_connected {
                Some(t) if !keep_alive => Some(t + self.shared.args.duration),
                Some(_) => None,
                None => connect_deadline,
            };
            tokio::select! {
                Some(event) = events.recv() => {
                    if let Some(exit) = self.on_event(event) {
                        return exit;
                    }
                }
                reply = join_opt(&mut self.post) => {
                    self.post = None;
                    if let Err(e) = self.on_post_reply(reply) {
                        return Exit::Failed(e);
                    }
                }
                _ = sleep_until_opt(self.gather_deadline) => {
                    warn!("ICE gathering not complete after {} s; sending the offer with the \
                           candidates so far", GATHER_TIMEOUT.as_secs());
                    if let Err(e) = self.post_offer(false) {
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

    /// The id of the session in reports: its WHIP id once known.
    fn report_id(&self) -> &str {
        self.resource
            .as_ref()
            .map_or(SESSION_KEY, |r| r.id.as_str())
    }

    /// Handles an event from webrtcbin callbacks or a timer; `Some` ends the peer.
    fn on_event(&mut self, event: SessionEvent) -> Option<Exit> {
        let session = self.session.as_mut()?;
        match event.what {
            SessionEventKind::CapsReady => session.create_offer(&self.tx),
            SessionEventKind::LocalSdp { answer: false, sdp } => {
                if let Err(e) = self.on_offer(sdp) {
                    return Some(Exit::Failed(e));
                }
            }
            SessionEventKind::LocalSdp { answer: true, .. } => {
                warn!("webrtcbin made an answer, but we only offer; ignoring it");
            }
            SessionEventKind::Ice { mline, candidate } => self.on_candidate(mline, candidate),
            SessionEventKind::GatheringComplete => {
                debug!("ICE gathering complete");
                if let Some(trickle) = &self.trickle {
                    let _ = trickle.send(Trickle::End);
                } else if !self.posted && self.offer.is_some() {
                    if let Err(e) = self.post_offer(true) {
                        return Some(Exit::Failed(e));
                    }
                }
            }
            SessionEventKind::State(state) => return self.on_state(state),
            SessionEventKind::Failed(reason) => {
                return Some(Exit::Failed(anyhow!("negotiation failed: {reason}")));
            }
            SessionEventKind::Valve { kind, open } => {
                if session.set_flowing(kind, open) {
                    let event = if open { "media" } else { "media_stopped" };
                    info!("{} {event}", kind.as_str());
                    emit(json!({
                        "event": event,
                        "peer_id": self.peer_id,
                        "session_id": self.report_id(),
                        "kind": kind.as_str(),
                    }));
                }
            }
        }
        None
    }

    /// Our offer exists: POST it now (`--whip-trickle`) or once gathering is done.
    fn on_offer(&mut self, sdp: String) -> anyhow::Result<()> {
        if self.offer.is_some() {
            warn!("webrtcbin made a second offer; ignoring it");
            return Ok(());
        }
        self.offer = Some(sdp.clone());
        if self.shared.args.whip_trickle {
            let ice = OfferIce::parse(&sdp)?;
            let (tx, rx) = mpsc::unbounded_channel();
            let client = self.client.clone();
            self.trickle_task = Some(tokio::spawn(trickle(client, ice, rx)));
            self.trickle = Some(tx);
            self.post_offer(false)
        } else {
            debug!("offer ready; waiting for ICE gathering");
            self.gather_deadline = Some(Instant::now() + GATHER_TIMEOUT);
            Ok(())
        }
    }

    /// A local candidate: to the trickle task, or into the offer while it is not sent.
    fn on_candidate(&mut self, mline: u32, candidate: String) {
        if candidate.trim().is_empty() {
            return; // an end-of-candidates marker: GatheringComplete says it too
        }
        if let Some(trickle) = &self.trickle {
            let _ = trickle.send(Trickle::Candidate(mline, candidate));
        } else if !self.posted {
            self.gathered.push((mline, candidate));
        } else {
            debug!(%candidate, "candidate after a non-trickle offer; not sent");
        }
    }

    /// POSTs the offer: as created with `--whip-trickle`, else with every gathered candidate.
    fn post_offer(&mut self, complete: bool) -> anyhow::Result<()> {
        self.gather_deadline = None;
        if self.posted {
            return Ok(());
        }
        let offer = self
            .offer
            .as_deref()
            .ok_or_else(|| anyhow!("no offer to send"))?;
        let sdp = if self.shared.args.whip_trickle {
            offer.to_owned()
        } else {
            whip::offer_with_candidates(offer, &self.gathered, complete)?
        };
        info!(
            candidates = self.gathered.len(),
            trickle = self.shared.args.whip_trickle,
            "POST {}",
            self.endpoint
        );
        let (client, endpoint) = (self.client.clone(), self.endpoint.clone());
        let stop = self.stop.clone();
        self.post = Some(tokio::spawn(post_with_retry(client, endpoint, sdp, stop)));
        self.posted = true;
        Ok(())
    }

    /// The POST's reply: a session and its answer, or the end of the peer.
    fn on_post_reply(&mut self, reply: anyhow::Result<Reply>) -> anyhow::Result<()> {
        let reply = reply?;
        self.take_resource(&reply)?;
        let id = self.report_id().to_owned();
        match reply.content_type.as_deref() {
            Some(whip::SDP_TYPE) => {}
            other => {
                return Err(anyhow!(
                    "the WHIP endpoint's 201 carries {} instead of an {} answer",
                    other.unwrap_or("no Content-Type"),
                    whip::SDP_TYPE
                ));
            }
        }
        let session = self
            .session
            .as_ref()
            .ok_or_else(|| anyhow!("session gone"))?;
        session
            .apply_answer(&reply.body, &self.tx)
            .map_err(|e| e.context("bad answer from the WHIP endpoint"))?;
        let Some(resource) = &self.resource else {
            return Err(anyhow!("session gone"));
        };
        info!(session_id = %id, "WHIP session {}", resource.url);
        emit(json!({
            "event": "session",
            "peer_id": self.peer_id,
            "session_id": id,
            "consumer_id": self.endpoint.as_str(),
            "location": resource.url.as_str(),
        }));
        self.announced = true;
        if let Some(trickle) = &self.trickle {
            let _ = trickle.send(Trickle::Ready {
                url: resource.url.clone(),
                etag: resource.etag.clone(),
            });
        }
        Ok(())
    }

    /// Remembers the session of a 201 (so that the end deletes it), or reports the refusal.
    fn take_resource(&mut self, reply: &Reply) -> anyhow::Result<()> {
        if reply.status != 201 {
            emit(json!({
                "event": "whip_refused",
                "status": reply.status,
                "body": reply.body,
            }));
            return Err(anyhow!(
                "the WHIP endpoint refused the offer: status {}: {:?}",
                reply.status,
                excerpt(&reply.body)
            ));
        }
        let location = reply
            .location
            .as_deref()
            .ok_or_else(|| anyhow!("the WHIP endpoint answered 201 without a Location"))?;
        let url = whip::resolve_location(&self.endpoint, location)?;
        self.resource = Some(Resource {
            id: whip::session_id(&url),
            url,
            etag: reply.etag.clone(),
        });
        Ok(())
    }

    /// Connection state changes: media starts on connect; a failure ends the peer.
    fn on_state(&mut self, state: WebRTCPeerConnectionState) -> Option<Exit> {
        debug!(?state, "connection state");
        match state {
            WebRTCPeerConnectionState::Connected => {
                let now = Instant::now();
                let session = self.session.as_mut()?;
                if !session.start_media(&self.shared.args, &self.tx, now) {
                    return None;
                }
                self.shared.schedule_resize();
                info!(session_id = %self.report_id(), "peer connection connected");
                emit(json!({
                    "event": "connected",
                    "peer_id": self.peer_id,
                    "session_id": self.report_id(),
                }));
                if self.first_connected.is_none() {
                    self.first_connected = Some(now);
                    if !self.shared.args.keep_alive {
                        info!(
                            "sending for {:.3} s",
                            self.shared.args.duration.as_secs_f64()
                        );
                    }
                }
                None
            }
            WebRTCPeerConnectionState::Failed => Some(Exit::ConnectionFailed),
            _ => None,
        }
    }

    /// Stops media, deletes the session (unless `--whip-no-delete`), reports `done` and tears
    /// the bin down.
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
        // A POST still in flight may yet create a session: wait for it (bounded by the
        // request timeout) so that it is deleted too.
        if let Some(post) = self.post.take() {
            let mut post = Some(post);
            match tokio::time::timeout(whip::REQUEST_TIMEOUT * 2, join_opt(&mut post)).await {
                Ok(Ok(reply)) if reply.status == 201 => {
                    if let Err(e) = self.take_resource(&reply) {
                        warn!("{e:#}");
                    }
                }
                Ok(Ok(reply)) => debug!(status = reply.status, "POST refused while stopping"),
                Ok(Err(e)) => debug!("POST failed while stopping: {e:#}"),
                Err(_) => warn!("POST still unanswered; cannot delete its session"),
            }
        }
        self.trickle = None;
        if let Some(task) = self.trickle_task.take() {
            task.abort();
        }
        if let Some(resource) = &self.resource {
            if self.shared.args.whip_no_delete {
                info!("leaving {} without DELETE", resource.url);
            } else {
                match self.client.delete(&resource.url).await {
                    Ok(reply) => {
                        if reply.status != 200 {
                            warn!(
                                "DELETE {} answered {}: {:?}",
                                resource.url,
                                reply.status,
                                excerpt(&reply.body)
                            );
                        }
                        emit(json!({"event": "whip_deleted", "status": reply.status}));
                    }
                    Err(e) => warn!("{e:#}"),
                }
            }
            if self.announced {
                emit(json!({
                    "event": "session_ended",
                    "peer_id": self.peer_id,
                    "session_id": resource.id,
                }));
            }
        }
        let sent = self
            .first_connected
            .map(|t| stopped_at.saturating_duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        emit(json!({
            "event": "done",
            "peer_id": self.peer_id,
            "sent_secs": (sent * 1000.0).round() / 1000.0,
        }));
        if let Some(session) = self.session.take() {
            session.teardown(self.shared.media.pipeline.clone()).await;
        }
        match exit {
            Exit::Stopped | Exit::Deadline => Outcome::Completed,
            Exit::ConnectionFailed if self.first_connected.is_some() => {
                warn!("peer connection failed; stopping");
                Outcome::Completed
            }
            Exit::ConnectionFailed => {
                eprintln!(
                    "callrec-testpeer: error: WHIP peer {}: the peer connection failed \
                     before it connected",
                    self.peer_id
                );
                Outcome::NeverConnected
            }
            Exit::ConnectTimeout => {
                eprintln!(
                    "callrec-testpeer: error: WHIP peer {} got no connected session within {} s",
                    self.peer_id,
                    CONNECT_TIMEOUT.as_secs()
                );
                Outcome::NeverConnected
            }
            Exit::Failed(e) => Outcome::Failed(e),
        }
    }
}

/// POSTs the offer, sending it again for [`CONNECT_RETRY`] while nothing listens at the
/// endpoint (the server may still be starting, as the signalling client allows too), unless
/// the process is stopped meanwhile.
async fn post_with_retry(
    client: Client,
    endpoint: Url,
    offer: String,
    mut stop: watch::Receiver<Stop>,
) -> anyhow::Result<Reply> {
    let give_up = Instant::now() + CONNECT_RETRY;
    loop {
        match client.post_offer(&endpoint, offer.clone()).await {
            Err(e) if whip::is_connection_refused(&e) && Instant::now() < give_up => {
                debug!("{e:#}; retrying");
            }
            res => return res,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => bail!("stopped before the WHIP endpoint was reachable"),
        }
    }
}

/// Trickles local candidates: queues them until the session exists, then sends whatever has
/// piled up as one PATCH at a time, until the one that carries the end of candidates.
async fn trickle(client: Client, ice: OfferIce, mut queue: mpsc::UnboundedReceiver<Trickle>) {
    let mut pending = Vec::new();
    let mut complete = false;
    let mut target: Option<(Url, Option<String>)> = None;
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take().or_else(|| queue.try_recv().ok()) {
            match msg {
                Trickle::Candidate(mline, candidate) => pending.push((mline, candidate)),
                Trickle::End => complete = true,
                Trickle::Ready { url, etag } => target = Some((url, etag)),
            }
        }
        let Some((url, etag)) = &target else {
            continue;
        };
        if pending.is_empty() && !complete {
            continue;
        }
        let fragment = whip::sdpfrag(&ice, &pending, complete);
        let candidates = pending.len();
        pending.clear();
        debug!(candidates, complete, "PATCH {url}");
        match client.patch_sdpfrag(url, etag.as_deref(), fragment).await {
            Ok(reply) => {
                emit(json!({
                    "event": "whip_patched",
                    "status": reply.status,
                    "candidates": candidates,
                    "end": complete,
                }));
                if reply.status != 204 {
                    warn!(
                        "PATCH {url} answered {}: {:?}",
                        reply.status,
                        excerpt(&reply.body)
                    );
                }
                // 405 and 501: the endpoint does not take trickle at all (RFC 9725 4.3.1).
                if matches!(reply.status, 405 | 501) {
                    warn!("the WHIP endpoint does not support trickle ICE; not trickling");
                    return;
                }
            }
            Err(e) => warn!("{e:#}"),
        }
        if complete {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_look_like_uuids_and_differ() {
        let (a, b) = (random_peer_id(), random_peer_id());
        assert_ne!(a, b);
        let parts: Vec<_> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[tokio::test]
    async fn trickle_queues_until_the_session_exists_then_patches_as_it_goes() {
        use crate::whip::fake_server::{response, serve};
        gst::init().unwrap();
        let (base, requests) = serve(vec![
            response("204 No Content", &[], ""),
            response("204 No Content", &[], ""),
        ]);
        let ice = OfferIce {
            ufrag: "U".into(),
            pwd: "P".into(),
            mids: vec!["video0".into(), "audio1".into()],
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(trickle(Client::new(None, None).unwrap(), ice, rx));
        let cand = |port: u16| format!("candidate:1 1 UDP 1 127.0.0.1 {port} typ host");
        tx.send(Trickle::Candidate(0, cand(1))).unwrap();
        tx.send(Trickle::Candidate(1, cand(2))).unwrap();
        // Nothing goes out before the Location is known.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(requests.try_recv().is_err());
        let url = base.join("res/s1").unwrap();
        let etag = Some("\"e\"".to_owned());
        tx.send(Trickle::Ready { url, etag }).unwrap();
        let first = tokio::task::spawn_blocking(move || {
            let first = requests.recv_timeout(Duration::from_secs(10)).unwrap();
            (first, requests)
        });
        let (first, requests) = first.await.unwrap();
        let (_, body) = first.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            body,
            format!(
                "a=ice-ufrag:U\r\na=ice-pwd:P\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:video0\r\na={}\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:audio1\r\na={}\r\n",
                cand(1),
                cand(2)
            )
        );
        tx.send(Trickle::Candidate(0, cand(3))).unwrap();
        tx.send(Trickle::End).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        let second = requests.recv_timeout(Duration::from_secs(1)).unwrap();
        let (_, body) = second.split_once("\r\n\r\n").unwrap();
        assert!(body.contains(&format!(
            "a=mid:video0\r\na={}\r\na=end-of-candidates\r\n",
            cand(3)
        )));
        assert!(body.ends_with("a=mid:audio1\r\na=end-of-candidates\r\n"));
    }
}
