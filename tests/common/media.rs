//! What ffprobe and ffmpeg say about a recorded file: its streams and duration, whether it
//! starts on a keyframe, and whether every frame decodes. (Looking *inside* the pictures and
//! the sound is [`super::analysis`].)

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::processes::{run_ok, run_with_timeout};

/// `ffprobe -v error -of json ARGS PATH`, which must succeed, parsed.
pub(super) fn ffprobe_json(path: &Path, args: &[&str], timeout: Duration) -> Value {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(path);
    let out = run_ok(cmd, timeout);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ffprobe {args:?} {}: bad JSON ({e}): {}",
            path.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// ffprobe prints numbers as strings (`"1.234000"`); missing or `N/A` gives `None`.
pub(super) fn num(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// One stream as ffprobe sees it.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// `audio` or `video`.
    pub codec_type: String,
    /// `vp8`, `h264`, `opus`...
    pub codec_name: String,
    /// Video width.
    pub width: Option<u64>,
    /// Video height.
    pub height: Option<u64>,
}

/// A media file as ffprobe sees it.
#[derive(Debug, Clone)]
pub struct MediaInfo {
    /// Container.
    pub format_name: String,
    /// Seconds.
    pub duration_s: f64,
    /// Streams.
    pub streams: Vec<StreamInfo>,
}

/// Probes a file with ffprobe.
pub fn probe(path: &Path) -> MediaInfo {
    let v = ffprobe_json(
        path,
        &["-show_format", "-show_streams"],
        Duration::from_secs(30),
    );
    let streams: Vec<StreamInfo> = v["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| StreamInfo {
            codec_type: s["codec_type"].as_str().unwrap_or_default().to_owned(),
            codec_name: s["codec_name"].as_str().unwrap_or_default().to_owned(),
            width: s["width"].as_u64(),
            height: s["height"].as_u64(),
        })
        .collect();
    let duration_s = num(&v["format"]["duration"])
        .or_else(|| {
            v["streams"]
                .as_array()?
                .iter()
                .filter_map(|s| num(&s["duration"]))
                .reduce(f64::max)
        })
        .unwrap_or(0.0);
    MediaInfo {
        format_name: v["format"]["format_name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        duration_s,
        streams,
    }
}

/// True if the first video packet is flagged as a keyframe.
pub fn first_video_frame_is_keyframe(path: &Path) -> bool {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=flags",
        "-read_intervals",
        "%+#1",
        "-of",
        "json",
    ])
    .arg(path);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["packets"][0]["flags"]
        .as_str()
        .is_some_and(|f| f.starts_with('K'))
}

/// What decoding a whole file gave.
#[derive(Debug, Clone)]
pub struct DecodeReport {
    /// Decoded video frames.
    pub video_frames: u64,
    /// Decoded audio frames.
    pub audio_frames: u64,
    /// ffmpeg's error output.
    pub errors: String,
}

/// Decodes the first video and audio streams in full, counting frames and collecting errors.
pub fn decode_check(path: &Path) -> DecodeReport {
    // ffprobe decodes every frame of the stream with -count_frames and reports decoder errors
    // at -v error. (`ffmpeg -f null` would also complain about its own output muxer's
    // timestamp rounding, which says nothing about the file.)
    let count = |sel: &str| -> (u64, String) {
        let mut cmd = Command::new("ffprobe");
        cmd.args([
            "-v",
            "error",
            "-select_streams",
            sel,
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "json",
        ])
        .arg(path);
        let out = run_with_timeout(cmd, Duration::from_secs(60));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let frames = v["streams"][0]["nb_read_frames"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (frames, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (video_frames, video_errors) = count("v:0");
    let (audio_frames, audio_errors) = count("a:0");
    DecodeReport {
        video_frames,
        audio_frames,
        errors: video_errors + &audio_errors,
    }
}

/// What a recording should be.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// Video codec, or no video stream.
    pub video_codec: Option<&'a str>,
    /// Audio codec, or no audio stream.
    pub audio_codec: Option<&'a str>,
    /// Expected duration.
    pub duration_s: f64,
    /// Allowed difference.
    pub tolerance_s: f64,
}

/// Checks codecs, duration, the first video frame being a keyframe, and that frames decode;
/// returns what decoding gave, for checks of the frame count.
pub fn assert_playable(path: &Path, expect: &Expect) -> DecodeReport {
    let info = probe(path);
    let codec = |kind: &str| {
        info.streams
            .iter()
            .find(|s| s.codec_type == kind)
            .map(|s| s.codec_name.clone())
    };
    assert_eq!(
        codec("video").as_deref(),
        expect.video_codec,
        "{}: {info:?}",
        path.display()
    );
    assert_eq!(
        codec("audio").as_deref(),
        expect.audio_codec,
        "{}: {info:?}",
        path.display()
    );
    assert!(
        (info.duration_s - expect.duration_s).abs() <= expect.tolerance_s,
        "{}: duration {:.3} s, expected {:.3} ± {} s: {info:?}",
        path.display(),
        info.duration_s,
        expect.duration_s,
        expect.tolerance_s
    );
    let report = decode_check(path);
    if expect.video_codec.is_some() {
        assert!(
            first_video_frame_is_keyframe(path),
            "{}: first video frame is not a keyframe",
            path.display()
        );
        assert!(
            report.video_frames > 0,
            "{}: no video frame decodes: {report:?}",
            path.display()
        );
    }
    if expect.audio_codec.is_some() {
        assert!(
            report.audio_frames > 0,
            "{}: no audio frame decodes: {report:?}",
            path.display()
        );
    }
    assert!(
        report.errors.trim().is_empty(),
        "{}: decoding errors: {}",
        path.display(),
        report.errors
    );
    report
}

/// The end of the last packet ffprobe can read from a (possibly growing) file, in seconds of
/// its timeline.
pub fn last_packet_end(path: &Path) -> f64 {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-show_entries",
        "packet=pts_time,duration_time",
        "-of",
        "csv=p=0",
    ])
    .arg(path);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            let pts = f.next()?.parse::<f64>().ok()?;
            let dur = f.next().and_then(|d| d.parse::<f64>().ok()).unwrap_or(0.0);
            Some(pts + dur)
        })
        .fold(0.0, f64::max)
}
