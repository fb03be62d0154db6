//! The Janus wire format (Janus 1.x, the JSON API over the `janus-protocol` WebSocket), as
//! plain serde types: what callrec reads and what it sends. Only the fields callrec uses are
//! declared; Janus adds others freely and they are ignored.
//!
//! Field names and shapes follow messages captured from Janus 1.1.2 (see `samples/`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A room or feed id: a number, or a string where Janus runs with `string_ids = true`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JanusId {
    /// The default kind of id.
    Num(u64),
    /// With `string_ids`.
    Str(String),
}

impl JanusId {
    /// Janus answers its own handle's `unpublish`/`leave` with `"ok"` in the field that
    /// names the publisher in other participants' events.
    pub fn is_ok_marker(&self) -> bool {
        matches!(self, JanusId::Str(s) if s == "ok")
    }

    /// The id as a JSON value, as Janus sends it (for meta).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            JanusId::Num(n) => (*n).into(),
            JanusId::Str(s) => s.as_str().into(),
        }
    }

    /// Its length as text, to refuse absurd string ids.
    pub fn text_len(&self) -> usize {
        match self {
            JanusId::Num(_) => 20,
            JanusId::Str(s) => s.len(),
        }
    }
}

impl fmt::Display for JanusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JanusId::Num(n) => write!(f, "{n}"),
            JanusId::Str(s) => f.write_str(s),
        }
    }
}

/// One message from Janus, by its `janus` field.
#[derive(Debug, Deserialize)]
#[serde(tag = "janus", rename_all = "lowercase")]
pub enum Incoming {
    /// The answer to a core request (create, attach, detach, destroy) or to a synchronous
    /// plugin request (`list`), with the plugin's reply in `plugindata`.
    Success {
        /// The request it answers.
        transaction: Option<String>,
        /// The new session's or handle's id (create, attach).
        data: Option<Created>,
        /// A plugin's reply.
        plugindata: Option<PluginData>,
    },
    /// A request was received; its result comes later (or, for keepalive and trickle, this
    /// is all). Janus may send it after the result.
    Ack {},
    /// A plugin event: the result of an asynchronous request (with its transaction), or
    /// news from the room (without one).
    Event {
        /// The request it answers, if it answers one.
        transaction: Option<String>,
        /// The handle it is for.
        sender: u64,
        /// What the plugin says.
        plugindata: PluginData,
        /// An SDP offer (subscriber) or answer (publisher).
        jsep: Option<Jsep>,
    },
    /// The core refused a request.
    Error {
        /// The request.
        transaction: Option<String>,
        /// The session it named, if any.
        session_id: Option<u64>,
        /// Why.
        error: CoreError,
    },
    /// One of Janus's ICE candidates (with `full_trickle`), or the end of them.
    Trickle {
        /// The handle.
        sender: u64,
        /// The candidate.
        candidate: RemoteCandidate,
    },
    /// A handle's PeerConnection is up.
    Webrtcup {
        /// The handle.
        sender: u64,
    },
    /// A handle's PeerConnection was closed.
    Hangup {
        /// The handle.
        sender: u64,
        /// Janus's reason (untrusted).
        reason: Option<String>,
    },
    /// A handle is gone.
    Detached {
        /// The handle.
        sender: u64,
    },
    /// The session expired for want of keepalives.
    Timeout {
        /// The session.
        session_id: u64,
    },
    /// Everything else (`media`, `slowlink`, `server_info`…): nothing callrec acts on.
    #[serde(other)]
    Other,
}

/// `data` of a create or attach `success`.
#[derive(Debug, Deserialize)]
pub struct Created {
    /// The session's or handle's id.
    pub id: u64,
}

/// `error` of a core error.
#[derive(Debug, Deserialize)]
pub struct CoreError {
    /// Janus's error code (458: no such session, 403: unauthorized…).
    pub code: i64,
    /// Its text (untrusted).
    pub reason: String,
}

/// `plugindata` of an event or success.
#[derive(Debug, Deserialize)]
pub struct PluginData {
    /// The plugin's package name.
    pub plugin: String,
    /// What it says.
    pub data: VideoRoom,
}

/// The VideoRoom plugin's message: one shape for all of them, told apart by `videoroom`
/// and by which fields are present.
#[derive(Debug, Default, Deserialize)]
pub struct VideoRoom {
    /// `joined`, `event`, `attached`, `updated`, `updating`, `destroyed`, `success`…
    #[serde(default)]
    pub videoroom: String,
    /// The room's description (`joined`).
    pub description: Option<String>,
    /// The id a subscriber gives to say which participant it belongs to (`joined`).
    pub private_id: Option<u64>,
    /// Active publishers (`joined`), or new ones (`event`).
    pub publishers: Option<Vec<Publisher>>,
    /// A subscription's m-lines (`attached`, `updated`).
    pub streams: Option<Vec<SubscriptionStream>>,
    /// Who stopped publishing, or `"ok"` for ourselves.
    pub unpublished: Option<JanusId>,
    /// Who left, or `"ok"` for ourselves.
    pub leaving: Option<JanusId>,
    /// Who was kicked.
    pub kicked: Option<JanusId>,
    /// Why we left (`"kicked"`).
    pub reason: Option<String>,
    /// The plugin's error code (426: no such room, 433: unauthorized, 428: no such feed…).
    pub error_code: Option<i64>,
    /// Its text (untrusted).
    pub error: Option<String>,
    /// The rooms (`list`).
    pub list: Option<Vec<ListedRoom>>,
}

/// A publisher as `joined` and `publishers` events list them.
#[derive(Debug, Clone, Deserialize)]
pub struct Publisher {
    /// The feed id.
    pub id: JanusId,
    /// Their display name (untrusted).
    pub display: Option<String>,
    /// A placeholder publisher of a room with `dummy_publisher`: nobody.
    #[serde(default)]
    pub dummy: bool,
    /// What they publish.
    #[serde(default)]
    pub streams: Vec<PublishedStream>,
}

/// One stream a publisher publishes.
#[derive(Debug, Clone, Deserialize)]
pub struct PublishedStream {
    /// `audio`, `video` or `data`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its mid on the publisher's side.
    pub mid: Option<String>,
    /// Refused or stopped (a codec the room does not allow, a track removed).
    #[serde(default)]
    pub disabled: bool,
}

/// One m-line of a multistream subscription.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionStream {
    /// `audio`, `video` or `data`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The m-line's mid in the subscription's SDP.
    pub mid: String,
    /// The m-line's index.
    pub mindex: u32,
    /// False once its publisher is gone. Janus 1.0 may leave it out, meaning active.
    #[serde(default = "yes")]
    pub active: bool,
    /// The publisher it carries.
    pub feed_id: Option<JanusId>,
    /// Their display name (untrusted).
    pub feed_display: Option<String>,
    /// The stream's mid on the publisher's side.
    pub feed_mid: Option<String>,
    /// The codec name.
    pub codec: Option<String>,
}

fn yes() -> bool {
    true
}

/// A room in a `list` reply.
#[derive(Debug, Clone, Deserialize)]
pub struct ListedRoom {
    /// Its id.
    pub room: JanusId,
    /// Its description (untrusted).
    pub description: Option<String>,
}

/// An SDP with its type, as Janus carries it beside a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jsep {
    /// `offer` or `answer`.
    #[serde(rename = "type")]
    pub kind: JsepKind,
    /// The SDP text.
    pub sdp: String,
}

/// The type of a [`Jsep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsepKind {
    /// An offer.
    Offer,
    /// An answer.
    Answer,
}

/// A trickled candidate from Janus, or its end.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RemoteCandidate {
    /// One candidate.
    Candidate {
        /// The candidate line.
        candidate: String,
        /// Its m-line.
        #[serde(rename = "sdpMLineIndex")]
        mline: Option<u32>,
    },
    /// `{"completed": true}`.
    Completed {
        /// Always true.
        completed: bool,
    },
}

/// A request to Janus: the envelope every request shares. Absent fields are left out.
#[derive(Debug, Serialize)]
pub struct Request {
    /// `create`, `attach`, `message`, `trickle`, `keepalive`, `detach`.
    pub janus: &'static str,
    /// Unique per request; Janus echoes it in the reply.
    pub transaction: String,
    /// Our session (all but `create`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u64>,
    /// The handle (`message`, `trickle`, `detach`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<u64>,
    /// The plugin to attach to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<&'static str>,
    /// A label for the handle that Janus's admin API shows (`attach`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opaque_id: Option<String>,
    /// The plugin request (`message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    /// Our SDP answer (`message` with `start`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jsep: Option<Jsep>,
    /// Our ICE candidate (`trickle`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<LocalCandidate>,
    /// Janus's `api_secret`, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apisecret: Option<String>,
}

impl Request {
    /// A request of type `janus` with nothing else set.
    pub fn new(janus: &'static str, transaction: String) -> Self {
        Request {
            janus,
            transaction,
            session_id: None,
            handle_id: None,
            plugin: None,
            opaque_id: None,
            body: None,
            jsep: None,
            candidate: None,
            apisecret: None,
        }
    }
}

/// A VideoRoom request, the `body` of a `message`.
#[derive(Debug, Serialize)]
#[serde(tag = "request", rename_all = "lowercase")]
pub enum Body {
    /// List the rooms (private ones too with the right `admin_key`).
    List {
        /// The plugin's `admin_key`.
        #[serde(skip_serializing_if = "Option::is_none")]
        admin_key: Option<String>,
    },
    /// Join a room as a publisher (that never publishes) or as a subscriber.
    Join(Join),
    /// Subscribe to more feeds on an existing subscription.
    Update {
        /// The feeds to add.
        subscribe: Vec<FeedRef>,
    },
    /// Answer the subscription's offer (initial or renegotiation; the jsep goes beside).
    Start,
}

/// The two kinds of `join`.
#[derive(Debug, Serialize)]
#[serde(tag = "ptype", rename_all = "lowercase")]
pub enum Join {
    /// A publisher that learns the room's publishers and never publishes.
    Publisher {
        /// The room.
        room: JanusId,
        /// How callrec appears in `listparticipants`.
        display: String,
        /// The room's PIN.
        #[serde(skip_serializing_if = "Option::is_none")]
        pin: Option<String>,
        /// An invitation token for a room with an ACL (`allowed`).
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// One multistream subscription for the room.
    Subscriber {
        /// The room.
        room: JanusId,
        /// The feeds to receive, every stream of each.
        streams: Vec<FeedRef>,
        /// The passive publisher's private id, for rooms with `require_pvtid`.
        #[serde(skip_serializing_if = "Option::is_none")]
        private_id: Option<u64>,
        /// The room's PIN.
        #[serde(skip_serializing_if = "Option::is_none")]
        pin: Option<String>,
        /// An invitation token.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Janus removes a leaving publisher's streams and re-offers by itself, so callrec
        /// never sends `unsubscribe` (the default, stated so no room setting changes it).
        autoupdate: bool,
    },
}

/// A stream in `streams`/`subscribe`: one of a publisher's streams, or all of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedRef {
    /// The feed id.
    pub feed: JanusId,
    /// The stream's mid on the publisher's side; all their streams without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
}

/// Our candidate in a `trickle`, or the end of them.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum LocalCandidate {
    /// One candidate.
    Candidate {
        /// The candidate line.
        candidate: String,
        /// Its m-line.
        #[serde(rename = "sdpMLineIndex")]
        mline: u32,
    },
    /// `{"completed": true}`.
    Completed {
        /// Always true.
        completed: bool,
    },
}
