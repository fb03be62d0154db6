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

/// Where one recorded track stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackStatus {
    /// Being written.
    Recording,
    /// Its file was finalised (EOS reached every sink).
    Complete,
    /// Cut short: the file was not finalised (a stop, a crash or a stuck muxer).
    Interrupted,
    /// None of its media is in a file: none arrived, or none of what arrived reached the
    /// muxer in a form it writes (the note says which). A file left with no track's data is
    /// removed.
    Empty,
    /// Not recorded (no template takes its codec, or its decoder is missing).
    Skipped,
}

/// Where one live or offline mix stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixStatus {
    /// Being written.
    Recording,
    /// Finalised.
    Complete,
    /// Cut short before its files were finalised.
    Interrupted,
    /// Its pipeline failed; the passthrough recordings went on without it.
    Failed,
}

/// Where one post-processing run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostStatus {
    /// Waiting for a slot (also after a stop cut it short: it runs on the next start).
    Queued,
    /// Running now.
    Running,
    /// Done; its files were moved into the call directory.
    Complete,
    /// Nothing to do for this call (the reason is in `error`).
    Skipped,
    /// It failed; the recordings are untouched and `error` says why.
    Failed,
}

impl PostStatus {
    /// True while the run has not reached an end (it resumes on the next start).
    pub fn is_pending(self) -> bool {
        matches!(self, PostStatus::Queued | PostStatus::Running)
    }
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
    /// Where it stands.
    pub status: PostStatus,
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
    /// Where it stands.
    pub status: MixStatus,
    /// When each participant was on screen, in ms from the call's start.
    pub on_screen: Vec<OnScreen>,
    /// The exact pipeline text.
    pub pipeline: String,
    /// When `callrec remix` made it (RFC 3339 UTC); absent for live mixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remixed_at: Option<String>,
    /// Stretches of call time left out of the files because nobody was in the call (the
    /// files' own timeline runs on without them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<MixGap>,
    /// Video frames a live mix dropped to keep up with real time (0 if it kept up); absent for
    /// remixes, which never wait on a clock, and for mixes without video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_frames: Option<u64>,
    /// Stretches of call time when a live mix fell behind real time (the machine could not
    /// keep up): it dropped video frames, or its files lagged the call by more than the
    /// mixers' own latency allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<MixBehind>,
}

/// A stretch of call time when a live mix fell behind real time, in ms since the call started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixBehind {
    /// From (first seen behind).
    pub from_ms: u64,
    /// To (last seen behind; it had caught up a second later).
    pub to_ms: u64,
    /// Video frames dropped in the stretch.
    pub dropped_frames: u64,
    /// The furthest its output was behind the call's clock meanwhile.
    pub max_lag_ms: u64,
}

/// A stretch of call time a mix left out, in ms since the call started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixGap {
    /// From (the mix stopped writing).
    pub from_ms: u64,
    /// To (it went on).
    pub to_ms: u64,
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
    /// The source it came from (`[[source]] name`; `signalling` for `[signalling]`).
    /// Manifests written before sources existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
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
    /// Where it stands.
    pub status: TrackStatus,
    /// When its first frame arrived, from the call's start.
    pub start_offset_ms: Option<i64>,
    /// How long it ran.
    pub duration_ms: Option<u64>,
    /// Size of its file once finalised.
    pub bytes: Option<u64>,
    /// Why it was skipped, or other remarks.
    pub note: Option<String>,
    /// For a simulcast track: each switch to another of its layers (encodings), in order.
    /// The first one is where the track started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSpan>,
}

/// A simulcast track recorded from one of its layers, from some moment on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpan {
    /// The layer's rid (RFC 8851), if its packets carried one.
    pub rid: Option<String>,
    /// Its picture width, if known.
    pub width: Option<u32>,
    /// Its picture height, if known.
    pub height: Option<u32>,
    /// From, ms since the call started.
    pub from_ms: u64,
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

/// Space kept aside in each call directory so that the manifest can still be rewritten
/// once the disk is full: the call's last word (`failed`, `disk full`) must reach it.
pub const RESERVE_FILE: &str = ".manifest.reserve";
/// Size of [`RESERVE_FILE`]: a manifest of a large call, several times over.
const RESERVE_BYTES: usize = 256 * 1024;

/// Sets space aside for the manifest's last rewrites (see [`RESERVE_FILE`]).
pub fn reserve_space(call_dir: &Path) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(call_dir.join(RESERVE_FILE))?;
    file.write_all(&vec![0u8; RESERVE_BYTES])?;
    file.sync_all()
}

/// Free space on the filesystem holding `dir`, in MB (for `[recording] min_free_mb`).
pub fn free_mb(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize) / (1024 * 1024))
}

/// True if an I/O error means the disk is full (or the quota is).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Writes the manifest atomically: temporary file, fsync, rename. If the disk is full, the
/// call directory's reserve is given up and the write tried once more; if it still fails,
/// the previous manifest stays as it was.
pub fn write_manifest(call_dir: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
    match write_atomically(call_dir, &json) {
        Err(e) if is_disk_full(&e) && call_dir.join(RESERVE_FILE).exists() => {
            std::fs::remove_file(call_dir.join(RESERVE_FILE))?;
            write_atomically(call_dir, &json)
        }
        other => other,
    }
}

fn write_atomically(call_dir: &Path, json: &[u8]) -> std::io::Result<()> {
    let tmp = call_dir.join(".manifest.json.tmp");
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)?;
        file.write_all(json)?;
        file.write_all(b"\n")?;
        file.sync_all()
    })();
    if let Err(e) = written {
        // A half-written temporary file only takes space the next attempt needs.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
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
        for m in &mut manifest.mixes {
            if m.status == MixStatus::Recording {
                m.status = MixStatus::Interrupted;
            }
        }
        for t in &mut manifest.tracks {
            if t.status == TrackStatus::Recording {
                t.status = TrackStatus::Interrupted;
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
            status: TrackStatus::Recording,
            start_offset_ms: Some(10),
            duration_ms: None,
            bytes: None,
            note: None,
            layers: vec![],
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
            source: None,
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
