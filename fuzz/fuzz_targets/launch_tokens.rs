//! The gst-launch tokeniser (`templates::launch_text`) and the diagnostics that point at a
//! template's lines with it. Input: the first line is a GStreamer parse error message, the
//! rest is a template body.
#![no_main]

use callrec::templates::{diagnose, launch_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        gst::init().expect("GStreamer initialises");
    },
    |text: &str| {
        let (message, body) = text.split_once('\n').unwrap_or((text, ""));
        // Tokens cover the text in order, on character boundaries.
        let lexed = launch_text::LaunchText::lex(text);
        let mut at = 0;
        for token in lexed.tokens() {
            assert!(token.span.start == at && token.span.end > at);
            assert!(text.is_char_boundary(token.span.end));
            at = token.span.end;
        }
        assert_eq!(at, text.len());
        let _ = launch_text::source_lines(text);
        let lines: Vec<diagnose::Line> = body
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.to_owned()))
            .collect();
        let _ = diagnose::unbalanced_quote(&lines);
        for word in body.split_whitespace().take(4) {
            let _ = diagnose::line_of_element(&lines, word);
            let _ = diagnose::line_of_property(&lines, word.split('=').next().unwrap_or(word));
            let _ = diagnose::package_for(word);
        }
        // A name no GStreamer installation has, so no element is ever built from the input.
        let missing = ["callrec-fuzz-no-such-element".to_owned()];
        let (line, _) = diagnose::explain_parse_error(&lines, message, &missing);
        assert!(line >= 1);
        let _ = callrec::offline::launch::launch_command(body, None);
    }
);
