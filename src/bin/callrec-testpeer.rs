//! `callrec-testpeer`: a synthetic WebRTC *producer* for tests, demos and benchmarks.
//!
//! The tool speaks the producer side of the `gst-webrtc-signalling-server` JSON
//! protocol and streams live test media with real `webrtcbin` elements:
//!
//! 1. every peer (`--peers N`) opens its own WebSocket to `--url`, waits for
//!    `welcome` and registers as a producer with the `--meta` object;
//! 2. on `startSession` a per-session bin (`queue ! valve ! payloader !
//!    capsfilter` per track, feeding one `webrtcbin`) is attached to the shared
//!    encoders through `tee`s, and an offer (or an answer to the consumer's offer)
//!    is negotiated; ICE candidates travel through `peer` messages;
//! 3. media starts flowing once the peer connection is connected (optionally
//!    delayed per track), and stops `--duration` seconds after the first session
//!    of the peer connected; the peer then ends its sessions, closes the
//!    WebSocket and the process exits.
//!
//! The video and audio are encoded once per process and shared by all peers and
//! sessions. Video keyframes are deliberately rare: consumers are expected to
//! request them with RTCP PLI/FIR, which reach the encoder as force-key-unit
//! events.
//!
//! For tests of mixes, the video can be a solid colour (`--color`), video and
//! audio can carry A/V sync markers (`--marker-interval`: white flashes and 1 kHz
//! beeps painted on the raw media from buffer timestamps, so both start at the same
//! PTS), and the video can change its size mid-stream (`--resize-after` and
//! `--resize-to`: new caps on the raw caps filter, the encoder renegotiates).
//!
//! Machine-readable progress is printed on stdout, one JSON object per line
//! (`welcome`, `session`, `connected`, `media`, `media_stopped`, `resized`,
//! `session_ended`, `done`); logs go to stderr (`RUST_LOG` is honoured).
//!
//! Exit status: 0 on success (also after SIGTERM/SIGINT), 1 on errors (bad
//! arguments, pipeline or signalling failures), 2 when a peer got no connected
//! session within 30 seconds (or lost the signalling before any).

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use futures::{SinkExt, StreamExt};
use gst::prelude::*;
use gst_plugin_webrtc_signalling_protocol as proto;
use gst_video::prelude::VideoFrameExt;
use gst_webrtc::{
    WebRTCBundlePolicy, WebRTCPeerConnectionState, WebRTCRTPTransceiver,
    WebRTCRTPTransceiverDirection, WebRTCSDPType, WebRTCSessionDescription,
};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, error, info, warn};

/// RTP payload type used for video.
const VIDEO_PT: u32 = 96;
/// RTP payload type used for audio.
const AUDIO_PT: u32 = 97;
/// How long a peer waits for its first connected session.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the initial WebSocket connection is retried.
const WS_CONNECT_RETRY: Duration = Duration::from_secs(10);
/// Upper bound for the unlink of one tee branch.
const UNLINK_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound for the clean WebSocket close handshake.
const WS_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Exit status when no session got connected in time.
const EXIT_NOT_CONNECTED: u8 = 2;

/// Video codec choices.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    None,
}

/// Audio codec choices.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum AudioCodec {
    Opus,
    None,
}

/// Synthetic WebRTC producer for the gst-webrtc-signalling-server protocol.
#[derive(Parser, Debug, Clone)]
#[command(name = "callrec-testpeer", version, about, long_about = None)]
struct Args {
    /// Signalling server WebSocket URL, e.g. ws://127.0.0.1:8443
    #[arg(long)]
    url: String,
    /// Producer meta data announced with setPeerStatus (a JSON object)
    #[arg(long, default_value = "{}", value_parser = parse_meta)]
    meta: serde_json::Value,
    /// Video codec, or `none` for an audio-only producer
    #[arg(long, value_enum, default_value_t = VideoCodec::Vp8)]
    video: VideoCodec,
    /// Audio codec, or `none` for a video-only producer
    #[arg(long, value_enum, default_value_t = AudioCodec::Opus)]
    audio: AudioCodec,
    /// Video width in pixels
    #[arg(long, default_value_t = 640, value_parser = clap::value_parser!(u32).range(16..=7680))]
    width: u32,
    /// Video height in pixels
    #[arg(long, default_value_t = 360, value_parser = clap::value_parser!(u32).range(16..=4320))]
    height: u32,
    /// Video frame rate (frames per second)
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=120))]
    fps: u32,
    /// Video bitrate in kbit/s
    #[arg(long, default_value_t = 800, value_parser = clap::value_parser!(u32).range(16..=100_000))]
    bitrate: u32,
    /// videotestsrc pattern name (smpte, ball, snow, ...)
    #[arg(long, default_value = "smpte")]
    pattern: String,
    /// Audio sine frequency in Hz
    #[arg(long, default_value_t = 440.0, value_parser = parse_freq)]
    freq: f64,
    /// Seconds to send after the first session of a peer is connected
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    duration: Duration,
    /// Seconds after connection before video starts flowing
    #[arg(long, default_value = "0", value_parser = parse_secs)]
    video_delay: Duration,
    /// Seconds after connection before audio starts flowing
    #[arg(long, default_value = "0", value_parser = parse_secs)]
    audio_delay: Duration,
    /// Seconds after connection when video stops flowing (audio goes on)
    #[arg(long, value_parser = parse_secs)]
    video_stop_after: Option<Duration>,
    /// Solid video colour instead of a test pattern, as 0xRRGGBB (e.g. 0xff0000 for red)
    #[arg(long, value_name = "0xRRGGBB", value_parser = parse_color, conflicts_with = "pattern")]
    color: Option<u32>,
    /// A/V sync markers: video is black (or --color) with a white flash of the whole frame,
    /// audio is silent with a 1 kHz beep (amplitude 0.8); flash and beep last ~100 ms (3
    /// frames at 30 fps) and start together, at the same PTS, at every positive multiple of
    /// SECS of the media timeline (buffer PTS), rounded up to the next video frame
    #[arg(
        long,
        value_name = "SECS",
        value_parser = parse_marker_interval,
        conflicts_with_all = ["pattern", "freq"]
    )]
    marker_interval: Option<Duration>,
    /// Seconds after the first session of the process connects when the video resolution
    /// changes to --resize-to (prints a `resized` event once the encoder uses the new size)
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "resize_to")]
    resize_after: Option<Duration>,
    /// New video size for --resize-after, as WIDTHxHEIGHT (e.g. 1280x720)
    #[arg(long, value_name = "WxH", value_parser = parse_size, requires = "resize_after")]
    resize_to: Option<Size>,
    /// Number of independent producer connections, all fed by one encode
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    peers: u32,
    /// Keep running after the duration, until killed
    #[arg(long)]
    keep_alive: bool,
    /// PEM file of the CAs to trust for wss:// (default: the public web roots)
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Local IP address ICE may use (repeat for several; default: every interface)
    #[arg(long = "ice-address")]
    ice_addresses: Vec<String>,
}

/// Parses `--meta`: any JSON object.
fn parse_meta(s: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err("must be a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// Parses a non-negative number of seconds (fractions allowed).
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("not a number: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration: {e}"))
}

/// Parses `--color`: `0xRRGGBB` (also `#RRGGBB` or bare `RRGGBB`).
fn parse_color(s: &str) -> Result<u32, String> {
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .or_else(|| s.strip_prefix('#'))
        .unwrap_or(s);
    if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("expected 0xRRGGBB (six hex digits)".into());
    }
    u32::from_str_radix(hex, 16).map_err(|e| format!("invalid colour: {e}"))
}

/// Parses `--marker-interval`: seconds, long enough for one flash and a gap.
fn parse_marker_interval(s: &str) -> Result<Duration, String> {
    let interval = parse_secs(s)?;
    if interval < Duration::from_millis(250) {
        return Err("must be at least 0.25 seconds".into());
    }
    Ok(interval)
}

/// A video frame size.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Size {
    width: u32,
    height: u32,
}

/// Parses `--resize-to`: `WIDTHxHEIGHT`, within the limits of `--width`/`--height`.
fn parse_size(s: &str) -> Result<Size, String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| "expected WIDTHxHEIGHT, e.g. 1280x720".to_owned())?;
    let width: u32 = w.trim().parse().map_err(|e| format!("bad width: {e}"))?;
    let height: u32 = h.trim().parse().map_err(|e| format!("bad height: {e}"))?;
    if !(16..=7680).contains(&width) || !(16..=4320).contains(&height) {
        return Err("width must be 16..=7680 and height 16..=4320".into());
    }
    Ok(Size { width, height })
}

/// Parses the sine frequency (audiotestsrc accepts 0..=20000 Hz).
fn parse_freq(s: &str) -> Result<f64, String> {
    let freq: f64 = s.parse().map_err(|e| format!("not a number: {e}"))?;
    if (0.0..=20_000.0).contains(&freq) {
        Ok(freq)
    } else {
        Err("must be between 0 and 20000".into())
    }
}

/// Prints one event as a JSON line on stdout and flushes it.
fn emit(event: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

/// Shortens untrusted text for logging.
fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((idx, _)) => format!("{}…", &text[..idx]),
        None => text.to_owned(),
    }
}

/// Creates a GStreamer element, with a readable error when the plugin is missing.
fn make(factory: &str) -> Result<gst::Element> {
    gst::ElementFactory::make(factory)
        .build()
        .with_context(|| format!("cannot create GStreamer element `{factory}` (plugin missing?)"))
}

/// Media kind of a track.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Video,
    Audio,
}

impl Kind {
    /// Name used in events and pad names.
    fn as_str(self) -> &'static str {
        match self {
            Kind::Video => "video",
            Kind::Audio => "audio",
        }
    }
}

/// RTP payloading of one track (per session, after the shared encoder).
#[derive(Copy, Clone, Debug)]
enum Payloading {
    Vp8,
    Vp9,
    H264,
    Opus,
}

impl Payloading {
    /// Media kind carried by this payloading.
    fn kind(self) -> Kind {
        match self {
            Payloading::Opus => Kind::Audio,
            _ => Kind::Video,
        }
    }

    /// Creates a configured payloader element.
    fn make_payloader(self) -> Result<gst::Element> {
        let pay = match self {
            Payloading::Vp8 | Payloading::Vp9 => {
                let factory = if matches!(self, Payloading::Vp8) {
                    "rtpvp8pay"
                } else {
                    "rtpvp9pay"
                };
                let pay = make(factory)?;
                if pay.find_property("picture-id-mode").is_some() {
                    pay.set_property_from_str("picture-id-mode", "15-bit");
                }
                pay
            }
            Payloading::H264 => {
                let pay = make("rtph264pay")?;
                pay.set_property("config-interval", -1i32);
                pay.set_property_from_str("aggregate-mode", "zero-latency");
                pay
            }
            Payloading::Opus => make("rtpopuspay")?,
        };
        let pt = match self.kind() {
            Kind::Video => VIDEO_PT,
            Kind::Audio => AUDIO_PT,
        };
        pay.set_property("pt", pt);
        Ok(pay)
    }

    /// RTP caps: payloader output restriction and transceiver codec preferences.
    fn rtp_caps(self) -> gst::Caps {
        let (media, name, pt, rate) = match self {
            Payloading::Vp8 => ("video", "VP8", VIDEO_PT, 90_000),
            Payloading::Vp9 => ("video", "VP9", VIDEO_PT, 90_000),
            Payloading::H264 => ("video", "H264", VIDEO_PT, 90_000),
            Payloading::Opus => ("audio", "OPUS", AUDIO_PT, 48_000),
        };
        let mut caps = gst::Caps::builder("application/x-rtp")
            .field("media", media)
            .field("encoding-name", name)
            .field("payload", pt as i32)
            .field("clock-rate", rate);
        if media == "video" {
            caps = caps
                .field("rtcp-fb-nack", true)
                .field("rtcp-fb-nack-pli", true)
                .field("rtcp-fb-ccm-fir", true);
        }
        if matches!(self, Payloading::H264) {
            caps = caps.field("packetization-mode", "1");
        }
        caps.build()
    }
}

/// One shared, encoded track: sessions attach to its `tee`.
struct Track {
    payloading: Payloading,
    tee: gst::Element,
}

/// The process-wide pipeline with the shared encoders.
struct Media {
    pipeline: gst::Pipeline,
    tracks: Vec<Track>,
    /// Raw video capsfilter (its caps set the size) and the encoder, for `--resize-to`.
    video: Option<VideoControl>,
}

/// Handles on the shared video chain needed to change its size mid-stream.
struct VideoControl {
    filter: gst::Element,
    encoder: gst::Element,
    fps: u32,
}

impl VideoControl {
    /// Raw video caps of the source chain.
    fn caps(size: Size, fps: u32) -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", size.width as i32)
            .field("height", size.height as i32)
            .field("framerate", gst::Fraction::new(fps as i32, 1))
            .build()
    }

    /// Size of the encoder's current output, if negotiated.
    fn encoded_size(&self) -> Option<Size> {
        let caps = self.encoder.static_pad("src")?.current_caps()?;
        let s = caps.structure(0)?;
        let width = s.get::<i32>("width").ok()?;
        let height = s.get::<i32>("height").ok()?;
        Some(Size {
            width: u32::try_from(width).ok()?,
            height: u32::try_from(height).ok()?,
        })
    }

    /// Switches the raw video to `size` and waits until the encoder outputs it.
    async fn resize(&self, size: Size) -> Result<()> {
        const MAX_WAIT: Duration = Duration::from_secs(10);
        const POLL: Duration = Duration::from_millis(10);
        info!("resizing video to {}x{}", size.width, size.height);
        self.filter.set_property("caps", Self::caps(size, self.fps));
        let give_up = Instant::now() + MAX_WAIT;
        while self.encoded_size() != Some(size) {
            if Instant::now() >= give_up {
                bail!(
                    "the encoder did not switch to {}x{} within {} s",
                    size.width,
                    size.height,
                    MAX_WAIT.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}

/// A/V sync markers (`--marker-interval`), computed from buffer timestamps.
///
/// Marker `k` (`k >= 1`) starts at the PTS of the first video frame at or after `k *
/// interval` and lasts `flash_frames` frames; the beep covers exactly the same span of the
/// media timeline. Live sources start their timestamps at the running time they started
/// at, so the video frame grid is anchored at the first video PTS, which the video probe
/// records for the audio probe.
#[derive(Clone, Debug)]
struct Markers {
    interval_ns: u128,
    fps: u128,
    flash_frames: u128,
    /// PTS of the first video frame in ns ([`Markers::UNSET`] until it is seen).
    origin: Arc<AtomicU64>,
}

impl Markers {
    /// Flash/beep length in seconds (about 100 ms).
    const LENGTH_SECS: f64 = 0.1;
    /// Beep frequency in Hz.
    const BEEP_HZ: f64 = 1000.0;
    /// Beep amplitude (full scale is 1.0).
    const BEEP_AMPLITUDE: f64 = 0.8;
    const NS: u128 = 1_000_000_000;
    const UNSET: u64 = u64::MAX;

    /// Markers every `interval`; without video (`fps` is `None`) the grid is the PTS itself.
    fn new(interval: Duration, fps: Option<u32>) -> Self {
        let rate = fps.unwrap_or(30);
        let flash_frames = (Self::LENGTH_SECS * f64::from(rate)).round().max(1.0) as u128;
        let origin = if fps.is_some() { Self::UNSET } else { 0 };
        Self {
            interval_ns: interval.as_nanos().max(1),
            fps: u128::from(rate),
            flash_frames,
            origin: Arc::new(AtomicU64::new(origin)),
        }
    }

    /// PTS (ns) of the video frame grid's frame 0, once known.
    fn origin(&self) -> Option<u128> {
        match self.origin.load(Ordering::Acquire) {
            Self::UNSET => None,
            origin => Some(u128::from(origin)),
        }
    }

    /// PTS (ns) of video frame `n` (videotestsrc rounds down the same way).
    fn frame_time(&self, origin: u128, n: u128) -> u128 {
        origin + n * Self::NS / self.fps
    }

    /// The marker windows `[start, end)` (ns of PTS) that overlap `[from, to)`.
    fn windows(&self, from: u128, to: u128) -> Vec<(u128, u128)> {
        let Some(origin) = self.origin() else {
            return Vec::new();
        };
        // A window starts less than one frame after its multiple of the interval.
        let span = (1 + self.flash_frames) * Self::NS / self.fps + 1;
        let mut found = Vec::new();
        let mut k = to / self.interval_ns;
        while k >= 1 && k * self.interval_ns + span > from {
            let due = (k * self.interval_ns).saturating_sub(origin);
            let n = (due * self.fps).div_ceil(Self::NS);
            let start = self.frame_time(origin, n);
            let end = self.frame_time(origin, n + self.flash_frames);
            if start < to && end > from {
                found.push((start, end));
            }
            k -= 1;
        }
        found
    }

    /// Whether the video frame with this PTS is part of a flash.
    fn is_flash(&self, pts: gst::ClockTime) -> bool {
        let pts = u128::from(pts.nseconds());
        let _ = self.origin.compare_exchange(
            Self::UNSET,
            pts as u64,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        let Some(origin) = self.origin() else {
            return false;
        };
        let Some(since) = pts.checked_sub(origin) else {
            return false;
        };
        // Snap to the frame grid (a size change may leave the PTS a nanosecond off it).
        let n = (since * self.fps + Self::NS / 2) / Self::NS;
        let t = self.frame_time(origin, n);
        !self.windows(t, t + 1).is_empty()
    }

    /// Whole-frame white flashes on raw I420 video (probe on the raw video pad).
    fn add_video_probe(self, pad: &gst::Pad) {
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            if !buffer.pts().is_some_and(|pts| self.is_flash(pts)) {
                return gst::PadProbeReturn::Ok;
            }
            let Some(video_info) = pad
                .current_caps()
                .and_then(|caps| gst_video::VideoInfo::from_caps(&caps).ok())
            else {
                return gst::PadProbeReturn::Ok;
            };
            let full_range =
                video_info.colorimetry().range() == gst_video::VideoColorRange::Range0_255;
            let white_y = if full_range { 255 } else { 235 };
            let buffer = buffer.make_mut();
            match gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &video_info) {
                Ok(mut frame) => {
                    for plane in 0..frame.n_planes() {
                        let value = if plane == 0 { white_y } else { 128 };
                        if let Ok(data) = frame.plane_data_mut(plane) {
                            data.fill(value);
                        }
                    }
                }
                Err(e) => warn!("cannot map a video frame for a marker flash: {e}"),
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// 1 kHz beeps on raw S16LE audio (probe on the raw audio pad).
    fn add_audio_probe(self, pad: &gst::Pad) {
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(pts) = buffer.pts() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some((rate, channels)) = pad.current_caps().and_then(|caps| {
                let s = caps.structure(0)?;
                let rate = u128::try_from(s.get::<i32>("rate").ok()?).ok()?;
                let channels = usize::try_from(s.get::<i32>("channels").ok()?).ok()?;
                (rate > 0 && channels > 0).then_some((rate, channels))
            }) else {
                return gst::PadProbeReturn::Ok;
            };
            let start = u128::from(pts.nseconds());
            let frames = buffer.size() / (2 * channels);
            let sample_time = |i: usize| start + (i as u128 * Self::NS + rate / 2) / rate;
            let windows = self.windows(start, sample_time(frames));
            if windows.is_empty() {
                return gst::PadProbeReturn::Ok;
            }
            let buffer = buffer.make_mut();
            let Ok(mut map) = buffer.map_writable() else {
                warn!("cannot map an audio buffer for a marker beep");
                return gst::PadProbeReturn::Ok;
            };
            for (i, frame) in map.chunks_exact_mut(2 * channels).enumerate() {
                let t = sample_time(i);
                let beep = windows.iter().find(|(s, e)| (*s..*e).contains(&t));
                let sample = match beep {
                    Some((s, _)) => {
                        let secs = (t - s) as f64 / Self::NS as f64;
                        let v = (2.0 * std::f64::consts::PI * Self::BEEP_HZ * secs).sin();
                        (v * Self::BEEP_AMPLITUDE * f64::from(i16::MAX)).round() as i16
                    }
                    None => 0,
                };
                for ch in frame.chunks_exact_mut(2) {
                    ch.copy_from_slice(&sample.to_le_bytes());
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
}

impl Media {
    /// Builds the shared source/encoder part of the pipeline.
    fn new(args: &Args) -> Result<Self> {
        let pipeline = gst::Pipeline::with_name("callrec-testpeer");
        let mut tracks = Vec::new();
        let has_video = args.video != VideoCodec::None;
        let markers = args
            .marker_interval
            .map(|interval| Markers::new(interval, has_video.then_some(args.fps)));
        let mut video = None;
        if has_video {
            let (track, control) = Self::build_video(&pipeline, args, markers.as_ref())?;
            tracks.push(track);
            video = Some(control);
        } else if args.resize_after.is_some() {
            bail!("--resize-after needs video (not --video none)");
        }
        if args.audio != AudioCodec::None {
            tracks.push(Self::build_audio(&pipeline, args, markers.as_ref())?);
        }
        if tracks.is_empty() {
            bail!("nothing to send: both --video and --audio are `none`");
        }
        Ok(Self {
            pipeline,
            tracks,
            video,
        })
    }

    /// Creates a tee that keeps running with no branch attached.
    fn make_tee(name: &str) -> Result<gst::Element> {
        let tee = gst::ElementFactory::make("tee")
            .name(name)
            .property("allow-not-linked", true)
            .build()
            .context("cannot create `tee`")?;
        Ok(tee)
    }

    /// `videotestsrc ! videoscale ! caps ! [timeoverlay] ! videoconvert ! encoder ! tee`.
    ///
    /// With `--color` or `--marker-interval` the frames are solid (no time overlay), and the
    /// markers' flashes are painted by a probe on the raw I420 caps filter output.
    fn build_video(
        pipeline: &gst::Pipeline,
        args: &Args,
        markers: Option<&Markers>,
    ) -> Result<(Track, VideoControl)> {
        let src = make("videotestsrc")?;
        src.set_property("is-live", true);
        let solid = args.color.is_some() || args.marker_interval.is_some();
        if solid {
            // Markers default to black between the flashes.
            set_enum_property(&src, "pattern", "solid-color")?;
            src.set_property("foreground-color", 0xff00_0000 | args.color.unwrap_or(0));
        } else {
            set_enum_property(&src, "pattern", &args.pattern)?;
        }
        let filter = make("capsfilter")?;
        let size = Size {
            width: args.width,
            height: args.height,
        };
        filter.set_property("caps", VideoControl::caps(size, args.fps));
        if let Some(markers) = markers {
            let pad = filter
                .static_pad("src")
                .context("capsfilter without src pad")?;
            markers.clone().add_video_probe(&pad);
        }
        let mut chain = vec![src, make("videoscale")?, filter.clone()];
        if !solid && gst::ElementFactory::find("timeoverlay").is_some() {
            chain.push(make("timeoverlay")?);
        }
        chain.push(make("videoconvert")?);

        let keyframe_dist = args.fps.saturating_mul(10);
        let payloading = match args.video {
            VideoCodec::Vp8 | VideoCodec::Vp9 => {
                let (factory, payloading) = if args.video == VideoCodec::Vp8 {
                    ("vp8enc", Payloading::Vp8)
                } else {
                    ("vp9enc", Payloading::Vp9)
                };
                let enc = make(factory)?;
                enc.set_property("deadline", 1i64);
                enc.set_property("cpu-used", 8i32);
                enc.set_property("target-bitrate", (args.bitrate * 1000) as i32);
                enc.set_property("keyframe-max-dist", keyframe_dist as i32);
                // Real-time senders don't look ahead: libvpx's default lag of 25 frames adds
                // most of a second of latency, which rtpbin's lip-sync then moves audio by.
                enc.set_property("lag-in-frames", 0i32);
                enc.set_property_from_str("end-usage", "cbr");
                chain.push(enc.clone());
                (payloading, enc)
            }
            VideoCodec::H264 => {
                let enc = make("x264enc")?;
                enc.set_property_from_str("tune", "zerolatency");
                enc.set_property_from_str("speed-preset", "ultrafast");
                enc.set_property("key-int-max", keyframe_dist);
                enc.set_property("bitrate", args.bitrate);
                let profile = make("capsfilter")?;
                profile.set_property(
                    "caps",
                    gst::Caps::builder("video/x-h264")
                        .field("profile", "constrained-baseline")
                        .build(),
                );
                chain.push(enc.clone());
                chain.push(profile);
                (Payloading::H264, enc)
            }
            VideoCodec::None => unreachable!("video track requested without a codec"),
        };
        let (payloading, encoder) = payloading;
        let tee = Self::make_tee("video-tee")?;
        chain.push(tee.clone());
        pipeline.add_many(&chain)?;
        gst::Element::link_many(&chain).context("cannot link the video encoder chain")?;
        let control = VideoControl {
            filter,
            encoder,
            fps: args.fps,
        };
        Ok((Track { payloading, tee }, control))
    }

    /// `audiotestsrc ! caps ! audioconvert ! audioresample ! opusenc ! tee`.
    ///
    /// With `--marker-interval` the source is silent and a probe on the raw S16LE caps
    /// filter output writes the beeps.
    fn build_audio(
        pipeline: &gst::Pipeline,
        args: &Args,
        markers: Option<&Markers>,
    ) -> Result<Track> {
        let src = make("audiotestsrc")?;
        src.set_property("is-live", true);
        if args.marker_interval.is_some() {
            src.set_property_from_str("wave", "silence");
        } else {
            src.set_property_from_str("wave", "sine");
            src.set_property("freq", args.freq);
            src.set_property("volume", 0.3f64);
        }
        let filter = make("capsfilter")?;
        filter.set_property(
            "caps",
            gst::Caps::builder("audio/x-raw")
                .field("format", "S16LE")
                .field("layout", "interleaved")
                .field("rate", 48_000i32)
                .build(),
        );
        if let Some(markers) = markers {
            let pad = filter
                .static_pad("src")
                .context("capsfilter without src pad")?;
            markers.clone().add_audio_probe(&pad);
        }
        let tee = Self::make_tee("audio-tee")?;
        let chain = [
            src,
            filter,
            make("audioconvert")?,
            make("audioresample")?,
            make("opusenc")?,
            tee.clone(),
        ];
        pipeline.add_many(&chain)?;
        gst::Element::link_many(&chain).context("cannot link the audio encoder chain")?;
        Ok(Track {
            payloading: Payloading::Opus,
            tee,
        })
    }
}

/// Sets an enum property from a nick, name or number, without panicking on bad input.
fn set_enum_property(element: &gst::Element, property: &str, value: &str) -> Result<()> {
    let pspec = element
        .find_property(property)
        .ok_or_else(|| anyhow!("`{property}` property not found"))?;
    let class = glib::EnumClass::with_type(pspec.value_type())
        .ok_or_else(|| anyhow!("`{property}` is not an enum property"))?;
    let found = class
        .value_by_nick(value)
        .or_else(|| class.value_by_name(value))
        .or_else(|| value.parse::<i32>().ok().and_then(|n| class.value(n)));
    let Some(found) = found else {
        let valid: Vec<&str> = class.values().iter().map(|v| v.nick()).collect();
        bail!(
            "invalid {property} `{value}`; valid values: {}",
            valid.join(", ")
        );
    };
    element.set_property_from_value(property, &found.to_value(&class));
    Ok(())
}

/// Why all peers should stop.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Stop {
    /// Keep going.
    Running,
    /// SIGTERM/SIGINT: stop like at the end of the duration.
    Graceful,
    /// The shared pipeline failed.
    Fatal,
}

/// Notification from GStreamer callbacks or timers to a peer task.
#[derive(Debug)]
struct SessionEvent {
    session_id: String,
    what: SessionEventKind,
}

/// Payload of a [`SessionEvent`].
#[derive(Debug)]
enum SessionEventKind {
    /// Our local description, to send to the consumer.
    LocalSdp { answer: bool, sdp: String },
    /// A local ICE candidate, to send to the consumer.
    Ice { mline: u32, candidate: String },
    /// The peer connection state changed.
    State(WebRTCPeerConnectionState),
    /// Negotiation failed.
    Failed(String),
    /// All webrtcbin sink pads have caps (or we waited long enough): negotiate.
    CapsReady,
    /// Timer: start (`true`) or stop (`false`) sending a track.
    Valve { kind: Kind, open: bool },
}

/// Sender half used by callbacks and timers.
type EventTx = mpsc::UnboundedSender<SessionEvent>;

/// Sends an event, ignoring a peer task that is already gone.
fn notify(tx: &EventTx, session_id: &str, what: SessionEventKind) {
    let _ = tx.send(SessionEvent {
        session_id: session_id.to_owned(),
        what,
    });
}

/// One track of a session: the valve gating it and its link to the shared tee.
struct Branch {
    kind: Kind,
    valve: gst::Element,
    tee: gst::Element,
    tee_pad: Option<gst::Pad>,
    ghost: gst::GhostPad,
}

/// One WebRTC session with a consumer.
struct Session {
    id: String,
    bin: gst::Bin,
    webrtc: gst::Element,
    branches: Vec<Branch>,
    /// webrtcbin sink pads, one per track.
    sink_pads: Vec<gst::Pad>,
    /// The consumer's offer, answered once the caps are known.
    remote_offer: Option<String>,
    connected_at: Option<Instant>,
    timers: Vec<JoinHandle<()>>,
}

impl Session {
    /// Builds the session bin, adds it to the pipeline and links it to the tees.
    fn start(
        media: &Media,
        ice_addresses: &[String],
        name: &str,
        session_id: &str,
        tx: &EventTx,
    ) -> Result<Self> {
        let bin = gst::Bin::with_name(name);
        let webrtc = gst::ElementFactory::make("webrtcbin")
            .name(format!("{name}-webrtcbin"))
            .property("bundle-policy", WebRTCBundlePolicy::MaxBundle)
            .build()
            .context("cannot create `webrtcbin`")?;
        callrec::call::restrict_ice_addresses(&webrtc, ice_addresses)
            .map_err(anyhow::Error::msg)?;
        bin.add(&webrtc)?;

        let mut branches = Vec::new();
        let mut sink_pads = Vec::new();
        for track in &media.tracks {
            let kind = track.payloading.kind();
            let queue = gst::ElementFactory::make("queue")
                .property("max-size-buffers", 0u32)
                .property("max-size-bytes", 0u32)
                .property("max-size-time", gst::ClockTime::SECOND)
                .build()
                .context("cannot create `queue`")?;
            queue.set_property_from_str("leaky", "downstream");
            let valve = make("valve")?;
            valve.set_property_from_str("drop-mode", "forward-sticky-events");
            valve.set_property("drop", true);
            let pay = track.payloading.make_payloader()?;
            let filter = make("capsfilter")?;
            filter.set_property("caps", track.payloading.rtp_caps());
            let chain = [queue.clone(), valve.clone(), pay, filter.clone()];
            bin.add_many(&chain)?;
            gst::Element::link_many(&chain)?;

            let sink = webrtc
                .request_pad_simple("sink_%u")
                .context("webrtcbin refused a sink pad")?;
            filter
                .static_pad("src")
                .context("capsfilter without src pad")?
                .link(&sink)
                .context("cannot link payloader to webrtcbin")?;
            let transceiver = sink.property::<WebRTCRTPTransceiver>("transceiver");
            sink_pads.push(sink.clone());
            transceiver.set_property("direction", WebRTCRTPTransceiverDirection::Sendonly);
            transceiver.set_property("codec-preferences", track.payloading.rtp_caps());
            // Offer NACK and RTX for video, as browsers do, so consumers can repair losses.
            transceiver.set_property("do-nack", kind == Kind::Video);

            let ghost = gst::GhostPad::builder_with_target(
                &queue.static_pad("sink").context("queue without sink pad")?,
            )?
            .name(kind.as_str())
            .build();
            bin.add_pad(&ghost)?;
            branches.push(Branch {
                kind,
                valve,
                tee: track.tee.clone(),
                tee_pad: None,
                ghost,
            });
        }
        Self::connect_signals(&webrtc, session_id, tx);

        media.pipeline.add(&bin)?;
        let mut session = Self {
            id: session_id.to_owned(),
            bin,
            webrtc,
            branches,
            sink_pads,
            remote_offer: None,
            connected_at: None,
            timers: Vec::new(),
        };
        if let Err(e) = session.attach() {
            session.detach_now(&media.pipeline);
            return Err(e);
        }
        Ok(session)
    }

    /// Starts the bin and links every branch to its tee.
    fn attach(&mut self) -> Result<()> {
        self.bin
            .sync_state_with_parent()
            .context("cannot start the session bin")?;
        for branch in &mut self.branches {
            let tee_pad = branch
                .tee
                .request_pad_simple("src_%u")
                .context("tee refused a src pad")?;
            branch.tee_pad = Some(tee_pad.clone());
            tee_pad
                .link(&branch.ghost)
                .context("cannot link the tee to the session")?;
        }
        Ok(())
    }

    /// Synchronous teardown used when the session could not even start.
    fn detach_now(&mut self, pipeline: &gst::Pipeline) {
        for branch in &mut self.branches {
            if let Some(tee_pad) = branch.tee_pad.take() {
                let _ = tee_pad.unlink(&branch.ghost);
                branch.tee.release_request_pad(&tee_pad);
            }
        }
        let _ = self.bin.set_state(gst::State::Null);
        let _ = pipeline.remove(&self.bin);
    }

    /// Forwards webrtcbin signals to the peer task (weak references only).
    fn connect_signals(webrtc: &gst::Element, session_id: &str, tx: &EventTx) {
        let (sid, etx) = (session_id.to_owned(), tx.clone());
        webrtc.connect("on-ice-candidate", false, move |values| {
            let mline = values.get(1).and_then(|v| v.get::<u32>().ok());
            let candidate = values.get(2).and_then(|v| v.get::<String>().ok());
            if let (Some(mline), Some(candidate)) = (mline, candidate) {
                notify(&etx, &sid, SessionEventKind::Ice { mline, candidate });
            }
            None
        });
        let (sid, etx) = (session_id.to_owned(), tx.clone());
        webrtc.connect_notify(Some("connection-state"), move |webrtc, _| {
            let state = webrtc.property::<WebRTCPeerConnectionState>("connection-state");
            notify(&etx, &sid, SessionEventKind::State(state));
        });
        let sid = session_id.to_owned();
        webrtc.connect_notify(Some("ice-connection-state"), move |webrtc, _| {
            let state =
                webrtc.property::<gst_webrtc::WebRTCICEConnectionState>("ice-connection-state");
            debug!(session_id = %sid, ?state, "ICE connection state");
        });
    }

    /// Creates an offer, sets it locally and hands it to the peer task.
    fn create_offer(&self, tx: &EventTx) {
        let weak = self.webrtc.downgrade();
        let (sid, etx) = (self.id.clone(), tx.clone());
        let promise = gst::Promise::with_change_func(move |reply| {
            let Some(webrtc) = weak.upgrade() else { return };
            match description_from_reply(reply, "offer") {
                Ok(offer) => set_local_and_send(&webrtc, offer, false, &sid, &etx),
                Err(e) => notify(&etx, &sid, SessionEventKind::Failed(format!("{e:#}"))),
            }
        });
        self.webrtc
            .emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
    }

    /// Applies the consumer's offer, then answers it.
    fn answer_offer(&self, sdp: &str, tx: &EventTx) -> Result<()> {
        let sdp = parse_sdp(sdp, "offer")?;
        let offer = WebRTCSessionDescription::new(WebRTCSDPType::Offer, sdp);
        let weak = self.webrtc.downgrade();
        let (sid, etx) = (self.id.clone(), tx.clone());
        let promise = gst::Promise::with_change_func(move |reply| {
            let Some(webrtc) = weak.upgrade() else { return };
            if let Err(e) = check_reply(reply) {
                let msg = format!("cannot set the remote offer: {e:#}");
                notify(&etx, &sid, SessionEventKind::Failed(msg));
                return;
            }
            let weak = webrtc.downgrade();
            let promise = gst::Promise::with_change_func(move |reply| {
                let Some(webrtc) = weak.upgrade() else { return };
                match description_from_reply(reply, "answer") {
                    Ok(answer) => set_local_and_send(&webrtc, answer, true, &sid, &etx),
                    Err(e) => notify(&etx, &sid, SessionEventKind::Failed(format!("{e:#}"))),
                }
            });
            webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
        });
        self.webrtc
            .emit_by_name::<()>("set-remote-description", &[&offer, &promise]);
        Ok(())
    }

    /// Applies the consumer's answer.
    fn apply_answer(&self, sdp: &str, tx: &EventTx) -> Result<()> {
        let sdp = parse_sdp(sdp, "answer")?;
        let answer = WebRTCSessionDescription::new(WebRTCSDPType::Answer, sdp);
        let (sid, etx) = (self.id.clone(), tx.clone());
        let promise = gst::Promise::with_change_func(move |reply| {
            if let Err(e) = check_reply(reply) {
                let msg = format!("cannot set the remote answer: {e:#}");
                notify(&etx, &sid, SessionEventKind::Failed(msg));
            }
        });
        self.webrtc
            .emit_by_name::<()>("set-remote-description", &[&answer, &promise]);
        Ok(())
    }

    /// Adds a remote ICE candidate.
    fn add_ice_candidate(&self, mline: u32, candidate: &str) {
        if candidate.is_empty() {
            return; // end-of-candidates marker
        }
        self.webrtc
            .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
    }

    /// Opens or closes the valve of one track; returns whether the state changed.
    fn set_flowing(&self, kind: Kind, flowing: bool) -> bool {
        let mut changed = false;
        for branch in self.branches.iter().filter(|b| b.kind == kind) {
            if branch.valve.property::<bool>("drop") == flowing {
                branch.valve.set_property("drop", !flowing);
                changed = true;
            }
        }
        changed
    }

    /// Stops all media of this session immediately.
    fn close_valves(&self) {
        for branch in &self.branches {
            branch.valve.set_property("drop", true);
        }
    }

    /// Unlinks the session from the tees, stops it and removes it from the pipeline.
    async fn teardown(mut self, pipeline: gst::Pipeline) {
        for timer in self.timers.drain(..) {
            timer.abort();
        }
        self.close_valves();
        for branch in &mut self.branches {
            let Some(tee_pad) = branch.tee_pad.take() else {
                continue;
            };
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let done_tx = Mutex::new(Some(done_tx));
            let ghost = branch.ghost.downgrade();
            tee_pad.add_probe(gst::PadProbeType::IDLE, move |pad, _| {
                if let Some(ghost) = ghost.upgrade() {
                    let _ = pad.unlink(&ghost);
                }
                if let Some(done) = done_tx.lock().ok().and_then(|mut d| d.take()) {
                    let _ = done.send(());
                }
                gst::PadProbeReturn::Remove
            });
            if tokio::time::timeout(UNLINK_TIMEOUT, done_rx).await.is_err() {
                warn!(session_id = %self.id, "tee branch never idle; unlinking anyway");
                let _ = tee_pad.unlink(&branch.ghost);
            }
            branch.tee.release_request_pad(&tee_pad);
        }
        let bin = self.bin.clone();
        let id = self.id.clone();
        let res = tokio::task::spawn_blocking(move || {
            let _ = bin.set_state(gst::State::Null);
            pipeline.remove(&bin)
        })
        .await;
        match res {
            Ok(Ok(())) => debug!(session_id = %id, "session removed from the pipeline"),
            Ok(Err(e)) => warn!(session_id = %id, "cannot remove session bin: {e}"),
            Err(e) => warn!(session_id = %id, "session teardown task failed: {e}"),
        }
    }
}

/// Parses a remote SDP, rejecting text without any media section.
fn parse_sdp(text: &str, what: &str) -> Result<gst_sdp::SDPMessage> {
    let sdp = gst_sdp::SDPMessage::parse_buffer(text.as_bytes())
        .map_err(|e| anyhow!("unparsable SDP {what}: {e}"))?;
    if sdp.medias_len() == 0 {
        bail!("SDP {what} without any media section: {:?}", excerpt(text));
    }
    Ok(sdp)
}

/// Fails if a promise reply is missing or carries an error.
fn check_reply(
    reply: Result<Option<&gst::StructureRef>, gst::PromiseError>,
) -> Result<Option<&gst::StructureRef>> {
    let reply = reply.map_err(|e| anyhow!("promise not fulfilled: {e:?}"))?;
    if let Some(s) = reply {
        if let Ok(err) = s.get::<glib::Error>("error") {
            bail!("{err}");
        }
    }
    Ok(reply)
}

/// Extracts the session description `field` from a create-offer/answer reply.
fn description_from_reply(
    reply: Result<Option<&gst::StructureRef>, gst::PromiseError>,
    field: &str,
) -> Result<WebRTCSessionDescription> {
    let reply = check_reply(reply)?.ok_or_else(|| anyhow!("empty {field} reply"))?;
    reply
        .get::<WebRTCSessionDescription>(field)
        .map_err(|e| anyhow!("no {field} in reply: {e}"))
}

/// Sends a local description to the peer task, then applies it to webrtcbin.
///
/// The description is queued first so it reaches the consumer before our ICE
/// candidates (gathering only starts once it is set).
fn set_local_and_send(
    webrtc: &gst::Element,
    desc: WebRTCSessionDescription,
    answer: bool,
    session_id: &str,
    tx: &EventTx,
) {
    match desc.sdp().as_text() {
        Ok(sdp) => notify(tx, session_id, SessionEventKind::LocalSdp { answer, sdp }),
        Err(e) => {
            let msg = format!("cannot serialize local SDP: {e}");
            notify(tx, session_id, SessionEventKind::Failed(msg));
            return;
        }
    }
    webrtc.emit_by_name::<()>("set-local-description", &[&desc, &None::<gst::Promise>]);
}

/// State shared by all peer tasks.
struct Shared {
    args: Args,
    media: Media,
    /// The `--resize-after` timer, started when the first session of the process connects.
    resize: OnceLock<JoinHandle<()>>,
}

impl Shared {
    /// Starts the `--resize-after` timer unless it is already running (or not wanted).
    fn schedule_resize(self: &Arc<Self>) {
        let (Some(after), Some(size)) = (self.args.resize_after, self.args.resize_to) else {
            return;
        };
        let shared = self.clone();
        self.resize.get_or_init(|| {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let Some(video) = &shared.media.video else {
                    return;
                };
                match video.resize(size).await {
                    Ok(()) => {
                        info!("video resized to {}x{}", size.width, size.height);
                        emit(json!({
                            "event": "resized",
                            "width": size.width,
                            "height": size.height,
                        }));
                    }
                    Err(e) => error!("resize failed: {e:#}"),
                }
            })
        });
    }
}

/// WebSocket connection to the signalling server.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a peer finished.
#[derive(Debug)]
enum Outcome {
    /// Sent media (or was stopped by a signal).
    Completed,
    /// Never got a connected session.
    NeverConnected,
    /// Could not talk to the signalling server at all.
    Failed(anyhow::Error),
}

/// Why a peer's main loop ended.
#[derive(Debug)]
enum Exit {
    Stopped,
    Deadline,
    ConnectTimeout,
    SignallingLost,
}

/// One producer connection to the signalling server.
struct Peer {
    index: u32,
    shared: Arc<Shared>,
    ws: Option<Ws>,
    peer_id: Option<String>,
    sessions: HashMap<String, Session>,
    tx: EventTx,
    first_connected: Option<Instant>,
    session_counter: u64,
    teardowns: Vec<JoinHandle<()>>,
}

/// Next WebSocket message; pending forever once the socket is gone.
async fn next_ws(ws: &mut Option<Ws>) -> Option<Result<Message, tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever if there is none.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Connects to the signalling server, retrying briefly while it starts up.
async fn connect_ws(
    url: &str,
    ca_file: Option<&std::path::Path>,
    stop: &mut watch::Receiver<Stop>,
) -> Result<Option<Ws>> {
    let give_up = Instant::now() + WS_CONNECT_RETRY;
    loop {
        let connector =
            callrec::signalling::client::tls_connector(ca_file).map_err(anyhow::Error::msg)?;
        match tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
            .await
        {
            Ok((ws, _)) => return Ok(Some(ws)),
            Err(e) if Instant::now() < give_up => {
                debug!("cannot connect to {url}: {e}; retrying");
            }
            Err(e) => return Err(anyhow!("cannot connect to {url}: {e}")),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return Ok(None),
        }
    }
}

impl Peer {
    /// Runs one producer until the duration is over or the process is stopped.
    async fn run(shared: Arc<Shared>, index: u32, mut stop: watch::Receiver<Stop>) -> Outcome {
        let ws = match connect_ws(&shared.args.url, shared.args.ca_file.as_deref(), &mut stop).await
        {
            Ok(Some(ws)) => ws,
            Ok(None) => return Outcome::Completed,
            Err(e) => return Outcome::Failed(e),
        };
        info!(peer = index, "connected to {}", shared.args.url);
        let (tx, rx) = mpsc::unbounded_channel();
        let peer = Peer {
            index,
            shared,
            ws: Some(ws),
            peer_id: None,
            sessions: HashMap::new(),
            tx,
            first_connected: None,
            session_counter: 0,
            teardowns: Vec::new(),
        };
        peer.main_loop(rx, stop).await
    }

    /// Dispatches signalling messages, callback events, timers and stop requests.
    async fn main_loop(
        mut self,
        mut events: mpsc::UnboundedReceiver<SessionEvent>,
        mut stop: watch::Receiver<Stop>,
    ) -> Outcome {
        let keep_alive = self.shared.args.keep_alive;
        let connect_deadline = (!keep_alive).then(|| Instant::now() + CONNECT_TIMEOUT);
        let exit = loop {
            if *stop.borrow() != Stop::Running {
                break Exit::Stopped;
            }
            let deadline = match self.first_connected {
                Some(t) if !keep_alive => Some(t + self.shared.args.duration),
                Some(_) => None,
                None => connect_deadline,
            };
            tokio::select! {
                msg = next_ws(&mut self.ws) => {
                    if !self.on_ws(msg).await && self.nothing_to_wait_for() {
                        break Exit::SignallingLost;
                    }
                }
                Some(event) = events.recv() => self.on_event(event).await,
                res = stop.changed() => {
                    if res.is_err() {
                        break Exit::Stopped;
                    }
                }
                _ = sleep_until_opt(deadline) => {
                    break if self.first_connected.is_some() {
                        Exit::Deadline
                    } else {
                        Exit::ConnectTimeout
                    };
                }
            }
        };
        self.shutdown(exit).await
    }

    /// True when the signalling is gone and no session can still connect.
    fn nothing_to_wait_for(&self) -> bool {
        self.ws.is_none()
            && self.first_connected.is_none()
            && self.sessions.is_empty()
            && !self.shared.args.keep_alive
    }

    /// Handles one WebSocket read; returns false once the connection is gone.
    async fn on_ws(&mut self, msg: Option<Result<Message, tungstenite::Error>>) -> bool {
        match msg {
            Some(Ok(Message::Text(text))) => {
                self.on_text(text.as_str()).await;
                true
            }
            Some(Ok(Message::Binary(data))) => {
                warn!(
                    peer = self.index,
                    len = data.len(),
                    "ignoring binary message"
                );
                true
            }
            Some(Ok(Message::Close(frame))) => {
                warn!(
                    peer = self.index,
                    ?frame,
                    "signalling server closed the connection; sessions keep streaming"
                );
                self.ws = None;
                false
            }
            Some(Ok(_)) => true, // ping/pong, handled by tungstenite
            Some(Err(e)) => {
                warn!(
                    peer = self.index,
                    "signalling connection lost ({e}); sessions keep streaming"
                );
                self.ws = None;
                false
            }
            None => {
                warn!(
                    peer = self.index,
                    "signalling connection ended; sessions keep streaming"
                );
                self.ws = None;
                false
            }
        }
    }

    /// Sends a message to the server; a failure marks the connection as gone.
    async fn send(&mut self, msg: &proto::IncomingMessage) {
        let Some(ws) = self.ws.as_mut() else {
            debug!(peer = self.index, ?msg, "signalling gone; not sending");
            return;
        };
        let text = match serde_json::to_string(msg) {
            Ok(text) => text,
            Err(e) => {
                error!("cannot serialize {msg:?}: {e}");
                return;
            }
        };
        if let Err(e) = ws.send(Message::text(text)).await {
            warn!(
                peer = self.index,
                "cannot send to the signalling server ({e}); sessions keep streaming"
            );
            self.ws = None;
        }
    }

    /// Our peer id, or an empty string before `welcome`.
    fn id(&self) -> &str {
        self.peer_id.as_deref().unwrap_or_default()
    }

    /// Handles one text message from the server; never fails on bad input.
    async fn on_text(&mut self, text: &str) {
        let msg = match serde_json::from_str::<proto::OutgoingMessage>(text) {
            Ok(msg) => msg,
            Err(e) => {
                warn!(
                    peer = self.index,
                    "ignoring unexpected message ({e}): {:?}",
                    excerpt(text)
                );
                return;
            }
        };
        match msg {
            proto::OutgoingMessage::Welcome { peer_id } => self.on_welcome(peer_id).await,
            proto::OutgoingMessage::StartSession {
                peer_id,
                session_id,
                offer,
            } => self.on_start_session(peer_id, session_id, offer).await,
            proto::OutgoingMessage::EndSession(proto::EndSessionMessage { session_id }) => {
                if self.sessions.contains_key(&session_id) {
                    info!(peer = self.index, %session_id, "consumer ended the session");
                    self.end_session(&session_id, false).await;
                } else {
                    debug!(peer = self.index, %session_id, "endSession for unknown session");
                }
            }
            proto::OutgoingMessage::Peer(proto::PeerMessage {
                session_id,
                peer_message,
            }) => self.on_peer_message(&session_id, peer_message).await,
            proto::OutgoingMessage::Error { details } => {
                warn!(
                    peer = self.index,
                    "signalling server error: {}",
                    excerpt(&details)
                );
            }
            other => debug!(peer = self.index, ?other, "ignoring message"),
        }
    }

    /// `welcome`: remember our id and register as a producer.
    async fn on_welcome(&mut self, peer_id: String) {
        if let Some(old) = &self.peer_id {
            warn!(peer = self.index, %old, new = %peer_id, "ignoring second welcome");
            return;
        }
        info!(peer = self.index, %peer_id, "welcomed");
        emit(json!({"event": "welcome", "peer_id": peer_id}));
        self.peer_id = Some(peer_id);
        let status = proto::IncomingMessage::SetPeerStatus(proto::PeerStatus {
            roles: vec![proto::PeerRole::Producer],
            meta: Some(self.shared.args.meta.clone()),
            peer_id: None,
        });
        self.send(&status).await;
    }

    /// `startSession`: a consumer wants our media.
    async fn on_start_session(
        &mut self,
        consumer_id: String,
        session_id: String,
        offer: Option<String>,
    ) {
        if self.peer_id.is_none() {
            warn!(peer = self.index, %session_id, "startSession before welcome; ignoring");
            return;
        }
        if self.sessions.contains_key(&session_id) {
            warn!(peer = self.index, %session_id, "duplicate startSession; ignoring");
            return;
        }
        let with_offer = offer.is_some();
        info!(peer = self.index, %session_id, %consumer_id, with_offer, "session requested");
        self.session_counter += 1;
        let name = format!("session-{}-{}", self.index, self.session_counter);
        let mut session = match Session::start(
            &self.shared.media,
            &self.shared.args.ice_addresses,
            &name,
            &session_id,
            &self.tx,
        ) {
            Ok(session) => session,
            Err(e) => {
                error!(peer = self.index, %session_id, "cannot start session: {e:#}");
                let end = proto::EndSessionMessage { session_id };
                self.send(&proto::IncomingMessage::EndSession(end)).await;
                return;
            }
        };
        emit(json!({
            "event": "session",
            "peer_id": self.id(),
            "session_id": session_id,
            "consumer_id": consumer_id,
        }));
        session.remote_offer = offer;
        let wait = wait_for_caps(&session.sink_pads, &self.tx, &session_id);
        session.timers.push(wait);
        self.sessions.insert(session_id, session);
    }

    /// Creates our offer, or answers the consumer's, once the media caps are known.
    async fn negotiate(&mut self, sid: &str) {
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        let res = match session.remote_offer.take() {
            Some(sdp) => session.answer_offer(&sdp, &self.tx),
            None => {
                session.create_offer(&self.tx);
                Ok(())
            }
        };
        if let Err(e) = res {
            warn!(peer = self.index, session_id = %sid, "{e:#}");
            self.end_session(sid, true).await;
        }
    }

    /// `peer`: SDP answer or ICE candidate from the consumer.
    async fn on_peer_message(&mut self, session_id: &str, msg: proto::PeerMessageInner) {
        let Some(session) = self.sessions.get(session_id) else {
            debug!(peer = self.index, %session_id, "peer message for unknown session");
            return;
        };
        match msg {
            proto::PeerMessageInner::Sdp(proto::SdpMessage::Answer { sdp }) => {
                debug!(peer = self.index, %session_id, "received answer");
                if let Err(e) = session.apply_answer(&sdp, &self.tx) {
                    warn!(peer = self.index, %session_id, "{e:#}");
                    self.end_session(session_id, true).await;
                }
            }
            proto::PeerMessageInner::Sdp(proto::SdpMessage::Offer { .. }) => {
                warn!(peer = self.index, %session_id, "ignoring renegotiation offer from consumer");
            }
            proto::PeerMessageInner::Ice {
                candidate,
                sdp_m_line_index,
            } => session.add_ice_candidate(sdp_m_line_index, &candidate),
        }
    }

    /// Handles an event from webrtcbin callbacks or a timer.
    async fn on_event(&mut self, event: SessionEvent) {
        let sid = event.session_id;
        if !self.sessions.contains_key(&sid) {
            debug!(session_id = %sid, ?event.what, "event for a finished session");
            return;
        }
        match event.what {
            SessionEventKind::LocalSdp { answer, sdp } => {
                let sdp = if answer {
                    proto::SdpMessage::Answer { sdp }
                } else {
                    proto::SdpMessage::Offer { sdp }
                };
                debug!(peer = self.index, session_id = %sid, answer, "sending local SDP");
                let msg = proto::PeerMessage {
                    session_id: sid,
                    peer_message: proto::PeerMessageInner::Sdp(sdp),
                };
                self.send(&proto::IncomingMessage::Peer(msg)).await;
            }
            SessionEventKind::Ice { mline, candidate } => {
                let msg = proto::PeerMessage {
                    session_id: sid,
                    peer_message: proto::PeerMessageInner::Ice {
                        candidate,
                        sdp_m_line_index: mline,
                    },
                };
                self.send(&proto::IncomingMessage::Peer(msg)).await;
            }
            SessionEventKind::State(state) => self.on_state(&sid, state).await,
            SessionEventKind::CapsReady => self.negotiate(&sid).await,
            SessionEventKind::Failed(reason) => {
                warn!(peer = self.index, session_id = %sid, "negotiation failed: {reason}");
                self.end_session(&sid, true).await;
            }
            SessionEventKind::Valve { kind, open } => {
                let Some(session) = self.sessions.get(&sid) else {
                    return;
                };
                if session.set_flowing(kind, open) {
                    let event = if open { "media" } else { "media_stopped" };
                    info!(peer = self.index, session_id = %sid, "{} {event}", kind.as_str());
                    emit(json!({
                        "event": event,
                        "peer_id": self.id(),
                        "session_id": sid,
                        "kind": kind.as_str(),
                    }));
                }
            }
        }
    }

    /// Connection state changes: start media on connect, drop failed sessions.
    async fn on_state(&mut self, sid: &str, state: WebRTCPeerConnectionState) {
        debug!(peer = self.index, session_id = %sid, ?state, "connection state");
        match state {
            WebRTCPeerConnectionState::Connected => {
                let args = &self.shared.args;
                let Some(session) = self.sessions.get_mut(sid) else {
                    return;
                };
                if session.connected_at.is_some() {
                    return;
                }
                let now = Instant::now();
                session.connected_at = Some(now);
                let kinds: Vec<Kind> = session.branches.iter().map(|b| b.kind).collect();
                for kind in kinds {
                    let delay = match kind {
                        Kind::Video => args.video_delay,
                        Kind::Audio => args.audio_delay,
                    };
                    let stop_after = match kind {
                        Kind::Video => args.video_stop_after,
                        Kind::Audio => None,
                    };
                    if stop_after.is_some_and(|s| s <= delay) {
                        continue; // would stop before it starts
                    }
                    session
                        .timers
                        .push(spawn_timer(&self.tx, sid, delay, kind, true));
                    if let Some(stop_after) = stop_after {
                        session
                            .timers
                            .push(spawn_timer(&self.tx, sid, stop_after, kind, false));
                    }
                }
                self.shared.schedule_resize();
                info!(peer = self.index, session_id = %sid, "peer connection connected");
                emit(json!({"event": "connected", "peer_id": self.id(), "session_id": sid}));
                if self.first_connected.is_none() {
                    self.first_connected = Some(now);
                    if !args.keep_alive {
                        info!(
                            peer = self.index,
                            "sending for {:.3} s",
                            args.duration.as_secs_f64()
                        );
                    }
                }
            }
            WebRTCPeerConnectionState::Failed => {
                warn!(peer = self.index, session_id = %sid, "peer connection failed");
                self.end_session(sid, true).await;
            }
            _ => {}
        }
    }

    /// Ends a session: tells the server (if `notify_server`), reports it and tears it down.
    async fn end_session(&mut self, sid: &str, notify_server: bool) {
        let Some(session) = self.sessions.remove(sid) else {
            return;
        };
        session.close_valves();
        if notify_server {
            let end = proto::EndSessionMessage {
                session_id: sid.to_owned(),
            };
            self.send(&proto::IncomingMessage::EndSession(end)).await;
        }
        emit(json!({"event": "session_ended", "peer_id": self.id(), "session_id": sid}));
        let pipeline = self.shared.media.pipeline.clone();
        self.teardowns
            .push(tokio::spawn(session.teardown(pipeline)));
    }

    /// Stops media, ends all sessions, closes the WebSocket and reports `done`.
    async fn shutdown(mut self, exit: Exit) -> Outcome {
        let stopped_at = Instant::now();
        info!(peer = self.index, ?exit, "stopping");
        for session in self.sessions.values() {
            session.close_valves();
        }
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for sid in ids {
            self.end_session(&sid, true).await;
        }
        if let Some(mut ws) = self.ws.take() {
            let close = async {
                ws.close(None).await?;
                while let Some(msg) = ws.next().await {
                    msg?;
                }
                Ok::<_, tungstenite::Error>(())
            };
            match tokio::time::timeout(WS_CLOSE_TIMEOUT, close).await {
                Ok(Ok(())) | Ok(Err(tungstenite::Error::ConnectionClosed)) => {}
                Ok(Err(e)) => debug!(peer = self.index, "WebSocket close: {e}"),
                Err(_) => debug!(peer = self.index, "WebSocket close timed out"),
            }
        }
        let sent = self
            .first_connected
            .map(|t| stopped_at.saturating_duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        if let Some(peer_id) = &self.peer_id {
            emit(json!({
                "event": "done",
                "peer_id": peer_id,
                "sent_secs": (sent * 1000.0).round() / 1000.0,
            }));
        }
        for teardown in self.teardowns.drain(..) {
            let _ = teardown.await;
        }
        match exit {
            Exit::ConnectTimeout => {
                eprintln!(
                    "callrec-testpeer: error: peer {} ({}) got no connected session within {} s",
                    self.index,
                    self.id(),
                    CONNECT_TIMEOUT.as_secs()
                );
                Outcome::NeverConnected
            }
            Exit::SignallingLost => {
                eprintln!(
                    "callrec-testpeer: error: peer {} ({}) lost the signalling \
                     connection before any session connected",
                    self.index,
                    self.id()
                );
                Outcome::NeverConnected
            }
            Exit::Stopped | Exit::Deadline => Outcome::Completed,
        }
    }
}

/// Sends a valve event for `kind` after `delay`.
fn spawn_timer(tx: &EventTx, sid: &str, delay: Duration, kind: Kind, open: bool) -> JoinHandle<()> {
    let (tx, sid) = (tx.clone(), sid.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        notify(&tx, &sid, SessionEventKind::Valve { kind, open });
    })
}

/// Sends [`SessionEventKind::CapsReady`] once every pad has caps (at most after 1 s).
///
/// Negotiating with known caps puts the SSRCs (and H.264 profile) in the SDP.
fn wait_for_caps(pads: &[gst::Pad], tx: &EventTx, sid: &str) -> JoinHandle<()> {
    const MAX_WAIT: Duration = Duration::from_secs(1);
    const POLL: Duration = Duration::from_millis(20);
    let pads: Vec<_> = pads.iter().map(|p| p.downgrade()).collect();
    let (tx, sid) = (tx.clone(), sid.to_owned());
    tokio::spawn(async move {
        let give_up = Instant::now() + MAX_WAIT;
        while Instant::now() < give_up {
            let ready = pads
                .iter()
                .all(|p| p.upgrade().is_none_or(|p| p.current_caps().is_some()));
            if ready {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        notify(&tx, &sid, SessionEventKind::CapsReady);
    })
}

/// True if the message comes from inside a session bin (not the shared encoders).
fn from_session(msg: &gst::Message) -> bool {
    let mut obj = msg.src().cloned();
    while let Some(o) = obj {
        if o.name().starts_with("session-") {
            return true;
        }
        obj = o.parent();
    }
    false
}

/// Watches the pipeline bus: logs problems, stops everything on shared failures.
async fn watch_bus(pipeline: gst::Pipeline, stop: watch::Sender<Stop>) {
    let Some(bus) = pipeline.bus() else { return };
    let mut messages = bus.stream();
    while let Some(msg) = messages.next().await {
        match msg.view() {
            gst::MessageView::Error(err) => {
                let src = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                if from_session(&msg) {
                    warn!(
                        "session error from {src}: {} ({:?})",
                        err.error(),
                        err.debug()
                    );
                } else {
                    error!(
                        "pipeline error from {src}: {} ({:?})",
                        err.error(),
                        err.debug()
                    );
                    let _ = stop.send(Stop::Fatal);
                }
            }
            gst::MessageView::Warning(w) => {
                let src = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                warn!(
                    "pipeline warning from {src}: {} ({:?})",
                    w.error(),
                    w.debug()
                );
            }
            gst::MessageView::Latency(_) => {
                let _ = pipeline.recalculate_latency();
            }
            _ => {}
        }
    }
}

/// Sets `stop` to graceful on SIGTERM or SIGINT.
async fn watch_signals(stop: watch::Sender<Stop>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(Stop::Graceful);
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
    stop.send_if_modified(|s| {
        if *s == Stop::Running {
            *s = Stop::Graceful;
            true
        } else {
            false
        }
    });
}

/// Builds the pipeline, runs all peers and returns the exit status.
async fn run(args: Args) -> Result<ExitCode> {
    gst::init().context("cannot initialize GStreamer")?;
    let media = Media::new(&args)?;
    let pipeline = media.pipeline.clone();
    pipeline
        .set_state(gst::State::Playing)
        .context("cannot start the media pipeline")?;

    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let bus_task = tokio::spawn(watch_bus(pipeline.clone(), stop_tx.clone()));
    let signal_task = tokio::spawn(watch_signals(stop_tx.clone()));

    let shared = Arc::new(Shared {
        args,
        media,
        resize: OnceLock::new(),
    });
    let peers: Vec<_> = (0..shared.args.peers)
        .map(|i| tokio::spawn(Peer::run(shared.clone(), i, stop_rx.clone())))
        .collect();
    let mut outcomes = Vec::new();
    for peer in peers {
        outcomes.push(
            peer.await
                .unwrap_or_else(|e| Outcome::Failed(anyhow!("peer task: {e}"))),
        );
    }
    let fatal = *stop_rx.borrow() == Stop::Fatal;
    if let Some(resize) = shared.resize.get() {
        resize.abort();
    }

    signal_task.abort();
    let pipeline_stop = pipeline.clone();
    tokio::task::spawn_blocking(move || pipeline_stop.set_state(gst::State::Null))
        .await
        .context("pipeline shutdown task")?
        .context("cannot stop the media pipeline")?;
    bus_task.abort();

    let mut code = 0;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Completed => {}
            Outcome::NeverConnected => code = code.max(EXIT_NOT_CONNECTED),
            Outcome::Failed(e) => {
                eprintln!("callrec-testpeer: error: peer {i}: {e:#}");
                code = code.max(1);
            }
        }
    }
    if fatal {
        eprintln!("callrec-testpeer: error: the media pipeline failed (see log)");
        code = code.max(1);
    }
    Ok(ExitCode::from(code))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Usage errors exit with 1: status 2 means "no session connected".
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("callrec-testpeer: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
