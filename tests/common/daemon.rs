//! The callrec daemon as a child process (killed on drop, its log printed if the test
//! fails), with a notify socket standing in for systemd, here or inside a network namespace
//! the test made; and `callrec check`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::fixtures::config_file;
use super::processes::{kill, run_with_timeout, signal, tail_file, wait_child};

/// The callrec daemon, with a notify socket standing in for systemd.
pub struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    notifications: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Writes the config, starts `callrec run` and waits for READY=1.
    pub fn start(config: &str) -> Self {
        Self::start_command(Command::new(env!("CARGO_BIN_EXE_callrec")), config)
    }

    /// [`Daemon::start`] inside network namespace `netns` (`ip netns exec`, which execs
    /// callrec, so killing the child kills callrec). The notify socket is a path, which
    /// namespaces do not separate.
    pub fn start_in_netns(netns: &str, config: &str) -> Self {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(env!("CARGO_BIN_EXE_callrec"));
        Self::start_command(cmd, config)
    }

    /// Starts `cmd run --config ...` (`cmd` runs callrec) and waits for READY=1.
    fn start_command(mut cmd: Command, config: &str) -> Self {
        let (dir, config_path) = config_file(config);
        let socket_path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let notifications = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let sink = notifications.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if msg.lines().any(|l| l == "READY=1") {
                            let _ = ready_tx.send(());
                        }
                        sink.lock().unwrap().push(msg);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if Arc::strong_count(&sink) == 1 {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let child = cmd
            .args(["run", "--config"])
            .arg(&config_path)
            .env("NOTIFY_SOCKET", &socket_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "callrec=debug,info".into()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start callrec");
        let mut daemon = Daemon {
            child,
            dir,
            notifications,
        };
        // Bounded, and cut short when callrec exits (a refused config) instead of waiting.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(200)).is_ok() {
                return daemon;
            }
            let exited = daemon.child.try_wait().ok().flatten();
            if exited.is_some() || std::time::Instant::now() >= deadline {
                let log = daemon.log();
                kill(&mut daemon.child);
                match exited {
                    Some(status) => panic!("callrec exited ({status}) before READY=1; log:\n{log}"),
                    None => panic!("callrec did not send READY=1 within 20 s; log:\n{log}"),
                }
            }
        }
    }

    /// Runs `callrec check` on a config; returns its status and output.
    pub fn check(config: &str) -> (ExitStatus, String) {
        let (_dir, path) = config_file(config);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_callrec"));
        cmd.args(["check", "--config"]).arg(&path);
        let out = run_with_timeout(cmd, Duration::from_secs(30));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        signal(&self.child, "-TERM");
    }

    /// Sends SIGINT.
    pub fn sigint(&self) {
        signal(&self.child, "-INT");
    }

    /// Sends SIGHUP (reload).
    pub fn sighup(&self) {
        signal(&self.child, "-HUP");
    }

    /// True while the daemon process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it with SIGKILL and reaps it, as a crash would end it.
    pub fn sigkill(&mut self) {
        kill(&mut self.child);
    }

    /// Waits for the daemon to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match wait_child(&mut self.child, timeout) {
            Some(s) => s,
            None => panic!(
                "callrec did not exit within {timeout:?}; log tail:\n{}",
                tail_file(&self.dir.path().join("daemon.log"), 4000)
            ),
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The sd_notify messages received so far.
    pub fn notifications(&self) -> Vec<String> {
        self.notifications.lock().unwrap().clone()
    }

    /// The daemon's temporary directory (config, log, notify socket).
    pub fn tmp_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "---- callrec log tail ----\n{}",
                tail_file(&self.dir.path().join("daemon.log"), 6000)
            );
        }
    }
}
