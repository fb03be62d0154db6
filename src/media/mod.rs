//! Generic GStreamer helpers used across callrec, independent of calls and templates: probes,
//! pads, sinks, reading SDP offers and their layout, RTP header extensions, the MP4 priming fix, and the GStreamer elements linked
//! into the binary (started with GStreamer itself through [`plugins::init`]).

pub mod layout;
pub mod pads;
pub mod plugins;
pub mod priming;
pub mod probes;
pub mod rtp_header;
pub mod sdp;
pub mod sinks;
pub mod state;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An audio track.
    Audio,
    /// A video track.
    Video,
}

impl Kind {
    /// `audio` or `video`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}
