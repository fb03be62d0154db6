//! Call directories and their `manifest.json`: reading it, waiting for it to say
//! `complete`, and what it lists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::processes::wait_for;

/// An RFC 3339 timestamp from a manifest, as seconds since the Unix epoch.
pub fn rfc3339_secs(v: &Value) -> f64 {
    let t = time::OffsetDateTime::parse(
        v.as_str().expect("a timestamp"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// The wall clock now, as seconds since the Unix epoch (to compare with [`rfc3339_secs`]).
pub fn wall_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Reads `manifest.json` of a call directory (Null if absent or mid-write).
pub fn read_manifest(call_dir: &Path) -> Value {
    std::fs::read_to_string(call_dir.join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Waits (up to 40 s) until a call directory's manifest says `complete`, and returns it.
pub fn wait_complete(call_dir: &Path) -> Value {
    wait_for(Duration::from_secs(40), Duration::from_millis(200), || {
        let m = read_manifest(call_dir);
        (m["status"] == "complete").then_some(m)
    })
}

/// The call directories under a recordings directory.
pub fn find_call_dirs(recordings: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(recordings)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// The complete files a manifest lists for a participant.
pub fn files_of(manifest: &Value, peer_id: &str) -> Vec<String> {
    let mut files: Vec<String> = manifest["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["participant"] == peer_id && t["status"] == "complete")
        .filter_map(|t| t["file"].as_str().map(str::to_owned))
        .collect();
    files.sort();
    files.dedup();
    files
}
