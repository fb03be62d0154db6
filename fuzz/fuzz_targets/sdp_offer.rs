//! A producer's SDP offer (untrusted): the tracks callrec reads from it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        gst::init().expect("GStreamer initialises");
    },
    |sdp: &str| {
        if let Ok((_, tracks)) = callrec::media::sdp::offered_tracks(sdp) {
            assert!(!tracks.is_empty());
        }
    }
);
