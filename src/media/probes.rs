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
        |_, info| match from_keyframe(info) {
            Cut::Kept => gst::PadProbeReturn::Remove,
            Cut::Dropped(ret) => ret,
            Cut::NotData => gst::PadProbeReturn::Pass,
        },
    );
}

/// The jitterbuffer's event for packets it gave up on (webrtcbin runs it with `do-lost`).
const PACKET_LOST: &str = "GstRTPPacketLost";

/// Least time between two keyframe requests of [`wait_for_keyframe_after_loss`].
const ASK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// After each loss the jitterbuffer reports (its `GstRTPPacketLost` event going through
/// `lost_on`), drops the delta frames leaving `gate` until the next keyframe, and calls `ask`
/// meanwhile (at most every 250 ms) to have one sent. GStreamer's own depayloaders do this
/// themselves (`wait-for-keyframe`, `request-keyframe`); gst-plugins-rs's (0.15) ignore the
/// event and notice a loss only when it cuts a frame in two, so a frame lost whole would go by
/// and the ones after it, which refer to it, would reach the files undecodable and the mixes'
/// decoders (av1dec fails for good on one). Add it before [`isolate`] on `gate`.
pub fn wait_for_keyframe_after_loss(
    lost_on: &gst::Pad,
    gate: &gst::Pad,
    ask: impl Fn() + Send + Sync + 'static,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let lost = Arc::new(AtomicBool::new(false));
    let asked: Arc<Mutex<Option<std::time::Instant>>> = Arc::default();
    let ask = Arc::new(move || {
        let Ok(mut last) = asked.lock() else { return };
        if last.is_none_or(|t| t.elapsed() >= ASK_INTERVAL) {
            *last = Some(std::time::Instant::now());
            drop(last);
            ask();
        }
    });
    let (flag, asker) = (lost.clone(), ask.clone());
    lost_on.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        let is_loss = info.event().is_some_and(|e| {
            e.type_() == gst::EventType::CustomDownstream
                && e.structure().is_some_and(|s| s.name() == PACKET_LOST)
        });
        if is_loss {
            flag.store(true, Ordering::Relaxed);
            asker();
        }
        gst::PadProbeReturn::Ok
    });
    gate.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            if !lost.load(Ordering::Relaxed) {
                return gst::PadProbeReturn::Ok;
            }
            match from_keyframe(info) {
                Cut::Kept => {
                    lost.store(false, Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                }
                Cut::Dropped(ret) => {
                    ask();
                    ret
                }
                Cut::NotData => gst::PadProbeReturn::Ok,
            }
        },
    );
}

/// What [`from_keyframe`] did.
enum Cut {
    /// A keyframe goes on (a list goes on from its first keyframe).
    Kept,
    /// Nothing in it was a keyframe: consumed, return this.
    Dropped(gst::PadProbeReturn),
    /// Not a buffer or list.
    NotData,
}

/// Keeps a probe's buffer if it is a keyframe, or a list from its first keyframe on, and
/// consumes it otherwise.
fn from_keyframe(info: &mut gst::PadProbeInfo) -> Cut {
    let is_key = |b: &gst::BufferRef| !b.flags().contains(gst::BufferFlags::DELTA_UNIT);
    match &mut info.data {
        Some(gst::PadProbeData::Buffer(buffer)) if is_key(buffer) => Cut::Kept,
        Some(gst::PadProbeData::Buffer(_)) => Cut::Dropped(consume(info)),
        Some(gst::PadProbeData::BufferList(list)) => match list.iter().position(is_key) {
            Some(0) => Cut::Kept,
            Some(first) => {
                list.make_mut().remove(0..first);
                Cut::Kept
            }
            None => Cut::Dropped(consume(info)),
        },
        _ => Cut::NotData,
    }
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

/// Drops EOS on `pad`: what flows past it goes on after one stream ends (the m-line of a
/// room's session outlives each stream on it; whoever owns the files ends them).
pub fn drop_eos(pad: &gst::Pad) {
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, |_, info| {
        match info.event() {
            Some(event) if event.type_() == gst::EventType::Eos => gst::PadProbeReturn::Drop,
            _ => gst::PadProbeReturn::Ok,
        }
    });
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

    fn packet_lost() -> gst::Event {
        gst::event::CustomDownstream::new(gst::Structure::new_empty(PACKET_LOST))
    }

    #[test]
    fn after_a_loss_frames_wait_for_a_keyframe() {
        let ((src, _sink), seen) = rig();
        let asks = Arc::new(Mutex::new(0u32));
        let counter = asks.clone();
        wait_for_keyframe_after_loss(&src, &src, move || *counter.lock().unwrap() += 1);
        let push =
            |offset, delta| assert_eq!(src.push(frame(offset, delta)), Ok(gst::FlowSuccess::Ok));
        push(0, false);
        push(1, true);
        assert!(src.push_event(packet_lost()));
        push(2, true);
        push(3, true);
        push(4, false);
        push(5, true);
        // Losses not reported by the jitterbuffer are the depayloader's to handle.
        assert_eq!(*seen.lock().unwrap(), [0, 1, 4, 5]);
        // Asked at the loss; the frames dropped right after it do not ask again so soon.
        assert_eq!(*asks.lock().unwrap(), 1);
        assert!(src.push_event(packet_lost()));
        std::thread::sleep(ASK_INTERVAL);
        push(6, true);
        assert_eq!(
            *asks.lock().unwrap(),
            2,
            "asks again once the interval is over"
        );
        push(7, false);
        assert_eq!(*seen.lock().unwrap(), [0, 1, 4, 5, 7]);
    }
}
