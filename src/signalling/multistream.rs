//! Rooms whose participants all come over one session (an SFU's multistream subscription,
//! such as Janus VideoRoom's), described without any protocol's words.
//!
//! In callrec's model a room is a call, each publisher in it a participant, and each m-line
//! (mid) of the session a track. A gst-webrtc session carries one participant, so it needs
//! none of this; a room's session carries many, and [`RemoteStream`] says whose each m-line
//! is. Every text here comes from the network and is untrusted: names for files go through
//! [`crate::names`].

use serde_json::Value;

/// A room that callrec follows (see `SignalEvent::RoomAdded`).
#[derive(Debug, Clone, PartialEq)]
pub struct RoomInfo {
    /// The room's id on its server, as text. It names the room in `StartSession { peer_id }`
    /// and in the events; it is unique within one source only, so a call's key must also
    /// hold [`RoomInfo::source`].
    pub id: String,
    /// The name of the source (the configured server) it is on.
    pub source: String,
    /// The server's description of it (untrusted).
    pub description: Option<String>,
    /// `{"source": …, "room": <the id as the server sends it>, "description": …}`.
    pub meta: Value,
}

/// A publisher in a room (see `SignalEvent::ParticipantAdded`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantInfo {
    /// The publisher's id in the room, as text (Janus: the feed id).
    pub id: String,
    /// Their display name (untrusted; may be empty or hostile).
    pub display: Option<String>,
    /// `{"source": …, "room": …, "feed": <the id as the server sends it>, "name": <display>}`:
    /// `name` is what callrec names a participant's files after.
    pub meta: Value,
}

/// What one m-line of a room's session carries.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteStream {
    /// The m-line's `mid` in the session's SDP (webrtcbin transceivers carry it too).
    pub mid: String,
    /// The m-line's index in the SDP.
    pub mline: u32,
    /// Audio, video or data.
    pub kind: MediaKind,
    /// False for an m-line whose publisher is gone: it carries nothing until it is reused
    /// for another stream in a later offer.
    pub active: bool,
    /// [`ParticipantInfo::id`] of the publisher it comes from (none when inactive).
    pub participant_id: Option<String>,
    /// The publisher's display name, as the server sent it with the stream (untrusted).
    pub display: Option<String>,
    /// The mid of the stream in the publisher's own session.
    pub source_mid: Option<String>,
    /// The codec name as the server gives it (`vp8`, `opus`, `h264`…), for the log only: the
    /// SDP is what callrec records by.
    pub codec: Option<String>,
}

/// The kind of media an m-line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `m=audio`.
    Audio,
    /// `m=video`.
    Video,
    /// `m=application` (data channels).
    Data,
    /// Anything else the server names.
    Other,
}

impl MediaKind {
    /// The kind a server names with the SDP media word (`audio`, `video`, `data`).
    pub fn from_name(name: &str) -> Self {
        match name {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            "data" | "application" => MediaKind::Data,
            _ => MediaKind::Other,
        }
    }
}
