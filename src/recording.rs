//! The call directory on disk and its `manifest.json`.
//!
//! Each call gets a fresh directory under the recordings directory (never reused, never
//! outside it). The manifest says who took part, which tracks were recorded into which files,
//! when, and what pipelines ran. It is rewritten atomically (temporary file, fsync, rename) at
//! start, on every change and at the end, so a crash leaves the last complete version.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::names;

/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;
/// The manifest's file name inside a call directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    /// Still being recorded.
    Recording,
    /// Finished and finalised.
    Complete,
    /// Cut short: callrec stopped or crashed before it could finalise.
    Interrupted,
    /// The call's pipeline failed.
    Failed,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_VERSION`].
    pub version: u32,
    /// The call's name as the network gave it.
    pub call: String,
    /// The directory's name (the safe form of `call`, made unique).
    pub dir: String,
    /// Where the call stands.
    pub status: CallStatus,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC, once ended.
    pub ended_at: Option<String>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// Everyone who joined.
    pub participants: Vec<ParticipantEntry>,
    /// Every track seen, recorded or skipped.
    pub tracks: Vec<TrackEntry>,
    /// The exact pipeline text each template bin ran.
    pub pipelines: Vec<PipelineEntry>,
    /// Live mixes of the call.
    #[serde(default)]
    pub mixes: Vec<MixEntry>,
    /// Things an operator should know (skipped codecs, late tracks...).
    pub warnings: Vec<String>,
    /// Post-processing runs after the call (`[post] templates`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<PostEntry>,
}

/// One `post` template's run over the call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostEntry {
    /// The template.
    pub template: String,
    /// `queued`, `running`, `complete`, `skipped` or `failed`.
    pub status: String,
    /// Files it wrote, relative to the call directory (moved in only on success).
    #[serde(default)]
    pub files: Vec<String>,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The exact pipeline text run for each recorded file.
    #[serde(default)]
    pub pipelines: Vec<String>,
}

/// One live mix output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MixEntry {
    /// The template.
    pub template: String,
    /// Files it writes, relative to the call directory.
    pub files: Vec<String>,
    /// `grid` or `speaker`.
    pub layout: crate::templates::LayoutKind,
    /// `WIDTHxHEIGHT@FPS`.
    pub canvas: String,
    /// `recording`, `complete`, `interrupted` or `failed`.
    pub status: String,
    /// When each participant was on screen, in ms from the call's start.
    pub on_screen: Vec<OnScreen>,
    /// The exact pipeline text.
    pub pipeline: String,
    /// When `callrec remix` made it (RFC 3339 UTC); absent for live mixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remixed_at: Option<String>,
}

/// A participant's time on a mix's screen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OnScreen {
    /// The participant's peer id.
    pub participant: String,
    /// From, ms since the call started.
    pub from_ms: u64,
    /// To, ms since the call started.
    pub to_ms: u64,
}

/// One participant session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParticipantEntry {
    /// The peer id as the server gave it.
    pub id: String,
    /// The safe name used in file names.
    pub name: String,
    /// The producer's meta, as sent.
    pub meta: serde_json::Value,
    /// The signalling session id.
    pub session: String,
    /// RFC 3339 UTC.
    pub joined_at: String,
    /// RFC 3339 UTC, once left.
    pub left_at: Option<String>,
    /// Why the session ended.
    pub end_reason: Option<String>,
}

/// One track in one output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackEntry {
    /// The participant's peer id.
    pub participant: String,
    /// `audio` or `video`.
    pub kind: String,
    /// e.g. `vp8`, `h264`, `opus`.
    pub codec: String,
    /// The m-line index in the SDP.
    pub mline: u32,
    /// The template that recorded it, if any.
    pub template: Option<String>,
    /// The file, relative to the call directory, if recorded.
    pub file: Option<String>,
    /// `recording`, `complete`, `skipped` or `empty`.
    pub status: String,
    /// When its first frame arrived, from the call's start.
    pub start_offset_ms: Option<i64>,
    /// How long it ran.
    pub duration_ms: Option<u64>,
    /// Size of its file once finalised.
    pub bytes: Option<u64>,
    /// Why it was skipped, or other remarks.
    pub note: Option<String>,
}

/// The exact text one template instance ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineEntry {
    /// The template.
    pub template: String,
    /// `track` or `participant`.
    pub scope: String,
    /// The participant's peer id.
    pub participant: String,
    /// The track, for track-scope templates.
    pub track: Option<String>,
    /// The files it writes, relative to the call directory.
    pub files: Vec<String>,
    /// The gst-launch text.
    pub pipeline: String,
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format).unwrap_or_else(|_| now.to_string())
}

impl Manifest {
    /// A fresh manifest for a call that starts now.
    pub fn new(call: &str, dir: &str) -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            call: call.to_owned(),
            dir: dir.to_owned(),
            status: CallStatus::Recording,
            started_at: now_rfc3339(),
            ended_at: None,
            end_reason: None,
            participants: vec![],
            tracks: vec![],
            pipelines: vec![],
            mixes: vec![],
            warnings: vec![],
            post: vec![],
        }
    }
}

/// Creates `<recordings>/<safe call name>[+N]/` with mode 0750 and returns it; never reuses
/// an existing directory, so a later call of the same name cannot overwrite an earlier one.
pub fn create_call_dir(recordings: &Path, call: &str) -> std::io::Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(recordings)?;
    let base = names::safe_name(call);
    for n in 1..10_000u32 {
        // `+` never appears in a safe name, so suffixed names cannot be forged by a caller.
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}+{n}")
        };
        let dir = recordings.join(&name);
        match std::fs::DirBuilder::new().mode(0o750).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "too many calls named {base} in {}",
        recordings.display()
    )))
}

/// Writes the manifest atomically: temporary file, fsync, rename.
pub fn write_manifest(call_dir: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
    let tmp = call_dir.join(".manifest.json.tmp");
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)?;
        file.write_all(&json)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, call_dir.join(MANIFEST_FILE))
}

/// Reads, changes and rewrites a finished call's manifest while holding `.manifest.lock`, so
/// post-processing and `callrec remix` running at once keep each other's entries.
pub fn update_manifest(
    call_dir: &Path,
    change: impl FnOnce(&mut Manifest),
) -> std::io::Result<Manifest> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o640)
        .open(call_dir.join(".manifest.lock"))?;
    lock.lock()?;
    let text = std::fs::read(call_dir.join(MANIFEST_FILE))?;
    let mut manifest: Manifest = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
    change(&mut manifest);
    write_manifest(call_dir, &manifest)?;
    Ok(manifest)
}

/// Marks manifests left in `recording` by a crashed or killed daemon as `interrupted`.
/// Returns the call directories it changed.
pub fn mark_interrupted(recordings: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(recordings) else {
        return vec![];
    };
    let mut changed = vec![];
    for entry in entries.flatten() {
        let dir = entry.path();
        let path = dir.join(MANIFEST_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(mut manifest) = serde_json::from_str::<Manifest>(&text) else {
            continue;
        };
        if manifest.status != CallStatus::Recording {
            continue;
        }
        manifest.status = CallStatus::Interrupted;
        manifest.ended_at.get_or_insert_with(now_rfc3339);
        manifest.end_reason = Some("callrec stopped before finalising the call".into());
        for t in &mut manifest.tracks {
            if t.status == "recording" {
                t.status = "interrupted".into();
            }
            if let Some(file) = &t.file {
                t.bytes = std::fs::metadata(dir.join(file)).ok().map(|m| m.len());
            }
        }
        if write_manifest(&dir, &manifest).is_ok() {
            changed.push(dir);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_dirs_are_unique_and_contained() {
        let tmp = tempfile::tempdir().unwrap();
        let a = create_call_dir(tmp.path(), "../../etc").unwrap();
        let b = create_call_dir(tmp.path(), "../../etc").unwrap();
        assert_ne!(a, b);
        for d in [&a, &b] {
            assert_eq!(d.parent().unwrap(), tmp.path());
        }
        assert!(b.file_name().unwrap().to_str().unwrap().ends_with("+2"));
    }

    #[test]
    fn manifest_round_trips_and_interrupted_marking() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = create_call_dir(tmp.path(), "c").unwrap();
        let mut m = Manifest::new("c", "c");
        m.tracks.push(TrackEntry {
            participant: "p".into(),
            kind: "video".into(),
            codec: "vp8".into(),
            mline: 0,
            template: Some("participant-mkv".into()),
            file: Some("p.mkv".into()),
            status: "recording".into(),
            start_offset_ms: Some(10),
            duration_ms: None,
            bytes: None,
            note: None,
        });
        write_manifest(&dir, &m).unwrap();
        std::fs::write(dir.join("p.mkv"), b"12345").unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap())
                .unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["status"], "recording");
        assert_eq!(mark_interrupted(tmp.path()), vec![dir.clone()]);
        let m2: Manifest =
            serde_json::from_str(&std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap())
                .unwrap();
        assert_eq!(m2.status, CallStatus::Interrupted);
        assert_eq!(m2.tracks[0].bytes, Some(5));
        assert!(m2.ended_at.is_some());
        assert!(mark_interrupted(tmp.path()).is_empty(), "only once");
    }

    #[test]
    fn meta_numbers_survive_rewrites() {
        // serde_json's default float parsing can be one ULP off, so a producer's meta number
        // changed each time the manifest was rewritten (found by tests/properties.rs).
        let mut m = Manifest::new("c", "c");
        m.participants.push(ParticipantEntry {
            id: "p".into(),
            name: "p".into(),
            meta: serde_json::json!({ "x": -4.4950615236896673e263 }),
            session: "s".into(),
            joined_at: now_rfc3339(),
            left_at: None,
            end_reason: None,
        });
        let once = serde_json::to_string(&m).unwrap();
        let back: Manifest = serde_json::from_str(&once).unwrap();
        assert_eq!(back.participants[0].meta, m.participants[0].meta);
        assert_eq!(serde_json::to_string(&back).unwrap(), once);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z') && t.len() == 24, "{t}");
        assert!(
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).is_ok()
        );
    }
}
