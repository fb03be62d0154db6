//! The daemon's two entry points: `run` (record until told to stop) and `check` (validate
//! the config and every template without connecting anywhere).
//!
//! [`prepare`] is the one validation of config and templates: start-up, `callrec check` and
//! SIGHUP reloads all go through it, so a reload accepts exactly what a start would.

pub mod gstlog;
pub mod notify;
pub mod reload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{self, Config, Protocol, SourceConfig};
use crate::exit::Exit;
use crate::media::plugins::{self, PluginError};
use crate::recording;
use crate::signalling::janus::{self, JanusSettings, RoomSelection};
use crate::signalling::whip::{self, Whip, WhipError, WhipSettings};
use crate::signalling::{client, SignalEvent};
use crate::supervisor::{Drained, SourceId, Supervisor, SupervisorSettings};
use crate::templates::{Failure, Origin, TemplateDir, TemplateError, TemplateSet};
use notify::Notifier;
use reload::Reloader;

/// Why the daemon could not start, with the sysexits code to exit with.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file is unusable (EX_CONFIG).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Templates are broken (EX_CONFIG).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Templates(Vec<TemplateError>),
    /// The `wss://` trust setting is unusable (EX_CONFIG).
    #[error(transparent)]
    Tls(#[from] client::TlsError),
    /// GStreamer is missing or broken (EX_UNAVAILABLE).
    #[error("cannot initialise GStreamer: {0} (install the GStreamer runtime and plugins)")]
    Gstreamer(String),
    /// A WHIP source's tokens, TLS files (EX_CONFIG) or listener (EX_UNAVAILABLE).
    #[error(transparent)]
    Whip(#[from] WhipError),
    /// A Janus source's secret files (EX_CONFIG).
    #[error("janus source: {0} (pins_file, admin_key_file and api_secret_file name files callrec reads at start-up)")]
    Janus(#[from] janus::SecretFileError),
    /// The recordings directory cannot be used (EX_CANTCREAT).
    #[error("cannot use the recordings directory {path}: {source} (create it, or let callrec's user write there; [recording] dir sets it)")]
    Recordings {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl StartError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> Exit {
        match self {
            StartError::Config(_)
            | StartError::Templates(_)
            | StartError::Tls(_)
            | StartError::Janus(_) => Exit::Config,
            StartError::Gstreamer(_) | StartError::Whip(WhipError::Listen { .. }) => {
                Exit::Unavailable
            }
            StartError::Whip(_) => Exit::Config,
            StartError::Recordings { .. } => Exit::CantCreate,
        }
    }
}

/// Loads and checks everything `run` needs, without touching the network: the config, the
/// `wss://` trust setting, every template in the directory (parsed and checked with
/// GStreamer) and the configured templates. It blocks (file I/O, GStreamer's parser); async
/// callers run it with `spawn_blocking`.
pub fn prepare(config_path: &Path) -> Result<SupervisorSettings, StartError> {
    let config = Config::load(config_path)?;
    for source in &config.sources {
        client::tls_connector(source.ca_file.as_deref())?;
        if source.protocol == Protocol::Whip {
            whip_settings(source, &config)?;
        }
        if source.protocol == Protocol::Janus {
            janus_settings(source)?;
        }
    }
    init_gstreamer()?;
    let dir = TemplateDir::from_config(config.recording.pipelines_dir.as_deref());
    let checked = TemplateSet::load_and_check(&dir).map_err(|e| StartError::Templates(vec![e]))?;
    let errors = fatal_failures(checked.failures, &config);
    if !errors.is_empty() {
        return Err(StartError::Templates(errors));
    }
    SupervisorSettings::new(config, &checked.set).map_err(|e| StartError::Templates(vec![e]))
}

/// The template failures that refuse a start or reload; the others are logged as warnings.
///
/// Every template from the operator's directory must be sound, not only the selected ones: a
/// broken one would otherwise be found only when someone selects it. A built-in template
/// nobody selected may lack a plugin this machine does not have (x264enc for mix-mp4, say);
/// that is no reason to refuse the minimal config, so it is left out with a warning, and
/// selecting it later fails with the same message.
fn fatal_failures(failures: Vec<Failure>, config: &Config) -> Vec<TemplateError> {
    let selected = |name: &str| {
        config.recording.templates.iter().any(|n| n == name)
            || config.post.templates.iter().any(|n| n == name)
    };
    let mut errors = vec![];
    for failure in failures {
        if failure.origin == Origin::BuiltIn && !selected(&failure.name) {
            warn!(
                template = %failure.name,
                "built-in template left out, it cannot run on this machine: {}",
                failure.error
            );
        } else {
            errors.push(failure.error);
        }
    }
    errors
}

/// Initialises GStreamer with callrec's linked elements and, once per process, routes its log
/// into ours (a reload calls `prepare` again and must not install the bridge twice). Without
/// the linked elements callrec still records everything but AV1, so that only warns.
fn init_gstreamer() -> Result<(), StartError> {
    static BRIDGE: Once = Once::new();
    let builtin = plugins::init();
    if let Err(PluginError::Gstreamer(e)) = &builtin {
        return Err(StartError::Gstreamer(e.to_string()));
    }
    BRIDGE.call_once(crate::daemon::gstlog::bridge);
    if let Err(e) = builtin {
        warn!("{e}");
    }
    Ok(())
}

/// Validates the config and templates, and creates the recordings directory if needed and
/// checks it is writable: `callrec check` and the start of `callrec run`.
pub fn check(config_path: &Path) -> Result<SupervisorSettings, StartError> {
    let settings = prepare(config_path)?;
    let dir = &settings.config.recording.dir;
    std::fs::create_dir_all(dir)
        .and_then(|()| tempfile_probe(dir))
        .map_err(|source| StartError::Recordings {
            path: dir.clone(),
            source,
        })?;
    Ok(settings)
}

fn tempfile_probe(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".callrec-check-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// One source, ready to run: a signalling client to start, or a bound WHIP listener.
enum ReadySource {
    /// Connects to a gst-webrtc signalling server.
    GstWebrtc(
        client::ClientSettings,
        serde_json::Map<String, serde_json::Value>,
    ),
    /// Serves WHIP.
    Whip(Whip),
    /// Connects to Janus.
    Janus(client::ClientSettings, JanusSettings),
}

/// The Janus settings of a `protocol = "janus"` source (secrets read from their files).
fn janus_settings(source: &SourceConfig) -> Result<JanusSettings, janus::SecretFileError> {
    let rooms = match &source.rooms {
        Some(config::RoomsConfig::List(ids)) => RoomSelection::List(ids.clone()),
        Some(config::RoomsConfig::All) | None => RoomSelection::All,
    };
    let mut settings = JanusSettings::new(source.name.clone(), rooms);
    if let Some(path) = &source.pins_file {
        settings.access = janus::read_pins(path)?;
    }
    if let Some(path) = &source.admin_key_file {
        settings.admin_key = Some(janus::read_secret(path)?);
    }
    if let Some(path) = &source.api_secret_file {
        settings.api_secret = Some(janus::read_secret(path)?);
    }
    if let Some(display) = &source.display {
        settings.display = display.clone();
    }
    Ok(settings)
}

/// The WebSocket client settings of a source that connects to a server.
fn client_settings(source: &SourceConfig) -> client::ClientSettings {
    client::ClientSettings {
        url: source.url.clone().unwrap_or_default(),
        connect_timeout: config::secs(source.connect_timeout_secs),
        reconnect_min: config::secs(source.reconnect_min_secs),
        reconnect_max: config::secs(source.reconnect_max_secs),
        ca_file: source.ca_file.clone(),
    }
}

/// The WHIP settings of a `protocol = "whip"` source (tokens and TLS read from their files).
fn whip_settings(source: &SourceConfig, config: &Config) -> Result<WhipSettings, WhipError> {
    let tokens_file = source.tokens_file.as_deref().unwrap_or(Path::new(""));
    let tls = match (&source.tls_cert_file, &source.tls_key_file) {
        (Some(cert), Some(key)) => Some(whip::tls_config(cert, key)?),
        _ => None,
    };
    Ok(WhipSettings {
        source: source.name.clone(),
        tokens: whip::Tokens::load(tokens_file)?,
        tls,
        group_key: config.recording.group_key.clone(),
        ice_servers: whip::IceServer::from_config(
            config.ice.stun_server.as_deref(),
            &config.ice.turn_servers,
        ),
        records_encoding: |encoding| {
            crate::call::media::codec_for(encoding).is_some_and(|c| c.available())
        },
        answer_timeout: config::secs(source.negotiation_timeout_secs),
    })
}

/// Sets a source up: binds WHIP listeners (so a port in use stops the start).
async fn prepare_source(source: &SourceConfig, config: &Config) -> Result<ReadySource, StartError> {
    Ok(match source.protocol {
        Protocol::GstWebrtc => ReadySource::GstWebrtc(client_settings(source), source.meta.clone()),
        Protocol::Janus => ReadySource::Janus(client_settings(source), janus_settings(source)?),
        Protocol::Whip => {
            let settings = whip_settings(source, config)?;
            let addr = source
                .listen
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
            let whip = Whip::bind(settings, addr).await?;
            if let Ok(bound) = whip.local_addr() {
                info!(source = %source.name, %bound, "WHIP endpoint listening");
            }
            ReadySource::Whip(whip)
        }
    })
}

/// Runs one source, and a task that tags its events with the source's id on their way to
/// the supervisor.
fn spawn_source(
    id: SourceId,
    source: ReadySource,
    events: mpsc::Sender<(SourceId, SignalEvent)>,
    commands: mpsc::Receiver<crate::signalling::SignalCommand>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = mpsc::channel(256);
    // One adapter per protocol; the match is exhaustive so a new `Protocol` cannot be
    // configured before it has one.
    let client = match source {
        ReadySource::GstWebrtc(settings, meta) => {
            let adapter = crate::signalling::gst_webrtc::GstWebrtc { meta };
            tokio::spawn(client::run(settings, adapter, tx, commands, stop))
        }
        ReadySource::Whip(whip) => tokio::spawn(whip.serve(tx, commands, stop)),
        ReadySource::Janus(settings, janus) => {
            let adapter = crate::signalling::janus::Janus::new(janus);
            tokio::spawn(client::run(settings, adapter, tx, commands, stop))
        }
    };
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if events.send((id, event)).await.is_err() {
                break;
            }
        }
        let _ = client.await;
    })
}

/// Records until `shutdown` fires, then finalises every call within the grace period.
/// Each message on `reloads` re-reads `config_path` and the templates for new calls.
pub async fn run(
    config_path: PathBuf,
    settings: SupervisorSettings,
    notifier: Notifier,
    shutdown: CancellationToken,
    reloads: mpsc::Receiver<()>,
) -> Result<Drained, StartError> {
    let mut ready_sources = vec![];
    for source in &settings.config.sources {
        ready_sources.push(prepare_source(source, &settings.config).await?);
    }
    let dir = &settings.config.recording.dir;
    for call in recording::mark_interrupted(dir) {
        warn!(dir = %call.display(), "marked a call left unfinished by a previous run as interrupted");
    }
    let (event_tx, event_rx) = mpsc::channel(256);
    let client_stop = CancellationToken::new();
    let mut clients = vec![];
    let mut command_txs = vec![];
    for (index, source) in ready_sources.into_iter().enumerate() {
        let (command_tx, command_rx) = mpsc::channel(1024);
        command_txs.push(command_tx);
        clients.push(spawn_source(
            SourceId(index),
            source,
            event_tx.clone(),
            command_rx,
            client_stop.clone(),
        ));
    }
    drop(event_tx);
    let sources = settings.config.sources.len();
    let mut connected = vec![false; sources];
    let notifier = Arc::new(notifier);
    // Shared with the reloader: it must not send READY=1 before start-up did.
    let ready = Arc::new(AtomicBool::new(false));
    let (update_tx, update_rx) = mpsc::channel(1);
    let reloader = Reloader::new(config_path, settings.config.clone(), update_tx);
    let reloading = tokio::spawn(reload::serve(
        reloader,
        reloads,
        notifier.clone(),
        ready.clone(),
        shutdown.clone(),
    ));
    let supervisor = Supervisor::new(settings, command_txs);
    let drained = supervisor
        .run(event_rx, update_rx, shutdown, |source, ev| {
            let Some(up) = connected.get_mut(source.0) else {
                return;
            };
            match ev {
                SignalEvent::Connected => *up = true,
                SignalEvent::Disconnected { .. } => *up = false,
                _ => return,
            }
            // Ready once one source records: a source that is down must not keep the others
            // from starting (systemd would kill a daemon that never gets ready).
            let up = connected.iter().filter(|c| **c).count();
            let status = if sources == 1 {
                if up == 1 {
                    "connected to the signalling server".to_owned()
                } else {
                    "reconnecting to the signalling server".to_owned()
                }
            } else {
                format!("connected to {up} of {sources} signalling sources")
            };
            if up > 0 && !ready.swap(true, Ordering::SeqCst) {
                notifier.notify(&format!("READY=1\nSTATUS={status}"));
            } else {
                notifier.notify(&format!("STATUS={status}"));
            }
        })
        .await;
    reloading.abort();
    client_stop.cancel();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        futures::future::join_all(clients),
    )
    .await;
    info!(?drained, "stopped");
    Ok(drained)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(name: &str, origin: Origin) -> Failure {
        Failure {
            name: name.into(),
            origin,
            error: TemplateError::Unknown(name.into()),
        }
    }

    #[test]
    fn only_unselected_builtin_templates_may_fail() {
        let mut config = Config::parse(
            "[signalling]\nurl = \"ws://127.0.0.1:8443\"\n[recording]\ndir = \"/r\"\n[post]\ntemplates = [\"post-mp4\"]\n",
        )
        .unwrap();
        config.recording.templates = vec!["mix-mp4".into()];
        let file = Origin::File("/etc/callrec/pipelines/mine.pipeline".into());
        let errors = fatal_failures(
            vec![
                failure("mix-hls", Origin::BuiltIn),
                failure("mix-mp4", Origin::BuiltIn),
                failure("post-mp4", Origin::BuiltIn),
                failure("mine", file),
            ],
            &config,
        );
        let names: Vec<String> = errors
            .iter()
            .map(|e| match e {
                TemplateError::Unknown(name) => name.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(names, ["mix-mp4", "post-mp4", "mine"]);
    }
}
