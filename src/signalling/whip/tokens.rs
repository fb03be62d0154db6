//! The bearer tokens a WHIP client must present, from `[[source]] tokens_file`: one a line,
//! `TOKEN` for every call or `CALL TOKEN` for one call; blank lines and `#` comments are
//! skipped. The file is read once, at start-up.

use std::path::{Path, PathBuf};

/// A tokens file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file could not be read.
    #[error("cannot read the WHIP tokens file {path}: {source} (check [[source]] tokens_file)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is neither `TOKEN` nor `CALL TOKEN`.
    #[error("WHIP tokens file {path}, line {line}: expected `TOKEN` or `CALL TOKEN` (no more than two words, tokens of 16 characters or more)")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
    },
    /// No token at all: nobody could publish.
    #[error("WHIP tokens file {path} holds no token; add one a line (`TOKEN`, or `CALL TOKEN` for one call)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Shortest token accepted: anything shorter is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// The tokens, and the calls each one opens.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<(Option<String>, String)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} entries)", self.entries.len())
    }
}

impl Tokens {
    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|line| match line {
            0 => TokensError::Empty {
                path: path.to_owned(),
            },
            line => TokensError::Line {
                path: path.to_owned(),
                line,
            },
        })
    }

    /// Parses the file's text; the error is the bad line's number, or 0 if there is no token.
    fn parse(text: &str) -> Result<Self, usize> {
        let mut entries = vec![];
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let entry = match words.as_slice() {
                [token] => (None, (*token).to_owned()),
                [call, token] => (Some((*call).to_owned()), (*token).to_owned()),
                _ => return Err(n + 1),
            };
            if entry.1.len() < MIN_TOKEN_LEN {
                return Err(n + 1);
            }
            entries.push(entry);
        }
        if entries.is_empty() {
            return Err(0);
        }
        Ok(Tokens { entries })
    }

    /// Whether `authorization` (the header's value) carries a token that opens `call`.
    /// `None` for `call`: any call (a token that opens none is refused before anything else
    /// is looked at, so an unknown session is not told apart from a bad token).
    pub fn allows(&self, authorization: Option<&str>, call: Option<&str>) -> bool {
        let Some(presented) = authorization.and_then(bearer) else {
            return false;
        };
        // Every entry is compared, in time independent of where they differ.
        self.entries.iter().fold(false, |ok, (only, token)| {
            let fits = match (only, call) {
                (None, _) | (Some(_), None) => true,
                (Some(only), Some(call)) => only == call,
            };
            constant_time_eq(token.as_bytes(), presented.as_bytes()) && fits || ok
        })
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme in any case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &str = "0123456789abcdef-all";
    const ONE: &str = "0123456789abcdef-one";

    #[test]
    fn tokens_open_every_call_or_one() {
        let tokens = Tokens::parse(&format!("# comment\n\n{ALL}\nstandup {ONE}\n")).unwrap();
        let auth = |t: &str| format!("Bearer {t}");
        assert!(tokens.allows(Some(&auth(ALL)), Some("anything")));
        assert!(tokens.allows(Some(&auth(ONE)), Some("standup")));
        assert!(!tokens.allows(Some(&auth(ONE)), Some("other")));
        assert!(tokens.allows(Some(&auth(ONE)), None));
        assert!(tokens.allows(Some(&format!("bearer  {ALL} ")), Some("x")));
        assert!(!tokens.allows(Some("Bearer wrong-token-0123456789"), Some("standup")));
        assert!(!tokens.allows(Some(&format!("Basic {ALL}")), Some("standup")));
        assert!(!tokens.allows(Some(ALL), Some("standup")));
        assert!(!tokens.allows(None, Some("standup")));
    }

    #[test]
    fn bad_files_name_the_line() {
        assert_eq!(Tokens::parse("# nothing\n").unwrap_err(), 0);
        assert_eq!(Tokens::parse(&format!("{ALL}\na b c\n")).unwrap_err(), 2);
        assert_eq!(Tokens::parse("short\n").unwrap_err(), 1);
    }
}
