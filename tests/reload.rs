//! End-to-end tests of SIGHUP reload and of `[debug] graphs`: the real signalling server, the
//! real daemon and real webrtcbin producers, with recordings checked by ffprobe/ffmpeg.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{files_of, peer_id, sent_secs, Daemon, Expect, SignallingServer, TestPeer};

const PIPELINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");

/// A config recording into `recordings` with the templates in `pipelines`.
fn config(url: &str, recordings: &Path, pipelines: &Path, extra: &str) -> String {
    format!(
        r#"
[signalling]
url = "{url}"
reconnect_min_secs = 0.2
reconnect_max_secs = 1.0
[recording]
dir = "{dir}"
pipelines_dir = "{pipes}"
linger_secs = 1
media_timeout_secs = 4
[ice]
local_addresses = ["127.0.0.1"]
{extra}
"#,
        dir = recordings.display(),
        pipes = pipelines.display()
    )
}

/// A templates directory holding a copy of the shipped participant-mkv template.
fn pipelines_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("participant-mkv.pipeline");
    std::fs::copy(
        Path::new(PIPELINES).join("participant-mkv.pipeline"),
        &template,
    )
    .unwrap();
    (dir, template)
}

fn config_path(daemon: &Daemon) -> PathBuf {
    daemon.tmp_dir().join("callrec.toml")
}

/// Sends SIGHUP and waits for `RELOADING=1` (with a `MONOTONIC_USEC=`) and then `READY=1`;
/// returns the `READY=1` message (it carries the `STATUS=` line).
fn reload(daemon: &Daemon) -> String {
    let before = daemon.notifications().len();
    daemon.sighup();
    common::wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        let notes = daemon.notifications();
        let new = &notes[before..];
        let at = new
            .iter()
            .position(|m| m.lines().any(|l| l == "RELOADING=1"))?;
        let usec: u64 = new[at]
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {:?}", new[at]));
        assert!(usec > 0, "{:?}", new[at]);
        new[at + 1..]
            .iter()
            .find(|m| m.lines().any(|l| l == "READY=1"))
            .cloned()
    })
}

fn status(message: &str) -> &str {
    message
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_default()
}

/// Records one call of one VP8+Opus producer; returns its only file and the seconds sent.
fn record_call(server: &SignallingServer, rec: &Path, call: &str, secs: &str) -> (PathBuf, f64) {
    let meta = format!(r#"{{"call":"{call}"}}"#);
    let mut peer = TestPeer::spawn(&server.url(), &["--duration", secs, "--meta", &meta]);
    let id = peer_id(&mut peer);
    let sent = sent_secs(&mut peer);
    finished_file(rec, call, &id, sent)
}

/// Waits for a call to complete; returns its participant's only file and `sent`.
fn finished_file(rec: &Path, call: &str, id: &str, sent: f64) -> (PathBuf, f64) {
    let dir = rec.join(call);
    let m = common::wait_complete(&dir);
    let files = files_of(&m, id);
    assert_eq!(files.len(), 1, "one participant file: {m:#}");
    (dir.join(&files[0]), sent)
}

fn assert_vp8_opus(file: &Path, sent: f64) {
    common::assert_playable(
        file,
        &Expect {
            video_codec: Some("vp8"),
            audio_codec: Some("opus"),
            duration_s: sent,
            tolerance_s: 0.5,
        },
    );
}

#[test]
fn reload_applies_new_templates_to_new_calls() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let (pipes, template) = pipelines_copy();
    let daemon = Daemon::start(&config(&server.url(), rec.path(), pipes.path(), ""));

    let (first, sent) = record_call(&server, rec.path(), "one", "3");
    assert!(!first.to_string_lossy().contains("reloaded"), "{first:?}");
    assert_vp8_opus(&first, sent);

    // A new file name in the template, and a restart-only setting changed alongside.
    let text = std::fs::read_to_string(&template).unwrap();
    let changed = text.replace("${participant}.mkv", "${participant}-reloaded.mkv");
    assert_ne!(text, changed, "the shipped template changed shape");
    std::fs::write(&template, changed).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(
        config_path(&daemon),
        config(&server.url(), elsewhere.path(), pipes.path(), ""),
    )
    .unwrap();
    let ready = reload(&daemon);
    assert!(status(&ready).starts_with("reload succeeded"), "{ready:?}");
    assert!(status(&ready).contains("recording.dir"), "{ready:?}");
    let log = daemon.log();
    assert!(log.contains("reload succeeded"), "{log}");
    assert!(log.contains("take effect only after a restart"), "{log}");

    let (second, sent) = record_call(&server, rec.path(), "two", "3");
    assert!(
        second
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("-reloaded.mkv"),
        "{second:?}"
    );
    assert_vp8_opus(&second, sent);
    // The recordings directory needs a restart, so nothing went to the new one.
    assert!(common::find_call_dirs(elsewhere.path()).is_empty());
}

#[test]
fn reload_layers_a_directory_over_the_builtin_templates() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    // An empty directory: the built-in templates alone, whatever is installed.
    let pipes = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(&server.url(), rec.path(), pipes.path(), ""));
    let (first, sent) = record_call(&server, rec.path(), "builtin", "3");
    assert!(!first.to_string_lossy().contains("mine"), "{first:?}");
    assert_vp8_opus(&first, sent);

    // A file of the same name overrides the built-in template on reload.
    let shipped =
        std::fs::read_to_string(Path::new(PIPELINES).join("participant-mkv.pipeline")).unwrap();
    let mine = shipped.replace("${participant}.mkv", "${participant}-mine.mkv");
    assert_ne!(mine, shipped, "the shipped template changed shape");
    let template = pipes.path().join("participant-mkv.pipeline");
    std::fs::write(&template, &mine).unwrap();
    let ready = reload(&daemon);
    assert!(status(&ready).starts_with("reload succeeded"), "{ready:?}");
    let (second, sent) = record_call(&server, rec.path(), "override", "3");
    assert!(
        second.to_string_lossy().ends_with("-mine.mkv"),
        "{second:?}"
    );
    assert_vp8_opus(&second, sent);

    // A broken override is refused with its file and line; it never falls back to the
    // built-in template.
    std::fs::write(
        &template,
        mine.replace("matroskamux", "nosuchelementcallrec"),
    )
    .unwrap();
    let ready = reload(&daemon);
    assert!(status(&ready).starts_with("reload refused"), "{ready:?}");
    let log = daemon.log();
    assert!(
        log.contains(&format!(
            "{}:{}",
            template.display(),
            shipped.lines().count()
        )),
        "the error names the file and line: {log}"
    );

    // Without the file, the built-in template is back.
    std::fs::remove_file(&template).unwrap();
    let ready = reload(&daemon);
    assert!(status(&ready).starts_with("reload succeeded"), "{ready:?}");
    let (third, sent) = record_call(&server, rec.path(), "back", "3");
    assert!(!third.to_string_lossy().contains("mine"), "{third:?}");
    assert_vp8_opus(&third, sent);
}

#[test]
fn bad_reloads_are_refused_and_recording_goes_on() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let (pipes, template) = pipelines_copy();
    let daemon = Daemon::start(&config(&server.url(), rec.path(), pipes.path(), ""));

    // A call in progress while the reloads happen.
    let mut long = TestPeer::spawn(
        &server.url(),
        &["--duration", "8", "--meta", r#"{"call":"long"}"#],
    );
    let long_id = peer_id(&mut long);
    long.wait_event("connected", Duration::from_secs(20));

    // A template naming an element that does not exist.
    let good = std::fs::read_to_string(&template).unwrap();
    std::fs::write(
        &template,
        good.replace("matroskamux", "nosuchelementcallrec"),
    )
    .unwrap();
    let ready = reload(&daemon);
    assert!(status(&ready).starts_with("reload refused"), "{ready:?}");
    let log = daemon.log();
    assert!(log.contains("reload refused"), "{log}");
    assert!(log.contains("nosuchelementcallrec"), "{log}");
    let body_line = good.lines().count();
    assert!(
        log.contains(&format!("{}:{body_line}", template.display())),
        "the error names the file and line: {log}"
    );

    // A config with a misspelt key.
    let cfg = config(&server.url(), rec.path(), pipes.path(), "");
    std::fs::write(&template, &good).unwrap();
    std::fs::write(
        config_path(&daemon),
        cfg.replace("linger_secs", "lingr_secs"),
    )
    .unwrap();
    let ready = reload(&daemon);
    assert!(status(&ready).starts_with("reload refused"), "{ready:?}");
    let log = daemon.log();
    assert!(log.contains("lingr_secs"), "{log}");
    assert!(log.contains("line"), "the error gives the position: {log}");
    assert_eq!(
        common::read_manifest(&rec.path().join("long"))["status"],
        "recording",
        "the call was in progress during the reloads"
    );

    // The running call finishes normally.
    let sent = sent_secs(&mut long);
    let (file, sent) = finished_file(rec.path(), "long", &long_id, sent);
    assert_vp8_opus(&file, sent);

    // A new call still records with the settings from start-up, even though the template
    // file was broken when the reload was asked for.
    std::fs::write(
        &template,
        good.replace("matroskamux", "nosuchelementcallrec"),
    )
    .unwrap();
    let (file, sent) = record_call(&server, rec.path(), "after", "3");
    assert_vp8_opus(&file, sent);
    let m = common::read_manifest(&rec.path().join("after"));
    let pipeline = m["pipelines"][0]["pipeline"].as_str().unwrap_or_default();
    assert!(pipeline.contains("matroskamux"), "{m:#}");
    assert!(
        !daemon.log().contains("panicked"),
        "the daemon must stay up: {}",
        daemon.log()
    );
}

#[test]
fn debug_graphs_show_the_pipeline() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let (pipes, _) = pipelines_copy();
    let _daemon = Daemon::start(&config(
        &server.url(),
        rec.path(),
        pipes.path(),
        "[debug]\ngraphs = true",
    ));
    let (file, sent) = record_call(&server, rec.path(), "graphs", "3");
    assert_vp8_opus(&file, sent);
    let debug = rec.path().join("graphs").join("debug");
    let mut names: Vec<String> = std::fs::read_dir(&debug)
        .unwrap_or_else(|e| panic!("{}: {e}", debug.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let (n, event) = name
            .strip_suffix(".dot")
            .and_then(|s| s.split_once('-'))
            .unwrap_or_else(|| panic!("unexpected file {name}"));
        assert!(
            n.len() == 4 && n.chars().all(|c| c.is_ascii_digit()),
            "{name}"
        );
        assert!(["playing", "eos", "error"].contains(&event), "{name}");
        let text = std::fs::read_to_string(debug.join(name)).unwrap();
        assert!(text.contains("digraph"), "{name}");
    }
    for event in ["playing", "eos"] {
        let with_webrtcbin = names
            .iter()
            .filter(|n| n.ends_with(&format!("-{event}.dot")))
            .any(|n| {
                // Elements appear by type (GstWebRTCBin) and by name.
                std::fs::read_to_string(debug.join(n))
                    .unwrap()
                    .to_lowercase()
                    .contains("webrtcbin")
            });
        if !with_webrtcbin {
            let first = std::fs::read_to_string(debug.join(&names[0])).unwrap_or_default();
            panic!("no {event} graph shows webrtcbin: {names:?}; the first one:\n{first}");
        }
    }
}
