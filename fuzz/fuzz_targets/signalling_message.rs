//! A text frame from the signalling server (untrusted): parsed into events, and a producer's
//! peer id and meta turned into the call and file names callrec would use.
#![no_main]

use callrec::names;
use callrec::signalling::{gst_webrtc, SignalEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(events) = gst_webrtc::parse(text) else {
        return;
    };
    for event in events {
        if let SignalEvent::ProducerAdded { peer_id, meta } = event {
            let meta = meta.unwrap_or_default();
            let (_, call) = callrec::supervisor::call_key(&peer_id, &meta, "call");
            assert!(names::is_safe_component(&names::safe_name(&call)));
            assert!(names::is_safe_component(&names::participant_name(
                &peer_id, &meta
            )));
        }
    }
});
