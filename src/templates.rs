//! Pipeline templates: operator-owned gst-launch text in `pipelines/*.pipeline`, with a small
//! header that tells callrec how to use it (see `pipelines/README.md`).
//!
//! Templates are loaded and checked at start-up, so a broken one fails early with its file and
//! line. Only whitelisted `${variables}` are substituted, and every value is checked against a
//! safe character set first, so nothing from the network can change a pipeline's syntax.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use gst::prelude::*;

use crate::names;
use crate::template_diagnose as diagnose;

/// Where a template instance sits in the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One instance per incoming track, fed that track's encoded stream.
    Track,
    /// One instance per participant session, fed each of its tracks' encoded streams.
    Participant,
    /// One instance per call (a live mix), fed every participant's decoded audio and video.
    Call,
    /// One instance per recorded file after the call ended, fed that file's decoded audio
    /// and video (post-processing: transcode, extract audio...).
    Post,
}

impl Scope {
    /// Every scope, in the order the docs list them.
    pub const ALL: [Scope; 4] = [Scope::Track, Scope::Participant, Scope::Call, Scope::Post];
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Track => "track",
            Scope::Participant => "participant",
            Scope::Call => "call",
            Scope::Post => "post",
        })
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An audio track.
    Audio,
    /// A video track.
    Video,
}

impl Kind {
    /// `audio` or `video`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

/// A template that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("{path}: cannot read template: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The header or body is malformed.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// GStreamer could not build the pipeline text.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line GStreamer's complaint is about.
        line: usize,
        /// GStreamer's message, and what to do about it.
        message: String,
    },
    /// A variable's value is not safe to put into pipeline text.
    #[error("template {template}: unsafe value for ${{{variable}}}: {value:?} (callrec maps network values to safe names; this is a bug or a bad recordings path)")]
    UnsafeValue {
        /// The template.
        template: String,
        /// The variable.
        variable: String,
        /// The value, cut for the log.
        value: String,
    },
    /// No template has this name.
    #[error(
        "no template named `{0}` in the pipelines directory; `callrec check` lists what is there"
    )]
    Unknown(String),
}

/// The variables a template may use, and the scopes that provide them.
pub const VARIABLES: &[(&str, &[Scope], &str)] = &[
    (
        "call_dir",
        &Scope::ALL,
        "absolute path of the directory to write into: the call's directory (for `post`, a \
         staging folder in it whose files callrec moves into the call's directory on success)",
    ),
    ("call", &Scope::ALL, "the call's safe name"),
    (
        "participant",
        &[Scope::Track, Scope::Participant, Scope::Post],
        "the participant's safe name (unique in the call)",
    ),
    ("template", &Scope::ALL, "the template's own name"),
    (
        "input",
        &[Scope::Post],
        "the recorded file's name without its extension, e.g. alice-video0",
    ),
    ("track", &[Scope::Track], "the track's name, e.g. video0"),
    ("kind", &[Scope::Track], "audio or video"),
    ("codec", &[Scope::Track], "the codec, e.g. vp8, h264, opus"),
];

/// How a mix template places participants on its canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// Equal tiles: 1, 2 side by side, then 2×2, 3×3...
    Grid,
    /// The active speaker large, the others as thumbnails.
    Speaker,
}

/// The canvas of a mix template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Background colour, 0xRRGGBB.
    pub background: u32,
    /// How participants are placed.
    pub layout: LayoutKind,
}

impl Default for Canvas {
    fn default() -> Self {
        Canvas {
            width: 1280,
            height: 720,
            fps: 30,
            background: 0x000000,
            layout: LayoutKind::Grid,
        }
    }
}

/// Parses `WIDTHxHEIGHT@FPS` (the `@FPS` part is optional).
fn parse_canvas(text: &str) -> Option<(u32, u32, Option<u32>)> {
    let (size, fps) = match text.split_once('@') {
        Some((size, fps)) => (size, Some(fps.trim().parse().ok()?)),
        None => (text, None),
    };
    let (w, h) = size.trim().split_once('x')?;
    let (w, h): (u32, u32) = (w.parse().ok()?, h.parse().ok()?);
    let ok = (16..=7680).contains(&w)
        && (16..=4320).contains(&h)
        && fps.is_none_or(|f| (1..=120).contains(&f));
    ok.then_some((w, h, fps))
}

/// Parses a colour: `black`, `white`, `grey`, or `0xRRGGBB`/`#RRGGBB`.
fn parse_colour(text: &str) -> Option<u32> {
    match text {
        "black" => Some(0x000000),
        "white" => Some(0xffffff),
        "grey" | "gray" => Some(0x808080),
        _ => {
            let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix('#'))?;
            (hex.len() == 6)
                .then(|| u32::from_str_radix(hex, 16).ok())
                .flatten()
        }
    }
}

/// One loaded, checked template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Its name (header `name`, or the file stem).
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// One line saying what it does.
    pub description: String,
    /// Where it sits in the call.
    pub scope: Scope,
    /// The media types it accepts, e.g. `video/x-vp8`.
    pub media: Vec<String>,
    /// Input element per kind (`None` key: one element for all kinds).
    pub inputs: BTreeMap<Option<Kind>, String>,
    /// The pipeline text, with `${variables}`.
    pub body: String,
    /// Line number of the first body line.
    pub body_line: usize,
    /// The body as written: each line's number and text (for pointing at a line).
    pub lines: Vec<(usize, String)>,
    /// Line number of the `# inputs:` header.
    pub inputs_line: usize,
    /// Canvas, background and layout (mix templates).
    pub canvas: Canvas,
}

impl Template {
    /// Parses a template file's text (does not check it with GStreamer; see [`Template::check`]).
    pub fn parse(path: &Path, text: &str) -> Result<Self, TemplateError> {
        let syntax = |line: usize, message: String| TemplateError::Syntax {
            path: path.to_owned(),
            line,
            message,
        };
        let mut fields: BTreeMap<String, (usize, String)> = BTreeMap::new();
        let mut body_lines = Vec::new();
        let mut body_line = 0;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if let Some(comment) = line.strip_prefix('#') {
                if body_lines.is_empty() {
                    if let Some((key, value)) = comment.split_once(':') {
                        let key = key.trim().to_ascii_lowercase();
                        if !key.contains(' ') {
                            fields.insert(key, (line_no, value.trim().to_owned()));
                        }
                    }
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            if body_lines.is_empty() {
                body_line = line_no;
            }
            body_lines.push((line_no, line.trim_end_matches('\\').trim().to_owned()));
        }
        if body_lines.is_empty() {
            return Err(syntax(1, "no pipeline text after the header".into()));
        }
        let known = [
            "name",
            "description",
            "scope",
            "media",
            "inputs",
            "canvas",
            "background",
            "layout",
        ];
        for (key, (line, _)) in &fields {
            if !known.contains(&key.as_str()) {
                return Err(syntax(
                    *line,
                    format!("unknown header field `{key}` (known: {})", known.join(", ")),
                ));
            }
        }
        let field = |key: &str| fields.get(key).map(|(l, v)| (*l, v.as_str()));
        let name = match field("name") {
            Some((_, v)) => v.to_owned(),
            None => path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("template")
                .to_owned(),
        };
        let scope = match field("scope") {
            Some((_, "track")) => Scope::Track,
            Some((_, "participant")) => Scope::Participant,
            Some((_, "call")) => Scope::Call,
            Some((_, "post")) => Scope::Post,
            Some((line, other)) => {
                return Err(syntax(
                    line,
                    format!("unknown scope `{other}` (use track, participant, call or post)"),
                ))
            }
            None => return Err(syntax(1, "header has no `# scope:` line".into())),
        };
        let media: Vec<String> = field("media")
            .map(|(_, v)| {
                v.split(',')
                    .map(|m| m.trim().to_owned())
                    .filter(|m| !m.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if media.is_empty() {
            return Err(syntax(
                1,
                "header has no `# media:` line listing accepted caps, e.g. video/x-vp8".into(),
            ));
        }
        let (inputs_line, inputs_text) = field("inputs").ok_or_else(|| {
            syntax(
                1,
                "header has no `# inputs:` line naming the input element".into(),
            )
        })?;
        let mut inputs = BTreeMap::new();
        for item in inputs_text.split([',', ' ']).filter(|s| !s.is_empty()) {
            let (kind, element) = match item.split_once('=') {
                Some(("audio", e)) => (Some(Kind::Audio), e),
                Some(("video", e)) => (Some(Kind::Video), e),
                Some((other, _)) => {
                    return Err(syntax(
                        inputs_line,
                        format!("unknown input kind `{other}` (use audio= or video=)"),
                    ))
                }
                None => (None, item),
            };
            inputs.insert(kind, element.to_owned());
        }
        let mut canvas = Canvas::default();
        if let Some((line, text)) = field("canvas") {
            let (w, h, fps) = parse_canvas(text).ok_or_else(|| {
                syntax(line, format!("bad canvas `{text}` (use e.g. 1280x720@30)"))
            })?;
            canvas.width = w;
            canvas.height = h;
            canvas.fps = fps.unwrap_or(canvas.fps);
        }
        if let Some((line, text)) = field("background") {
            canvas.background = parse_colour(text).ok_or_else(|| {
                syntax(
                    line,
                    format!("bad background `{text}` (use black, white, grey or 0xRRGGBB)"),
                )
            })?;
        }
        if let Some((line, text)) = field("layout") {
            canvas.layout = match text {
                "grid" => LayoutKind::Grid,
                "speaker" => LayoutKind::Speaker,
                other => {
                    return Err(syntax(
                        line,
                        format!("unknown layout `{other}` (use grid or speaker)"),
                    ))
                }
            };
        }
        let template = Template {
            name,
            canvas,
            path: path.to_owned(),
            description: field("description")
                .map(|(_, v)| v.to_owned())
                .unwrap_or_default(),
            scope,
            media,
            inputs,
            body: body_lines
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            body_line,
            lines: body_lines,
            inputs_line,
        };
        if let Some((line, message)) = diagnose::unbalanced_quote(&template.lines) {
            return Err(syntax(line, message));
        }
        template.check_variables(text)?;
        Ok(template)
    }

    /// Rejects `${...}` references the template's scope does not provide.
    fn check_variables(&self, text: &str) -> Result<(), TemplateError> {
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            let mut rest = line;
            while let Some(start) = rest.find("${") {
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    return Err(TemplateError::Syntax {
                        path: self.path.clone(),
                        line: i + 1,
                        message: "unclosed `${`".into(),
                    });
                };
                let var = &after[..end];
                let provided = VARIABLES
                    .iter()
                    .any(|(name, scopes, _)| *name == var && scopes.contains(&self.scope));
                if !provided {
                    let names: Vec<&str> = VARIABLES
                        .iter()
                        .filter(|(_, scopes, _)| scopes.contains(&self.scope))
                        .map(|(n, _, _)| *n)
                        .collect();
                    return Err(TemplateError::Syntax {
                        path: self.path.clone(),
                        line: i + 1,
                        message: format!(
                            "unknown variable ${{{var}}} for scope {} (available: {})",
                            self.scope,
                            names.join(", ")
                        ),
                    });
                }
                rest = &after[end + 1..];
            }
        }
        Ok(())
    }

    /// True if the template records streams with these caps (media type only).
    pub fn accepts(&self, media_type: &str) -> bool {
        self.media.iter().any(|m| m == media_type)
    }

    /// The input element for a kind of track.
    pub fn input_for(&self, kind: Kind) -> Option<&str> {
        self.inputs
            .get(&Some(kind))
            .or_else(|| self.inputs.get(&None))
            .map(String::as_str)
    }

    /// Substitutes checked values into the body.
    pub fn render(&self, vars: &BTreeMap<&str, String>) -> Result<String, TemplateError> {
        let mut out = self.body.clone();
        for (name, value) in vars {
            let safe = if *name == "call_dir" {
                names::is_pipeline_safe_path(value)
            } else {
                names::is_safe_component(value)
            };
            if !safe {
                return Err(TemplateError::UnsafeValue {
                    template: self.name.clone(),
                    variable: (*name).to_owned(),
                    value: value.chars().take(80).collect(),
                });
            }
            out = out.replace(&format!("${{{name}}}"), value);
        }
        Ok(out)
    }

    /// Builds one instance: the rendered text parsed into a bin (no ghost pads; callers
    /// request and ghost the input pads they need).
    pub fn instantiate(
        &self,
        vars: &BTreeMap<&str, String>,
    ) -> Result<(gst::Bin, String), TemplateError> {
        let text = self.render(vars)?;
        let bin = self.parse_bin(&text)?;
        crate::priming::compensate(&bin);
        Ok((bin, text))
    }

    fn parse_bin(&self, text: &str) -> Result<gst::Bin, TemplateError> {
        let mut ctx = gst::ParseContext::new();
        let parsed = gst::parse::bin_from_description_full(
            text,
            false,
            Some(&mut ctx),
            gst::ParseFlags::FATAL_ERRORS,
        );
        let element = parsed.map_err(|e| {
            let (line, message) =
                diagnose::explain_parse_error(&self.lines, e.message(), &ctx.missing_elements());
            TemplateError::Parse {
                path: self.path.clone(),
                line,
                message,
            }
        })?;
        element
            .downcast::<gst::Bin>()
            .map_err(|_| TemplateError::Parse {
                path: self.path.clone(),
                line: self.body_line,
                message: "did not produce a bin".into(),
            })
    }

    /// Sample values for checking and rendering.
    pub fn sample_vars(&self) -> BTreeMap<&'static str, String> {
        let mut vars = BTreeMap::new();
        vars.insert("call_dir", "/tmp/callrec-check".to_owned());
        vars.insert("call", "call".to_owned());
        vars.insert("template", self.name.clone());
        if self.scope != Scope::Call {
            vars.insert("participant", "participant".to_owned());
        }
        if self.scope == Scope::Post {
            vars.insert("input", "participant-video0".to_owned());
        }
        if self.scope == Scope::Track {
            vars.insert("track", "video0".to_owned());
            vars.insert("kind", "video".to_owned());
            vars.insert("codec", "vp8".to_owned());
        }
        vars
    }

    /// Checks the template with GStreamer's parser: elements exist, properties are valid,
    /// and the input elements are there.
    pub fn check(&self) -> Result<(), TemplateError> {
        let text = self.render(&self.sample_vars())?;
        let bin = self.parse_bin(&text)?;
        for element in self.inputs.values() {
            if bin.by_name(element).is_none() {
                return Err(TemplateError::Syntax {
                    path: self.path.clone(),
                    line: self.inputs_line,
                    message: format!(
                        "missing input: the element `{element}` named in `# inputs:` is not in the pipeline (give an element name={element})"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Reads and parses one template file (see [`Template::check`] for the GStreamer check).
pub fn load_file(path: &Path) -> Result<Template, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: path.to_owned(),
        source,
    })?;
    Template::parse(path, &text)
}

/// The `*.pipeline` files of a directory, sorted.
pub fn template_files(dir: &Path) -> Result<Vec<PathBuf>, TemplateError> {
    let entries = std::fs::read_dir(dir).map_err(|source| TemplateError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pipeline"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// All templates of a pipelines directory.
#[derive(Debug, Clone, Default)]
pub struct TemplateSet {
    templates: Vec<Template>,
}

impl TemplateSet {
    /// Loads every `*.pipeline` file in `dir`; any broken file is an error.
    pub fn load_dir(dir: &Path) -> Result<Self, Vec<TemplateError>> {
        let paths = template_files(dir).map_err(|e| vec![e])?;
        let mut templates: Vec<Template> = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            match load_file(&path) {
                Ok(t) => match templates.iter().find(|other| other.name == t.name) {
                    Some(other) => errors.push(TemplateError::Syntax {
                        path: path.clone(),
                        line: 1,
                        message: format!(
                            "template name `{}` is already used by {}; give one of them another `# name:`",
                            t.name,
                            other.path.display()
                        ),
                    }),
                    None => templates.push(t),
                },
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Self { templates })
        } else {
            Err(errors)
        }
    }

    /// Loads and checks every template of `dir` with GStreamer, reporting every problem
    /// (not only the first). The set holds the templates that passed.
    pub fn load_and_check(dir: &Path) -> (Self, Vec<TemplateError>) {
        let mut errors = vec![];
        let set = match Self::load_dir(dir) {
            Ok(set) => set,
            Err(load_errors) => {
                errors = load_errors;
                // Check the files that did parse too, so one report names everything.
                let templates = template_files(dir)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| load_file(p).ok())
                    .collect();
                Self { templates }
            }
        };
        let mut good = vec![];
        for t in set.templates {
            match t.check() {
                Ok(()) => good.push(t),
                Err(e) => errors.push(e),
            }
        }
        (Self { templates: good }, errors)
    }

    /// Checks every template with GStreamer.
    pub fn check_all(&self) -> Vec<TemplateError> {
        self.templates
            .iter()
            .filter_map(|t| t.check().err())
            .collect()
    }

    /// Looks up templates by name, in the given order.
    pub fn select(&self, names: &[String]) -> Result<Vec<Template>, TemplateError> {
        names
            .iter()
            .map(|n| {
                self.get(n)
                    .cloned()
                    .ok_or_else(|| TemplateError::Unknown(n.clone()))
            })
            .collect()
    }

    /// One template by name.
    pub fn get(&self, name: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.name == name)
    }

    /// All templates.
    pub fn all(&self) -> &[Template] {
        &self.templates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Template, TemplateError> {
        Template::parse(Path::new("t.pipeline"), text)
    }

    const GOOD: &str = "# callrec-template\n# description: test\n# scope: track\n# media: video/x-vp8, audio/x-opus\n# inputs: mux\nmatroskamux name=mux ! filesink location=${call_dir}/${participant}-${track}.mkv\n";

    #[test]
    fn header_and_body_are_parsed() {
        let t = parse(GOOD).unwrap();
        assert_eq!(t.name, "t");
        assert_eq!(t.scope, Scope::Track);
        assert!(t.accepts("video/x-vp8") && t.accepts("audio/x-opus"));
        assert!(!t.accepts("video/x-h264"));
        assert_eq!(t.input_for(Kind::Audio), Some("mux"));
        assert_eq!(t.body_line, 6);
    }

    #[test]
    fn per_kind_inputs() {
        let text = GOOD.replace("# inputs: mux", "# inputs: video=v, audio=a");
        let t = parse(&text).unwrap();
        assert_eq!(t.input_for(Kind::Video), Some("v"));
        assert_eq!(t.input_for(Kind::Audio), Some("a"));
    }

    #[test]
    fn unknown_variables_name_the_line() {
        let text = GOOD.replace("${track}", "${nope}");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("t.pipeline:6:"), "{err}");
        assert!(err.contains("${nope}"), "{err}");
        // track-only variables are unknown to participant templates
        let text = GOOD.replace("scope: track", "scope: participant");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("${track}"), "{err}");
    }

    #[test]
    fn missing_header_fields_are_errors() {
        for (from, to) in [
            ("# scope: track\n", ""),
            ("# media: video/x-vp8, audio/x-opus\n", ""),
            ("# inputs: mux\n", ""),
            ("scope: track", "scope: galaxy"),
            ("# description: test", "# colour: blue"),
        ] {
            assert!(parse(&GOOD.replace(from, to)).is_err(), "{from} -> {to}");
        }
    }

    #[test]
    fn render_refuses_unsafe_values() {
        let t = parse(GOOD).unwrap();
        let mut vars = t.sample_vars();
        assert!(t
            .render(&vars)
            .unwrap()
            .contains("/tmp/callrec-check/participant-video0.mkv"));
        for bad in ["../x", "a b", "a!b", "\"q\"", "x\ny", ""] {
            vars.insert("participant", bad.to_owned());
            assert!(t.render(&vars).is_err(), "{bad:?}");
        }
        let mut vars = t.sample_vars();
        vars.insert("call_dir", "/tmp/a b".into());
        assert!(t.render(&vars).is_err());
    }

    #[test]
    fn shipped_templates_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let set = TemplateSet::load_dir(&dir).unwrap();
        let p = set.get("participant-mkv").expect("participant-mkv ships");
        assert_eq!(p.scope, Scope::Participant);
        assert!(p.accepts("video/x-vp8") && p.accepts("audio/x-opus"));
        let t = set.get("track-mkv").expect("track-mkv ships");
        assert_eq!(t.scope, Scope::Track);
        assert!(set.select(&["nope".into()]).is_err());
    }

    #[test]
    fn instances_are_plain_bins() {
        // A nested GstPipeline would bring its own clock and state handling into the call.
        gst::init().unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let set = TemplateSet::load_dir(&dir).unwrap();
        for t in set.all() {
            let (bin, _) = t.instantiate(&t.sample_vars()).unwrap();
            assert!(!bin.is::<gst::Pipeline>(), "{}", t.name);
        }
    }

    #[test]
    fn check_names_missing_elements_and_bad_inputs() {
        gst::init().unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let set = TemplateSet::load_dir(&dir).unwrap();
        assert!(set.check_all().is_empty(), "{:?}", set.check_all());
        let t = parse(&GOOD.replace("matroskamux", "nosuchmux")).unwrap();
        let err = t.check().unwrap_err().to_string();
        assert!(
            err.contains("nosuchmux") && err.contains("t.pipeline:6"),
            "{err}"
        );
        let t = parse(&GOOD.replace("name=mux", "name=other")).unwrap();
        let err = t.check().unwrap_err().to_string();
        assert!(err.contains("`mux`"), "{err}");
        let t = parse(&GOOD.replace("filesink", "filesink no-such-prop=1")).unwrap();
        assert!(t.check().is_err());
    }
}
