//! The `callrec` binary: command line, logging, signals and exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use callrec::config::DEFAULT_CONFIG_PATH;
use callrec::daemon;
use callrec::daemon::notify::Notifier;
use callrec::exit::Exit;
use callrec::media::plugins::{self, PluginError};
use callrec::supervisor::Drained;

mod cli;
mod malloc;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "WebRTC call recorder: joins calls through your signalling server and records them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Connect to the signalling server and record calls until SIGTERM or SIGINT (SIGHUP
    /// reloads the config and templates for new calls).
    Run {
        /// The TOML config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate the config file and every pipeline template, then exit.
    Check {
        /// The TOML config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Mix a recorded call offline through a `call` (mix) template, faster than real time.
    Remix {
        /// The call's directory (it holds manifest.json).
        call_dir: PathBuf,
        /// The mix template, e.g. mix-mp4.
        #[arg(long)]
        template: String,
        /// Where to write the result (default: beside the call, named remix-TEMPLATE).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A templates directory layered over the built-in templates (default: the
        /// config's `pipelines_dir`).
        #[arg(long)]
        pipelines: Option<PathBuf>,
        /// The TOML config file, for `pipelines_dir` (default: /etc/callrec/callrec.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List, check and render pipeline templates.
    Pipelines {
        #[command(subcommand)]
        action: PipelinesAction,
        /// A templates directory layered over the built-in templates: its files replace
        /// the built-in templates of their names (default: the config's `pipelines_dir`,
        /// else /usr/share/callrec/pipelines if installed, else the built-in ones alone).
        #[arg(long, global = true)]
        pipelines: Option<PathBuf>,
        /// The TOML config file, for `pipelines_dir` (default: /etc/callrec/callrec.toml).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum PipelinesAction {
    /// Print each template's name, scope, accepted media and description.
    List,
    /// Parse and build templates with GStreamer; exit 0 only if all are sound.
    Check {
        /// Template names or files (default: every template, built in or in the directory).
        targets: Vec<String>,
    },
    /// Print a `gst-launch-1.0 -e` command that runs a template on its own.
    Render {
        /// The template's name or file.
        template: String,
        /// Feed it this many test participants (distinct colours and tones).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64), conflicts_with = "from")]
        participants: u16,
        /// Seconds of test media.
        #[arg(long, default_value_t = callrec::offline::launch::DEFAULT_SECONDS, value_parser = clap::value_parser!(u32).range(1..=i64::from(callrec::offline::launch::MAX_SECONDS)), conflicts_with = "from")]
        seconds: u32,
        /// Feed it a recorded call's files instead (the call's directory).
        #[arg(long, value_name = "CALL_DIR")]
        from: Option<PathBuf>,
        /// Where the command writes (default: ./render-TEMPLATE).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    init_logging();
    match cli.command {
        Command::Check { config } => match daemon::check(&config) {
            Ok(settings) => {
                let sources: Vec<String> = settings
                    .config
                    .sources
                    .iter()
                    .map(|s| format!("{} {} {}", s.name, s.protocol, s.address()))
                    .collect();
                println!(
                    "{}: ok (sources: {}; templates: {})",
                    config.display(),
                    sources.join(", "),
                    settings
                        .templates
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Exit::Ok.into()
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                e.exit_code().into()
            }
        },
        Command::Remix {
            call_dir,
            template,
            out,
            pipelines,
            config,
        } => remix(
            &call_dir,
            &template,
            out.as_deref(),
            pipelines,
            config.as_deref(),
        ),
        Command::Pipelines {
            action,
            pipelines,
            config,
        } => {
            let dir = match cli::template_dir(pipelines, config.as_deref()) {
                Ok(dir) => dir,
                Err(e) => {
                    eprintln!("callrec pipelines: {e}");
                    return Exit::Config.into();
                }
            };
            match action {
                PipelinesAction::List => cli::pipelines::list(&dir),
                PipelinesAction::Check { targets } => cli::pipelines::check(&dir, &targets),
                PipelinesAction::Render {
                    template,
                    participants,
                    seconds,
                    from,
                    out_dir,
                } => {
                    let source = match from {
                        Some(call_dir) => cli::pipelines::RenderSource::Recording(call_dir),
                        None => cli::pipelines::RenderSource::TestParticipants {
                            count: participants as usize,
                            seconds,
                        },
                    };
                    cli::pipelines::render(&dir, &template, source, out_dir)
                }
            }
        }
        Command::Run { config } => {
            // Before any thread starts (the daemon only: offline commands keep glibc's
            // defaults, which suit their few busy threads).
            malloc::configure();
            // The same checks as `callrec check`, so the recordings directory exists and is
            // writable before the first call needs it (a fresh `dir = "recordings"`).
            let settings = match daemon::check(&config) {
                Ok(s) => s,
                Err(e) => {
                    error!("{}: {e}", config.display());
                    return e.exit_code().into();
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    error!("cannot start the async runtime: {e}");
                    return Exit::Software.into();
                }
            };
            let code = runtime.block_on(run(config, settings));
            // Post-processing jobs wind down within the stop; don't wait on a straggler.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            code
        }
    }
}

/// `callrec remix`: exit 0 on success, an [`Exit`] code otherwise.
fn remix(
    call_dir: &Path,
    template: &str,
    out: Option<&Path>,
    pipelines: Option<PathBuf>,
    config: Option<&Path>,
) -> ExitCode {
    // A remix reads recorded files and never depayloads, so only GStreamer itself failing
    // matters here.
    if let Err(e @ PluginError::Gstreamer(_)) = plugins::init() {
        eprintln!("callrec remix: {e}");
        return Exit::Unavailable.into();
    }
    let dir = match cli::template_dir(pipelines, config) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("callrec remix: {e}");
            return Exit::Config.into();
        }
    };
    let set = match callrec::templates::TemplateSet::load(&dir) {
        Ok(set) => set,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return Exit::Config.into();
        }
    };
    let Some(template) = set.get(template) else {
        eprintln!(
            "callrec remix: no template {template}, neither built in nor in {} (`callrec pipelines list` shows them)",
            dir.describe()
        );
        return Exit::NoInput.into();
    };
    match callrec::offline::remix::remix(
        call_dir,
        template,
        out,
        callrec::offline::remix::Progress::detect(),
    ) {
        Ok(report) => {
            for file in &report.files {
                println!("{}", file.display());
            }
            info!(
                "remixed {:.1} s of call in {:.1} s ({:.1}x real time)",
                report.media.as_secs_f64(),
                report.elapsed.as_secs_f64(),
                report.speed()
            );
            Exit::Ok.into()
        }
        Err(e) => {
            eprintln!("callrec remix: {e}");
            match e {
                // The same codes as `pipelines render --from` for the same failures.
                callrec::offline::remix::RemixError::Offline(
                    callrec::offline::OfflineError::Manifest { .. },
                ) => Exit::NoInput,
                callrec::offline::remix::RemixError::Offline(_) => Exit::DataErr,
                callrec::offline::remix::RemixError::Io { .. } => Exit::CantCreate,
                _ => Exit::Software,
            }
            .into()
        }
    }
}

async fn run(config: PathBuf, settings: callrec::supervisor::SupervisorSettings) -> ExitCode {
    let notifier = Notifier::from_env();
    let shutdown = CancellationToken::new();
    // One slot: SIGHUPs that arrive while a reload is queued fold into it.
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let signals = match watch_signals(shutdown.clone(), reload_tx) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return Exit::Software.into();
        }
    };
    let stop_notifier = Notifier::from_env();
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        stop_notifier.notify("STOPPING=1");
    });
    tokio::spawn(malloc::trim_periodically(shutdown.clone()));
    let drained = match daemon::run(config, settings, notifier, shutdown, reload_rx).await {
        Ok(drained) => drained,
        Err(e) => {
            error!("{e}");
            signals.abort();
            return e.exit_code().into();
        }
    };
    signals.abort();
    match drained {
        Drained::Clean => Exit::Ok.into(),
        Drained::TimedOut(n) => {
            warn!("{n} call(s) were still finishing when the grace period ended; their manifests say interrupted on next start");
            Exit::Ok.into()
        }
    }
}

/// First SIGTERM/SIGINT: graceful stop. Second: exit at once. SIGHUP: ask for a reload.
fn watch_signals(
    shutdown: CancellationToken,
    reload: tokio::sync::mpsc::Sender<()>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        let mut count = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
                _ = hup.recv() => {
                    request_reload(&reload);
                    continue;
                }
            }
            count += 1;
            if count == 1 {
                info!("stopping: finalising recordings (send the signal again to exit at once)");
                shutdown.cancel();
            } else {
                warn!("second signal: exiting without finalising");
                std::process::exit(Exit::Forced.code().into());
            }
        }
    }))
}

/// Queues a reload unless one is already waiting (it will read the newest files anyway).
fn request_reload(reload: &tokio::sync::mpsc::Sender<()>) {
    match reload.try_send(()) {
        Ok(()) => info!("SIGHUP: reloading the config and templates for new calls"),
        Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {
            info!("SIGHUP: a reload is already queued")
        }
        Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => {
            warn!("SIGHUP ignored: callrec is stopping")
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
