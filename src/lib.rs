//! callrec: a WebRTC call recorder daemon on GStreamer.
//!
//! It joins calls through an app's existing signalling server as an ordinary receive-only
//! peer and records every participant through operator-editable pipeline templates. One
//! folder per part of the data flow: `signalling` (protocols) → `supervisor` (the call
//! table) → `call` (one pipeline per call) → `recording` (call directory, manifest) →
//! `offline` (post-processing, remix, render); `templates` loads and checks the pipeline
//! templates, `media` and `mix` hold the GStreamer helpers and mixing pieces they share, and
//! `daemon` wires it all together. See the README's architecture section.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod media;
pub mod mix;
pub mod names;
pub mod offline;
pub mod recording;
pub mod signalling;
pub mod supervisor;
pub mod templates;
