//! `callrec pipelines list|check|render`: the operator's tools for templates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use callrec::launch;
use callrec::offline::CallInputs;
use callrec::templates::{self, Template, TemplateError};

use super::{EX_CANTCREAT, EX_CONFIG, EX_DATAERR, EX_NOINPUT, EX_SOFTWARE, EX_USAGE};

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

/// `callrec pipelines list`: one line per template; broken ones are reported on stderr.
pub fn list(dir: &Path) -> ExitCode {
    let paths = match templates::template_files(dir) {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string(), EX_CONFIG),
    };
    let mut broken = false;
    let mut rows = vec![];
    for path in paths {
        match templates::load_file(&path) {
            Ok(t) => rows.push(t),
            Err(e) => {
                broken = true;
                eprintln!("{e}");
            }
        }
    }
    let width = rows.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:width$}  {:11}  {:40}  DESCRIPTION",
        "NAME", "SCOPE", "MEDIA"
    );
    for t in &rows {
        println!(
            "{:width$}  {:11}  {:40}  {}",
            t.name,
            t.scope.to_string(),
            t.media.join(","),
            t.description
        );
    }
    if broken {
        ExitCode::from(EX_DATAERR)
    } else {
        ExitCode::SUCCESS
    }
}

/// `callrec pipelines check [NAME|FILE...]`: every template (or the given ones) parsed and
/// built with GStreamer; each problem printed as `file:line: message`.
pub fn check(dir: &Path, targets: &[String]) -> ExitCode {
    if let Err(e) = gst::init() {
        return fail(&format!("cannot initialise GStreamer: {e}"), EX_SOFTWARE);
    }
    let paths = if targets.is_empty() {
        match templates::template_files(dir) {
            Ok(p) => p,
            Err(e) => return fail(&e.to_string(), EX_CONFIG),
        }
    } else {
        let mut paths = vec![];
        for target in targets {
            match resolve(dir, target) {
                Some(p) => paths.push(p),
                None => {
                    return fail(
                        &format!(
                            "no template `{target}`: not a file, nor a name in {} (`callrec pipelines list` shows them)",
                            dir.display()
                        ),
                        EX_NOINPUT,
                    )
                }
            }
        }
        paths
    };
    let mut problems = 0;
    let mut names: Vec<(String, PathBuf)> = vec![];
    for path in &paths {
        let result = templates::load_file(path).and_then(|t| {
            if let Some((_, other)) = names.iter().find(|(n, _)| *n == t.name) {
                return Err(TemplateError::Syntax {
                    path: path.clone(),
                    line: 1,
                    message: format!(
                        "template name `{}` is already used by {}; give one of them another `# name:`",
                        t.name,
                        other.display()
                    ),
                });
            }
            names.push((t.name.clone(), path.clone()));
            t.check().map(|()| t)
        });
        match result {
            Ok(t) => println!("ok     {} ({}, {})", t.name, t.scope, path.display()),
            Err(e) => {
                problems += 1;
                println!("error  {e}");
            }
        }
    }
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{problems} of {} template(s) cannot be used", paths.len());
        ExitCode::from(EX_DATAERR)
    }
}

/// `callrec pipelines render NAME`: prints a shell command that runs the template in
/// gst-launch-1.0, fed by test sources or a recorded call.
pub fn render(
    dir: &Path,
    target: &str,
    source: RenderSource,
    out_dir: Option<PathBuf>,
) -> ExitCode {
    if let Err(e) = gst::init() {
        return fail(&format!("cannot initialise GStreamer: {e}"), EX_SOFTWARE);
    }
    let Some(path) = resolve(dir, target) else {
        return fail(
            &format!(
                "no template `{target}`: not a file, nor a name in {} (`callrec pipelines list` shows them)",
                dir.display()
            ),
            EX_NOINPUT,
        );
    };
    let template: Template = match templates::load_file(&path) {
        Ok(t) => t,
        Err(e) => return fail(&e.to_string(), EX_DATAERR),
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
                EX_CANTCREAT,
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
                return fail(&e.to_string(), EX_NOINPUT)
            }
            Err(e) => return fail(&e.to_string(), EX_DATAERR),
        },
    };
    match description {
        Ok(text) => {
            println!("{}", launch::launch_command(&text, Some(&out_dir)));
            ExitCode::SUCCESS
        }
        Err(e @ launch::LaunchError::UnsafeOutDir(_)) => fail(&e.to_string(), EX_USAGE),
        Err(e) => fail(&e.to_string(), EX_DATAERR),
    }
}

/// A template argument: a file if one exists at that path, else a name in `dir`.
fn resolve(dir: &Path, target: &str) -> Option<PathBuf> {
    let as_path = Path::new(target);
    if as_path.is_file() {
        return Some(as_path.to_owned());
    }
    let paths = templates::template_files(dir).ok()?;
    paths.into_iter().find(|p| {
        templates::load_file(p)
            .map(|t| t.name == target)
            .unwrap_or_else(|_| p.file_stem().is_some_and(|s| s == target))
    })
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("callrec pipelines: {message}");
    ExitCode::from(code)
}
