//! Live mixes against the real signalling server and webrtcbin producers: grid and speaker
//! layouts, frozen cameras, resolution changes, A/V sync, HLS and the audio-only mix.

mod common;

use std::time::Duration;

use common::analysis;
use common::{Daemon, SignallingServer, TestPeer};

const PIPELINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");

/// Seconds from the call's start until its last participant left: how long a mix lasts.
fn presence_secs(m: &serde_json::Value) -> f64 {
    let last_left = m["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| common::rfc3339_secs(&p["left_at"]))
        .fold(f64::MIN, f64::max);
    last_left - common::rfc3339_secs(&m["started_at"])
}

/// A mix's main file (an HLS mix's playlist) and how long it plays.
fn mix_file_secs(dir: &std::path::Path, mix: &serde_json::Value) -> (std::path::PathBuf, f64) {
    let files: Vec<&str> = mix["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    let file = files
        .iter()
        .find(|f| f.ends_with(".m3u8"))
        .unwrap_or(&files[0]);
    let path = dir.join(file);
    let secs = if file.ends_with(".m3u8") {
        playlist_secs(&std::fs::read_to_string(&path).unwrap())
    } else {
        common::probe(&path).duration_s
    };
    (path, secs)
}

/// Total duration of an HLS playlist's segments.
fn playlist_secs(playlist: &str) -> f64 {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| d.split(',').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn audio_mix_covers_the_whole_call() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let config = format!(
        "[signalling]\nurl = \"{}\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{PIPELINES}\"\ntemplates = [\"mix-audio\"]\nlinger_secs = 1\nmedia_timeout_secs = 2\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
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
    let m = common::wait_complete(&dir);
    let mix = &m["mixes"][0];
    assert_eq!(mix["template"], "mix-audio", "{m:#}");
    assert_eq!(mix["status"], "complete", "{m:#}");
    let file = dir.join(mix["files"][0].as_str().unwrap());
    let call_secs = presence_secs(&m);
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

/// One decoded video frame, RGB.
struct Frame {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Frame {
    /// Mean colour of the middle half of a grid cell.
    fn cell(&self, cols: usize, rows: usize, col: usize, row: usize) -> [f64; 3] {
        let (cw, ch) = (self.width / cols, self.height / rows);
        let (x0, y0) = (col * cw + cw / 4, row * ch + ch / 4);
        let mut sum = [0f64; 3];
        let mut n = 0f64;
        for y in y0..y0 + ch / 2 {
            for x in x0..x0 + cw / 2 {
                let i = (y * self.width + x) * 3;
                for (c, total) in sum.iter_mut().enumerate() {
                    *total += self.rgb[i + c] as f64;
                }
                n += 1.0;
            }
        }
        sum.map(|s| s / n)
    }
}

fn frame_at(path: &std::path::Path, t: f64) -> Frame {
    let info = common::probe(path);
    let v = info
        .streams
        .iter()
        .find(|s| s.codec_type == "video")
        .expect("video stream");
    let (width, height) = (v.width.unwrap() as usize, v.height.unwrap() as usize);
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-v", "error", "-ss", &format!("{t:.3}"), "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]);
    let out = common::run_with_timeout(cmd, Duration::from_secs(30));
    assert_eq!(
        out.stdout.len(),
        width * height * 3,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Frame {
        width,
        height,
        rgb: out.stdout,
    }
}

fn audio_at(path: &std::path::Path, t: f64, dur: f64) -> Vec<f32> {
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args([
        "-v",
        "error",
        "-ss",
        &format!("{t:.3}"),
        "-t",
        &format!("{dur:.3}"),
        "-i",
    ])
    .arg(path)
    .args(["-vn", "-ac", "1", "-ar", "48000", "-f", "f32le", "-"]);
    let out = common::run_with_timeout(cmd, Duration::from_secs(30));
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Goertzel power at `freq`, normalised: a sine of amplitude A gives about A²/4.
fn tone_power(samples: &[f32], freq: f64) -> f64 {
    let n = samples.len().max(1) as f64;
    let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
    let (mut s1, mut s2) = (0f64, 0f64);
    for &x in samples {
        let s0 = x as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / (n * n)
}

fn close(a: [f64; 3], b: [f64; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 70.0)
}

#[test]
fn grid_mix_shows_who_is_there_and_plays_their_tones() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let config = format!(
        "[signalling]\nurl = \"{}\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{PIPELINES}\"\ntemplates = [\"mix-webm\", \"mix-mp4\"]\nlinger_secs = 1\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        server.url(),
        rec.path().display()
    );
    let _daemon = Daemon::start(&config);
    let people = [
        ("red", "440", [255.0, 0.0, 0.0], 440.0),
        ("green", "660", [0.0, 255.0, 0.0], 660.0),
        ("blue", "880", [0.0, 0.0, 255.0], 880.0),
    ];
    let durations = ["9", "9", "6"];
    let mut peers = vec![];
    let mut ids = vec![];
    let mut connected_at = vec![];
    for (i, (pattern, freq, _, _)) in people.iter().enumerate() {
        let mut p = TestPeer::spawn(
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
                durations[i],
                "--meta",
                r#"{"call":"grid"}"#,
            ],
        );
        ids.push(
            p.wait_event("welcome", Duration::from_secs(20))["peer_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        p.wait_event("connected", Duration::from_secs(20));
        connected_at.push(common::wall_secs());
        peers.push(p);
        std::thread::sleep(Duration::from_secs(3));
    }
    for p in &mut peers {
        p.wait_event("done", Duration::from_secs(60));
    }
    let dir = rec.path().join("grid");
    let m = common::wait_complete(&dir);
    let call_secs = presence_secs(&m);
    for mix in m["mixes"].as_array().unwrap() {
        assert_eq!(mix["status"], "complete", "{mix:#}");
        let file = dir.join(mix["files"][0].as_str().unwrap());
        let info = common::probe(&file);
        assert!(
            (info.duration_s - call_secs).abs() < 1.5,
            "{}: {:.2} s vs call {call_secs:.2} s",
            mix["template"],
            info.duration_s
        );
        // Who is on screen when, in join order, from the manifest.
        let spans: Vec<(usize, f64, f64)> = mix["on_screen"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let who = ids
                    .iter()
                    .position(|id| s["participant"] == id.as_str())
                    .expect("known participant");
                (
                    who,
                    s["from_ms"].as_f64().unwrap() / 1000.0,
                    s["to_ms"].as_f64().unwrap() / 1000.0,
                )
            })
            .collect();
        assert_eq!(spans.len(), 3, "{mix:#}");
        // Sample the middle of every stretch where the same people are on screen.
        let mut edges: Vec<f64> = spans.iter().flat_map(|s| [s.1, s.2]).collect();
        edges.sort_by(f64::total_cmp);
        let mut checked = 0;
        for w in edges.windows(2) {
            if w[1] - w[0] < 1.5 {
                continue;
            }
            let t = (w[0] + w[1]) / 2.0;
            let mut present: Vec<usize> = spans
                .iter()
                .filter(|s| s.1 <= t && t < s.2)
                .map(|s| s.0)
                .collect();
            present.sort_by(|a, b| {
                spans
                    .iter()
                    .find(|s| s.0 == *a)
                    .unwrap()
                    .1
                    .total_cmp(&spans.iter().find(|s| s.0 == *b).unwrap().1)
            });
            if present.is_empty() {
                continue;
            }
            let frame = frame_at(&file, t);
            let (cols, rows) = match present.len() {
                1 => (1, 1),
                2 => (2, 1),
                _ => (2, 2),
            };
            for (k, who) in present.iter().enumerate() {
                let got = frame.cell(cols, rows, k % cols, k / cols);
                assert!(
                    close(got, people[*who].2),
                    "{} at {t:.1} s: cell {k} should be {} but is {got:?}",
                    mix["template"],
                    people[*who].0
                );
            }
            let samples = audio_at(&file, t - 0.4, 0.8);
            for (who, person) in people.iter().enumerate() {
                let power = tone_power(&samples, person.3);
                if present.contains(&who) {
                    assert!(
                        power > 1e-4,
                        "{} at {t:.1} s: {} Hz missing ({power:e})",
                        mix["template"],
                        person.3
                    );
                } else {
                    assert!(
                        power < 1e-5,
                        "{} at {t:.1} s: {} Hz present but they left ({power:e})",
                        mix["template"],
                        person.3
                    );
                }
            }
            checked += 1;
        }
        assert!(
            checked >= 3,
            "{}: only {checked} stable stretches to check: {spans:?}",
            mix["template"]
        );
        // Joins and the leave reflow the layout within a second: of the producer's media
        // starting to flow, and of the daemon hearing they left.
        let started = common::rfc3339_secs(&m["started_at"]);
        let left: Vec<f64> = ids
            .iter()
            .map(|id| {
                m["participants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["id"] == id.as_str())
                    .map(|p| common::rfc3339_secs(&p["left_at"]) - started)
                    .unwrap()
            })
            .collect();
        let first_to_leave = (0..3).min_by(|a, b| left[*a].total_cmp(&left[*b])).unwrap();
        let moments = [
            (connected_at[1] - started, vec![0, 1]),
            (connected_at[2] - started, vec![0, 1, 2]),
            (
                left[first_to_leave],
                (0..3).filter(|who| *who != first_to_leave).collect(),
            ),
        ];
        for (at, present) in moments {
            let t = at + 1.0;
            // On a slow machine joins take longer than the test peers' spacing, and someone
            // may already be gone by then: that moment shows a different set of people.
            if let Some(gone) = present.iter().find(|w| left[**w] < t + 0.5) {
                eprintln!(
                    "{}: skipping the moment at {at:.2} s: {} left at {:.2} s",
                    mix["template"], people[*gone].0, left[*gone]
                );
                continue;
            }
            let frame = frame_at(&file, t);
            let (cols, rows) = if present.len() == 2 { (2, 1) } else { (2, 2) };
            for (k, who) in present.iter().enumerate() {
                let got = frame.cell(cols, rows, k % cols, k / cols);
                assert!(
                    close(got, people[*who].2),
                    "{}: 1 s after the change at {at:.2} s, cell {k} should be {} but is {got:?}",
                    mix["template"],
                    people[*who].0
                );
            }
        }
        // No clicks or gaps in the mixed audio: samples never jump further than the tones
        // present can move between two samples (Opus noise allowed for), also when people
        // join or leave.
        let samples = audio_at(&file, 0.0, call_secs);
        let (max_step, at) = common::analysis::max_step(&samples, 0.0);
        assert!(
            max_step < 0.12,
            "{}: a click in the mixed audio (a step of {max_step:.3} between two samples at \
             {at:.3} s; people on screen {spans:?})",
            mix["template"]
        );
        // ...and no dropouts while anyone is there (each tone alone has an RMS of about 0.2).
        let first_in = spans.iter().map(|s| s.1).fold(f64::MAX, f64::min) + 0.5;
        let last_out = spans.iter().map(|s| s.2).fold(0.0, f64::max) - 0.5;
        let dropout = common::analysis::first_dropout(&samples, 0.0, (first_in, last_out), 0.05);
        assert!(
            dropout.is_none(),
            "{}: the mixed audio drops out at {dropout:?} (time, RMS)",
            mix["template"]
        );
    }
}

fn mix_config(url: &str, rec: &std::path::Path, pipelines: &str, templates: &str) -> String {
    format!(
        "[signalling]\nurl = \"{url}\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{pipelines}\"\ntemplates = [{templates}]\nlinger_secs = 1\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        rec.display()
    )
}

#[test]
fn speaker_layout_puts_the_loud_participant_in_the_large_tile() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let pipelines = tempfile::tempdir().unwrap();
    let webm = std::fs::read_to_string(format!("{PIPELINES}/mix-webm.pipeline")).unwrap();
    std::fs::write(
        pipelines.path().join("speaker.pipeline"),
        webm.replace("# layout: grid", "# layout: speaker"),
    )
    .unwrap();
    let _daemon = Daemon::start(&mix_config(
        &server.url(),
        rec.path(),
        &pipelines.path().display().to_string(),
        "\"speaker\"",
    ));
    let args = |pattern: &'static str, audio: &'static str| {
        vec![
            "--pattern",
            pattern,
            "--audio",
            audio,
            "--width",
            "320",
            "--height",
            "180",
            "--duration",
            "8",
            "--meta",
            r#"{"call":"talk"}"#,
        ]
    };
    let mut peers = vec![
        TestPeer::spawn(&server.url(), &args("red", "none")),
        TestPeer::spawn(&server.url(), &args("green", "opus")),
        TestPeer::spawn(&server.url(), &args("blue", "none")),
    ];
    for p in &mut peers {
        p.wait_event("done", Duration::from_secs(60));
    }
    let dir = rec.path().join("talk");
    let m = common::wait_complete(&dir);
    let mix = &m["mixes"][0];
    assert_eq!(mix["layout"], "speaker", "{mix:#}");
    let file = dir.join(mix["files"][0].as_str().unwrap());
    // Everyone is on screen from about 1.5 s; give the speaker choice a moment.
    let latest_join = mix["on_screen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["from_ms"].as_f64().unwrap())
        .fold(0.0, f64::max)
        / 1000.0;
    let frame = frame_at(&file, latest_join + 3.0);
    // The large tile is the top four fifths, centred.
    let big = frame.cell(3, 5, 1, 1);
    assert!(
        close(big, [0.0, 255.0, 0.0]),
        "the speaker's tile should be green, got {big:?}"
    );
}

#[test]
fn a_frozen_camera_does_not_stall_the_mix() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&mix_config(
        &server.url(),
        rec.path(),
        PIPELINES,
        "\"mix-webm\"",
    ));
    let mut peer = TestPeer::spawn(
        &server.url(),
        &[
            "--video-stop-after",
            "2",
            "--duration",
            "7",
            "--width",
            "320",
            "--height",
            "180",
            "--meta",
            r#"{"call":"frozen"}"#,
        ],
    );
    peer.wait_event("done", Duration::from_secs(60));
    let dir = rec.path().join("frozen");
    let m = common::wait_complete(&dir);
    let call_secs = presence_secs(&m);
    let file = dir.join(m["mixes"][0]["files"][0].as_str().unwrap());
    let info = common::probe(&file);
    assert!(
        (info.duration_s - call_secs).abs() < 1.5,
        "mix {:.2} s vs call {call_secs:.2} s",
        info.duration_s
    );
    let report = common::decode_check(&file);
    // A frozen input must not hold the compositor up: no stretch without frames. On a
    // machine that cannot keep up the mix gives up frames (see tests/overload.rs), and then
    // it must say so in the manifest; otherwise it keeps its full frame rate.
    let gap = common::analysis::max_frame_gap_s(&file);
    assert!(gap < 1.5, "the mix stalled for {gap:.2} s ({report:?})");
    let fps = report.video_frames as f64 / info.duration_s;
    let dropped = m["mixes"][0]["dropped_frames"].as_u64().unwrap_or(0);
    assert!(
        fps > 27.0
            || (dropped > 0 && !m["mixes"][0]["behind"].as_array().is_none_or(Vec::is_empty)),
        "the mix must keep its frame rate, or report what it dropped: {fps:.1} fps, {dropped} \
         dropped ({report:?}, {:#})",
        m["mixes"][0]
    );
    // The participant stays on screen with their last frame after the camera stopped.
    let left = m["mixes"][0]["on_screen"][0]["to_ms"].as_f64().unwrap() / 1000.0;
    let frame = frame_at(&file, left - 1.0);
    let c = frame.cell(1, 1, 0, 0);
    assert!(
        c.iter().any(|v| *v > 40.0),
        "last frame kept, not black: {c:?}"
    );
}

#[test]
fn hls_mix_has_a_valid_playlist_covering_the_call() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&mix_config(
        &server.url(),
        rec.path(),
        PIPELINES,
        "\"mix-hls\"",
    ));
    let mut peer = TestPeer::spawn(
        &server.url(),
        &[
            "--duration",
            "7",
            "--width",
            "320",
            "--height",
            "180",
            "--meta",
            r#"{"call":"live"}"#,
        ],
    );
    peer.wait_event("done", Duration::from_secs(60));
    let dir = rec.path().join("live");
    let m = common::wait_complete(&dir);
    let call_secs = presence_secs(&m);
    let playlist = std::fs::read_to_string(dir.join("mix-hls.m3u8")).unwrap();
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
    assert!(
        playlist.contains("#EXT-X-ENDLIST"),
        "finalised playlist: {playlist}"
    );
    let mut total = 0.0;
    let mut segments = 0;
    for line in playlist.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            total += d
                .trim_end_matches(',')
                .split(',')
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap();
        } else if !line.starts_with('#') && !line.is_empty() {
            let seg = dir.join(line);
            let info = common::probe(&seg);
            assert!(
                info.streams.iter().any(|s| s.codec_name == "h264"),
                "{line}: {info:?}"
            );
            assert!(
                info.streams.iter().any(|s| s.codec_name == "aac"),
                "{line}: {info:?}"
            );
            segments += 1;
        }
    }
    assert!(segments >= 3, "{playlist}");
    assert!(
        (total - call_secs).abs() < 2.5,
        "segments cover {total:.2} s of a {call_secs:.2} s call"
    );
}

/// Distinct decoded frame sizes of the first video stream, in order of appearance.
fn frame_sizes(path: &std::path::Path) -> Vec<(u64, u64)> {
    let mut cmd = std::process::Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "frame=width,height",
        "-of",
        "csv=p=0",
    ])
    .arg(path);
    let out = common::run_with_timeout(cmd, Duration::from_secs(60));
    let mut sizes: Vec<(u64, u64)> = vec![];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // Side data of a frame comes out as extra (empty) csv lines.
        let mut it = line.split(',').map(|v| v.trim().parse::<u64>().ok());
        let (Some(Some(w)), Some(Some(h))) = (it.next(), it.next()) else {
            continue;
        };
        let size = (w, h);
        if sizes.last() != Some(&size) {
            sizes.push(size);
        }
    }
    sizes
}

#[test]
fn a_resolution_change_keeps_every_output_playable() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&mix_config(
        &server.url(),
        rec.path(),
        PIPELINES,
        "\"participant-mkv\", \"mix-webm\", \"mix-mp4\"",
    ));
    let spawn = |codec: &str, color: &str| {
        TestPeer::spawn(
            &server.url(),
            &[
                "--video",
                codec,
                "--color",
                color,
                "--width",
                "640",
                "--height",
                "360",
                "--resize-after",
                "3",
                "--resize-to",
                "1280x720",
                "--duration",
                "7",
                "--meta",
                r#"{"call":"resize"}"#,
            ],
        )
    };
    let mut peers = [spawn("vp8", "0xff0000"), spawn("h264", "0x00ff00")];
    for p in &mut peers {
        let resized = p.wait_event("resized", Duration::from_secs(30));
        assert_eq!(resized["width"], 1280, "{resized}");
    }
    let mut sent = std::collections::HashMap::new();
    for p in &mut peers {
        let done = p.wait_event("done", Duration::from_secs(60));
        sent.insert(
            done["peer_id"].as_str().unwrap().to_owned(),
            done["sent_secs"].as_f64().unwrap(),
        );
    }
    let dir = rec.path().join("resize");
    let m = common::wait_complete(&dir);
    let call_secs = presence_secs(&m);
    // Each participant's passthrough file carries both sizes and decodes cleanly.
    let videos: Vec<_> = m["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "video")
        .collect();
    assert_eq!(videos.len(), 2, "{m:#}");
    for track in videos {
        assert_eq!(track["status"], "complete", "{track:#}");
        let file = dir.join(track["file"].as_str().unwrap());
        let sizes = frame_sizes(&file);
        assert_eq!(
            sizes,
            vec![(640, 360), (1280, 720)],
            "{}: {} frame sizes",
            file.display(),
            track["codec"]
        );
        let report = common::decode_check(&file);
        assert!(
            report.errors.trim().is_empty() && report.video_frames > 150,
            "{}: {report:?}",
            file.display()
        );
        let info = common::probe(&file);
        let sent = sent[track["participant"].as_str().unwrap()];
        // The file starts at the first keyframe callrec asked for; with two 720p producers
        // and two live mixes on two cores, that can take a second or more (this test is about
        // the change of size; tests/recording.rs holds a light call's start to 0.5 s).
        assert!(
            (info.duration_s - sent).abs() < 1.5,
            "{}: {:.2} s recorded of {sent:.2} s sent",
            file.display(),
            info.duration_s
        );
    }
    // The mixes scale on: same canvas, both colours in their cells before and after.
    for mix in m["mixes"].as_array().unwrap() {
        assert_eq!(mix["status"], "complete", "{mix:#}");
        let file = dir.join(mix["files"][0].as_str().unwrap());
        assert_eq!(frame_sizes(&file), vec![(1280, 720)], "{}", mix["template"]);
        let report = common::decode_check(&file);
        assert!(report.errors.trim().is_empty(), "{report:?}");
        let info = common::probe(&file);
        assert!(
            (info.duration_s - call_secs).abs() < 1.5,
            "{}: {:.2} s vs call {call_secs:.2} s",
            mix["template"],
            info.duration_s
        );
        let last_join = mix["on_screen"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["from_ms"].as_f64().unwrap() / 1000.0)
            .fold(0.0, f64::max);
        for t in [last_join + 1.5, last_join + 5.0] {
            let frame = frame_at(&file, t);
            let cells = [frame.cell(2, 1, 0, 0), frame.cell(2, 1, 1, 0)];
            let red = cells.iter().any(|c| close(*c, [255.0, 0.0, 0.0]));
            let green = cells.iter().any(|c| close(*c, [0.0, 255.0, 0.0]));
            assert!(red && green, "{} at {t:.1} s: {cells:?}", mix["template"]);
        }
    }
}

#[test]
fn mixed_audio_and_video_stay_in_sync() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&mix_config(
        &server.url(),
        rec.path(),
        PIPELINES,
        "\"participant-mkv\", \"mix-webm\", \"mix-mp4\"",
    ));
    let mut peer = TestPeer::spawn(
        &server.url(),
        &[
            "--marker-interval",
            "1",
            "--width",
            "320",
            "--height",
            "180",
            "--duration",
            "9",
            "--meta",
            r#"{"call":"sync"}"#,
        ],
    );
    peer.wait_event("done", Duration::from_secs(60));
    let dir = rec.path().join("sync");
    let m = common::wait_complete(&dir);
    let mut files: Vec<(String, std::path::PathBuf)> = m["mixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|mix| {
            (
                mix["template"].as_str().unwrap().to_owned(),
                dir.join(mix["files"][0].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(files.len(), 2, "{m:#}");
    let participant_file = m["tracks"][0]["file"].as_str().unwrap();
    files.push(("participant-mkv".into(), dir.join(participant_file)));
    for (what, file) in files {
        let end = analysis::duration_s(&file) + 1.0;
        let flashes = analysis::flash_times(&file, 0.0, end);
        let beeps = analysis::beep_times(&file, 0.0, end, 1000.0);
        let pairs: Vec<f64> = flashes
            .iter()
            .filter_map(|f| {
                beeps
                    .iter()
                    .map(|b| b - f)
                    .min_by(|a, b| a.abs().total_cmp(&b.abs()))
            })
            .filter(|d| d.abs() < 0.5)
            .collect();
        assert!(
            pairs.len() >= 5,
            "{what}: too few flash/beep pairs: flashes {flashes:?}, beeps {beeps:?}"
        );
        let worst = pairs.iter().copied().fold(0.0, |w: f64, d| w.max(d.abs()));
        eprintln!(
            "{what}: {} pairs, audio minus video {pairs:.3?}",
            pairs.len()
        );
        assert!(
            worst < 0.080,
            "{what}: audio and video drift apart by up to {:.0} ms: {pairs:.3?}",
            worst * 1000.0
        );
    }
}

#[test]
fn mixes_are_finalised_when_the_daemon_stops() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&mix_config(
        &server.url(),
        rec.path(),
        PIPELINES,
        "\"mix-webm\", \"mix-mp4\"",
    ));
    let mut peer = TestPeer::spawn(
        &server.url(),
        &[
            "--keep-alive",
            "--width",
            "320",
            "--height",
            "180",
            "--meta",
            r#"{"call":"stop"}"#,
        ],
    );
    peer.wait_event("connected", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(4));
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}\n{}", daemon.log());
    let dir = rec.path().join("stop");
    let m = common::read_manifest(&dir);
    assert_eq!(m["status"], "complete", "{m:#}");
    let call_secs = presence_secs(&m);
    for mix in m["mixes"].as_array().unwrap() {
        assert_eq!(mix["status"], "complete", "{mix:#}");
        let file = dir.join(mix["files"][0].as_str().unwrap());
        let info = common::probe(&file);
        assert!(
            (info.duration_s - call_secs).abs() < 1.5,
            "{}: {:.2} s vs call {call_secs:.2} s",
            mix["template"],
            info.duration_s
        );
        let report = common::decode_check(&file);
        // Frames dropped on a machine that cannot keep up are counted in the manifest.
        let dropped = mix["dropped_frames"].as_u64().unwrap_or(0);
        assert!(
            report.errors.trim().is_empty()
                && report.video_frames > 0
                && report.video_frames + dropped > 90,
            "{}: {report:?}, {dropped} dropped",
            mix["template"]
        );
    }
}

/// A mix ends with its call: when the last participant leaves and nobody comes back, every
/// mix stops writing within a second instead of showing an empty canvas through the linger.
#[test]
fn mixes_end_within_a_second_of_the_last_participant_leaving() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let config = mix_config(
        &server.url(),
        rec.path(),
        PIPELINES,
        "\"mix-webm\", \"mix-mp4\", \"mix-audio\", \"mix-hls\"",
    )
    .replace("linger_secs = 1", "linger_secs = 5");
    let _daemon = Daemon::start(&config);
    let mut peers: Vec<TestPeer> = ["4", "6"]
        .iter()
        .map(|secs| {
            TestPeer::spawn(
                &server.url(),
                &[
                    "--duration",
                    secs,
                    "--width",
                    "320",
                    "--height",
                    "180",
                    "--meta",
                    r#"{"call":"ends"}"#,
                ],
            )
        })
        .collect();
    for p in &mut peers {
        p.wait_event("done", Duration::from_secs(60));
    }
    let dir = rec.path().join("ends");
    let m = common::wait_complete(&dir);
    let left = presence_secs(&m);
    let call = common::rfc3339_secs(&m["ended_at"]) - common::rfc3339_secs(&m["started_at"]);
    assert!(
        call > left + 4.0,
        "the call lingered: {call:.2} s, left at {left:.2} s"
    );
    let mixes = m["mixes"].as_array().unwrap();
    assert_eq!(mixes.len(), 4, "{m:#}");
    for mix in mixes {
        assert_eq!(mix["status"], "complete", "{m:#}");
        let (_, secs) = mix_file_secs(&dir, mix);
        assert!(
            secs <= left + 1.0 && secs >= left - 1.5,
            "{}: {secs:.2} s; the last participant left at {left:.2} s, the call ended at {call:.2} s",
            mix["template"]
        );
        assert!(mix.get("gaps").is_none(), "nobody came back: {mix:#}");
    }
}

/// Someone who comes back within the linger continues the same mix: one file, the empty
/// stretch cut out (listed in `gaps`), the first participant before it and the second after.
#[test]
fn a_mix_goes_on_when_someone_returns_within_the_linger() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let config = mix_config(
        &server.url(),
        rec.path(),
        PIPELINES,
        "\"mix-webm\", \"mix-hls\"",
    )
    .replace("linger_secs = 1", "linger_secs = 5");
    let _daemon = Daemon::start(&config);
    let peer = |colour: &str| {
        TestPeer::spawn(
            &server.url(),
            &[
                "--duration",
                "3",
                "--color",
                colour,
                "--width",
                "320",
                "--height",
                "180",
                "--meta",
                r#"{"call":"back"}"#,
            ],
        )
    };
    let mut red = peer("0xff0000");
    red.wait_event("done", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let mut blue = peer("0x0000ff");
    blue.wait_event("done", Duration::from_secs(60));
    let dir = rec.path().join("back");
    let m = common::wait_complete(&dir);
    assert_eq!(m["participants"].as_array().unwrap().len(), 2, "{m:#}");
    let left = presence_secs(&m);
    for mix in m["mixes"].as_array().unwrap() {
        assert_eq!(mix["status"], "complete", "{m:#}");
        let gaps = mix["gaps"].as_array().expect("the empty stretch is listed");
        assert_eq!(gaps.len(), 1, "{mix:#}");
        let gap =
            (gaps[0]["to_ms"].as_f64().unwrap() - gaps[0]["from_ms"].as_f64().unwrap()) / 1000.0;
        assert!(gap > 1.0, "{mix:#}");
        let (file, secs) = mix_file_secs(&dir, mix);
        let expected = left - gap;
        assert!(
            (secs - expected).abs() < 1.2,
            "{}: {secs:.2} s, expected {expected:.2} s (present until {left:.2} s, gap {gap:.2} s)",
            mix["template"]
        );
        if mix["template"] == "mix-webm" {
            // Continuous: the file decodes without errors across the cut.
            let report = common::decode_check(&file);
            assert!(report.errors.trim().is_empty(), "{report:?}");
            // Red's first second on screen (how soon that is depends on the machine).
            let red_from = mix["on_screen"][0]["from_ms"].as_f64().unwrap() / 1000.0;
            let early = frame_at(&file, red_from + 1.0).cell(1, 1, 0, 0);
            let late = frame_at(&file, secs - 0.8).cell(1, 1, 0, 0);
            assert!(
                close(early, [255.0, 0.0, 0.0]),
                "red before the gap: {early:?}"
            );
            assert!(close(late, [0.0, 0.0, 255.0]), "blue after it: {late:?}");
        }
    }
}
