//! Finding and feeding pads: the input pad of a template's element for a kind of stream, and
//! a sink for a track nobody records.

use gst::prelude::*;

use super::Kind;

/// Links a track callrec will not record into a fakesink, so webrtcbin never sees a
/// not-linked error.
pub fn discard(pipeline: &gst::Pipeline, src: &gst::Pad) -> Result<gst::Element, glib::BoolError> {
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()?;
    pipeline.add(&sink)?;
    sink.sync_state_with_parent()?;
    let pad = sink
        .static_pad("sink")
        .ok_or_else(|| glib::bool_error!("fakesink has no sink pad"))?;
    src.link(&pad)
        .map_err(|e| glib::bool_error!("cannot link to fakesink: {e:?}"))?;
    Ok(sink)
}

/// Requests (or finds) the pad on a template's input element that takes `kind`.
pub fn input_pad(element: &gst::Element, kind: Kind) -> Option<gst::Pad> {
    if let Some(pad) = element.static_pad("sink") {
        if pad.peer().is_none() {
            return Some(pad);
        }
    }
    let prefix = format!("{}/", kind.as_str());
    let template = element.pad_template_list().into_iter().find(|t| {
        t.direction() == gst::PadDirection::Sink
            && t.presence() == gst::PadPresence::Request
            && (t.caps().is_any()
                || t.caps()
                    .iter()
                    .any(|s| s.name().starts_with(prefix.as_str())))
    })?;
    element.request_pad(&template, None, None)
}
