//! A recorded call as the input of a mix template, offline: which files hold whom, where each
//! sits on the call's timeline, and the gst-launch description that plays them all into the
//! template's mixers.
//!
//! The timeline is the live call pipeline's running time, which is also the live mix's: a
//! participant file's time zero is the first buffer of its earliest track
//! (`start_offset_ms` in the manifest). Each file is demuxed, decoded, and shifted to its
//! place with `identity ts-offset`, so participants appear only while they were there. A
//! background source and silence span the whole call, as in the live mix, so the output
//! starts at the call's start and lasts until its last media.

pub mod launch;
pub mod post;
pub mod remix;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::call::mix;
use crate::mix::layout::{self, Rect, Tile};
use crate::mix::speaker::SpeakerPicker;
use crate::names;
use crate::recording::{Manifest, MANIFEST_FILE};
use crate::templates::launch_text::{LaunchText, Span};
use crate::templates::{Kind, Template, TemplateError};

/// Why a recorded call cannot be used offline.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The manifest is missing or unreadable.
    #[error("cannot read {path}: {source} (is this a callrec call directory?)")]
    Manifest {
        /// The manifest's path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("{path} is not a callrec manifest: {message}")]
    BadManifest {
        /// The manifest's path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file named in the manifest cannot be used.
    #[error("{file}: {message}")]
    File {
        /// The file, as the manifest names it.
        file: String,
        /// What went wrong.
        message: String,
    },
    /// Nothing to mix.
    #[error("{}: no recorded participant files to mix{}", dir.display(), skipped.iter().map(|s| format!("; skipped {s}")).collect::<String>())]
    Empty {
        /// The call directory.
        dir: PathBuf,
        /// Files the manifest lists that could not be used, and why.
        skipped: Vec<String>,
    },
    /// The template is not a mix template.
    #[error("template {template} has scope {scope}; remixing needs a `call` (mix) template")]
    NotAMix {
        /// The template.
        template: String,
        /// Its scope.
        scope: String,
    },
    /// The template's text cannot be rendered.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The call directory's path cannot go into pipeline text.
    #[error(
        "the call directory path {0} has characters that cannot go into pipeline text; use a path of letters, digits, '-', '.', '_', '+' and '/'"
    )]
    UnsafePath(String),
}

/// A placeholder tile's size, as the live mix makes it.
const PLACEHOLDER_SIZE: (u32, u32) = (
    mix::PLACEHOLDER_SIZE.0 as u32,
    mix::PLACEHOLDER_SIZE.1 as u32,
);

/// One recorded file of a participant.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The participant's peer id.
    pub participant: String,
    /// The file's name inside the call directory.
    pub file: String,
    /// Where the file's time zero sits on the call's timeline.
    pub offset: Duration,
    /// How long the file plays.
    pub duration: Duration,
    /// Video size, if the file has video.
    pub video: Option<(u32, u32)>,
    /// Whether the file has audio.
    pub audio: bool,
    /// The file's container demuxer.
    pub demuxer: &'static str,
    /// Whether callrec finished writing it (an interrupted call's files have no index or
    /// duration in their header).
    pub finalised: bool,
}

impl InputFile {
    /// When this file's media ends on the call's timeline.
    pub fn end(&self) -> Duration {
        self.offset + self.duration
    }
}

/// A recorded call, ready to be played into a mix.
#[derive(Debug, Clone)]
pub struct CallInputs {
    /// The call directory (absolute).
    pub dir: PathBuf,
    /// The manifest as read.
    pub manifest: Manifest,
    /// Its files in the order they started.
    pub files: Vec<InputFile>,
    /// Files the manifest lists that cannot be used, and why.
    pub skipped: Vec<String>,
}

/// Where a video input is on screen between two instants of the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// From (call timeline).
    pub from: Duration,
    /// Where each video file (index into [`CallInputs::files`]) is, for those on screen.
    pub rects: Vec<(usize, Rect)>,
}

impl CallInputs {
    /// Reads a call directory's manifest and probes its recorded files.
    pub fn load(dir: &Path) -> Result<Self, OfflineError> {
        let dir = std::path::absolute(dir).map_err(|source| OfflineError::Manifest {
            path: dir.join(MANIFEST_FILE),
            source,
        })?;
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read(&path).map_err(|source| OfflineError::Manifest {
            path: path.clone(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| OfflineError::BadManifest {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let mut files: Vec<InputFile> = vec![];
        for track in &manifest.tracks {
            let (Some(file), Some(offset_ms)) = (&track.file, track.start_offset_ms) else {
                continue;
            };
            let offset = Duration::from_millis(offset_ms.max(0) as u64);
            let finalised = track.status == crate::recording::TrackStatus::Complete;
            if let Some(known) = files.iter_mut().find(|f| &f.file == file) {
                known.offset = known.offset.min(offset);
                known.finalised &= finalised;
                continue;
            }
            files.push(InputFile {
                finalised,
                participant: track.participant.clone(),
                file: file.clone(),
                offset,
                duration: Duration::ZERO,
                video: None,
                audio: false,
                demuxer: "",
            });
        }
        let mut skipped = vec![];
        files.retain_mut(|f| match probe_file(&dir, f) {
            Ok(true) => true,
            Ok(false) => {
                skipped.push(format!("{}: no media in it", f.file));
                false
            }
            Err(e) => {
                skipped.push(e.to_string());
                false
            }
        });
        if files.is_empty() {
            return Err(OfflineError::Empty { dir, skipped });
        }
        files.sort_by_key(|f| f.offset);
        Ok(CallInputs {
            dir,
            manifest,
            files,
            skipped,
        })
    }

    /// When the call's last media ends.
    pub fn duration(&self) -> Duration {
        self.files
            .iter()
            .map(InputFile::end)
            .max()
            .unwrap_or_default()
    }

    /// The layout over time for `template`'s canvas: who is where from each join or leave
    /// on, in join order (as the live mix places them). For the `speaker` layout the active
    /// speaker is picked from the files' audio levels as the live mix picks it, and the
    /// layout also changes when the speaker does.
    pub fn placements(&self, template: &Template) -> Vec<Placement> {
        let canvas = template.canvas;
        let speakers = if canvas.layout == crate::templates::LayoutKind::Speaker {
            self.speaker_changes()
        } else {
            vec![]
        };
        let mut instants: Vec<Duration> = self
            .files
            .iter()
            .flat_map(|f| [f.offset, f.end()])
            .chain(speakers.iter().map(|(t, _)| *t))
            .collect();
        instants.sort();
        instants.dedup();
        instants
            .into_iter()
            .map(|from| {
                let shown: Vec<usize> = (0..self.files.len())
                    .filter(|&i| {
                        let f = &self.files[i];
                        f.offset <= from && from < f.end()
                    })
                    .collect();
                let tiles: Vec<Tile> = shown
                    .iter()
                    .map(|&i| {
                        let (w, h) = self.files[i].video.unwrap_or(PLACEHOLDER_SIZE);
                        Tile {
                            aspect: w as f64 / h.max(1) as f64,
                        }
                    })
                    .collect();
                let speaker = speakers
                    .iter()
                    .take_while(|(t, _)| *t <= from)
                    .last()
                    .and_then(|(_, who)| *who)
                    .and_then(|who| shown.iter().position(|&i| i == who));
                let rects =
                    layout::place(canvas.layout, canvas.width, canvas.height, &tiles, speaker);
                Placement {
                    from,
                    rects: shown.into_iter().zip(rects).collect(),
                }
            })
            .collect()
    }

    /// When the active speaker changes, and to which file (`None`: nobody), from every file's
    /// audio levels on the call's timeline.
    fn speaker_changes(&self) -> Vec<(Duration, Option<usize>)> {
        enum Event {
            Level(f64),
            Left,
        }
        let mut events: Vec<(Duration, usize, Event)> = vec![];
        for (n, f) in self.files.iter().enumerate() {
            if !f.audio {
                continue;
            }
            match audio_levels(&self.dir, f) {
                Ok(levels) => events.extend(
                    levels
                        .into_iter()
                        .map(|(t, db)| (f.offset + t, n, Event::Level(db))),
                ),
                Err(e) => {
                    tracing::warn!(file = %f.file, "no audio levels for the speaker layout: {e}")
                }
            }
            events.push((f.end(), n, Event::Left));
        }
        events.sort_by_key(|(t, n, _)| (*t, *n));
        let mut picker = SpeakerPicker::default();
        let mut changes = vec![];
        for (t, n, event) in events {
            let before = picker.speaker().copied();
            match event {
                Event::Level(db) => {
                    picker.level(&n, db, t);
                }
                Event::Left => picker.forget(&n),
            }
            let after = picker.speaker().copied();
            if after != before {
                changes.push((t, after));
            }
        }
        changes
    }
    /// A participant's safe name from the manifest (or made from the peer id): it may go
    /// into pipeline text and file names.
    pub fn participant_name(&self, file: &InputFile) -> String {
        self.manifest
            .participants
            .iter()
            .find(|p| p.id == file.participant)
            .map(|p| p.name.clone())
            .filter(|n| names::is_safe_component(n))
            .unwrap_or_else(|| names::safe_name(&file.participant))
    }

    /// A grey tile with the participant's name, for as long as their file plays.
    fn placeholder(&self, f: &InputFile, fps: u32) -> String {
        let frames = (f.duration.as_secs_f64() * fps as f64).ceil() as u64;
        let (w, h) = PLACEHOLDER_SIZE;
        let mut chain = format!(
            "videotestsrc pattern=solid-color foreground-color={:#010x} num-buffers={frames} \
             ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1",
            mix::PLACEHOLDER_COLOUR
        );
        if gst::ElementFactory::find("textoverlay").is_some() {
            // A safe name (letters, digits and `._+-`), so it needs no quoting.
            let _ = write!(
                chain,
                " ! textoverlay text={} valignment=center halignment=center",
                self.participant_name(f)
            );
        }
        chain
    }

    /// The complete gst-launch description that plays this call into `template` and writes
    /// its output into `out_dir` (`${call_dir}`) with `${template}` = `output_name`.
    ///
    /// With `static_layout`, each participant's compositor pad gets a fixed place in a grid of
    /// everyone who took part (gst-launch text cannot move pads over time); otherwise the
    /// caller sets the places (see [`CallInputs::placements`]). Compositor pads are named
    /// `sink_0` (the background) and `sink_<n+1>` for file `n`; audio mixer pads likewise.
    pub fn describe(
        &self,
        template: &Template,
        out_dir: &Path,
        output_name: &str,
        static_layout: bool,
    ) -> Result<String, OfflineError> {
        if template.scope != crate::templates::Scope::Call {
            return Err(OfflineError::NotAMix {
                template: template.name.clone(),
                scope: template.scope.to_string(),
            });
        }
        let dir = self.dir.to_string_lossy().into_owned();
        if !names::is_pipeline_safe_path(&dir) {
            return Err(OfflineError::UnsafePath(dir));
        }
        let out_dir = out_dir.to_string_lossy().into_owned();
        if !names::is_pipeline_safe_path(&out_dir) {
            return Err(OfflineError::UnsafePath(out_dir));
        }
        let mut vars = std::collections::BTreeMap::new();
        vars.insert("call_dir", out_dir);
        vars.insert("call", self.manifest.dir.clone());
        vars.insert("template", output_name.to_owned());
        let mut body = template.render_offline(&vars)?;
        let vmix = template.input_for(Kind::Video).map(str::to_owned);
        let amix = template.input_for(Kind::Audio).map(str::to_owned);
        let canvas = template.canvas;
        let total = self.duration();
        let mut text = String::new();
        if let Some(vmix) = &vmix {
            let frames = (total.as_secs_f64() * canvas.fps as f64).ceil() as u64 + 1;
            let _ = write!(
                text,
                "videotestsrc pattern=solid-color foreground-color={fg} num-buffers={frames} \
                 ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 ! {vmix}.sink_0 ",
                fg = 0xff00_0000u32 | canvas.background,
                w = canvas.width,
                h = canvas.height,
                fps = canvas.fps,
            );
        }
        if let Some(amix) = &amix {
            // 10 ms buffers of silence for the whole call.
            let buffers = total.as_millis() / 10 + 1;
            let _ = write!(
                text,
                "audiotestsrc wave=silence samplesperbuffer=480 num-buffers={buffers} \
                 ! audio/x-raw,rate=48000,channels=2 ! {amix}.sink_0 "
            );
        }
        let mut pad_props = String::new();
        let grid = if static_layout {
            let tiles: Vec<Tile> = self
                .files
                .iter()
                .map(|f| {
                    let (w, h) = f.video.unwrap_or(PLACEHOLDER_SIZE);
                    Tile {
                        aspect: w as f64 / h.max(1) as f64,
                    }
                })
                .collect();
            layout::place(canvas.layout, canvas.width, canvas.height, &tiles, None)
        } else {
            vec![]
        };
        let mut video_index = 0;
        for (n, f) in self.files.iter().enumerate() {
            let pad = n + 1;
            let location = format!("{dir}/{}", f.file);
            let demux = format!("callrec_in{n}");
            let _ = write!(
                text,
                "filesrc location={location} ! {} name={demux} ",
                f.demuxer
            );
            let offset_ms = f.offset.as_millis();
            if let Some(vmix) = &vmix {
                let shown = match f.video {
                    Some(_) => format!("{demux}.video_0 ! queue ! decodebin"),
                    // Heard but not seen: a placeholder tile with their name, as live.
                    None => self.placeholder(f, canvas.fps),
                };
                let _ = write!(
                    text,
                    "{} ! videoconvert ! {vmix}.sink_{pad} ",
                    delayed(&shown, &format!("callrec_v{n}"), offset_ms, Kind::Video)
                );
                if let Some(r) = grid.get(video_index) {
                    let _ = write!(
                        pad_props,
                        " sink_{pad}::xpos={} sink_{pad}::ypos={} sink_{pad}::width={} sink_{pad}::height={} sink_{pad}::zorder=1",
                        r.x, r.y, r.w, r.h
                    );
                }
                video_index += 1;
            }
            if let (Some(amix), true) = (&amix, f.audio) {
                let decoded = format!("{demux}.audio_0 ! queue ! decodebin");
                let _ = write!(
                    text,
                    "{} ! audioconvert ! audioresample ! {amix}.sink_{pad} ",
                    delayed(&decoded, &format!("callrec_a{n}"), offset_ms, Kind::Audio)
                );
            }
        }
        if let (Some(vmix), false) = (&vmix, pad_props.is_empty()) {
            body = insert_after_name(&body, vmix, &pad_props).ok_or_else(|| {
                OfflineError::Template(TemplateError::Syntax {
                    path: template.path.clone(),
                    line: template.body_line,
                    message: format!("no `name={vmix}` element to place participants on"),
                })
            })?;
        }
        text.push_str(&body);
        Ok(text)
    }
}

/// `decoded` (a chain ending in raw media) starting `offset_ms` into the call: `concat`
/// plays a gap of that length first (one black frame, or silence), which shifts the file's
/// timestamps and segment as a whole. (`identity ts-offset` only delays sync, and a shifted
/// buffer would fall outside the demuxer's segment.) Returns the chain's text up to its
/// output.
fn delayed(decoded: &str, name: &str, offset_ms: u128, kind: Kind) -> String {
    if offset_ms == 0 {
        return decoded.to_owned();
    }
    let gap = match kind {
        Kind::Video => format!(
            "videotestsrc pattern=black num-buffers=1 \
             ! video/x-raw,format=I420,width=16,height=16,framerate=1000/{offset_ms}"
        ),
        Kind::Audio => {
            // Buffers of up to 100 ms that add up to the offset exactly.
            let step = (1..=100u128.min(offset_ms))
                .rev()
                .find(|d| offset_ms.is_multiple_of(*d))
                .unwrap_or(1);
            format!(
                "audiotestsrc wave=silence samplesperbuffer={} num-buffers={} \
                 ! audio/x-raw,rate=48000,channels=2",
                step * 48,
                offset_ms / step
            )
        }
    };
    // The queue keeps the decoded stream's events in order behind its stream-start, which
    // concat holds until the gap has played; linked straight to concat, a decoder's caps
    // could reach concat's second pad early, under load, and fail the run at its start.
    format!("{gap} ! {name}.sink_0 {decoded} ! queue ! {name}.sink_1 concat name={name}")
}

/// Inserts `props` right after the `name=<element>` token of `body`; `None` if no element
/// has that name.
pub(crate) fn insert_after_name(body: &str, element: &str, props: &str) -> Option<String> {
    let lexed = LaunchText::lex(body);
    let at = lexed.named(element)?.span.end;
    Some(lexed.edit(vec![(Span { start: at, end: at }, props.to_owned())]))
}

/// Fills in a file's duration, streams and demuxer with GStreamer's Discoverer. Returns
/// whether it has anything to mix.
fn probe_file(dir: &Path, f: &mut InputFile) -> Result<bool, OfflineError> {
    let err = |message: String| OfflineError::File {
        file: f.file.clone(),
        message,
    };
    // The name comes from a manifest, which is only as trustworthy as the directory.
    if !names::is_safe_component(&f.file) {
        return Err(err("not a plain file name inside the call directory".into()));
    }
    let path = dir.join(&f.file);
    f.demuxer = match path.extension().and_then(|e| e.to_str()) {
        Some("mkv" | "mka" | "webm") => "matroskademux",
        Some("mp4" | "m4a" | "mov") => "qtdemux",
        _ => return Err(err("not a Matroska or MP4 file".into())),
    };
    let uri = gst::glib::filename_to_uri(&path, None)
        .map_err(|e| err(format!("cannot make a URI: {e}")))?;
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(30))
        .map_err(|e| err(format!("cannot start GStreamer's Discoverer: {e}")))?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|e| err(format!("cannot read it: {e}")))?;
    f.duration = if f.finalised {
        info.duration()
            .map(|d| Duration::from_nanos(d.nseconds()))
            .unwrap_or_default()
    } else {
        // The header of a file cut short has no duration; the Discoverer's estimate is
        // anything but. Read it through to its last frame instead (demuxing only).
        scan_duration(&path, f.demuxer).map_err(err)?
    };
    f.video = info
        .video_streams()
        .first()
        .map(|v| (v.width().max(1), v.height().max(1)));
    f.audio = !info.audio_streams().is_empty();
    Ok(f.duration > Duration::ZERO && (f.video.is_some() || f.audio))
}

/// A file's audio level (dBFS, loudest channel) every 100 ms, by file time: decodes its
/// first audio stream as fast as it can.
fn audio_levels(dir: &Path, f: &InputFile) -> Result<Vec<(Duration, f64)>, String> {
    const SCAN_TIMEOUT: Duration = Duration::from_secs(300);
    let path = dir.join(&f.file);
    let location = path.to_string_lossy();
    if !names::is_pipeline_safe_path(&location) {
        return Err(format!("{location}: not a path pipeline text can hold"));
    }
    let text = format!(
        "filesrc location={location} ! {} name=d d.audio_0 ! queue ! decodebin ! audioconvert \
         ! level interval=100000000 post-messages=true ! fakesink sync=false async=false",
        f.demuxer
    );
    let pipeline = gst::parse::launch(&text).map_err(|e| e.to_string())?;
    let mut levels = vec![];
    let error = play_through(&pipeline, SCAN_TIMEOUT, |msg| {
        let gst::MessageView::Element(e) = msg.view() else {
            return;
        };
        let Some(s) = e.structure().filter(|s| s.name() == "level") else {
            return;
        };
        if let (Ok(at), Some(db)) = (
            s.get::<gst::ClockTime>("timestamp"),
            crate::mix::loudest_rms_db(s),
        ) {
            levels.push((Duration::from_nanos(at.nseconds()), db));
        }
    })?;
    // A file cut short ends in an error where the data stops: keep what came.
    match error {
        Some(e) if levels.is_empty() => Err(e),
        _ => Ok(levels),
    }
}

/// Plays a pipeline until EOS, an error or `timeout`, handing every other message to
/// `on_message`, then sets it to NULL. Returns the error's text if it ended in one.
fn play_through(
    pipeline: &gst::Element,
    timeout: Duration,
    mut on_message: impl FnMut(&gst::Message),
) -> Result<Option<String>, String> {
    use gst::prelude::*;
    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    let started = pipeline.set_state(gst::State::Playing);
    let deadline = std::time::Instant::now() + timeout;
    let mut error = None;
    while started.is_ok() && std::time::Instant::now() < deadline {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                error = Some(e.error().to_string());
                break;
            }
            _ => on_message(&msg),
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    started.map_err(|e| e.to_string())?;
    Ok(error)
}

/// How long a file plays, from the end of its last frame: demuxes it to the end (or to
/// where it was cut off) without decoding.
fn scan_duration(path: &Path, demuxer: &str) -> Result<Duration, String> {
    use gst::prelude::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    const SCAN_TIMEOUT: Duration = Duration::from_secs(300);
    let pipeline = gst::Pipeline::new();
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|e| format!("cannot create {factory}: {e}"))
    };
    let src = make("filesrc")?;
    src.set_property("location", path);
    let demux = make(demuxer)?;
    pipeline
        .add_many([&src, &demux])
        .map_err(|e| e.to_string())?;
    src.link(&demux).map_err(|e| e.to_string())?;
    let end = Arc::new(AtomicU64::new(0));
    let weak = pipeline.downgrade();
    let seen = end.clone();
    demux.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        // No preroll: one demuxer thread feeds every sink, and a sink waiting for preroll
        // would hold it while another sink waits for its first buffer.
        let Ok(sink) = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
        else {
            return;
        };
        if pipeline.add(&sink).is_err() {
            return;
        }
        let _ = sink.sync_state_with_parent();
        if let Some(sink_pad) = sink.static_pad("sink") {
            let _ = pad.link(&sink_pad);
        }
        let seen = seen.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                if let Some(pts) = buffer.pts() {
                    let stop = pts + buffer.duration().unwrap_or_default();
                    seen.fetch_max(stop.nseconds(), Ordering::Relaxed);
                }
            }
            gst::PadProbeReturn::Ok
        });
    });
    // A file cut short ends in an error where the data stops: what came before counts.
    let _ = play_through(pipeline.upcast_ref(), SCAN_TIMEOUT, |_| {});
    Ok(Duration::from_nanos(end.load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_pad_properties_after_the_named_element() {
        let body = "compositor name=vmix background=black ! fakesink name=vmixer";
        assert_eq!(
            insert_after_name(body, "vmix", " sink_1::xpos=3").unwrap(),
            "compositor name=vmix sink_1::xpos=3 background=black ! fakesink name=vmixer"
        );
        assert!(insert_after_name("compositor name=vmixer", "vmix", " x").is_none());
        // Only a `name=` of the pipeline counts: not one inside a quoted value.
        assert_eq!(
            insert_after_name("t text=\"a name=vmix\" ! c name=vmix", "vmix", " p=1").unwrap(),
            "t text=\"a name=vmix\" ! c name=vmix p=1"
        );
        assert_eq!(
            insert_after_name("a!c name=vmix!b", "vmix", " p=1").unwrap(),
            "a!c name=vmix p=1!b"
        );
    }
}
