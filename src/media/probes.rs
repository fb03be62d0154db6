//! Pad probes callrec uses everywhere: keeping a branch's failure in that branch, dropping
//! data without GStreamer 1.22's criticals, and reading a buffer's running time.

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
