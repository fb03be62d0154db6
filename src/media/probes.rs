//! Pad probes callrec uses everywhere: keeping a branch's failure in that branch, starting a
//! branch at a keyframe, dropping data without GStreamer 1.22's criticals, and reading a
//! buffer's running time.

use gst::prelude::*;

/// Keeps a branch's failure in that branch: buffers leaving `pad` are handed to its peer here,
/// and whatever the peer returns (a muxer's not-negotiated, a full disk, a stopped mixer), the
/// tee upstream sees OK. Without this, one broken output would stop the track for every other
/// output, and the error would end the participant's session. Add it after any other buffer
/// probe on the pad: it handles the buffer, so later probes would not see it.
pub fn isolate(pad: &gst::Pad) {
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        |pad, info| {
            let Some(peer) = pad.peer() else {
                return gst::PadProbeReturn::Pass;
            };
            match info.data.take() {
                Some(gst::PadProbeData::Buffer(buffer)) => {
                    let _ = peer.chain(buffer);
                }
                Some(gst::PadProbeData::BufferList(list)) => {
                    let _ = peer.chain_list(list);
                }
                other => {
                    info.data = other;
                    return gst::PadProbeReturn::Pass;
                }
            }
            info.flow_res = Ok(gst::FlowSuccess::Ok);
            gst::PadProbeReturn::Handled
        },
    );
}

/// Drops the buffers leaving `pad` until the first keyframe (a buffer without `DELTA_UNIT`),
/// then removes itself. A decoder attached to a video track mid-stream must start there:
/// `av1dec` (libaom) fails on a frame whose references it never saw, and that error ended the
/// participant's whole session, file included; the others decode nothing or garbage until
/// one. Add it before [`isolate`], which would hand the buffer on first.
pub fn drop_until_keyframe(pad: &gst::Pad) {
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        |_, info| {
            let is_key = |b: &gst::BufferRef| !b.flags().contains(gst::BufferFlags::DELTA_UNIT);
            match &mut info.data {
                Some(gst::PadProbeData::Buffer(buffer)) => {
                    if is_key(buffer) {
                        gst::PadProbeReturn::Remove
                    } else {
                        consume(info)
                    }
                }
                Some(gst::PadProbeData::BufferList(list)) => {
                    let Some(first) = list.iter().position(is_key) else {
                        return consume(info);
                    };
                    if first > 0 {
                        let list = list.make_mut();
                        list.remove(0..first);
                    }
                    gst::PadProbeReturn::Remove
                }
                _ => gst::PadProbeReturn::Pass,
            }
        },
    );
}

/// Consumes the buffer, buffer list or event a probe was given, as if it went downstream.
///
/// This is how callrec's probes drop data. GStreamer 1.22 unreferences a NULL object (a
/// critical warning per item) when a probe written in Rust answers DROP, because the Rust
/// bindings have already released the item; HANDLED with the item consumed has no such step.
pub fn consume(info: &mut gst::PadProbeInfo) -> gst::PadProbeReturn {
    drop(info.data.take());
    info.flow_res = Ok(gst::FlowSuccess::Ok);
    gst::PadProbeReturn::Handled
}

/// The running time of a buffer on a pad, from the pad's segment.
pub fn running_time(pad: &gst::Pad, buffer: &gst::BufferRef) -> Option<gst::ClockTime> {
    let pts = buffer.pts().or(buffer.dts())?;
    let segment = pad.sticky_event::<gst::event::Segment>(0)?;
    let segment = segment.segment().downcast_ref::<gst::ClockTime>()?;
    segment.to_running_time(pts)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A src pad the test pushes on, linked to a sink pad (kept alive with it) that notes each
    /// buffer's offset.
    fn rig() -> ((gst::Pad, gst::Pad), Arc<Mutex<Vec<u64>>>) {
        gst::init().unwrap();
        let seen = Arc::new(Mutex::new(vec![]));
        let log = seen.clone();
        let sink = gst::Pad::builder(gst::PadDirection::Sink)
            .chain_function(move |_, _, buffer| {
                log.lock().unwrap().push(buffer.offset());
                Ok(gst::FlowSuccess::Ok)
            })
            .chain_list_function(|_, _, _| Ok(gst::FlowSuccess::Ok))
            .build();
        let src = gst::Pad::builder(gst::PadDirection::Src).build();
        src.set_active(true).unwrap();
        sink.set_active(true).unwrap();
        src.link(&sink).unwrap();
        src.push_event(gst::event::StreamStart::new("s"));
        src.push_event(gst::event::Caps::new(&gst::Caps::new_empty_simple(
            "video/x-av1",
        )));
        src.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()));
        ((src, sink), seen)
    }

    fn frame(offset: u64, delta: bool) -> gst::Buffer {
        let mut buffer = gst::Buffer::new();
        let b = buffer.get_mut().unwrap();
        b.set_offset(offset);
        if delta {
            b.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
        buffer
    }

    #[test]
    fn a_branch_starts_at_its_first_keyframe() {
        let ((src, _sink), seen) = rig();
        drop_until_keyframe(&src);
        for (offset, delta) in [(0, true), (1, true), (2, false), (3, true), (4, false)] {
            assert_eq!(src.push(frame(offset, delta)), Ok(gst::FlowSuccess::Ok));
        }
        // Once a keyframe went through, later delta frames pass: losses are the
        // depayloader's business.
        assert_eq!(*seen.lock().unwrap(), [2, 3, 4]);
    }

    #[test]
    fn a_list_is_cut_at_its_first_keyframe() {
        let ((src, _sink), seen) = rig();
        drop_until_keyframe(&src);
        // Notes what each list carries after the gate (the sink's chain_list ignores them).
        let lists = Arc::new(Mutex::new(vec![]));
        let log = lists.clone();
        src.add_probe(gst::PadProbeType::BUFFER_LIST, move |_, info| {
            if let Some(gst::PadProbeData::BufferList(list)) = &info.data {
                log.lock()
                    .unwrap()
                    .push(list.iter().map(|b| b.offset()).collect::<Vec<_>>());
            }
            gst::PadProbeReturn::Ok
        });
        for frames in [
            &[(0, true)][..],
            &[(1, true), (2, false), (3, true)],
            &[(4, true)],
        ] {
            let mut list = gst::BufferList::new();
            for &(offset, delta) in frames {
                list.get_mut().unwrap().add(frame(offset, delta));
            }
            assert_eq!(src.push_list(list), Ok(gst::FlowSuccess::Ok));
        }
        assert_eq!(*lists.lock().unwrap(), [vec![2, 3], vec![4]]);
        assert!(seen.lock().unwrap().is_empty());
    }
}
