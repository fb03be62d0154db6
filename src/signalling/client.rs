//! The WebSocket client: connects with a timeout, registers, forwards events and commands,
//! keeps the connection alive with pings, and reconnects with exponential backoff and jitter.
//!
//! One task owns the socket, so there is exactly one place that decides when a connection is
//! over. Commands issued while disconnected are dropped (with a log line): the server forgets
//! our sessions when we disconnect anyway, and the supervisor asks again after `Connected`.
//! The protocol's clock ticks once a second, and what it produces on its own (replies that
//! follow from replies, see [`Protocol::take_output`]) goes out after every call into it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{header::SEC_WEBSOCKET_PROTOCOL, HeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Protocol, SignalCommand, SignalEvent};

/// How often we ping the server.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// How often the protocol's clock ticks ([`Protocol::tick`]: keepalives, listings).
const TICK_INTERVAL: Duration = Duration::from_secs(1);
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
        // A URL that makes no request fails like a refused connection, and is retried.
        let outcome = match handshake_request(&settings.url, protocol.subprotocol()) {
            Ok(request) => {
                let connect = tokio_tungstenite::connect_async_tls_with_config(
                    request,
                    Some(ws_config),
                    false,
                    Some(connector.clone()),
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = timeout(settings.connect_timeout, connect) => r,
                }
            }
            Err(e) => Ok(Err(e)),
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
                // What ended with the connection (a Janus session and all it carried).
                for event in protocol.disconnected() {
                    let _ = events.send(event).await;
                }
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

/// The handshake request for `url`, asking for the protocol's subprotocol if it needs one.
fn handshake_request(
    url: &str,
    subprotocol: Option<&'static str>,
) -> Result<Request, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request()?;
    if let Some(name) = subprotocol {
        request
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(name));
    }
    Ok(request)
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
    if let Err(reason) = flush(&mut ws, protocol, events).await {
        return reason;
    }
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut clock = tokio::time::interval(TICK_INTERVAL);
    clock.set_missed_tick_behavior(MissedTickBehavior::Delay);
    clock.tick().await;
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
                    Some(Ok(Message::Text(text))) => {
                        match protocol.parse(&text) {
                            Ok(parsed) => {
                                for event in parsed {
                                    if events.send(event).await.is_err() {
                                        return "callrec is shutting down".into();
                                    }
                                }
                            }
                            Err(e) => warn!("{e}"),
                        }
                        if let Err(reason) = flush(&mut ws, protocol, events).await {
                            return reason;
                        }
                    }
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
                if let Err(reason) = flush(&mut ws, protocol, events).await {
                    return reason;
                }
            }
            _ = clock.tick() => {
                for text in protocol.tick(std::time::Instant::now()) {
                    if let Err(e) = send(&mut ws, Message::text(text)).await {
                        return format!("write error: {e}");
                    }
                }
                if let Err(reason) = flush(&mut ws, protocol, events).await {
                    return reason;
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

/// Sends the messages the protocol produced on its own, then forwards its events; the error
/// is why the connection is over.
async fn flush(
    ws: &mut Ws,
    protocol: &mut impl Protocol,
    events: &mpsc::Sender<SignalEvent>,
) -> Result<(), String> {
    let out = protocol.take_output();
    for text in out.messages {
        send(ws, Message::text(text))
            .await
            .map_err(|e| format!("write error: {e}"))?;
    }
    for event in out.events {
        if events.send(event).await.is_err() {
            return Err("callrec is shutting down".into());
        }
    }
    Ok(())
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
    use crate::signalling::{Output, ProtocolError};

    /// A protocol that needs a subprotocol, answers "ask" on its own, and ticks.
    #[derive(Default)]
    struct Chatty {
        output: Output,
        ticked: bool,
    }

    impl Protocol for Chatty {
        fn hello(&mut self) -> Vec<String> {
            vec!["hello".into()]
        }
        fn parse(&mut self, text: &str) -> Result<Vec<SignalEvent>, ProtocolError> {
            if text == "ask" {
                self.output.messages.push("reply".into());
                self.output.events.push(SignalEvent::ServerError {
                    details: "from the output".into(),
                });
            }
            Ok(vec![SignalEvent::ServerError {
                details: text.into(),
            }])
        }
        fn encode(&mut self, _: &SignalCommand) -> Vec<String> {
            vec![]
        }
        fn subprotocol(&self) -> Option<&'static str> {
            Some("chatty-protocol")
        }
        fn tick(&mut self, _: std::time::Instant) -> Vec<String> {
            if std::mem::replace(&mut self.ticked, true) {
                vec![]
            } else {
                vec!["tick".into()]
            }
        }
        fn take_output(&mut self) -> Output {
            std::mem::take(&mut self.output)
        }
        fn disconnected(&mut self) -> Vec<SignalEvent> {
            vec![SignalEvent::SessionEnded {
                session_id: "gone with the connection".into(),
            }]
        }
    }

    async fn next_text(
        ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    ) -> String {
        match timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
            other => panic!("{other:?}"),
        }
    }

    /// The test server's handshake: the client must ask for the subprotocol, which is
    /// granted. (The error type is tungstenite's, large or not.)
    #[allow(clippy::result_large_err)]
    fn echo_subprotocol(
        req: &tokio_tungstenite::tungstenite::handshake::server::Request,
        mut resp: tokio_tungstenite::tungstenite::handshake::server::Response,
    ) -> Result<
        tokio_tungstenite::tungstenite::handshake::server::Response,
        tokio_tungstenite::tungstenite::handshake::server::ErrorResponse,
    > {
        let asked = req.headers().get(SEC_WEBSOCKET_PROTOCOL).cloned();
        assert_eq!(
            asked.as_ref().map(|v| v.as_bytes()),
            Some(&b"chatty-protocol"[..])
        );
        resp.headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, asked.expect("asked"));
        Ok(resp)
    }

    #[tokio::test]
    async fn the_protocol_gets_its_subprotocol_its_clock_and_its_own_say() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, echo_subprotocol)
                .await
                .unwrap();
            let mut texts = vec![];
            texts.push(next_text(&mut ws).await);
            ws.send(Message::text("ask")).await.unwrap();
            texts.push(next_text(&mut ws).await);
            texts.push(next_text(&mut ws).await);
            ws.close(None).await.unwrap();
            texts
        });
        let (events_tx, mut events) = mpsc::channel(16);
        let (_commands_tx, commands) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let settings = ClientSettings {
            url,
            connect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_secs(60),
            reconnect_max: Duration::from_secs(60),
            ca_file: None,
        };
        let client = tokio::spawn(run(
            settings,
            Chatty::default(),
            events_tx,
            commands,
            shutdown.clone(),
        ));
        let mut texts = timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(texts.remove(0), "hello");
        // The reply to "ask" and the first tick, in whichever order they met.
        texts.sort();
        assert_eq!(texts, vec!["reply", "tick"]);
        let mut seen = vec![];
        while seen.len() < 5 {
            match timeout(Duration::from_secs(5), events.recv()).await {
                Ok(Some(event)) => seen.push(event),
                other => panic!("{other:?} after {seen:?}"),
            }
        }
        assert_eq!(seen[0], SignalEvent::Connected);
        let error = |d: &str| SignalEvent::ServerError { details: d.into() };
        assert_eq!(seen[1..3], [error("ask"), error("from the output")]);
        assert!(matches!(seen[3], SignalEvent::Disconnected { .. }));
        assert_eq!(
            seen[4],
            SignalEvent::SessionEnded {
                session_id: "gone with the connection".into()
            }
        );
        shutdown.cancel();
        timeout(Duration::from_secs(5), client)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn the_handshake_asks_for_the_subprotocol_only_when_needed() {
        let plain = handshake_request("ws://127.0.0.1:1", None).unwrap();
        assert!(plain.headers().get(SEC_WEBSOCKET_PROTOCOL).is_none());
        let janus = handshake_request("ws://127.0.0.1:1", Some("janus-protocol")).unwrap();
        assert_eq!(janus.headers()[SEC_WEBSOCKET_PROTOCOL], "janus-protocol");
        assert!(handshake_request("not a url", None).is_err());
    }

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
