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
}

/// A producer on a raw WebSocket, run on its own thread; it stops when dropped.
struct HostileProducer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Vec<Value>>>,
}

impl HostileProducer {
    fn start(url: &str, meta: Value, attack: Attack) -> Self {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let url = url.to_owned();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let run = run_hostile(&url, meta, attack);
                tokio::select! {
                    seen = run => seen,
                    _ = stop_rx => vec![],
                }
            })
        });
        Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for HostileProducer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
                match attack {
                    Attack::OfferFlood(n) => {
                        for _ in 0..n {
                            let offer = json!({"type": "peer", "sessionId": session_id,
                                "sdp": {"type": "offer", "sdp": OFFER}});
                            if ws.send(send(offer)).await.is_err() {
                                return seen;
                            }
                        }
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

/// One participant floods the call with renegotiations (hundreds of offers, never
/// connecting); another who joins the same call starts recording within 2 s of its session
/// starting, and the flooder's session alone is ended.
#[test]
fn a_flood_of_renegotiations_does_not_hold_up_another_participant() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(&server.url(), rec.path()));
    let _flood = HostileProducer::start(
        &server.url(),
        json!({"call": "crowded", "name": "flooder"}),
        Attack::OfferFlood(400),
    );
    // Let the flood reach callrec first.
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
    let files = common::files_of(&m, &id);
    assert_eq!(files.len(), 1, "{m:#}");
    let report = common::decode_check(&dir.join(&files[0]));
    assert!(
        report.video_frames > 0 && report.errors.trim().is_empty(),
        "{report:?}"
    );
    let flooder = m["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["meta"]["name"] == "flooder")
        .expect("the flooder joined");
    let reason = flooder["end_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("renegotiation flood"),
        "the flooder's session was ended for flooding: {flooder:#}"
    );
}
