//! Producers that misbehave on purpose, speaking the gst-webrtc protocol over a raw WebSocket
//! to the real signalling server: each may end only its own session, and the participants
//! beside it in the same call are recorded as if nothing happened.

mod common;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use gst_plugin_webrtc_signalling_protocol as proto;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::{Daemon, SignallingServer, TestPeer};

/// A plausible browser offer: one sendonly VP8 track, bundled, with ICE and DTLS attributes.
/// webrtcbin answers it; no media ever follows (the producer never connects).
const OFFER: &str = "v=0\r\n\
o=- 4215775241 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS stream\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Fl3x\r\n\
a=ice-pwd:6lPrYGkWmhcmK5QvC3ybDLJH\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 1B:5E:3A:0C:7D:22:9F:41:AA:C3:5B:19:2D:64:7E:E0:86:1F:B2:90:4C:D8:37:A5:6E:0B:F1:28:93:C4:5D:7A\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=ssrc:3735928559 cname:flood\r\n";

/// What a hostile producer does once callrec has started a session with it.
#[derive(Clone, Copy)]
enum Attack {
    /// Sends this many offers back to back, without waiting for answers.
    OfferFlood(usize),
    /// Sends one offer padded to this many bytes.
    HugeOffer(usize),
    /// Sends a valid offer, then this many ICE candidates.
    CandidateFlood(usize),
}

/// An async job on a thread of its own (its own runtime), stopped and joined when dropped:
/// the raw-WebSocket producers below run in it beside the synchronous test.
struct Background {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start<F>(job: F) -> Self
    where
        F: std::future::Future + Send + 'static,
    {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                tokio::select! {
                    _ = job => {}
                    _ = stop_rx => {}
                }
            })
        });
        Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A hostile producer on a raw WebSocket, in the background until dropped.
fn hostile_producer(url: &str, meta: Value, attack: Attack) -> Background {
    let url = url.to_owned();
    Background::start(async move { run_hostile(&url, meta, attack).await })
}

async fn run_hostile(url: &str, meta: Value, attack: Attack) -> Vec<Value> {
    let connect = tokio_tungstenite::connect_async(url);
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .expect("connect in time")
        .expect("connect to the signalling server");
    let send = |v: Value| Message::text(v.to_string());
    let mut seen = vec![];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
            _ => return seen,
        };
        let Ok(msg) = serde_json::from_str::<proto::OutgoingMessage>(&msg) else {
            continue;
        };
        match msg {
            proto::OutgoingMessage::Welcome { .. } => {
                let status = json!({"type": "setPeerStatus", "roles": ["producer"], "meta": meta});
                ws.send(send(status)).await.unwrap();
            }
            proto::OutgoingMessage::StartSession { session_id, .. } => {
                seen.push(json!({"event": "session", "session": session_id}));
                let offer = |sdp: &str| {
                    json!({"type": "peer", "sessionId": session_id,
                        "sdp": {"type": "offer", "sdp": sdp}})
                };
                let mut out = vec![];
                match attack {
                    Attack::OfferFlood(n) => out.extend((0..n).map(|_| offer(OFFER))),
                    Attack::HugeOffer(bytes) => {
                        let line = format!("a=x-pad:{}\r\n", "x".repeat(990));
                        out.push(offer(&format!("{OFFER}{}", line.repeat(bytes / 1000))));
                    }
                    Attack::CandidateFlood(n) => {
                        out.push(offer(OFFER));
                        out.extend((0..n).map(|i| {
                            json!({"type": "peer", "sessionId": session_id,
                                "ice": {"candidate": format!(
                                    "candidate:{i} 1 UDP 2122260223 127.0.0.1 {} typ host",
                                    1024 + i % 60000), "sdpMLineIndex": 0}})
                        }));
                    }
                }
                for m in out {
                    if ws.send(send(m)).await.is_err() {
                        return seen;
                    }
                }
            }
            proto::OutgoingMessage::EndSession(end) => {
                seen.push(json!({"event": "ended", "session": end.session_id}));
            }
            _ => {}
        }
    }
}

fn config(url: &str, recordings: &std::path::Path) -> String {
    format!(
        "[signalling]\nurl = \"{url}\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{}\"\nlinger_secs = 5\nmedia_timeout_secs = 3\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        recordings.display(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines")
    )
}

/// Seconds until the manifest shows `peer`'s first recorded frame, polled every 20 ms.
fn wait_first_frame(call_dir: &std::path::Path, peer: &str, timeout: Duration) -> Option<f64> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(text) = std::fs::read_to_string(call_dir.join("manifest.json")) {
            if let Ok(m) = serde_json::from_str::<Value>(&text) {
                let started = m["tracks"].as_array().is_some_and(|tracks| {
                    tracks
                        .iter()
                        .any(|t| t["participant"] == peer && t["start_offset_ms"].is_i64())
                });
                if started {
                    return Some(start.elapsed().as_secs_f64());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Runs `attack` from one producer in a call, then records a well-behaved participant in
/// the same call: its file starts within 2 s of its session and plays. Returns the call's
/// manifest and the hostile participant's entry, if it joined.
fn attack_beside_a_good_participant(attack: Attack) -> (Value, Option<Value>) {
    // Built (or found) before the clock starts: the good participant must join within the
    // call's linger after the attack.
    common::testpeer_bin();
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(&server.url(), rec.path()));
    let _hostile = hostile_producer(
        &server.url(),
        json!({"call": "crowded", "name": "hostile"}),
        attack,
    );
    // Let the attack reach callrec first.
    std::thread::sleep(Duration::from_millis(1500));
    let mut good = TestPeer::spawn(
        &server.url(),
        &[
            "--duration",
            "4",
            "--meta",
            r#"{"call":"crowded","name":"good"}"#,
        ],
    );
    let id = common::peer_id(&mut good);
    good.wait_event("session", Duration::from_secs(20));
    let dir = rec.path().join("crowded");
    let first = wait_first_frame(&dir, &id, Duration::from_secs(20));
    assert!(
        first.is_some_and(|s| s < 2.0),
        "the good participant's file started {first:?} s after its session did\n{}",
        daemon.log()
    );
    good.wait_event("done", Duration::from_secs(60));
    let m = common::wait_complete(&dir);
    assert_eq!(m["status"], "complete", "{m:#}");
    let files = common::files_of(&m, &id);
    assert_eq!(files.len(), 1, "{m:#}");
    let report = common::decode_check(&dir.join(&files[0]));
    assert!(
        report.video_frames > 0 && report.errors.trim().is_empty(),
        "{report:?}"
    );
    let hostile = m["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["meta"]["name"] == "hostile")
        .cloned();
    (m, hostile)
}

/// One participant floods the call with renegotiations (hundreds of offers, never
/// connecting): only its session is ended, and the participant beside it records at once.
#[test]
fn a_flood_of_renegotiations_ends_only_its_own_session() {
    let (m, hostile) = attack_beside_a_good_participant(Attack::OfferFlood(400));
    let hostile = hostile.unwrap_or_else(|| panic!("the flooder joined: {m:#}"));
    let reason = hostile["end_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("renegotiation flood"),
        "ended for flooding: {hostile:#}"
    );
}

/// A 3 MB offer reaches callrec (the server forwards it) and is refused by size: only that
/// session ends.
#[test]
fn an_oversized_offer_ends_only_its_own_session() {
    let (m, hostile) = attack_beside_a_good_participant(Attack::HugeOffer(3 << 20));
    let hostile = hostile.unwrap_or_else(|| panic!("the producer joined: {m:#}"));
    let reason = hostile["end_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("bytes, more than"), "{hostile:#}");
}

/// A 50 MB offer is more than the signalling server takes in one frame: the server drops
/// that producer, and callrec records the others as usual.
#[test]
fn a_50_mb_offer_breaks_nothing() {
    attack_beside_a_good_participant(Attack::HugeOffer(50 << 20));
}

/// Ten thousand ICE candidates: callrec takes the first thousand and ignores the rest.
#[test]
fn ten_thousand_ice_candidates_break_nothing() {
    attack_beside_a_good_participant(Attack::CandidateFlood(10_000));
}

/// `n` producers that register, each in a call of its own, and do nothing else; they
/// disconnect when the returned job is dropped.
fn swarm(url: &str, n: usize) -> Background {
    let url = url.to_owned();
    Background::start(async move {
        let mut sockets = vec![];
        for i in 0..n {
            let connect = tokio_tungstenite::connect_async(url.as_str());
            let Ok(Ok((mut ws, _))) = tokio::time::timeout(Duration::from_secs(10), connect).await
            else {
                break;
            };
            let status = json!({"type": "setPeerStatus", "roles": ["producer"],
                "meta": {"call": format!("swarm-{i}")}});
            if ws.send(Message::text(status.to_string())).await.is_err() {
                break;
            }
            sockets.push(ws);
        }
        // Keep reading so the server's queues to us never fill.
        futures::future::join_all(
            sockets
                .iter_mut()
                .map(|ws| async move { while let Some(Ok(_)) = ws.next().await {} }),
        )
        .await;
    })
}

/// A thousand producers appear at once: callrec admits `max_calls` calls, refuses the rest
/// with a log line each, keeps running, and records normally once they are gone.
#[test]
fn a_thousand_producers_at_once_are_refused_beyond_max_calls() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let cfg = config(&server.url(), rec.path())
        .replace("linger_secs = 5", "linger_secs = 1\nmax_calls = 5")
        .replace("[recording]", "negotiation_timeout_secs = 3\n[recording]");
    let mut daemon = Daemon::start(&cfg);
    let swarm = swarm(&server.url(), 1000);
    let refused = common::wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        let n = daemon.log().matches("recording.max_calls reached").count();
        (n >= 995).then_some(n)
    });
    assert!(refused >= 995, "{refused}");
    assert!(common::find_call_dirs(rec.path()).len() <= 5);
    assert!(daemon.is_running());
    drop(swarm);
    // Their calls end (nobody offered, then nobody is left); then there is room again.
    std::thread::sleep(Duration::from_secs(5));
    let mut good = TestPeer::spawn(
        &server.url(),
        &["--duration", "2", "--meta", r#"{"call":"after"}"#],
    );
    good.wait_event("done", Duration::from_secs(60));
    let m = common::wait_complete(&rec.path().join("after"));
    assert_eq!(m["status"], "complete", "{m:#}");
    assert!(daemon.is_running());
}
