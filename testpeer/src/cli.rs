//! The command line: what to send, how, to which signalling server, WHIP endpoint or Janus
//! VideoRoom, and for how long.

use std::time::Duration;

use clap::{ArgGroup, CommandFactory, Parser, ValueEnum};

/// Video codec choices.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    None,
}

/// Audio codec choices.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum AudioCodec {
    Opus,
    None,
}

/// Synthetic WebRTC producer for the gst-webrtc-signalling-server protocol, WHIP or a Janus
/// VideoRoom.
// Exactly one way to reach the other side: the signalling server, a WHIP endpoint or Janus.
// The --whip-* and --janus-* options conflict with the other targets rather than require
// their own: clap lets a requirement go when the required argument conflicts with one given,
// so `requires` would never fire.
#[derive(Parser, Debug, Clone)]
#[command(name = "callrec-testpeer", version, about, long_about = None)]
#[command(group(ArgGroup::new("target").required(true).args(["url", "whip", "janus"])))]
pub struct Args {
    /// Signalling server WebSocket URL, e.g. ws://127.0.0.1:8443
    #[arg(long)]
    pub url: Option<String>,
    /// Publish over WHIP (RFC 9725) to this endpoint instead of the signalling server, e.g.
    /// http://127.0.0.1:8080/whip/standup?name=alice (one peer per process)
    #[arg(long, value_name = "URL", value_parser = parse_whip_url)]
    pub whip: Option<url::Url>,
    /// Bearer token for the WHIP endpoint (sent as `Authorization: Bearer TOKEN` on every
    /// request)
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["url", "janus"])]
    pub whip_token: Option<String>,
    /// WHIP: send the offer at once and trickle later ICE candidates by PATCH (default: wait
    /// for ICE gathering, at most 5 s, and send every candidate in the offer)
    #[arg(long, conflicts_with_all = ["url", "janus"])]
    pub whip_trickle: bool,
    /// WHIP: exit at the end without DELETE of the session (a client that vanishes)
    #[arg(long, conflicts_with_all = ["url", "janus"])]
    pub whip_no_delete: bool,
    /// Publish into a Janus VideoRoom through Janus's WebSocket API instead, e.g.
    /// ws://10.0.0.1:8188 (one publisher per process; needs --janus-room)
    #[arg(long, value_name = "URL", value_parser = parse_ws_url)]
    pub janus: Option<String>,
    /// Janus: the VideoRoom to publish in (its numeric id)
    #[arg(long, value_name = "ROOM", conflicts_with_all = ["url", "whip"])]
    pub janus_room: Option<u64>,
    /// Janus: a file whose first line is the room's PIN
    #[arg(long, value_name = "FILE", conflicts_with_all = ["url", "whip"])]
    pub janus_pin_file: Option<std::path::PathBuf>,
    /// Janus: a file whose first line is Janus's API secret (sent as `apisecret`)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["url", "whip"])]
    pub janus_api_secret_file: Option<std::path::PathBuf>,
    /// Janus: the publisher's display name in the room (any text; none by default)
    #[arg(long, value_name = "NAME", allow_hyphen_values = true, conflicts_with_all = ["url", "whip"])]
    pub display: Option<String>,
    /// Janus: SECS after the first connection, unpublish, then publish again on the same
    /// handle (the same feed id, a new PeerConnection)
    #[arg(long, value_name = "SECS", value_parser = parse_secs, conflicts_with_all = ["url", "whip"])]
    pub janus_republish_after: Option<Duration>,
    /// Janus: seconds between the unpublish of --janus-republish-after and the new publish
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_secs, requires = "janus_republish_after")]
    pub janus_republish_gap: Duration,
    /// Only answer: refuse a `startSession` that carries no offer of the consumer's (a
    /// producer that never offers)
    #[arg(long, conflicts_with_all = ["whip", "janus"])]
    pub answer_only: bool,
    /// Producer meta data announced with setPeerStatus (a JSON object)
    #[arg(long, default_value = "{}", value_parser = parse_meta, conflicts_with_all = ["whip", "janus"])]
    pub meta: serde_json::Value,
    /// Video codec, or `none` for an audio-only producer
    #[arg(long, value_enum, default_value_t = VideoCodec::Vp8)]
    pub video: VideoCodec,
    /// Audio codec, or `none` for a video-only producer
    #[arg(long, value_enum, default_value_t = AudioCodec::Opus)]
    pub audio: AudioCodec,
    /// Video width in pixels
    #[arg(long, default_value_t = 640, value_parser = clap::value_parser!(u32).range(16..=7680))]
    pub width: u32,
    /// Video height in pixels
    #[arg(long, default_value_t = 360, value_parser = clap::value_parser!(u32).range(16..=4320))]
    pub height: u32,
    /// Video frame rate (frames per second)
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=120))]
    pub fps: u32,
    /// Video bitrate in kbit/s
    #[arg(long, default_value_t = 800, value_parser = clap::value_parser!(u32).range(16..=100_000))]
    pub bitrate: u32,
    /// videotestsrc pattern name (smpte, ball, snow, ...)
    #[arg(long, default_value = "smpte")]
    pub pattern: String,
    /// Audio sine frequency in Hz
    #[arg(long, default_value_t = 440.0, value_parser = parse_freq)]
    pub freq: f64,
    /// Seconds to send after the first session of a peer is connected
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub duration: Duration,
    /// Seconds after connection before video starts flowing
    #[arg(long, default_value = "0", value_parser = parse_secs)]
    pub video_delay: Duration,
    /// Seconds after connection before audio starts flowing
    #[arg(long, default_value = "0", value_parser = parse_secs)]
    pub audio_delay: Duration,
    /// Seconds after connection when video stops flowing (audio goes on)
    #[arg(long, value_parser = parse_secs)]
    pub video_stop_after: Option<Duration>,
    /// Solid video colour instead of a test pattern, as 0xRRGGBB (e.g. 0xff0000 for red)
    #[arg(long, value_name = "0xRRGGBB", value_parser = parse_color, conflicts_with = "pattern")]
    pub color: Option<u32>,
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
    pub marker_interval: Option<Duration>,
    /// Seconds after the first session of the process connects when the video resolution
    /// changes to --resize-to (prints a `resized` event once the encoder uses the new size)
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "resize_to")]
    pub resize_after: Option<Duration>,
    /// New video size for --resize-after, as WIDTHxHEIGHT (e.g. 1280x720)
    #[arg(long, value_name = "WxH", value_parser = parse_size, requires = "resize_after")]
    pub resize_to: Option<Size>,
    /// Number of independent producer connections, all fed by one encode
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub peers: u32,
    /// Keep running after the duration, until killed
    #[arg(long)]
    pub keep_alive: bool,
    /// PEM file of the CAs to trust for wss:// and https:// (default: the public web roots)
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Local IP address ICE may use (repeat for several; default: every interface)
    #[arg(long = "ice-address")]
    pub ice_addresses: Vec<String>,
}

impl Args {
    /// Checks what clap's attributes cannot express; the error prints like clap's own.
    pub fn check(&self) -> Result<(), clap::Error> {
        if self.whip.is_some() && self.peers > 1 {
            // One WHIP session per process: several would publish under the same name.
            return Err(Self::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--whip publishes one peer per process: --peers must be 1 \
                 (start one process per publisher)",
            ));
        }
        if self.janus.is_some() {
            if self.peers > 1 {
                return Err(Self::command().error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--janus publishes one peer per process: --peers must be 1 \
                     (start one process per publisher)",
                ));
            }
            if self.janus_room.is_none() {
                return Err(Self::command().error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "--janus needs --janus-room ROOM",
                ));
            }
        }
        Ok(())
    }
}

/// Parses `--whip`: an absolute http:// or https:// URL.
fn parse_whip_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("invalid URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("the URL has no host".into()),
        other => Err(format!("expected http:// or https://, not {other}://")),
    }
}

/// Parses `--janus`: a ws:// or wss:// URL (Janus's WebSocket transport).
fn parse_ws_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("invalid URL: {e}"))?;
    match url.scheme() {
        "ws" | "wss" if url.host().is_some() => Ok(s.to_owned()),
        "ws" | "wss" => Err("the URL has no host".into()),
        other => Err(format!("expected ws:// or wss://, not {other}://")),
    }
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
pub struct Size {
    pub width: u32,
    pub height: u32,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_sizes_and_intervals_parse_or_say_why_not() {
        assert_eq!(parse_color("0xff0000"), Ok(0xff0000));
        assert_eq!(parse_color("#00FF00"), Ok(0x00ff00));
        assert!(parse_color("0xfff").is_err());
        assert_eq!(
            parse_size("1280x720"),
            Ok(Size {
                width: 1280,
                height: 720
            })
        );
        assert!(parse_size("8x8").is_err());
        assert!(parse_marker_interval("0.1").is_err());
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_meta("[]").is_err());
        assert!(parse_freq("30000").is_err());
        assert!(parse_whip_url("http://127.0.0.1:8080/whip/room?name=a").is_ok());
        assert!(parse_whip_url("ws://127.0.0.1:8080/whip").is_err());
        assert!(parse_whip_url("/whip/room").is_err());
        assert!(parse_ws_url("ws://10.0.0.1:8188").is_ok());
        assert!(parse_ws_url("http://10.0.0.1:8188").is_err());
    }

    #[test]
    fn janus_takes_a_room_and_its_own_options_only() {
        let parse = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("callrec-testpeer").chain(args.iter().copied()))
        };
        let args = parse(&[
            "--janus",
            "ws://h:8188",
            "--janus-room",
            "1234",
            "--display",
            "-rf ../x",
            "--janus-republish-after",
            "3",
        ])
        .unwrap();
        assert!(args.check().is_ok());
        assert_eq!(args.janus_room, Some(1234));
        assert_eq!(args.display.as_deref(), Some("-rf ../x"));
        assert!(parse(&["--janus", "ws://h:8188"]).unwrap().check().is_err());
        assert!(
            parse(&["--janus", "ws://h", "--janus-room", "1", "--peers", "2"])
                .unwrap()
                .check()
                .is_err()
        );
        assert!(parse(&["--url", "ws://h", "--janus-room", "1"]).is_err());
        assert!(parse(&["--janus", "ws://h", "--janus-room", "1", "--whip-trickle"]).is_err());
        assert!(parse(&["--janus", "ws://h", "--url", "ws://h"]).is_err());
    }

    #[test]
    fn url_or_whip_one_of_them() {
        let parse = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("callrec-testpeer").chain(args.iter().copied()))
        };
        assert!(parse(&[]).is_err());
        assert!(parse(&["--url", "ws://h", "--whip", "http://h/whip"]).is_err());
        assert!(parse(&["--url", "ws://h", "--whip-trickle"]).is_err());
        let args = parse(&["--whip", "http://h/whip", "--whip-trickle"]).unwrap();
        assert!(args.whip_trickle && args.url.is_none());
        assert!(args.check().is_ok());
        let args = parse(&["--whip", "http://h/whip", "--peers", "2"]).unwrap();
        assert!(args.check().is_err());
        assert!(parse(&["--url", "ws://h", "--peers", "2"])
            .unwrap()
            .check()
            .is_ok());
    }

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }
}
