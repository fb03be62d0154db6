//! `callrec-testpeer` producers as child processes (killed on drop): for the signalling
//! server, for a WHIP endpoint, and as Janus VideoRoom publishers inside the Janus fixture's
//! network namespace. Where the binary comes from is [`super::bins`]'s job.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::bins::testpeer_bin;
use super::janus::Janus;
use super::processes::{can_favour, json_lines, kill, signal, tail_file, wait_child};

/// A `callrec-testpeer` producer process.
pub struct TestPeer {
    child: Child,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    dir: tempfile::TempDir,
    /// Files it reads (secrets), kept as long as it runs.
    files: Vec<tempfile::NamedTempFile>,
}

/// Where the signalling and WHIP peers do ICE.
const LOOPBACK: &str = "127.0.0.1";

impl TestPeer {
    /// Starts a producer against `url` with extra arguments.
    pub fn spawn(url: &str, args: &[&str]) -> Self {
        Self::spawn_command(
            Command::new(testpeer_bin()),
            &["--url", url],
            LOOPBACK,
            args,
        )
    }

    /// Starts a producer that publishes to a WHIP endpoint (`whip_url`, e.g.
    /// `http://127.0.0.1:PORT/whip/CALL?name=NAME`) instead of using the signalling server.
    pub fn spawn_whip(whip_url: &str, args: &[&str]) -> Self {
        Self::spawn_command(
            Command::new(testpeer_bin()),
            &["--whip", whip_url],
            LOOPBACK,
            args,
        )
    }

    /// [`TestPeer::spawn`] inside network namespace `netns`, with ICE on `ice_address` (an
    /// address of that namespace): for a signalling server that runs there
    /// ([`super::SignallingServer::start_in_netns`]).
    pub fn spawn_in_netns(netns: &str, ice_address: &str, url: &str, args: &[&str]) -> Self {
        Self::spawn_command(netns_command(netns), &["--url", url], ice_address, args)
    }

    /// [`TestPeer::spawn_whip`] inside network namespace `netns`, with ICE on `ice_address`:
    /// for a callrec that runs there.
    pub fn spawn_whip_in_netns(
        netns: &str,
        ice_address: &str,
        whip_url: &str,
        args: &[&str],
    ) -> Self {
        Self::spawn_command(
            netns_command(netns),
            &["--whip", whip_url],
            ice_address,
            args,
        )
    }

    /// Starts a publisher in Janus VideoRoom `room` with display name `display` (`None`:
    /// no display), inside the Janus fixture's namespace and on its local address. Its
    /// `welcome` event's `peer_id` is its feed id. Extra `args` as for [`TestPeer::spawn`]
    /// (`--janus-pin-file`, `--janus-republish-after`, `--video h264`...); the API secret of
    /// a Janus that has one is given by a file of its own.
    pub fn spawn_janus(janus: &Janus, room: u64, display: Option<&str>, args: &[&str]) -> Self {
        let cmd = netns_command(janus.netns());
        let room = room.to_string();
        let url = janus.url();
        // `--display=NAME`: a hostile name may start with `-`.
        let display = display.map(|d| format!("--display={d}"));
        let mut target = vec!["--janus", url.as_str(), "--janus-room", room.as_str()];
        target.extend(display.as_deref());
        let secret = janus.api_secret().map(|secret| {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), secret).unwrap();
            file
        });
        let secret_path = secret.as_ref().map(|f| f.path().display().to_string());
        if let Some(path) = &secret_path {
            target.extend(["--janus-api-secret-file", path.as_str()]);
        }
        let mut peer = Self::spawn_command(cmd, &target, &janus.local_address(), args);
        peer.files.extend(secret);
        peer
    }

    /// Starts a producer that the scheduler favours over everything else (`nice -n -10`,
    /// where the tests may raise priorities): for tests that load the machine on purpose, so
    /// that what callrec records is not thinned out at the source.
    pub fn spawn_favoured(url: &str, args: &[&str]) -> Self {
        if !can_favour() {
            return Self::spawn(url, args);
        }
        let mut cmd = Command::new("nice");
        cmd.args(["-n", "-10"]).arg(testpeer_bin());
        Self::spawn_command(cmd, &["--url", url], LOOPBACK, args)
    }

    /// Runs `cmd` with `target` (where to publish: `--url URL`, `--whip URL` or `--janus
    /// URL ...`), ICE on `ice_address` only, and `args`.
    fn spawn_command(mut cmd: Command, target: &[&str], ice_address: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("peer.log")).unwrap();
        let mut child = cmd
            .args(target)
            .args(["--ice-address", ice_address])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", testpeer_bin().display()));
        let rx = json_lines(&mut child);
        TestPeer {
            child,
            events: rx,
            seen: vec![],
            dir,
            files: vec![],
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

    /// SIGTERM: a graceful stop (a Janus publisher leaves the room).
    pub fn sigterm(&self) {
        signal(&self.child, "-TERM");
    }

    /// Everything it logged on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default()
    }
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// `ip netns exec NETNS callrec-testpeer` (which execs the peer, so killing the child kills
/// the peer).
fn netns_command(netns: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]).arg(testpeer_bin());
    cmd
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
