//! A recordings directory on a small filesystem that fills up mid-call: the call ends
//! `failed` with `disk full`, what was written still plays, the manifest stays valid, the
//! daemon keeps running and refuses new calls below `[recording] min_free_mb`, and records
//! again once there is room.
//!
//! Needs root (it mounts a size-limited tmpfs that the test makes and removes).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Daemon, SignallingServer, TestPeer};

/// A tmpfs of a few MB mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size_mb: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mb}m,mode=0750"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn config(url: &str, recordings: &Path) -> String {
    format!(
        "[signalling]\nurl = \"{url}\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{}\"\nlinger_secs = 1\nmin_free_mb = 1\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        recordings.display(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines")
    )
}

/// A producer whose video is noise at a high bitrate, so the disk fills in seconds.
fn heavy_peer(url: &str, call: &str, secs: &str) -> TestPeer {
    TestPeer::spawn(
        url,
        &[
            "--pattern",
            "snow",
            "--bitrate",
            "4000",
            "--duration",
            secs,
            "--meta",
            &format!(r#"{{"call":"{call}"}}"#),
        ],
    )
}

#[test]
fn a_full_disk_fails_only_the_call_and_keeps_what_was_written() {
    if !is_root() {
        eprintln!("SKIPPED: a_full_disk_fails_only_the_call needs root to mount a tmpfs");
        return;
    }
    let disk = SmallDisk::mount(6).expect("mount a 6 MB tmpfs (needs root)");
    let rec = disk.path();
    let server = SignallingServer::start();
    let mut daemon = Daemon::start(&config(&server.url(), &rec));
    let mut filler = heavy_peer(&server.url(), "full", "60");
    let id = common::peer_id(&mut filler);
    let dir = rec.join("full");
    let m = common::wait_for(Duration::from_secs(90), Duration::from_millis(200), || {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).ok()?).ok()?;
        (m["status"] != "recording").then_some(m)
    });
    assert_eq!(m["status"], "failed", "{m:#}");
    let reason = m["end_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("disk full"), "{m:#}");
    // What was written still plays.
    let files = common::files_of(&m, &id);
    assert_eq!(files.len(), 1, "{m:#}");
    let file = dir.join(&files[0]);
    // Its muxer could not write the index at the end, so the header has no duration; the
    // clusters written before the disk filled decode.
    let info = common::probe(&file);
    assert_eq!(info.streams[0].codec_name, "vp8", "{info:?}");
    let report = common::decode_check(&file);
    assert!(report.video_frames > 60, "{report:?}");
    // The daemon runs on, and refuses a new call while the disk is below the floor.
    assert!(daemon.is_running(), "{}", daemon.log());
    let mut waiting = heavy_peer(&server.url(), "waits", "2");
    common::wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        daemon
            .log()
            .contains("below [recording] min_free_mb")
            .then_some(())
    });
    assert!(!rec.join("waits").exists());
    // Room again: the producer that was refused is recorded now.
    drop(filler);
    std::fs::remove_file(&file).unwrap();
    waiting.wait_event("done", Duration::from_secs(60));
    let m = common::wait_complete(&rec.join("waits"));
    assert_eq!(m["status"], "complete", "{m:#}");
    assert!(daemon.is_running());
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
