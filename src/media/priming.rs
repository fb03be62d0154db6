//! Encoder priming in MP4: GStreamer 1.22's `avenc_aac` puts its 1024 priming samples at the
//! start of its first packet without saying so, and `mp4mux` writes no edit list for them,
//! so players start MP4 audio ~21 ms late. callrec moves such an encoder's packets 1024
//! samples earlier: the first packet (the priming) is dropped and every later one is
//! restamped, so each lands where its decoded audio belongs. (A negative pad offset does
//! the same on paper, but hands the muxer a packet before its segment, which a live
//! `mp4mux` sometimes answers with an error.)
//!
//! Only bins that also hold an MP4 muxer are changed; gst-launch text cannot set a negative
//! pad offset, so commands printed by `callrec pipelines render` keep the ~21 ms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gst::prelude::*;

/// Encoders whose undeclared priming is compensated, and its length in samples.
const PRIMED_ENCODERS: &[(&str, u64)] = &[("avenc_aac", 1024)];

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
        // The rate is known from the caps, which come before any packet.
        let shift = Arc::new(AtomicU64::new(0));
        let from_caps = shift.clone();
        src.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view()) {
                let rate = caps
                    .caps()
                    .structure(0)
                    .and_then(|s| s.get::<i32>("rate").ok())
                    .filter(|r| *r > 0);
                if let Some(rate) = rate {
                    let ns = samples * 1_000_000_000 / u64::from(rate.unsigned_abs());
                    from_caps.store(ns, Ordering::Relaxed);
                }
            }
            gst::PadProbeReturn::Ok
        });
        src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let by = gst::ClockTime::from_nseconds(shift.load(Ordering::Relaxed));
            if by.is_zero() {
                return gst::PadProbeReturn::Ok;
            }
            let Some(buffer) = info.buffer_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            match buffer.pts() {
                Some(pts) if pts >= by => {
                    let buffer = buffer.make_mut();
                    buffer.set_pts(pts - by);
                    if let Some(dts) = buffer.dts() {
                        buffer.set_dts(dts.saturating_sub(by));
                    }
                    gst::PadProbeReturn::Ok
                }
                // The priming packet (and anything else before the shift) goes.
                // Before the shifted start, or untimed (avenc_aac's last frame at EOS can
                // come without a PTS when its input stopped earlier): mp4mux would refuse it
                // and fail the whole file over 21 ms of audio.
                Some(_) | None => crate::media::probes::consume(info),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PTS of the buffers that leave the encoder's src pad, for buffers stamped `input`.
    fn restamped(description: &str, input: &[u64]) -> Vec<u64> {
        gst::init().unwrap();
        let bin = gst::parse::bin_from_description(description, false).unwrap();
        compensate(&bin);
        let src = bin.by_name("enc").unwrap().static_pad("src").unwrap();
        let seen = Arc::new(std::sync::Mutex::new(vec![]));
        let record = seen.clone();
        // Last in line, after compensate's probes: what the parser would get.
        src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                record.lock().unwrap().push(pts.mseconds());
            }
            crate::media::probes::consume(info)
        });
        let caps = gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4i32)
            .field("rate", 48000i32)
            .field("channels", 2i32)
            .build();
        let _ = bin.set_state(gst::State::Paused);
        let _ = src.push_event(gst::event::StreamStart::new("s"));
        let _ = src.push_event(gst::event::Caps::new(&caps));
        let _ = src.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()));
        for ms in input {
            let mut buffer = gst::Buffer::new();
            buffer
                .get_mut()
                .unwrap()
                .set_pts(gst::ClockTime::from_mseconds(*ms));
            let _ = src.push(buffer);
        }
        let _ = bin.set_state(gst::State::Null);
        let out = seen.lock().unwrap().clone();
        out
    }

    #[test]
    fn aac_into_mp4_moves_1024_samples_earlier() {
        // 48 kHz: 1024 samples are 21.33 ms; the priming packet at 0 goes.
        assert_eq!(
            restamped(
                "avenc_aac name=enc ! aacparse ! mp4mux ! fakesink",
                &[0, 22, 43, 64]
            ),
            vec![0, 21, 42]
        );
        // Other containers keep their timestamps.
        assert_eq!(
            restamped(
                "avenc_aac name=enc ! aacparse ! mpegtsmux ! fakesink",
                &[0, 21, 43]
            ),
            vec![0, 21, 43]
        );
    }
}
