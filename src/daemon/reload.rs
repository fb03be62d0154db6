//! SIGHUP reload: re-reads the config file and the templates directory for new calls.
//!
//! A reload runs the same validation as start-up ([`daemon::prepare`]) off the async threads.
//! If it fails, the error is logged and the running settings stay. If it succeeds, the
//! supervisor uses the new settings for calls that start afterwards; running calls keep the
//! snapshot they started with. Settings that only take effect at start-up (the signalling
//! connection, the recordings directory) keep their running values, with a warning.
//!
//! systemd is told `RELOADING=1` with `MONOTONIC_USEC=` before, and `READY=1` with a
//! `STATUS=` line after, whether the reload was applied or refused.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::daemon::notify::Notifier;
use crate::daemon::{self, StartError};
use crate::supervisor::SettingsUpdate;

/// Why a reload was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config or a template is invalid; the message names the file and line.
    #[error(transparent)]
    Invalid(#[from] StartError),
    /// The validation task died (a bug, e.g. a panic inside GStreamer's parser).
    #[error("the validation task failed: {0}")]
    Task(String),
    /// The supervisor is gone: callrec is stopping.
    #[error("callrec is stopping")]
    Stopping,
}

/// What an applied reload changed.
#[derive(Debug)]
pub struct Reloaded {
    /// The templates new calls run.
    pub templates: Vec<String>,
    /// Restart-only settings that changed in the file but keep their running values.
    pub need_restart: Vec<String>,
}

/// Loads, validates and hands new settings to the supervisor.
#[derive(Debug)]
pub struct Reloader {
    config_path: PathBuf,
    running: Config,
    updates: mpsc::Sender<SettingsUpdate>,
}

impl Reloader {
    /// A reloader for the daemon started from `config_path` with `running`.
    pub fn new(
        config_path: PathBuf,
        running: Config,
        updates: mpsc::Sender<SettingsUpdate>,
    ) -> Self {
        Self {
            config_path,
            running,
            updates,
        }
    }

    /// Validates the files as start-up does and, if they are good, waits until the
    /// supervisor uses them.
    pub async fn reload(&mut self) -> Result<Reloaded, ReloadError> {
        let path = self.config_path.clone();
        // Parsing every template with GStreamer blocks; keep it off the async threads.
        let mut settings = tokio::task::spawn_blocking(move || daemon::prepare(&path))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))??;
        let need_restart = settings.config.keep_restart_only(&self.running);
        let templates = settings.templates.iter().map(|t| t.name.clone()).collect();
        let config = settings.config.clone();
        let (applied, done) = oneshot::channel();
        self.updates
            .send(SettingsUpdate { settings, applied })
            .await
            .map_err(|_| ReloadError::Stopping)?;
        done.await.map_err(|_| ReloadError::Stopping)?;
        self.running = config;
        Ok(Reloaded {
            templates,
            need_restart,
        })
    }

    /// The config file this reloader reads.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }
}

/// Runs one reload per request until `shutdown` fires or `requests` closes, logging the
/// outcome and telling systemd. `ready` says whether start-up already sent `READY=1`; before
/// that, a reload must not claim readiness.
pub async fn serve(
    mut reloader: Reloader,
    mut requests: mpsc::Receiver<()>,
    notifier: Arc<Notifier>,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            request = requests.recv() => if request.is_none() { return },
        }
        let was_ready = ready.load(Ordering::SeqCst);
        if was_ready {
            notifier.notify(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the config and templates",
                monotonic_usec()
            ));
        }
        info!(config = %reloader.config_path().display(), "reloading the config and templates");
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = reloader.reload() => outcome,
        };
        let status = report(reloader.config_path(), outcome);
        if was_ready {
            notifier.notify(&format!("READY=1\nSTATUS={status}"));
        } else {
            notifier.notify(&format!("STATUS={status}"));
        }
    }
}

/// Logs a reload's outcome and gives the `STATUS=` text for systemd.
fn report(config_path: &std::path::Path, outcome: Result<Reloaded, ReloadError>) -> String {
    match outcome {
        Ok(done) => {
            let templates = done.templates.join(", ");
            info!(%templates, "reload succeeded; new calls use the new settings");
            if done.need_restart.is_empty() {
                format!("reload succeeded (templates: {templates})")
            } else {
                let keys = done.need_restart.join(", ");
                warn!(
                    settings = %keys,
                    "these settings changed but take effect only after a restart; still using their running values"
                );
                format!("reload succeeded (templates: {templates}); restart needed for {keys}")
            }
        }
        Err(e) => {
            error!(
                config = %config_path.display(),
                "reload refused; still using the previous settings:\n{e}"
            );
            "reload refused (see the log); still using the previous settings".to_owned()
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, as systemd expects in `MONOTONIC_USEC=` (GLib reads that
/// clock on Linux, and this crate forbids the `unsafe` a direct call would need).
fn monotonic_usec() -> i64 {
    glib::monotonic_time()
}
