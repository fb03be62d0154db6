//! Hostile and broken producers: callrec ends only the session concerned, logs why, never
//! panics, and keeps recording everyone else. The bad producers speak the real protocol to the
//! real signalling server over a raw WebSocket.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Daemon, Expect, SignallingServer, TestPeer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, stream::MaybeTlsStream, Message, WebSocket};

const PIPELINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");

/// A producer that registers for real and then misbehaves.
struct FakeProducer {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl FakeProducer {
    fn connect(url: &str, meta: Value) -> Self {
        let (ws, _) = tungstenite::connect(url).expect("connect to the signalling server");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
        }
        let mut me = FakeProducer { ws };
        me.expect("welcome", Duration::from_secs(10));
        me.send(json!({"type": "setPeerStatus", "roles": ["producer"], "meta": meta}));
        me
    }

    fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).expect("send");
    }

    /// Reads messages until one of type `kind` arrives.
    fn expect(&mut self, kind: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == kind {
                        return v;
                    }
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("websocket error while waiting for {kind}: {e}"),
            }
        }
        panic!("no {kind} message within {timeout:?}");
    }
}

#[test]
fn bad_producers_end_only_their_own_sessions() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"
[signalling]
url = "{url}"
negotiation_timeout_secs = 3
[recording]
dir = "{dir}"
pipelines_dir = "{PIPELINES}"
linger_secs = 1
[ice]
local_addresses = ["127.0.0.1"]
"#,
        url = server.url(),
        dir = rec.path().display()
    );
    let daemon = Daemon::start(&cfg);

    // A good participant records throughout.
    let mut good = TestPeer::spawn(
        &server.url(),
        &["--duration", "8", "--meta", r#"{"call":"good"}"#],
    );

    // Garbage SDP and garbage ICE.
    let mut garbage = FakeProducer::connect(&server.url(), json!({"call": "bad"}));
    let start = garbage.expect("startSession", Duration::from_secs(10));
    let session = start["sessionId"].as_str().unwrap().to_owned();
    garbage.send(json!({"type": "peer", "sessionId": session, "ice": {"candidate": "candidate:garbage", "sdpMLineIndex": 99}}));
    garbage.send(json!({"type": "peer", "sessionId": session, "sdp": {"type": "offer", "sdp": "this is not sdp ! filesink location=/tmp/x"}}));
    let end = garbage.expect("endSession", Duration::from_secs(10));
    assert_eq!(end["sessionId"], session.as_str());

    // A producer that answers with an answer, never an offer.
    let mut confused = FakeProducer::connect(&server.url(), json!(["not", "an", "object"]));
    let start = confused.expect("startSession", Duration::from_secs(10));
    let session = start["sessionId"].as_str().unwrap().to_owned();
    confused.send(
        json!({"type": "peer", "sessionId": session, "sdp": {"type": "answer", "sdp": "v=0"}}),
    );
    confused.expect("endSession", Duration::from_secs(10));

    // A producer that never sends its offer is given up on after the negotiation timeout.
    let mut silent = FakeProducer::connect(&server.url(), json!({"call": "silent"}));
    silent.expect("startSession", Duration::from_secs(10));
    silent.expect("endSession", Duration::from_secs(10));

    let sent = good.wait_event("done", Duration::from_secs(60))["sent_secs"]
        .as_f64()
        .unwrap();
    let dir = rec.path().join("good");
    let m = common::wait_complete(&dir);
    let file = m["tracks"][0]["file"].as_str().unwrap();
    common::assert_playable(
        &dir.join(file),
        &Expect {
            video_codec: Some("vp8"),
            audio_codec: Some("opus"),
            duration_s: sent,
            tolerance_s: 0.5,
        },
    );
    let log = daemon.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("not valid SDP") || log.contains("negotiation failed"),
        "{log}"
    );
    assert!(log.contains("did not send an offer"), "{log}");
    // The bad calls are finished and say why.
    let bad = common::read_manifest(&rec.path().join("bad"));
    assert!(
        bad["participants"][0]["end_reason"]
            .as_str()
            .unwrap()
            .contains("negotiation failed"),
        "{bad:#}"
    );
}

#[test]
fn check_reports_bad_configs_with_sysexits_codes() {
    let (status, out) = Daemon::check(
        "[signalling]\nurl = \"ws://127.0.0.1:1\"\n[recording]\ndir = \"/tmp/x\"\nlinger = 3\n",
    );
    assert_eq!(status.code(), Some(78), "{out}");
    assert!(out.contains("linger"), "{out}");
    let rec = tempfile::tempdir().unwrap();
    let good = format!(
        "[signalling]\nurl = \"ws://127.0.0.1:1\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{PIPELINES}\"\ntemplates = [\"participant-mkv\", \"track-mkv\"]\n",
        rec.path().display()
    );
    let (status, out) = Daemon::check(&good);
    assert!(status.success(), "{out}");
    let (status, out) = Daemon::check(&good.replace("track-mkv", "no-such-template"));
    assert_eq!(status.code(), Some(78), "{out}");
    assert!(out.contains("no-such-template"), "{out}");
}
