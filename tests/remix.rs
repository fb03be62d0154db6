//! `callrec remix`: a call recorded by the daemon (participants joining and leaving at
//! different times) is mixed offline, and the result is checked frame by frame: who is in
//! which cell when, and that a flash and a beep sent together come out together.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::analysis;
use common::{Daemon, SignallingServer, TestPeer};
use serde_json::Value;

const PIPELINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");

fn config(url: &str, rec: &Path) -> String {
    format!(
        "[signalling]\nurl = \"{url}\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{PIPELINES}\"\ntemplates = [\"participant-mkv\"]\nlinger_secs = 1\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        rec.display()
    )
}

/// Runs `callrec remix` and returns its stdout (the files written).
fn remix(dir: &Path, template: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callrec"));
    cmd.arg("remix")
        .arg(dir)
        .args(["--template", template, "--pipelines", PIPELINES])
        .args(extra);
    let out = common::run_with_timeout(cmd, Duration::from_secs(180));
    assert!(
        out.status.success(),
        "remix failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn(url: &str, args: &[&str]) -> TestPeer {
    let mut all = vec![
        "--width",
        "640",
        "--height",
        "360",
        "--meta",
        r#"{"call":"later"}"#,
    ];
    all.extend_from_slice(args);
    TestPeer::spawn(url, &all)
}

/// The manifest's entry for the remix (live mixes have no `remixed_at`).
fn remix_entry(m: &Value) -> &Value {
    m["mixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["remixed_at"].is_string())
        .unwrap_or_else(|| panic!("no remix in the manifest: {m:#}"))
}

/// Who is present in the remix at `t`, in join order, from its manifest entry.
fn present_at(spans: &[(String, f64, f64)], t: f64) -> Vec<String> {
    let mut present: Vec<&(String, f64, f64)> =
        spans.iter().filter(|s| s.1 <= t && t < s.2).collect();
    present.sort_by(|a, b| a.1.total_cmp(&b.1));
    present.into_iter().map(|s| s.0.clone()).collect()
}

/// Grid cell `k` of `n` as a frame region `(x0, y0, x1, y1)`.
fn cell(n: usize, k: usize) -> (f64, f64, f64, f64) {
    let (cols, rows) = match n {
        1 => (1, 1),
        2 => (2, 1),
        _ => (2, 2),
    };
    let (w, h) = (1.0 / cols as f64, 1.0 / rows as f64);
    let (c, r) = ((k % cols) as f64, (k / cols) as f64);
    (c * w, r * h, (c + 1.0) * w, (r + 1.0) * h)
}

#[test]
fn remix_mixes_a_recorded_call_with_people_joining_and_leaving() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&config(&server.url(), rec.path()));
    let url = server.url();
    // red from 0 s to 10 s; the marker peer (black, white flashes with 1 kHz beeps) from
    // about 2.5 s to 10.5 s; green from about 5 s to 8 s.
    let mut red = spawn(
        &url,
        &["--color", "0xff0000", "--freq", "440", "--duration", "10"],
    );
    let red_id = red.wait_event("welcome", Duration::from_secs(20))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    red.wait_event("connected", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(2500));
    let mut marker = spawn(&url, &["--marker-interval", "1", "--duration", "8"]);
    let marker_id = marker.wait_event("welcome", Duration::from_secs(20))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    marker.wait_event("connected", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(2500));
    let mut green = spawn(
        &url,
        &["--color", "0x00ff00", "--freq", "660", "--duration", "3"],
    );
    let green_id = green.wait_event("welcome", Duration::from_secs(20))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for p in [&mut red, &mut marker, &mut green] {
        p.wait_event("done", Duration::from_secs(60));
    }
    let dir = rec.path().join("later");
    common::wait_complete(&dir);

    let out = remix(&dir, "mix-mp4", &[]);
    let file = PathBuf::from(out.trim());
    assert_eq!(file, dir.join("remix-mix-mp4.mp4"), "{out}");
    let m = common::read_manifest(&dir);
    let entry = remix_entry(&m);
    assert_eq!(entry["template"], "mix-mp4");
    assert_eq!(entry["status"], "complete");
    assert_eq!(entry["files"][0], "remix-mix-mp4.mp4");
    let spans: Vec<(String, f64, f64)> = entry["on_screen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["participant"].as_str().unwrap().to_owned(),
                s["from_ms"].as_f64().unwrap() / 1000.0,
                s["to_ms"].as_f64().unwrap() / 1000.0,
            )
        })
        .collect();
    assert_eq!(spans.len(), 3, "{entry:#}");

    // Playable, as long as the call's media, frames decode.
    let info = common::probe(&file);
    let last = spans.iter().map(|s| s.2).fold(0.0, f64::max);
    assert!(
        (info.duration_s - last).abs() < 0.5,
        "remix {:.2} s, media until {last:.2} s",
        info.duration_s
    );
    // Every frame of the canvas is there: offline, nothing may be dropped to keep up (a
    // template's leaky queue would drop frames whenever the encoder is slower than the
    // decoders feeding it).
    let all_frames = |file: &Path| {
        let report = common::decode_check(file);
        let info = common::probe(file);
        let expected = info.duration_s * 30.0;
        assert!(
            report.errors.trim().is_empty() && report.video_frames as f64 >= expected - 3.0,
            "{}: {} frames in {:.2} s, expected {expected:.0}: {report:?}",
            file.display(),
            report.video_frames,
            info.duration_s
        );
    };
    all_frames(&file);

    // The right colours in the right cells, in the middle of every stable stretch (away from
    // the flashes, which come a few ms after each whole second).
    let colour = |id: &str| -> Option<[f64; 3]> {
        if id == red_id {
            Some([255.0, 0.0, 0.0])
        } else if id == green_id {
            Some([0.0, 255.0, 0.0])
        } else {
            assert_eq!(id, marker_id);
            Some([0.0, 0.0, 0.0])
        }
    };
    let mut edges: Vec<f64> = spans.iter().flat_map(|s| [s.1, s.2]).collect();
    edges.sort_by(f64::total_cmp);
    let mut checked = 0;
    for w in edges.windows(2) {
        if w[1] - w[0] < 1.0 {
            continue;
        }
        let t = ((w[0] + w[1]) / 2.0).floor() + 0.5;
        if !(w[0] + 0.2..w[1] - 0.2).contains(&t) {
            continue;
        }
        let present = present_at(&spans, t);
        let frame = analysis::frame_rgb(&file, t);
        for (k, id) in present.iter().enumerate() {
            let (x0, y0, x1, y1) = cell(present.len(), k);
            // The tile is letterboxed inside its cell: sample its middle.
            let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            let got = frame.mean_rgb(cx - 0.1, cy - 0.05, cx + 0.1, cy + 0.05);
            let want = colour(id).unwrap();
            assert!(
                analysis::color_close(got, want, 60.0),
                "at {t:.1} s cell {k} of {} should be {want:?}, is {got:?}",
                present.len()
            );
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} stretches checked: {spans:?}");

    // Flash and beep line up within 40 ms, watched in the marker peer's tile while it sits
    // in the right half (before green joins): here in MP4 (where callrec compensates the AAC
    // encoder's priming, see src/priming.rs) and below in WebM.
    let (_, from, _) = spans.iter().find(|s| s.0 == marker_id).unwrap().clone();
    let green_from = spans.iter().find(|s| s.0 == green_id).unwrap().1;
    let check_sync = |file: &Path, bound: f64| {
        let region = (0.6, 0.35, 0.9, 0.65);
        let flashes = analysis::flash_times_in(file, from + 0.3, green_from - 0.1, region);
        let beeps = analysis::beep_times(file, from + 0.2, green_from, 1000.0);
        assert!(
            !flashes.is_empty(),
            "{}: no flashes between {from:.2} and {green_from:.2} s",
            file.display()
        );
        for f in &flashes {
            let nearest = beeps
                .iter()
                .map(|b| b - f)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
                .unwrap_or(f64::INFINITY);
            eprintln!(
                "{}: flash at {f:.3} s, beep {:+.0} ms",
                file.display(),
                nearest * 1000.0
            );
            assert!(
                nearest.abs() < bound,
                "{}: flash at {f:.3} s: nearest beep {:.0} ms away (flashes {flashes:?}, beeps {beeps:?})",
                file.display(),
                nearest * 1000.0
            );
        }
    };
    check_sync(&file, 0.040);

    // `pipelines render --from` the same call prints a command that runs on its own and
    // mixes everyone who took part (placed once, as gst-launch text cannot move them).
    let rendered = tempfile::tempdir().unwrap();
    let out_dir = rendered.path().join("out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callrec"));
    cmd.args([
        "pipelines",
        "--pipelines",
        PIPELINES,
        "render",
        "mix-mp4",
        "--from",
    ])
    .arg(&dir)
    .arg("--out-dir")
    .arg(&out_dir);
    let printed = common::run_with_timeout(cmd, Duration::from_secs(60));
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let command = String::from_utf8_lossy(&printed.stdout).trim().to_owned();
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(&command);
    let ran = common::run_with_timeout(sh, Duration::from_secs(180));
    assert!(
        ran.status.success(),
        "{command}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let by_hand = out_dir.join("mix-mp4.mp4");
    let info = common::probe(&by_hand);
    assert!(
        (info.duration_s - last).abs() < 0.5,
        "rendered command wrote {:.2} s, media until {last:.2} s",
        info.duration_s
    );
    // Red is in the first of the three static places, from its first frame on (how long
    // after the call's start that is depends on how fast the machine connected it).
    let red_from = m["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["participant"] == red_id.as_str())
        .filter_map(|t| t["start_offset_ms"].as_f64())
        .fold(f64::MAX, f64::min)
        / 1000.0;
    let frame = analysis::frame_rgb(&by_hand, red_from + 1.5);
    let (x0, y0, x1, y1) = cell(3, 0);
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let got = frame.mean_rgb(cx - 0.1, cy - 0.05, cx + 0.1, cy + 0.05);
    assert!(
        analysis::color_close(got, [255.0, 0.0, 0.0], 60.0),
        "rendered mix: first cell is {got:?}, not red, {:.2} s in",
        red_from + 1.5
    );

    // --out puts the result where asked.
    let elsewhere = tempfile::tempdir().unwrap();
    let out_path = elsewhere.path().join("call.webm");
    remix(&dir, "mix-webm", &["--out", out_path.to_str().unwrap()]);
    let info = common::probe(&out_path);
    assert!(
        info.streams.iter().any(|s| s.codec_name == "vp8"),
        "{info:?}"
    );
    all_frames(&out_path);
    check_sync(&out_path, 0.040);
}

#[test]
fn remix_works_on_an_interrupted_call() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&config(&server.url(), rec.path()));
    let mut peer = spawn(&server.url(), &["--color", "0x0000ff", "--keep-alive"]);
    peer.wait_event("connected", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(5));
    daemon.sigkill();
    let dir = rec.path().join("later");
    let m: Value = common::read_manifest(&dir);
    assert_eq!(
        m["status"], "recording",
        "a killed daemon leaves the call open"
    );
    let out = remix(&dir, "mix-mp4", &[]);
    let file = PathBuf::from(out.trim());
    let info = common::probe(&file);
    assert!(
        info.duration_s > 3.0,
        "the remix covers what was recorded: {:.2} s",
        info.duration_s
    );
    let report = common::decode_check(&file);
    assert!(report.errors.trim().is_empty(), "{report:?}");
    let frame = analysis::frame_rgb(&file, info.duration_s / 2.0);
    let c = frame.mean_rgb(0.4, 0.4, 0.6, 0.6);
    assert!(
        analysis::color_close(c, [0.0, 0.0, 255.0], 60.0),
        "blue fills the canvas: {c:?}"
    );
}

#[test]
fn remix_shows_a_placeholder_for_a_participant_without_video() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&config(&server.url(), rec.path()));
    let url = server.url();
    let mut seen = spawn(&url, &["--color", "0xff0000", "--duration", "6"]);
    seen.wait_event("connected", Duration::from_secs(20));
    let mut heard = spawn(
        &url,
        &["--video", "none", "--freq", "660", "--duration", "5"],
    );
    heard.wait_event("connected", Duration::from_secs(20));
    for p in [&mut seen, &mut heard] {
        p.wait_event("done", Duration::from_secs(60));
    }
    let dir = rec.path().join("later");
    common::wait_complete(&dir);
    let out = remix(&dir, "mix-webm", &[]);
    let file = PathBuf::from(out.trim());
    let m = common::read_manifest(&dir);
    let entry = remix_entry(&m);
    assert_eq!(
        entry["on_screen"].as_array().unwrap().len(),
        2,
        "both are on screen: {entry:#}"
    );
    // While both are there: red on the left, the grey placeholder on the right.
    let spans: Vec<(f64, f64)> = entry["on_screen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["from_ms"].as_f64().unwrap() / 1000.0,
                s["to_ms"].as_f64().unwrap() / 1000.0,
            )
        })
        .collect();
    let from = spans.iter().map(|s| s.0).fold(0.0, f64::max);
    let to = spans.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    assert!(to - from > 2.0, "they overlap too little: {spans:?}");
    let frame = analysis::frame_rgb(&file, (from + to) / 2.0);
    let left = frame.mean_rgb(0.15, 0.45, 0.35, 0.55);
    let right = frame.mean_rgb(0.65, 0.40, 0.70, 0.45);
    assert!(
        analysis::color_close(left, [255.0, 0.0, 0.0], 60.0),
        "left is {left:?}"
    );
    assert!(
        analysis::color_close(right, [64.0, 64.0, 64.0], 30.0),
        "right should be the grey placeholder, is {right:?}"
    );
}

#[test]
fn remix_with_a_speaker_layout_puts_the_one_who_talks_large() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&config(&server.url(), rec.path()));
    let url = server.url();
    // Only green is heard, and it joins last: without the speaker choice the first to join
    // would be large.
    let mut peers: Vec<TestPeer> = [("0xff0000", "none"), ("0x0000ff", "none")]
        .into_iter()
        .map(|(colour, audio)| {
            spawn(
                &url,
                &["--color", colour, "--audio", audio, "--duration", "9"],
            )
        })
        .collect();
    for p in &mut peers {
        p.wait_event("connected", Duration::from_secs(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    peers.push(spawn(
        &url,
        &["--color", "0x00ff00", "--audio", "opus", "--duration", "6"],
    ));
    for p in &mut peers {
        p.wait_event("done", Duration::from_secs(60));
    }
    let dir = rec.path().join("later");
    common::wait_complete(&dir);
    let pipelines = tempfile::tempdir().unwrap();
    let webm = std::fs::read_to_string(format!("{PIPELINES}/mix-webm.pipeline")).unwrap();
    std::fs::write(
        pipelines.path().join("speaker.pipeline"),
        webm.replace("# layout: grid", "# layout: speaker"),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callrec"));
    cmd.arg("remix")
        .arg(&dir)
        .args(["--template", "speaker", "--pipelines"])
        .arg(pipelines.path());
    let out = common::run_with_timeout(cmd, Duration::from_secs(180));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let m = common::read_manifest(&dir);
    let entry = remix_entry(&m);
    let latest_join = entry["on_screen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["from_ms"].as_f64().unwrap())
        .fold(0.0, f64::max)
        / 1000.0;
    // The large tile is the top four fifths; green talks from its start, so it is large
    // once everyone is there.
    let frame = analysis::frame_rgb(&file, latest_join + 2.0);
    let big = frame.mean_rgb(0.4, 0.3, 0.6, 0.5);
    assert!(
        analysis::color_close(big, [0.0, 255.0, 0.0], 60.0),
        "the speaker's tile should be green, got {big:?}"
    );
}
