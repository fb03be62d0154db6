//! WHIP ingest (RFC 9725): a source whose clients publish to callrec over HTTP.
//!
//! A client `POST`s its SDP offer to `/whip/{call}` (`?name=` or an `X-Callrec-Name` header
//! names the participant) with a bearer token from `[[source]] tokens_file`. To the
//! supervisor this looks like any producer of a signalling server: the endpoint announces
//! it (`ProducerAdded`, with the call and name in its meta), the supervisor admits it and
//! asks for a session, and the call answers the offer as it answers a gst-webrtc
//! producer's. The HTTP response waits for that answer and for the end of callrec's ICE
//! gathering, because a WHIP endpoint cannot trickle candidates to the client: the answer
//! carries them all. The session's URL (`Location`) then takes the client's trickled
//! candidates (`PATCH`) and its end (`DELETE`).
//!
//! [`hub`] holds the sessions and speaks [`SignalEvent`]s and [`SignalCommand`]s; [`http`]
//! is the server, which turns requests into [`hub::Request`]s; [`tokens`] and [`trickle`]
//! are plain data.

mod http;
mod hub;
pub mod tokens;
pub mod trickle;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{SignalCommand, SignalEvent};
pub use tokens::{Tokens, TokensError};

/// Largest offer a client may POST (a browser's, with simulcast, is about 10 kB).
pub const MAX_OFFER_BYTES: usize = 128 * 1024;
/// Largest trickle fragment a client may PATCH.
pub const MAX_FRAGMENT_BYTES: usize = 32 * 1024;
/// Most WHIP sessions at once, across calls (a client that floods gets `503`).
pub const MAX_SESSIONS: usize = 512;
/// How long the POST waits for callrec's ICE gathering to end after the answer, before it
/// answers with the candidates it has (on loopback and host-only networks it takes
/// milliseconds; a STUN server that does not answer takes seconds).
pub const GATHER_WAIT: Duration = Duration::from_secs(2);

/// What a WHIP source is configured with.
#[derive(Debug, Clone)]
pub struct WhipSettings {
    /// The source's name, for logs.
    pub source: String,
    /// Who may publish.
    pub tokens: Tokens,
    /// HTTPS, if configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The `[recording] group_key`: the meta key the call's name goes under, so the
    /// supervisor groups WHIP participants of a call as it groups any producers.
    pub group_key: String,
    /// ICE servers for the `Link` headers (`stun:` and `turn:` URIs with their attributes).
    pub ice_servers: Vec<IceServer>,
    /// Whether callrec can record an RTP encoding name (`VP8`, `opus`): an offer with none
    /// it can record is refused with `406`.
    pub records_encoding: fn(&str) -> bool,
    /// How long a POST waits for the supervisor to start its session and the call to
    /// answer.
    pub answer_timeout: Duration,
}

/// One ICE server for a `Link: <uri>; rel="ice-server"` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port` or `turn:host:port`.
    pub uri: String,
    /// TURN credentials; sent only to authenticated clients.
    pub credentials: Option<(String, String)>,
}

impl IceServer {
    /// The `Link` header value.
    fn link(&self) -> String {
        match &self.credentials {
            None => format!("<{}>; rel=\"ice-server\"", self.uri),
            Some((user, password)) => format!(
                "<{}>; rel=\"ice-server\"; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                self.uri,
                user.replace(['"', '\\'], ""),
                password.replace(['"', '\\'], "")
            ),
        }
    }

    /// Reads `[ice]` URLs (`stun://host:port`, `turn://user:password@host:port`,
    /// `turns://…`) into ICE server URIs; one that does not parse is left out.
    pub fn from_config(stun: Option<&str>, turns: &[String]) -> Vec<IceServer> {
        let mut servers = vec![];
        for (url, turn) in stun
            .into_iter()
            .map(|s| (s, false))
            .chain(turns.iter().map(|t| (t.as_str(), true)))
        {
            let Ok(parsed) = url::Url::parse(url) else {
                continue;
            };
            let Some(host) = parsed.host_str() else {
                continue;
            };
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            let scheme = parsed.scheme();
            let credentials = (turn && !parsed.username().is_empty()).then(|| {
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (
                    decode(parsed.username()),
                    decode(parsed.password().unwrap_or("")),
                )
            });
            servers.push(IceServer {
                uri: format!("{scheme}:{host}{port}"),
                credentials,
            });
        }
        servers
    }
}

/// A WHIP listener that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    /// The tokens file.
    #[error(transparent)]
    Tokens(#[from] TokensError),
    /// The certificate or key.
    #[error("cannot use the TLS {what} {path}: {message} (check [[source]] tls_cert_file and tls_key_file: PEM files)")]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The address cannot be listened on.
    #[error("cannot listen on {addr} for the WHIP source {source_name}: {error} (is another program on that port? [[source]] listen sets it)")]
    Listen {
        /// The source.
        source_name: String,
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// The TLS server config for a certificate chain and key in PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, WhipError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what, path: &Path, message: String| WhipError::Tls {
        what,
        path: path.to_owned(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert, "no certificate in it".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("certificate", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad("key", key, e.to_string()))?;
    Ok(Arc::new(config))
}

/// A bound WHIP listener, ready to [`serve`](Whip::serve).
pub struct Whip {
    settings: WhipSettings,
    listener: tokio::net::TcpListener,
}

impl Whip {
    /// Binds the listener (at start-up, so a port in use stops the daemon with a clear
    /// error instead of a source that silently never works).
    pub async fn bind(settings: WhipSettings, addr: SocketAddr) -> Result<Self, WhipError> {
        let listener =
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|error| WhipError::Listen {
                    source_name: settings.source.clone(),
                    addr,
                    error,
                })?;
        Ok(Whip { settings, listener })
    }

    /// The address it listens on (the port the OS chose, for `:0`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop`: HTTP requests in, events out to the supervisor, its commands in.
    pub async fn serve(
        self,
        events: mpsc::Sender<SignalEvent>,
        commands: mpsc::Receiver<SignalCommand>,
        stop: CancellationToken,
    ) {
        let (requests_tx, requests_rx) = mpsc::channel(hub::REQUEST_QUEUE);
        let hub = hub::Hub::new(self.settings.clone(), events);
        let hub_task = tokio::spawn(hub.run(requests_rx, commands, stop.clone()));
        http::serve(self.listener, self.settings, requests_tx, stop).await;
        let _ = hub_task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_keep_their_credentials_as_written() {
        let servers = IceServer::from_config(
            Some("stun://127.0.0.1:3478"),
            &["turn://us%40er:a%3Db+c@turn.example:3479".to_owned()],
        );
        assert_eq!(
            servers,
            [
                IceServer {
                    uri: "stun:127.0.0.1:3478".into(),
                    credentials: None
                },
                IceServer {
                    uri: "turn:turn.example:3479".into(),
                    credentials: Some(("us@er".into(), "a=b+c".into()))
                },
            ]
        );
    }
}
