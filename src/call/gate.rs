//! A timeline gate: cuts stretches of running time out of one or more streams, so an output
//! that stops writing for a while goes on afterwards as one continuous file.
//!
//! A live mix uses it to stop as soon as its last participant has left instead of writing an
//! empty canvas through the call's linger; if someone comes back within the linger, the mix
//! goes on where it stopped. The gate is shared by every stream of the output (a mix's video
//! and audio), and each stream applies the same cuts: a buffer inside a cut is dropped, and a
//! buffer after cuts is moved earlier by their total length. Since the decision depends only on
//! the buffer's running time and the list of cuts, the streams stay in sync whichever of them
//! is ahead. Cuts are multiples of the video frame duration, so frames stay on their grid.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

/// One stretch of running time cut out, in ns: `[from, to)`; `to` is open while the gate is
/// closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    from: u64,
    to: Option<u64>,
}

#[derive(Debug, Default)]
struct Cuts {
    list: Vec<Cut>,
}

impl Cuts {
    /// What to do with a buffer at running time `rt`: `None` to drop it, else the amount to
    /// move it earlier.
    fn shift_for(&self, rt: u64) -> Option<u64> {
        let mut shift = 0;
        for cut in &self.list {
            if rt < cut.from {
                break;
            }
            match cut.to {
                Some(to) if rt >= to => shift += to - cut.from,
                _ => return None,
            }
        }
        Some(shift)
    }
}

/// A gate over the streams of one output; clones share it.
#[derive(Debug, Clone)]
pub struct TimelineGate {
    cuts: Arc<Mutex<Cuts>>,
    /// Cut boundaries are rounded up to multiples of this (ns, at least 1).
    grid: u64,
}

impl TimelineGate {
    /// A gate whose cuts are whole multiples of `grid` (a video frame's duration).
    pub fn new(grid: gst::ClockTime) -> Self {
        Self {
            cuts: Arc::default(),
            grid: grid.nseconds().max(1),
        }
    }

    fn round_up(&self, ns: u64) -> u64 {
        ns.div_ceil(self.grid) * self.grid
    }

    /// Applies the gate to the buffers leaving `pad` (events, EOS included, pass untouched).
    pub fn install(&self, pad: &gst::Pad) {
        let cuts = self.cuts.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(rt) = crate::media::probes::running_time(pad, buffer) else {
                return gst::PadProbeReturn::Ok;
            };
            let shift = match cuts.lock() {
                Ok(cuts) => cuts.shift_for(rt.nseconds()),
                Err(_) => Some(0),
            };
            match shift {
                None => crate::media::probes::consume(info),
                Some(0) => gst::PadProbeReturn::Ok,
                Some(shift) => {
                    if let Some(buffer) = info.buffer_mut() {
                        let buffer = buffer.make_mut();
                        let earlier = |t: Option<gst::ClockTime>| {
                            t.map(|t| {
                                gst::ClockTime::from_nseconds(t.nseconds().saturating_sub(shift))
                            })
                        };
                        let (pts, dts) = (earlier(buffer.pts()), earlier(buffer.dts()));
                        buffer.set_pts(pts);
                        buffer.set_dts(dts);
                    }
                    gst::PadProbeReturn::Ok
                }
            }
        });
    }

    /// Stops passing buffers from running time `at` on. Returns false if already closed.
    pub fn close(&self, at: gst::ClockTime) -> bool {
        let from = self.round_up(at.nseconds());
        let Ok(mut cuts) = self.cuts.lock() else {
            return false;
        };
        if cuts.list.last().is_some_and(|c| c.to.is_none()) {
            return false;
        }
        // A new cut never starts before the end of the previous one.
        let from = cuts
            .list
            .last()
            .and_then(|c| c.to)
            .map_or(from, |to| from.max(to));
        cuts.list.push(Cut { from, to: None });
        true
    }

    /// Passes buffers again from running time `at` on; the stretch since the close is cut
    /// out. Returns the cut `(from, to)` in ns, or `None` if the gate was open.
    pub fn open(&self, at: gst::ClockTime) -> Option<(u64, u64)> {
        let to = self.round_up(at.nseconds());
        let mut cuts = self.cuts.lock().ok()?;
        let last = cuts.list.last_mut().filter(|c| c.to.is_none())?;
        if to <= last.from {
            // Reopened before anything was cut.
            cuts.list.pop();
            return None;
        }
        last.to = Some(to);
        Some((last.from, to))
    }

    /// The running time (ns) a buffer had before the gate moved it earlier: `shifted` plus
    /// the cuts before it. Lets a probe downstream of the gate compare a buffer with the clock.
    pub fn uncut(&self, shifted: u64) -> u64 {
        let Ok(cuts) = self.cuts.lock() else {
            return shifted;
        };
        let mut shift = 0;
        for cut in &cuts.list {
            let Some(to) = cut.to else { break };
            // Buffers from before this cut were moved by `shift` and end up before
            // `cut.from - shift`; buffers after it were moved by its length as well.
            if shifted + shift < cut.from {
                break;
            }
            shift += to - cut.from;
        }
        shifted + shift
    }

    /// True while closed: nothing passes, so nothing downstream is expected to keep up.
    pub fn is_closed(&self) -> bool {
        self.cuts
            .lock()
            .is_ok_and(|c| c.list.last().is_some_and(|c| c.to.is_none()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn buffers_inside_a_cut_drop_and_later_ones_move_earlier() {
        let gate = TimelineGate::new(gst::ClockTime::from_mseconds(10));
        let shift = |rt_ms: u64| gate.cuts.lock().unwrap().shift_for(rt_ms * MS);
        assert_eq!(shift(500), Some(0));
        assert!(gate.close(gst::ClockTime::from_mseconds(1_003)));
        assert!(
            !gate.close(gst::ClockTime::from_mseconds(1_500)),
            "already closed"
        );
        assert!(gate.is_closed());
        assert_eq!(shift(1_009), Some(0), "before the rounded-up close");
        assert_eq!(shift(1_010), None);
        assert_eq!(shift(90_000), None, "closed until opened");
        assert_eq!(
            gate.open(gst::ClockTime::from_mseconds(4_001)),
            Some((1_010 * MS, 4_010 * MS))
        );
        assert!(!gate.is_closed());
        assert_eq!(shift(4_009), None);
        assert_eq!(shift(4_010), Some(3_000 * MS));
        // A second cut adds up.
        gate.close(gst::ClockTime::from_mseconds(5_000));
        gate.open(gst::ClockTime::from_mseconds(6_000));
        assert_eq!(shift(4_500), Some(3_000 * MS));
        assert_eq!(shift(5_500), None);
        assert_eq!(shift(7_000), Some(4_000 * MS));
        // Moved buffers map back to where they were.
        assert_eq!(gate.uncut(500 * MS), 500 * MS);
        assert_eq!(gate.uncut(1_009 * MS), 1_009 * MS);
        assert_eq!(gate.uncut((4_010 - 3_000) * MS), 4_010 * MS);
        assert_eq!(gate.uncut((4_500 - 3_000) * MS), 4_500 * MS);
        assert_eq!(gate.uncut((7_000 - 4_000) * MS), 7_000 * MS);
    }

    #[test]
    fn reopening_at_once_cuts_nothing() {
        let gate = TimelineGate::new(gst::ClockTime::from_mseconds(33));
        gate.close(gst::ClockTime::from_mseconds(990));
        assert_eq!(gate.open(gst::ClockTime::from_mseconds(980)), None);
        assert!(!gate.is_closed());
        assert_eq!(gate.cuts.lock().unwrap().shift_for(2_000 * MS), Some(0));
        assert_eq!(gate.open(gst::ClockTime::from_mseconds(3_000)), None);
    }
}
