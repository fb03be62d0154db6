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
