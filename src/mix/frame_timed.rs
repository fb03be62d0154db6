//! Layout changes of a live compositor, applied at the output frame of the moment they were
//! decided rather than whenever the compositor next composes.
//!
//! A live compositor runs its latency (hundreds of milliseconds) behind the clock, and further
//! behind on a loaded machine. A pad property set at once would change frames from that far
//! back: a participant who just joined would get a tile before their first frame, a
//! reflow after someone left would show up early, by however far behind the compositor happens
//! to be. Instead each change is queued with the running time at which it was decided, and the
//! compositor's `samples-selected` signal (emitted before each output frame is composed)
//! applies every change due by that frame. The queue holds weak references, so a pad released
//! meanwhile is simply skipped, and it is bounded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use gst::prelude::*;

use super::layout::Rect;

/// Most changes waiting for their frame. A compositor that has stopped composing (at the end
/// of a mix) must not make the queue grow: past this, the oldest change is applied at once.
const MAX_PENDING: usize = 256;

/// Where a compositor pad's picture goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Position and size on the canvas.
    pub rect: Rect,
    /// Stacking order.
    pub zorder: u32,
    /// Opacity, 0 (hidden) to 1.
    pub alpha: f64,
}

impl Placement {
    /// Sets the pad's properties now (a pad without them, not a compositor pad, is left alone).
    pub fn apply(&self, pad: &gst::Pad) {
        if pad.find_property("xpos").is_none() {
            return;
        }
        pad.set_property("xpos", self.rect.x);
        pad.set_property("ypos", self.rect.y);
        pad.set_property("width", self.rect.w);
        pad.set_property("height", self.rect.h);
        pad.set_property("zorder", self.zorder);
        pad.set_property("alpha", self.alpha);
    }
}

/// A change waiting for its frame.
#[derive(Debug)]
struct Pending {
    /// Running time from which it applies.
    at: gst::ClockTime,
    pad: glib::WeakRef<gst::Pad>,
    placement: Placement,
}

/// The queue of one compositor's pending layout changes; clones share it.
#[derive(Debug, Clone, Default)]
pub struct FrameTimedLayout {
    pending: Arc<Mutex<VecDeque<Pending>>>,
    /// A compositor serves the queue; without one, changes are applied at once.
    hooked: bool,
}

impl FrameTimedLayout {
    /// Hooks the queue to `compositor`'s frames. A mixer that is no aggregator (no
    /// `emit-signals`, hence no `samples-selected`) gets its changes at once.
    pub fn install(compositor: &gst::Element) -> Self {
        let mut layout = Self::default();
        if compositor.find_property("emit-signals").is_none() {
            return layout;
        }
        compositor.set_property("emit-signals", true);
        let pending = Arc::downgrade(&layout.pending);
        compositor.connect("samples-selected", false, move |args| {
            let frame_rt = args
                .get(1)
                .and_then(|v| v.get::<gst::Segment>().ok())
                .zip(args.get(2).and_then(|v| v.get::<u64>().ok()))
                .and_then(|(segment, pts)| {
                    let segment = segment.downcast::<gst::ClockTime>().ok()?;
                    segment.to_running_time(gst::ClockTime::from_nseconds(pts))
                });
            if let (Some(frame_rt), Some(pending)) = (frame_rt, pending.upgrade()) {
                apply_due(&pending, frame_rt);
            }
            None
        });
        layout.hooked = true;
        layout
    }

    /// Places `pad` from the output frame at running time `at` on; with no time (the
    /// pipeline has no clock yet) or no compositor hooked, at once.
    pub fn place(&self, pad: &gst::Pad, at: Option<gst::ClockTime>, placement: Placement) {
        let (Some(at), true) = (at, self.hooked) else {
            placement.apply(pad);
            return;
        };
        let Ok(mut q) = self.pending.lock() else {
            placement.apply(pad);
            return;
        };
        // A newer change for the same pad replaces an older one still waiting, so the
        // queue never replays a layout out of order.
        q.retain(|p| p.pad.upgrade().is_some_and(|other| other != *pad));
        q.push_back(Pending {
            at,
            pad: pad.downgrade(),
            placement,
        });
        let excess = q.len().saturating_sub(MAX_PENDING);
        let overflow: Vec<Pending> = q.drain(..excess).collect();
        drop(q);
        for p in overflow {
            if let Some(pad) = p.pad.upgrade() {
                p.placement.apply(&pad);
            }
        }
    }

    /// Applies at once every change decided before `rt`: the safety net for a compositor that
    /// composes no frame (stalled, or skipping frames to catch up), so that a layout change
    /// is never later than the caller's bound.
    pub fn apply_decided_before(&self, rt: gst::ClockTime) {
        apply_due(&self.pending, rt);
    }
}

/// Applies, in order, the changes due by the frame at `frame_rt`. The properties are set
/// after the lock is released: setting `zorder` takes the compositor's object lock.
fn apply_due(pending: &Mutex<VecDeque<Pending>>, frame_rt: gst::ClockTime) {
    let due: Vec<Pending> = match pending.lock() {
        Ok(mut q) => {
            let n = q.iter().take_while(|p| p.at <= frame_rt).count();
            q.drain(..n).collect()
        }
        Err(_) => return,
    };
    for p in due {
        if let Some(pad) = p.pad.upgrade() {
            p.placement.apply(&pad);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: i32) -> Placement {
        Placement {
            rect: Rect {
                x,
                y: 0,
                w: 2,
                h: 2,
            },
            zorder: 1,
            alpha: 1.0,
        }
    }

    fn compositor_with_pad() -> (gst::Element, gst::Pad) {
        gst::init().unwrap();
        let comp = gst::ElementFactory::make("compositor").build().unwrap();
        let pad = comp.request_pad_simple("sink_%u").unwrap();
        (comp, pad)
    }

    #[test]
    fn changes_wait_for_their_frame_and_keep_their_order() {
        let (comp, pad) = compositor_with_pad();
        let layout = FrameTimedLayout::install(&comp);
        let ms = gst::ClockTime::from_mseconds;
        layout.place(&pad, Some(ms(100)), rect(10));
        assert_eq!(pad.property::<i32>("xpos"), 0, "applied before its frame");
        apply_due(&layout.pending, ms(99));
        assert_eq!(pad.property::<i32>("xpos"), 0);
        apply_due(&layout.pending, ms(100));
        assert_eq!(pad.property::<i32>("xpos"), 10);
        // A newer change replaces an older one still waiting.
        layout.place(&pad, Some(ms(200)), rect(20));
        layout.place(&pad, Some(ms(300)), rect(30));
        apply_due(&layout.pending, ms(250));
        assert_eq!(pad.property::<i32>("xpos"), 10);
        apply_due(&layout.pending, ms(300));
        assert_eq!(pad.property::<i32>("xpos"), 30);
    }

    #[test]
    fn a_released_pad_is_skipped_and_the_queue_is_bounded() {
        let (comp, pad) = compositor_with_pad();
        let layout = FrameTimedLayout::install(&comp);
        let ms = gst::ClockTime::from_mseconds;
        layout.place(&pad, Some(ms(100)), rect(10));
        comp.release_request_pad(&pad);
        drop(pad);
        apply_due(&layout.pending, gst::ClockTime::MAX);
        let pads: Vec<gst::Pad> = (0..MAX_PENDING + 10)
            .map(|_| comp.request_pad_simple("sink_%u").unwrap())
            .collect();
        for (i, pad) in pads.iter().enumerate() {
            layout.place(pad, Some(ms(1000)), rect(i as i32 + 1));
        }
        assert_eq!(layout.pending.lock().unwrap().len(), MAX_PENDING);
        // The oldest went out at once.
        assert_eq!(pads[0].property::<i32>("xpos"), 1);
        assert_eq!(pads[MAX_PENDING + 9].property::<i32>("xpos"), 0);
    }

    #[test]
    fn without_a_time_a_change_is_applied_at_once() {
        let (comp, pad) = compositor_with_pad();
        let layout = FrameTimedLayout::install(&comp);
        layout.place(&pad, None, rect(7));
        assert_eq!(pad.property::<i32>("xpos"), 7);
    }
}
