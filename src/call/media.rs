//! What callrec knows about codecs: how to depayload and parse each one, and the element
//! chain it builds for an incoming track (`webrtcbin src → depayloader → parser → tee`).

use gst::prelude::*;

use crate::templates::Kind;

/// One codec callrec can record without transcoding.
#[derive(Debug, PartialEq, Eq)]
pub struct Codec {
    /// RTP `encoding-name`, upper case.
    pub encoding: &'static str,
    /// Short name for files and the manifest.
    pub name: &'static str,
    /// Audio or video.
    pub kind: Kind,
    /// Depayloader elements, most preferred first: callrec uses the first one installed.
    pub depays: &'static [&'static str],
    /// Parser element, where the stream needs one to carry caps and keyframe flags.
    pub parse: Option<&'static str>,
    /// Media type after depayloading (what templates list in `# media:`).
    pub media_type: &'static str,
    /// Decoder, for live mixes.
    pub decoder: &'static str,
}

/// Every codec callrec knows. Whether it can be used depends on the installed plugins.
pub const CODECS: &[Codec] = &[
    Codec {
        encoding: "VP8",
        name: "vp8",
        kind: Kind::Video,
        depays: &["rtpvp8depay"],
        parse: None,
        media_type: "video/x-vp8",
        decoder: "vp8dec",
    },
    Codec {
        encoding: "VP9",
        name: "vp9",
        kind: Kind::Video,
        // gst-plugins-rs's depayloader (linked into callrec, src/media/plugins.rs) first:
        // GStreamer 1.22's loses most pictures of a stream with spatial layers (VP9 SVC, what
        // browsers send for `scalabilityMode: "L3T3_KEY"`): from Chromium 156 sending 19
        // pictures a second, a 5.8 s file got 48 with rtpvp9depay, 115 with rtpvp9depay2
        // (tests/browsers.rs). Without SVC both record every picture.
        depays: &["rtpvp9depay2", "rtpvp9depay"],
        parse: Some("vp9parse"),
        media_type: "video/x-vp9",
        decoder: "vp9dec",
    },
    Codec {
        encoding: "H264",
        name: "h264",
        kind: Kind::Video,
        depays: &["rtph264depay"],
        parse: Some("h264parse"),
        media_type: "video/x-h264",
        decoder: "avdec_h264",
    },
    Codec {
        encoding: "H265",
        name: "h265",
        kind: Kind::Video,
        depays: &["rtph265depay"],
        parse: Some("h265parse"),
        media_type: "video/x-h265",
        decoder: "avdec_h265",
    },
    Codec {
        encoding: "AV1",
        name: "av1",
        kind: Kind::Video,
        depays: &["rtpav1depay"],
        parse: Some("av1parse"),
        media_type: "video/x-av1",
        decoder: "av1dec",
    },
    Codec {
        encoding: "OPUS",
        name: "opus",
        kind: Kind::Audio,
        depays: &["rtpopusdepay"],
        parse: None,
        media_type: "audio/x-opus",
        decoder: "opusdec",
    },
];

/// The codec for an RTP encoding name, if callrec knows it.
pub fn codec_for(encoding: &str) -> Option<&'static Codec> {
    CODECS
        .iter()
        .find(|c| c.encoding.eq_ignore_ascii_case(encoding))
}

impl Codec {
    /// The depayloader callrec uses: the first of [`Codec::depays`] that is installed (the
    /// first listed when none is, for messages).
    pub fn depay(&self) -> &'static str {
        self.depays
            .iter()
            .copied()
            .find(|d| gst::ElementFactory::find(d).is_some())
            .or_else(|| self.depays.first().copied())
            .unwrap_or_default()
    }

    /// The installed plugins can depayload (and parse) it.
    pub fn available(&self) -> bool {
        self.depays
            .iter()
            .any(|d| gst::ElementFactory::find(d).is_some())
            && self
                .parse
                .is_none_or(|p| gst::ElementFactory::find(p).is_some())
    }
}

/// The elements callrec added for one incoming track.
#[derive(Debug, Clone)]
pub struct TrackChain {
    /// The funnel that takes later streams of the same m-line, or a simulcast track's layers
    /// (see [`ChainHead`]).
    pub funnel: Option<gst::Element>,
    /// Where keyframe requests go in: the depayloader, or a simulcast track's funnel.
    pub depay: gst::Element,
    /// A simulcast track's: its layers join [`TrackChain::funnel`].
    pub layered: bool,
    /// Every element of the chain, upstream first.
    pub elements: Vec<gst::Element>,
    /// Where consumers link: one request pad per consumer.
    pub tee: gst::Element,
    /// Running time (ns) at which the track last delivered a buffer; 0 before the first.
    pub last_seen_ns: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn make(factory: &str) -> Result<gst::Element, glib::BoolError> {
    gst::ElementFactory::make(factory).build()
}

/// A tee whose consumers may come and go (it runs with none).
pub fn new_tee() -> Result<gst::Element, glib::BoolError> {
    gst::ElementFactory::make("tee")
        .property("allow-not-linked", true)
        .build()
}

/// `depay ! [parse]` for `codec`, not yet added or linked: the depayloader first.
pub fn depay_and_parse(codec: &Codec) -> Result<Vec<gst::Element>, glib::BoolError> {
    let depay = make(codec.depay())?;
    // Ask the sender for a keyframe when loss leaves the decoder without a reference, and
    // never output frames that depend on missing ones.
    for prop in ["request-keyframe", "wait-for-keyframe"] {
        if depay.find_property(prop).is_some() {
            depay.set_property(prop, true);
        }
    }
    let mut elements = vec![depay];
    if let Some(parse) = codec.parse {
        let parser = make(parse)?;
        // Parameter sets before every keyframe, so a resolution change mid-call decodes from
        // the stream alone (the container's header keeps the first ones).
        if parser.find_property("config-interval").is_some() {
            parser.set_property("config-interval", -1i32);
        }
        elements.push(parser);
    }
    Ok(elements)
}

/// gst-plugins-rs's depayloaders do not wait for a keyframe after a loss the jitterbuffer
/// reports; callrec does it for them on `gate`, after the parser, which is what marks an AV1
/// temporal unit as a keyframe or not. Losses are seen on `lost_on`, upstream of `depay`.
pub fn watch_losses(depay: &gst::Element, lost_on: &gst::Pad, gate: &gst::Pad, codec: &Codec) {
    let linked = depay
        .factory()
        .and_then(|f| f.plugin_name())
        .is_some_and(|p| p == crate::media::plugins::PLUGIN);
    if !linked || codec.kind != Kind::Video {
        return;
    }
    let weak = depay.downgrade();
    crate::media::probes::wait_for_keyframe_after_loss(lost_on, gate, move || {
        if let Some(depay) = weak.upgrade() {
            tracing::debug!(depay = %depay.name(), "packets lost: frames wait for a keyframe, asking for one");
            let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            depay.send_event(event);
        }
    });
}

/// How a track's chain begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainHead {
    /// `src ! depay ! [parse] ! tee`.
    Plain,
    /// `src ! funnel ! depay ! [parse] ! tee`, for an m-line that later streams may reuse
    /// (an SFU gives a departed publisher's m-line to another, and webrtcbin adds a pad for
    /// each new stream): [`TrackChain::funnel`] takes their pads, so one chain, and whatever
    /// it feeds, carries them all.
    Merge,
    /// `funnel ! tee`, for a simulcast track: each layer brings its own `depay ! [parse]`
    /// into [`TrackChain::funnel`] (see `call::simulcast`); `src` is not linked here.
    Layers,
}

/// Builds the chain of [`ChainHead`] for `codec`, links `src` to it (but for layers) and
/// starts it. Runs in webrtcbin's pad-added callback, so it only creates and links elements.
pub fn build_chain(
    pipeline: &gst::Pipeline,
    src: &gst::Pad,
    codec: &Codec,
    head: ChainHead,
) -> Result<TrackChain, glib::BoolError> {
    let funnel = match head {
        ChainHead::Plain => None,
        ChainHead::Merge | ChainHead::Layers => Some(make("funnel")?),
    };
    let mut elements: Vec<gst::Element> = funnel.iter().cloned().collect();
    if head != ChainHead::Layers {
        elements.extend(depay_and_parse(codec)?);
    }
    // Keyframe requests go in at the depayloader; a simulcast track's funnel passes them to
    // every layer's.
    let depay = elements
        .get(usize::from(head == ChainHead::Merge))
        .cloned()
        .ok_or_else(|| glib::bool_error!("the chain has no depayloader"))?;
    let tee = new_tee()?;
    elements.push(tee.clone());
    pipeline.add_many(&elements)?;
    gst::Element::link_many(&elements)?;
    for e in &elements {
        e.sync_state_with_parent()?;
    }
    let mut lost_on = None;
    if head != ChainHead::Layers {
        let sink = match &funnel {
            Some(funnel) => funnel.request_pad_simple("sink_%u"),
            None => depay.static_pad("sink"),
        }
        .ok_or_else(|| glib::bool_error!("the chain has no sink pad"))?;
        if funnel.is_some() {
            crate::media::probes::drop_eos(&sink);
        }
        src.link(&sink)
            .map_err(|e| glib::bool_error!("cannot link webrtcbin to {}: {e:?}", codec.depay()))?;
        lost_on = Some(sink);
    }
    // Whether media still arrives, whatever consumes it (a file, a mix, nothing).
    let last_seen_ns = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = last_seen_ns.clone();
    if let Some(pad) = tee.static_pad("sink") {
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
            if let Some(now) = pad.parent_element().and_then(|e| e.current_running_time()) {
                seen.store(now.nseconds().max(1), std::sync::atomic::Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
        if let Some(lost_on) = &lost_on {
            watch_losses(&depay, lost_on, &pad, codec);
        }
    }
    Ok(TrackChain {
        funnel,
        layered: head == ChainHead::Layers,
        depay,
        elements,
        tee,
        last_seen_ns,
    })
}

/// A track decoded once for every mix that shows it.
#[derive(Debug, Clone)]
pub struct DecodeChain {
    /// Every element, upstream first.
    pub elements: Vec<gst::Element>,
    /// The track tee's pad that feeds it.
    pub tee_pad: gst::Pad,
    /// Raw output: one request pad per mix.
    pub raw_tee: gst::Element,
    /// Audio level meter (audio only), for picking the active speaker.
    pub level: Option<gst::Element>,
}

/// Builds `queue ! decoder ! … ! tee` off a track's tee. The queue is leaky so a slow decoder
/// or a full mixer never holds up the passthrough recording on the same track.
pub fn build_decoder(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    codec: &Codec,
) -> Result<DecodeChain, glib::BoolError> {
    let queue = gst::ElementFactory::make("queue")
        .property("max-size-buffers", 0u32)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", gst::ClockTime::SECOND)
        .property_from_str("leaky", "downstream")
        .build()?;
    let decoder = make(codec.decoder)?;
    // A packet lost on the way, or late past the jitterbuffer on a starved machine, is
    // concealed from its neighbours (and recovered from Opus's in-band FEC where the sender
    // adds it) instead of becoming a stretch of silence: a click in every mix.
    for prop in ["plc", "use-inband-fec"] {
        if decoder.find_property(prop).is_some() {
            decoder.set_property(prop, true);
        }
    }
    let mut elements = vec![queue, decoder];
    let mut level = None;
    match codec.kind {
        Kind::Video => elements.push(make("videoconvert")?),
        Kind::Audio => {
            elements.push(make("audioconvert")?);
            elements.push(make("audioresample")?);
            let meter = gst::ElementFactory::make("level")
                .property("post-messages", true)
                .property("interval", 100_000_000u64)
                .build()?;
            elements.push(meter.clone());
            level = Some(meter);
        }
    }
    let raw_tee = new_tee()?;
    elements.push(raw_tee.clone());
    pipeline.add_many(&elements)?;
    gst::Element::link_many(&elements)?;
    for e in &elements {
        e.sync_state_with_parent()?;
    }
    let tee_pad = crate::media::pads::request_tee_pad(tee)
        .ok_or_else(|| glib::bool_error!("tee gave no pad"))?;
    let sink = elements[0]
        .static_pad("sink")
        .ok_or_else(|| glib::bool_error!("queue has no sink pad"))?;
    tee_pad
        .link(&sink)
        .map_err(|e| glib::bool_error!("cannot link the decoder: {e:?}"))?;
    // The track has usually been flowing for a while when its mixes attach: the decoder
    // starts at the next keyframe, which the call asks for as the track arrives.
    if codec.kind == Kind::Video {
        crate::media::probes::drop_until_keyframe(&tee_pad);
    }
    crate::media::probes::isolate(&tee_pad);
    Ok(DecodeChain {
        elements,
        tee_pad,
        raw_tee,
        level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_lookup() {
        assert_eq!(codec_for("vp8").unwrap().name, "vp8");
        assert_eq!(codec_for("OPUS").unwrap().kind, Kind::Audio);
        assert!(codec_for("PCMU").is_none());
    }

    #[test]
    fn common_codecs_are_available() {
        gst::init().unwrap();
        for name in ["VP8", "VP9", "H264", "OPUS"] {
            let codec = codec_for(name).unwrap();
            assert!(codec.available(), "{name}");
            assert!(gst::ElementFactory::find(codec.decoder).is_some(), "{name}");
        }
    }

    #[test]
    fn matroskamux_inputs_by_kind() {
        gst::init().unwrap();
        let mux = make("matroskamux").unwrap();
        let v = crate::media::pads::input_pad(&mux, Kind::Video).unwrap();
        let a = crate::media::pads::input_pad(&mux, Kind::Audio).unwrap();
        assert!(v.name().starts_with("video_"), "{}", v.name());
        assert!(a.name().starts_with("audio_"), "{}", a.name());
    }
}
