//! Templates as `gst-launch-1.0` commands an operator can run by hand: with test sources in
//! place of participants, or bound to a recorded call's files (what callrec would do with
//! them), and the shell command that runs such a description unchanged.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::mix::layout::{self, Tile};
use crate::names;
use crate::offline::{CallInputs, InputFile, OfflineError};
use crate::recording::TrackStatus;
use crate::templates::launch_text::{LaunchText, Span, TokenKind};
use crate::templates::{Kind, Scope, Template, TemplateError};

/// Why a template cannot be rendered for gst-launch.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The template's text cannot be rendered.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The recorded call cannot be used.
    #[error(transparent)]
    Offline(#[from] OfflineError),
    /// The output directory cannot go into pipeline text.
    #[error(
        "the output directory {0} has characters that cannot go into pipeline text; give --out-dir with letters, digits, '-', '.', '_', '+' and '/' only"
    )]
    UnsafeOutDir(String),
    /// Two instances would write one file, or an output would overwrite a recording.
    #[error(
        "{0} would be written twice, or over a recording it reads: the recording has several files for one name (a rejoin, or one file per track), or --out-dir is the call directory; render a template that names its outputs apart (e.g. track-mkv), or give another --out-dir"
    )]
    Collision(String),
    /// More seconds of test media than a render may ask for.
    #[error(
        "{0} seconds of test media is too long; give --seconds from 1 to {MAX_SECONDS} (a day)"
    )]
    TooLong(u32),
    /// The template takes nothing test sources or the recording can give it.
    #[error("template {template} accepts none of the media callrec can feed it ({media})")]
    NothingToFeed {
        /// The template.
        template: String,
        /// Its `# media:`.
        media: String,
    },
}

/// The name of the demuxer callrec puts before a template (templates' own names are
/// unlikely to clash with it).
const SOURCE: &str = "callrec_in";

/// Seconds of test media `render --participants` produces by default.
pub const DEFAULT_SECONDS: u32 = 5;

/// The most seconds of test media a render gives (a day): buffer counts for longer would
/// not fit GStreamer's `num-buffers` at a mix's frame rate.
pub const MAX_SECONDS: u32 = 86_400;

/// Test colours (0xRRGGBB) and tones (Hz) for test participants: distinct, and easy to tell
/// apart in a picture or a spectrum.
const COLOURS: [u32; 8] = [
    0xe6194b, 0x3cb44b, 0x4363d8, 0xffe119, 0xf58231, 0x911eb4, 0x46f0f0, 0xf032e6,
];
const TONES: [u32; 8] = [330, 440, 550, 660, 770, 880, 990, 1100];
const TEST_WIDTH: u32 = 640;
const TEST_HEIGHT: u32 = 360;
const TEST_FPS: u32 = 30;

/// The colour (0xRRGGBB) and tone (Hz) of test participant `k` (0-based).
pub fn test_participant(k: usize) -> (u32, u32) {
    (
        COLOURS[k % COLOURS.len()],
        TONES[k % TONES.len()] + 1100 * (k / TONES.len()) as u32,
    )
}

/// The gst-launch description of `template` fed by `participants` test participants for
/// `seconds`, writing into `out_dir` (`${call_dir}`).
pub fn with_test_sources(
    template: &Template,
    participants: usize,
    seconds: u32,
    out_dir: &Path,
) -> Result<String, LaunchError> {
    if seconds > MAX_SECONDS {
        return Err(LaunchError::TooLong(seconds));
    }
    let out_dir = safe_dir(out_dir)?;
    let participants = participants.max(1);
    let video = encoder(template, Kind::Video);
    let audio = encoder(template, Kind::Audio);
    if video.is_none() && audio.is_none() {
        return Err(nothing_to_feed(template));
    }
    let frames = seconds * TEST_FPS;
    // 20 ms audio buffers.
    let audio_buffers = seconds * 50;
    let video_src = |k: usize| {
        format!(
            "videotestsrc pattern=solid-color foreground-color={:#010x} num-buffers={frames} \
             ! video/x-raw,width={TEST_WIDTH},height={TEST_HEIGHT},framerate={TEST_FPS}/1",
            0xff00_0000u32 | test_participant(k).0
        )
    };
    let audio_src = |k: usize| {
        format!(
            "audiotestsrc freq={} volume=0.3 samplesperbuffer=960 num-buffers={audio_buffers} \
             ! audio/x-raw,rate=48000,channels=2",
            test_participant(k).1
        )
    };
    let mut text = String::new();
    match template.scope {
        Scope::Call => {
            let mut vars = base_vars(template, &out_dir);
            vars.insert("call", "render".into());
            let mut body = template.render_offline(&vars)?;
            let vmix = template.input_for(Kind::Video);
            let amix = template.input_for(Kind::Audio);
            if let Some(vmix) = vmix {
                let tiles = vec![
                    Tile {
                        aspect: TEST_WIDTH as f64 / TEST_HEIGHT as f64
                    };
                    participants
                ];
                let c = template.canvas;
                let rects = layout::place(c.layout, c.width, c.height, &tiles, None);
                let _ = write!(text, "{} ", background(template, frames, c.fps, vmix));
                let mut props = String::new();
                for (k, r) in rects.iter().enumerate() {
                    let pad = k + 1;
                    let _ = write!(text, "{} ! videoconvert ! {vmix}.sink_{pad} ", video_src(k));
                    let _ = write!(
                        props,
                        " sink_{pad}::xpos={} sink_{pad}::ypos={} sink_{pad}::width={} sink_{pad}::height={} sink_{pad}::zorder=1",
                        r.x, r.y, r.w, r.h
                    );
                }
                body = place_pads(template, &body, vmix, &props)?;
            }
            if let Some(amix) = amix {
                for k in 0..participants {
                    let _ = write!(text, "{} ! {amix}. ", audio_src(k));
                }
            }
            text.push_str(&body);
        }
        Scope::Track | Scope::Participant | Scope::Post => {
            let mut instances = vec![];
            for k in 0..participants {
                let participant = format!("p{}", k + 1);
                let feeds: Vec<(Kind, &Encoder)> = [(Kind::Video, &video), (Kind::Audio, &audio)]
                    .into_iter()
                    .filter_map(|(kind, e)| e.as_ref().map(|e| (kind, e)))
                    .collect();
                let groups: Vec<Vec<(Kind, &Encoder)>> = if template.scope == Scope::Track {
                    feeds.into_iter().map(|f| vec![f]).collect()
                } else {
                    vec![feeds]
                };
                for (mline, group) in groups.into_iter().enumerate() {
                    let mut vars = base_vars(template, &out_dir);
                    vars.insert("call", "render".into());
                    vars.insert("participant", participant.clone());
                    vars.insert("input", participant.clone());
                    let mut sources = String::new();
                    for (kind, enc) in &group {
                        if template.scope == Scope::Track {
                            vars.insert("track", format!("{}{mline}", kind.as_str()));
                            vars.insert("kind", kind.as_str().into());
                            vars.insert("codec", enc.codec.into());
                        }
                        let src = match kind {
                            Kind::Video => video_src(k),
                            Kind::Audio => audio_src(k),
                        };
                        let input = template.input_for(*kind).unwrap_or_default();
                        let _ = write!(sources, "{src} ! {} ! {input}. ", enc.chain);
                    }
                    vars.retain(|name, _| provides(template.scope, name));
                    instances.push(format!("{sources}{}", template.render_offline(&vars)?));
                }
            }
            text = join_instances(instances);
        }
    }
    Ok(text)
}

/// The gst-launch description of `template` bound to a recorded call's files: what callrec
/// does with them (`post`, and remix for `call`), or the recording redone (`track`,
/// `participant`: the streams as recorded, remuxed). Writes into `out_dir`.
pub fn from_recording(
    template: &Template,
    inputs: &CallInputs,
    out_dir: &Path,
) -> Result<String, LaunchError> {
    let out_dir_text = safe_dir(out_dir)?;
    if template.scope == Scope::Call {
        return Ok(inputs.describe(template, out_dir, &template.name, true)?);
    }
    let mut instances = vec![];
    for (n, file) in inputs.files.iter().enumerate() {
        match template.scope {
            Scope::Post => {
                if let Some(text) = post_description(template, inputs, n, &out_dir_text)? {
                    instances.push(text);
                }
            }
            _ => instances.extend(remux_descriptions(template, inputs, file, &out_dir_text)?),
        }
    }
    if instances.is_empty() {
        return Err(nothing_to_feed(template));
    }
    let text = join_instances(instances);
    check_outputs(&text, inputs)?;
    Ok(text)
}

/// Refuses a description that would write one file twice (two instances naming their
/// output the same), or write over a recording it reads.
fn check_outputs(text: &str, inputs: &CallInputs) -> Result<(), LaunchError> {
    let recordings: Vec<String> = inputs
        .files
        .iter()
        .map(|f| format!("{}/{}", inputs.dir.display(), f.file))
        .collect();
    let lexed = LaunchText::lex(text);
    let mut written: Vec<Cow<str>> = vec![];
    // The element the properties that follow are set on.
    let mut element = "";
    for token in lexed.words() {
        match lexed.property(token) {
            Some(("location", location)) => {
                if element == "filesrc" {
                    continue;
                }
                if written.contains(&location) || recordings.iter().any(|r| *r == location) {
                    return Err(LaunchError::Collision(location.into_owned()));
                }
                written.push(location);
            }
            Some(_) => {}
            None if token.kind == TokenKind::Link => {}
            None => element = lexed.str(token.span),
        }
    }
    Ok(())
}

/// One `post` instance for file `n` of the call: the file decoded into the template's inputs,
/// writing into `out_dir`. A kind the template takes but the file lacks is filled with black
/// or silence for the file's length (so muxers get every stream they were promised); `None`
/// if the file has nothing the template takes.
pub fn post_description(
    template: &Template,
    inputs: &CallInputs,
    n: usize,
    out_dir: &str,
) -> Result<Option<String>, LaunchError> {
    let Some(file) = inputs.files.get(n) else {
        return Ok(None);
    };
    let video_in = template.input_for(Kind::Video);
    let audio_in = template.input_for(Kind::Audio);
    let takes = |present: bool, input: Option<&str>| present && input.is_some();
    if !takes(file.video.is_some(), video_in) && !takes(file.audio, audio_in) {
        return Ok(None);
    }
    let dir = inputs.dir.to_string_lossy();
    if !names::is_pipeline_safe_path(&dir) {
        return Err(OfflineError::UnsafePath(dir.into_owned()).into());
    }
    let mut vars = base_vars(template, out_dir);
    vars.insert("call", inputs.manifest.dir.clone());
    vars.insert("participant", inputs.participant_name(file));
    vars.insert("input", stem(&file.file));
    let body = template.render_offline(&vars)?;
    let mut text = format!(
        "filesrc location={dir}/{} ! {} name={SOURCE} ",
        file.file, file.demuxer
    );
    if let Some(v) = video_in {
        if file.video.is_some() {
            let _ = write!(
                text,
                "{SOURCE}.video_0 ! queue ! decodebin ! queue ! videoconvert ! {v}. "
            );
        } else {
            let frames = file.duration.as_secs() + 1;
            let _ = write!(
                text,
                "videotestsrc pattern=black num-buffers={frames} \
                 ! video/x-raw,format=I420,width=320,height=180,framerate=1/1 ! {v}. "
            );
        }
    }
    if let Some(a) = audio_in {
        if file.audio {
            let _ = write!(
                text,
                "{SOURCE}.audio_0 ! queue ! decodebin ! queue ! audioconvert ! audioresample ! {a}. "
            );
        } else {
            let buffers = file.duration.as_millis() / 20 + 1;
            let _ = write!(
                text,
                "audiotestsrc wave=silence samplesperbuffer=960 num-buffers={buffers} \
                 ! audio/x-raw,rate=48000,channels=2 ! {a}. "
            );
        }
    }
    text.push_str(&body);
    Ok(Some(text))
}

/// `track` and `participant` instances that remux a recorded file's streams as they are.
fn remux_descriptions(
    template: &Template,
    inputs: &CallInputs,
    file: &InputFile,
    out_dir: &str,
) -> Result<Vec<String>, LaunchError> {
    let dir = inputs.dir.to_string_lossy();
    if !names::is_pipeline_safe_path(&dir) {
        return Err(OfflineError::UnsafePath(dir.into_owned()).into());
    }
    // The file's streams in the order the muxer got them (by m-line); the demuxer numbers
    // them per kind: video_0, video_1, audio_0...
    let mut in_file: Vec<&crate::recording::TrackEntry> = inputs
        .manifest
        .tracks
        .iter()
        .filter(|t| t.file.as_deref() == Some(file.file.as_str()))
        .filter(|t| !matches!(t.status, TrackStatus::Empty | TrackStatus::Skipped))
        .collect();
    in_file.sort_by_key(|t| t.mline);
    let mut streams = vec![];
    let mut counts = std::collections::HashMap::new();
    for t in in_file {
        let index = counts.entry(t.kind.as_str()).or_insert(0usize);
        let pad = format!("{}_{index}", t.kind);
        *index += 1;
        // Only codecs callrec records, of the kind the manifest says: nothing else from the
        // manifest reaches the text.
        let Some(codec) = crate::call::media::CODECS
            .iter()
            .find(|c| c.name == t.codec && c.kind.as_str() == t.kind)
        else {
            continue;
        };
        if !template.accepts(codec.media_type) {
            continue;
        }
        if let Some(input) = template.input_for(codec.kind) {
            streams.push((t, codec, pad, input));
        }
    }
    let mut vars = base_vars(template, out_dir);
    vars.insert("call", inputs.manifest.dir.clone());
    vars.insert("participant", inputs.participant_name(file));
    // The caps filter names the media type, so gst-launch requests the input element's
    // pad for that kind (a muxer's `video_%u` or `audio_%u`) rather than the first it has.
    let source = |pads: &[&(_, &crate::call::media::Codec, String, &str)]| {
        let mut s = format!(
            "filesrc location={dir}/{} ! {} name={SOURCE} ",
            file.file, file.demuxer
        );
        for (_, codec, pad, input) in pads {
            let _ = write!(
                s,
                "{SOURCE}.{pad} ! queue ! {} ! {input}. ",
                codec.media_type
            );
        }
        s
    };
    let mut out = vec![];
    if template.scope == Scope::Track {
        for stream in &streams {
            let (t, codec, _, _) = stream;
            let mut vars = vars.clone();
            vars.insert("track", format!("{}{}", t.kind, t.mline));
            vars.insert("kind", codec.kind.as_str().to_owned());
            vars.insert("codec", codec.name.to_owned());
            out.push(format!(
                "{}{}",
                source(&[stream]),
                template.render_offline(&vars)?
            ));
        }
    } else if !streams.is_empty() {
        let all: Vec<_> = streams.iter().collect();
        out.push(format!(
            "{}{}",
            source(&all),
            template.render_offline(&vars)?
        ));
    }
    Ok(out)
}

/// A file name without its extension.
fn stem(file: &str) -> String {
    Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_owned())
}

/// How test media is encoded for a template: the chain after the raw source, and the codec.
struct Encoder {
    chain: &'static str,
    codec: &'static str,
}

/// The cheapest encoder chain for a media type the template accepts, if any.
fn encoder(template: &Template, kind: Kind) -> Option<Encoder> {
    let choices: &[(&str, &str, &str)] = match kind {
        Kind::Video => &[
            ("video/x-raw", "videoconvert", "raw"),
            (
                "video/x-vp8",
                "videoconvert ! vp8enc deadline=1 cpu-used=16 keyframe-max-dist=30",
                "vp8",
            ),
            (
                "video/x-h264",
                "videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse",
                "h264",
            ),
            (
                "video/x-vp9",
                "videoconvert ! vp9enc deadline=1 cpu-used=8 keyframe-max-dist=30",
                "vp9",
            ),
            (
                "video/x-h265",
                "videoconvert ! x265enc speed-preset=ultrafast key-int-max=30 ! h265parse",
                "h265",
            ),
        ],
        Kind::Audio => &[
            ("audio/x-raw", "audioconvert ! audioresample", "raw"),
            ("audio/x-opus", "audioconvert ! opusenc", "opus"),
        ],
    };
    template.input_for(kind)?;
    choices
        .iter()
        .find(|(media, _, _)| template.accepts(media))
        .map(|(_, chain, codec)| Encoder { chain, codec })
}

/// The live background the daemon adds to a mix: the canvas colour on the mixer's `sink_0`.
fn background(template: &Template, frames: u32, fps: u32, vmix: &str) -> String {
    let c = template.canvas;
    format!(
        "videotestsrc pattern=solid-color foreground-color={:#010x} num-buffers={} \
         ! video/x-raw,format=I420,width={},height={},framerate={fps}/1 ! {vmix}.sink_0",
        0xff00_0000u32 | c.background,
        frames * fps / TEST_FPS,
        c.width,
        c.height
    )
}

/// Puts compositor pad properties on the mixer element.
fn place_pads(
    template: &Template,
    body: &str,
    vmix: &str,
    props: &str,
) -> Result<String, TemplateError> {
    crate::offline::insert_after_name(body, vmix, props).ok_or_else(|| TemplateError::Syntax {
        path: template.path.clone(),
        line: template.inputs_line,
        message: format!("no `name={vmix}` element to place participants on"),
    })
}

fn base_vars(template: &Template, out_dir: &str) -> BTreeMap<&'static str, String> {
    let mut vars = BTreeMap::new();
    vars.insert("call_dir", out_dir.to_owned());
    vars.insert("template", template.name.clone());
    vars
}

/// Whether a scope provides a variable.
fn provides(scope: Scope, name: &str) -> bool {
    crate::templates::VARIABLES
        .iter()
        .any(|(n, scopes, _)| *n == name && scopes.contains(&scope))
}

fn nothing_to_feed(template: &Template) -> LaunchError {
    LaunchError::NothingToFeed {
        template: template.name.clone(),
        media: template.media.join(", "),
    }
}

fn safe_dir(dir: &Path) -> Result<String, LaunchError> {
    let text = dir.to_string_lossy().into_owned();
    if names::is_pipeline_safe_path(&text) && dir.is_absolute() {
        Ok(text)
    } else {
        Err(LaunchError::UnsafeOutDir(text))
    }
}

/// Several instances of one template in one description: element names are made unique per
/// instance (`mux` becomes `mux_1`, and `mux.` references follow), because gst-launch looks
/// names up across the whole pipeline.
fn join_instances(instances: Vec<String>) -> String {
    if instances.len() == 1 {
        return instances.into_iter().next().unwrap_or_default();
    }
    instances
        .iter()
        .enumerate()
        .map(|(i, text)| uniquify(text, &format!("_{}", i + 1)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renames every `name=X` element of `text` to `X<suffix>`, with its `X.` references; the
/// rest of the text stays as it is.
fn uniquify(text: &str, suffix: &str) -> String {
    let lexed = LaunchText::lex(text);
    let names: Vec<(Span, Cow<str>)> = lexed.names().collect();
    let after = |span: Span| {
        (
            Span {
                start: span.end,
                end: span.end,
            },
            suffix.to_owned(),
        )
    };
    let mut edits: Vec<(Span, String)> = names.iter().map(|(span, _)| after(*span)).collect();
    for token in lexed.tokens() {
        if let TokenKind::PadRef { element, .. } = token.kind {
            let name = lexed.str(element);
            if !name.is_empty() && names.iter().any(|(_, n)| n == name) {
                edits.push(after(element));
            }
        }
    }
    lexed.edit(edits)
}

/// A shell command that runs `description` in `gst-launch-1.0` (with EOS on Ctrl-C, so files
/// are finalised), after creating `out_dir`. gst-launch escapes blanks inside each argument,
/// so the description is passed word by word, each word quoted for the shell when needed.
pub fn launch_command(description: &str, out_dir: Option<&Path>) -> String {
    let mut command = String::new();
    if let Some(dir) = out_dir {
        let _ = write!(
            command,
            "mkdir -p {} && ",
            shell_word(&dir.to_string_lossy())
        );
    }
    command.push_str("gst-launch-1.0 -e");
    for word in LaunchText::lex(description).arguments() {
        command.push(' ');
        command.push_str(&shell_word(word));
    }
    command
}

/// `word` quoted for a POSIX shell if it holds anything but plain characters.
fn shell_word(word: &str) -> String {
    let plain = word == "!"
        || word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=,+@%^".contains(c));
    if plain && !word.is_empty() {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_pass_the_description_word_by_word() {
        assert_eq!(
            launch_command(r#"a name=x ! b p="1 2" c='it'"#, None),
            r#"gst-launch-1.0 -e a name=x ! b 'p="1 2"' 'c='\''it'\'''"#
        );
        assert_eq!(
            launch_command("a ! b", Some(Path::new("/tmp/o"))),
            "mkdir -p /tmp/o && gst-launch-1.0 -e a ! b"
        );
    }

    #[test]
    fn instances_get_unique_names() {
        assert_eq!(
            uniquify(
                "src ! mux. matroskamux name=mux ! f location=/a/mux.mkv",
                "_2"
            ),
            "src ! mux_2. matroskamux name=mux_2 ! f location=/a/mux.mkv"
        );
        assert_eq!(
            uniquify("s ! m.video_0 mp4mux name=m", "_1"),
            "s ! m_1.video_0 mp4mux name=m_1"
        );
    }

    #[test]
    fn renaming_leaves_quotes_and_other_words_alone() {
        // A link without blanks still links; a quoted value keeps its blanks and is never
        // taken for a name or a reference; a quoted name is renamed inside its quotes.
        assert_eq!(
            uniquify(
                "src!m. t name=\"o  x\" text=\"m. is  here\" m.src ! mux name=m",
                "_3"
            ),
            "src!m_3. t name=\"o  x_3\" text=\"m. is  here\" m_3.src ! mux name=m_3"
        );
        // A reference to an element of another instance stays as it is.
        assert_eq!(
            uniquify("a ! other. b name=m", "_1"),
            "a ! other. b name=m_1"
        );
    }

    #[test]
    fn commands_follow_escapes_links_and_continuations() {
        // `\"` opens no quote, so its blank splits words, as GStreamer's own parser reads it.
        assert_eq!(
            launch_command("a t=\\\"x y\\\" \\\n! b!c", None),
            r#"gst-launch-1.0 -e a 't=\"x' 'y\"' ! 'b!c'"#
        );
    }

    fn call_inputs(dir: &str, files: &[&str]) -> CallInputs {
        CallInputs {
            dir: dir.into(),
            manifest: crate::recording::Manifest::new("c", "c"),
            files: files
                .iter()
                .map(|f| InputFile {
                    participant: "p".into(),
                    file: (*f).into(),
                    offset: Default::default(),
                    duration: Default::default(),
                    video: None,
                    audio: true,
                    demuxer: "matroskademux",
                    finalised: true,
                })
                .collect(),
            skipped: vec![],
        }
    }

    #[test]
    fn outputs_written_twice_or_over_a_recording_are_refused() {
        let inputs = call_inputs("/rec/c", &["a.mkv"]);
        let ok = "filesrc location=/rec/c/a.mkv ! d name=x x.audio_0 ! f location=/out/a.ogg";
        assert!(check_outputs(ok, &inputs).is_ok());
        // Quoted or not, one file is one file.
        let twice = "f location=/out/a.ogg g location=\"/out/a.ogg\"";
        let err = check_outputs(twice, &inputs).unwrap_err().to_string();
        assert!(
            err.starts_with("/out/a.ogg would be written twice"),
            "{err}"
        );
        let over = "filesrc location=/rec/c/a.mkv ! d ! filesink location='/rec/c/a.mkv'";
        assert!(matches!(
            check_outputs(over, &inputs),
            Err(LaunchError::Collision(f)) if f == "/rec/c/a.mkv"
        ));
        // A blank inside a quoted location does not cut it into two.
        assert!(check_outputs("f location=\"/out/x y\" g location=/out/x", &inputs).is_ok());
    }

    #[test]
    fn too_many_seconds_are_refused_not_overflowed() {
        let template = Template::parse(
            Path::new("t.pipeline"),
            "# scope: track\n# media: audio/x-raw\n# inputs: a\naudioconvert name=a ! fakesink\n",
        )
        .unwrap();
        let out = Path::new("/tmp/out");
        for seconds in [MAX_SECONDS + 1, u32::MAX] {
            let err = with_test_sources(&template, 2, seconds, out).unwrap_err();
            assert!(
                matches!(err, LaunchError::TooLong(s) if s == seconds),
                "{err}"
            );
            assert!(
                err.to_string().contains("--seconds from 1 to 86400"),
                "{err}"
            );
        }
        let text = with_test_sources(&template, 1, MAX_SECONDS, out).unwrap();
        assert!(
            text.contains(&format!("num-buffers={}", MAX_SECONDS * 50)),
            "{text}"
        );
    }

    #[test]
    fn test_participants_differ() {
        let all: Vec<(u32, u32)> = (0..10).map(test_participant).collect();
        for (i, a) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|b| b.1 != a.1), "{all:?}");
        }
    }
}
