//! `post` templates: run by the daemon after a call ends, their outputs verified; a failing
//! one leaves the recordings as they were and the manifest says why.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{pipelines_with, Daemon, Expect, SignallingServer, TestPeer};
use serde_json::Value;

const PIPELINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");

fn config(url: &str, rec: &Path, pipelines: &Path, post: &str) -> String {
    format!(
        "[signalling]\nurl = \"{url}\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{}\"\nlinger_secs = 1\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n[post]\ntemplates = [{post}]\nconcurrency = 1\ntimeout_secs = 120\n",
        rec.display(),
        pipelines.display()
    )
}

/// Records one 3 s call and waits until every post entry of its manifest is settled.
fn record_call(server: &SignallingServer, rec: &Path) -> (std::path::PathBuf, Value, f64) {
    let mut peer = TestPeer::spawn(
        &server.url(),
        &[
            "--duration",
            "3",
            "--meta",
            r#"{"call":"post","name":"alice"}"#,
        ],
    );
    peer.wait_event("connected", Duration::from_secs(30));
    let sent = peer.wait_event("done", Duration::from_secs(60));
    let sent = sent["sent_secs"].as_f64().unwrap_or(3.0);
    let dir = rec.join("post");
    common::wait_complete(&dir);
    let m = common::wait_for(Duration::from_secs(120), Duration::from_millis(300), || {
        let m = common::read_manifest(&dir);
        let post = m["post"].as_array()?;
        let settled = !post.is_empty()
            && post
                .iter()
                .all(|e| !matches!(e["status"].as_str(), Some("queued" | "running")));
        settled.then_some(m)
    });
    (dir, m, sent)
}

/// The call's original recording still plays as recorded, and post-processing left nothing
/// but files behind (no staging folder, no half-written output).
fn assert_recording_intact(dir: &Path, m: &Value, sent: f64) {
    let original = m["tracks"][0]["file"].as_str().unwrap();
    common::assert_playable(
        &dir.join(original),
        &Expect {
            video_codec: Some("vp8"),
            audio_codec: Some("opus"),
            duration_s: sent,
            tolerance_s: 0.6,
        },
    );
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        assert!(
            e.file_type().unwrap().is_file(),
            "{name} left in the call directory"
        );
        assert!(
            !name.ends_with(".jpg"),
            "{name} left behind by a failed template"
        );
    }
}

fn entry<'a>(m: &'a Value, template: &str) -> &'a Value {
    m["post"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["template"] == template)
        .unwrap_or_else(|| panic!("no post entry for {template}: {m:#}"))
}

#[test]
fn post_templates_run_after_the_call() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let pipelines = pipelines_with(&[]);
    let _daemon = Daemon::start(&config(
        &server.url(),
        rec.path(),
        pipelines.path(),
        "\"post-mp4\", \"post-audio\"",
    ));
    let (dir, m, sent) = record_call(&server, rec.path());
    let original = m["tracks"][0]["file"].as_str().unwrap().to_owned();
    let stem = original.strip_suffix(".mkv").unwrap();

    let mp4 = entry(&m, "post-mp4");
    assert_eq!(mp4["status"], "complete", "{m:#}");
    assert_eq!(mp4["files"][0], format!("{stem}.mp4"), "{m:#}");
    assert!(mp4["pipelines"][0].as_str().unwrap().contains("x264enc"));
    common::assert_playable(
        &dir.join(format!("{stem}.mp4")),
        &Expect {
            video_codec: Some("h264"),
            audio_codec: Some("aac"),
            duration_s: sent,
            tolerance_s: 0.6,
        },
    );
    let audio = entry(&m, "post-audio");
    assert_eq!(audio["status"], "complete", "{m:#}");
    let flac = dir.join(format!("{stem}.flac"));
    let info = common::probe(&flac);
    assert!(
        info.streams.iter().any(|s| s.codec_name == "flac") && (info.duration_s - sent).abs() < 0.6,
        "{info:?}"
    );
    assert_recording_intact(&dir, &m, sent);
}

/// Parses and builds fine, fails when it starts: its file would go into a folder that does
/// not exist.
const FAILING: &str = "# callrec-template\n# description: fails on purpose\n# scope: post\n# media: video/x-raw\n# inputs: video=v\nvideoconvert name=v ! jpegenc ! filesink location=${call_dir}/no-such-folder/${input}.jpg\n";

#[test]
fn a_failing_post_template_leaves_the_recording_alone() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let pipelines = pipelines_with(&[("post-broken.pipeline", FAILING)]);
    let daemon = Daemon::start(&config(
        &server.url(),
        rec.path(),
        pipelines.path(),
        "\"post-broken\", \"post-audio\"",
    ));
    let (dir, m, sent) = record_call(&server, rec.path());
    let broken = entry(&m, "post-broken");
    assert_eq!(broken["status"], "failed", "{m:#}");
    let why = broken["error"].as_str().unwrap_or_default();
    assert!(!why.is_empty(), "{m:#}");
    assert!(broken["files"].as_array().unwrap().is_empty(), "{m:#}");
    // The next template still ran.
    assert_eq!(entry(&m, "post-audio")["status"], "complete", "{m:#}");
    assert!(why.contains("no-such-folder"), "{why}");
    assert_recording_intact(&dir, &m, sent);
    assert!(
        daemon.log().contains("post-processing failed"),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_live_template_in_the_post_list_is_refused_at_check() {
    let rec = tempfile::tempdir().unwrap();
    let cfg = config(
        "ws://127.0.0.1:9",
        rec.path(),
        Path::new(PIPELINES),
        "\"participant-mkv\"",
    );
    let (status, log) = Daemon::check(&cfg);
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(log.contains("[post] templates"), "{log}");
}

#[test]
fn post_processing_cut_short_by_a_crash_runs_again_on_the_next_start() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let pipelines = pipelines_with(&[]);
    let cfg = config(&server.url(), rec.path(), pipelines.path(), "\"post-mp4\"");
    let mut daemon = Daemon::start(&cfg);
    let mut peer = TestPeer::spawn(
        &server.url(),
        &[
            "--duration",
            "8",
            "--meta",
            r#"{"call":"post","name":"alice"}"#,
        ],
    );
    peer.wait_event("done", Duration::from_secs(60));
    let dir = rec.path().join("post");
    // Kill the daemon while the job runs (or, on a fast machine, is about to).
    common::wait_for(Duration::from_secs(60), Duration::from_millis(10), || {
        let m = common::read_manifest(&dir);
        let status = m["post"][0]["status"].as_str().map(str::to_owned);
        matches!(status.as_deref(), Some("queued" | "running")).then_some(())
    });
    daemon.sigkill();
    let m = common::read_manifest(&dir);
    if m["post"][0]["status"] == "complete" {
        eprintln!("the job finished before the kill; nothing to resume");
        return;
    }
    let again = Daemon::start(&cfg);
    let m = common::wait_for(Duration::from_secs(120), Duration::from_millis(200), || {
        let m = common::read_manifest(&dir);
        if m["post"][0]["status"] == "failed" {
            panic!("{m:#}\n{}", again.log());
        }
        (m["post"][0]["status"] == "complete").then_some(m)
    });
    assert_eq!(m["post"].as_array().unwrap().len(), 1, "{m:#}");
    let file = m["post"][0]["files"][0].as_str().unwrap();
    let info = common::probe(&dir.join(file));
    assert!(
        info.streams.iter().any(|s| s.codec_name == "h264") && info.duration_s > 7.0,
        "{info:?}"
    );
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        assert!(e.file_type().unwrap().is_file(), "{e:?} left behind");
    }
}
