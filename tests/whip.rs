//! WHIP ingest (RFC 9725) end to end: the real daemon with a `protocol = "whip"` source,
//! clients publishing over HTTP (callrec-testpeer in WHIP mode, with real webrtcbin media),
//! and every refusal the endpoint gives, checked while other sessions record.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{files_of, http_request, peer_id, sent_secs, Daemon, Expect, HttpResponse, TestPeer};
use serde_json::Value;

/// Opens every call.
const TOKEN: &str = "whip-test-token-0123456789";
/// Opens the call `standup` only.
const STANDUP_TOKEN: &str = "standup-only-token-0123456789";

/// A daemon with one WHIP source on a port of its own, and where it records.
struct Endpoint {
    daemon: Daemon,
    addr: SocketAddr,
    rec: tempfile::TempDir,
    _files: tempfile::TempDir,
}

/// `extra` goes into `[recording]`, `ice` into `[ice]`.
fn start(extra: &str, ice: &str) -> Endpoint {
    start_with_sources("", extra, ice)
}

/// As [`start`], with more `[[source]]` tables (`sources`) before the WHIP one.
fn start_with_sources(sources: &str, extra: &str, ice: &str) -> Endpoint {
    let files = tempfile::tempdir().unwrap();
    let tokens = files.path().join("whip-tokens");
    std::fs::write(
        &tokens,
        format!("# every call\n{TOKEN}\nstandup {STANDUP_TOKEN}\n"),
    )
    .unwrap();
    let rec = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let config = format!(
        r#"
{sources}
[[source]]
name = "forwarded"
protocol = "whip"
listen = "{addr}"
tokens_file = "{tokens}"
negotiation_timeout_secs = 10
[recording]
dir = "{dir}"
pipelines_dir = "{pipelines}"
linger_secs = 1
media_timeout_secs = 4
{extra}
[ice]
local_addresses = ["127.0.0.1"]
{ice}
"#,
        tokens = tokens.display(),
        dir = rec.path().display(),
        pipelines = common::PIPELINES,
    );
    let daemon = Daemon::start(&config);
    Endpoint {
        daemon,
        addr,
        rec,
        _files: files,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    http_request(
        addr,
        method,
        path,
        headers,
        body.as_bytes(),
        Duration::from_secs(20),
    )
}

/// An offer of one track in a codec callrec does not record.
const G722_OFFER: &str = "v=0\r\no=- 1 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 9\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:9 G722/8000\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:00\r\na=setup:actpass\r\n";

/// Every refusal the endpoint gives, each with its status and a reason in the body.
fn check_refusals(addr: SocketAddr) {
    let auth = bearer(TOKEN);
    let sdp = [
        ("Content-Type", "application/sdp"),
        ("Authorization", auth.as_str()),
    ];
    let expect = |r: HttpResponse, status: u16, reason: &str| {
        assert_eq!(r.status, status, "{r:?}");
        assert!(r.body.contains(reason), "expected {reason:?} in {r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{r:?}");
    };
    // Preflight: what a browser asks before it publishes.
    let r = request(addr, "OPTIONS", "/whip/standup", &[], "");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("accept-post"), Some("application/sdp"), "{r:?}");
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("PATCH"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    // No token, a wrong one, and one for another call.
    let r = request(
        addr,
        "POST",
        "/whip/standup",
        &[("Content-Type", "application/sdp")],
        G722_OFFER,
    );
    expect(r.clone(), 401, "bearer token");
    assert!(
        r.header("www-authenticate").unwrap().starts_with("Bearer"),
        "{r:?}"
    );
    let wrong = bearer("not-a-token-0123456789");
    let r = request(
        addr,
        "POST",
        "/whip/standup",
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &wrong),
        ],
        G722_OFFER,
    );
    expect(r, 401, "bearer token");
    let standup_only = bearer(STANDUP_TOKEN);
    let r = request(
        addr,
        "POST",
        "/whip/other",
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &standup_only),
        ],
        G722_OFFER,
    );
    expect(r, 401, "bearer token");
    // Not SDP, too large, not parseable, nothing callrec records.
    let r = request(
        addr,
        "POST",
        "/whip/standup",
        &[("Content-Type", "text/plain"), ("Authorization", &auth)],
        G722_OFFER,
    );
    expect(r, 415, "application/sdp");
    let huge = format!("{G722_OFFER}a=x:{}\r\n", "y".repeat(200 * 1024));
    let r = request(addr, "POST", "/whip/standup", &sdp, &huge);
    assert_eq!(r.status, 413, "{r:?}");
    let r = request(addr, "POST", "/whip/standup", &sdp, "hello");
    expect(r, 400, "no audio or video");
    let r = request(addr, "POST", "/whip/standup", &sdp, "");
    expect(r, 400, "empty offer");
    let r = request(addr, "POST", "/whip/standup", &sdp, G722_OFFER);
    expect(r, 406, "G722");
    let long = format!("/whip/{}", "x".repeat(200));
    let r = request(addr, "POST", &long, &sdp, G722_OFFER);
    expect(r, 400, "characters");
    // Sessions that do not exist; and a token is checked before anything is looked up.
    let frag = [
        ("Content-Type", "application/trickle-ice-sdpfrag"),
        ("Authorization", auth.as_str()),
    ];
    let r = request(
        addr,
        "PATCH",
        "/whip/standup/0123abcd",
        &frag,
        "a=mid:0\r\n",
    );
    expect(r, 404, "no such WHIP session");
    let r = request(
        addr,
        "DELETE",
        "/whip/standup/0123abcd",
        &[("Authorization", &auth)],
        "",
    );
    expect(r, 404, "no such WHIP session");
    let r = request(addr, "DELETE", "/whip/standup/0123abcd", &[], "");
    expect(r, 401, "bearer token");
    let r = request(addr, "GET", "/elsewhere", &[], "");
    expect(r, 404, "no such WHIP resource");
}

#[test]
fn whip_refuses_bad_requests_with_clear_statuses() {
    let endpoint = start(
        "",
        r#"stun_server = "stun://127.0.0.1:3478"
turn_servers = ["turn://user:secret@127.0.0.1:3479"]"#,
    );
    check_refusals(endpoint.addr);
    // ICE servers go out in Link headers; TURN credentials only to authenticated clients.
    let r = request(endpoint.addr, "OPTIONS", "/whip/standup", &[], "");
    assert_eq!(
        r.headers_named("link"),
        ["<stun:127.0.0.1:3478>; rel=\"ice-server\""],
        "{r:?}"
    );
    // Nothing was recorded for any of them.
    assert!(common::find_call_dirs(endpoint.rec.path()).is_empty());
    assert!(!endpoint.daemon.log().contains("panicked"));
}

/// The WHIP URL of `call` for participant `name`.
fn whip_url(addr: SocketAddr, call: &str, name: &str) -> String {
    format!("http://{addr}/whip/{call}?name={name}")
}

/// The id callrec knows a WHIP client by (its session, the last segment of `Location`),
/// from the peer's `session` event.
fn whip_session(peer: &mut TestPeer) -> String {
    let v = peer.wait_event("session", Duration::from_secs(30));
    v["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("session event without session_id: {v}"))
        .to_owned()
}

/// The participant entry of `id` in a manifest.
fn participant<'a>(m: &'a Value, id: &str) -> &'a Value {
    m["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no participant {id}: {m:#}"))
}

/// Checks `id`'s one file in `dir`: codecs, length, keyframe first, decodes.
fn check_file(dir: &Path, m: &Value, id: &str, video: &str, sent: f64) {
    let files = files_of(m, id);
    assert_eq!(files.len(), 1, "{id}: {files:?} in {m:#}");
    common::assert_playable(
        &dir.join(&files[0]),
        &Expect {
            video_codec: Some(video),
            audio_codec: Some("opus"),
            duration_s: sent,
            tolerance_s: 1.0,
        },
    );
}

/// Two clients publish to one call over WHIP, one trickling its candidates by PATCH and one
/// sending them all in its offer, while a gst-webrtc producer records through another
/// source of the same daemon and every refusal is tried against the endpoint. Both WHIP
/// participants are one call, named after the source, recorded like any participant; the
/// `DELETE` at the end finalises their files; the other source's call is untouched.
#[test]
fn whip_publishers_are_recorded_like_any_participant() {
    let server = common::SignallingServer::start();
    let endpoint = start_with_sources(
        &format!(
            "[[source]]\nname = \"sig\"\nprotocol = \"gst-webrtc\"\nurl = \"{}\"\n",
            server.url()
        ),
        "",
        "",
    );
    let addr = endpoint.addr;
    let mut alice = TestPeer::spawn_whip(
        &whip_url(addr, "standup", "alice"),
        &["--whip-token", TOKEN, "--whip-trickle", "--duration", "6"],
    );
    let mut bob = TestPeer::spawn_whip(
        &whip_url(addr, "standup", "bob"),
        &[
            "--whip-token",
            STANDUP_TOKEN,
            "--video",
            "h264",
            "--duration",
            "6",
        ],
    );
    let mut other = TestPeer::spawn(
        &server.url(),
        &["--duration", "6", "--meta", r#"{"call":"standup"}"#],
    );
    let (alice_id, bob_id) = (whip_session(&mut alice), whip_session(&mut bob));
    let other_id = peer_id(&mut other);
    // Refusals while they record disturb none of them.
    check_refusals(addr);
    let sent_alice = sent_secs(&mut alice);
    let sent_bob = sent_secs(&mut bob);
    let sent_other = sent_secs(&mut other);
    let dir = endpoint.rec.path().join("forwarded-standup");
    let m = common::wait_complete(&dir);
    assert_eq!(m["participants"].as_array().unwrap().len(), 2, "{m:#}");
    for (id, name) in [(&alice_id, "alice"), (&bob_id, "bob")] {
        let p = participant(&m, id);
        assert_eq!(p["source"], "forwarded", "{p:#}");
        assert_eq!(p["meta"]["name"], name, "{p:#}");
        assert!(
            p["name"].as_str().unwrap().starts_with(&format!("{name}+")),
            "{p:#}"
        );
        assert!(p["end_reason"].as_str().unwrap().contains("ended"), "{p:#}");
    }
    check_file(&dir, &m, &alice_id, "vp8", sent_alice);
    check_file(&dir, &m, &bob_id, "h264", sent_bob);
    // The gst-webrtc source's call of the same name is a call of its own.
    let sig = endpoint.rec.path().join("sig-standup");
    let m = common::wait_complete(&sig);
    assert_eq!(participant(&m, &other_id)["source"], "sig");
    check_file(&sig, &m, &other_id, "vp8", sent_other);
    assert!(!endpoint.daemon.log().contains("panicked"));
}

/// A client that vanishes without `DELETE` is ended by the media timeout, and its file is
/// finalised and plays.
#[test]
fn a_whip_client_that_vanishes_is_ended_by_the_media_timeout() {
    let endpoint = start("", "");
    let mut peer = TestPeer::spawn_whip(
        &whip_url(endpoint.addr, "gone", "carol"),
        &["--whip-token", TOKEN, "--whip-no-delete", "--duration", "4"],
    );
    let id = whip_session(&mut peer);
    let sent = sent_secs(&mut peer);
    let dir = endpoint.rec.path().join("forwarded-gone");
    let m = common::wait_complete(&dir);
    let p = participant(&m, &id);
    assert!(
        p["end_reason"].as_str().unwrap().contains("no media"),
        "{p:#}"
    );
    check_file(&dir, &m, &id, "vp8", sent);
}
