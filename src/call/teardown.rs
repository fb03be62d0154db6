//! Ending a session: EOS into its outputs (bounded), tearing its elements down off the async
//! threads, and the final manifest entries.

use std::time::Duration;

use gst::prelude::*;
use tracing::{error, info};

use super::{Call, CallNote, Session, SessionState, EOS_TIMEOUT, NULL_TIMEOUT};
use crate::recording;

impl Call {
    /// True when a connected session has received nothing for the media timeout.
    pub(super) fn media_silent(&self, session: &Session) -> bool {
        let timeout = self.settings.media_timeout;
        let last = session
            .tracks
            .values()
            .map(|t| {
                t.chain
                    .last_seen_ns
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .max()
            .filter(|&ns| ns > 0);
        match (last, self.pipeline.current_running_time()) {
            (Some(last), Some(now)) => {
                now.nseconds().saturating_sub(last) > timeout.as_nanos() as u64
            }
            _ => session.connected_at.is_some_and(|t| t.elapsed() > timeout),
        }
    }

    /// Ends one session: finalises its outputs (EOS, bounded), stops its webrtcbin and
    /// records why. Idempotent.
    pub(super) async fn end_session(&mut self, session_id: &str, reason: &str) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        if session.state == SessionState::Ended {
            return;
        }
        session.state = SessionState::Ended;
        info!(call = %self.settings.name, participant = %session.name, %reason, "participant left");
        let now = self.now_ms();
        for m in &mut self.mixes {
            m.detach_session(session_id, now);
        }
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        // Data that waited for a missing track goes out now.
        for out in &mut session.outputs {
            out.start();
        }
        // EOS into every output that has data, each from its own thread: a muxer can hold one
        // input's streaming thread while it waits for another, so the order must not matter.
        let mut sends = vec![];
        for out in &mut session.outputs {
            if !out.has_data() {
                continue;
            }
            out.eos_sent = true;
            for ghost in out.live_inputs() {
                sends.push(tokio::task::spawn_blocking(move || {
                    ghost.send_event(gst::event::Eos::new());
                }));
            }
        }
        let deadline = tokio::time::Instant::now() + EOS_TIMEOUT;
        let _ = tokio::time::timeout_at(deadline, futures::future::join_all(sends)).await;
        let mut unfinished = 0;
        while let Some(session) = self.sessions.get_mut(session_id) {
            unfinished = 0;
            for out in session.outputs.iter_mut().filter(|o| o.eos_sent) {
                out.completed = out.finished();
                unfinished += usize::from(!out.completed);
            }
            if unfinished == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if unfinished > 0 {
            self.warn(format!(
                "session {session_id}: {unfinished} output(s) did not finish within {}s; their files may lack an index",
                EOS_TIMEOUT.as_secs()
            ));
        }
        // The session's elements as they ended, before they go to NULL.
        self.graphs.dump(&self.pipeline, "eos");
        let Some(mut session) = self.sessions.remove(session_id) else {
            return;
        };
        // Tear down: webrtcbin and track chains first (nothing flows any more), then outputs.
        let mut elements = vec![session.webrtcbin.clone()];
        for track in session.tracks.values() {
            elements.extend(track.chain.elements.iter().cloned());
        }
        for decoder in session.decoders.values() {
            elements.extend(decoder.elements.iter().cloned());
        }
        elements.extend(session.discarded.iter().cloned());
        for out in &mut session.outputs {
            out.detach();
            elements.push(out.bin.clone().upcast());
        }
        stop_and_remove(&self.pipeline, elements).await;
        self.finalise_entries(&session, reason);
        let _ = self.notes_tx.send(CallNote::SessionClosed {
            call: self.key.clone(),
            session_id: session.id.clone(),
            reason: reason.to_owned(),
        });
        self.save_manifest();
    }

    /// Fills in the manifest entries of a finished session's tracks and files.
    pub(super) fn finalise_entries(&mut self, session: &Session, reason: &str) {
        if let Some(p) = self.manifest.participants.get_mut(session.manifest_index) {
            p.left_at = Some(recording::now_rfc3339());
            p.end_reason = Some(reason.to_owned());
        }
        for out in &session.outputs {
            let bytes = out
                .files
                .iter()
                .filter_map(|f| std::fs::metadata(self.dir.join(f)).ok())
                .map(|m| m.len())
                .sum::<u64>();
            if !out.has_data() {
                for f in &out.files {
                    let _ = std::fs::remove_file(self.dir.join(f));
                }
            }
            for input in &out.inputs {
                let Some(idx) = input.manifest_track else {
                    continue;
                };
                let Some(entry) = self.manifest.tracks.get_mut(idx) else {
                    continue;
                };
                match input.first {
                    Some(first) => {
                        let base = out.base.unwrap_or(first);
                        let end = input
                            .stats
                            .last_end_ns
                            .load(std::sync::atomic::Ordering::Relaxed);
                        let start_in_file = first.nseconds().saturating_sub(base.nseconds());
                        entry.duration_ms = Some(end.saturating_sub(start_in_file) / 1_000_000);
                        entry.bytes = Some(bytes);
                        entry.status = if out.completed {
                            "complete".into()
                        } else {
                            "interrupted".into()
                        };
                    }
                    None => {
                        entry.status = "empty".into();
                        entry.file = None;
                        entry.note = Some("no media arrived for this track".into());
                    }
                }
            }
        }
    }
}

/// Sets elements to NULL off the async threads (bounded) and removes them from the pipeline.
pub(super) async fn stop_and_remove(pipeline: &gst::Pipeline, elements: Vec<gst::Element>) {
    let pipeline = pipeline.clone();
    let job = tokio::task::spawn_blocking(move || {
        for e in &elements {
            let _ = e.set_locked_state(true);
            let _ = e.set_state(gst::State::Null);
            let _ = pipeline.remove(e);
        }
    });
    if tokio::time::timeout(NULL_TIMEOUT, job).await.is_err() {
        error!(
            "elements did not stop within {}s; abandoning them",
            NULL_TIMEOUT.as_secs()
        );
    }
}
