//! GStreamer elements linked into callrec's own binary, so that what it records does not
//! depend on which plugin packages a machine has.
//!
//! Today those are two depayloaders from gst-plugins-rs's RTP plugin (crate `gst-plugin-rtp`,
//! plugin `rsrtp`), registered statically right after `gst::init`, through [`init`], wherever
//! callrec starts GStreamer:
//! - `rtpav1depay`: GStreamer 1.22's own plugins (Debian 12) parse and decode AV1 (`av1parse`,
//!   `av1dec`) but have no AV1 depayloader, so without it every AV1 track a browser sends was
//!   skipped;
//! - `rtpvp9depay2`: unlike 1.22's `rtpvp9depay`, it keeps every picture of VP9 with spatial
//!   layers (SVC); see the codec table in `call/media.rs`.
//!
//! Linking the plugin changes nothing else. Its other elements have names of their own
//! (`rtpvp8depay2`, `rtpopusdepay2`...), so the other depayloaders callrec makes by name stay
//! GStreamer's; and every element of it but `rtpav1depay`, which no element of GStreamer's
//! competes with, is demoted to rank `NONE`, so nothing that picks elements by rank
//! (decodebin, autoplugging) starts using them either. Where the machine already has the plugin installed (GStreamer's registry knows
//! `rsrtp`), callrec uses that one and registers nothing: registering the same GObject types
//! twice in one process would fail the installed plugin when it loads.

use std::sync::OnceLock;

use gst::prelude::*;

/// The name GStreamer knows the linked plugin by.
pub const PLUGIN: &str = "rsrtp";

/// The elements of [`PLUGIN`] callrec uses.
pub const USED: &[&str] = &["rtpav1depay", "rtpvp9depay2"];

/// The elements of [`PLUGIN`] that keep their rank; the others are demoted to `NONE`.
const RANKED: &[&str] = &["rtpav1depay"];

/// Starting GStreamer, or adding callrec's linked elements to it, failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// `gst::init` failed: GStreamer is missing or broken.
    #[error("cannot initialise GStreamer: {0} (install the GStreamer runtime and plugins)")]
    Gstreamer(glib::Error),
    /// The linked RTP plugin could not be registered.
    #[error(
        "cannot register callrec's built-in RTP elements ({used}): {0}; AV1 tracks are skipped \
         and VP9 falls back to GStreamer's rtpvp9depay (which loses pictures of VP9 SVC) until \
         GStreamer's Rust RTP plugin (gst-plugins-rs) is installed",
        used = USED.join(", ")
    )]
    Register(glib::BoolError),
}

/// Where the [`USED`] elements come from in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// callrec registered its linked copy.
    Registered,
    /// The machine's GStreamer already has them; callrec's copy is unused.
    Installed,
}

/// Initialises GStreamer and registers the linked elements (once per process; later calls
/// return the first outcome). A failed registration is not fatal: callrec runs without AV1
/// and with GStreamer's VP9 depayloader, and the caller decides how to say so.
pub fn init() -> Result<Builtin, PluginError> {
    gst::init().map_err(PluginError::Gstreamer)?;
    static REGISTERED: OnceLock<Result<Builtin, PluginError>> = OnceLock::new();
    REGISTERED.get_or_init(register).clone()
}

fn register() -> Result<Builtin, PluginError> {
    // Any installed copy, even one too old to have every element callrec uses, wins: its
    // types and callrec's cannot both live in one process.
    if gst::Registry::get().find_plugin(PLUGIN).is_some() {
        return Ok(Builtin::Installed);
    }
    gstrsrtp::plugin_register_static().map_err(PluginError::Register)?;
    for feature in gst::Registry::get().features_by_plugin(PLUGIN) {
        if !RANKED.contains(&feature.name().as_str()) {
            feature.set_rank(gst::Rank::NONE);
        }
    }
    Ok(Builtin::Registered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::media::CODECS;

    fn plugin_of(factory: &str) -> String {
        gst::ElementFactory::find(factory)
            .and_then(|f| f.plugin_name())
            .map(|p| p.to_string())
            .unwrap_or_else(|| panic!("{factory} is not installed"))
    }

    #[test]
    fn av1_depayloader_is_available() {
        let first = init().unwrap();
        // A second init (a reload) is harmless and says the same.
        assert_eq!(init().unwrap(), first);
        assert_eq!(plugin_of("rtpav1depay"), PLUGIN);
        let av1 = crate::call::media::codec_for("AV1").unwrap();
        assert!(av1.available(), "{av1:?}");
        assert!(gst::ElementFactory::find(av1.decoder).is_some());
    }

    /// VP9 uses the linked depayloader, the other codecs the ones callrec used before the
    /// plugin was linked, and autoplugging still prefers GStreamer's own.
    #[test]
    fn other_codecs_keep_gstreamers_depayloaders() {
        if init().unwrap() == Builtin::Installed {
            return; // the machine's own plugin, at the machine's own ranks
        }
        for codec in CODECS {
            let expected = match codec.encoding {
                "AV1" | "VP9" => PLUGIN,
                _ => "rtp",
            };
            assert_eq!(plugin_of(codec.depay()), expected, "{}", codec.depay());
        }
        for feature in gst::Registry::get().features_by_plugin(PLUGIN) {
            let name = feature.name();
            if !RANKED.contains(&name.as_str()) {
                assert_eq!(feature.rank(), gst::Rank::NONE, "{name}");
            }
        }
        for encoding in ["VP8", "VP9", "OPUS"] {
            let caps = gst::Caps::builder("application/x-rtp")
                .field("encoding-name", encoding)
                .build();
            let mut depays = gst::ElementFactory::factories_with_type(
                gst::ElementFactoryType::DEPAYLOADER,
                gst::Rank::MARGINAL,
            )
            .into_iter()
            .filter(|f| f.can_sink_any_caps(&caps))
            .collect::<Vec<_>>();
            depays.sort_by_key(|f| std::cmp::Reverse(f.rank()));
            let best = depays.first().unwrap_or_else(|| panic!("{encoding}"));
            assert_eq!(
                best.plugin_name().as_deref(),
                Some("rtp"),
                "{encoding}: {}",
                best.name()
            );
        }
    }

    /// What the depayloader gives is what callrec's AV1 chain and the Matroska templates take.
    #[test]
    fn av1_goes_from_rtp_into_matroska() {
        init().unwrap();
        let av1 = crate::call::media::codec_for("AV1").unwrap();
        // The payloader takes one OBU a buffer, hence the parser before it.
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers=5 ! video/x-raw,width=64,height=64 \
             ! av1enc usage-profile=realtime cpu-used=8 ! av1parse ! rtpav1pay \
             ! {} ! {} ! matroskamux ! fakesink",
            av1.depay(),
            av1.parse.unwrap()
        ))
        .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let msg = pipeline
            .bus()
            .unwrap()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(30),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("neither EOS nor an error within 30 s");
        pipeline.set_state(gst::State::Null).unwrap();
        assert_eq!(msg.type_(), gst::MessageType::Eos, "{msg:?}");
    }
}
