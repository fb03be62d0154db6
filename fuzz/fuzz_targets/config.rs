//! The TOML config: parsing and validating never panic, and a valid config's durations are
//! usable as they are.
#![no_main]

use callrec::config::{secs, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(config) = Config::parse(text) else {
        return;
    };
    if config.validate().is_ok() {
        let (s, r, p) = (&config.signalling, &config.recording, &config.post);
        for value in [
            s.connect_timeout_secs,
            s.reconnect_min_secs,
            s.reconnect_max_secs,
            s.negotiation_timeout_secs,
            r.linger_secs,
            r.track_wait_secs,
            r.stop_grace_secs,
            r.media_timeout_secs,
            p.timeout_secs,
        ] {
            let _ = secs(value);
        }
    }
});
