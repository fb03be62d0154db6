//! The one table of callrec's exit codes.
//!
//! The values are those of BSD's `sysexits.h`, which systemd and shell scripts know. Every
//! subcommand exits through [`Exit`], so the same failure gets the same code everywhere
//! (GStreamer missing is 69 in `run`, `remix` and `pipelines` alike). The README's "Exit
//! codes" line lists the same table.

/// How a callrec process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done; for `run`, a clean stop, also when the grace period ran out (those calls are
    /// marked `interrupted` on the next start).
    Ok = 0,
    /// 1: a second SIGTERM/SIGINT stopped `run` at once, without finalising recordings.
    Forced = 1,
    /// 64 (EX_USAGE): the command line is wrong, e.g. an unknown option, or an output
    /// directory that is not a safe path.
    Usage = 64,
    /// 65 (EX_DATAERR): input data is unusable: a broken template in `pipelines`, or a
    /// recording that `remix` or `render --from` cannot read.
    DataErr = 65,
    /// 66 (EX_NOINPUT): a named template or recording (a call directory without a
    /// readable manifest) does not exist, in `pipelines` and `remix` alike.
    NoInput = 66,
    /// 69 (EX_UNAVAILABLE): GStreamer cannot be initialised (not installed, or broken).
    Unavailable = 69,
    /// 70 (EX_SOFTWARE): an internal failure (the async runtime or signal handlers could
    /// not start, a remix pipeline failed); a bug or an exhausted machine.
    Software = 70,
    /// 73 (EX_CANTCREAT): the recordings directory or an output file cannot be written.
    CantCreate = 73,
    /// 78 (EX_CONFIG): the config file, a template it uses or the templates directory is
    /// unusable.
    Config = 78,
}

impl Exit {
    /// Every code, in numeric order (the order the README lists them).
    pub const ALL: [Exit; 9] = [
        Exit::Ok,
        Exit::Forced,
        Exit::Usage,
        Exit::DataErr,
        Exit::NoInput,
        Exit::Unavailable,
        Exit::Software,
        Exit::CantCreate,
        Exit::Config,
    ];

    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_sysexits_values() {
        // A changed value breaks scripts and unit files that test for it: keep them.
        let table = [
            (Exit::Ok, 0),
            (Exit::Forced, 1),
            (Exit::Usage, 64),
            (Exit::DataErr, 65),
            (Exit::NoInput, 66),
            (Exit::Unavailable, 69),
            (Exit::Software, 70),
            (Exit::CantCreate, 73),
            (Exit::Config, 78),
        ];
        for (exit, code) in table {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
        assert_eq!(Exit::ALL.to_vec(), table.map(|(e, _)| e).to_vec());
    }

    #[test]
    fn the_readme_lists_every_code() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("Exit codes")
            .expect("README has an Exit codes line");
        let paragraph = readme[start..].split("\n\n").next().unwrap_or_default();
        let listed: Vec<u8> = paragraph
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(listed, codes, "README's exit codes, in order: {paragraph}");
    }
}
