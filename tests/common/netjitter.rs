//! `callrec-netjitter` as a child process (killed on drop): random delay on an NFQUEUE queue.
//! It runs in the network namespace of the test process that starts it; the packet loss test
//! starts it only from inside a namespace of its own, which is where its iptables rule goes.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::bins::netjitter_bin;
use super::processes::{can_favour, json_lines, kill, signal, tail_file, wait_child};

/// Longest the injector may take to bind its queue, or to stop and report.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A running `callrec-netjitter`.
pub struct NetJitter {
    child: Child,
    lines: mpsc::Receiver<Value>,
    dir: tempfile::TempDir,
}

/// What the injector did, from its `stopped` line (see `testpeer/src/netjitter/main.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct JitterReport {
    /// Packets the kernel queued to it.
    pub received: u64,
    /// Packets released after their random delay.
    pub delayed: u64,
    /// Packets accepted at once because its bound of held packets was reached.
    pub over_bound: u64,
    /// Packets released early because it was stopped.
    pub released_at_stop: u64,
    /// Mean delay of the `delayed` packets, arrival to release, in milliseconds.
    pub mean_delay_ms: f64,
    /// The longest delay of a `delayed` packet, in milliseconds.
    pub max_delay_ms: f64,
    /// Packets released after one that arrived later.
    pub reordered: u64,
    /// Verdicts the kernel refused (an unknown packet id).
    pub verdict_errors: u64,
    /// Receive overruns: messages the kernel could not hand over, whose packets stayed queued.
    pub overruns: u64,
}

impl NetJitter {
    /// Starts it on `queue` (with extra arguments, e.g. `--delay-ms`) and waits until the
    /// queue is bound. `Err` is the kernel's refusal to bind it (this kernel or this user may
    /// lack NFQUEUE), and the caller decides what that means; an injector that cannot be
    /// started, crashes or says nothing in time is broken, and panics. Favoured by the
    /// scheduler where the tests may raise priorities: its delays should be its own, not a
    /// loaded machine's.
    pub fn start(queue: u16, args: &[&str]) -> Result<Self, String> {
        let mut cmd = if can_favour() {
            let mut nice = Command::new("nice");
            nice.args(["-n", "-10"]).arg(netjitter_bin());
            nice
        } else {
            Command::new(netjitter_bin())
        };
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("netjitter.log")).unwrap();
        let mut child = cmd
            .args(["--queue", &queue.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", netjitter_bin().display()));
        let lines = json_lines(&mut child);
        let jitter = NetJitter { child, lines, dir };
        match jitter.lines.recv_timeout(TIMEOUT) {
            Ok(v) if v["event"] == "ready" => Ok(jitter),
            Ok(v) if v["event"] == "error" => Err(v["message"].as_str().unwrap_or("?").to_owned()),
            other => panic!(
                "callrec-netjitter: no ready line within {TIMEOUT:?} ({other:?}); stderr: {}",
                jitter.stderr_tail()
            ),
        }
    }

    fn stderr_tail(&self) -> String {
        tail_file(&self.dir.path().join("netjitter.log"), 2000)
    }

    /// SIGTERM, then its report; panics if it fails to stop cleanly within the bound.
    pub fn stop(mut self) -> JitterReport {
        signal(&self.child, "-TERM");
        let status = wait_child(&mut self.child, TIMEOUT);
        let stopped = std::iter::from_fn(|| self.lines.recv_timeout(TIMEOUT).ok())
            .find(|v| v["event"] == "stopped");
        assert!(
            status.is_some_and(|s| s.success()),
            "callrec-netjitter did not stop cleanly within {TIMEOUT:?} ({status:?}); stderr: {}",
            self.stderr_tail()
        );
        let v = stopped.unwrap_or_else(|| {
            panic!(
                "callrec-netjitter stopped without a report; stderr: {}",
                self.stderr_tail()
            )
        });
        let count = |k: &str| {
            v[k].as_u64()
                .unwrap_or_else(|| panic!("report without {k}: {v}"))
        };
        let ms = |k: &str| {
            v[k].as_f64()
                .unwrap_or_else(|| panic!("report without {k}: {v}"))
        };
        JitterReport {
            received: count("received"),
            delayed: count("delayed"),
            over_bound: count("over_bound"),
            released_at_stop: count("released_at_stop"),
            mean_delay_ms: ms("mean_delay_ms"),
            max_delay_ms: ms("max_delay_ms"),
            reordered: count("reordered"),
            verdict_errors: count("verdict_errors"),
            overruns: count("overruns"),
        }
    }
}

impl Drop for NetJitter {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
