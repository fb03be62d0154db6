//! A live mix: one instance of a `call`-scope template, fed every participant's decoded video
//! (into its compositor) and audio (into its audiomixer).
//!
//! callrec adds a live background source to each mixer, so the mix runs in real time from the
//! call's start whether or not anyone sends anything, and never waits on a silent or frozen
//! participant. Layout is callrec's job: it sets each compositor pad's position and size as
//! people come and go, and picks the active speaker from audio levels for the speaker layout.

use std::path::Path;
use std::time::Duration;

use gst::prelude::*;

use super::gate::TimelineGate;
use super::lag::LagWatch;
use crate::mix::fade::FadeTail;
use crate::mix::frame_timed::{FrameTimedLayout, Placement};
use crate::mix::layout::{self, Tile};
use crate::mix::speaker::SpeakerPicker;
use crate::recording::{MixEntry, MixGap, OnScreen};
use crate::templates::{Kind, LayoutKind, Template};

/// Extra time the audiomixer waits for late participant audio before producing a buffer.
/// Audio that misses it is lost (a gap and a click), so it is generous.
const AUDIO_MIXER_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(200);
/// Latency the audiomixer assumes its (later) participant inputs have: webrtcbin's
/// jitterbuffer (200 ms) plus depayloading, a queue and decoding, with room for a starved
/// decoder thread.
const AUDIO_UPSTREAM_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(500);
/// Extra time the compositor waits for late participant video. A frame that misses it is not
/// lost: the compositor shows the participant's previous frame, then this one a frame late.
/// Waiting as long as for audio would keep the whole mix (the muxer interleaves by time) that
/// much further behind the call on a loaded machine, for nothing the viewer would notice.
const VIDEO_MIXER_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(100);
/// Latency the compositor assumes its participant inputs have: the jitterbuffer (200 ms),
/// depayloading and decoding.
const VIDEO_UPSTREAM_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(300);
/// Size of a placeholder tile's source; the compositor scales it.
pub const PLACEHOLDER_SIZE: (i32, i32) = (320, 180);
/// A placeholder tile's colour (ARGB): dark grey.
pub const PLACEHOLDER_COLOUR: u32 = 0xff40_4040;
/// How long after the last participant left a mix stops writing: their last audio, faded,
/// is out of the mixer by then.
const PAUSE_AFTER: gst::ClockTime = gst::ClockTime::from_mseconds(100);
/// Longest a layout change waits for the compositor to compose its frame: a little more
/// than the compositor's latency, so it only applies when the compositor is stalled or
/// skipping frames.
const LAYOUT_AT_MOST_LATE: gst::ClockTime = gst::ClockTime::from_mseconds(700);
/// Grid of an audio-only mix's cuts (the audiomixer's default buffer duration).
const AUDIO_GRID: gst::ClockTime = gst::ClockTime::from_mseconds(10);
/// Size of the leaky queue each mix has in front of each mixer input. A participant's
/// decoder is shared by every mix (through a tee), so a mixer that stalls (its muxer waiting
/// for late video) would otherwise stall the decoder, whose own leaky queue would then throw
/// away the participant's audio for every mix at once: gaps and clicks everywhere, caused by
/// one slow output. With it, a stalled mix loses only its own input, and only after a second.
const INPUT_QUEUE: gst::ClockTime = gst::ClockTime::SECOND;

/// A participant's stream linked into a mixer.
#[derive(Debug)]
struct MixInput {
    session: String,
    kind: Kind,
    /// The mixer's request pad.
    pad: gst::Pad,
    /// This mix's own queue in front of it (see [`INPUT_QUEUE`]).
    queue: gst::Element,
    /// The bin's ghost pad for it.
    ghost: gst::GhostPad,
    /// The decoder tee's pad feeding it.
    feed: gst::Pad,
    feed_tee: gst::Element,
    /// Audio: the held-back last buffer, faded out on leave.
    tail: Option<FadeTail>,
}

/// A placeholder tile for a participant heard but not seen.
#[derive(Debug)]
struct Placeholder {
    elements: Vec<gst::Element>,
    pad: gst::Pad,
}

/// One participant on the canvas.
#[derive(Debug)]
struct TileState {
    session: String,
    peer_id: String,
    label: String,
    aspect: f64,
    placeholder: Option<Placeholder>,
    on_screen_since: Option<u64>,
}

/// A running mix.
#[derive(Debug)]
pub struct Mix {
    /// The template it runs.
    pub template: Template,
    /// Its bin in the call's pipeline.
    pub bin: gst::Bin,
    vmix: Option<gst::Element>,
    amix: Option<gst::Element>,
    sources: Vec<gst::Element>,
    inputs: Vec<MixInput>,
    tiles: Vec<TileState>,
    speaker: SpeakerPicker<String>,
    /// Its manifest entry.
    pub entry: MixEntry,
    /// EOS was sent into it.
    pub eos_sent: bool,
    /// Cuts the empty stretches out of its output (see [`Mix::pause`]).
    gate: TimelineGate,
    /// How far behind real time it runs, and the video frames it dropped to keep up.
    lag: LagWatch,
    /// Applies layout changes at the frame they belong to.
    timed_layout: FrameTimedLayout,
}

impl Mix {
    /// Adds a mix template's bin, with its background sources, to a pipeline that is not
    /// playing yet (so the live sources start with the call's clock).
    pub fn create(
        template: &Template,
        bin: gst::Bin,
        text: String,
        pipeline: &gst::Pipeline,
        call_dir: &Path,
    ) -> Result<Self, String> {
        let find = |kind| template.input_for(kind).and_then(|name| bin.by_name(name));
        let (vmix, amix) = (find(Kind::Video), find(Kind::Audio));
        if vmix.is_none() && amix.is_none() {
            return Err(format!(
                "template {}: no video or audio mixer input",
                template.name
            ));
        }
        let canvas = template.canvas;
        let mut sources = vec![];
        let latencies = vmix
            .iter()
            .map(|m| (m, VIDEO_MIXER_LATENCY, VIDEO_UPSTREAM_LATENCY))
            .chain(
                amix.iter()
                    .map(|m| (m, AUDIO_MIXER_LATENCY, AUDIO_UPSTREAM_LATENCY)),
            );
        for (mixer, latency, upstream) in latencies {
            // Participants plug in later, with the jitterbuffer's latency and a decoder's: the
            // mixer must plan for that from the start instead of finding their data late.
            for (prop, value) in [
                ("latency", latency.nseconds()),
                ("min-upstream-latency", upstream.nseconds()),
            ] {
                if mixer.find_property(prop).is_some() {
                    mixer.set_property(prop, value);
                }
            }
        }
        if let Some(vmix) = &vmix {
            let src = gst::ElementFactory::make("videotestsrc")
                .property("is-live", true)
                .property_from_str("pattern", "solid-color")
                .property("foreground-color", 0xff00_0000 | canvas.background)
                .build()
                .map_err(|e| e.to_string())?;
            // I420 everywhere: left free, the compositor would pick the background source's
            // richest format (64-bit RGBA) and could not keep up in real time.
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", canvas.width as i32)
                .field("height", canvas.height as i32)
                .field("framerate", gst::Fraction::new(canvas.fps as i32, 1))
                .build();
            let pad = add_source(&bin, &src, caps, vmix, Kind::Video)?;
            let full = layout::Rect {
                x: 0,
                y: 0,
                w: canvas.width as i32,
                h: canvas.height as i32,
            };
            Placement {
                rect: full,
                zorder: 0,
                alpha: 1.0,
            }
            .apply(&pad);
            sources.push(src);
        }
        if let Some(amix) = &amix {
            let src = gst::ElementFactory::make("audiotestsrc")
                .property("is-live", true)
                .property_from_str("wave", "silence")
                .build()
                .map_err(|e| e.to_string())?;
            let caps = gst::Caps::builder("audio/x-raw")
                .field("rate", 48_000i32)
                .field("channels", 2i32)
                .build();
            add_source(&bin, &src, caps, amix, Kind::Audio)?;
            sources.push(src);
        }
        let grid = match vmix {
            Some(_) => gst::ClockTime::SECOND
                .mul_div_floor(1, u64::from(canvas.fps.max(1)))
                .unwrap_or(AUDIO_GRID),
            None => AUDIO_GRID,
        };
        let gate = TimelineGate::new(grid);
        for mixer in vmix.iter().chain(amix.iter()) {
            let pad = mixer
                .static_pad("src")
                .ok_or_else(|| format!("{} has no src pad", mixer.name()))?;
            gate.install(&pad);
        }
        let lag = LagWatch::install(vmix.as_ref(), amix.as_ref(), &gate, grid);
        let timed_layout = vmix
            .as_ref()
            .map(FrameTimedLayout::install)
            .unwrap_or_default();
        let files = crate::media::sinks::sink_files(&bin, call_dir);
        pipeline.add(&bin).map_err(|e| e.to_string())?;
        let entry = MixEntry {
            template: template.name.clone(),
            files,
            layout: canvas.layout,
            canvas: format!("{}x{}@{}", canvas.width, canvas.height, canvas.fps),
            status: crate::recording::MixStatus::Recording,
            on_screen: vec![],
            pipeline: text,
            remixed_at: None,
            gaps: vec![],
            dropped_frames: lag.dropped_frames(),
            behind: vec![],
        };
        Ok(Mix {
            template: template.clone(),
            bin,
            vmix,
            amix,
            sources,
            inputs: vec![],
            tiles: vec![],
            speaker: SpeakerPicker::default(),
            entry,
            eos_sent: false,
            gate,
            lag,
            timed_layout,
        })
    }

    /// True if this mix takes streams of `kind`.
    pub fn takes(&self, kind: Kind) -> bool {
        match kind {
            Kind::Video => self.vmix.is_some(),
            Kind::Audio => self.amix.is_some(),
        }
    }

    /// Links a participant's decoded track (a pad of `raw_tee`) into the right mixer.
    #[allow(clippy::too_many_arguments)]
    pub fn attach(
        &mut self,
        session: &str,
        peer_id: &str,
        label: &str,
        kind: Kind,
        raw_tee: &gst::Element,
        now_ms: u64,
    ) -> Result<(), String> {
        let mixer = match kind {
            Kind::Video => self.vmix.clone(),
            Kind::Audio => self.amix.clone(),
        }
        .ok_or("this mix does not take that kind")?;
        let pad = request(&mixer, kind)?;
        let queue = gst::ElementFactory::make("queue")
            .property("max-size-buffers", 0u32)
            .property("max-size-bytes", 0u32)
            .property("max-size-time", INPUT_QUEUE)
            .property_from_str("leaky", "downstream")
            .build()
            .map_err(|e| e.to_string())?;
        self.bin.add(&queue).map_err(|e| e.to_string())?;
        let linked = queue
            .static_pad("src")
            .ok_or("queue has no src pad")
            .and_then(|src| src.link(&pad).map_err(|_| "cannot link the input queue"))
            .and_then(|_| queue.static_pad("sink").ok_or("queue has no sink pad"));
        let queue_sink = match linked {
            Ok(sink) => sink,
            Err(e) => {
                let _ = self.bin.remove(&queue);
                mixer.release_request_pad(&pad);
                return Err(e.into());
            }
        };
        queue.sync_state_with_parent().map_err(|e| e.to_string())?;
        let ghost = gst::GhostPad::builder_with_target(&queue_sink)
            .map_err(|e| e.to_string())?
            .name(format!("in_{}_{}", kind.as_str(), pad.name()))
            .build();
        ghost.set_active(true).map_err(|e| e.to_string())?;
        self.bin.add_pad(&ghost).map_err(|e| e.to_string())?;
        let feed = crate::media::pads::request_tee_pad(raw_tee).ok_or("tee gave no pad")?;
        feed.link(&ghost)
            .map_err(|e| format!("cannot link into the mix: {e:?}"))?;
        let tail = match (kind, mixer.static_pad("src")) {
            (Kind::Audio, Some(src)) => Some(FadeTail::install(&feed, src)),
            _ => None,
        };
        // A failing mix must not stop the decoder that other mixes share.
        crate::media::probes::isolate(&feed);
        if kind == Kind::Video {
            hide(&pad);
        }
        self.inputs.push(MixInput {
            session: session.to_owned(),
            kind,
            pad,
            queue,
            ghost,
            feed,
            feed_tee: raw_tee.clone(),
            tail,
        });
        if !self.tiles.iter().any(|t| t.session == session) {
            self.tiles.push(TileState {
                session: session.to_owned(),
                peer_id: peer_id.to_owned(),
                label: label.to_owned(),
                aspect: 16.0 / 9.0,
                placeholder: None,
                on_screen_since: None,
            });
        }
        self.update_placeholders();
        self.relayout(now_ms);
        self.resume(now_ms);
        Ok(())
    }

    /// Everyone has left: the mix stops writing once the mixers have played out their last
    /// audio, instead of filling the linger with an empty canvas. EOS, or someone coming back
    /// ([`Mix::resume`]), follows.
    pub fn pause(&mut self, now_ms: u64) {
        let at = gst::ClockTime::from_mseconds(now_ms) + PAUSE_AFTER;
        if self.gate.close(at) {
            tracing::debug!(template = %self.template.name, at_ms = at.mseconds(), "mix paused: nobody left in the call");
        }
    }

    /// Someone is back: the mix goes on in the same files, with the empty stretch cut out
    /// (listed in the manifest's `gaps`, in call time).
    fn resume(&mut self, now_ms: u64) {
        if let Some((from, to)) = self.gate.open(gst::ClockTime::from_mseconds(now_ms)) {
            let gap = MixGap {
                from_ms: from / 1_000_000,
                to_ms: to / 1_000_000,
            };
            tracing::debug!(template = %self.template.name, ?gap, "mix resumed");
            self.entry.gaps.push(gap);
        }
    }

    /// Every tick of the call: updates the dropped-frame count and the stretches when the mix
    /// fell behind real time. Returns true when a stretch began or ended (worth saving the
    /// manifest for).
    pub fn on_tick(&mut self, now_ms: u64) -> bool {
        if self.eos_sent {
            return false;
        }
        // A layout change waits for its frame, but never longer than this.
        if let Some(now) = self.bin.current_running_time() {
            self.timed_layout
                .apply_decided_before(now.saturating_sub(LAYOUT_AT_MOST_LATE));
        }
        let paused = self.gate.is_closed();
        self.lag
            .tick(now_ms, paused, &self.template.name, &mut self.entry)
    }

    /// After the mix has finished (or given up waiting): the final dropped-frame count, and
    /// the end of a stretch of being behind that was still under way.
    pub fn settle(&mut self) {
        self.lag.close(&self.template.name, &mut self.entry);
        tracing::debug!(
            template = %self.template.name,
            dropped_frames = ?self.entry.dropped_frames,
            max_lag_ms = self.lag.max_lag_ms,
            "live mix done"
        );
    }

    /// A participant's video changed size (caps on the decoded stream).
    pub fn set_aspect(&mut self, session: &str, aspect: f64, now_ms: u64) {
        if let Some(tile) = self.tiles.iter_mut().find(|t| t.session == session) {
            if (tile.aspect - aspect).abs() > 0.01 {
                tile.aspect = aspect;
                self.relayout(now_ms);
            }
        }
    }

    /// Removes everything of a session from the mix; its tile leaves the layout.
    pub fn detach_session(&mut self, session: &str, now_ms: u64) {
        let (gone, kept): (Vec<MixInput>, Vec<MixInput>) =
            self.inputs.drain(..).partition(|i| i.session == session);
        self.inputs = kept;
        for input in gone {
            let Some(tail) = input.tail else {
                let _ = input.feed.unlink(&input.ghost);
                input.feed_tee.release_request_pad(&input.feed);
                release_mixer_input(&self.bin, &input.ghost, &input.queue, &input.pad);
                continue;
            };
            // Audio plays out what the mixer still holds, faded at the very end.
            let _ = input.feed.unlink(&input.ghost);
            input.feed_tee.release_request_pad(&input.feed);
            let caps = input.ghost.current_caps();
            let (bin, ghost, queue, pad) = (
                self.bin.clone(),
                input.ghost.clone(),
                input.queue.clone(),
                input.pad.clone(),
            );
            tail.finish(input.ghost, input.pad, caps, move || {
                release_mixer_input(&bin, &ghost, &queue, &pad);
            });
        }
        if let Some(pos) = self.tiles.iter().position(|t| t.session == session) {
            let mut tile = self.tiles.remove(pos);
            self.close_on_screen(&mut tile, now_ms);
            if let Some(p) = tile.placeholder.take() {
                self.remove_placeholder(p);
            }
        }
        self.speaker.forget(&session.to_owned());
        self.relayout(now_ms);
    }

    /// Feeds an audio level (dBFS, loudest channel) for a session; switches the speaker view
    /// when someone else has been clearly louder for a while.
    pub fn on_level(&mut self, session: &str, db: f64, now_ms: u64) {
        if self.template.canvas.layout != LayoutKind::Speaker
            || !self.tiles.iter().any(|t| t.session == session)
        {
            return;
        }
        let now = Duration::from_millis(now_ms);
        if self.speaker.level(&session.to_owned(), db, now) {
            self.relayout(now_ms);
        }
    }

    /// The session shown large in the speaker layout.
    pub fn speaker(&self) -> Option<&str> {
        self.speaker.speaker().map(String::as_str)
    }

    /// Participants heard but not seen get a placeholder tile; seen ones lose it.
    fn update_placeholders(&mut self) {
        if self.vmix.is_none() {
            return;
        }
        for i in 0..self.tiles.len() {
            let session = self.tiles[i].session.clone();
            let has_video = self
                .inputs
                .iter()
                .any(|x| x.session == session && x.kind == Kind::Video);
            let has_audio = self
                .inputs
                .iter()
                .any(|x| x.session == session && x.kind == Kind::Audio);
            let wants = has_audio && !has_video;
            if wants && self.tiles[i].placeholder.is_none() {
                match self.make_placeholder(&self.tiles[i].label.clone()) {
                    Ok(p) => self.tiles[i].placeholder = Some(p),
                    Err(e) => {
                        tracing::warn!(template = %self.template.name, "no placeholder tile: {e}")
                    }
                }
            } else if !wants {
                if let Some(p) = self.tiles[i].placeholder.take() {
                    self.remove_placeholder(p);
                }
            }
        }
    }

    /// A grey tile with the participant's name. Its source is not live: it is timed from now
    /// with a pad offset, and the mixer takes frames at its own pace.
    fn make_placeholder(&self, label: &str) -> Result<Placeholder, String> {
        let vmix = self.vmix.as_ref().ok_or("no video mixer")?;
        let src = gst::ElementFactory::make("videotestsrc")
            .property("is-live", false)
            .property_from_str("pattern", "solid-color")
            .property("foreground-color", PLACEHOLDER_COLOUR)
            .build()
            .map_err(|e| e.to_string())?;
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", PLACEHOLDER_SIZE.0)
            .field("height", PLACEHOLDER_SIZE.1)
            .field(
                "framerate",
                gst::Fraction::new(self.template.canvas.fps as i32, 1),
            )
            .build();
        let filter = gst::ElementFactory::make("capsfilter")
            .property("caps", caps)
            .build()
            .map_err(|e| e.to_string())?;
        let mut elements = vec![src, filter];
        if let Ok(text) = gst::ElementFactory::make("textoverlay")
            .property("text", label)
            .property_from_str("valignment", "center")
            .property_from_str("halignment", "center")
            .build()
        {
            elements.push(text);
        }
        self.bin.add_many(&elements).map_err(|e| e.to_string())?;
        gst::Element::link_many(&elements).map_err(|e| e.to_string())?;
        let pad = request(vmix, Kind::Video)?;
        let out = elements
            .last()
            .and_then(|e| e.static_pad("src"))
            .ok_or("no src pad")?;
        if let Some(now) = self.bin.current_running_time() {
            out.set_offset(now.nseconds() as i64);
        }
        out.link(&pad)
            .map_err(|e| format!("cannot link the placeholder: {e:?}"))?;
        hide(&pad);
        for e in &elements {
            e.sync_state_with_parent().map_err(|e| e.to_string())?;
        }
        Ok(Placeholder { elements, pad })
    }

    /// The source's output is dropped first (so unlinking it is no error), then the mixer pad
    /// is released, which also frees a source thread blocked on it; then the source stops.
    fn remove_placeholder(&self, p: Placeholder) {
        if let Some(out) = p.elements.last().and_then(|e| e.static_pad("src")) {
            out.add_probe(gst::PadProbeType::DATA_DOWNSTREAM, |_, info| {
                crate::media::probes::consume(info)
            });
        }
        if let Some(vmix) = &self.vmix {
            vmix.release_request_pad(&p.pad);
        }
        for e in p.elements {
            let _ = e.set_state(gst::State::Null);
            let _ = self.bin.remove(&e);
        }
    }

    /// The pad that shows a tile: its video, or its placeholder.
    fn tile_pad(&self, tile: &TileState) -> Option<gst::Pad> {
        self.inputs
            .iter()
            .find(|i| i.session == tile.session && i.kind == Kind::Video)
            .map(|i| i.pad.clone())
            .or_else(|| tile.placeholder.as_ref().map(|p| p.pad.clone()))
    }

    /// Places every shown tile, in join order.
    fn relayout(&mut self, now_ms: u64) {
        if self.vmix.is_none() {
            return;
        }
        let shown: Vec<usize> = (0..self.tiles.len())
            .filter(|&i| self.tile_pad(&self.tiles[i]).is_some())
            .collect();
        let tiles: Vec<Tile> = shown
            .iter()
            .map(|&i| Tile {
                aspect: if self.tiles[i].placeholder.is_some() {
                    PLACEHOLDER_SIZE.0 as f64 / PLACEHOLDER_SIZE.1 as f64
                } else {
                    self.tiles[i].aspect
                },
            })
            .collect();
        let speaker = self
            .speaker
            .speaker()
            .and_then(|s| shown.iter().position(|&i| &self.tiles[i].session == s));
        let canvas = self.template.canvas;
        let rects = layout::place(canvas.layout, canvas.width, canvas.height, &tiles, speaker);
        // The frame of this moment, not the one the compositor happens to be composing.
        let at = self.bin.current_running_time();
        for (k, &i) in shown.iter().enumerate() {
            if let Some(pad) = self.tile_pad(&self.tiles[i]) {
                let placement = Placement {
                    rect: rects[k],
                    zorder: 1,
                    alpha: 1.0,
                };
                self.timed_layout.place(&pad, at, placement);
            }
            self.tiles[i].on_screen_since.get_or_insert(now_ms);
        }
    }

    fn close_on_screen(&mut self, tile: &mut TileState, now_ms: u64) {
        if let Some(from) = tile.on_screen_since.take() {
            self.entry.on_screen.push(OnScreen {
                participant: tile.peer_id.clone(),
                from_ms: from,
                to_ms: now_ms,
            });
        }
    }

    /// Ends the mix: the background (and any placeholder) sources send EOS, so the mixers and
    /// then the muxers finish once every participant has been detached.
    pub fn send_eos(&mut self, now_ms: u64) {
        if self.eos_sent {
            return;
        }
        self.eos_sent = true;
        let mut tiles = std::mem::take(&mut self.tiles);
        for tile in &mut tiles {
            self.close_on_screen(tile, now_ms);
            if let Some(p) = &tile.placeholder {
                p.elements[0].send_event(gst::event::Eos::new());
            }
        }
        self.tiles = tiles;
        for src in &self.sources {
            src.send_event(gst::event::Eos::new());
        }
    }

    /// True once every sink of the mix has seen EOS.
    pub fn finished(&self) -> bool {
        crate::media::sinks::all_sinks_eos(&self.bin)
    }
}

/// Adds `src ! capsfilter` to the mix bin and links it to a new pad of `mixer`.
fn add_source(
    bin: &gst::Bin,
    src: &gst::Element,
    caps: gst::Caps,
    mixer: &gst::Element,
    kind: Kind,
) -> Result<gst::Pad, String> {
    let filter = gst::ElementFactory::make("capsfilter")
        .property("caps", caps)
        .build()
        .map_err(|e| e.to_string())?;
    bin.add_many([src, &filter]).map_err(|e| e.to_string())?;
    src.link(&filter).map_err(|e| e.to_string())?;
    let pad = request(mixer, kind)?;
    filter
        .static_pad("src")
        .ok_or("capsfilter has no src pad")?
        .link(&pad)
        .map_err(|e| format!("cannot link the {} background: {e:?}", kind.as_str()))?;
    Ok(pad)
}

/// Requests a mixer pad for `kind`.
fn request(mixer: &gst::Element, kind: Kind) -> Result<gst::Pad, String> {
    let pad = crate::media::pads::input_pad(mixer, kind)
        .ok_or_else(|| format!("{} gave no pad", mixer.name()))?;
    if kind == Kind::Video {
        super::lag::keep_qos_in(&pad);
    }
    Ok(pad)
}

/// Keeps a new compositor pad invisible until the layout places it.
fn hide(pad: &gst::Pad) {
    Placement {
        rect: layout::Rect {
            x: 0,
            y: 0,
            w: 2,
            h: 2,
        },
        zorder: 1,
        alpha: 0.0,
    }
    .apply(pad);
}

/// Removes a mix input's ghost pad, releases its mixer pad and removes its queue. The pad
/// goes first, so the queue's thread is no longer blocked on the mixer when it stops.
fn release_mixer_input(
    bin: &gst::Bin,
    ghost: &gst::GhostPad,
    queue: &gst::Element,
    pad: &gst::Pad,
) {
    let _ = ghost.set_target(None::<&gst::Pad>);
    let _ = bin.remove_pad(ghost);
    if let Some(mixer) = pad.parent_element() {
        mixer.release_request_pad(pad);
    }
    let _ = queue.set_state(gst::State::Null);
    let _ = bin.remove(queue);
}
