//! Test support, one job per module. Every wait is bounded; everything binds to 127.0.0.1 on
//! ports the OS picks; every child process is killed when its handle drops.
//!
//! - [`processes`]: running commands with time limits, bounded waits, free ports;
//! - [`server`], [`daemon`], [`peer`], [`netjitter`]: the real signalling server, the callrec
//!   daemon, `callrec-testpeer` producers and the `callrec-netjitter` delay injector as child
//!   processes; [`bins`]: where the last two's binaries are (built by cargo on first use);
//! - [`janus`]: a real Janus VideoRoom in a network namespace of its own ([`netns`]), with
//!   callrec, the test peers, and when a test needs them the signalling server, a browser
//!   and its page server run inside it (the one place tests bind beyond loopback: addresses
//!   inside a namespace the test made);
//! - [`browser`]: headless Chromium and Firefox ESR on the pages in `tests/browser/`, with a
//!   page server that collects what the pages report and serves Debian's `janus.js`;
//! - [`fixtures`]: the shipped templates, template directories and config files;
//! - [`http`]: requests to callrec's own HTTP endpoints (WHIP);
//! - [`media`]: what ffprobe says about a file, and whether it plays;
//! - [`manifest`]: call directories and their manifests;
//! - [`analysis`]: what is inside the pictures and the sound (colours, tones, flashes, beeps).
//!
//! Tests use `mod common;` and call the helpers as `common::NAME` (re-exported below), and
//! the analysis helpers as `common::analysis::NAME`. Each test crate uses a subset, hence
//! `dead_code` is allowed.
#![allow(dead_code)]

pub mod analysis;
mod bins;
mod browser;
mod daemon;
mod fixtures;
mod http;
mod janus;
mod manifest;
mod media;
mod netjitter;
mod netns;
mod peer;
mod processes;
mod server;

// Each test crate uses some of these; the others are its neighbours', not unused imports.
#[allow(unused_imports)]
pub use self::{
    bins::{netjitter_bin, testpeer_bin},
    browser::{missing_system_scripts, BrowserKind, BrowserPage},
    daemon::Daemon,
    fixtures::{config_file, pipelines_with, PIPELINES},
    http::{http_request, HttpResponse},
    janus::{Janus, JanusRoom, Unavailable, ADMIN_KEY},
    manifest::{files_of, find_call_dirs, read_manifest, rfc3339_secs, wait_complete, wall_secs},
    media::{
        assert_playable, decode_check, first_video_frame_is_keyframe, last_packet_end, probe,
        DecodeReport, Expect, MediaInfo, StreamInfo,
    },
    netjitter::{JitterReport, NetJitter},
    netns::{free_port_in, is_root, NetNs},
    peer::{peer_id, sent_secs, TestPeer},
    processes::{free_port, run_ok, run_with_timeout, tail_bytes, wait_for},
    server::SignallingServer,
};
