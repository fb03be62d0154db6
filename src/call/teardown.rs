//! Ending a session: EOS into its outputs (bounded), tearing its elements down off the async
//! threads, and the final manifest entries.

use gst::prelude::*;
use tracing::{info, warn};

use super::{Call, CallEvent, Session, EOS_TIMEOUT, NULL_TIMEOUT};
use crate::recording::{self, TrackStatus};

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

    /// Ends one session: it leaves the call's table and the mixes at once, and a job
    /// finalises its files (EOS, bounded) and reports back with
    /// [`CallEvent::SessionFlushed`]. Idempotent.
    pub(super) fn end_session(&mut self, session_id: &str, reason: &str) {
        // A room's session ends with everyone in it.
        for member in self.members_of(session_id) {
            self.end_session(&member, reason);
        }
        let Some(mut session) = self.sessions.remove(session_id) else {
            return;
        };
        if let Some(carrier) = session.carrier().map(str::to_owned) {
            self.forget_member(&carrier, &session.peer_id, session_id);
        }
        if session.is_participant() {
            info!(call = %self.settings.name, participant = %session.name, %reason, "participant left");
        } else {
            info!(call = %self.settings.name, session = %session_id, %reason, "room session ended");
        }
        let now = self.now_ms();
        for m in &mut self.mixes {
            m.detach_session(session_id, now);
        }
        if !self.sessions.values().any(Session::is_participant) {
            // Nobody left: the mixes stop writing now rather than at the linger's end.
            for m in &mut self.mixes {
                m.pause(now);
            }
        }
        self.flushing
            .insert(session_id.to_owned(), session.elements());
        // The supervisor knows the sessions of the server, not a room's members, nor an
        // offer the server never took up.
        if session.carrier().is_none() {
            if let Some(signal_id) = &session.signal_id {
                self.session_keys.remove(signal_id);
                self.close_session_note(signal_id, reason);
            }
        }
        let events = self.events_tx.clone();
        let reason = reason.to_owned();
        tokio::spawn(async move {
            let unfinished = session.flush().await;
            events
                .report(CallEvent::SessionFlushed {
                    session: Box::new(session),
                    reason,
                    unfinished,
                })
                .await;
        });
    }

    /// A leaving session's files are final: record them, and stop its elements in the
    /// background.
    pub(super) fn on_session_flushed(
        &mut self,
        mut session: Session,
        reason: &str,
        unfinished: usize,
    ) {
        self.flushing.remove(&session.id);
        if unfinished > 0 {
            self.warn(format!(
                "session {}: {unfinished} output(s) did not finish within {}s; their files may lack an index",
                session.id,
                EOS_TIMEOUT.as_secs()
            ));
        }
        // The session's elements as they ended, before they go to NULL.
        self.graphs.dump(&self.pipeline, "eos");
        let elements = session.take_elements();
        self.stop_in_background(elements);
        self.finalise_entries(&session, reason);
        self.save_manifest();
    }

    /// Stops elements and removes them from the pipeline in a job (bounded); the call's end
    /// waits for such jobs.
    pub(super) fn stop_in_background(&mut self, elements: Vec<gst::Element>) {
        if elements.is_empty() {
            return;
        }
        let pipeline = self.pipeline.clone();
        self.teardowns.spawn(async move {
            crate::media::state::stop_and_remove(&pipeline, elements, NULL_TIMEOUT).await
        });
    }

    /// Fills in the manifest entries of a finished session's tracks and files.
    pub(super) fn finalise_entries(&mut self, session: &Session, reason: &str) {
        let entry = session
            .manifest_index
            .and_then(|i| self.manifest.participants.get_mut(i));
        if let Some(p) = entry {
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
            if !out.wrote_data() {
                // Nothing but headers, if that.
                for f in &out.files {
                    let _ = std::fs::remove_file(self.dir.join(f));
                }
            }
            let mut unwritten = vec![];
            for input in &out.inputs {
                let Some(idx) = input.manifest_track else {
                    continue;
                };
                let Some(entry) = self.manifest.tracks.get_mut(idx) else {
                    continue;
                };
                let file = out.files.first().map_or("the file", String::as_str);
                let outcome = track_outcome(
                    input.first.is_some(),
                    input.stats.reached_output(),
                    out.completed,
                );
                match (outcome, input.first) {
                    (TrackOutcome::Written(status), Some(first)) => {
                        let base = out.base.unwrap_or(first);
                        let end = input
                            .stats
                            .last_end_ns
                            .load(std::sync::atomic::Ordering::Relaxed);
                        let start_in_file = first.nseconds().saturating_sub(base.nseconds());
                        entry.duration_ms = Some(end.saturating_sub(start_in_file) / 1_000_000);
                        entry.bytes = Some(bytes);
                        entry.status = status;
                    }
                    (TrackOutcome::NotWritten, _) => {
                        entry.status = TrackStatus::Empty;
                        entry.file = None;
                        entry.duration_ms = None;
                        entry.bytes = None;
                        entry.note = Some(format!("media arrived but none of it reached {file}"));
                        unwritten.push(format!(
                            "participant {}: {}{} arrived but none of it reached {file}",
                            session.peer_id, entry.kind, entry.mline
                        ));
                    }
                    (TrackOutcome::NothingArrived, _) | (TrackOutcome::Written(_), None) => {
                        entry.status = TrackStatus::Empty;
                        entry.file = None;
                        entry.note = Some("no media arrived for this track".into());
                    }
                }
            }
            for message in unwritten {
                warn!(call = %self.settings.name, "{message}");
                self.manifest.warnings.push(message);
            }
        }
    }
}

/// What a finished track's manifest entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackOutcome {
    /// Some of it is in the file: complete, or interrupted if the file was not finalised.
    Written(TrackStatus),
    /// Media arrived, but none of it reached the muxer in a form it writes (no segment, say):
    /// the file does not have it, whatever it holds of the other tracks.
    NotWritten,
    /// No media came at all.
    NothingArrived,
}

/// Decides a track's outcome from whether media `arrived` at its output, whether any of it
/// `reached` the template's input element with a timeline, and whether the file was
/// finalised (`completed`). Only data that reached the muxer counts as recorded.
fn track_outcome(arrived: bool, reached: bool, completed: bool) -> TrackOutcome {
    match (arrived, reached) {
        (false, _) => TrackOutcome::NothingArrived,
        (true, false) => TrackOutcome::NotWritten,
        (true, true) if completed => TrackOutcome::Written(TrackStatus::Complete),
        (true, true) => TrackOutcome::Written(TrackStatus::Interrupted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_track_is_recorded_only_if_its_data_reached_the_file() {
        use TrackOutcome::*;
        // The soak's participant: audio arrived but never reached the muxer, and the file
        // was finalised with its video alone.
        assert_eq!(track_outcome(true, false, true), NotWritten);
        assert_eq!(track_outcome(true, false, false), NotWritten);
        assert_eq!(
            track_outcome(true, true, true),
            Written(TrackStatus::Complete)
        );
        assert_eq!(
            track_outcome(true, true, false),
            Written(TrackStatus::Interrupted)
        );
        assert_eq!(track_outcome(false, false, true), NothingArrived);
        assert_eq!(track_outcome(false, true, true), NothingArrived);
    }
}
