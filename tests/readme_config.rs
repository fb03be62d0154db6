//! The README's minimal config works as printed, with nothing installed: the block is read
//! from README.md itself, only its port is changed to the test server's, and it passes
//! `callrec check`, runs `callrec run` against the real signalling server (built-in
//! templates, recordings relative to the config file) and records a playable call.

mod common;

use std::path::Path;

use common::{files_of, peer_id, sent_secs, Daemon, Expect, SignallingServer, TestPeer};

/// The first ```toml block after the README's `heading`, exactly as printed.
fn readme_toml_after(heading: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = readme
        .find(heading)
        .map(|i| &readme[i..])
        .unwrap_or_else(|| panic!("README.md has a `{heading}` section"));
    let start = section
        .find("```toml\n")
        .map(|i| i + "```toml\n".len())
        .unwrap_or_else(|| panic!("the {heading} section has a ```toml block"));
    let len = section[start..]
        .find("```")
        .expect("the ```toml block is closed");
    section[start..start + len].to_owned()
}

/// The first ```toml block after the README's "Minimal config" heading, exactly as printed.
fn readme_minimal_config() -> String {
    readme_toml_after("### Minimal config")
}

/// The block is what the README claims: a signalling URL on the loopback and a recordings
/// directory, nothing else. Returns the printed URL's port.
fn check_it_is_minimal(config: &str) -> u16 {
    let value: toml::Table = config.parse().expect("the README's config is TOML");
    let keys: Vec<String> = value
        .iter()
        .flat_map(|(table, v)| {
            v.as_table()
                .expect("only tables at the top level")
                .keys()
                .map(move |k| format!("{table}.{k}"))
        })
        .collect();
    assert_eq!(keys, ["recording.dir", "signalling.url"], "{config}");
    let url = value["signalling"]["url"].as_str().unwrap();
    let port = url
        .strip_prefix("ws://127.0.0.1:")
        .unwrap_or_else(|| panic!("the README's url {url} should be a loopback ws:// URL"));
    port.parse().expect("the README's url has a port")
}

#[test]
fn the_readme_minimal_config_records_a_call_with_nothing_installed() {
    if Path::new("/usr/share/callrec").exists() {
        eprintln!(
            "\n\n*** SKIPPED the_readme_minimal_config_records_a_call_with_nothing_installed: \
             /usr/share/callrec exists on this machine, so this test cannot show that the \
             README's config works with nothing installed. Run it where callrec is not \
             installed (CI). ***\n\n"
        );
        return;
    }
    let printed = readme_minimal_config();
    let printed_port = check_it_is_minimal(&printed);
    let server = SignallingServer::start();
    let port = server.url().rsplit(':').next().unwrap().to_owned();
    let config = printed.replace(
        &format!("127.0.0.1:{printed_port}"),
        &format!("127.0.0.1:{port}"),
    );
    assert_ne!(config, printed, "the port was substituted");

    let (status, out) = Daemon::check(&config);
    assert_eq!(status.code(), Some(0), "callrec check: {out}");
    assert!(
        out.contains("ok (sources: signalling gst-webrtc ws://127.0.0.1:")
            && out.contains("; templates: participant-mkv)"),
        "{out}"
    );

    let daemon = Daemon::start(&config);
    // `dir = "recordings"` is relative: it is resolved against the config file's directory.
    let recordings = daemon.tmp_dir().join("recordings");
    let mut peer = TestPeer::spawn(
        &server.url(),
        &["--duration", "3", "--meta", r#"{"call":"readme"}"#],
    );
    let id = peer_id(&mut peer);
    let sent = sent_secs(&mut peer);
    let call_dir = recordings.join("readme");
    let manifest = common::wait_complete(&call_dir);
    let files = files_of(&manifest, &id);
    assert_eq!(files.len(), 1, "one participant file: {manifest:#}");
    assert_eq!(manifest["pipelines"][0]["template"], "participant-mkv");
    common::assert_playable(
        &call_dir.join(&files[0]),
        &Expect {
            video_codec: Some("vp8"),
            audio_codec: Some("opus"),
            duration_s: sent,
            tolerance_s: 0.5,
        },
    );
    // Nothing it needed was missing: no template file, and the recordings directory was
    // there before the first call (its free space is read when a call is admitted).
    assert!(
        !daemon.log().contains("cannot read"),
        "the daemon could read all it needs: {}",
        daemon.log()
    );
}

/// The README's example of several sources passes `callrec check` as printed (it names
/// servers that need not be reachable: checking connects to nothing).
#[test]
fn the_readme_several_sources_example_passes_check() {
    let config = readme_toml_after("### Several sources");
    let value: toml::Table = config.parse().expect("the README's config is TOML");
    assert!(
        value["source"].as_array().is_some_and(|s| s.len() >= 2),
        "{config}"
    );
    let (status, output) = Daemon::check(&config);
    assert!(status.success(), "{config}\n{output}");
}

/// The README's WHIP example passes `callrec check` as printed, with a tokens file beside it,
/// and `check` refuses it while that file is missing, naming the file.
#[test]
fn the_readme_whip_example_passes_check() {
    let config = readme_toml_after("### WHIP ingest");
    let (dir, path) = common::config_file(&config);
    let check = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_callrec"));
        cmd.args(["check", "--config"]).arg(&path);
        common::run_with_timeout(cmd, std::time::Duration::from_secs(30))
    };
    let missing = check();
    let text = String::from_utf8_lossy(&missing.stderr).into_owned();
    assert_eq!(missing.status.code(), Some(78), "{text}");
    assert!(text.contains("whip-tokens"), "{text}");
    std::fs::write(dir.path().join("whip-tokens"), "0123456789abcdef0123\n").unwrap();
    let ok = check();
    let text = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(
        ok.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        text.contains("forwarded whip http://127.0.0.1:8090/whip/"),
        "{text}"
    );
}
