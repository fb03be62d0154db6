//! One template instance in a call: a bin built from a template, fed by one or more tracks.
//!
//! An output does not start writing until it knows where its timeline begins. Each input is
//! held by a blocking probe at its first usable buffer (a keyframe, for video); once every
//! input has one, or the track wait has passed, the output starts: inputs that never came are
//! released, every input is offset so the file starts at zero with its tracks still aligned,
//! and the probes are removed. That is what lets a participant's second track start seconds
//! after the first without stalling or losing either.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gst::prelude::*;

use super::{CallEvent, EventSender};
use crate::templates::{Kind, Scope, Template};

/// Per-input counters, updated by a pad probe.
#[derive(Debug, Default)]
pub struct InputStats {
    /// Running time of the last buffer's end, in ns (0: none yet).
    pub last_end_ns: AtomicU64,
    /// Buffers seen.
    pub buffers: AtomicU64,
    /// PTS of the last buffer, in ns (0: none yet).
    pub last_pts_ns: AtomicU64,
    /// Non-zero once a buffer reached the template's input element with a timeline (a time
    /// segment): what its muxer can write. A track none of whose buffers got there is not in
    /// the file, whatever arrived upstream.
    pub reached: AtomicU64,
}

impl InputStats {
    /// True once any of the track's data reached the template's input element.
    pub fn reached_output(&self) -> bool {
        self.reached.load(Ordering::Relaxed) > 0
    }
}

/// Notes on `stats` the first buffer that reaches `target`, a template's input pad, with a
/// time segment in place (a muxer drops buffers that come without one). The probe goes once
/// it has seen one, so it costs nothing per packet after that.
fn count_reached(target: &gst::Pad, stats: &Arc<InputStats>) {
    let stats = Arc::downgrade(stats);
    target.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |pad, _| {
            let Some(stats) = stats.upgrade() else {
                return gst::PadProbeReturn::Remove;
            };
            let timed = pad
                .sticky_event::<gst::event::Segment>(0)
                .is_some_and(|s| s.segment().format() == gst::Format::Time);
            if timed {
                stats.reached.fetch_add(1, Ordering::Relaxed);
                return gst::PadProbeReturn::Remove;
            }
            gst::PadProbeReturn::Ok
        },
    );
}

/// A sender may change resolution or frame rate mid-call (a simulcast layer switch, a window
/// resize). VP8, VP9, AV1 and H.264/H.265 with in-band parameter sets carry the new size in
/// the stream itself, but muxers such as Matroska refuse new caps on a track and would stop
/// the file. So a video input keeps the caps it started with, as long as only the picture's
/// size or rate changes; a real format change still reaches the muxer. The new caps event is
/// replaced by one with the first caps rather than dropped: a dropped sticky event would be
/// offered again before every buffer.
fn keep_first_video_caps(pad: &gst::Pad) {
    let first: std::sync::Mutex<Option<gst::Caps>> = std::sync::Mutex::new(None);
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        let Some(gst::PadProbeData::Event(event)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let gst::EventView::Caps(caps) = event.view() else {
            return gst::PadProbeReturn::Ok;
        };
        let new = caps.caps_owned();
        let Ok(mut first) = first.lock() else {
            return gst::PadProbeReturn::Ok;
        };
        match first.as_ref() {
            Some(old) if same_stream_apart_from_size(old, &new) => {
                if *old != new {
                    let seqnum = event.seqnum();
                    let kept = gst::event::Caps::builder(old).seqnum(seqnum).build();
                    info.data = Some(gst::PadProbeData::Event(kept));
                }
                gst::PadProbeReturn::Ok
            }
            _ => {
                *first = Some(new);
                gst::PadProbeReturn::Ok
            }
        }
    });
}

/// True if two encoded-video caps differ only in fields a stream carries in-band.
fn same_stream_apart_from_size(old: &gst::CapsRef, new: &gst::CapsRef) -> bool {
    const IN_BAND: &[&str] = &[
        "width",
        "height",
        "framerate",
        "pixel-aspect-ratio",
        "codec_data",
        "level",
        "profile",
        "chroma-format",
        "bit-depth-luma",
        "bit-depth-chroma",
        "colorimetry",
        "chroma-site",
        "multiview-mode",
        "multiview-flags",
        "interlace-mode",
        "streamheader",
    ];
    let (Some(a), Some(b)) = (old.structure(0), new.structure(0)) else {
        return false;
    };
    if a.name() != b.name() || !a.name().starts_with("video/") {
        return false;
    }
    let strip = |s: &gst::StructureRef| {
        let mut s = s.to_owned();
        s.remove_fields(IN_BAND.iter().copied());
        s
    };
    strip(a) == strip(b)
}

/// Smallest step between two frames of a track. Matroska keeps timestamps rounded to the
/// millisecond, so frames less than 2 ms apart can round to the same value.
const MIN_FRAME_STEP_NS: u64 = 2_000_000;

/// Keeps a track's timestamps increasing. rtpbin's lip-sync moves a stream's timestamps back
/// when the first RTCP sender report arrives, and the packets a sender queued while DTLS was
/// being set up arrive in one burst with nearly equal times; either would put frames with
/// equal or decreasing times in the file.
/// Streams with reordered frames (a DTS that differs from the PTS) are left alone.
fn keep_monotonic(buffer: &mut gst::Buffer, last_pts_ns: &AtomicU64) {
    let Some(pts) = buffer.pts() else {
        return;
    };
    if buffer.dts().is_some_and(|dts| dts != pts) {
        return;
    }
    let last = last_pts_ns.load(Ordering::Relaxed);
    let mut pts = pts.nseconds();
    if last != 0 && pts < last + MIN_FRAME_STEP_NS {
        pts = last + MIN_FRAME_STEP_NS;
        let fixed = gst::ClockTime::from_nseconds(pts);
        let buffer = buffer.make_mut();
        buffer.set_pts(fixed);
        if buffer.dts().is_some() {
            buffer.set_dts(fixed);
        }
    }
    last_pts_ns.store(pts, Ordering::Relaxed);
}

/// One track feeding an output.
#[derive(Debug)]
pub struct Input {
    /// The track's m-line.
    pub mline: u32,
    /// Audio or video.
    pub kind: Kind,
    /// The bin's ghost sink pad for it.
    pub ghost: gst::GhostPad,
    /// The pad requested from the template's input element.
    pub target: gst::Pad,
    /// The tee pad feeding it, once the track is there.
    pub tee_pad: Option<gst::Pad>,
    /// The tee it came from.
    pub tee: Option<gst::Element>,
    /// The blocking probe holding it until the output starts.
    pub block: Option<gst::PadProbeId>,
    /// Running time of its first usable buffer.
    pub first: Option<gst::ClockTime>,
    /// Released: the track never came, or came in a codec the template does not take.
    pub released: bool,
    /// Index of its entry in the manifest's tracks.
    pub manifest_track: Option<usize>,
    /// Counters.
    pub stats: Arc<InputStats>,
}

/// A running template instance.
#[derive(Debug)]
pub struct Output {
    /// Unique in the call.
    pub id: usize,
    /// The template it runs.
    pub template: Template,
    /// The bin in the call's pipeline.
    pub bin: gst::Bin,
    /// Its inputs.
    pub inputs: Vec<Input>,
    /// Writing (probes removed).
    pub started: bool,
    /// When its first input had its first buffer.
    pub first_input_at: Option<Instant>,
    /// Files it writes, relative to the call directory.
    pub files: Vec<String>,
    /// EOS was sent into it.
    pub eos_sent: bool,
    /// The running time its file starts at.
    pub base: Option<gst::ClockTime>,
    /// Every sink saw EOS before the bin was stopped.
    pub completed: bool,
}

impl Output {
    /// Adds a template bin to the pipeline, with a ghost sink pad per expected track.
    /// `tracks` are `(mline, kind)`; the bin's sinks report EOS through `events`.
    pub fn create(
        id: usize,
        template: &Template,
        bin: gst::Bin,
        pipeline: &gst::Pipeline,
        tracks: &[(u32, Kind)],
        call_dir: &Path,
    ) -> Result<Self, String> {
        let mut inputs = vec![];
        for &(mline, kind) in tracks {
            let element_name = template.input_for(kind).ok_or_else(|| {
                format!("template {} has no {} input", template.name, kind.as_str())
            })?;
            let element = bin.by_name(element_name).ok_or_else(|| {
                format!(
                    "template {}: input element `{element_name}` not found",
                    template.name
                )
            })?;
            let target = crate::media::pads::input_pad(&element, kind).ok_or_else(|| {
                format!(
                    "template {}: `{element_name}` has no free pad for {}",
                    template.name,
                    kind.as_str()
                )
            })?;
            let ghost = gst::GhostPad::builder_with_target(&target)
                .map_err(|e| e.to_string())?
                .name(format!("in_{mline}"))
                .build();
            bin.add_pad(&ghost).map_err(|e| e.to_string())?;
            let stats = Arc::default();
            count_reached(&target, &stats);
            inputs.push(Input {
                mline,
                kind,
                ghost,
                target,
                tee_pad: None,
                tee: None,
                block: None,
                first: None,
                released: false,
                manifest_track: None,
                stats,
            });
        }
        let files = crate::media::sinks::sink_files(&bin, call_dir);
        pipeline.add(&bin).map_err(|e| e.to_string())?;
        bin.sync_state_with_parent().map_err(|e| e.to_string())?;
        Ok(Output {
            id,
            template: template.clone(),
            bin,
            inputs,
            started: false,
            first_input_at: None,
            files,
            eos_sent: false,
            base: None,
            completed: false,
        })
    }

    /// The template's scope.
    pub fn scope(&self) -> Scope {
        self.template.scope
    }

    /// Links a track's tee to the input for `mline`, held by a probe until the output starts.
    pub fn attach(
        &mut self,
        mline: u32,
        tee: &gst::Element,
        session: &str,
        events: &EventSender,
    ) -> Result<(), String> {
        let id = self.id;
        let input = self
            .inputs
            .iter_mut()
            .find(|i| i.mline == mline && !i.released)
            .ok_or_else(|| format!("no input for m-line {mline}"))?;
        // The track may already be flowing: see request_tee_pad.
        let tee_pad = crate::media::pads::request_tee_pad(tee).ok_or("tee gave no src pad")?;
        let is_video = input.kind == Kind::Video;
        let synced = AtomicBool::new(false);
        let seen = Arc::new(AtomicBool::new(false));
        let events = events.clone();
        let session = session.to_owned();
        let probe = tee_pad.add_probe(
            gst::PadProbeType::BLOCK | gst::PadProbeType::BUFFER,
            move |pad, info| {
                // The first buffer's running time comes from the pad's segment, so the pad
                // must have it before this probe reads it (request_tee_pad's own probe runs
                // only after this one has let the buffer go).
                if !synced.swap(true, Ordering::SeqCst) {
                    crate::media::pads::copy_missing_sticky_events(pad);
                }
                let Some(buffer) = info.buffer() else {
                    return gst::PadProbeReturn::Pass;
                };
                // Files must start decodable: drop video until a keyframe.
                if is_video && buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                    return crate::media::probes::consume(info);
                }
                if !seen.swap(true, Ordering::SeqCst) {
                    let running = crate::media::probes::running_time(pad, buffer)
                        .unwrap_or(gst::ClockTime::ZERO);
                    events.send(CallEvent::FirstBuffer {
                        session: session.clone(),
                        output: id,
                        mline,
                        running,
                    });
                }
                gst::PadProbeReturn::Ok
            },
        );
        if is_video {
            keep_first_video_caps(&tee_pad);
        }
        tee_pad
            .link(&input.ghost)
            .map_err(|e| format!("cannot link track to {}: {e:?}", self.template.name))?;
        input.block = probe;
        input.tee_pad = Some(tee_pad);
        input.tee = Some(tee.clone());
        Ok(())
    }

    /// True when every input still expected has its first buffer.
    pub fn ready(&self) -> bool {
        self.inputs
            .iter()
            .filter(|i| !i.released)
            .all(|i| i.first.is_some())
            && self.inputs.iter().any(|i| i.first.is_some())
    }

    /// Starts writing: releases inputs that have no data, aligns the rest to the earliest
    /// first buffer, and lets data through. Returns the m-lines released.
    pub fn start(&mut self) -> Vec<u32> {
        if self.started {
            return vec![];
        }
        self.started = true;
        let base = self.inputs.iter().filter_map(|i| i.first).min();
        self.base = base;
        let mut released = vec![];
        for input in &mut self.inputs {
            if input.released {
                continue;
            }
            if input.first.is_none() {
                release_input(&self.bin, input);
                released.push(input.mline);
                continue;
            }
            let Some(tee_pad) = &input.tee_pad else {
                continue;
            };
            if let Some(base) = base {
                tee_pad.set_offset(-(base.nseconds() as i64));
            }
            let stats = input.stats.clone();
            let offset = base.map(|b| b.nseconds()).unwrap_or(0);
            tee_pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let Some(buffer) = info.buffer_mut() {
                    keep_monotonic(buffer, &stats.last_pts_ns);
                    if let Some(rt) = crate::media::probes::running_time(pad, buffer) {
                        let end = rt.nseconds() + buffer.duration().map_or(0, |d| d.nseconds());
                        stats
                            .last_end_ns
                            .store(end.saturating_sub(offset), Ordering::Relaxed);
                        stats.buffers.fetch_add(1, Ordering::Relaxed);
                    }
                }
                gst::PadProbeReturn::Ok
            });
            crate::media::probes::isolate(tee_pad);
            if let Some(probe) = input.block.take() {
                tee_pad.remove_probe(probe);
            }
        }
        released
    }

    /// Stops expecting the track on `mline` (it came in a codec this template does not take).
    pub fn release(&mut self, mline: u32) {
        if let Some(input) = self.inputs.iter_mut().find(|i| i.mline == mline) {
            if !input.released {
                release_input(&self.bin, input);
            }
        }
    }

    /// True if any input ever carried data.
    pub fn has_data(&self) -> bool {
        self.inputs.iter().any(|i| i.first.is_some())
    }

    /// True if any input's data reached the template's input element, so its files hold
    /// more than headers.
    pub fn wrote_data(&self) -> bool {
        self.inputs.iter().any(|i| i.stats.reached_output())
    }

    /// True once every sink in the bin has seen EOS.
    pub fn finished(&self) -> bool {
        crate::media::sinks::all_sinks_eos(&self.bin)
    }

    /// The ghost pads that should get EOS.
    pub fn live_inputs(&self) -> Vec<gst::GhostPad> {
        self.inputs
            .iter()
            .filter(|i| !i.released)
            .map(|i| i.ghost.clone())
            .collect()
    }

    /// Unlinks its inputs from their tees and gives the tee pads back.
    pub fn detach(&mut self) {
        for input in &mut self.inputs {
            if let (Some(tee_pad), Some(tee)) = (input.tee_pad.take(), input.tee.take()) {
                let _ = tee_pad.unlink(&input.ghost);
                tee.release_request_pad(&tee_pad);
            }
        }
    }
}

fn release_input(bin: &gst::Bin, input: &mut Input) {
    input.released = true;
    if let (Some(tee_pad), Some(tee)) = (input.tee_pad.take(), input.tee.take()) {
        // Unlink before unblocking: a buffer held by the probe must go nowhere (the tee allows
        // unlinked pads), not into a muxer pad that is being released.
        let _ = tee_pad.unlink(&input.ghost);
        if let Some(probe) = input.block.take() {
            tee_pad.remove_probe(probe);
        }
        tee.release_request_pad(&tee_pad);
    }
    let _ = input.ghost.set_target(None::<&gst::Pad>);
    let _ = bin.remove_pad(&input.ghost);
    if let Some(element) = input.target.parent_element() {
        if input
            .target
            .pad_template()
            .is_some_and(|t| t.presence() == gst::PadPresence::Request)
        {
            element.release_request_pad(&input.target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(pts_ms: u64) -> gst::Buffer {
        let mut b = gst::Buffer::new();
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(pts_ms));
        b
    }

    #[test]
    fn timestamps_never_go_back_or_collide() {
        gst::init().unwrap();
        let last = AtomicU64::new(0);
        let mut out = vec![];
        for pts in [100, 133, 133, 120, 166, 166] {
            let mut b = buffer(pts);
            keep_monotonic(&mut b, &last);
            out.push(b.pts().unwrap().mseconds());
        }
        assert_eq!(out, vec![100, 133, 135, 137, 166, 168]);
    }

    #[test]
    fn size_changes_keep_the_track_but_format_changes_do_not() {
        gst::init().unwrap();
        let caps = |s: &str| s.parse::<gst::Caps>().unwrap();
        let small = caps("video/x-vp8, width=(int)640, height=(int)360, framerate=(fraction)30/1");
        let big = caps("video/x-vp8, width=(int)1280, height=(int)720, framerate=(fraction)15/1");
        assert!(same_stream_apart_from_size(&small, &big));
        let h264 = caps("video/x-h264, stream-format=(string)avc, alignment=(string)au, width=(int)640, height=(int)360");
        let h264_big = caps("video/x-h264, stream-format=(string)avc, alignment=(string)au, width=(int)1280, height=(int)720, level=(string)3.1");
        assert!(same_stream_apart_from_size(&h264, &h264_big));
        assert!(!same_stream_apart_from_size(&small, &h264));
        let bytestream = caps("video/x-h264, stream-format=(string)byte-stream, alignment=(string)au, width=(int)640, height=(int)360");
        assert!(!same_stream_apart_from_size(&h264, &bytestream));
        let opus = caps("audio/x-opus, channels=(int)2");
        assert!(!same_stream_apart_from_size(&opus, &opus));
    }

    /// What the soak's participant showed: their audio came to the muxer without a segment,
    /// and Matroska dropped every buffer of it. Such buffers must not count as recorded.
    #[test]
    fn only_buffers_with_a_timeline_count_as_reaching_the_muxer() {
        gst::init().unwrap();
        let bin = gst::parse::bin_from_description(
            "matroskamux name=mux ! fakesink sync=false async=false",
            false,
        )
        .unwrap();
        let mux = bin.by_name("mux").unwrap();
        let target = crate::media::pads::input_pad(&mux, Kind::Audio).unwrap();
        let stats = Arc::<InputStats>::default();
        count_reached(&target, &stats);
        bin.set_state(gst::State::Playing).unwrap();
        let src = gst::Pad::builder(gst::PadDirection::Src).build();
        src.set_active(true).unwrap();
        src.link(&target).unwrap();
        assert!(src.push_event(gst::event::StreamStart::new("audio")));
        let caps = gst::Caps::builder("audio/x-opus")
            .field("rate", 48000i32)
            .field("channels", 2i32)
            .field("channel-mapping-family", 0i32)
            .build();
        assert!(src.push_event(gst::event::Caps::new(&caps)));
        let _ = src.push(buffer(0));
        assert!(!stats.reached_output());
        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
        assert!(src.push_event(gst::event::Segment::new(&segment)));
        let _ = src.push(buffer(20));
        assert!(stats.reached_output());
        bin.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn reordered_streams_are_left_alone() {
        gst::init().unwrap();
        let last = AtomicU64::new(gst::ClockTime::from_mseconds(200).nseconds());
        let mut b = buffer(100);
        b.get_mut()
            .unwrap()
            .set_dts(gst::ClockTime::from_mseconds(90));
        keep_monotonic(&mut b, &last);
        assert_eq!(b.pts().unwrap().mseconds(), 100);
    }
}
