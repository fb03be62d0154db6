//! End-to-end recording tests: the real gst-webrtc-signalling-server, the real callrec
//! daemon binary and real webrtcbin producers (callrec-testpeer), with every recording
//! verified by ffprobe/ffmpeg.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{files_of, peer_id, sent_secs, Daemon, Expect, SignallingServer, TestPeer};
use serde_json::Value;

const PIPELINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");

fn config(url: &str, recordings: &Path, extra: &str) -> String {
    format!(
        r#"
[signalling]
url = "{url}"
reconnect_min_secs = 0.2
reconnect_max_secs = 1.0
[recording]
dir = "{dir}"
pipelines_dir = "{PIPELINES}"
linger_secs = 1
media_timeout_secs = 4
{extra}
[ice]
local_addresses = ["127.0.0.1"]
"#,
        dir = recordings.display()
    )
}

fn only_call_dir(recordings: &Path) -> PathBuf {
    let dirs = common::find_call_dirs(recordings);
    assert_eq!(dirs.len(), 1, "expected one call directory: {dirs:?}");
    dirs.into_iter().next().unwrap()
}

fn check_manifest_basics(m: &Value) {
    assert_eq!(m["version"], 1, "{m:#}");
    for key in ["call", "started_at", "ended_at", "end_reason"] {
        assert!(m[key].is_string(), "manifest lacks {key}: {m:#}");
    }
    for p in m["participants"].as_array().unwrap() {
        for key in ["id", "joined_at", "left_at"] {
            assert!(p[key].is_string(), "participant lacks {key}: {p:#}");
        }
        assert!(p.get("meta").is_some());
    }
    for t in m["tracks"].as_array().unwrap() {
        for key in ["participant", "kind", "codec"] {
            assert!(t[key].is_string(), "track lacks {key}: {t:#}");
        }
        if t["status"] == "complete" {
            assert!(t["file"].is_string(), "{t:#}");
            assert!(t["start_offset_ms"].is_i64(), "{t:#}");
            assert!(t["duration_ms"].as_u64().unwrap() > 0, "{t:#}");
            assert!(t["bytes"].as_u64().unwrap() > 0, "{t:#}");
        }
    }
    assert!(!m["pipelines"].as_array().unwrap().is_empty(), "{m:#}");
}

#[test]
fn records_vp8_h264_and_vp9_participants_with_opus() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(&server.url(), rec.path(), ""));
    let mut vp8 = TestPeer::spawn(
        &server.url(),
        &[
            "--video",
            "vp8",
            "--duration",
            "5",
            "--meta",
            r#"{"call":"a"}"#,
        ],
    );
    let mut h264 = TestPeer::spawn(
        &server.url(),
        &[
            "--video",
            "h264",
            "--duration",
            "5",
            "--meta",
            r#"{"call":"b"}"#,
        ],
    );
    let mut vp9 = TestPeer::spawn(
        &server.url(),
        &[
            "--video",
            "vp9",
            "--duration",
            "5",
            "--meta",
            r#"{"call":"c"}"#,
        ],
    );
    let (id_vp8, id_h264, id_vp9) = (peer_id(&mut vp8), peer_id(&mut h264), peer_id(&mut vp9));
    let (sent_vp8, sent_h264, sent_vp9) = (
        sent_secs(&mut vp8),
        sent_secs(&mut h264),
        sent_secs(&mut vp9),
    );
    for (call, id, codec, sent) in [
        ("a", &id_vp8, "vp8", sent_vp8),
        ("b", &id_h264, "h264", sent_h264),
        ("c", &id_vp9, "vp9", sent_vp9),
    ] {
        let dir = rec.path().join(call);
        let m = common::wait_complete(&dir);
        check_manifest_basics(&m);
        assert_eq!(m["call"], call);
        assert_eq!(m["participants"][0]["id"], id.as_str());
        let files = files_of(&m, id);
        assert_eq!(files.len(), 1, "one participant file: {m:#}");
        common::assert_playable(
            &dir.join(&files[0]),
            &Expect {
                video_codec: Some(codec),
                audio_codec: Some("opus"),
                duration_s: sent,
                tolerance_s: 0.5,
            },
        );
        let pipelines = m["pipelines"].as_array().unwrap();
        assert!(pipelines[0]["pipeline"]
            .as_str()
            .unwrap()
            .contains("matroskamux"));
    }
    drop(daemon);
}

#[test]
fn groups_producers_into_calls() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&config(
        &server.url(),
        rec.path(),
        r#"templates = ["participant-mkv", "track-mkv"]"#,
    ));
    let meta = r#"{"call":"team"}"#;
    let mut a = TestPeer::spawn(&server.url(), &["--duration", "4", "--meta", meta]);
    let mut b = TestPeer::spawn(
        &server.url(),
        &["--duration", "4", "--meta", meta, "--video", "h264"],
    );
    let mut c = TestPeer::spawn(&server.url(), &["--duration", "4", "--audio", "none"]);
    let ids = [peer_id(&mut a), peer_id(&mut b), peer_id(&mut c)];
    for p in [&mut a, &mut b, &mut c] {
        sent_secs(p);
    }
    let team = rec.path().join("team");
    let m = common::wait_complete(&team);
    check_manifest_basics(&m);
    let participants: Vec<&str> = m["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(participants.len(), 2, "{m:#}");
    assert!(participants.contains(&ids[0].as_str()) && participants.contains(&ids[1].as_str()));
    // participant-mkv plus track-mkv: one participant file and one file per track each.
    for id in &ids[..2] {
        let files = files_of(&m, id);
        assert_eq!(files.len(), 3, "{id}: {files:?}");
        for f in files {
            let info = common::probe(&team.join(&f));
            assert!(info.duration_s > 3.0, "{f}: {info:?}");
        }
    }
    // The ungrouped producer is a call of its own.
    let own = rec.path().join(format!("peer-{}", ids[2]));
    let m = common::wait_complete(&own);
    assert_eq!(m["participants"].as_array().unwrap().len(), 1);
    assert_eq!(common::find_call_dirs(rec.path()).len(), 2);
}

#[test]
fn records_audio_only_video_only_and_late_tracks() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&config(&server.url(), rec.path(), ""));
    let mut audio = TestPeer::spawn(
        &server.url(),
        &[
            "--video",
            "none",
            "--duration",
            "4",
            "--meta",
            r#"{"call":"audio"}"#,
        ],
    );
    let mut video = TestPeer::spawn(
        &server.url(),
        &[
            "--audio",
            "none",
            "--duration",
            "4",
            "--meta",
            r#"{"call":"video"}"#,
        ],
    );
    let mut late = TestPeer::spawn(
        &server.url(),
        &[
            "--video-delay",
            "2.5",
            "--duration",
            "6",
            "--meta",
            r#"{"call":"late"}"#,
        ],
    );
    let ids = [peer_id(&mut audio), peer_id(&mut video), peer_id(&mut late)];
    let sent = [
        sent_secs(&mut audio),
        sent_secs(&mut video),
        sent_secs(&mut late),
    ];
    let cases = [
        ("audio", None, Some("opus"), sent[0]),
        ("video", Some("vp8"), None, sent[1]),
        ("late", Some("vp8"), Some("opus"), sent[2]),
    ];
    for (i, (call, v, a, sent)) in cases.into_iter().enumerate() {
        let dir = rec.path().join(call);
        let m = common::wait_complete(&dir);
        check_manifest_basics(&m);
        let files = files_of(&m, &ids[i]);
        assert_eq!(files.len(), 1, "{call}: {m:#}");
        common::assert_playable(
            &dir.join(&files[0]),
            &Expect {
                video_codec: v,
                audio_codec: a,
                duration_s: sent,
                tolerance_s: 0.5,
            },
        );
    }
    // The late video track starts about 2.5 s after the audio, and the manifest says so.
    let m = common::read_manifest(&rec.path().join("late"));
    let offset = |kind: &str| {
        m["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == kind)
            .unwrap()["start_offset_ms"]
            .as_i64()
            .unwrap()
    };
    let gap = offset("video") - offset("audio");
    assert!(
        (1800..=3500).contains(&gap),
        "video should start ~2.5 s after audio, got {gap} ms: {m:#}"
    );
}

#[test]
fn unaccepted_codec_is_skipped_with_a_warning() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let pipelines = tempfile::tempdir().unwrap();
    std::fs::write(
        pipelines.path().join("audio-only.pipeline"),
        "# description: audio only\n# scope: participant\n# media: audio/x-opus\n# inputs: mux\nmatroskamux name=mux ! filesink location=${call_dir}/${participant}.mka\n",
    )
    .unwrap();
    let cfg = config(&server.url(), rec.path(), r#"templates = ["audio-only"]"#)
        .replace(PIPELINES, &pipelines.path().display().to_string());
    let daemon = Daemon::start(&cfg);
    let mut peer = TestPeer::spawn(
        &server.url(),
        &["--duration", "4", "--meta", r#"{"call":"skip"}"#],
    );
    let id = peer_id(&mut peer);
    let sent = sent_secs(&mut peer);
    let dir = rec.path().join("skip");
    let m = common::wait_complete(&dir);
    let video = m["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "video")
        .expect("video track listed");
    assert_eq!(video["status"], "skipped", "{m:#}");
    assert!(
        video["note"].as_str().unwrap().contains("video/x-vp8"),
        "{m:#}"
    );
    assert!(!m["warnings"].as_array().unwrap().is_empty());
    assert!(
        daemon.log().contains("skipped"),
        "the log names the skipped track"
    );
    let files = files_of(&m, &id);
    common::assert_playable(
        &dir.join(&files[0]),
        &Expect {
            video_codec: None,
            audio_codec: Some("opus"),
            duration_s: sent,
            tolerance_s: 0.5,
        },
    );
}

#[test]
fn abrupt_disconnect_finalises_the_file() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&config(&server.url(), rec.path(), ""));
    let mut peer = TestPeer::spawn(
        &server.url(),
        &["--keep-alive", "--meta", r#"{"call":"abrupt"}"#],
    );
    let id = peer_id(&mut peer);
    peer.wait_event("connected", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(4));
    peer.kill();
    let dir = rec.path().join("abrupt");
    let m = common::wait_complete(&dir);
    check_manifest_basics(&m);
    let files = files_of(&m, &id);
    common::assert_playable(
        &dir.join(&files[0]),
        &Expect {
            video_codec: Some("vp8"),
            audio_codec: Some("opus"),
            duration_s: 4.0,
            tolerance_s: 0.8,
        },
    );
}

#[test]
fn survives_a_signalling_server_restart() {
    let mut server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(&server.url(), rec.path(), ""));
    let mut before = TestPeer::spawn(
        &server.url(),
        &["--duration", "8", "--meta", r#"{"call":"before"}"#],
    );
    let id_before = peer_id(&mut before);
    before.wait_event("connected", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    server.restart();
    // The daemon reconnects and picks up producers that appear after the restart.
    let mut after = TestPeer::spawn(
        &server.url(),
        &["--duration", "4", "--meta", r#"{"call":"after"}"#],
    );
    let id_after = peer_id(&mut after);
    let sent_after = sent_secs(&mut after);
    let sent_before = sent_secs(&mut before);
    let dir = rec.path().join("after");
    let m = common::wait_complete(&dir);
    common::assert_playable(
        &dir.join(&files_of(&m, &id_after)[0]),
        &Expect {
            video_codec: Some("vp8"),
            audio_codec: Some("opus"),
            duration_s: sent_after,
            tolerance_s: 0.5,
        },
    );
    // The recording in progress carried on through the outage.
    let dir = rec.path().join("before");
    let m = common::wait_complete(&dir);
    common::assert_playable(
        &dir.join(&files_of(&m, &id_before)[0]),
        &Expect {
            video_codec: Some("vp8"),
            audio_codec: Some("opus"),
            duration_s: sent_before,
            tolerance_s: 0.5,
        },
    );
    assert!(
        daemon.log().contains("reconnecting"),
        "the outage is logged"
    );
}

#[test]
fn sigterm_finalises_and_exits_zero() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&config(&server.url(), rec.path(), ""));
    let mut peer = TestPeer::spawn(
        &server.url(),
        &["--keep-alive", "--meta", r#"{"call":"term"}"#],
    );
    let id = peer_id(&mut peer);
    peer.wait_event("connected", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(4));
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}\n{}", daemon.log());
    assert!(daemon
        .notifications()
        .iter()
        .any(|n| n.contains("STOPPING=1")));
    let dir = only_call_dir(rec.path());
    let m = common::read_manifest(&dir);
    assert_eq!(m["status"], "complete", "{m:#}");
    check_manifest_basics(&m);
    common::assert_playable(
        &dir.join(&files_of(&m, &id)[0]),
        &Expect {
            video_codec: Some("vp8"),
            audio_codec: Some("opus"),
            duration_s: 4.0,
            tolerance_s: 0.8,
        },
    );
}

#[test]
fn hostile_meta_stays_inside_the_recordings_directory() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&config(&server.url(), rec.path(), ""));
    let long = "x".repeat(10_000);
    let hostile = [
        "../../etc".to_owned(),
        "a\"b' c ! filesink location=/tmp/pwned".to_owned(),
        "line\nbreak/..".to_owned(),
        long.clone(),
    ];
    let mut peers: Vec<(String, TestPeer)> = hostile
        .iter()
        .map(|call| {
            let meta = serde_json::json!({"call": call, "name": call}).to_string();
            (
                call.clone(),
                TestPeer::spawn(&server.url(), &["--duration", "3", "--meta", &meta]),
            )
        })
        .collect();
    for (_, p) in &mut peers {
        sent_secs(p);
    }
    let dirs = common::wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let dirs = common::find_call_dirs(rec.path());
        let complete = dirs
            .iter()
            .filter(|d| common::read_manifest(d)["status"] == "complete")
            .count();
        (complete == hostile.len()).then_some(dirs)
    });
    let mut seen = vec![];
    for dir in &dirs {
        assert_eq!(dir.parent().unwrap(), rec.path());
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(name.len() <= 80, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c)),
            "{name}"
        );
        let m = common::read_manifest(dir);
        seen.push(m["call"].as_str().unwrap().to_owned());
        for p in m["pipelines"].as_array().unwrap() {
            let text = p["pipeline"].as_str().unwrap();
            assert_eq!(
                text.matches('!').count(),
                1,
                "pipeline syntax unchanged: {text}"
            );
            assert!(
                !text.contains("/tmp/pwned") && !text.contains('"'),
                "{text}"
            );
        }
        for f in std::fs::read_dir(dir).unwrap().flatten() {
            assert!(
                f.file_type().unwrap().is_file(),
                "only files in a call dir: {f:?}"
            );
        }
    }
    seen.sort();
    let mut want = hostile.to_vec();
    want.sort();
    assert_eq!(seen, want, "the manifest keeps the original names");
    assert!(!Path::new("/tmp/pwned").exists());
}

#[test]
fn a_participant_who_returns_within_the_linger_rejoins_the_call() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let cfg = config(&server.url(), rec.path(), "").replace("linger_secs = 1", "linger_secs = 6");
    let _daemon = Daemon::start(&cfg);
    let meta = r#"{"call":"rejoin","name":"alice"}"#;
    let mut first = TestPeer::spawn(&server.url(), &["--duration", "3", "--meta", meta]);
    let id1 = peer_id(&mut first);
    let sent1 = sent_secs(&mut first);
    std::thread::sleep(Duration::from_secs(1));
    let mut second = TestPeer::spawn(&server.url(), &["--duration", "3", "--meta", meta]);
    let id2 = peer_id(&mut second);
    let sent2 = sent_secs(&mut second);
    let dir = only_call_dir(rec.path());
    let m = common::wait_complete(&dir);
    check_manifest_basics(&m);
    assert_eq!(m["participants"].as_array().unwrap().len(), 2, "{m:#}");
    for (id, sent) in [(&id1, sent1), (&id2, sent2)] {
        let files = files_of(&m, id);
        assert_eq!(files.len(), 1, "{m:#}");
        common::assert_playable(
            &dir.join(&files[0]),
            &Expect {
                video_codec: Some("vp8"),
                audio_codec: Some("opus"),
                duration_s: sent,
                tolerance_s: 0.5,
            },
        );
    }
    // The second session joined later, and the manifest's offsets say so.
    let offsets: Vec<i64> = m["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "audio")
        .map(|t| t["start_offset_ms"].as_i64().unwrap())
        .collect();
    assert!(offsets[1] - offsets[0] >= 3000, "{offsets:?}");
}

#[test]
fn a_track_later_than_the_wait_gets_a_file_of_its_own() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(&config(&server.url(), rec.path(), "track_wait_secs = 1"));
    let mut peer = TestPeer::spawn(
        &server.url(),
        &[
            "--video-delay",
            "3",
            "--duration",
            "7",
            "--meta",
            r#"{"call":"later"}"#,
        ],
    );
    let id = peer_id(&mut peer);
    let sent = sent_secs(&mut peer);
    let dir = rec.path().join("later");
    let m = common::wait_complete(&dir);
    check_manifest_basics(&m);
    let track = |kind: &str| {
        m["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == kind && t["status"] == "complete")
            .cloned()
            .unwrap_or_else(|| panic!("no complete {kind} track: {m:#}"))
    };
    let (audio, video) = (track("audio"), track("video"));
    assert_eq!(audio["template"], "participant-mkv");
    assert_eq!(video["template"], "track-mkv", "{m:#}");
    assert_ne!(audio["file"], video["file"]);
    common::assert_playable(
        &dir.join(audio["file"].as_str().unwrap()),
        &Expect {
            video_codec: None,
            audio_codec: Some("opus"),
            duration_s: sent,
            tolerance_s: 0.5,
        },
    );
    common::assert_playable(
        &dir.join(video["file"].as_str().unwrap()),
        &Expect {
            video_codec: Some("vp8"),
            audio_codec: None,
            duration_s: sent - 3.0,
            tolerance_s: 0.6,
        },
    );
    let gap =
        video["start_offset_ms"].as_i64().unwrap() - audio["start_offset_ms"].as_i64().unwrap();
    assert!((2500..=4000).contains(&gap), "{gap} ms: {m:#}");
    assert!(
        m["warnings"]
            .to_string()
            .contains("arrived after their file started"),
        "{m:#}"
    );
    assert_eq!(files_of(&m, &id).len(), 2);
}

#[test]
fn records_only_producers_matching_the_filter() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let cfg = config(
        &server.url(),
        rec.path(),
        "[recording.filter]\nrecord = \"yes\"",
    );
    let daemon = Daemon::start(&cfg);
    let mut yes = TestPeer::spawn(
        &server.url(),
        &[
            "--duration",
            "3",
            "--meta",
            r#"{"call":"yes","record":"yes"}"#,
        ],
    );
    let mut no = TestPeer::spawn(
        &server.url(),
        &[
            "--duration",
            "3",
            "--meta",
            r#"{"call":"no","record":"no"}"#,
        ],
    );
    sent_secs(&mut yes);
    // The unmatched producer never gets a session, so it gives up (exit 2) on its own.
    let status = no.wait_exit(Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(2),
        "the filtered producer must not be consumed"
    );
    common::wait_complete(&rec.path().join("yes"));
    assert_eq!(common::find_call_dirs(rec.path()).len(), 1);
    assert!(daemon.log().contains("does not match"), "the log says why");
}

/// One daemon records from two signalling servers at once (`[[source]]`), and a third source
/// that is down keeps neither from recording. The same call name on both servers makes two
/// calls, each named after its source, and the manifest names where each participant came
/// from.
#[test]
fn records_from_several_sources_at_once() {
    let east = SignallingServer::start();
    let west = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound then released.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let source = |name: &str, url: &str| {
        format!(
            "[[source]]\nname = \"{name}\"\nprotocol = \"gst-webrtc\"\nurl = \"{url}\"\n\
             reconnect_min_secs = 0.2\nreconnect_max_secs = 1.0\n"
        )
    };
    let config = format!(
        "{}{}{}[recording]\ndir = \"{}\"\npipelines_dir = \"{PIPELINES}\"\nlinger_secs = 1\n\
         [ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        source("east", &east.url()),
        source("down", &format!("ws://{down}")),
        source("west", &west.url()),
        rec.path().display()
    );
    let _daemon = Daemon::start(&config);
    let meta = r#"{"call":"standup"}"#;
    let mut a = TestPeer::spawn(&east.url(), &["--duration", "4", "--meta", meta]);
    let mut b = TestPeer::spawn(
        &west.url(),
        &["--duration", "4", "--meta", meta, "--video", "h264"],
    );
    let (id_a, id_b) = (peer_id(&mut a), peer_id(&mut b));
    sent_secs(&mut a);
    sent_secs(&mut b);
    for (dir, id, source, codec) in [
        ("east-standup", &id_a, "east", "vp8"),
        ("west-standup", &id_b, "west", "h264"),
    ] {
        let dir = rec.path().join(dir);
        let m = common::wait_complete(&dir);
        check_manifest_basics(&m);
        let participants = m["participants"].as_array().unwrap();
        assert_eq!(participants.len(), 1, "{m:#}");
        assert_eq!(participants[0]["id"], id.as_str());
        assert_eq!(participants[0]["source"], source, "{m:#}");
        let files = files_of(&m, id);
        assert_eq!(files.len(), 1, "{files:?}");
        let info = common::probe(&dir.join(&files[0]));
        assert!(
            info.streams.iter().any(|s| s.codec_name == codec) && info.duration_s > 3.0,
            "{info:?}"
        );
    }
    assert_eq!(common::find_call_dirs(rec.path()).len(), 2);
}

/// A producer that only answers (`--answer-only` refuses a session without an offer) is
/// recorded from a source with `offerer = "callrec"`: callrec offers to receive, in every
/// codec it records, and the producer picks one.
#[test]
#[ignore = "the test peer's webrtcbin (GStreamer 1.22) does not match its send transceivers to a recvonly offer: its answer is recvonly with rejected m-lines; the peer must answer as webrtcsink does (transceivers taken from the offer)"]
fn records_a_producer_that_only_answers() {
    let server = SignallingServer::start();
    let rec = tempfile::tempdir().unwrap();
    let config = format!(
        "[[source]]\nname = \"answering\"\nprotocol = \"gst-webrtc\"\nurl = \"{}\"\n\
         offerer = \"callrec\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{PIPELINES}\"\n\
         linger_secs = 1\n[ice]\nlocal_addresses = [\"127.0.0.1\"]\n",
        server.url(),
        rec.path().display()
    );
    let _daemon = Daemon::start(&config);
    let meta = r#"{"call":"answers"}"#;
    let mut vp8 = TestPeer::spawn(
        &server.url(),
        &["--duration", "4", "--meta", meta, "--answer-only"],
    );
    let mut h264 = TestPeer::spawn(
        &server.url(),
        &[
            "--duration",
            "4",
            "--meta",
            meta,
            "--answer-only",
            "--video",
            "h264",
        ],
    );
    let (id_vp8, id_h264) = (peer_id(&mut vp8), peer_id(&mut h264));
    sent_secs(&mut vp8);
    sent_secs(&mut h264);
    let dir = rec.path().join("answering-answers");
    let m = common::wait_complete(&dir);
    check_manifest_basics(&m);
    for (id, codec) in [(&id_vp8, "vp8"), (&id_h264, "h264")] {
        let files = files_of(&m, id);
        assert_eq!(files.len(), 1, "{files:?} {m:#}");
        let path = dir.join(&files[0]);
        let info = common::probe(&path);
        assert!(
            info.streams.iter().any(|s| s.codec_name == codec)
                && info.streams.iter().any(|s| s.codec_name == "opus")
                && info.duration_s > 3.0,
            "{info:?}"
        );
        let decoded = common::decode_check(&path);
        assert!(
            decoded.errors.is_empty() && decoded.video_frames > 60 && decoded.audio_frames > 0,
            "{decoded:?}"
        );
    }
    // The manifest names the server's session, not callrec's own key for it.
    for p in m["participants"].as_array().unwrap() {
        let session = p["session"].as_str().unwrap();
        assert!(
            !session.is_empty() && !session.starts_with("offer"),
            "{p:#}"
        );
    }
}
