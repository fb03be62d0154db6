//! Starts and ends a participant's audio in a live mix without a click, and without losing
//! their last words.
//!
//! A participant's first buffer in a mix rarely starts at a zero crossing (their media was
//! flowing before the mix took them in), so it is faded in. A joining participant's first
//! buffers can also reach the mixer after it has played their time (the join costs CPU, and the
//! jitterbuffer starts late): the mixer would drop them and cut into the next one mid-wave, so
//! until the fade-in is out, buffers the mixer would find late are dropped here instead.
//!
//! The mixer runs a fixed latency behind its inputs, so when someone leaves it still holds
//! their last few hundred milliseconds. Releasing its pad at once would drop that audio and
//! cut the sum mid-wave (a click). Instead the feed holds back one buffer; on leave that
//! buffer is faded out, pushed, followed by EOS, and the pad is released once the mixer has
//! played everything it had.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_base::prelude::*;

/// Longest wait for the mixer to play out a leaving participant's audio.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How far ahead of the mixer's output a joining participant's first buffer must be: it is
/// held back for one buffer (20 ms of Opus) and queued before the mixer takes it.
const JOIN_MARGIN: gst::ClockTime = gst::ClockTime::from_mseconds(50);

/// The last buffer of a feed, held back so it can be faded out on leave.
#[derive(Debug, Default)]
struct Tail {
    held: Option<gst::Buffer>,
    closed: bool,
    /// A buffer has been passed on (and the first one faded in).
    started: bool,
}

/// A handle on a feed's held-back buffer.
#[derive(Clone, Debug, Default)]
pub struct FadeTail(Arc<Mutex<Tail>>);

impl FadeTail {
    /// Holds back one buffer on `feed` (add before [`crate::media::probes::isolate`], which then
    /// passes on the previous buffer in its place). `mixer_src` is the mixer's source pad:
    /// its position says which of a joining participant's buffers would come too late.
    pub fn install(feed: &gst::Pad, mixer_src: gst::Pad) -> Self {
        let tail = Self::default();
        let inner = tail.0.clone();
        feed.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = info.data.take() else {
                return gst::PadProbeReturn::Ok;
            };
            let Ok(mut tail) = inner.lock() else {
                info.data = Some(gst::PadProbeData::Buffer(buffer));
                return gst::PadProbeReturn::Ok;
            };
            if tail.closed
                || (!tail.started && tail.held.is_none() && too_late(pad, &buffer, &mixer_src))
            {
                drop(tail);
                drop(buffer);
                info.flow_res = Ok(gst::FlowSuccess::Ok);
                return gst::PadProbeReturn::Handled;
            }
            match tail.held.replace(buffer) {
                Some(mut previous) => {
                    if !tail.started {
                        tail.started = true;
                        if let Some(caps) = pad.current_caps() {
                            fade(previous.make_mut(), &caps, Ramp::In);
                        }
                    }
                    info.data = Some(gst::PadProbeData::Buffer(previous));
                    gst::PadProbeReturn::Ok
                }
                None => {
                    info.flow_res = Ok(gst::FlowSuccess::Ok);
                    gst::PadProbeReturn::Handled
                }
            }
        });
        tail
    }

    /// Stops holding (call after the feed is unlinked) and returns the last buffer.
    fn close(&self) -> Option<gst::Buffer> {
        let mut tail = self.0.lock().ok()?;
        tail.closed = true;
        tail.held.take()
    }

    /// Plays out and releases a leaving participant's mixer pad, off the caller's thread:
    /// the held buffer faded out, EOS, then the release once the mixer has drained the pad
    /// (bounded by [`DRAIN_TIMEOUT`]). `release` runs last, whatever happened.
    pub fn finish(
        self,
        ghost: gst::GhostPad,
        mixer_pad: gst::Pad,
        caps: Option<gst::Caps>,
        release: impl FnOnce() + Send + 'static,
    ) {
        let held = self.close();
        std::thread::spawn(move || {
            if let Some(mut buffer) = held {
                if let Some(caps) = &caps {
                    fade(buffer.make_mut(), caps, Ramp::Out);
                }
                let _ = ghost.chain(buffer);
            }
            ghost.send_event(gst::event::Eos::new());
            let deadline = Instant::now() + DRAIN_TIMEOUT;
            let drained = || {
                mixer_pad
                    .downcast_ref::<gst_base::AggregatorPad>()
                    .is_none_or(|p| p.is_eos())
            };
            while !drained() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            release();
        });
    }
}

/// The mixer has played, or is about to play, the time of `buffer`: it would drop all or
/// part of it.
fn too_late(feed: &gst::Pad, buffer: &gst::BufferRef, mixer_src: &gst::Pad) -> bool {
    let Some(rt) = crate::media::probes::running_time(feed, buffer) else {
        return false;
    };
    mixer_src
        .query_position::<gst::ClockTime>()
        .is_some_and(|played| rt < played + JOIN_MARGIN)
}

/// Which way a fade goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ramp {
    /// From silence to full level.
    In,
    /// From full level to silence.
    Out,
}

/// Fades a raw interleaved S16 or F32 buffer linearly, in or out.
fn fade(buffer: &mut gst::BufferRef, caps: &gst::Caps, ramp: Ramp) {
    let Some(s) = caps.structure(0) else {
        return;
    };
    let channels = s.get::<i32>("channels").unwrap_or(1).max(1) as usize;
    let format = s.get::<&str>("format").unwrap_or("");
    let Ok(mut map) = buffer.map_writable() else {
        return;
    };
    match format {
        "S16LE" => fade_samples::<2>(&mut map, channels, ramp, |b, g| {
            let v = i16::from_le_bytes(*b) as f32 * g;
            *b = (v.round() as i16).to_le_bytes();
        }),
        "F32LE" => fade_samples::<4>(&mut map, channels, ramp, |b, g| {
            *b = (f32::from_le_bytes(*b) * g).to_le_bytes();
        }),
        _ => {}
    }
}

/// Applies a gain going from 1 to 0 (or 0 to 1) over the frames of `data` (`N` bytes per
/// sample).
fn fade_samples<const N: usize>(
    data: &mut [u8],
    channels: usize,
    ramp: Ramp,
    apply: impl Fn(&mut [u8; N], f32),
) {
    let frame_len = N * channels;
    let frames = data.len() / frame_len;
    for (i, frame) in data.chunks_exact_mut(frame_len).enumerate() {
        let out = 1.0 - (i + 1) as f32 / frames.max(1) as f32;
        let gain = match ramp {
            Ramp::Out => out,
            Ramp::In => 1.0 - out,
        };
        for sample in frame.chunks_exact_mut(N) {
            if let Ok(sample) = <&mut [u8; N]>::try_from(sample) {
                apply(sample, gain);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fades_s16_to_silence() {
        gst::init().unwrap();
        let samples: Vec<u8> = std::iter::repeat_n(1000i16.to_le_bytes(), 8)
            .flatten()
            .collect();
        let mut buffer = gst::Buffer::from_mut_slice(samples);
        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("channels", 2)
            .build();
        fade(buffer.make_mut(), &caps, Ramp::Out);
        let map = buffer.map_readable().unwrap();
        let out: Vec<i16> = map
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(out, vec![750, 750, 500, 500, 250, 250, 0, 0]);
    }

    #[test]
    fn fades_f32_in_from_silence() {
        gst::init().unwrap();
        let samples: Vec<u8> = std::iter::repeat_n(0.8f32.to_le_bytes(), 4)
            .flatten()
            .collect();
        let mut buffer = gst::Buffer::from_mut_slice(samples);
        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", "F32LE")
            .field("channels", 1)
            .build();
        fade(buffer.make_mut(), &caps, Ramp::In);
        let map = buffer.map_readable().unwrap();
        let out: Vec<f32> = map
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        // Rises to full level at the last frame, so the next buffer carries on without a step.
        for (got, want) in out.iter().zip([0.2, 0.4, 0.6, 0.8]) {
            assert!((got - want).abs() < 1e-6, "{out:?}");
        }
    }
}
