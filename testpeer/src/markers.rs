//! A/V sync markers (`--marker-interval`): white flashes painted on the raw video and 1 kHz
//! beeps written into the raw audio, both placed from buffer timestamps so that they start at
//! the same PTS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use gst_video::prelude::VideoFrameExt;
use tracing::warn;

/// A/V sync markers (`--marker-interval`), computed from buffer timestamps.
///
/// Marker `k` (`k >= 1`) starts at the PTS of the first video frame at or after `k *
/// interval` and lasts `flash_frames` frames; the beep covers exactly the same span of the
/// media timeline. Live sources start their timestamps at the running time they started
/// at, so the video frame grid is anchored at the first video PTS, which the video probe
/// records for the audio probe.
#[derive(Clone, Debug)]
pub struct Markers {
    interval_ns: u128,
    fps: u128,
    flash_frames: u128,
    /// PTS of the first video frame in ns ([`Markers::UNSET`] until it is seen).
    origin: Arc<AtomicU64>,
}

impl Markers {
    /// Flash/beep length in seconds (about 100 ms).
    const LENGTH_SECS: f64 = 0.1;
    /// Beep frequency in Hz.
    const BEEP_HZ: f64 = 1000.0;
    /// Beep amplitude (full scale is 1.0).
    const BEEP_AMPLITUDE: f64 = 0.8;
    const NS: u128 = 1_000_000_000;
    const UNSET: u64 = u64::MAX;

    /// Markers every `interval`; without video (`fps` is `None`) the grid is the PTS itself.
    pub fn new(interval: Duration, fps: Option<u32>) -> Self {
        let rate = fps.unwrap_or(30);
        let flash_frames = (Self::LENGTH_SECS * f64::from(rate)).round().max(1.0) as u128;
        let origin = if fps.is_some() { Self::UNSET } else { 0 };
        Self {
            interval_ns: interval.as_nanos().max(1),
            fps: u128::from(rate),
            flash_frames,
            origin: Arc::new(AtomicU64::new(origin)),
        }
    }

    /// PTS (ns) of the video frame grid's frame 0, once known.
    fn origin(&self) -> Option<u128> {
        match self.origin.load(Ordering::Acquire) {
            Self::UNSET => None,
            origin => Some(u128::from(origin)),
        }
    }

    /// PTS (ns) of video frame `n` (videotestsrc rounds down the same way).
    fn frame_time(&self, origin: u128, n: u128) -> u128 {
        origin + n * Self::NS / self.fps
    }

    /// The marker windows `[start, end)` (ns of PTS) that overlap `[from, to)`.
    fn windows(&self, from: u128, to: u128) -> Vec<(u128, u128)> {
        let Some(origin) = self.origin() else {
            return Vec::new();
        };
        // A window starts less than one frame after its multiple of the interval.
        let span = (1 + self.flash_frames) * Self::NS / self.fps + 1;
        let mut found = Vec::new();
        let mut k = to / self.interval_ns;
        while k >= 1 && k * self.interval_ns + span > from {
            let due = (k * self.interval_ns).saturating_sub(origin);
            let n = (due * self.fps).div_ceil(Self::NS);
            let start = self.frame_time(origin, n);
            let end = self.frame_time(origin, n + self.flash_frames);
            if start < to && end > from {
                found.push((start, end));
            }
            k -= 1;
        }
        found
    }

    /// Whether the video frame with this PTS is part of a flash.
    fn is_flash(&self, pts: gst::ClockTime) -> bool {
        let pts = u128::from(pts.nseconds());
        let _ = self.origin.compare_exchange(
            Self::UNSET,
            pts as u64,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        let Some(origin) = self.origin() else {
            return false;
        };
        let Some(since) = pts.checked_sub(origin) else {
            return false;
        };
        // Snap to the frame grid (a size change may leave the PTS a nanosecond off it).
        let n = (since * self.fps + Self::NS / 2) / Self::NS;
        let t = self.frame_time(origin, n);
        !self.windows(t, t + 1).is_empty()
    }

    /// Whole-frame white flashes on raw I420 video (probe on the raw video pad).
    pub fn add_video_probe(self, pad: &gst::Pad) {
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            if !buffer.pts().is_some_and(|pts| self.is_flash(pts)) {
                return gst::PadProbeReturn::Ok;
            }
            let Some(video_info) = pad
                .current_caps()
                .and_then(|caps| gst_video::VideoInfo::from_caps(&caps).ok())
            else {
                return gst::PadProbeReturn::Ok;
            };
            let full_range =
                video_info.colorimetry().range() == gst_video::VideoColorRange::Range0_255;
            let white_y = if full_range { 255 } else { 235 };
            let buffer = buffer.make_mut();
            match gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &video_info) {
                Ok(mut frame) => {
                    for plane in 0..frame.n_planes() {
                        let value = if plane == 0 { white_y } else { 128 };
                        if let Ok(data) = frame.plane_data_mut(plane) {
                            data.fill(value);
                        }
                    }
                }
                Err(e) => warn!("cannot map a video frame for a marker flash: {e}"),
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// 1 kHz beeps on raw S16LE audio (probe on the raw audio pad).
    pub fn add_audio_probe(self, pad: &gst::Pad) {
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(pts) = buffer.pts() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some((rate, channels)) = pad.current_caps().and_then(|caps| {
                let s = caps.structure(0)?;
                let rate = u128::try_from(s.get::<i32>("rate").ok()?).ok()?;
                let channels = usize::try_from(s.get::<i32>("channels").ok()?).ok()?;
                (rate > 0 && channels > 0).then_some((rate, channels))
            }) else {
                return gst::PadProbeReturn::Ok;
            };
            let start = u128::from(pts.nseconds());
            let frames = buffer.size() / (2 * channels);
            let sample_time = |i: usize| start + (i as u128 * Self::NS + rate / 2) / rate;
            let windows = self.windows(start, sample_time(frames));
            if windows.is_empty() {
                return gst::PadProbeReturn::Ok;
            }
            let buffer = buffer.make_mut();
            let Ok(mut map) = buffer.map_writable() else {
                warn!("cannot map an audio buffer for a marker beep");
                return gst::PadProbeReturn::Ok;
            };
            for (i, frame) in map.chunks_exact_mut(2 * channels).enumerate() {
                let t = sample_time(i);
                let beep = windows.iter().find(|(s, e)| (*s..*e).contains(&t));
                let sample = match beep {
                    Some((s, _)) => {
                        let secs = (t - s) as f64 / Self::NS as f64;
                        let v = (2.0 * std::f64::consts::PI * Self::BEEP_HZ * secs).sin();
                        (v * Self::BEEP_AMPLITUDE * f64::from(i16::MAX)).round() as i16
                    }
                    None => 0,
                };
                for ch in frame.chunks_exact_mut(2) {
                    ch.copy_from_slice(&sample.to_le_bytes());
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> gst::ClockTime {
        gst::ClockTime::from_mseconds(ms)
    }

    #[test]
    fn flashes_last_three_frames_from_each_multiple_of_the_interval() {
        let markers = Markers::new(Duration::from_secs(1), Some(30));
        assert!(!markers.is_flash(at(0)), "the first frame sets the grid");
        assert!(!markers.is_flash(at(967)));
        assert!(markers.is_flash(at(1000)));
        assert!(markers.is_flash(at(1067)));
        assert!(!markers.is_flash(at(1100)));
        assert!(markers.is_flash(at(2000)));
        let ns = |ms: u128| ms * 1_000_000;
        assert_eq!(
            markers.windows(ns(1500), ns(2500)),
            vec![(ns(2000), ns(2100))]
        );
    }
}
