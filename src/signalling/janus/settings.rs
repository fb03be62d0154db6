//! What one Janus source is configured with: which rooms, and the secrets to get in. The
//! config reads secrets from files and hands them over as values; they go to Janus and are
//! never printed (their `Debug` is blank).

use std::collections::BTreeMap;
use std::fmt;

use super::messages::JanusId;
#[cfg(doc)]
use super::RELIST_EVERY;

/// A secret (a PIN, a key): sent to Janus, never shown in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value (read from its file by the caller).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for a request to Janus.
    pub(super) fn expose(&self) -> String {
        self.0.clone()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Which rooms to record.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomSelection {
    /// Every room the plugin's `list` shows (private ones too with the admin key), listed
    /// again every [`RELIST_EVERY`].
    All,
    /// These rooms; one that does not exist (yet) is tried again every [`RELIST_EVERY`].
    List(Vec<JanusId>),
}

/// What it takes to join a room.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomAccess {
    /// The room's `pin`.
    pub pin: Option<Secret>,
    /// An invitation token, for a room with an `allowed` list.
    pub token: Option<Secret>,
}

/// The settings of one Janus source.
#[derive(Debug, Clone, PartialEq)]
pub struct JanusSettings {
    /// The source's name (`[[source]] name`): in every room's and participant's meta.
    pub source: String,
    /// Which rooms.
    pub rooms: RoomSelection,
    /// PINs and tokens, per room.
    pub access: BTreeMap<JanusId, RoomAccess>,
    /// The VideoRoom plugin's `admin_key`, to list private rooms too.
    pub admin_key: Option<Secret>,
    /// Janus's `api_secret`, sent with every request when set.
    pub api_secret: Option<Secret>,
    /// The display name callrec joins rooms with (others see it in `listparticipants`).
    pub display: String,
}

impl JanusSettings {
    /// Settings for `source` and `rooms`, with no secrets and the display name `callrec`.
    pub fn new(source: impl Into<String>, rooms: RoomSelection) -> Self {
        JanusSettings {
            source: source.into(),
            rooms,
            access: BTreeMap::new(),
            admin_key: None,
            api_secret: None,
            display: "callrec".into(),
        }
    }
}

/// A secret file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use {path}: {message}")]
pub struct SecretFileError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What is wrong, and what to do.
    pub message: String,
}

/// The most a secret file may hold: a key or a list of room PINs, not a recording.
const MAX_SECRET_FILE: u64 = 1 << 20;

fn read_text(path: &std::path::Path) -> Result<String, SecretFileError> {
    let fail = |message: String| SecretFileError {
        path: path.to_owned(),
        message,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(format!("{e} (check the path and that callrec may read it)")))?
        .len();
    if len > MAX_SECRET_FILE {
        return Err(fail(format!(
            "{len} bytes is too large for a secret file (at most {MAX_SECRET_FILE})"
        )));
    }
    std::fs::read_to_string(path).map_err(|e| fail(format!("{e} (it must be readable UTF-8 text)")))
}

/// Reads a secret held alone in a file (an admin key, an API secret): its first line, with
/// surrounding whitespace removed.
pub fn read_secret(path: &std::path::Path) -> Result<Secret, SecretFileError> {
    let text = read_text(path)?;
    let value = text.lines().next().unwrap_or("").trim();
    if value.is_empty() {
        return Err(SecretFileError {
            path: path.to_owned(),
            message: "the file is empty; put the secret on its first line".into(),
        });
    }
    Ok(Secret::new(value))
}

/// Reads room PINs, one `ROOM PIN` a line (blank lines and `#` comments skipped). A room id
/// of digits is a numeric id, anything else a string id.
pub fn read_pins(path: &std::path::Path) -> Result<BTreeMap<JanusId, RoomAccess>, SecretFileError> {
    let text = read_text(path)?;
    let mut access = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(room), Some(pin), None) = (words.next(), words.next(), words.next()) else {
            return Err(SecretFileError {
                path: path.to_owned(),
                message: format!("line {}: expected `ROOM PIN`", n + 1),
            });
        };
        let room = match room.parse::<u64>() {
            Ok(id) => JanusId::Num(id),
            Err(_) => JanusId::Str(room.to_owned()),
        };
        access.insert(
            room,
            RoomAccess {
                pin: Some(Secret::new(pin)),
                token: None,
            },
        );
    }
    Ok(access)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_read_per_room() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pins");
        std::fs::write(&path, "# rooms\n1234 s3cret\n\nlobby  p2\n").unwrap();
        let pins = read_pins(&path).unwrap();
        assert_eq!(pins[&JanusId::Num(1234)].pin, Some(Secret::new("s3cret")));
        assert_eq!(
            pins[&JanusId::Str("lobby".into())].pin,
            Some(Secret::new("p2"))
        );
        std::fs::write(&path, "1234\n").unwrap();
        let err = read_pins(&path).unwrap_err().to_string();
        assert!(err.contains("line 1: expected `ROOM PIN`"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_secret(&path)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        std::fs::write(&path, " key \nignored\n").unwrap();
        assert_eq!(read_secret(&path).unwrap(), Secret::new("key"));
        assert!(read_secret(&dir.path().join("none")).is_err());
    }
}
