//! What the peer tells whoever runs it: one JSON object per line on stdout (`welcome`,
//! `session`, `connected`, `media`, `media_stopped`, `resized`, `session_ended`, `done`, and
//! in WHIP mode `whip_refused`, `whip_patched`, `whip_deleted`), and untrusted text kept short
//! in the logs.

use std::io::Write;

/// Prints one event as a JSON line on stdout and flushes it.
pub fn emit(event: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

/// Shortens untrusted text for logging.
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((idx, _)) => format!("{}…", &text[..idx]),
        None => text.to_owned(),
    }
}
