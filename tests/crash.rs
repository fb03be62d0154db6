//! kill -9 in the middle of a call: every passthrough file and the live mix (`mix-mp4`) plays up to
//! at most 2 s before the kill, and a restart marks the call `interrupted` and records new
//! calls. (Post-processing cut short by a crash is covered in `tests/post.rs`.)

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Daemon, SignallingServer, TestPeer};

fn config(url: &str, recordings: &Path) -> String {
    format!(
        "[signalling]\nurl = \"{url}\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{}\"\ntemplates = [\"participant-mkv\", \"mix-mp4\"]\nlinger_secs = 1\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        recordings.display(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines")
    )
}

#[test]
fn kill_9_loses_at_most_two_seconds_and_a_restart_carries_on() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let cfg = config(&server.url(), rec.path());
    let mut daemon = Daemon::start(&cfg);
    let meta = r#"{"call":"crash"}"#;
    let mut peers: Vec<TestPeer> = ["vp8", "h264"]
        .iter()
        .map(|codec| {
            TestPeer::spawn(
                &server.url(),
                &[
                    "--video",
                    codec,
                    "--width",
                    "320",
                    "--height",
                    "180",
                    "--keep-alive",
                    "--meta",
                    meta,
                ],
            )
        })
        .collect();
    for p in &mut peers {
        p.wait_event("connected", Duration::from_secs(20));
    }
    std::thread::sleep(Duration::from_secs(8));
    let killed_at = common::wall_secs();
    daemon.sigkill();
    let dir = rec.path().join("crash");
    let m = common::read_manifest(&dir);
    assert_eq!(
        m["status"], "recording",
        "a killed daemon leaves the call open"
    );
    let started = common::rfc3339_secs(&m["started_at"]);
    let mut checked = 0;
    for track in m["tracks"].as_array().unwrap() {
        let (Some(file), Some(offset)) =
            (track["file"].as_str(), track["start_offset_ms"].as_f64())
        else {
            continue;
        };
        let expected = killed_at - (started + offset / 1000.0);
        let got = common::last_packet_end(&dir.join(file));
        println!(
            "{file} ({}): plays to {got:.2} s of {expected:.2} s",
            track["kind"]
        );
        assert!(
            got >= expected - 2.0,
            "{file}: {got:.2} s of {expected:.2} s"
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "two participants, audio and video: {m:#}");
    for mix in m["mixes"].as_array().unwrap() {
        let file = mix["files"][0].as_str().unwrap();
        let expected = killed_at - started;
        let got = common::last_packet_end(&dir.join(file));
        println!("{file}: plays to {got:.2} s of {expected:.2} s");
        assert!(
            got >= expected - 2.0,
            "{file}: {got:.2} s of {expected:.2} s"
        );
        let report = common::decode_check(&dir.join(file));
        assert!(report.video_frames > 0, "{file}: {report:?}");
    }
    drop(peers);
    // A restart marks the call interrupted and records new calls.
    let _again = Daemon::start(&cfg);
    let m = common::read_manifest(&dir);
    assert_eq!(m["status"], "interrupted", "{m:#}");
    for t in m["tracks"].as_array().unwrap() {
        assert_eq!(t["status"], "interrupted", "{t:#}");
        assert!(t["bytes"].as_u64().unwrap_or(0) > 0, "{t:#}");
    }
    for mix in m["mixes"].as_array().unwrap() {
        assert_eq!(mix["status"], "interrupted", "{mix:#}");
    }
    let mut next = TestPeer::spawn(
        &server.url(),
        &["--duration", "2", "--meta", r#"{"call":"after"}"#],
    );
    next.wait_event("done", Duration::from_secs(60));
    let m = common::wait_complete(&rec.path().join("after"));
    assert_eq!(m["status"], "complete", "{m:#}");
}
