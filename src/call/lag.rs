//! How far a live mix runs behind real time, and the video it gives up to stay close.
//!
//! A live mix has to keep pace with the call's clock: its background sources are live, so
//! whatever the mixers, encoders and muxer cannot process in time piles up somewhere. Before
//! issue 9 it piled up in the queue before the video encoder (seconds of raw frames), then
//! blocked the compositor; the muxer, which interleaves by time, then held the audio back as
//! well, the audiomixer stalled and participants' audio was lost at the leaky decoder queues
//! (clicks and gaps). On a saturated machine the mix must instead give up video frames, and
//! nothing else. This module does three things for that:
//!
//! - It watches each mixer's output where it reaches the muxer (or sink): the running time of
//!   the last buffer there, against the clock, is how far the files are behind the call.
//! - It counts the video frames that never got there. The compositor makes one frame per
//!   interval of the canvas rate (the timeline gate keeps that grid, see [`super::gate`]), so
//!   every hole in the grid at the muxer is a frame dropped on the way: by the compositor
//!   skipping it, by the leaky queue before the encoder, or by the encoder.
//! - When a frame leaves the compositor later than its latency plus [`ALLOWED_DELAY`], it
//!   tells the compositor, as a syncing sink would, with a QoS event: the compositor then
//!   skips the frames that cannot be on time any more without composing them, which frees the
//!   CPU the encoder (and the audio) need. The event goes straight to the compositor's source
//!   pad, and [`keep_qos_in`] stops it at the compositor's inputs, so the decoders every mix
//!   shares never see it. (The encoder's own slowness is the leaky queue's business, in the
//!   templates: it keeps the newest frames for the encoder and drops the rest.)
//!
//! The call's task reads the counters on every tick ([`LagWatch::tick`]) and turns them into
//! the manifest's `dropped_frames` and `behind` stretches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gst_base::prelude::*;

use super::gate::TimelineGate;
use crate::recording::{MixBehind, MixEntry};

/// How much later than its own latency (433 ms in a live mix) a frame may leave the
/// compositor before it is told to skip frames: composing takes a few milliseconds on a
/// machine that keeps up, so a frame this late means the compositor cannot keep up. The queue
/// before the encoder (100 ms, leaky) and the encoder add the rest of a mix's lag.
pub const ALLOWED_DELAY: gst::ClockTime = gst::ClockTime::from_mseconds(150);
/// Slack on top of [`ALLOWED_DELAY`] before a mix counts as behind: the watch reads the last
/// buffer's time, which is up to an audio frame or a video frame (plus a tick) old.
const BEHIND_SLACK: gst::ClockTime = gst::ClockTime::from_mseconds(150);
/// A stretch of being behind ends after this long without drops or excess lag, so a machine
/// that stutters gives one stretch, not dozens.
const CALM: gst::ClockTime = gst::ClockTime::SECOND;
/// Most video one late frame makes the compositor skip.
const MAX_SKIP: gst::ClockTime = gst::ClockTime::SECOND;
/// Longest path from a mixer to its muxer that is followed (elements in a chain).
const MAX_CHAIN: usize = 32;

/// What the streaming threads record; the call's task reads it.
#[derive(Debug, Default)]
struct Shared {
    /// Running time (before the gate's cuts) of the newest video buffer at the muxer, + 1 ns;
    /// 0 until the first.
    video_rt: AtomicU64,
    /// The same for audio.
    audio_rt: AtomicU64,
    /// Video frames dropped so far.
    dropped: AtomicU64,
    /// The newest video running time at the muxer on the gate's (gapless) timeline, for the
    /// grid count.
    grid_last: Mutex<Option<u64>>,
}

impl Shared {
    /// Counts the holes in the frame grid before a video buffer at `shifted` (ns, on the
    /// gate's timeline). A frame older than one already seen was reordered by the encoder
    /// (B-frames), so it was counted as dropped when its successor came: uncount it.
    fn count_grid(&self, shifted: u64, frame_ns: u64) {
        let Ok(mut last) = self.grid_last.lock() else {
            return;
        };
        match *last {
            None => *last = Some(shifted),
            Some(prev) if shifted > prev => {
                let slots = (shifted - prev + frame_ns / 2) / frame_ns.max(1);
                if slots > 1 {
                    self.dropped.fetch_add(slots - 1, Ordering::Relaxed);
                }
                *last = Some(shifted);
            }
            Some(prev) if shifted < prev => {
                let _ = self
                    .dropped
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
            }
            Some(_) => {}
        }
    }
}

/// The stretch of being behind that is under way.
#[derive(Debug, Clone, Copy)]
struct Open {
    from_ms: u64,
    last_ms: u64,
    dropped_at_start: u64,
    max_lag_ms: u64,
}

/// Watches one live mix (see the module docs).
#[derive(Debug)]
pub struct LagWatch {
    shared: Arc<Shared>,
    /// The mixer whose latency sets the pace (the compositor, or the audiomixer of an
    /// audio-only mix).
    pacer: Option<gst_base::Aggregator>,
    has_video: bool,
    has_audio: bool,
    open: Option<Open>,
    dropped_seen: u64,
    last_report_s: u64,
    /// The furthest behind the mix has been, over the whole call (ms).
    pub max_lag_ms: u64,
}

impl LagWatch {
    /// Installs the probes: pacing on the compositor's output, and the watch where the
    /// mixers' outputs reach the muxer. `frame` is the canvas's
    /// frame duration; `gate` is the mix's timeline gate (its cuts are undone before comparing
    /// with the clock).
    pub fn install(
        vmix: Option<&gst::Element>,
        amix: Option<&gst::Element>,
        gate: &TimelineGate,
        frame: gst::ClockTime,
    ) -> Self {
        let shared = Arc::new(Shared::default());
        let mut watch = LagWatch {
            shared: shared.clone(),
            pacer: vmix
                .or(amix)
                .and_then(|m| m.clone().downcast::<gst_base::Aggregator>().ok()),
            has_video: false,
            has_audio: false,
            open: None,
            dropped_seen: 0,
            last_report_s: 0,
            max_lag_ms: 0,
        };
        if let Some(vmix) = vmix {
            let frame_ns = frame.nseconds().max(1);
            if let Some(src) = vmix.static_pad("src") {
                // Frames leaving the compositor late make it skip: its lateness is the part of
                // the lag that skipping frames can fix (the encoder's is the leaky queue's).
                let gate = gate.clone();
                src.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                    let rt = info
                        .buffer()
                        .and_then(|b| crate::media::probes::running_time(pad, b));
                    let compositor = pad.parent_element();
                    let now = compositor.as_ref().and_then(|c| c.current_running_time());
                    if let (Some(rt), Some(now), Some(compositor)) = (rt, now, compositor) {
                        pace(
                            &compositor,
                            gate.uncut(rt.nseconds()),
                            now.nseconds(),
                            frame_ns,
                        );
                    }
                    gst::PadProbeReturn::Ok
                });
            }
            if let Some(out) = vmix.static_pad("src").and_then(|p| output_pad(&p)) {
                watch.has_video = true;
                let (shared, gate) = (shared.clone(), gate.clone());
                out.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                    if let Some(rt) = info
                        .buffer()
                        .and_then(|b| crate::media::probes::running_time(pad, b))
                    {
                        let original = gate.uncut(rt.nseconds());
                        shared.video_rt.fetch_max(original + 1, Ordering::Relaxed);
                        shared.count_grid(rt.nseconds(), frame_ns);
                    }
                    gst::PadProbeReturn::Ok
                });
            }
        }
        if let Some(amix) = amix {
            if let Some(out) = amix.static_pad("src").and_then(|p| output_pad(&p)) {
                watch.has_audio = true;
                let (shared, gate) = (shared.clone(), gate.clone());
                out.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                    if let Some(rt) = info
                        .buffer()
                        .and_then(|b| crate::media::probes::running_time(pad, b))
                    {
                        let original = gate.uncut(rt.nseconds());
                        shared.audio_rt.fetch_max(original + 1, Ordering::Relaxed);
                    }
                    gst::PadProbeReturn::Ok
                });
            }
        }
        watch
    }

    /// Video frames dropped so far (`None` for a mix without a watched video output).
    pub fn dropped_frames(&self) -> Option<u64> {
        self.has_video
            .then(|| self.shared.dropped.load(Ordering::Relaxed))
    }

    /// How far the mix's output is behind the clock at running time `now` (ns): the stream
    /// furthest behind counts, since the muxer interleaves them. A stream that has delivered
    /// nothing yet counts from the call's start, as the mix's background runs from there.
    fn lag_ns(&self, now: u64) -> u64 {
        let since =
            |rt: &AtomicU64| now.saturating_sub(rt.load(Ordering::Relaxed).saturating_sub(1));
        let video = self.has_video.then(|| since(&self.shared.video_rt));
        let audio = self.has_audio.then(|| since(&self.shared.audio_rt));
        video.into_iter().chain(audio).max().unwrap_or(0)
    }

    /// Reads the counters at call time `now_ms` and updates `entry`: the dropped-frame count,
    /// and the `behind` stretches. `paused` says the mix is not writing (its gate is closed),
    /// so falling silent then is no lag. Returns true when a stretch began or ended, so the
    /// caller saves the manifest.
    pub fn tick(
        &mut self,
        now_ms: u64,
        paused: bool,
        template: &str,
        entry: &mut MixEntry,
    ) -> bool {
        entry.dropped_frames = self.dropped_frames();
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        let before = self.dropped_seen;
        let new_drops = dropped > before;
        self.dropped_seen = dropped;
        let latency = self
            .pacer
            .as_ref()
            .and_then(|p| p.latency())
            .unwrap_or(gst::ClockTime::ZERO);
        let lag_ms = if paused {
            0
        } else {
            self.lag_ns(gst::ClockTime::from_mseconds(now_ms).nseconds()) / 1_000_000
        };
        self.max_lag_ms = self.max_lag_ms.max(lag_ms);
        if now_ms / 1000 != self.last_report_s {
            self.last_report_s = now_ms / 1000;
            tracing::trace!(
                template,
                lag_ms,
                latency_ms = latency.mseconds(),
                dropped,
                "mix lag"
            );
        }
        let limit = (latency + ALLOWED_DELAY + BEHIND_SLACK).mseconds();
        let behind = !paused && (new_drops || lag_ms > limit);
        let mut changed = false;
        match (&mut self.open, behind) {
            (None, true) => {
                tracing::warn!(
                    template,
                    lag_ms,
                    dropped,
                    "live mix fell behind real time; dropping video frames to catch up"
                );
                self.open = Some(Open {
                    from_ms: now_ms,
                    last_ms: now_ms,
                    dropped_at_start: before,
                    max_lag_ms: lag_ms,
                });
                changed = true;
            }
            (Some(open), true) => {
                open.last_ms = now_ms;
                open.max_lag_ms = open.max_lag_ms.max(lag_ms);
            }
            (Some(open), false) if now_ms.saturating_sub(open.last_ms) >= CALM.mseconds() => {
                changed = self.close(template, entry);
            }
            _ => {}
        }
        changed
    }

    /// Ends a stretch under way (at the mix's end); returns true if there was one. The
    /// dropped-frame count is final once the mix has drained.
    pub fn close(&mut self, template: &str, entry: &mut MixEntry) -> bool {
        entry.dropped_frames = self.dropped_frames();
        let Some(open) = self.open.take() else {
            return false;
        };
        // Frames the grid count found after the last tick belong to this stretch too.
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        let stretch = MixBehind {
            from_ms: open.from_ms,
            to_ms: open.last_ms,
            dropped_frames: dropped.saturating_sub(open.dropped_at_start),
            max_lag_ms: open.max_lag_ms,
        };
        tracing::info!(template, ?stretch, "live mix caught up with real time");
        entry.behind.push(stretch);
        true
    }
}

/// Tells the compositor to skip the frames that cannot be on time any more, if the frame at
/// running time `rt` (ns, before the gate's cuts) left it at `now` later than its latency plus
/// [`ALLOWED_DELAY`].
fn pace(compositor: &gst::Element, rt: u64, now: u64, frame_ns: u64) {
    let latency = compositor
        .downcast_ref::<gst_base::Aggregator>()
        .and_then(|a| a.latency())
        .unwrap_or(gst::ClockTime::ZERO);
    let deadline = rt + (latency + ALLOWED_DELAY).nseconds();
    if now <= deadline {
        return;
    }
    // A live video aggregator skips every output frame before `timestamp + diff`: skipping as
    // much as this frame was late drains what is queued behind it. (A syncing sink's rule,
    // twice the lateness, feeds on itself here: the frames after a skip arrive late too, and
    // the mix stalled for seconds.) Capped, so one stall skips at most a second.
    let late = (now - deadline).min(MAX_SKIP.nseconds());
    let diff = late + frame_ns;
    let proportion = (now - rt) as f64 / (deadline - rt).max(1) as f64;
    let event = gst::event::Qos::new(
        gst::QOSType::Underflow,
        proportion,
        i64::try_from(diff).unwrap_or(i64::MAX),
        gst::ClockTime::from_nseconds(rt),
    );
    if let Some(src) = compositor.static_pad("src") {
        let _ = src.send_event(event);
    }
}

/// Stops QoS events at a compositor input. The compositor forwards the ones [`pace`] sends it
/// to its inputs, and from there they would reach the participants' decoders, which every mix
/// shares: one late mix would make them drop frames for all the others.
pub fn keep_qos_in(mixer_pad: &gst::Pad) {
    mixer_pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, |_, info| {
        match info.event() {
            Some(e) if e.type_() == gst::EventType::Qos => crate::media::probes::consume(info),
            _ => gst::PadProbeReturn::Ok,
        }
    });
}

/// The pad where a mixer's output enters the first muxer or sink downstream of `src` (or an
/// element that splits it, where the chain can no longer be followed).
fn output_pad(src: &gst::Pad) -> Option<gst::Pad> {
    let mut pad = src.clone();
    for _ in 0..MAX_CHAIN {
        let peer = pad.peer()?;
        let element = peer.parent_element()?;
        let klass = element.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or("");
        if klass.contains("Muxer") || klass.contains("Sink") {
            return Some(peer);
        }
        let srcs = element.src_pads();
        match srcs.as_slice() {
            [next] if next.peer().is_some() => pad = next.clone(),
            _ => return Some(peer),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u64 = 33_333_333;

    #[test]
    fn holes_in_the_frame_grid_are_dropped_frames() {
        let shared = Shared::default();
        let at = |n: u64| n * 1_000_000_000 / 30;
        for n in [0, 1, 2, 5, 6, 10] {
            shared.count_grid(at(n), FRAME);
        }
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 2 + 3);
        // A reordered frame turns up after all.
        shared.count_grid(at(8), FRAME);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 4);
        shared.count_grid(at(10), FRAME);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 4);
    }
}
