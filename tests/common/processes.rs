//! Child processes with bounds: every wait has a deadline, every run has a time limit, and a
//! child that runs over is killed. Output is collected on threads, so a chatty child never
//! blocks on a full pipe.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(10);

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// A tool from `PATH`, else from cargo's bin directory (where `cargo install` puts it).
pub(super) fn tool(name: &str) -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    home.join("bin").join(name)
}

/// SIGKILL, and reap it.
pub(super) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL to the process group a child leads (it was started with `process_group(0)`), so
/// the helpers it forked die with it; then reap it.
pub(super) fn kill_group(child: &mut Child) {
    // The group id is the child's pid; `kill -KILL -- -PGID` signals that group alone.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    kill(child);
}

/// Whether this test may start children favoured by the scheduler (`nice -n -10`): only as
/// root. Decided by the uid alone: `nice` itself runs the command anyway, at the usual
/// priority, when it may not raise it, so trying `nice -n -10 true` proves nothing.
pub(super) fn can_favour() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// Sends a signal (`-TERM`, `-HUP`...) without waiting.
pub(super) fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .status();
}

/// The JSON objects a child prints on its (piped) stdout, one a line, read on a thread of
/// their own; lines that are not JSON are skipped.
pub(super) fn json_lines(child: &mut Child) -> mpsc::Receiver<Value> {
    let stdout = child.stdout.take().expect("piped stdout");
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
    rx
}

/// Waits up to `timeout` for the child to exit; `None` if it is still running.
pub(super) fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
    }
}

/// The last `max` bytes of some output, as text.
pub fn tail_bytes(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

/// The last `max` bytes of a (log) file, as text; empty if it cannot be read.
pub(super) fn tail_file(path: &Path, max: usize) -> String {
    tail_bytes(&std::fs::read(path).unwrap_or_default(), max)
}

/// Runs a command with a time limit, killing it (and panicking with its stderr tail) if it
/// runs over. Its stdin is empty.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_thread = std::thread::spawn(move || {
        let mut v = vec![];
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = vec![];
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let status = match wait_child(&mut child, timeout) {
        Some(status) => status,
        None => {
            kill(&mut child);
            let stderr = err_thread.join().unwrap_or_default();
            panic!(
                "{cmd:?} did not finish within {timeout:?}, killed it; stderr tail:\n{}",
                tail_bytes(&stderr, 4000)
            );
        }
    };
    Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

/// [`run_with_timeout`] for a command that must succeed; panics with its stderr otherwise.
pub fn run_ok(cmd: Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let out = run_with_timeout(cmd, timeout);
    assert!(
        out.status.success(),
        "{desc} failed ({}):\n{}",
        out.status,
        tail_bytes(&out.stderr, 4000)
    );
    out
}

/// Polls `f` until it gives a value; panics after `timeout`.
pub fn wait_for<T>(timeout: Duration, poll: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(poll);
    }
}
