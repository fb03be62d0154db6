//! `callrec-testpeer` producers as child processes (killed on drop), and their binary.
//!
//! The peer is a crate of its own in the workspace (`testpeer/`), so cargo does not build it
//! for callrec's tests and there is no `CARGO_BIN_EXE_callrec-testpeer`. The first peer a test
//! process starts runs `cargo build -p callrec-testpeer` (in the profile of the running test,
//! into the same target directory) and takes the binary's path from cargo's own report of
//! what it built: nothing is guessed, `CARGO_TARGET_DIR` and build directories are honoured,
//! and a changed peer is rebuilt. That is quick when the peer is up to date, and
//! `bash scripts/test.sh` builds it before any test runs. `CALLREC_TESTPEER=/path/to/binary`
//! skips all this and runs that binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::processes::{kill, run_with_timeout, tail_bytes, tail_file, wait_child};

/// Longest a build of the peer may take (a first build compiles the GStreamer bindings).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The `callrec-testpeer` binary the tests run (built or found once per test process).
pub fn testpeer_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("CALLREC_TESTPEER") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "CALLREC_TESTPEER={} is not a file",
                path.display()
            );
            path
        }
        None => build_testpeer(),
    })
}

/// Builds the peer with cargo and returns the executable cargo reports.
fn build_testpeer() -> PathBuf {
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let profile = profile_args();
    let mut cmd = Command::new(&cargo);
    // Without what cargo set for this test's own package: build scripts that watch such a
    // variable (ring's watches CARGO_MANIFEST_DIR) would otherwise rebuild half the tree on
    // every switch between this build and one from the shell.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
            )
        {
            cmd.env_remove(&*name);
        }
    }
    cmd.args(["build", "-p", "callrec-testpeer"])
        .args(&profile)
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    let by_hand = format!(
        "cargo build --locked -p callrec-testpeer {}",
        profile.join(" ")
    );
    let by_hand = by_hand.trim_end();
    let out = run_with_timeout(cmd, BUILD_TIMEOUT);
    assert!(
        out.status.success(),
        "cannot build the test peer ({} {}); run `{by_hand}` to see why, or point \
         CALLREC_TESTPEER at a built callrec-testpeer. cargo said:\n{}",
        Path::new(&cargo).display(),
        out.status,
        tail_bytes(&out.stderr, 4000)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "callrec-testpeer")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| {
            panic!("cargo built the test peer but did not say where; run `{by_hand}` and set CALLREC_TESTPEER to the binary")
        })
}

/// The cargo profile of the running test, as `cargo build` arguments: its executable is in
/// `<target>/<profile dir>/deps/`, and `debug` is the `dev` profile.
fn profile_args() -> Vec<String> {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name);
    match dir.and_then(|d| d.to_str()) {
        Some("release") => vec!["--release".into()],
        Some(name) if name != "debug" && !name.is_empty() => {
            vec!["--profile".into(), name.into()]
        }
        _ => vec![],
    }
}

/// A `callrec-testpeer` producer process.
pub struct TestPeer {
    child: Child,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    dir: tempfile::TempDir,
}

impl TestPeer {
    /// Starts a producer against `url` with extra arguments.
    pub fn spawn(url: &str, args: &[&str]) -> Self {
        Self::spawn_command(Command::new(testpeer_bin()), &["--url", url], args)
    }

    /// Starts a producer that publishes to a WHIP endpoint (`whip_url`, e.g.
    /// `http://127.0.0.1:PORT/whip/CALL?name=NAME`) instead of using the signalling server.
    pub fn spawn_whip(whip_url: &str, args: &[&str]) -> Self {
        Self::spawn_command(Command::new(testpeer_bin()), &["--whip", whip_url], args)
    }

    /// Starts a producer that the scheduler favours over everything else (`nice -n -10`,
    /// where the tests may raise priorities): for tests that load the machine on purpose, so
    /// that what callrec records is not thinned out at the source.
    pub fn spawn_favoured(url: &str, args: &[&str]) -> Self {
        // Only root may raise a priority (`nice` itself runs the command anyway, at the
        // usual priority, when it may not).
        let may_raise = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        });
        if !may_raise {
            return Self::spawn(url, args);
        }
        let mut cmd = Command::new("nice");
        cmd.args(["-n", "-10"]).arg(testpeer_bin());
        Self::spawn_command(cmd, &["--url", url], args)
    }

    /// Runs `cmd` with `target` (where to publish: `--url URL` or `--whip URL`) and `args`.
    fn spawn_command(mut cmd: Command, target: &[&str], args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("peer.log")).unwrap();
        let mut child = cmd
            .args(target)
            .args(["--ice-address", "127.0.0.1"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", testpeer_bin().display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        TestPeer {
            child,
            events: rx,
            seen: vec![],
            dir,
        }
    }

    /// Waits for the next event named `event` (or returns one already seen but not taken).
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Value {
        if let Some(pos) = self.seen.iter().position(|v| v["event"] == event) {
            return self.seen.remove(pos);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if v["event"] == event => return v,
                Ok(v) => self.seen.push(v),
                Err(_) => panic!(
                    "test peer: no {event:?} event within {timeout:?}; stderr tail:\n{}",
                    tail_file(&self.dir.path().join("peer.log"), 3000)
                ),
            }
        }
    }

    /// Every event received so far (without waiting).
    pub fn events(&mut self) -> Vec<Value> {
        while let Ok(v) = self.events.try_recv() {
            self.seen.push(v);
        }
        self.seen.clone()
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_child(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("test peer did not exit within {timeout:?}"))
    }

    /// SIGKILL: the abrupt disconnect.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// The peer id a test peer got from the server.
pub fn peer_id(peer: &mut TestPeer) -> String {
    peer.wait_event("welcome", Duration::from_secs(20))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits for a test peer to finish and returns the seconds of media it sent.
pub fn sent_secs(peer: &mut TestPeer) -> f64 {
    let done = peer.wait_event("done", Duration::from_secs(60));
    done["sent_secs"].as_f64().expect("done carries sent_secs")
}
