//! The pieces of mixing that the live mix (`call::mix`) and the offline remix
//! (`offline::remix`) share: where tiles go, who the speaker is, and how a leaving
//! participant's audio fades out; and the live compositor's frame-timed layout changes.

pub mod fade;
pub mod frame_timed;
pub mod layout;
pub mod speaker;

/// The loudest channel's RMS level (dBFS) in a `level` element message.
pub fn loudest_rms_db(level: &gst::StructureRef) -> Option<f64> {
    let rms = level.get::<glib::ValueArray>("rms").ok()?;
    let db = rms
        .iter()
        .filter_map(|v| v.get::<f64>().ok())
        .fold(f64::NEG_INFINITY, f64::max);
    Some(db)
}
