//! `callrec pipelines list|check|render`: the operator's tools for templates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use callrec::exit::Exit;
use callrec::media::plugins::{self, PluginError};
use callrec::offline::launch;
use callrec::offline::CallInputs;
use callrec::templates::{self, FileNames, Loaded, Origin, Template, TemplateDir, TemplateError};

/// How `render` feeds the template.
pub enum RenderSource {
    /// N test participants for so many seconds.
    TestParticipants {
        /// How many.
        count: usize,
        /// For how long.
        seconds: u32,
    },
    /// A recorded call's directory.
    Recording(PathBuf),
}

/// Every template, good or broken, by name: the built-in ones layered with `dir`'s files.
type Entries = Vec<(String, Result<Template, TemplateError>)>;

fn entries(dir: &TemplateDir) -> Result<Entries, ExitCode> {
    let loaded = Loaded::load(dir).map_err(|e| fail(&e.to_string(), Exit::Config))?;
    let mut entries: Entries = loaded
        .set
        .all()
        .iter()
        .map(|t| (t.name.clone(), Ok(t.clone())))
        .chain(loaded.failures.into_iter().map(|f| (f.name, Err(f.error))))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// GStreamer started, then every template loaded: how `check` and `render` begin.
fn with_gstreamer(dir: &TemplateDir) -> Result<Entries, ExitCode> {
    // Templates never depayload, so only GStreamer itself failing matters here.
    if let Err(e @ PluginError::Gstreamer(_)) = plugins::init() {
        return Err(fail(&e.to_string(), Exit::Unavailable));
    }
    entries(dir)
}

/// `callrec pipelines list`: one line per template with where it comes from (`built-in` or
/// its file); broken ones are reported on stderr.
pub fn list(dir: &TemplateDir) -> ExitCode {
    let entries = match entries(dir) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let mut broken = false;
    let mut rows = vec![];
    for (_, entry) in entries {
        match entry {
            Ok(t) => rows.push(t),
            Err(e) => {
                broken = true;
                eprintln!("{e}");
            }
        }
    }
    let width = rows.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    let media: Vec<String> = rows.iter().map(|t| t.media.join(",")).collect();
    let media_width = media.iter().map(String::len).max().unwrap_or(5).max(5);
    let described = rows
        .iter()
        .map(|t| t.description.len())
        .max()
        .unwrap_or(11)
        .max(11);
    println!(
        "{:width$}  {:11}  {:media_width$}  {:described$}  ORIGIN",
        "NAME", "SCOPE", "MEDIA", "DESCRIPTION"
    );
    for (t, media) in rows.iter().zip(&media) {
        println!(
            "{:width$}  {:11}  {:media_width$}  {:described$}  {}",
            t.name,
            t.scope.to_string(),
            media,
            t.description,
            t.origin
        );
    }
    if broken {
        Exit::DataErr.into()
    } else {
        Exit::Ok.into()
    }
}

/// `callrec pipelines check [NAME|FILE...]`: every template (or the given ones) parsed and
/// built with GStreamer; each problem printed as `file:line: message`.
pub fn check(dir: &TemplateDir, targets: &[String]) -> ExitCode {
    let mut all = match with_gstreamer(dir) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let chosen: Vec<Result<Template, TemplateError>> = if targets.is_empty() {
        all.into_iter().map(|(_, entry)| entry).collect()
    } else {
        let mut chosen = vec![];
        // Files named on the command line are not layered, so their names are checked here.
        let mut files = FileNames::default();
        let mut seen: Vec<&String> = vec![];
        for target in targets {
            if seen.contains(&target) {
                continue;
            }
            seen.push(target);
            let Some(entry) = resolve(&mut all, target) else {
                return no_such_template(target, dir);
            };
            let entry = entry.and_then(|t| match (&t.origin, Path::new(target).is_file()) {
                (Origin::File(_), true) => files.claim(&t).map(|()| t),
                _ => Ok(t),
            });
            chosen.push(entry);
        }
        chosen
    };
    let count = chosen.len();
    let mut problems = 0;
    for entry in chosen {
        match entry.and_then(|t| t.check().map(|()| t)) {
            Ok(t) => println!("ok     {} ({}, {})", t.name, t.scope, t.origin),
            Err(e) => {
                problems += 1;
                println!("error  {e}");
            }
        }
    }
    if problems == 0 {
        Exit::Ok.into()
    } else {
        eprintln!("{problems} of {count} template(s) cannot be used");
        Exit::DataErr.into()
    }
}

/// `callrec pipelines render NAME`: prints a shell command that runs the template in
/// gst-launch-1.0, fed by test sources or a recorded call.
pub fn render(
    dir: &TemplateDir,
    target: &str,
    source: RenderSource,
    out_dir: Option<PathBuf>,
) -> ExitCode {
    let mut all = match with_gstreamer(dir) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let Some(loaded) = resolve(&mut all, target) else {
        return no_such_template(target, dir);
    };
    let template: Template = match loaded {
        Ok(t) => t,
        Err(e) => return fail(&e.to_string(), Exit::DataErr),
    };
    let out_dir = match out_dir {
        Some(d) => std::path::absolute(d),
        None => std::env::current_dir().map(|d| d.join(format!("render-{}", template.name))),
    };
    let out_dir = match out_dir {
        Ok(d) => d,
        Err(e) => {
            return fail(
                &format!("cannot resolve the output directory: {e}"),
                Exit::CantCreate,
            )
        }
    };
    let description = match source {
        RenderSource::TestParticipants { count, seconds } => {
            launch::with_test_sources(&template, count, seconds, &out_dir)
        }
        RenderSource::Recording(call_dir) => match CallInputs::load(&call_dir) {
            Ok(inputs) => launch::from_recording(&template, &inputs, &out_dir),
            Err(e @ callrec::offline::OfflineError::Manifest { .. }) => {
                return fail(&e.to_string(), Exit::NoInput)
            }
            Err(e) => return fail(&e.to_string(), Exit::DataErr),
        },
    };
    match description {
        Ok(text) => {
            println!("{}", launch::launch_command(&text, Some(&out_dir)));
            Exit::Ok.into()
        }
        Err(e @ (launch::LaunchError::UnsafeOutDir(_) | launch::LaunchError::TooLong(_))) => {
            fail(&e.to_string(), Exit::Usage)
        }
        Err(e) => fail(&e.to_string(), Exit::DataErr),
    }
}

/// A template argument: a file if one exists at that path, else a name among `all` (taken
/// out of it); `None` if it is neither.
fn resolve(all: &mut Entries, target: &str) -> Option<Result<Template, TemplateError>> {
    let as_path = Path::new(target);
    if as_path.is_file() {
        return Some(templates::load_file(as_path));
    }
    let i = all.iter().position(|(name, _)| name == target)?;
    Some(all.remove(i).1)
}

fn no_such_template(target: &str, dir: &TemplateDir) -> ExitCode {
    fail(
        &format!(
            "no template `{target}`: not a file, nor a built-in template or one in {} (`callrec pipelines list` shows them)",
            dir.describe()
        ),
        Exit::NoInput,
    )
}

fn fail(message: &str, code: Exit) -> ExitCode {
    eprintln!("callrec pipelines: {message}");
    code.into()
}
