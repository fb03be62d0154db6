//! `callrec remix`: runs a mix template offline over a recorded call's participant files.
//!
//! The pipeline is [`CallInputs::describe`]'s text, the same one `pipelines render --from`
//! prints, except that participants are placed as the live mix places them: the layout
//! changes at each join and leave, driven by controllers on the compositor's pads at the
//! exact timestamps. Nothing runs against a clock, so it goes as fast as the machine can
//! decode, mix and encode. The result is written beside the call and added to its manifest.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_controller::prelude::*;
use tracing::info;

use crate::mix::layout::Rect;
use crate::offline::{CallInputs, OfflineError};
use crate::recording::{self, MixEntry, OnScreen};
use crate::templates::{Kind, Template};

/// A remix that makes no progress for this long has stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a remix failed.
#[derive(Debug, thiserror::Error)]
pub enum RemixError {
    /// The call or template cannot be used.
    #[error(transparent)]
    Offline(#[from] OfflineError),
    /// GStreamer could not build the pipeline.
    #[error(
        "cannot build the remix pipeline: {0} (try `callrec pipelines check` on the template)"
    )]
    Build(String),
    /// The pipeline failed while running.
    #[error("the remix failed: {0}")]
    Run(String),
    /// The pipeline stopped making progress.
    #[error("the remix stalled at {at:.1} s of {total:.1} s for {STALL_TIMEOUT:?}; run with GST_DEBUG=3 to see why")]
    Stalled {
        /// Where it was, in seconds of the call.
        at: f64,
        /// The call's length in seconds.
        total: f64,
    },
    /// The output could not be moved or the manifest updated.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What a remix produced.
#[derive(Debug, Clone)]
pub struct RemixReport {
    /// The files written (absolute).
    pub files: Vec<PathBuf>,
    /// The call's length, in media time.
    pub media: Duration,
    /// How long the remix took.
    pub elapsed: Duration,
}

impl RemixReport {
    /// Media time per wall-clock time.
    pub fn speed(&self) -> f64 {
        self.media.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-6)
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A bar redrawn on standard error (a terminal).
    Bar,
    /// A log line every few seconds.
    Log,
    /// Nothing (a background job).
    Quiet,
}

/// When a pipeline run must give up, besides errors and stalls.
#[derive(Debug, Default, Clone, Copy)]
pub struct Limits<'a> {
    /// Stop at this instant.
    pub deadline: Option<Instant>,
    /// Stop when this becomes true.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
}

impl Progress {
    /// A bar on a terminal, log lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            Progress::Bar
        } else {
            Progress::Log
        }
    }
}

/// Remixes the call in `dir` through `template`. The output is named after
/// `remix-<template>` (made unique in the call directory), or moved to `out`.
pub fn remix(
    dir: &Path,
    template: &Template,
    out: Option<&Path>,
    progress: Progress,
) -> Result<RemixReport, RemixError> {
    let inputs = CallInputs::load(dir)?;
    let output_name = unique_output_name(&inputs.dir, &format!("remix-{}", template.name));
    let text = inputs.describe(template, &inputs.dir, &output_name, false)?;
    let pipeline = gst::parse::launch(&text)
        .map_err(|e| RemixError::Build(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| RemixError::Build("the description did not make a pipeline".into()))?;
    crate::media::priming::compensate(pipeline.upcast_ref());
    let on_screen = place_participants(&pipeline, &inputs, template)?;
    let files = crate::media::sinks::sink_files(pipeline.upcast_ref(), &inputs.dir);
    let started = Instant::now();
    let total = inputs.duration();
    let result = run(&pipeline, total, progress, Limits::default());
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    let elapsed = started.elapsed();
    let mut written: Vec<PathBuf> = files.iter().map(|f| inputs.dir.join(f)).collect();
    let mut listed = files.clone();
    if let Some(out) = out {
        let [only] = written.as_slice() else {
            return Err(RemixError::Run(format!(
                "--out needs a template that writes one file; {} wrote {}",
                template.name,
                files.join(", ")
            )));
        };
        move_file(only, out).map_err(|source| RemixError::Io {
            what: format!("cannot move {} to {}", only.display(), out.display()),
            source,
        })?;
        let out = std::path::absolute(out).unwrap_or_else(|_| out.to_owned());
        listed = vec![out
            .strip_prefix(&inputs.dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| out.to_string_lossy().into_owned())];
        written = vec![out];
    }
    let canvas = template.canvas;
    let entry = MixEntry {
        template: template.name.clone(),
        files: listed,
        layout: canvas.layout,
        canvas: format!("{}x{}@{}", canvas.width, canvas.height, canvas.fps),
        status: crate::recording::MixStatus::Complete,
        gaps: vec![],
        on_screen,
        pipeline: text,
        remixed_at: Some(recording::now_rfc3339()),
        dropped_frames: None,
        behind: vec![],
    };
    recording::update_manifest(&inputs.dir, |m| m.mixes.push(entry)).map_err(|source| {
        RemixError::Io {
            what: format!("cannot update the manifest in {}", inputs.dir.display()),
            source,
        }
    })?;
    Ok(RemixReport {
        files: written,
        media: total,
        elapsed,
    })
}

/// `base`, or `base+2`, `base+3`... so no file of the call directory starts with it.
fn unique_output_name(dir: &Path, base: &str) -> String {
    let taken = |name: &str| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|f| f == name || f.starts_with(&format!("{name}.")))
            })
        })
    };
    (1..)
        .map(|n| {
            if n == 1 {
                base.to_owned()
            } else {
                format!("{base}+{n}")
            }
        })
        .find(|name| !taken(name))
        .unwrap_or_else(|| base.to_owned())
}

/// Renames, or copies and removes across file systems.
fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)?;
    std::fs::remove_file(from)
}

/// Puts the background full-canvas below everyone and drives each participant's compositor
/// pad through the layout over time. Returns who was on screen when.
fn place_participants(
    pipeline: &gst::Pipeline,
    inputs: &CallInputs,
    template: &Template,
) -> Result<Vec<OnScreen>, RemixError> {
    let Some(vmix) = template
        .input_for(Kind::Video)
        .and_then(|name| pipeline.by_name(name))
    else {
        return Ok(vec![]);
    };
    let canvas = template.canvas;
    let pad = |n: usize| {
        vmix.static_pad(&format!("sink_{n}"))
            .ok_or_else(|| RemixError::Build(format!("the compositor has no pad sink_{n}")))
    };
    let background = pad(0)?;
    for (prop, value) in [
        ("xpos", 0),
        ("ypos", 0),
        ("width", canvas.width as i32),
        ("height", canvas.height as i32),
    ] {
        if background.find_property(prop).is_some() {
            background.set_property(prop, value);
        }
    }
    let placements = inputs.placements(template);
    let mut on_screen = vec![];
    for (n, file) in inputs.files.iter().enumerate() {
        let pad = pad(n + 1)?;
        if pad.find_property("xpos").is_none() {
            continue;
        }
        pad.set_property("zorder", 1u32);
        pad.set_property("converter-config", fast_scaling());
        let hidden = Rect {
            x: 0,
            y: 0,
            w: 2,
            h: 2,
        };
        let mut points: Vec<(gst::ClockTime, Rect, f64)> =
            vec![(gst::ClockTime::ZERO, hidden, 0.0)];
        for p in &placements {
            let at = gst::ClockTime::from_nseconds(p.from.as_nanos() as u64);
            match p.rects.iter().find(|(i, _)| *i == n) {
                Some((_, r)) => points.push((at, *r, 1.0)),
                None => points.push((at, hidden, 0.0)),
            }
        }
        for (prop, value_of) in [
            ("xpos", (|r: &Rect, _| r.x as f64) as fn(&Rect, f64) -> f64),
            ("ypos", |r, _| r.y as f64),
            ("width", |r, _| r.w as f64),
            ("height", |r, _| r.h as f64),
            ("alpha", |_, a| a),
        ] {
            let source = gst_controller::InterpolationControlSource::new();
            source.set_mode(gst_controller::InterpolationMode::None);
            for (at, rect, alpha) in &points {
                source.set(*at, value_of(rect, *alpha));
            }
            let binding = gst_controller::DirectControlBinding::new_absolute(&pad, prop, &source);
            pad.add_control_binding(&binding)
                .map_err(|e| RemixError::Build(format!("cannot control {prop}: {e}")))?;
        }
        on_screen.push(OnScreen {
            participant: file.participant.clone(),
            from_ms: file.offset.as_millis() as u64,
            to_ms: file.end().as_millis() as u64,
        });
    }
    Ok(on_screen)
}

/// Bilinear scaling for participants' tiles: they are mostly scaled down, where the
/// default cubic filter costs much more and looks no different.
pub fn fast_scaling() -> gst::Structure {
    gst::Structure::builder("GstVideoConverter")
        .field(
            "GstVideoConverter.resampler-method",
            gst_video::VideoResamplerMethod::Linear,
        )
        .field(
            "GstVideoConverter.chroma-resampler-method",
            gst_video::VideoResamplerMethod::Linear,
        )
        .build()
}

/// Plays an offline pipeline to EOS, showing progress; fails on an error, a stall, or when
/// `limits` say so. The caller sets the pipeline to NULL afterwards.
pub fn run(
    pipeline: &gst::Pipeline,
    total: Duration,
    progress: Progress,
    limits: Limits,
) -> Result<(), RemixError> {
    let bus = pipeline
        .bus()
        .ok_or_else(|| RemixError::Build("the pipeline has no bus".into()))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| RemixError::Run(first_error(&bus)))?;
    let total_s = total.as_secs_f64().max(0.001);
    let started = Instant::now();
    let mut last_position = -1.0;
    let mut last_move = Instant::now();
    let mut last_log = Instant::now();
    loop {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) {
            match msg.view() {
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(e) => {
                    return Err(RemixError::Run(format!(
                        "{} ({})",
                        e.error(),
                        e.debug().map(|d| d.to_string()).unwrap_or_default()
                    )))
                }
                _ => {}
            }
        }
        if limits
            .cancel
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(RemixError::Run("stopped: callrec is shutting down".into()));
        }
        if limits.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(RemixError::Run(format!(
                "did not finish in time (stopped after {:.0} s)",
                started.elapsed().as_secs_f64()
            )));
        }
        let position = pipeline
            .query_position::<gst::ClockTime>()
            .map_or(0.0, |p| p.seconds_f64());
        if position > last_position {
            last_position = position;
            last_move = Instant::now();
        } else if last_move.elapsed() > STALL_TIMEOUT {
            return Err(RemixError::Stalled {
                at: position,
                total: total_s,
            });
        }
        let speed = position / started.elapsed().as_secs_f64().max(1e-3);
        match progress {
            Progress::Bar => {
                let fraction = (position / total_s).clamp(0.0, 1.0);
                let filled = (fraction * 30.0).round() as usize;
                eprint!(
                    "\r[{}{}] {:5.1}%  {position:.1}/{total_s:.1} s  {speed:.1}x ",
                    "#".repeat(filled),
                    ".".repeat(30 - filled),
                    fraction * 100.0
                );
                let _ = std::io::stderr().flush();
            }
            Progress::Log if last_log.elapsed() >= Duration::from_secs(5) => {
                last_log = Instant::now();
                info!(
                    "remix: {position:.1} of {total_s:.1} s ({:.0} %), {speed:.1}x real time",
                    position / total_s * 100.0
                );
            }
            Progress::Log | Progress::Quiet => {}
        }
    }
    if progress == Progress::Bar {
        eprintln!();
    }
    Ok(())
}

/// The first error message on the bus, for a pipeline that failed to start.
fn first_error(bus: &gst::Bus) -> String {
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(e) = msg.view() {
            return e.error().to_string();
        }
    }
    "the pipeline refused to start".into()
}
