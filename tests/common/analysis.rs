//! Decoding-based checks of recorded media: what colour is where in a frame, which sine tones
//! are audible, when a flash or a beep starts (for A/V sync), and how many frames there are.
//!
//! Everything decodes the file for real with ffmpeg/ffprobe; every command runs with a time
//! limit and is killed if it runs over.
//!
//! # Timeline
//!
//! All times, arguments and results alike, are presentation timestamps in seconds as stored in
//! the file (what `ffprobe -show_frames` prints as `pts_time`), for audio and video alike, so
//! a flash and a beep that were simultaneous at capture come out with the same time if the
//! file is in sync. For a recording whose first packet is at 0 that is simply the playing
//! time. (`ffmpeg -ss` counts from the container's start time instead; the helpers convert.)
//! Audio before its stream starts or in gaps is silence; video simply has no frames there.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::media::{ffprobe_json, num};
use super::processes::{run_ok, tail_bytes};

/// Sample rate of everything [`audio_mono`] returns and the analysis functions assume.
pub const SAMPLE_RATE: u32 = 48_000;

/// Quietest tone [`dominant_tones`] reports: power 1e-6 is an amplitude of 0.001 (-60 dBFS).
pub const TONE_FLOOR: f64 = 1e-6;

/// Quietest beep [`beep_times`] looks for: power 1e-4 is an amplitude of 0.01 (-40 dBFS).
pub const BEEP_FLOOR: f64 = 1e-4;

/// Length of a [`beep_times`] analysis window (5 ms).
pub const BEEP_WINDOW_S: f64 = 0.005;

/// How much decoding starts before the asked-for range, so that an event right at its start
/// is seen together with what preceded it (and a codec has time to settle after the seek).
const LEAD_IN_S: f64 = 0.25;

const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
const DECODE_TIMEOUT: Duration = Duration::from_secs(120);

/// Seconds as an ffmpeg `-ss`/`-t` argument (never negative).
fn secs(t: f64) -> String {
    format!("{:.6}", t.max(0.0))
}

/// The container's start time (ffprobe's `format.start_time`: the earliest stream start).
pub fn start_time_s(path: &Path) -> f64 {
    let v = ffprobe_json(path, &["-show_entries", "format=start_time"], PROBE_TIMEOUT);
    num(&v["format"]["start_time"]).unwrap_or(0.0)
}

/// Where to seek for decoding from presentation time `t_s`.
struct Seek {
    /// The `-ss` value to give ffmpeg before `-i` (which counts from the container start).
    ss: String,
    /// The presentation time that ffmpeg's output timestamp 0 then stands for (ffmpeg shifts
    /// timestamps by the seek point unless told `-copyts`).
    base: f64,
    /// Where the file ends (container start + duration).
    end: f64,
}

fn seek_point(path: &Path, t_s: f64) -> Seek {
    let v = ffprobe_json(
        path,
        &["-show_entries", "format=start_time,duration"],
        PROBE_TIMEOUT,
    );
    let start = num(&v["format"]["start_time"]).unwrap_or(0.0);
    let duration = num(&v["format"]["duration"]).unwrap_or(f64::INFINITY);
    let ss = (t_s - start).max(0.0);
    Seek {
        ss: format!("{ss:.6}"),
        base: start + ss,
        end: start + duration,
    }
}

// ---------------------------------------------------------------------------------------------
// Video frames and colours

/// One decoded video frame, packed RGB (3 bytes a pixel, rows top to bottom).
#[derive(Clone)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame {}x{}", self.width, self.height)
    }
}

/// Pixel bounds `[x0, x1) x [y0, y1)` of a rectangle given in fractions of a `w` x `h` image,
/// shrunk to its middle `keep` fraction in each direction; never empty.
fn pixel_rect(
    w: u32,
    h: u32,
    (x0, y0, x1, y1): (f64, f64, f64, f64),
    keep: f64,
) -> (usize, usize, usize, usize) {
    let axis = |a: f64, b: f64, n: u32| {
        let (a, b) = (a.clamp(0.0, 1.0), b.clamp(0.0, 1.0));
        let (a, b) = (a.min(b), a.max(b));
        let margin = (b - a) * (1.0 - keep) / 2.0;
        let n = n as f64;
        let lo = ((a + margin) * n).floor();
        let hi = ((b - margin) * n).ceil();
        let lo = lo.clamp(0.0, (n - 1.0).max(0.0)) as usize;
        let hi = (hi as usize).clamp(lo + 1, (n as usize).max(lo + 1));
        (lo, hi)
    };
    let (px0, px1) = axis(x0, x1, w);
    let (py0, py1) = axis(y0, y1, h);
    (px0, py0, px1, py1)
}

impl Frame {
    /// Mean `[r, g, b]` (0..255) over the rectangle from `(x0, y0)` to `(x1, y1)`, in fractions
    /// of the frame (0..1). Only the middle 60% of the rectangle (in each direction) is sampled,
    /// so tile borders, scaling blur and letterbox bars don't count.
    pub fn mean_rgb(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> [f64; 3] {
        let (px0, py0, px1, py1) = pixel_rect(self.width, self.height, (x0, y0, x1, y1), 0.6);
        let stride = self.width as usize * 3;
        let mut sum = [0f64; 3];
        for y in py0..py1 {
            let row = &self.rgb[y * stride..(y + 1) * stride];
            for px in row[px0 * 3..px1 * 3].chunks_exact(3) {
                for (s, &c) in sum.iter_mut().zip(px) {
                    *s += c as f64;
                }
            }
        }
        let n = ((px1 - px0) * (py1 - py0)) as f64;
        sum.map(|s| s / n)
    }

    /// Mean colour of cell (`col`, `row`) of an even `cols` x `rows` grid over the whole frame,
    /// counted from the top left (see [`Frame::mean_rgb`] for what is sampled).
    pub fn cell_rgb(&self, cols: u32, rows: u32, col: u32, row: u32) -> [f64; 3] {
        assert!(
            col < cols && row < rows,
            "cell ({col}, {row}) outside a {cols}x{rows} grid"
        );
        let (cw, ch) = (1.0 / cols as f64, 1.0 / rows as f64);
        self.mean_rgb(
            col as f64 * cw,
            row as f64 * ch,
            (col + 1) as f64 * cw,
            (row + 1) as f64 * ch,
        )
    }
}

/// Decodes the first video frame at or after `t_s` (see the module docs for the timeline).
///
/// The frame comes out of ffmpeg as a PPM picture, whose header gives the size of the frame
/// actually decoded there (which is what matters if the stream ever changes resolution).
pub fn frame_rgb(path: &Path, t_s: f64) -> Frame {
    let seek = seek_point(path, t_s);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-ss", &seek.ss, "-i"])
        .arg(path)
        .args([
            "-map",
            "0:v:0",
            "-frames:v",
            "1",
            "-f",
            "image2pipe",
            "-c:v",
            "ppm",
            "-",
        ]);
    let out = run_ok(cmd, DECODE_TIMEOUT);
    parse_ppm(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no frame at {t_s:.3} s in {}: {e}; ffmpeg said:\n{}",
            path.display(),
            tail_bytes(&out.stderr, 2000)
        )
    })
}

/// Parses a binary PPM (`P6`, maxval 255), as ffmpeg's ppm encoder writes it.
fn parse_ppm(data: &[u8]) -> Result<Frame, String> {
    let mut fields = vec![];
    let mut i = 0;
    while fields.len() < 4 {
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < data.len() && data[i] == b'#' {
            while i < data.len() && data[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < data.len() && !data[i].is_ascii_whitespace() {
            i += 1;
        }
        if start == i {
            return Err(format!("truncated PPM header ({} bytes)", data.len()));
        }
        fields.push(String::from_utf8_lossy(&data[start..i]).into_owned());
    }
    i += 1; // the single whitespace byte after maxval
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(format!("unexpected PPM header {fields:?}"));
    }
    let width: u32 = fields[1].parse().map_err(|e| format!("PPM width: {e}"))?;
    let height: u32 = fields[2].parse().map_err(|e| format!("PPM height: {e}"))?;
    let len = width as usize * height as usize * 3;
    let rgb = data
        .get(i..i + len)
        .ok_or_else(|| format!("PPM {width}x{height} has only {} bytes", data.len()))?
        .to_vec();
    Ok(Frame { width, height, rgb })
}

/// Whether two colours differ by at most `tol` (0..255) in every channel.
pub fn color_close(a: [f64; 3], b: [f64; 3], tol: f64) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

/// `0xRRGGBB` as `[r, g, b]` (0..255); any alpha byte above is ignored, so GStreamer's
/// `0xAARRGGBB` colours work too.
pub fn rgb_hex(c: u32) -> [f64; 3] {
    [(c >> 16) & 0xff, (c >> 8) & 0xff, c & 0xff].map(|v| v as f64)
}

// ---------------------------------------------------------------------------------------------
// Audio

/// `dur_s` seconds of the file's first audio stream from `start_s`, decoded, downmixed to mono
/// and resampled to 48 kHz: sample `i` is at time `start_s + i / 48000` on the file's timeline.
/// Where there is no audio (before the file or the audio stream starts, in gaps longer than
/// 10 ms, after the audio ends) the samples are silence; the result is shorter than asked only
/// past the end of the file (its format duration).
pub fn audio_mono(path: &Path, start_s: f64, dur_s: f64) -> Vec<f32> {
    let rate = SAMPLE_RATE as f64;
    // `-ss` before `-i` seeks precisely and makes `base` timestamp 0; `first_pts=0` then has
    // aresample pad or trim so that the first sample is exactly there, and `async=1` with a
    // 10 ms hard limit fills gaps and drops overlaps, so that sample positions are times.
    let Seek { ss, base, end } = seek_point(path, start_s);
    let want = (dur_s.max(0.0) * rate).round() as usize;
    // Asked for time before the file starts: silence.
    let mut samples = vec![0f32; (((base - start_s) * rate).round() as usize).min(want)];
    let dur = start_s + dur_s - base;
    if dur > 0.0 {
        let mut cmd = Command::new("ffmpeg");
        cmd.args([
            "-nostdin",
            "-v",
            "error",
            "-ss",
            &ss,
            "-t",
            &secs(dur),
            "-i",
        ])
        .arg(path)
        .args([
            "-map",
            "0:a:0",
            "-af",
            "aresample=48000:async=1:min_hard_comp=0.01:first_pts=0",
            "-ac",
            "1",
            "-ar",
            "48000",
            "-f",
            "f32le",
            "-",
        ]);
        let out = run_ok(cmd, DECODE_TIMEOUT);
        samples.extend(
            out.stdout
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    // No audio up to where the file ends (a late audio stream, or none): silence too.
    let until_end = ((end - start_s) * rate).round().max(0.0) as usize;
    if samples.len() < want.min(until_end) {
        samples.resize(want.min(until_end), 0.0);
    }
    samples.truncate(want);
    samples
}

/// Power of the `freq_hz` component of 48 kHz `samples` (Hann-windowed Goertzel), as a squared
/// amplitude: a sine of amplitude A at that frequency gives about A² (full scale: 1.0; -20 dBFS:
/// 0.01), silence 0. The Hann window keeps other tones more than a few bins away (a few
/// hundred Hz for a 5 ms window, a few Hz for a second) from leaking in.
pub fn tone_power(samples: &[f32], freq_hz: f64) -> f64 {
    let n = samples.len();
    if n < 2 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq_hz / SAMPLE_RATE as f64;
    let coeff = 2.0 * w.cos();
    let step = 2.0 * std::f64::consts::PI / (n - 1) as f64;
    let (mut s1, mut s2, mut wsum) = (0f64, 0f64, 0f64);
    for (i, &x) in samples.iter().enumerate() {
        let win = 0.5 - 0.5 * (step * i as f64).cos();
        wsum += win;
        let s0 = x as f64 * win + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let mag2 = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    // |X| = A/2 * sum(window) for a sine of amplitude A.
    4.0 * mag2 / (wsum * wsum)
}

/// Which of the `candidates` (Hz) are audible in `samples`: those whose [`tone_power`] is at
/// least `min_ratio` times the strongest candidate's and at least [`TONE_FLOOR`]. Returned in
/// the order given; empty for silence.
pub fn dominant_tones(samples: &[f32], candidates: &[f64], min_ratio: f64) -> Vec<f64> {
    let powers: Vec<f64> = candidates.iter().map(|&f| tone_power(samples, f)).collect();
    let strongest = powers.iter().cloned().fold(0.0, f64::max);
    let threshold = (strongest * min_ratio).max(TONE_FLOOR);
    candidates
        .iter()
        .zip(&powers)
        .filter(|(_, &p)| p >= threshold)
        .map(|(&f, _)| f)
        .collect()
}

/// Share of a window's energy below which a tone does not count as there (see
/// [`tone_envelope`]).
const MIN_TONE_SHARE: f64 = 0.05;

/// Length of the window that confirms a beep just after its onset (see [`beep_onsets`]).
const CONFIRM_S: f64 = 0.010;

/// [`tone_power`], or 0 where the tone is less than 5% of the window's energy.
fn tone_power_gated(w: &[f32], freq_hz: f64) -> f64 {
    let p = tone_power(w, freq_hz);
    // A sine of amplitude A: power A², mean square A²/2.
    let mean_square = w.iter().map(|&x| x as f64 * x as f64).sum::<f64>() / w.len().max(1) as f64;
    if mean_square > 0.0 && p / (2.0 * mean_square) >= MIN_TONE_SHARE {
        p
    } else {
        0.0
    }
}

/// [`tone_power`] at `freq_hz` over 5 ms windows every 1 ms: `(window centre time, power)`,
/// with `samples[0]` at time `t0_s`. A window where the tone is less than 5% of the energy
/// counts as 0, so that a loud sound elsewhere in the spectrum does not pass for the tone.
pub fn tone_envelope(samples: &[f32], t0_s: f64, freq_hz: f64) -> Vec<(f64, f64)> {
    let rate = SAMPLE_RATE as f64;
    let win = (BEEP_WINDOW_S * rate).round() as usize;
    let hop = (0.001 * rate).round() as usize;
    if samples.len() < win {
        return vec![];
    }
    (0..=(samples.len() - win) / hop)
        .map(|k| {
            let i = k * hop;
            let t = t0_s + (i as f64 + win as f64 / 2.0) / rate;
            (t, tone_power_gated(&samples[i..i + win], freq_hz))
        })
        .collect()
}

/// Start times of beeps at `freq_hz` in 48 kHz `samples` (`samples[0]` at time `t0_s`).
///
/// On the [`tone_envelope`] (5 ms windows, 1 ms steps), an onset is where the amplitude
/// crosses half the loudest seen (a quarter of its power, and at least [`BEEP_FLOOR`]) after
/// at least 20 ms below a quarter of it; the crossing is interpolated between windows. As a
/// window's centre crosses half amplitude when the beep covers half of it, that is the beep's
/// start to within about a millisecond. A 5 ms window cannot tell apart frequencies a few
/// hundred Hz apart, and the click where a sound starts or stops is broadband, so each onset is
/// confirmed on the next 10 ms (resolving ±200 Hz): the tone must still be there at that
/// level. Beeps therefore need to last 15 ms or more. A beep already sounding where
/// `samples` start has no visible onset and is not reported.
pub fn beep_onsets(samples: &[f32], t0_s: f64, freq_hz: f64) -> Vec<f64> {
    let rate = SAMPLE_RATE as f64;
    let env = tone_envelope(samples, t0_s, freq_hz);
    let loudest = env.iter().map(|e| e.1).fold(0.0, f64::max);
    let high = (loudest / 4.0).max(BEEP_FLOOR);
    let low = high / 4.0;
    let quiet_needed = 0.020 - 1e-9;
    let confirm_len = (CONFIRM_S * rate).round() as usize;
    let mut quiet_since: Option<f64> = None;
    let mut armed = false;
    let mut found = vec![];
    for (k, &(t, p)) in env.iter().enumerate() {
        if p < low {
            let since = *quiet_since.get_or_insert(t);
            armed |= t - since >= quiet_needed;
            continue;
        }
        quiet_since = None;
        if !(armed && p >= high) {
            continue;
        }
        armed = false;
        // Interpolate the half-amplitude crossing from the window before (which was lower).
        let (tp, pp) = env[k.saturating_sub(1)];
        let (a0, a1, ah) = (pp.sqrt(), p.sqrt(), high.sqrt());
        let onset = if k > 0 && a1 > a0 {
            tp + (t - tp) * ((ah - a0) / (a1 - a0)).clamp(0.0, 1.0)
        } else {
            t
        };
        // Confirm on the 10 ms from 2.5 ms after the onset (past the click).
        let i0 = ((onset - t0_s + 0.0025) * rate).round().max(0.0) as usize;
        let confirmed = samples
            .get(i0..i0 + confirm_len)
            .is_some_and(|w| tone_power_gated(w, freq_hz) >= high);
        if confirmed {
            found.push(onset);
        }
    }
    found
}

/// Start times of beeps at `freq_hz` (e.g. 1 kHz bursts of 50 ms or so) between `start_s` and
/// `end_s`, on the file's timeline; see [`beep_onsets`] for the detection. Steady tones at
/// other frequencies (a few hundred Hz away) do not disturb it.
pub fn beep_times(path: &Path, start_s: f64, end_s: f64, freq_hz: f64) -> Vec<f64> {
    let from = start_s - LEAD_IN_S;
    // A little past the end, to confirm a beep starting right before it.
    let samples = audio_mono(path, from, end_s + 0.02 - from);
    beep_onsets(&samples, from, freq_hz)
        .into_iter()
        .filter(|t| (start_s..end_s).contains(t))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Flashes (video side of A/V sync)

/// Size the frames are scaled to for [`flash_times`]; regions are fractions of it.
const LUMA_W: u32 = 128;
const LUMA_H: u32 = 72;

/// Times of the decoded video frames between `start_s` and `end_s`, each with the mean luma
/// (0..255) of `region` (`(x0, y0, x1, y1)` in fractions of the frame, used as given; `None`
/// is the whole frame).
pub fn luma_series(
    path: &Path,
    start_s: f64,
    end_s: f64,
    region: Option<(f64, f64, f64, f64)>,
) -> Vec<(f64, f64)> {
    let Seek { ss, base, .. } = seek_point(path, start_s);
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-v",
        "info",
        "-ss",
        &ss,
        "-t",
        &secs(end_s - base),
        "-i",
    ])
    .arg(path)
    .args([
        "-map",
        "0:v:0",
        "-vf",
        &format!("scale={LUMA_W}:{LUMA_H},showinfo"),
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "gray",
        "-",
    ]);
    let out = run_ok(cmd, DECODE_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `[Parsed_showinfo_1 @ 0x..] n:   0 pts:  0 pts_time:0  duration: ...`; timestamps are
    // relative to the seek point (`-ss` without `-copyts`), so add it back.
    let times: Vec<f64> = stderr
        .lines()
        .filter(|l| l.contains("Parsed_showinfo") && l.contains(" n:"))
        .filter_map(|l| {
            let rest = &l[l.find("pts_time:")? + "pts_time:".len()..];
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .map(|t| t + base)
        .collect();
    let size = (LUMA_W * LUMA_H) as usize;
    assert_eq!(
        out.stdout.len(),
        times.len() * size,
        "{}: {} frame timestamps but {} bytes of {LUMA_W}x{LUMA_H} frames; ffmpeg said:\n{}",
        path.display(),
        times.len(),
        out.stdout.len(),
        tail_bytes(&out.stderr, 3000)
    );
    let (px0, py0, px1, py1) =
        pixel_rect(LUMA_W, LUMA_H, region.unwrap_or((0.0, 0.0, 1.0, 1.0)), 1.0);
    let n = ((px1 - px0) * (py1 - py0)) as f64;
    times
        .into_iter()
        .zip(out.stdout.chunks_exact(size))
        .map(|(t, frame)| {
            let mut sum = 0u64;
            for y in py0..py1 {
                let row = &frame[y * LUMA_W as usize..(y + 1) * LUMA_W as usize];
                sum += row[px0..px1].iter().map(|&v| v as u64).sum::<u64>();
            }
            (t, sum as f64 / n)
        })
        .collect()
}

/// Times of dark-to-bright jumps in a `(time, luma)` series: the first frame brighter than
/// halfway between the darkest and brightest frames seen, after at least one frame in the
/// darkest quarter of that range. Needs a contrast of at least 48 (of 255) to find anything. A
/// flash already showing where the series starts is not reported.
pub fn brightening_times(series: &[(f64, f64)]) -> Vec<f64> {
    let lo = series.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    let hi = series.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
    if series.is_empty() || hi - lo < 48.0 {
        return vec![];
    }
    let dark = lo + (hi - lo) / 4.0;
    let mid = lo + (hi - lo) / 2.0;
    let mut armed = false;
    let mut found = vec![];
    for &(t, y) in series {
        if y <= dark {
            armed = true;
        } else if armed && y > mid {
            found.push(t);
            armed = false;
        }
    }
    found
}

/// Presentation times of frames between `start_s` and `end_s` where the whole frame goes from
/// dark to bright (see [`brightening_times`]).
pub fn flash_times(path: &Path, start_s: f64, end_s: f64) -> Vec<f64> {
    flash_times_in(path, start_s, end_s, (0.0, 0.0, 1.0, 1.0))
}

/// [`flash_times`] watching only `region` (`(x0, y0, x1, y1)` in fractions of the frame), e.g.
/// one participant's tile.
pub fn flash_times_in(
    path: &Path,
    start_s: f64,
    end_s: f64,
    region: (f64, f64, f64, f64),
) -> Vec<f64> {
    let series = luma_series(path, start_s - LEAD_IN_S, end_s, Some(region));
    brightening_times(&series)
        .into_iter()
        .filter(|t| (start_s..end_s).contains(t))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Frame counts and durations

/// Presentation times of every decoded frame of the first video stream, in decoding output
/// order, on the file's timeline (module docs).
pub fn video_frame_times(path: &Path) -> Vec<f64> {
    let v = ffprobe_json(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=best_effort_timestamp_time,pts_time",
        ],
        DECODE_TIMEOUT,
    );
    v["frames"]
        .as_array()
        .map(|frames| {
            frames
                .iter()
                .filter_map(|f| {
                    num(&f["pts_time"]).or_else(|| num(&f["best_effort_timestamp_time"]))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Number of decoded video frames and their mean rate: frames after the first over the time
/// from the first frame to the last (0 if there are fewer than two frames).
pub fn video_frame_count_and_fps(path: &Path) -> (u64, f64) {
    let mut times = video_frame_times(path);
    times.sort_by(f64::total_cmp);
    let fps = match (times.first(), times.last()) {
        (Some(first), Some(last)) if last > first => (times.len() - 1) as f64 / (last - first),
        _ => 0.0,
    };
    (times.len() as u64, fps)
}

/// The longest time between consecutive video frames (0 with fewer than two frames): a mix
/// that kept running at full rate has no gap much longer than one frame interval.
pub fn max_frame_gap_s(path: &Path) -> f64 {
    let mut times = video_frame_times(path);
    times.sort_by(f64::total_cmp);
    times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

/// The container's duration in seconds (ffprobe's `format.duration`).
pub fn duration_s(path: &Path) -> f64 {
    let v = ffprobe_json(path, &["-show_entries", "format=duration"], PROBE_TIMEOUT);
    num(&v["format"]["duration"])
        .unwrap_or_else(|| panic!("{}: no duration in {v}", path.display()))
}

/// The largest step between two consecutive samples of 48 kHz mono `samples` (which start
/// at `t0_s`) and where it is: a cut in a tone (a click) is a step far larger than the tones
/// can make between two samples.
pub fn max_step(samples: &[f32], t0_s: f64) -> (f32, f64) {
    samples
        .windows(2)
        .enumerate()
        .map(|(i, w)| ((w[1] - w[0]).abs(), t0_s + i as f64 / 48_000.0))
        .fold((0.0f32, t0_s), |a, b| if b.0 > a.0 { b } else { a })
}

/// The first 20 ms window of 48 kHz mono `samples` (which start at `t0_s`), at or after
/// `from_s` and ending by `to_s`, whose RMS is below `floor`: a dropout while someone talks.
pub fn first_dropout(
    samples: &[f32],
    t0_s: f64,
    (from_s, to_s): (f64, f64),
    floor: f32,
) -> Option<(f64, f32)> {
    samples.chunks_exact(960).enumerate().find_map(|(i, w)| {
        let t = t0_s + i as f64 * 0.02;
        if t < from_s || t + 0.02 > to_s {
            return None;
        }
        let rms = (w.iter().map(|x| x * x).sum::<f32>() / 960.0).sqrt();
        (rms < floor).then_some((t, rms))
    })
}
