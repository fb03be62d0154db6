//! `manifest.json`: whatever parses serialises, and re-parses to the same text.
#![no_main]

use callrec::recording::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    let once = serde_json::to_string_pretty(&manifest).expect("a parsed manifest serialises");
    let again: Manifest = serde_json::from_str(&once).expect("a written manifest parses");
    let twice = serde_json::to_string_pretty(&again).expect("serialises again");
    assert_eq!(once, twice);
});
