//! Simulcast: one track sent as several encodings of the same picture (layers, told apart by
//! their rid), of which callrec records one, the best that is flowing.
//!
//! Each layer has its own depayloader (its own SSRC, sequence numbers and timestamps) and
//! joins the track's funnel; a probe on each funnel input lets only the chosen layer's
//! frames through. The choice changes only at a keyframe of the layer switched to, so the
//! file and the mixes' decoders stay decodable: down when the top layer stops (a sender short
//! of bandwidth turns it off), up again when it returns. Every switch is reported to the call,
//! which writes it into the manifest.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::media::{self, Codec};

/// A layer that has sent nothing for this long counts as stopped.
const STOPPED_AFTER: Duration = Duration::from_millis(1000);
/// Least time between two keyframe requests on one layer.
const REQUEST_EVERY: Duration = Duration::from_millis(500);

/// What happened to a frame at the switch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Verdict {
    /// It goes on to the track's tee.
    pub pass: bool,
    /// It is the first frame of a newly chosen layer.
    pub switched: bool,
    /// Ask this layer for a keyframe (the one to switch to).
    pub request_keyframe: Option<usize>,
}

#[derive(Debug, Default)]
struct LayerState {
    /// Picture size in pixels (0 until its caps say).
    pixels: u64,
    last_seen: Option<Instant>,
    last_request: Option<Instant>,
}

/// Which layer is recorded (see the module documentation). Plain data: the probes feed it.
#[derive(Debug, Default)]
pub(super) struct LayerSwitch {
    layers: Vec<LayerState>,
    active: Option<usize>,
}

impl LayerSwitch {
    /// A new layer; returns its index.
    pub fn add(&mut self) -> usize {
        self.layers.push(LayerState::default());
        self.layers.len() - 1
    }

    /// A layer's picture size is known or changed.
    pub fn set_pixels(&mut self, layer: usize, pixels: u64) {
        if let Some(l) = self.layers.get_mut(layer) {
            l.pixels = pixels;
        }
    }

    /// The largest layer still flowing (the earliest of equals).
    fn best(&self, now: Instant) -> Option<usize> {
        let flowing = |l: &LayerState| {
            l.last_seen
                .is_some_and(|t| now.saturating_duration_since(t) < STOPPED_AFTER)
        };
        let mut best: Option<(usize, u64)> = None;
        for (i, l) in self.layers.iter().enumerate().filter(|(_, l)| flowing(l)) {
            if best.is_none_or(|(_, p)| l.pixels > p) {
                best = Some((i, l.pixels));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Asks `layer` for a keyframe unless it was asked lately.
    fn ask(&mut self, layer: usize, now: Instant) -> Option<usize> {
        let l = self.layers.get_mut(layer)?;
        if l.last_request
            .is_some_and(|t| now.saturating_duration_since(t) < REQUEST_EVERY)
        {
            return None;
        }
        l.last_request = Some(now);
        Some(layer)
    }

    /// A frame of `layer` reached the switch.
    pub fn on_frame(&mut self, layer: usize, keyframe: bool, now: Instant) -> Verdict {
        let Some(state) = self.layers.get_mut(layer) else {
            return Verdict::default();
        };
        state.last_seen = Some(now);
        let best = self.best(now);
        match self.active {
            Some(active) if active == layer => {
                let request_keyframe = best.filter(|&b| b != layer).and_then(|b| self.ask(b, now));
                Verdict {
                    pass: true,
                    switched: false,
                    request_keyframe,
                }
            }
            // The first layer to send a keyframe starts the track; a better one follows.
            None if keyframe => {
                self.active = Some(layer);
                Verdict {
                    pass: true,
                    switched: true,
                    request_keyframe: None,
                }
            }
            None => Verdict {
                request_keyframe: self.ask(layer, now),
                ..Verdict::default()
            },
            Some(_) if best == Some(layer) && keyframe => {
                self.active = Some(layer);
                Verdict {
                    pass: true,
                    switched: true,
                    request_keyframe: None,
                }
            }
            Some(_) if best == Some(layer) => Verdict {
                request_keyframe: self.ask(layer, now),
                ..Verdict::default()
            },
            Some(_) => Verdict::default(),
        }
    }
}

/// A switch to another layer, for the manifest.
#[derive(Debug, Clone)]
pub(super) struct LayerChange {
    /// The layer's rid, if its packets carried one.
    pub rid: Option<String>,
    /// Its picture width, if known.
    pub width: Option<u32>,
    /// Its picture height, if known.
    pub height: Option<u32>,
    /// Running time of its first frame (call time), in ms.
    pub at_ms: u64,
}

/// One simulcast track's funnel and switch, shared by webrtcbin's pad-added callbacks (one
/// per layer) and the switch probes.
#[derive(Debug)]
pub(crate) struct LayeredTrack {
    /// Where every layer's chain ends; the track's tee follows.
    pub funnel: gst::Element,
    /// The track's codec (every layer must have it).
    pub codec: &'static Codec,
    group: Mutex<LayerGroup>,
}

#[derive(Debug, Default)]
struct LayerGroup {
    switch: LayerSwitch,
    /// Each layer's depayloader (keyframe requests go in there).
    depays: Vec<glib::WeakRef<gst::Element>>,
}

impl LayeredTrack {
    /// How many layers it has.
    pub fn layer_count(&self) -> usize {
        self.group
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .depays
            .len()
    }

    /// A track whose layers will join `funnel`.
    pub fn new(funnel: gst::Element, codec: &'static Codec) -> Arc<Self> {
        Arc::new(LayeredTrack {
            funnel,
            codec,
            group: Mutex::default(),
        })
    }
}

/// One layer's elements.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    /// Every element, upstream first.
    pub elements: Vec<gst::Element>,
    /// The layer alone, before the switch: for templates that record every layer.
    pub tee: gst::Element,
}

/// Adds a layer: `src ! depayloader ! [parser] ! tee ! funnel`, with the switch's probe on the
/// funnel's input. Runs in webrtcbin's pad-added callback (or the first-buffer probe that
/// placed the pad), so it only creates and links elements. `changed` hears of every switch
/// (from a streaming thread: it must not block).
pub(super) fn add_layer(
    pipeline: &gst::Pipeline,
    src: &gst::Pad,
    track: &Arc<LayeredTrack>,
    rid: Option<String>,
    changed: impl Fn(LayerChange) + Send + Sync + 'static,
) -> Result<Layer, glib::BoolError> {
    let mut elements = media::depay_and_parse(track.codec)?;
    let tee = media::new_tee()?;
    elements.push(tee.clone());
    pipeline.add_many(&elements)?;
    gst::Element::link_many(&elements)?;
    let depay = elements[0].clone();
    let sink = track
        .funnel
        .request_pad_simple("sink_%u")
        .ok_or_else(|| glib::bool_error!("the layer funnel gave no pad"))?;
    crate::media::pads::request_tee_pad(&tee)
        .ok_or_else(|| glib::bool_error!("the layer's tee gave no pad"))?
        .link(&sink)
        .map_err(|e| glib::bool_error!("cannot link a layer to its funnel: {e:?}"))?;
    let index = {
        let mut group = track.group.lock().unwrap_or_else(|e| e.into_inner());
        group.depays.push(depay.downgrade());
        group.switch.add()
    };
    watch_size(&sink, track, index);
    let weak_track = Arc::downgrade(track);
    sink.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(track) = weak_track.upgrade() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let (verdict, ask) = {
            let mut group = track.group.lock().unwrap_or_else(|e| e.into_inner());
            let verdict = group.switch.on_frame(index, keyframe, Instant::now());
            let ask = verdict
                .request_keyframe
                .and_then(|l| group.depays.get(l))
                .and_then(|depay| depay.upgrade());
            (verdict, ask)
        };
        if let Some(depay) = ask {
            let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            depay.send_event(event);
        }
        if verdict.switched {
            let (width, height) = pad
                .current_caps()
                .and_then(|c| {
                    let s = c.structure(0)?;
                    Some((s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?))
                })
                .map_or((None, None), |(w, h)| {
                    (u32::try_from(w).ok(), u32::try_from(h).ok())
                });
            let at_ms = pad
                .parent_element()
                .and_then(|e| e.current_running_time())
                .map_or(0, |t| t.mseconds());
            changed(LayerChange {
                rid: rid.clone(),
                width,
                height,
                at_ms,
            });
        }
        if verdict.pass {
            gst::PadProbeReturn::Ok
        } else {
            gst::PadProbeReturn::Drop
        }
    });
    let depay_sink = depay
        .static_pad("sink")
        .ok_or_else(|| glib::bool_error!("the depayloader has no sink pad"))?;
    if let Some(gate) = tee.static_pad("sink") {
        media::watch_losses(&depay, &depay_sink, &gate, track.codec);
    }
    for e in &elements {
        e.sync_state_with_parent()?;
    }
    src.link(&depay_sink).map_err(|e| {
        glib::bool_error!("cannot link webrtcbin to {}: {e:?}", track.codec.depay())
    })?;
    Ok(Layer { elements, tee })
}

/// Keeps the switch told of a layer's picture size, from the caps its parser sends.
fn watch_size(sink: &gst::Pad, track: &Arc<LayeredTrack>, index: usize) {
    let weak_track = Arc::downgrade(track);
    sink.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        let Some(gst::PadProbeData::Event(event)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        if let (gst::EventView::Caps(caps), Some(track)) = (event.view(), weak_track.upgrade()) {
            let size = caps
                .caps()
                .structure(0)
                .and_then(|s| Some((s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?)));
            if let Some((w, h)) = size {
                let pixels = u64::try_from(w).unwrap_or(0) * u64::try_from(h).unwrap_or(0);
                let mut group = track.group.lock().unwrap_or_else(|e| e.into_inner());
                group.switch.set_pixels(index, pixels);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Three layers of 320x180, 640x360 and 1280x720.
    fn three() -> LayerSwitch {
        let mut s = LayerSwitch::default();
        for (i, pixels) in [320 * 180, 640 * 360, 1280 * 720].into_iter().enumerate() {
            assert_eq!(s.add(), i);
            s.set_pixels(i, pixels);
        }
        s
    }

    #[test]
    fn starts_on_the_first_keyframe_then_moves_up_at_the_best_layers_keyframe() {
        let t0 = Instant::now();
        let mut s = three();
        // Delta frames before any keyframe: dropped, and a keyframe asked for.
        let v = s.on_frame(0, false, t0);
        assert!(!v.pass);
        assert_eq!(v.request_keyframe, Some(0));
        assert!(s.on_frame(0, true, t0 + MS).switched);
        // The top layer flows but sends deltas: asked for a keyframe, not switched to.
        let v = s.on_frame(2, false, t0 + 2 * MS);
        assert!(!v.pass && !v.switched);
        assert_eq!(v.request_keyframe, Some(2));
        assert!(s.on_frame(0, false, t0 + 3 * MS).pass);
        // Its keyframe: switched; the lower layers are dropped from then on.
        let v = s.on_frame(2, true, t0 + 40 * MS);
        assert!(v.pass && v.switched);
        assert_eq!(s.active, Some(2));
        assert!(!s.on_frame(0, true, t0 + 41 * MS).pass);
        assert!(!s.on_frame(1, true, t0 + 42 * MS).pass);
    }

    #[test]
    fn moves_down_when_the_top_layer_stops_and_back_when_it_returns() {
        let t0 = Instant::now();
        let mut s = three();
        // Keyframes from each, smallest first: each one is better than the last.
        for l in 0..3 {
            assert!(s.on_frame(l, true, t0).switched);
        }
        assert_eq!(s.active, Some(2));
        // The top layer stops; the middle one goes on with deltas.
        let mut t = t0;
        for _ in 0..20 {
            t += 100 * MS;
            s.on_frame(1, false, t);
        }
        assert_eq!(s.active, Some(2), "no switch without a keyframe");
        let v = s.on_frame(1, false, t + MS);
        assert!(v.request_keyframe.is_some() || !v.pass);
        let v = s.on_frame(1, true, t + 2 * MS);
        assert!(v.pass && v.switched);
        assert_eq!(s.active, Some(1));
        // It returns, with a keyframe.
        let v = s.on_frame(2, true, t + 3 * MS);
        assert!(v.switched);
        assert_eq!(s.active, Some(2));
    }

    #[test]
    fn keyframe_requests_are_rate_limited() {
        let t0 = Instant::now();
        let mut s = three();
        assert!(s.on_frame(0, true, t0).switched);
        assert_eq!(s.on_frame(2, false, t0).request_keyframe, Some(2));
        assert_eq!(s.on_frame(2, false, t0 + 10 * MS).request_keyframe, None);
        assert_eq!(
            s.on_frame(2, false, t0 + REQUEST_EVERY).request_keyframe,
            Some(2)
        );
        assert_eq!(s.on_frame(7, true, t0), Verdict::default());
    }
}
