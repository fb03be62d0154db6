//! Encoder priming in MP4: GStreamer 1.22's `avenc_aac` puts its 1024 priming samples at the
//! start of its first packet without saying so, and `mp4mux` writes no edit list for them,
//! so players start MP4 audio ~21 ms late. callrec moves such an encoder's output 1024
//! samples earlier (a negative pad offset): the priming packet falls before the segment, the
//! muxer drops it, and each later packet lands where its decoded audio belongs.
//!
//! Only bins that also hold an MP4 muxer are changed; gst-launch text cannot set a negative
//! pad offset, so commands printed by `callrec pipelines render` keep the ~21 ms.

use gst::prelude::*;

/// Encoders whose undeclared priming is compensated, and its length in samples.
const PRIMED_ENCODERS: &[(&str, i64)] = &[("avenc_aac", 1024)];

/// Muxers that write no edit list for encoder priming.
const MUXERS_WITHOUT_PRIMING: &[&str] = &["mp4mux", "qtmux", "isomp4mux"];

/// Compensates the priming of every known encoder in `bin`, if `bin` also writes MP4.
pub fn compensate(bin: &gst::Bin) {
    let elements: Vec<gst::Element> = bin.iterate_recurse().into_iter().flatten().collect();
    let factory = |e: &gst::Element| e.factory().map(|f| f.name().to_string());
    let writes_mp4 = elements
        .iter()
        .any(|e| factory(e).is_some_and(|f| MUXERS_WITHOUT_PRIMING.contains(&f.as_str())));
    if !writes_mp4 {
        return;
    }
    for element in &elements {
        let Some(name) = factory(element) else {
            continue;
        };
        let Some(&(_, samples)) = PRIMED_ENCODERS.iter().find(|(f, _)| *f == name) else {
            continue;
        };
        let Some(src) = element.static_pad("src") else {
            continue;
        };
        // The rate is known once caps flow; the offset must be in place before the segment.
        src.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |pad, info| {
            let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view()) else {
                return gst::PadProbeReturn::Ok;
            };
            let rate = caps
                .caps()
                .structure(0)
                .and_then(|s| s.get::<i32>("rate").ok())
                .filter(|r| *r > 0);
            if let Some(rate) = rate {
                let ns = samples * 1_000_000_000 / i64::from(rate);
                pad.set_offset(-ns);
            }
            gst::PadProbeReturn::Remove
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_after_caps(description: &str) -> i64 {
        gst::init().unwrap();
        let bin = gst::parse::bin_from_description(description, false).unwrap();
        compensate(&bin);
        let enc = bin.by_name("enc").unwrap();
        let src = enc.static_pad("src").unwrap();
        let caps = gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4i32)
            .field("rate", 48000i32)
            .field("channels", 2i32)
            .build();
        // Run the probe as a caps event would.
        let _ = bin.set_state(gst::State::Paused);
        let _ = src.push_event(gst::event::StreamStart::new("s"));
        let _ = src.push_event(gst::event::Caps::new(&caps));
        let offset = src.offset();
        let _ = bin.set_state(gst::State::Null);
        offset
    }

    #[test]
    fn aac_into_mp4_moves_1024_samples_earlier() {
        assert_eq!(
            offset_after_caps("avenc_aac name=enc ! aacparse ! mp4mux ! fakesink"),
            -21_333_333
        );
        // Other containers keep their timestamps.
        assert_eq!(
            offset_after_caps("avenc_aac name=enc ! aacparse ! mpegtsmux ! fakesink"),
            0
        );
    }
}
