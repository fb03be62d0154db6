//! callrec: a WebRTC call recorder daemon on GStreamer.
//!
//! It joins calls through an app's existing signalling server as an ordinary receive-only
//! peer and records every participant through operator-editable pipeline templates. See the
//! README for the architecture; each module's doc says what it owns.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod gstlog;
pub mod launch;
pub mod names;
pub mod notify;
pub mod offline;
pub mod post;
pub mod priming;
pub mod recording;
pub mod reload;
pub mod remix;
pub mod signalling;
pub mod supervisor;
pub mod template_diagnose;
pub mod templates;
