//! Every kind of source in one daemon at once: a `gst-webrtc` source on the real
//! `gst-webrtc-signalling-server`, a `janus` source on a real Janus VideoRoom, and a `whip`
//! source (callrec's own WHIP endpoint), one call on each at the same time, each from a real
//! webrtcbin publisher (`callrec-testpeer` in its three modes).
//!
//! Janus gathers ICE candidates only off loopback, so Janus runs in a network namespace of
//! its own (see `common/janus.rs`), and everything else runs in there with it: the
//! signalling server and the WHIP endpoint on the namespace's loopback, callrec and the
//! three publishers doing ICE on the namespace's veth address (`Janus::local_address`).
//!
//! It needs root (namespaces) and Janus; without either it says SKIPPED and passes.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{files_of, Daemon, Expect, Janus, JanusRoom, SignallingServer, TestPeer};
use serde_json::Value;

/// The WHIP endpoint's bearer token (every call).
const TOKEN: &str = "sources-test-token-0123456789";
/// The room the Janus source records.
const ROOM: u64 = 1234;
/// Seconds each publisher sends once connected.
const SEND_SECS: &str = "8";
/// Small video at a low rate: three publishers, Janus and callrec share 2 cores.
const SMALL: &[&str] = &[
    "--width",
    "320",
    "--height",
    "180",
    "--fps",
    "15",
    "--bitrate",
    "300",
];
/// How much of a Janus publish a recording may miss at its start: callrec hears of the
/// publisher from its follower, subscribes, and Janus offers, before ICE and DTLS run (see
/// `tests/janus.rs`). The other sources' files start within a second of the media.
const JANUS_START_SLACK_S: f64 = 3.0;
/// Longest any one step may take: generous, since the machine is shared.
const STEP: Duration = Duration::from_secs(30);

/// One publisher and what callrec should make of it.
struct Expected {
    /// The source's name in the config.
    source: &'static str,
    /// The call directory's name.
    call_dir: String,
    /// The id callrec gives the participant (peer id, feed id or WHIP session).
    id: String,
    /// Its name as given (gst-webrtc meta `name`, Janus display, WHIP `?name=`).
    name: &'static str,
    /// ffprobe's name for the video codec it sends.
    video: &'static str,
    /// Seconds it sent.
    sent: f64,
    /// How much of the start a recording may miss.
    start_slack: f64,
}

/// Three sources, three publishers at once, three calls: each call's directory is its own
/// (`<source>-<call>`, though the gst-webrtc and WHIP calls have the same name), its
/// manifest is complete and names the participant's source, the participants recorded at
/// the same time, and every file decodes (VP8, H.264 and VP9, each with Opus) and covers
/// what its publisher sent.
#[test]
fn gst_webrtc_janus_and_whip_sources_record_at_once() {
    // Built (or found) before the clock of any wait starts.
    common::testpeer_bin();
    let started = Instant::now();
    let janus = match Janus::start(&[JanusRoom::new(ROOM).fir_freq(1)]) {
        Ok(janus) => janus,
        Err(common::Unavailable(why)) => {
            eprintln!("\nSKIPPED: gst_webrtc_janus_and_whip_sources_record_at_once: {why}\n");
            return;
        }
    };
    let (ns, local) = (janus.netns(), janus.local_address());
    let server = SignallingServer::start_in_netns(ns);
    let files = tempfile::tempdir().unwrap();
    let tokens = files.path().join("whip-tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
    let whip = format!("127.0.0.1:{}", common::free_port_in(ns));
    let rec = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[[source]]
name = "gst"
protocol = "gst-webrtc"
url = "{signalling}"
reconnect_min_secs = 0.2
reconnect_max_secs = 1.0

[[source]]
name = "janus1"
protocol = "janus"
url = "{janus}"
rooms = [{ROOM}]

[[source]]
name = "whip"
protocol = "whip"
listen = "{whip}"
tokens_file = "{tokens}"

[recording]
dir = "{dir}"
pipelines_dir = "{pipelines}"
linger_secs = 2
media_timeout_secs = 5

[ice]
local_addresses = ["{local}"]
"#,
        signalling = server.url(),
        janus = janus.url(),
        tokens = tokens.display(),
        dir = rec.path().display(),
        pipelines = common::PIPELINES,
    );
    let daemon = Daemon::start_in_netns(ns, &config);
    // callrec follows the room before anyone publishes in it, as in tests/janus.rs: the
    // publishers below start together.
    janus.wait_follower(ROOM, &[], STEP);
    println!(
        "Janus, the signalling server and callrec ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        SMALL
            .iter()
            .copied()
            .chain(["--duration", SEND_SECS])
            .chain(extra.iter().copied())
            .collect()
    };
    let mut alice = TestPeer::spawn_in_netns(
        ns,
        &local,
        &server.url(),
        &with(&[
            "--freq",
            "440",
            "--meta",
            r#"{"call":"standup","name":"alice"}"#,
        ]),
    );
    let mut bob = TestPeer::spawn_janus(
        &janus,
        ROOM,
        Some("bob"),
        &with(&["--freq", "660", "--video", "h264"]),
    );
    let whip_url = format!("http://{whip}/whip/standup?name=carol");
    let mut carol = TestPeer::spawn_whip_in_netns(
        ns,
        &local,
        &whip_url,
        &with(&["--freq", "880", "--video", "vp9", "--whip-token", TOKEN]),
    );
    let alice_id = welcome(&mut alice, "peer_id");
    let bob_feed = welcome(&mut bob, "peer_id");
    let carol_session = session(&mut carol);
    let sent_alice = sent(&mut alice);
    let sent_bob = sent(&mut bob);
    let sent_carol = sent(&mut carol);
    println!(
        "sent: alice {sent_alice:.2} s (gst-webrtc), bob {sent_bob:.2} s (Janus), carol \
         {sent_carol:.2} s (WHIP), all done after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let expected = [
        Expected {
            source: "gst",
            call_dir: "gst-standup".into(),
            id: alice_id,
            name: "alice",
            video: "vp8",
            sent: sent_alice,
            start_slack: 1.0,
        },
        Expected {
            source: "janus1",
            call_dir: format!("janus1-{ROOM}"),
            id: bob_feed,
            name: "bob",
            video: "h264",
            sent: sent_bob,
            start_slack: JANUS_START_SLACK_S,
        },
        Expected {
            source: "whip",
            call_dir: "whip-standup".into(),
            id: carol_session,
            name: "carol",
            video: "vp9",
            sent: sent_carol,
            start_slack: 1.0,
        },
    ];
    let mut spans = vec![];
    for e in &expected {
        let dir = rec.path().join(&e.call_dir);
        let m = wait_complete(&dir, STEP);
        spans.push(check_call(&dir, &m, e));
    }
    // Three call directories, no more: nothing of one source went into another's call.
    let dirs: Vec<String> = common::find_call_dirs(rec.path())
        .iter()
        .filter_map(|d| d.file_name()?.to_str().map(str::to_owned))
        .collect();
    assert_eq!(
        dirs,
        ["gst-standup", "janus1-1234", "whip-standup"],
        "one call directory per source"
    );
    // At the same time: every participant was in its call while the others were in theirs.
    let latest_join = spans.iter().map(|s| s.0).fold(f64::MIN, f64::max);
    let earliest_leave = spans.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    assert!(
        earliest_leave - latest_join >= 3.0,
        "the three calls did not record at once: joined/left {spans:?}"
    );
    let log = daemon.log();
    assert!(!log.contains("panicked"), "callrec panicked:\n{log}");
    println!(
        "the whole test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The `field` of a publisher's `welcome`.
fn welcome(peer: &mut TestPeer, field: &str) -> String {
    let v = peer.wait_event("welcome", STEP);
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("welcome without {field}: {v}"))
        .to_owned()
}

/// The id callrec knows a WHIP client by (its session, the last segment of `Location`).
fn session(peer: &mut TestPeer) -> String {
    let v = peer.wait_event("session", STEP);
    v["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("session event without session_id: {v}"))
        .to_owned()
}

/// Waits (bounded) for a publisher to finish; the seconds of media it sent.
fn sent(peer: &mut TestPeer) -> f64 {
    let done = peer.wait_event("done", Duration::from_secs(60));
    done["sent_secs"].as_f64().expect("done carries sent_secs")
}

/// Waits up to `timeout` until a call directory's manifest says `complete`.
fn wait_complete(dir: &Path, timeout: Duration) -> Value {
    common::wait_for(timeout, Duration::from_millis(200), || {
        let m = common::read_manifest(dir);
        (m["status"] == "complete").then_some(m)
    })
}

/// An id as text, whether the manifest gives it as a number or a string (Janus feeds).
fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks one call: its only participant is `e`'s, with its source and name; its audio and
/// video tracks are complete in one file that decodes and covers what was sent. Returns
/// when the participant joined and left (seconds since the epoch).
fn check_call(dir: &Path, m: &Value, e: &Expected) -> (f64, f64) {
    let participants = m["participants"].as_array().expect("participants");
    assert_eq!(participants.len(), 1, "{}: {m:#}", e.call_dir);
    let p = &participants[0];
    assert_eq!(id_text(&p["id"]), e.id, "{}: {p:#}", e.call_dir);
    assert_eq!(p["source"], e.source, "{}: {p:#}", e.call_dir);
    assert_eq!(p["meta"]["name"], e.name, "{}: {p:#}", e.call_dir);
    assert!(
        p["name"]
            .as_str()
            .is_some_and(|n| n.starts_with(&format!("{}+", e.name))),
        "{}: the file name is not made from {:?}: {p:#}",
        e.call_dir,
        e.name
    );
    if e.source == "janus1" {
        assert_eq!(p["meta"]["source"], e.source, "{p:#}");
        assert_eq!(id_text(&p["meta"]["room"]), ROOM.to_string(), "{p:#}");
        assert_eq!(id_text(&p["meta"]["feed"]), e.id, "{p:#}");
    }
    for kind in ["audio", "video"] {
        let track = m["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| id_text(&t["participant"]) == e.id && t["kind"] == kind)
            .unwrap_or_else(|| panic!("{}: no {kind} track: {m:#}", e.call_dir));
        assert_eq!(track["status"], "complete", "{}: {track:#}", e.call_dir);
    }
    let files = files_of(m, &e.id);
    assert_eq!(files.len(), 1, "{}: {files:?}: {m:#}", e.call_dir);
    let path = dir.join(&files[0]);
    let info = common::probe(&path);
    println!(
        "{}: {:.2} s recorded of {:.2} s sent",
        path.display(),
        info.duration_s,
        e.sent
    );
    // Between what was sent less the start's slack, and what was sent plus a second.
    common::assert_playable(
        &path,
        &Expect {
            video_codec: Some(e.video),
            audio_codec: Some("opus"),
            duration_s: e.sent - (e.start_slack - 1.0) / 2.0,
            tolerance_s: (e.start_slack + 1.0) / 2.0,
        },
    );
    let joined = common::rfc3339_secs(&p["joined_at"]);
    let left = p["left_at"]
        .as_str()
        .map(|_| common::rfc3339_secs(&p["left_at"]))
        .unwrap_or_else(|| panic!("{}: the participant never left: {p:#}", e.call_dir));
    (joined, left)
}
