//! Live mixes against the real signalling server and webrtcbin producers. Only the audio mix
//! is covered so far: the video mixes are experimental (see the README).

mod common;

use std::time::Duration;

use common::{Daemon, SignallingServer, TestPeer};

const PIPELINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");

fn rfc3339_secs(v: &serde_json::Value) -> f64 {
    let t = time::OffsetDateTime::parse(
        v.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    t.unix_timestamp_nanos() as f64 / 1e9
}

#[test]
fn audio_mix_covers_the_whole_call() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let config = format!(
        "[signalling]\nurl = \"{}\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{PIPELINES}\"\ntemplates = [\"participant-mkv\", \"mix-audio\"]\nlinger_secs = 1\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        server.url(),
        rec.path().display()
    );
    let _daemon = Daemon::start(&config);
    let mut a = TestPeer::spawn(
        &server.url(),
        &[
            "--duration",
            "6",
            "--freq",
            "440",
            "--meta",
            r#"{"call":"m"}"#,
        ],
    );
    a.wait_event("connected", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let mut b = TestPeer::spawn(
        &server.url(),
        &[
            "--duration",
            "3",
            "--freq",
            "660",
            "--video",
            "none",
            "--meta",
            r#"{"call":"m"}"#,
        ],
    );
    b.wait_event("done", Duration::from_secs(60));
    a.wait_event("done", Duration::from_secs(60));
    let dir = rec.path().join("m");
    let m = common::wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let m = common::read_manifest(&dir);
        (m["status"] == "complete").then_some(m)
    });
    let mix = &m["mixes"][0];
    assert_eq!(mix["template"], "mix-audio", "{m:#}");
    assert_eq!(mix["status"], "complete", "{m:#}");
    let file = dir.join(mix["files"][0].as_str().unwrap());
    let call_secs = rfc3339_secs(&m["ended_at"]) - rfc3339_secs(&m["started_at"]);
    let info = common::probe(&file);
    assert_eq!(info.streams[0].codec_name, "opus");
    assert!(
        (info.duration_s - call_secs).abs() < 1.5,
        "mix {:.2} s, call {call_secs:.2} s: {m:#}",
        info.duration_s
    );
    let report = common::decode_check(&file);
    assert!(
        report.audio_frames > 0 && report.errors.trim().is_empty(),
        "{report:?}"
    );
}
