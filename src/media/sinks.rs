//! A template bin's sinks: made fit for a live pipeline, their files listed, and whether they
//! have all seen EOS.

use std::path::Path;

use gst::prelude::*;

/// Prepares a template bin's sinks to join a running live pipeline (no async state change,
/// written as fast as data comes) and lists the files they write, relative to the call.
///
/// A `filesink` left at its default buffering writes straight through to the kernel: its
/// 64 kB user-space buffer can hold many seconds of a quiet stream, which a crash of the
/// daemon would lose. The cost is a write per muxed block.
pub fn sink_files(bin: &gst::Bin, call_dir: &Path) -> Vec<String> {
    let mut files = vec![];
    for sink in bin.iterate_sinks().into_iter().flatten() {
        for (prop, value) in [("async", false), ("sync", false)] {
            if sink.find_property(prop).is_some() {
                sink.set_property(prop, value);
            }
        }
        let is_filesink = sink.factory().is_some_and(|f| f.name() == "filesink");
        if is_filesink {
            let mode = sink.property_value("buffer-mode");
            let default = glib::EnumValue::from_value(&mode).is_some_and(|(_, v)| v.value() == -1);
            if default {
                sink.set_property_from_str("buffer-mode", "unbuffered");
            }
        }
        for prop in ["location", "playlist-location"] {
            if sink.find_property(prop).is_some() {
                if let Some(location) = sink.property::<Option<String>>(prop) {
                    let rel = Path::new(&location)
                        .strip_prefix(call_dir)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or(location);
                    files.push(rel);
                }
            }
        }
    }
    files
}

/// True once every sink element in a bin has seen EOS on all its sink pads (a sticky event).
pub fn all_sinks_eos(bin: &gst::Bin) -> bool {
    bin.iterate_sinks().into_iter().flatten().all(|sink| {
        sink.sink_pads()
            .iter()
            .all(|p| p.sticky_event::<gst::event::Eos>(0).is_some())
    })
}
