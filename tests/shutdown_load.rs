//! SIGTERM with 50 participants in 25 calls: every file is finalised within the grace
//! period and the daemon exits 0.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, SignallingServer, TestPeer};

#[test]
fn sigterm_with_fifty_participants_finalises_every_file() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let grace = 15;
    let cfg = format!(
        "[signalling]\nurl = \"{}\"\nnegotiation_timeout_secs = 60\n[recording]\ndir = \"{}\"\npipelines_dir = \"{}\"\nstop_grace_secs = {grace}\nmedia_timeout_secs = 60\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        server.url(),
        rec.path().display(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines")
    );
    let mut daemon = Daemon::start(&cfg);
    // 25 processes of two producers each: one encode per process, shared by its two sessions.
    let mut peers: Vec<TestPeer> = (0..25)
        .map(|i| {
            TestPeer::spawn(
                &server.url(),
                &[
                    "--peers",
                    "2",
                    "--width",
                    "160",
                    "--height",
                    "96",
                    "--fps",
                    "10",
                    "--bitrate",
                    "100",
                    "--keep-alive",
                    "--meta",
                    &format!(r#"{{"call":"load-{i}"}}"#),
                ],
            )
        })
        .collect();
    // Wait until all 50 participants are being written.
    let recording = |rec: &std::path::Path| -> usize {
        common::find_call_dirs(rec)
            .iter()
            .map(|d| {
                let m = common::read_manifest(d);
                m["tracks"].as_array().map_or(0, |t| {
                    t.iter().filter(|t| t["start_offset_ms"].is_i64()).count()
                })
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tracks = 0;
    while Instant::now() < deadline {
        tracks = recording(rec.path());
        if tracks >= 100 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        tracks,
        100,
        "50 participants, audio and video each, should be recording\n{}",
        daemon.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    let stop = Instant::now();
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(grace + 10));
    let took = stop.elapsed();
    println!(
        "50 participants in 25 calls finalised in {:.2} s",
        took.as_secs_f64()
    );
    assert!(status.success(), "exit status {status:?}\n{}", daemon.log());
    assert!(took < Duration::from_secs(grace), "took {took:?}");
    for p in &mut peers {
        p.kill();
    }
    let dirs = common::find_call_dirs(rec.path());
    assert_eq!(dirs.len(), 25);
    for dir in dirs {
        let m = common::read_manifest(&dir);
        assert_eq!(m["status"], "complete", "{m:#}");
        for t in m["tracks"].as_array().unwrap() {
            assert_eq!(t["status"], "complete", "{t:#}");
        }
        for p in m["participants"].as_array().unwrap() {
            for f in common::files_of(&m, p["id"].as_str().unwrap()) {
                let info = common::probe(&dir.join(&f));
                assert!(
                    info.duration_s > 2.0,
                    "{f}: {info:?} (finalised files carry a duration)"
                );
            }
        }
    }
}
