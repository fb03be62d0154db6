//! Routes GStreamer's own warnings and errors into callrec's log, so operators read one stream.
//!
//! When `GST_DEBUG` is set, GStreamer's log is left as it is: the operator asked for it.

use tracing::{error, warn};

/// Installs the bridge (once, after `gst::init`).
pub fn bridge() {
    if std::env::var_os("GST_DEBUG").is_some() {
        return;
    }
    gst::log::remove_default_log_function();
    gst::log::set_default_threshold(gst::DebugLevel::Warning);
    gst::log::add_log_function(
        |category, level, _file, _function, _line, object, message| {
            let Some(text) = message.get() else {
                return;
            };
            let object = object.map(|o| o.to_string()).unwrap_or_default();
            match level {
                gst::DebugLevel::Error => {
                    error!(target: "gstreamer", category = category.name(), %object, "{text}")
                }
                _ => warn!(target: "gstreamer", category = category.name(), %object, "{text}"),
            }
        },
    );
}
