//! The binary's command-line helpers shared by its subcommands: where the templates are.
//! Exit codes are [`callrec::exit::Exit`].

pub mod pipelines;

use std::path::{Path, PathBuf};

use callrec::config::{Config, DEFAULT_CONFIG_PATH};
use callrec::templates::TemplateDir;

/// The templates directory layered over the built-in templates: `--pipelines DIR`, else the
/// config's (`[recording] pipelines_dir`, or the packaged directory when it is unset).
/// Without a config file at the default path, the packaged directory, so the tools work
/// before callrec is configured; with none installed, the built-in templates alone.
pub fn template_dir(
    pipelines: Option<PathBuf>,
    config: Option<&Path>,
) -> Result<TemplateDir, String> {
    if let Some(dir) = pipelines {
        return Ok(TemplateDir::flag(dir));
    }
    let explicit = config.is_some();
    let path = config.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    if explicit || path.exists() {
        return Config::load(path)
            .map(|c| TemplateDir::from_config(c.recording.pipelines_dir.as_deref()))
            .map_err(|e| {
                format!(
                    "{}: {e} (or give the templates directory with --pipelines DIR)",
                    path.display()
                )
            });
    }
    Ok(TemplateDir::packaged())
}
