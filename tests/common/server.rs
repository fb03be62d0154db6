//! The real `gst-webrtc-signalling-server` (installed by `cargo install
//! gst-plugin-webrtc-signalling`), on a loopback port, killed on drop: the host's loopback,
//! or that of a network namespace the test made ([`SignallingServer::start_in_netns`]).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::netns::{connect_tcp_in, free_port_in};
use super::processes::{free_port, kill, tail_file, tool};

/// A real `gst-webrtc-signalling-server` on a loopback port.
pub struct SignallingServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    tls: Option<(PathBuf, PathBuf)>,
    /// The network namespace it runs in (`None`: the test's own).
    netns: Option<String>,
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

    /// Starts it inside network namespace `netns` (`ip netns exec`, which execs the server,
    /// so killing the child kills it), on that namespace's loopback: [`SignallingServer::url`]
    /// is reachable from what runs in the namespace only.
    pub fn start_in_netns(netns: &str) -> Self {
        let mut server = SignallingServer {
            port: free_port_in(netns),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            tls: None,
            netns: Some(netns.to_owned()),
        };
        server.spawn();
        server
    }

    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> Self {
        let mut server = SignallingServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            tls,
            netns: None,
        };
        server.spawn();
        server
    }

    /// Whether it accepts connections yet (from inside its namespace).
    fn accepts(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        match &self.netns {
            None => TcpStream::connect(addr).is_ok(),
            Some(ns) => connect_tcp_in(ns, addr, Duration::from_secs(1)).is_ok(),
        }
    }

    fn spawn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
            let server = tool("gst-webrtc-signalling-server");
            let mut cmd = match &self.netns {
                None => Command::new(server),
                Some(ns) => {
                    let mut cmd = Command::new("ip");
                    cmd.args(["netns", "exec", ns]).arg(server);
                    cmd
                }
            };
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
                if self.accepts() {
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
