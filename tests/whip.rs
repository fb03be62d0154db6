//! WHIP ingest (RFC 9725) end to end: the real daemon with a `protocol = "whip"` source,
//! clients publishing over HTTP (callrec-testpeer in WHIP mode, with real webrtcbin media),
//! and every refusal the endpoint gives, checked while other sessions record.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{http_request, Daemon, HttpResponse};

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

#[allow(dead_code)]
fn recordings(rec: &Path) -> Vec<std::path::PathBuf> {
    common::find_call_dirs(rec)
}
