//! Post-processing: `post`-scope templates run over a finished call's recorded files, from a
//! queue with bounded concurrency so that transcoding never starves live recording.
//!
//! Each template runs once per recorded file, through the same description
//! `callrec pipelines render --from` prints. It writes into a staging folder inside the call
//! directory; only when every file succeeded are its outputs moved in (never over an
//! existing file). A failure is logged and written to the manifest, and the originals are
//! never touched. Jobs still queued or running when the daemon stops stay `queued` in the
//! manifest and run again on the next start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::offline::launch;
use crate::offline::remix::{self, Limits, Progress};
use crate::offline::CallInputs;
use crate::recording::{self, PostEntry, PostStatus};
use crate::templates::Template;

/// How a template's run over a call ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its files, moved into the call directory.
    Complete(Vec<String>),
    /// The call has nothing it takes (e.g. an audio template on a video-only call).
    Skipped(String),
}

/// The post-processing a call gets when it ends: fixed when the call starts, so a reload
/// changes it only for calls that start afterwards.
#[derive(Debug, Clone, Default)]
pub struct PostPlan {
    /// The `post` templates, in order.
    pub templates: Vec<Template>,
    /// How long one template may take over the call.
    pub timeout: Duration,
}

/// The post-processing queue of the daemon.
#[derive(Debug, Clone)]
pub struct PostQueue {
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl PostQueue {
    /// A queue running at most `concurrency` templates at once.
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Queues the plan's templates over the call in `call_dir`: marks them `queued` in its
    /// manifest now, and runs them one after another when a slot is free. Once the queue is
    /// stopping they are only marked, and run on the next start.
    pub fn submit(&self, call_dir: PathBuf, plan: PostPlan) {
        let PostPlan { templates, timeout } = plan;
        if templates.is_empty() || !call_dir.join(recording::MANIFEST_FILE).is_file() {
            return;
        }
        let names: Vec<String> = templates.iter().map(|t| t.name.clone()).collect();
        let marked = blocking(|| {
            recording::update_manifest(&call_dir, |m| {
                for name in &names {
                    // One entry per pending run: a `running` one (a run that died) waits again.
                    match queued_entry(&mut m.post, name) {
                        Some(e) => e.status = PostStatus::Queued,
                        None => m.post.push(PostEntry {
                            template: name.clone(),
                            status: PostStatus::Queued,
                            files: vec![],
                            error: None,
                            started_at: None,
                            finished_at: None,
                            pipelines: vec![],
                        }),
                    }
                }
            })
        });
        if let Err(e) = marked {
            warn!(dir = %call_dir.display(), "not post-processing: cannot update the manifest: {e}");
            return;
        }
        if self.stop.is_cancelled() {
            return;
        }
        let permits = self.permits.clone();
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            for template in templates {
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p,
                    _ = stop.cancelled() => return,
                };
                let Ok(_permit) = permit else {
                    return;
                };
                if stop.is_cancelled() {
                    return;
                }
                run_queued(&call_dir, template, timeout, &stop).await;
            }
        });
    }

    /// Re-queues what a previous run left `queued` in the manifests under `recordings`,
    /// with today's templates of the same names.
    pub fn resume(&self, recordings: &Path, available: &[Template], timeout: Duration) {
        // Runs before the daemon serves anything; the manifests are small.
        let Ok(entries) = std::fs::read_dir(recordings) else {
            return;
        };
        for dir in entries.flatten().map(|e| e.path()) {
            let Ok(text) = std::fs::read(dir.join(recording::MANIFEST_FILE)) else {
                continue;
            };
            let Ok(manifest) = serde_json::from_slice::<recording::Manifest>(&text) else {
                continue;
            };
            if manifest.post.is_empty() {
                continue;
            }
            remove_staging(&dir);
            // `running` here means the previous run died in the middle (SIGKILL, a crash).
            let queued: Vec<String> = manifest
                .post
                .iter()
                .filter(|e| e.status.is_pending())
                .map(|e| e.template.clone())
                .collect();
            if queued.is_empty() {
                continue;
            }
            let mut templates = vec![];
            for name in queued {
                match available.iter().find(|t| t.name == name) {
                    Some(t) => templates.push(t.clone()),
                    None => finish_entry(
                        &dir,
                        &name,
                        PostStatus::Failed,
                        vec![],
                        vec![],
                        Some("the template is no longer configured in [post] templates".into()),
                    ),
                }
            }
            info!(dir = %dir.display(), "resuming post-processing left unfinished by the previous run");
            self.submit(dir, PostPlan { templates, timeout });
        }
    }

    /// Stops taking new work: later submissions are only marked `queued`, and running jobs
    /// are told to stop (they go back to `queued` for the next start).
    pub fn cancel(&self) {
        self.stop.cancel();
    }

    /// Cancels, then waits for running jobs to wind down, at most `grace`.
    pub async fn stop(&self, grace: Duration) {
        self.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
    }
}

/// Runs one template over a call from the queue, keeping the manifest up to date.
async fn run_queued(
    call_dir: &Path,
    template: Template,
    timeout: Duration,
    stop: &CancellationToken,
) {
    let name = template.name.clone();
    let _ = blocking(|| {
        recording::update_manifest(call_dir, |m| {
            if let Some(e) = queued_entry(&mut m.post, &name) {
                e.status = PostStatus::Running;
                e.started_at = Some(recording::now_rfc3339());
            }
        })
    });
    info!(dir = %call_dir.display(), template = %name, "post-processing");
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let dir = call_dir.to_owned();
    let job = tokio::task::spawn_blocking(move || run_template(&dir, &template, timeout, &flag));
    tokio::pin!(job);
    let result = tokio::select! {
        biased;
        r = &mut job => r,
        _ = stop.cancelled() => {
            cancel.store(true, Ordering::Relaxed);
            let r = (&mut job).await;
            if !matches!(r, Ok((Ok(_), _))) {
                // Stopped by shutdown, not broken: run it again next time.
                let _ = blocking(|| recording::update_manifest(call_dir, |m| {
                    if let Some(e) = queued_entry(&mut m.post, &name) {
                        e.status = PostStatus::Queued;
                        e.pipelines.clear();
                    }
                }));
                return;
            }
            // It finished just as the stop came: keep what it did.
            r
        }
    };
    let (status, files, pipelines, error) = match result {
        Ok((Ok(Outcome::Complete(files)), pipelines)) => {
            (PostStatus::Complete, files, pipelines, None)
        }
        Ok((Ok(Outcome::Skipped(why)), pipelines)) => {
            (PostStatus::Skipped, vec![], pipelines, Some(why))
        }
        Ok((Err(e), pipelines)) => (PostStatus::Failed, vec![], pipelines, Some(e)),
        Err(e) => (
            PostStatus::Failed,
            vec![],
            vec![],
            Some(format!("the job crashed: {e}")),
        ),
    };
    match &error {
        Some(e) if status == PostStatus::Failed => {
            warn!(dir = %call_dir.display(), template = %name, "post-processing failed: {e}")
        }
        _ => {
            info!(dir = %call_dir.display(), template = %name, ?status, ?files, "post-processing done")
        }
    }
    blocking(|| finish_entry(call_dir, &name, status, files, pipelines, error));
}

/// Runs short blocking file work (a manifest update) from async code without stalling the
/// runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Removes staging folders (`.post-*`) a stopped or crashed run left in a call directory.
fn remove_staging(call_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(call_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(".post-")
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The entry of `template` that is waiting to run (or running).
fn queued_entry<'a>(entries: &'a mut [PostEntry], template: &str) -> Option<&'a mut PostEntry> {
    entries
        .iter_mut()
        .rev()
        .find(|e| e.template == template && e.status.is_pending())
}

fn finish_entry(
    call_dir: &Path,
    template: &str,
    status: PostStatus,
    files: Vec<String>,
    pipelines: Vec<String>,
    error: Option<String>,
) {
    let result = recording::update_manifest(call_dir, |m| {
        if let Some(e) = queued_entry(&mut m.post, template) {
            e.status = status;
            e.files = files;
            e.pipelines = pipelines;
            e.error = error;
            e.finished_at = Some(recording::now_rfc3339());
        }
    });
    if let Err(e) = result {
        warn!(dir = %call_dir.display(), %template, "cannot record the post-processing result in the manifest: {e}");
    }
}

/// Runs `template` over every recorded file of the call in `call_dir` (blocking). Returns
/// the outcome and the pipeline text run for each file.
pub fn run_template(
    call_dir: &Path,
    template: &Template,
    timeout: Duration,
    cancel: &AtomicBool,
) -> (Result<Outcome, String>, Vec<String>) {
    let mut pipelines = vec![];
    if cancel.load(Ordering::Relaxed) {
        return (Err("stopped: callrec is shutting down".into()), pipelines);
    }
    let inputs = match CallInputs::load(call_dir) {
        Ok(i) => i,
        Err(e) => return (Err(e.to_string()), pipelines),
    };
    let staging = inputs.dir.join(format!(".post-{}", template.name));
    let _ = std::fs::remove_dir_all(&staging);
    if let Err(e) = std::fs::create_dir(&staging) {
        return (
            Err(format!("cannot create {}: {e}", staging.display())),
            pipelines,
        );
    }
    let result =
        run_files(&inputs, template, &staging, timeout, cancel, &mut pipelines).and_then(|ran| {
            if ran == 0 {
                return Ok(Outcome::Skipped(format!(
                    "no recorded file has media the template takes ({})",
                    template.media.join(", ")
                )));
            }
            move_outputs(&staging, &inputs.dir).map(Outcome::Complete)
        });
    let _ = std::fs::remove_dir_all(&staging);
    (result, pipelines)
}

/// Runs the template's pipeline for each file into `staging`; returns how many ran.
fn run_files(
    inputs: &CallInputs,
    template: &Template,
    staging: &Path,
    timeout: Duration,
    cancel: &AtomicBool,
    pipelines: &mut Vec<String>,
) -> Result<usize, String> {
    let staging_text = staging.to_string_lossy();
    let deadline = Instant::now() + timeout;
    let mut ran = 0;
    for (n, file) in inputs.files.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err("stopped: callrec is shutting down".into());
        }
        let text = launch::post_description(template, inputs, n, &staging_text)
            .map_err(|e| e.to_string())?;
        let Some(text) = text else {
            continue;
        };
        pipelines.push(text.clone());
        let pipeline = gst::parse::launch(&text)
            .map_err(|e| format!("{}: cannot build the pipeline: {e}", file.file))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| format!("{}: the description did not make a pipeline", file.file))?;
        crate::media::priming::compensate(pipeline.upcast_ref());
        // Two files of one participant (a rejoin, or one file per track) would otherwise
        // write the same output one after the other, and only the last would be kept.
        let outputs = crate::media::sinks::sink_files(pipeline.upcast_ref(), staging);
        if let Some(again) = outputs.iter().find(|f| staging.join(f).exists()) {
            return Err(format!(
                "{}: would write {again} again (an earlier recording of the call wrote it); name the outputs after ${{input}}, which differs per file",
                file.file
            ));
        }
        let result = remix::run(
            &pipeline,
            file.duration,
            Progress::Quiet,
            Limits {
                deadline: Some(deadline),
                cancel: Some(cancel),
            },
        );
        let _ = pipeline.set_state(gst::State::Null);
        result.map_err(|e| format!("{}: {e}", file.file))?;
        ran += 1;
    }
    Ok(ran)
}

/// Moves every file of `staging` into `call_dir`; refuses to overwrite anything.
fn move_outputs(staging: &Path, call_dir: &Path) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(staging)
        .map_err(|e| format!("cannot list {}: {e}", staging.display()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err("the template wrote no file into ${call_dir}".into());
    }
    if let Some(taken) = names.iter().find(|n| call_dir.join(n).exists()) {
        return Err(format!(
            "{taken} already exists in the call directory; callrec never overwrites a recording (remove it, or name the output after ${{template}})"
        ));
    }
    for (i, name) in names.iter().enumerate() {
        std::fs::rename(staging.join(name), call_dir.join(name)).map_err(|e| {
            let moved = &names[..i];
            format!(
                "cannot move {name} into the call directory: {e} (already moved: {})",
                if moved.is_empty() {
                    "none".to_owned()
                } else {
                    moved.join(", ")
                }
            )
        })?;
    }
    Ok(names)
}
