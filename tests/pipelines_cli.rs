//! `callrec pipelines list|check|render`: the shipped templates check clean, broken ones are
//! reported at the right `file:line`, every shipped template renders to a command that runs
//! in the real `gst-launch-1.0` and writes playable files, and hostile values never change a
//! rendered pipeline's structure or leave its directories.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::analysis;

const PIPELINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");

fn callrec(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callrec"));
    cmd.arg("pipelines").args(args);
    common::run_with_timeout(cmd, Duration::from_secs(60))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn shipped() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(PIPELINES)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pipeline"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// Runs a printed command in a shell, bounded in time.
fn run_shell(command: &str) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command);
    common::run_with_timeout(cmd, Duration::from_secs(180))
}

#[test]
fn list_shows_every_template_with_its_description() {
    let out = callrec(&["--pipelines", PIPELINES, "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    for name in shipped() {
        let line = listing
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{listing}"));
        let scope = ["track", "participant", "call", "post"]
            .iter()
            .find(|s| line.contains(&format!(" {s} ")));
        assert!(scope.is_some(), "no scope in {line:?}");
        // media and a description follow
        assert!(
            line.contains('/') && line.split("  ").count() >= 4,
            "{line:?}"
        );
    }
}

#[test]
fn check_passes_for_every_shipped_template() {
    let out = callrec(&["--pipelines", PIPELINES, "check"]);
    assert!(out.status.success(), "{}", text(&out));
    let ok = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("ok "))
        .count();
    assert_eq!(ok, shipped().len(), "{}", text(&out));
    // by name too
    let out = callrec(&["--pipelines", PIPELINES, "check", "mix-mp4", "track-mkv"]);
    assert!(out.status.success(), "{}", text(&out));
    // an unknown name is a missing input file
    let out = callrec(&["--pipelines", PIPELINES, "check", "no-such-template"]);
    assert_eq!(out.status.code(), Some(66), "{}", text(&out));
}

const HEADER: &str = "# callrec-template\n# description: broken on purpose\n# scope: participant\n# media: video/x-vp8, audio/x-opus\n# inputs: mux\n";

#[test]
fn check_points_at_the_broken_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, usize, &str); 6] = [
        (
            "missing-element",
            "matroskamux name=mux\n  ! frobnicatorenc ! filesink location=${call_dir}/${participant}.mkv\n",
            7,
            "no GStreamer element `frobnicatorenc`",
        ),
        (
            "missing-element-known-package",
            "matroskamux name=mux ! queue\n  ! avenc_nosuchcodec ! filesink location=${call_dir}/${participant}.mkv\n",
            7,
            "gstreamer1.0-libav",
        ),
        (
            "bad-property",
            "matroskamux name=mux\n  ! filesink no-such-prop=1 location=${call_dir}/${participant}.mkv\n",
            7,
            "element `filesink` has no property `no-such-prop`",
        ),
        (
            "unknown-variable",
            "matroskamux name=mux\n  ! filesink location=${call_dir}/${speaker}.mkv\n",
            7,
            "unknown variable ${speaker}",
        ),
        (
            "missing-input",
            "matroskamux name=muxer\n  ! filesink location=${call_dir}/${participant}.mkv\n",
            5,
            "missing input: the element `mux`",
        ),
        (
            "unbalanced-quotes",
            "matroskamux name=mux\n  ! filesink location=\"${call_dir}/${participant}.mkv\n  sync=false\n",
            7,
            "unbalanced quote",
        ),
    ];
    for (name, body, line, message) in cases {
        let path = dir.path().join(format!("{name}.pipeline"));
        std::fs::write(&path, format!("{HEADER}{body}")).unwrap();
        let out = callrec(&["check", path.to_str().unwrap()]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(65), "{name}: {all}");
        let want = format!("{}:{line}: ", path.display());
        let reported = all
            .lines()
            .find(|l| l.contains(&want))
            .unwrap_or_else(|| panic!("{name}: no `{want}` in\n{all}"));
        assert!(reported.contains(message), "{name}: {reported}");
    }
    // The whole directory: every broken template is reported, and the exit code says so.
    let out = callrec(&["--pipelines", dir.path().to_str().unwrap(), "check"]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    let errors = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("error "))
        .count();
    assert_eq!(errors, 6, "{}", text(&out));
    // `callrec check` (the daemon's own check) reports the same, with file:line.
    let rec = tempfile::tempdir().unwrap();
    let config = format!(
        "[signalling]\nurl = \"ws://127.0.0.1:9\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{}\"\n",
        rec.path().display(),
        dir.path().display()
    );
    let (status, log) = common::Daemon::check(&config);
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(
        log.contains(&format!(
            "{}:7: ",
            dir.path().join("bad-property.pipeline").display()
        )),
        "{log}"
    );
}

/// What a rendered run must leave: `(file, codecs)` per template.
fn expected_outputs(name: &str) -> Vec<(&'static str, &'static [&'static str])> {
    match name {
        "track-mkv" | "track-layers-mkv" => vec![
            ("p1-video0.mkv", &["vp8"]),
            ("p1-audio1.mkv", &["opus"]),
            ("p2-video0.mkv", &["vp8"]),
            ("p2-audio1.mkv", &["opus"]),
        ],
        "participant-mkv" => vec![("p1.mkv", &["vp8", "opus"]), ("p2.mkv", &["vp8", "opus"])],
        "mix-webm" => vec![("mix-webm.webm", &["vp8", "opus"])],
        "mix-mp4" => vec![("mix-mp4.mp4", &["h264", "aac"])],
        "mix-audio" => vec![("mix-audio.ogg", &["opus"])],
        "mix-hls" => vec![("mix-hls.m3u8", &["h264", "aac"])],
        "post-mp4" => vec![("p1.mp4", &["h264", "aac"]), ("p2.mp4", &["h264", "aac"])],
        "post-audio" => vec![("p1.flac", &["flac"]), ("p2.flac", &["flac"])],
        other => panic!("a new shipped template {other}: add what it writes to this test"),
    }
}

#[test]
fn rendered_commands_run_in_gst_launch() {
    let out_root = tempfile::tempdir().unwrap();
    for name in shipped() {
        let out_dir: PathBuf = out_root.path().join(&name);
        let out = callrec(&[
            "--pipelines",
            PIPELINES,
            "render",
            &name,
            "--participants",
            "2",
            "--seconds",
            "3",
            "--out-dir",
            out_dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let command = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(command.contains("gst-launch-1.0 -e "), "{name}: {command}");
        if name == "mix-hls" {
            // GStreamer 1.22's hlssink2 (splitmuxsink) sometimes drops the final EOS when a
            // fragment closes at the end, so gst-launch waits for ever after writing a
            // complete playlist. Accept that, but only with the playlist finished.
            let mut cmd = Command::new("timeout");
            cmd.args(["60", "sh", "-c", &command]);
            let ran = common::run_with_timeout(cmd, Duration::from_secs(120));
            let playlist =
                std::fs::read_to_string(out_dir.join("mix-hls.m3u8")).unwrap_or_default();
            assert!(
                ran.status.success()
                    || (ran.status.code() == Some(124) && playlist.contains("#EXT-X-ENDLIST")),
                "{name}: the printed command failed: {command}\n{}\n{playlist}",
                text(&ran)
            );
        } else {
            let ran = run_shell(&command);
            assert!(
                ran.status.success(),
                "{name}: the printed command failed: {command}\n{}",
                text(&ran)
            );
        }
        for (file, codecs) in expected_outputs(&name) {
            let path = out_dir.join(file);
            assert!(
                path.is_file(),
                "{name}: no {file} in {:?}",
                std::fs::read_dir(&out_dir)
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name())
                    .collect::<Vec<_>>()
            );
            let info = common::probe(&path);
            for codec in codecs {
                assert!(
                    info.streams.iter().any(|s| s.codec_name == *codec),
                    "{name}: {file} has no {codec}: {info:?}"
                );
            }
            assert!(
                (info.duration_s - 3.0).abs() < 0.5,
                "{name}: {file} lasts {:.2} s, not 3",
                info.duration_s
            );
            let report = common::decode_check(&path);
            assert!(
                report.errors.trim().is_empty(),
                "{name}: {file}: {report:?}"
            );
        }
        // The mixes show participant 1 and 2 side by side, in their test colours.
        if name == "mix-mp4" || name == "mix-webm" {
            let (file, _) = expected_outputs(&name)[0];
            let frame = analysis::frame_rgb(&out_dir.join(file), 1.5);
            for (k, colour) in [(0u32, 0xe6194bu32), (1, 0x3cb44b)] {
                // The middle of each half (tiles are letterboxed in their cells).
                let cx = 0.25 + 0.5 * k as f64;
                let got = frame.mean_rgb(cx - 0.1, 0.45, cx + 0.1, 0.55);
                let want = analysis::rgb_hex(colour);
                assert!(
                    analysis::color_close(got, want, 50.0),
                    "{name}: cell {k} is {got:?}, want {want:?}"
                );
            }
        }
    }
}

/// A tiny recorded call made by hand: one VP8 + Opus Matroska file and a manifest that
/// names its participant with `participant` and `name`, and the file as `file`.
fn handmade_call(dir: &Path, participant: &str, name: &str, file: &str) {
    let made = run_shell(&format!(
        "gst-launch-1.0 -e videotestsrc num-buffers=30 ! vp8enc deadline=1 ! mux. \
         audiotestsrc num-buffers=50 samplesperbuffer=960 ! opusenc ! mux. \
         matroskamux name=mux ! filesink location={}/rec.mkv",
        dir.display()
    ));
    assert!(made.status.success(), "{}", text(&made));
    let track = |kind: &str, codec: &str, mline: u32| {
        serde_json::json!({
            "participant": participant, "kind": kind, "codec": codec, "mline": mline,
            "template": "participant-mkv", "file": file, "status": "complete",
            "start_offset_ms": 0, "duration_ms": 1000, "bytes": 1, "note": null
        })
    };
    let manifest = serde_json::json!({
        "version": 1, "call": "hostile", "dir": "hostile", "status": "complete",
        "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:00:01Z",
        "end_reason": "test",
        "participants": [{
            "id": participant, "name": name, "meta": {}, "session": "s",
            "joined_at": "2026-01-01T00:00:00Z", "left_at": null, "end_reason": null
        }],
        "tracks": [track("video", "vp8", 0), track("audio", "opus", 1)],
        "pipelines": [], "mixes": [], "warnings": []
    });
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

#[test]
fn hostile_values_never_change_a_rendered_pipeline() {
    let root = tempfile::tempdir().unwrap();
    let nasty = [
        "../../etc/x",
        "a b",
        "q\"uote'd",
        "bang ! filesink location=/tmp/pwned-callrec",
        "new\nline",
        &"long".repeat(2000),
    ];
    // The baseline: the same call with tame names.
    let tame = root.path().join("tame");
    std::fs::create_dir(&tame).unwrap();
    handmade_call(&tame, "alice", "alice", "rec.mkv");
    let render = |call: &Path, template: &str, out: &Path| {
        callrec(&[
            "--pipelines",
            PIPELINES,
            "render",
            template,
            "--from",
            call.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ])
    };
    let structure = |command: &str| {
        (
            command.matches(" ! ").count(),
            command.matches("location=").count(),
            command.matches("name=").count(),
        )
    };
    for template in ["participant-mkv", "track-mkv", "post-mp4", "mix-mp4"] {
        let out = render(&tame, template, &root.path().join("out-tame"));
        assert!(out.status.success(), "{template}: {}", text(&out));
        let baseline = structure(&String::from_utf8_lossy(&out.stdout));
        for (i, value) in nasty.iter().enumerate() {
            let call = root.path().join(format!("call{i}-{template}"));
            std::fs::create_dir(&call).unwrap();
            // A hostile participant id and name: the file is still the real one.
            handmade_call(&call, value, value, "rec.mkv");
            let out_dir = root.path().join(format!("out{i}-{template}"));
            let out = render(&call, template, &out_dir);
            assert!(out.status.success(), "{template} {value:?}: {}", text(&out));
            let command = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert_eq!(
                structure(&command),
                baseline,
                "{template} {value:?}: structure changed: {command}"
            );
            assert!(!command.contains("location=/tmp/pwned"), "{command}");
            for location in command
                .split_whitespace()
                .filter_map(|w| w.strip_prefix("location="))
            {
                assert!(
                    location.starts_with(&format!("{}/", root.path().display()))
                        && !location.contains("/../"),
                    "{template} {value:?}: {location} is outside the test's directories"
                );
            }
            let ran = run_shell(&command);
            assert!(ran.status.success(), "{command}\n{}", text(&ran));
            // Everything it wrote is inside its output directory.
            for entry in std::fs::read_dir(&out_dir).unwrap().flatten() {
                assert!(entry.file_type().unwrap().is_file(), "{entry:?}");
                let name = entry.file_name().into_string().unwrap();
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c)),
                    "{name}"
                );
            }
        }
    }
    // A hostile file name in the manifest is refused, not opened.
    for value in ["../tame/rec.mkv", "/etc/passwd", "a b.mkv", "x\".mkv"] {
        let call = root.path().join(format!("file-{}", value.len()));
        std::fs::create_dir_all(&call).unwrap();
        handmade_call(&call, "bob", "bob", value);
        let out = render(&call, "post-mp4", &root.path().join("out-file"));
        assert_eq!(out.status.code(), Some(65), "{value:?}: {}", text(&out));
        assert!(
            text(&out).contains("not a plain file name"),
            "{}",
            text(&out)
        );
    }
    // Writing into the call directory itself would overwrite the recording being read
    // (participant-mkv names its file as the recording's own is named here).
    let clash = root.path().join("clash");
    std::fs::create_dir(&clash).unwrap();
    handmade_call(&clash, "alice", "alice", "rec.mkv");
    std::fs::rename(clash.join("rec.mkv"), clash.join("alice.mkv")).unwrap();
    let manifest = std::fs::read_to_string(clash.join("manifest.json")).unwrap();
    std::fs::write(
        clash.join("manifest.json"),
        manifest.replace("rec.mkv", "alice.mkv"),
    )
    .unwrap();
    let out = render(&clash, "participant-mkv", &clash);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        text(&out).contains("written twice, or over a recording"),
        "{}",
        text(&out)
    );
    // An output directory that could change the pipeline is refused.
    let out = render(&tame, "post-mp4", Path::new("/tmp/a b ! fakesink"));
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    // So is a template whose own name is unsafe (`${template}` goes into file names).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.pipeline");
    std::fs::write(
        &path,
        format!(
            "# name: x y/../z\n{}matroskamux name=mux ! filesink location=${{call_dir}}/${{template}}.mkv\n",
            HEADER.replace("# callrec-template\n", "")
        ),
    )
    .unwrap();
    let out = callrec(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(text(&out).contains("unsafe value"), "{}", text(&out));
    assert!(!Path::new("/tmp/pwned-callrec").exists());
}

/// The row `pipelines list` prints for a template.
fn listed<'a>(listing: &'a str, name: &str) -> &'a str {
    listing
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not listed:\n{listing}"))
}

#[test]
fn list_and_check_work_on_the_builtin_templates_without_a_directory() {
    if Path::new(callrec::templates::PACKAGED_DIR).exists() {
        eprintln!(
            "*** SKIPPED: {} exists, so the built-in templates are not alone here ***",
            callrec::templates::PACKAGED_DIR
        );
        return;
    }
    let (_tmp, config) = common::config_file(
        "[signalling]\nurl = \"ws://127.0.0.1:9\"\n[recording]\ndir = \"recordings\"\n",
    );
    let config = config.to_str().unwrap();
    let out = callrec(&["--config", config, "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.lines().next().unwrap().ends_with("ORIGIN"),
        "{listing}"
    );
    for name in shipped() {
        assert!(listed(&listing, &name).ends_with("  built-in"), "{listing}");
    }
    let out = callrec(&["--config", config, "check"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok: Vec<&str> = stdout.lines().filter(|l| l.starts_with("ok ")).collect();
    assert_eq!(ok.len(), shipped().len(), "{stdout}");
    assert!(ok.iter().all(|l| l.ends_with(", built-in)")), "{stdout}");
    // By name, and rendered, a built-in template needs no file either.
    let out = callrec(&["--config", config, "check", "mix-mp4"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = callrec(&["--config", config, "render", "participant-mkv"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("matroskamux"));
}

#[test]
fn list_shows_which_templates_a_directory_overrides_and_adds() {
    // Through --pipelines, and through the config's relative `pipelines_dir`, alike.
    let (dir, config) = common::config_file(
        "[signalling]\nurl = \"ws://127.0.0.1:9\"\n[recording]\ndir = \"recordings\"\npipelines_dir = \"mine\"\n",
    );
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    let body = "matroskamux name=mux ! filesink location=${call_dir}/${participant}.mkv\n";
    let override_path = mine.join("participant-mkv.pipeline");
    std::fs::write(
        &override_path,
        format!("{}{body}", HEADER.replace("broken on purpose", "my own")),
    )
    .unwrap();
    let extra_path = mine.join("extra.pipeline");
    std::fs::write(&extra_path, format!("{HEADER}{body}")).unwrap();
    for args in [
        ["--pipelines", mine.to_str().unwrap()],
        ["--config", config.to_str().unwrap()],
    ] {
        let out = callrec(&[args[0], args[1], "list"]);
        assert!(out.status.success(), "{}", text(&out));
        let listing = String::from_utf8_lossy(&out.stdout);
        let row = listed(&listing, "participant-mkv");
        assert!(
            row.contains("my own") && row.ends_with(&format!("  {}", override_path.display())),
            "{listing}"
        );
        assert!(
            listed(&listing, "extra").ends_with(&format!("  {}", extra_path.display())),
            "{listing}"
        );
        // participant-mkv is listed once: the override replaced the built-in template.
        assert_eq!(
            listing
                .lines()
                .filter(|l| l.starts_with("participant-mkv "))
                .count(),
            1,
            "{listing}"
        );
        if args[0] == "--pipelines" || !Path::new(callrec::templates::PACKAGED_DIR).exists() {
            assert!(
                listed(&listing, "track-mkv").ends_with("  built-in"),
                "{listing}"
            );
        }
        let out = callrec(&[args[0], args[1], "check", "participant-mkv"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains(&format!(
                "ok     participant-mkv (participant, {})",
                override_path.display()
            )),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn a_missing_templates_directory_is_an_error_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let config = format!(
        "[signalling]\nurl = \"ws://127.0.0.1:9\"\n[recording]\ndir = \"{}\"\npipelines_dir = \"{}\"\n",
        dir.path().join("recordings").display(),
        missing.display()
    );
    let (status, log) = common::Daemon::check(&config);
    assert_eq!(status.code(), Some(78), "{log}");
    for part in [
        "[recording] pipelines_dir",
        &missing.display().to_string(),
        "no such directory",
        "create it",
    ] {
        assert!(log.contains(part), "{part:?} missing from: {log}");
    }
    let out = callrec(&["--pipelines", missing.to_str().unwrap(), "list"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "--pipelines {}: no such directory",
            missing.display()
        )),
        "{}",
        text(&out)
    );
}
