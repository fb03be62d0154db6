//! A template file (operator-written): header parsed, `${variables}` rendered, and the
//! gst-launch texts `callrec pipelines render` builds from it (test sources, shell command).
#![no_main]

use std::path::Path;

use callrec::{offline::launch, templates::Template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(template) = Template::parse(Path::new("fuzz.pipeline"), text) else {
        return;
    };
    if let Ok(body) = template.render(&template.sample_vars()) {
        let _ = launch::launch_command(&body, Some(Path::new("/tmp/callrec fuzz")));
    }
    // Three participants: several instances, so element names are made unique too.
    let out_dir = Path::new("/tmp/callrec-fuzz");
    if let Ok(text) = launch::with_test_sources(&template, 3, 1, out_dir) {
        let _ = launch::launch_command(&text, None);
    }
});
