//! The real `gst-webrtc-signalling-server` (installed by `cargo install
//! gst-plugin-webrtc-signalling`), on a loopback port, killed on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::processes::{free_port, kill, tail_file, tool};

/// A real `gst-webrtc-signalling-server` on a loopback port.
pub struct SignallingServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    tls: Option<(PathBuf, PathBuf)>,
}

impl SignallingServer {
    /// Starts it on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts it with TLS (`wss://`), using a PEM certificate chain and key.
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        Self::start_with(Some((cert.to_owned(), key.to_owned())))
    }

    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> Self {
        let mut server = SignallingServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            tls,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
            let mut cmd = Command::new(tool("gst-webrtc-signalling-server"));
            cmd.args(["--host", "127.0.0.1", "--port", &self.port.to_string()]);
            if let Some((cert, key)) = &self.tls {
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
            let mut child = cmd
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect(
                "start gst-webrtc-signalling-server (cargo install gst-plugin-webrtc-signalling)",
            );
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port still taken: try again
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            kill(&mut child);
            assert!(
                Instant::now() < deadline,
                "signalling server did not start: {}",
                tail_file(&self.dir.path().join("server.log"), 2000)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    /// Kills it and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for SignallingServer {
    fn drop(&mut self) {
        self.stop();
    }
}
