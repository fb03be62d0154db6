//! sd_notify: tells systemd (Type=notify) when callrec is ready, reloading or stopping.
//!
//! Datagrams of `KEY=VALUE` lines go to the socket named by `NOTIFY_SOCKET`; when it is not
//! set, nothing is sent. Abstract sockets (`@name`) are supported.

use std::os::unix::net::UnixDatagram;

/// A handle on the notify socket, if systemd gave one.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` once at start-up.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = if let Some(name) = path.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&path).ok()?
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        Self { socket }
    }

    /// Sends one state update; failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        if let Some((sock, addr)) = &self.socket {
            if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
                tracing::warn!("cannot notify systemd ({state}): {e}");
            }
        }
    }
}
