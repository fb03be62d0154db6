//! `callrec-testpeer`: a synthetic WebRTC *producer* for tests, demos and benchmarks.
//!
//! The tool speaks the producer side of the `gst-webrtc-signalling-server` JSON
//! protocol and streams live test media with real `webrtcbin` elements:
//!
//! 1. every peer (`--peers N`) opens its own WebSocket to `--url`, waits for
//!    `welcome` and registers as a producer with the `--meta` object;
//! 2. on `startSession` a per-session bin (`queue ! valve ! payloader !
//!    capsfilter` per track, feeding one `webrtcbin`) is attached to the shared
//!    encoders through `tee`s, and an offer (or an answer to the consumer's offer)
//!    is negotiated; ICE candidates travel through `peer` messages;
//! 3. media starts flowing once the peer connection is connected (optionally
//!    delayed per track), and stops `--duration` seconds after the first session
//!    of the peer connected; the peer then ends its sessions, closes the
//!    WebSocket and the process exits.
//!
//! With `--whip URL` instead of `--url`, the one peer of the process publishes over WHIP
//! (RFC 9725): the same session bin, its offer `POST`ed to the endpoint, the answer from
//! the `201 Created`, local candidates in the offer or trickled by `PATCH`
//! (`--whip-trickle`), the same media timers, and a `DELETE` of the session at the end
//! (unless `--whip-no-delete`). It prints the same events (see [`whip_peer`]).
//!
//! With `--janus URL --janus-room ROOM` instead, the one peer of the process is a publisher
//! in a Janus VideoRoom over Janus's WebSocket API: it joins the room (`--display`,
//! `--janus-pin-file`), publishes the same session bin's offer, trickles candidates both
//! ways, may unpublish and publish again (`--janus-republish-after`), and leaves at the end
//! (see [`janus_peer`], and [`janus`] for the messages).
//!
//! The video and audio are encoded once per process and shared by all peers and
//! sessions. Video keyframes are deliberately rare: consumers are expected to
//! request them with RTCP PLI/FIR, which reach the encoder as force-key-unit
//! events.
//!
//! For tests of mixes, the video can be a solid colour (`--color`), video and
//! audio can carry A/V sync markers (`--marker-interval`: white flashes and 1 kHz
//! beeps painted on the raw media from buffer timestamps, so both start at the same
//! PTS), and the video can change its size mid-stream (`--resize-after` and
//! `--resize-to`: new caps on the raw caps filter, the encoder renegotiates).
//!
//! Machine-readable progress is printed on stdout, one JSON object per line
//! (`welcome`, `session`, `connected`, `media`, `media_stopped`, `resized`,
//! `session_ended`, `done`; in WHIP mode also `whip_refused`, `whip_patched` and
//! `whip_deleted`; in Janus mode `janus_webrtcup`, `janus_media`, `unpublished`, `left`,
//! `janus_error` and `janus_lost`); logs go to stderr (`RUST_LOG` is honoured).
//!
//! Exit status: 0 on success (also after SIGTERM/SIGINT), 1 on errors (bad
//! arguments, pipeline or signalling failures, a WHIP endpoint that refused the offer or
//! broke the exchange, Janus refusing to join or publish), 2 when a peer got no connected session within 30 seconds (or lost
//! the signalling before any, or its WHIP peer connection failed before it connected).
//!
//! Modules: [`cli`] (arguments), [`media`] (shared sources and encoders) with [`markers`]
//! (flashes and beeps), [`session`] (one webrtcbin session), [`signalling`] (the WebSocket
//! client), [`peer`] (one producer: the protocol, its sessions and timers), [`whip`] (the
//! WHIP HTTP requests and SDP fragments) with [`whip_peer`] (one WHIP publisher), [`janus`]
//! (the Janus API messages) with [`janus_peer`] (one VideoRoom publisher), and [`report`]
//! (the JSON event lines). This file starts the pipeline, the peers and the signal and bus
//! watchers, and turns the peers' outcomes into the exit status.

#![forbid(unsafe_code)]

mod cli;
mod janus;
mod janus_peer;
mod markers;
mod media;
mod peer;
mod report;
mod session;
mod signalling;
mod whip;
mod whip_peer;

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use futures::StreamExt;
use gst::prelude::*;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::cli::Args;
use crate::janus_peer::JanusPeer;
use crate::media::Media;
use crate::peer::{Outcome, Peer};
use crate::report::emit;
use crate::whip_peer::WhipPeer;

/// Exit status when no session got connected in time.
const EXIT_NOT_CONNECTED: u8 = 2;

/// Why all peers should stop.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Stop {
    /// Keep going.
    Running,
    /// SIGTERM/SIGINT: stop like at the end of the duration.
    Graceful,
    /// The shared pipeline failed.
    Fatal,
}

/// State shared by all peer tasks.
struct Shared {
    args: Args,
    media: Media,
    /// The `--resize-after` timer, started when the first session of the process connects.
    resize: OnceLock<JoinHandle<()>>,
}

impl Shared {
    /// Starts the `--resize-after` timer unless it is already running (or not wanted).
    fn schedule_resize(self: &Arc<Self>) {
        let (Some(after), Some(size)) = (self.args.resize_after, self.args.resize_to) else {
            return;
        };
        let shared = self.clone();
        self.resize.get_or_init(|| {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let Some(video) = &shared.media.video else {
                    return;
                };
                match video.resize(size).await {
                    Ok(()) => {
                        info!("video resized to {}x{}", size.width, size.height);
                        emit(json!({
                            "event": "resized",
                            "width": size.width,
                            "height": size.height,
                        }));
                    }
                    Err(e) => error!("resize failed: {e:#}"),
                }
            })
        });
    }
}

/// True if the message comes from inside a session bin (not the shared encoders).
fn from_session(msg: &gst::Message) -> bool {
    let mut obj = msg.src().cloned();
    while let Some(o) = obj {
        if o.name().starts_with(session::BIN_PREFIX) {
            return true;
        }
        obj = o.parent();
    }
    false
}

/// Watches the pipeline bus: logs problems, stops everything on shared failures.
async fn watch_bus(pipeline: gst::Pipeline, stop: watch::Sender<Stop>) {
    let Some(bus) = pipeline.bus() else { return };
    let mut messages = bus.stream();
    while let Some(msg) = messages.next().await {
        match msg.view() {
            gst::MessageView::Error(err) => {
                let src = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                if from_session(&msg) {
                    warn!(
                        "session error from {src}: {} ({:?})",
                        err.error(),
                        err.debug()
                    );
                } else {
                    error!(
                        "pipeline error from {src}: {} ({:?})",
                        err.error(),
                        err.debug()
                    );
                    let _ = stop.send(Stop::Fatal);
                }
            }
            gst::MessageView::Warning(w) => {
                let src = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                warn!(
                    "pipeline warning from {src}: {} ({:?})",
                    w.error(),
                    w.debug()
                );
            }
            gst::MessageView::Latency(_) => {
                let _ = pipeline.recalculate_latency();
            }
            _ => {}
        }
    }
}

/// Sets `stop` to graceful on SIGTERM or SIGINT.
async fn watch_signals(stop: watch::Sender<Stop>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(Stop::Graceful);
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
    stop.send_if_modified(|s| {
        if *s == Stop::Running {
            *s = Stop::Graceful;
            true
        } else {
            false
        }
    });
}

/// Builds the pipeline, runs all peers and returns the exit status.
async fn run(args: Args) -> Result<ExitCode> {
    gst::init().context("cannot initialize GStreamer")?;
    let media = Media::new(&args)?;
    let pipeline = media.pipeline.clone();
    pipeline
        .set_state(gst::State::Playing)
        .context("cannot start the media pipeline")?;

    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let bus_task = tokio::spawn(watch_bus(pipeline.clone(), stop_tx.clone()));
    let signal_task = tokio::spawn(watch_signals(stop_tx.clone()));

    let shared = Arc::new(Shared {
        args,
        media,
        resize: OnceLock::new(),
    });
    let peers: Vec<_> = if shared.args.whip.is_some() {
        vec![tokio::spawn(WhipPeer::run(shared.clone(), stop_rx.clone()))]
    } else if shared.args.janus.is_some() {
        vec![tokio::spawn(JanusPeer::run(
            shared.clone(),
            stop_rx.clone(),
        ))]
    } else {
        (0..shared.args.peers)
            .map(|i| tokio::spawn(Peer::run(shared.clone(), i, stop_rx.clone())))
            .collect()
    };
    let mut outcomes = Vec::new();
    for peer in peers {
        outcomes.push(
            peer.await
                .unwrap_or_else(|e| Outcome::Failed(anyhow!("peer task: {e}"))),
        );
    }
    let fatal = *stop_rx.borrow() == Stop::Fatal;
    if let Some(resize) = shared.resize.get() {
        resize.abort();
    }

    signal_task.abort();
    let pipeline_stop = pipeline.clone();
    tokio::task::spawn_blocking(move || pipeline_stop.set_state(gst::State::Null))
        .await
        .context("pipeline shutdown task")?
        .context("cannot stop the media pipeline")?;
    bus_task.abort();

    let mut code = 0;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Completed => {}
            Outcome::NeverConnected => code = code.max(EXIT_NOT_CONNECTED),
            Outcome::Failed(e) => {
                eprintln!("callrec-testpeer: error: peer {i}: {e:#}");
                code = code.max(1);
            }
        }
    }
    if fatal {
        eprintln!("callrec-testpeer: error: the media pipeline failed (see log)");
        code = code.max(1);
    }
    Ok(ExitCode::from(code))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Usage errors exit with 1: status 2 means "no session connected".
    let args = match Args::try_parse().and_then(|args| args.check().map(|()| args)) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("callrec-testpeer: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
