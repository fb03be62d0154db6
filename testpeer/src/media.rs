//! The shared media: one live source and encoder per track, encoded once per process and
//! fed through a `tee` to every session; the RTP payloading each session puts after it; and
//! the handles that change the video size mid-stream (`--resize-after`).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use gst::prelude::*;
use tokio::time::Instant;
use tracing::info;

use crate::cli::{Args, AudioCodec, Size, VideoCodec};
use crate::markers::Markers;

/// RTP payload type used for video.
const VIDEO_PT: u32 = 96;

/// RTP payload type used for audio.
const AUDIO_PT: u32 = 97;

/// Creates a GStreamer element, with a readable error when the plugin is missing.
pub fn make(factory: &str) -> Result<gst::Element> {
    gst::ElementFactory::make(factory)
        .build()
        .with_context(|| format!("cannot create GStreamer element `{factory}` (plugin missing?)"))
}

/// Media kind of a track.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Video,
    Audio,
}

impl Kind {
    /// Name used in events and pad names.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Video => "video",
            Kind::Audio => "audio",
        }
    }
}

/// RTP payloading of one track (per session, after the shared encoder).
#[derive(Copy, Clone, Debug)]
pub enum Payloading {
    Vp8,
    Vp9,
    H264,
    Opus,
}

impl Payloading {
    /// Media kind carried by this payloading.
    pub fn kind(self) -> Kind {
        match self {
            Payloading::Opus => Kind::Audio,
            _ => Kind::Video,
        }
    }

    /// Creates a configured payloader element.
    pub fn make_payloader(self) -> Result<gst::Element> {
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

    /// The RTP encoding name, as in SDP.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Payloading::Vp8 => "VP8",
            Payloading::Vp9 => "VP9",
            Payloading::H264 => "H264",
            Payloading::Opus => "OPUS",
        }
    }

    /// RTP caps: payloader output restriction and transceiver codec preferences.
    pub fn rtp_caps(self) -> gst::Caps {
        let pt = match self.kind() {
            Kind::Video => VIDEO_PT,
            Kind::Audio => AUDIO_PT,
        };
        self.rtp_caps_with_pt(pt)
    }

    /// [`Payloading::rtp_caps`] with the payload type a consumer's offer chose.
    pub fn rtp_caps_with_pt(self, pt: u32) -> gst::Caps {
        let (media, rate) = match self.kind() {
            Kind::Video => ("video", 90_000),
            Kind::Audio => ("audio", 48_000),
        };
        let name = self.encoding_name();
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
pub struct Track {
    pub payloading: Payloading,
    pub tee: gst::Element,
}

/// The process-wide pipeline with the shared encoders.
pub struct Media {
    pub pipeline: gst::Pipeline,
    pub tracks: Vec<Track>,
    /// Raw video capsfilter (its caps set the size) and the encoder, for `--resize-to`.
    pub video: Option<VideoControl>,
}

/// Handles on the shared video chain needed to change its size mid-stream.
pub struct VideoControl {
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
    pub async fn resize(&self, size: Size) -> Result<()> {
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

impl Media {
    /// Builds the shared source/encoder part of the pipeline.
    pub fn new(args: &Args) -> Result<Self> {
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
