//! The WebSocket client: connects with a timeout, registers, forwards events and commands,
//! keeps the connection alive with pings, and reconnects with exponential backoff and jitter.
//!
//! One task owns the socket, so there is exactly one place that decides when a connection is
//! over. Commands issued while disconnected are dropped (with a log line): the server forgets
//! our sessions when we disconnect anyway, and the supervisor asks again after `Connected`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Protocol, SignalCommand, SignalEvent};

/// How often we ping the server.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Silence after which the connection is considered dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(35);
/// Longest time one write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest message and frame accepted from the server: the gst-webrtc server's own limits,
/// so whatever it forwards reaches callrec, which refuses an oversized offer by ending that
/// one session. A smaller limit here would drop the whole connection, and every call's
/// signalling with it, over one hostile producer.
const MAX_MESSAGE_SIZE: usize = 64 << 20;
const MAX_FRAME_SIZE: usize = 16 << 20;

/// Connection settings, taken from the `[signalling]` config.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Handshake timeout.
    pub connect_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// PEM file of the CAs trusted for `wss://` (instead of the public web roots).
    pub ca_file: Option<PathBuf>,
}

/// A `wss://` trust setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the CA file {path}: {message} (give a PEM file with one or more certificates)")]
pub struct TlsError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// The TLS connector for `wss://`: the CAs of `ca_file` if given, else the public web roots.
/// Also makes sure rustls has its crypto provider.
pub(crate) fn tls_connector(
    ca_file: Option<&Path>,
) -> Result<tokio_tungstenite::Connector, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Harmless when already installed; other rustls users in the process need one too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let error = |message: String| TlsError {
                path: path.to_owned(),
                message,
            };
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| error(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(e.to_string()))?;
            if certs.is_empty() {
                return Err(error("no certificate in it".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| error(e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            path: ca_file.map(Path::to_owned).unwrap_or_default(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}

/// Runs the client until `shutdown` is cancelled or the event receiver is gone.
pub async fn run(
    settings: ClientSettings,
    mut protocol: impl Protocol,
    events: mpsc::Sender<SignalEvent>,
    mut commands: mpsc::Receiver<SignalCommand>,
    shutdown: CancellationToken,
) {
    let connector = match tls_connector(settings.ca_file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // `callrec check` and start-up validate this; reaching here means the file changed.
            tracing::error!("{e}");
            return;
        }
    };
    let mut failures: u32 = 0;
    loop {
        if shutdown.is_cancelled() || events.is_closed() {
            return;
        }
        let mut ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        ws_config.max_message_size = Some(MAX_MESSAGE_SIZE);
        ws_config.max_frame_size = Some(MAX_FRAME_SIZE);
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            settings.url.as_str(),
            Some(ws_config),
            false,
            Some(connector.clone()),
        );
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = timeout(settings.connect_timeout, connect) => r,
        };
        match outcome {
            Ok(Ok((ws, _response))) => {
                info!(url = %settings.url, "connected to the signalling server");
                failures = 0;
                let reason =
                    serve_connection(ws, &mut protocol, &events, &mut commands, &shutdown).await;
                if shutdown.is_cancelled() {
                    return;
                }
                warn!(%reason, "signalling connection lost; reconnecting (recordings carry on)");
                let _ = events.send(SignalEvent::Disconnected { reason }).await;
            }
            Ok(Err(e)) => warn!(
                url = %settings.url,
                error = %e,
                "cannot connect to the signalling server; check [signalling] url and that the server runs"
            ),
            Err(_) => warn!(
                url = %settings.url,
                timeout_s = settings.connect_timeout.as_secs_f64(),
                "connecting to the signalling server timed out"
            ),
        }
        failures = failures.saturating_add(1);
        let delay = backoff(failures, settings.reconnect_min, settings.reconnect_max);
        debug!(
            delay_ms = delay.as_millis() as u64,
            "waiting before reconnecting"
        );
        // Commands for the dead connection are stale; drop them while we wait.
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => break,
                cmd = commands.recv() => match cmd {
                    Some(cmd) => debug!(?cmd, "dropping a signalling command while disconnected"),
                    None => return,
                },
            }
        }
    }
}

/// Exponential backoff with full jitter between half and all of the step.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let exp = min.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let step = exp.min(max);
    let jitter = rand::rng().random_range(0.5..=1.0);
    step.mul_f64(jitter).max(Duration::from_millis(10))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves one connection; returns why it ended.
async fn serve_connection(
    mut ws: Ws,
    protocol: &mut impl Protocol,
    events: &mpsc::Sender<SignalEvent>,
    commands: &mut mpsc::Receiver<SignalCommand>,
    shutdown: &CancellationToken,
) -> String {
    for text in protocol.hello() {
        if let Err(e) = send(&mut ws, Message::text(text)).await {
            return format!("registering failed: {e}");
        }
    }
    if events.send(SignalEvent::Connected).await.is_err() {
        return "callrec is shutting down".into();
    }
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = timeout(WRITE_TIMEOUT, ws.close(None)).await;
                return "shutdown".into();
            }
            msg = ws.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => match protocol.parse(&text) {
                        Ok(parsed) => {
                            for event in parsed {
                                if events.send(event).await.is_err() {
                                    return "callrec is shutting down".into();
                                }
                            }
                        }
                        Err(e) => warn!("{e}"),
                    },
                    Some(Ok(Message::Close(frame))) => {
                        return format!("server closed the connection ({frame:?})");
                    }
                    Some(Ok(Message::Binary(_))) => warn!("ignoring a binary signalling frame"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return format!("read error: {e}"),
                    None => return "connection closed".into(),
                }
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return "callrec is shutting down".into() };
                debug!(?cmd, "signalling command");
                for text in protocol.encode(&cmd) {
                    if let Err(e) = send(&mut ws, Message::text(text)).await {
                        return format!("write error: {e}");
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    return format!("no answer from the server for {}s", IDLE_TIMEOUT.as_secs());
                }
                if let Err(e) = send(&mut ws, Message::Ping(Default::default())).await {
                    return format!("ping failed: {e}");
                }
            }
        }
    }
}

async fn send(ws: &mut Ws, msg: Message) -> Result<(), String> {
    match timeout(WRITE_TIMEOUT, ws.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("write timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let min = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        for failures in 1..40 {
            let d = backoff(failures, min, max);
            assert!(d <= max, "{failures}: {d:?}");
            assert!(d >= Duration::from_millis(10));
        }
        assert!(backoff(1, min, max) <= min);
        assert!(backoff(10, min, max) >= max / 2);
    }
}
