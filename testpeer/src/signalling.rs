//! The signalling client: the WebSocket to the gst-webrtc signalling server or to Janus
//! (`ws://` or `wss://`), connected with a short retry while the server starts, read one
//! message at a time, and closed with a bounded handshake.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::debug;

use crate::Stop;

/// How long the initial WebSocket connection is retried.
const CONNECT_RETRY: Duration = Duration::from_secs(10);

/// Upper bound for the clean WebSocket close handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// WebSocket connection to the signalling server.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Next WebSocket message; pending forever once the socket is gone.
pub async fn next_message(ws: &mut Option<Ws>) -> Option<Result<Message, tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// Next WebSocket message of a socket that is there.
pub async fn next_message_of(ws: &mut Ws) -> Option<Result<Message, tungstenite::Error>> {
    ws.next().await
}

/// The TLS connector for `wss://`: the CAs of `ca_file` if given, else the public web roots.
fn tls_connector(ca_file: Option<&std::path::Path>) -> Result<tokio_tungstenite::Connector> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Harmless when already installed; any other rustls user in the process needs one too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot read the CA file {}", path.display()))?;
            if certs.is_empty() {
                bail!("no certificate in the CA file {}", path.display());
            }
            for cert in certs {
                roots
                    .add(cert)
                    .with_context(|| format!("bad certificate in {}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}

/// Connects to the signalling server, retrying briefly while it starts up.
pub async fn connect(
    url: &str,
    ca_file: Option<&std::path::Path>,
    stop: &mut watch::Receiver<Stop>,
) -> Result<Option<Ws>> {
    connect_with_subprotocol(url, ca_file, None, stop).await
}

/// [`connect`], asking for a WebSocket `subprotocol` in the handshake (Janus refuses
/// connections without `janus-protocol`); tungstenite then checks the server agreed to it.
pub async fn connect_with_subprotocol(
    url: &str,
    ca_file: Option<&std::path::Path>,
    subprotocol: Option<&str>,
    stop: &mut watch::Receiver<Stop>,
) -> Result<Option<Ws>> {
    let give_up = Instant::now() + CONNECT_RETRY;
    loop {
        let connector = tls_connector(ca_file)?;
        let mut request = url
            .into_client_request()
            .with_context(|| format!("bad WebSocket URL {url}"))?;
        if let Some(subprotocol) = subprotocol {
            let value = HeaderValue::from_str(subprotocol)
                .with_context(|| format!("bad subprotocol {subprotocol:?}"))?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", value);
        }
        match tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            false,
            Some(connector),
        )
        .await
        {
            Ok((ws, _)) => return Ok(Some(ws)),
            Err(e) if Instant::now() < give_up => {
                debug!("cannot connect to {url}: {e}; retrying");
            }
            Err(e) => return Err(anyhow!("cannot connect to {url}: {e}")),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return Ok(None),
        }
    }
}

/// Sends one text message.
pub async fn send_text(ws: &mut Ws, text: String) -> Result<(), tungstenite::Error> {
    ws.send(Message::text(text)).await
}

/// Closes the connection cleanly: our close frame, then the server's reply, within
/// [`CLOSE_TIMEOUT`]; whatever happens is only worth a debug line.
pub async fn close(mut ws: Ws, peer: u32) {
    let close = async {
        ws.close(None).await?;
        while let Some(msg) = ws.next().await {
            msg?;
        }
        Ok::<_, tungstenite::Error>(())
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, close).await {
        Ok(Ok(())) | Ok(Err(tungstenite::Error::ConnectionClosed)) => {}
        Ok(Err(e)) => debug!(peer, "WebSocket close: {e}"),
        Err(_) => debug!(peer, "WebSocket close timed out"),
    }
}
