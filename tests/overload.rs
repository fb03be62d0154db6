//! A live mix on a saturated machine (issue 9): busy loops pinned to every core beside callrec
//! while three participants are mixed. Video may drop frames, but the mix stays close to real
//! time, its audio stays continuous, the passthrough recordings lose nothing, and the manifest
//! says how many frames were dropped and when the mix fell behind.

mod common;

use common::analysis;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, SignallingServer, TestPeer};

const PIPELINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");

/// One busy loop per core, each pinned to its core with `taskset`; killed (by process id) on
/// drop, so a failing test never leaves them running.
struct CpuHogs(Vec<Child>);

impl CpuHogs {
    fn start() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hogs = (0..cores)
            .map(|core| {
                Command::new("taskset")
                    .args(["-c", &core.to_string(), "sh", "-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start a busy loop with taskset")
            })
            .collect();
        CpuHogs(hogs)
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// How long the hogs run, and how long the call goes on before and after them.
const HOG_SECS: u64 = 12;

#[test]
fn a_saturated_machine_drops_mix_video_first_and_keeps_audio_and_passthrough_whole() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let config = format!(
        "[signalling]\nurl = \"{}\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{PIPELINES}\"\ntemplates = [\"participant-mkv\", \"mix-webm\", \"mix-mp4\"]\nlinger_secs = 1\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        server.url(),
        rec.path().display()
    );
    let _daemon = Daemon::start(&config);
    let meta = r#"{"call":"overload"}"#;
    let duration = (HOG_SECS + 6).to_string();
    let mut peers: Vec<TestPeer> = [("red", "440"), ("green", "660"), ("blue", "880")]
        .iter()
        .map(|(pattern, freq)| {
            // The producers must keep sending at full rate while the machine is saturated:
            // what is measured is what callrec loses, not what a starved sender never sent.
            TestPeer::spawn_favoured(
                &server.url(),
                &[
                    "--pattern",
                    pattern,
                    "--freq",
                    freq,
                    "--width",
                    "320",
                    "--height",
                    "180",
                    "--duration",
                    &duration,
                    "--meta",
                    meta,
                ],
            )
        })
        .collect();
    let ids: Vec<String> = peers.iter_mut().map(common::peer_id).collect();
    for p in &mut peers {
        p.wait_event("connected", Duration::from_secs(20));
    }
    let dir = rec.path().join("overload");
    let started = common::rfc3339_secs(&common::read_manifest(&dir)["started_at"]);
    std::thread::sleep(Duration::from_secs(2));
    // Saturate every core, and meanwhile sample how far the mixes' files are behind the
    // call's clock: the file's end against the time before and after reading it.
    let hogs = CpuHogs::start();
    let hog_from = common::wall_secs() - started;
    let mut lags: Vec<(&str, f64, f64)> = vec![];
    let until = Instant::now() + Duration::from_secs(HOG_SECS);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(1));
        for file in ["mix-webm.webm", "mix-mp4.mp4"] {
            let before = common::wall_secs() - started;
            let end = common::last_packet_end(&dir.join(file));
            let after = common::wall_secs() - started;
            lags.push((file, before - end, after - end));
        }
    }
    let hog_to = common::wall_secs() - started;
    drop(hogs);
    let sent: Vec<f64> = peers.iter_mut().map(common::sent_secs).collect();
    let m = common::wait_complete(&dir);
    println!("busy loops from {hog_from:.2} s to {hog_to:.2} s of the call");

    // The passthrough recordings lose nothing: every participant's file decodes without an
    // error, as long as they sent, with a frame every 1/30 s and an Opus packet every 20 ms.
    for (id, sent) in ids.iter().zip(&sent) {
        let files = common::files_of(&m, id);
        assert_eq!(files.len(), 1, "{id}: {m:#}");
        let path = dir.join(&files[0]);
        let report = common::decode_check(&path);
        let secs = analysis::duration_s(&path);
        let (frames, fps) = analysis::video_frame_count_and_fps(&path);
        let gap = analysis::max_frame_gap_s(&path);
        println!(
            "{}: {secs:.2} s of {sent:.2} s sent, {frames} video frames ({fps:.2} fps, longest gap {gap:.3} s), {} audio frames",
            files[0], report.audio_frames
        );
        assert!(report.errors.trim().is_empty(), "{}: {report:?}", files[0]);
        assert!(
            (secs - sent).abs() < 1.5,
            "{}: {secs:.2} s of {sent:.2} s",
            files[0]
        );
        let (want_video, want_audio) = (secs * 30.0, secs / 0.02);
        assert!(
            frames as f64 >= want_video * 0.95,
            "{}: {frames} video frames in {secs:.2} s",
            files[0]
        );
        assert!(
            report.audio_frames as f64 >= want_audio * 0.95,
            "{}: {} audio frames in {secs:.2} s",
            files[0],
            report.audio_frames
        );
    }

    for mix in m["mixes"].as_array().unwrap() {
        let name = mix["template"].as_str().unwrap();
        assert_eq!(mix["status"], "complete", "{mix:#}");
        let file = dir.join(mix["files"][0].as_str().unwrap());
        // Video may drop frames, and callrec counts them: the frames in the file plus those
        // dropped fill the canvas's 30 fps grid from the first frame to the last.
        let secs = analysis::duration_s(&file);
        let mut times = analysis::video_frame_times(&file);
        times.sort_by(f64::total_cmp);
        let frames = times.len() as u64;
        let span = times.last().unwrap_or(&0.0) - times.first().unwrap_or(&0.0);
        let fps = frames.saturating_sub(1) as f64 / span.max(1e-9);
        let dropped = mix["dropped_frames"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: no dropped_frames: {mix:#}"));
        let behind = mix["behind"].as_array().cloned().unwrap_or_default();
        println!(
            "{name}: {frames} frames in {secs:.2} s ({fps:.2} fps), {dropped} dropped, behind: {}",
            serde_json::to_string(&behind).unwrap()
        );
        assert!(frames > 1, "{name}: no video to speak of");
        let whole = span * 30.0 + 1.0;
        assert!(
            ((frames + dropped) as f64 - whole).abs() <= whole * 0.02 + 5.0,
            "{name}: {frames} frames in the file and {dropped} dropped, for {whole:.0} in {span:.2} s"
        );
        // ...and says when it fell behind.
        if dropped > 0 {
            assert!(
                !behind.is_empty(),
                "{name}: frames dropped but never behind: {mix:#}"
            );
        }
        let mut in_stretches = 0;
        for b in &behind {
            let (from, to) = (b["from_ms"].as_u64().unwrap(), b["to_ms"].as_u64().unwrap());
            assert!(
                from <= to && to as f64 <= secs * 1000.0 + 2000.0,
                "{name}: {b}"
            );
            assert!(b["max_lag_ms"].is_u64(), "{name}: {b}");
            in_stretches += b["dropped_frames"].as_u64().unwrap();
        }
        assert!(in_stretches <= dropped, "{name}: {behind:?} vs {dropped}");

        // Audio stays continuous while the machine is saturated: no clicks, no dropouts,
        // from a second after everyone is in until half a second before anyone leaves.
        let spans = mix["on_screen"].as_array().unwrap();
        let first_in = spans
            .iter()
            .map(|s| s["from_ms"].as_f64().unwrap())
            .fold(0.0, f64::max)
            / 1000.0;
        let first_out = spans
            .iter()
            .map(|s| s["to_ms"].as_f64().unwrap())
            .fold(f64::MAX, f64::min)
            / 1000.0;
        let (from, to) = (
            hog_from.max(first_in + 1.0),
            (hog_to + 1.0).min(first_out - 0.5),
        );
        assert!(
            to - from > HOG_SECS as f64 * 0.7,
            "{name}: {from:.2}..{to:.2} s"
        );
        let samples = analysis::audio_mono(&file, from, to - from);
        let (step, at) = analysis::max_step(&samples, from);
        let dropout = analysis::first_dropout(&samples, from, (from, to), 0.05);
        println!("{name}: audio {from:.2}..{to:.2} s, largest step {step:.3} at {at:.3} s, dropout {dropout:?}");
        assert!(
            step < 0.12,
            "{name}: a click in the mixed audio (a step of {step:.3} between two samples at {at:.3} s)"
        );
        assert!(
            dropout.is_none(),
            "{name}: the mixed audio drops out at {dropout:?}"
        );
    }

    // The mixes stay close to real time. The file's end is read while it grows; the midpoint
    // of the read counts. WebM is written as it comes (plus filesink's 64 KB); fragmented MP4
    // a fragment (1 s) at a time.
    for (file, allowance) in [("mix-webm.webm", 0.0), ("mix-mp4.mp4", 1.0)] {
        let samples: Vec<f64> = lags
            .iter()
            .filter(|l| l.0 == file)
            .map(|l| (l.1 + l.2) / 2.0)
            .collect();
        let (mid, max) = (
            median(&samples),
            samples.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "{file}: behind the call by {samples:.2?} s: median {mid:.2} s, at most {max:.2} s"
        );
        assert!(
            mid <= 1.5 + allowance,
            "{file}: median lag {mid:.2} s: {samples:.2?}"
        );
        assert!(
            max <= 3.0 + allowance,
            "{file}: lag up to {max:.2} s: {samples:.2?}"
        );
    }
}
