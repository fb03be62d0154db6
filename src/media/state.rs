//! Bounded state changes: setting elements to NULL never runs on the async threads and never
//! waits for ever.

use std::time::Duration;

use gst::prelude::*;
use tracing::error;

/// Sets elements to NULL off the async threads and removes them from the pipeline, waiting
/// at most `limit`: an element stuck in its state change is abandoned with an error in the
/// log rather than holding up its caller.
pub async fn stop_and_remove(
    pipeline: &gst::Pipeline,
    elements: Vec<gst::Element>,
    limit: Duration,
) {
    let pipeline = pipeline.clone();
    let job = tokio::task::spawn_blocking(move || {
        for e in &elements {
            let _ = e.set_locked_state(true);
            let _ = e.set_state(gst::State::Null);
            let _ = pipeline.remove(e);
        }
    });
    if tokio::time::timeout(limit, job).await.is_err() {
        error!(
            "elements did not stop within {}s; abandoning them",
            limit.as_secs()
        );
    }
}
