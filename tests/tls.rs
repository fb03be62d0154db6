//! `wss://`: callrec records through a signalling server behind TLS, trusting a private CA.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, Expect, SignallingServer, TestPeer};

/// Makes a CA and a certificate for 127.0.0.1 signed by it; returns (ca, cert, key) paths.
fn make_certs(dir: &Path) -> (String, String, String) {
    let p = |name: &str| dir.join(name).display().to_string();
    let run = |args: &[&str]| {
        let mut cmd = Command::new("openssl");
        cmd.args(args);
        let out = common::run_with_timeout(cmd, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=callrec test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]);
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("leaf.key"),
        "-out",
        &p("leaf.csr"),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("leaf.ext"),
        "-out",
        &p("leaf.pem"),
    ]);
    (p("ca.pem"), p("leaf.pem"), p("leaf.key"))
}

#[test]
fn records_through_a_wss_signalling_server() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path());
    let server = SignallingServer::start_tls(Path::new(&cert), Path::new(&key));
    assert!(server.url().starts_with("wss://"));
    let rec = tempfile::tempdir().unwrap();
    let pipelines = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");
    let config = format!(
        "[signalling]\nurl = \"{}\"\nca_file = \"{ca}\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{pipelines}\"\nlinger_secs = 1\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        server.url(),
        rec.path().display()
    );
    let _daemon = Daemon::start(&config);
    let mut peer = TestPeer::spawn(
        &server.url(),
        &[
            "--ca-file",
            &ca,
            "--duration",
            "3",
            "--meta",
            r#"{"call":"tls"}"#,
        ],
    );
    let sent = peer.wait_event("done", Duration::from_secs(60))["sent_secs"]
        .as_f64()
        .unwrap();
    let dir = rec.path().join("tls");
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
    // Without the CA, the server is not trusted: callrec says so at `check`, not with a panic.
    let (status, out) = Daemon::check(&config.replace(&ca, "/nonexistent/ca.pem"));
    assert_eq!(status.code(), Some(78), "{out}");
    assert!(out.contains("CA file"), "{out}");
}
