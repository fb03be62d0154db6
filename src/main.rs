//! The `callrec` binary: command line, logging, signals and exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use callrec::config::DEFAULT_CONFIG_PATH;
use callrec::daemon;
use callrec::notify::Notifier;
use callrec::supervisor::Drained;

/// EX_USAGE from sysexits.h.
const EX_USAGE: u8 = 64;
/// EX_DATAERR from sysexits.h.
const EX_DATAERR: u8 = 65;
/// EX_SOFTWARE from sysexits.h.
const EX_SOFTWARE: u8 = 70;
/// EX_CANTCREAT from sysexits.h.
const EX_CANTCREAT: u8 = 73;
/// EX_CONFIG from sysexits.h.
const EX_CONFIG: u8 = 78;

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
        /// The templates directory (default: the config's `pipelines_dir`).
        #[arg(long)]
        pipelines: Option<PathBuf>,
        /// The TOML config file, for `pipelines_dir`.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging();
    match cli.command {
        Command::Check { config } => match daemon::check(&config) {
            Ok(settings) => {
                println!(
                    "{}: ok (templates: {})",
                    config.display(),
                    settings
                        .templates
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(e.exit_code() as u8)
            }
        },
        Command::Remix {
            call_dir,
            template,
            out,
            pipelines,
            config,
        } => remix(&call_dir, &template, out.as_deref(), pipelines, &config),
        Command::Run { config } => {
            let settings = match daemon::prepare(&config) {
                Ok(s) => s,
                Err(e) => {
                    error!("{}: {e}", config.display());
                    return ExitCode::from(e.exit_code() as u8);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    error!("cannot start the async runtime: {e}");
                    return ExitCode::from(EX_SOFTWARE);
                }
            };
            runtime.block_on(run(config, settings))
        }
    }
}

/// `callrec remix`: exit 0 on success, sysexits codes otherwise.
fn remix(
    call_dir: &Path,
    template: &str,
    out: Option<&Path>,
    pipelines: Option<PathBuf>,
    config: &Path,
) -> ExitCode {
    if let Err(e) = gst::init() {
        eprintln!("cannot initialise GStreamer: {e}");
        return ExitCode::from(EX_SOFTWARE);
    }
    let dir = match pipelines {
        Some(dir) => dir,
        None => match callrec::config::Config::load(config) {
            Ok(c) => c.recording.pipelines_dir,
            Err(e) => {
                eprintln!(
                    "{}: {e} (or give the templates directory with --pipelines DIR)",
                    config.display()
                );
                return ExitCode::from(EX_CONFIG);
            }
        },
    };
    let set = match callrec::templates::TemplateSet::load_dir(&dir) {
        Ok(set) => set,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::from(EX_CONFIG);
        }
    };
    let Some(template) = set.get(template) else {
        eprintln!(
            "no template {template} in {} (`callrec pipelines list` shows them)",
            dir.display()
        );
        return ExitCode::from(EX_USAGE);
    };
    match callrec::remix::remix(call_dir, template, out, callrec::remix::Progress::detect()) {
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callrec remix: {e}");
            ExitCode::from(match e {
                callrec::remix::RemixError::Offline(_) => EX_DATAERR,
                callrec::remix::RemixError::Io { .. } => EX_CANTCREAT,
                _ => EX_SOFTWARE,
            })
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
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    let stop_notifier = Notifier::from_env();
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        stop_notifier.notify("STOPPING=1");
    });
    let drained = daemon::run(config, settings, notifier, shutdown, reload_rx).await;
    signals.abort();
    match drained {
        Drained::Clean => ExitCode::SUCCESS,
        Drained::TimedOut(n) => {
            warn!("{n} call(s) were still finishing when the grace period ended; their manifests say interrupted on next start");
            ExitCode::SUCCESS
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
                std::process::exit(1);
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
