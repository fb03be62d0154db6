//! The binary's command-line helpers shared by its subcommands: exit codes and where the
//! templates are.

pub mod pipelines;

use std::path::{Path, PathBuf};

use callrec::config::{Config, DEFAULT_CONFIG_PATH};

/// EX_USAGE from sysexits.h.
pub const EX_USAGE: u8 = 64;
/// EX_DATAERR from sysexits.h.
pub const EX_DATAERR: u8 = 65;
/// EX_NOINPUT from sysexits.h.
pub const EX_NOINPUT: u8 = 66;
/// EX_SOFTWARE from sysexits.h.
pub const EX_SOFTWARE: u8 = 70;
/// EX_CANTCREAT from sysexits.h.
pub const EX_CANTCREAT: u8 = 73;
/// EX_CONFIG from sysexits.h.
pub const EX_CONFIG: u8 = 78;

/// The templates directory: `--pipelines`, else the config's `pipelines_dir`. Without a
/// config file at the default path, `./pipelines` (a source checkout) or the packaged
/// directory, so the tools work before callrec is configured.
pub fn pipelines_dir(pipelines: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = pipelines {
        return Ok(dir);
    }
    let explicit = config.is_some();
    let path = config.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    if explicit || path.exists() {
        return Config::load(path)
            .map(|c| c.recording.pipelines_dir)
            .map_err(|e| {
                format!(
                    "{}: {e} (or give the templates directory with --pipelines DIR)",
                    path.display()
                )
            });
    }
    let local = PathBuf::from("pipelines");
    Ok(if local.is_dir() {
        local
    } else {
        PathBuf::from("/usr/share/callrec/pipelines")
    })
}
