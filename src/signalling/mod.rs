//! Signalling: where calls come from. Each configured source is one of these: a WebSocket
//! connection to the app's existing signalling server, or the [`whip`] endpoint that
//! clients publish to.
//!
//! The rest of callrec never sees wire messages. A protocol adapter turns them into
//! [`SignalEvent`]s and turns [`SignalCommand`]s back into wire messages; the [`client`]
//! owns the socket, keeps it alive and reconnects. The WHIP endpoint speaks the same events
//! and commands over HTTP.

pub mod client;
pub mod gst_webrtc;
pub mod janus;
pub mod multistream;
pub mod whip;

use std::time::Instant;

use serde_json::Value;

pub use multistream::{MediaKind, ParticipantInfo, RemoteStream, RoomInfo};

/// One signalling protocol: wire messages in, [`SignalEvent`]s out, and [`SignalCommand`]s
/// in, wire messages out. Implementations are plain data with no I/O, so they are tested on
/// sample messages; the [`client`] owns the socket and calls them.
///
/// The first three methods are all a protocol like gst-webrtc's needs. The others have
/// defaults that do nothing, for protocols that hold a conversation of their own (Janus):
/// requests that follow from replies, keepalives, and state that dies with the connection.
pub trait Protocol: Send + 'static {
    /// The messages to send once connected (registering, listing what already exists).
    /// Called on every connection, so it starts the protocol's state afresh.
    fn hello(&mut self) -> Vec<String>;
    /// Translates one text message from the server (one message may give several events).
    fn parse(&mut self, text: &str) -> Result<Vec<SignalEvent>, ProtocolError>;
    /// Translates a command into the messages that carry it.
    fn encode(&mut self, command: &SignalCommand) -> Vec<String>;
    /// The WebSocket subprotocol to ask for in the handshake, if the server requires one.
    fn subprotocol(&self) -> Option<&'static str> {
        None
    }
    /// Time passes: the messages due now (keepalives, periodic listings). The client calls
    /// it about once a second while connected; `now` comes from the caller so tests can
    /// step time.
    fn tick(&mut self, _now: Instant) -> Vec<String> {
        Vec::new()
    }
    /// What the protocol produced on its own in the last [`parse`](Self::parse),
    /// [`encode`](Self::encode) or [`tick`](Self::tick): requests that follow from a reply
    /// (attach after create, join after attach) and events that no server message carries
    /// (a command refused, a request that was never answered). The client sends and
    /// forwards them after each of those calls.
    fn take_output(&mut self) -> Output {
        Output::default()
    }
    /// The connection is gone: events for everything that ended with it (sessions,
    /// participants, rooms). The client forwards them after [`SignalEvent::Disconnected`].
    fn disconnected(&mut self) -> Vec<SignalEvent> {
        Vec::new()
    }
}

/// Messages and events a protocol produced on its own (see [`Protocol::take_output`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    /// Text frames to send, in order.
    pub messages: Vec<String>,
    /// Events to forward, in order, after the messages are sent.
    pub events: Vec<SignalEvent>,
}

/// A message from the server that callrec cannot use; it is logged and skipped.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Not JSON, or not a message of this protocol.
    #[error("malformed signalling message ({source}); ignoring it: {excerpt}")]
    Malformed {
        /// The parser's error.
        source: serde_json::Error,
        /// The start of the message, for the log.
        excerpt: String,
    },
    /// A message of the protocol that makes no sense where callrec stands (an event from a
    /// handle it does not have, a reply missing what it must carry).
    #[error("unexpected signalling message ({what}); ignoring it: {excerpt}")]
    Unexpected {
        /// What is wrong with it.
        what: String,
        /// The start of the message, for the log.
        excerpt: String,
    },
}

impl ProtocolError {
    /// The start of a message, cut on a character boundary, for a log line.
    pub fn excerpt(text: &str) -> String {
        text.chars().take(200).collect()
    }
}

/// Something the signalling server told us, in protocol-neutral terms.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalEvent {
    /// The connection is up and callrec is registered (after every reconnect too).
    Connected,
    /// The connection dropped; the client is reconnecting.
    Disconnected {
        /// Why, for the log.
        reason: String,
    },
    /// A producer exists (already there at connect time, or newly registered).
    ProducerAdded {
        /// Its id on the server.
        peer_id: String,
        /// Its `meta`, as sent (untrusted).
        meta: Option<Value>,
    },
    /// A producer stopped producing or left.
    ProducerRemoved {
        /// Its id on the server.
        peer_id: String,
    },
    /// A session callrec asked for has started.
    SessionStarted {
        /// The server's session id.
        session_id: String,
        /// The producer it is with; for a room ([`SignalEvent::RoomAdded`]), the room's id.
        peer_id: String,
    },
    /// The producer's SDP offer; a later one on the same session is a renegotiation.
    Offer {
        /// The session.
        session_id: String,
        /// The SDP text (untrusted).
        sdp: String,
    },
    /// The producer's SDP answer (when callrec offered).
    Answer {
        /// The session.
        session_id: String,
        /// The SDP text (untrusted).
        sdp: String,
    },
    /// A trickled ICE candidate from the producer.
    Ice {
        /// The session.
        session_id: String,
        /// The candidate line.
        candidate: String,
        /// The m-line it belongs to.
        mline_index: u32,
    },
    /// The session ended on the other side (endSession, or the producer left).
    SessionEnded {
        /// The session.
        session_id: String,
    },
    /// The server reported an error about something callrec sent.
    ServerError {
        /// The server's text (untrusted).
        details: String,
    },
    /// A room exists and callrec follows it (Janus VideoRoom): one call of several
    /// participants whose media all comes over one session. Nothing is recorded until a
    /// participant publishes; then `StartSession { peer_id: room.id }` asks for its media.
    RoomAdded {
        /// What the room is.
        room: RoomInfo,
    },
    /// A room callrec followed is gone (destroyed, or the connection to the server was lost).
    /// Its session's `SessionEnded` and its participants' `ParticipantRemoved` come first.
    RoomRemoved {
        /// [`RoomInfo::id`].
        room_id: String,
        /// Why, for the log and the manifest.
        reason: String,
    },
    /// A participant publishes in a room. The same id may come again after a
    /// `ParticipantRemoved`: they published anew (new files beside the old ones).
    ParticipantAdded {
        /// [`RoomInfo::id`].
        room_id: String,
        /// Who.
        participant: ParticipantInfo,
    },
    /// A participant stopped publishing, left, or was kicked.
    ParticipantRemoved {
        /// [`RoomInfo::id`].
        room_id: String,
        /// [`ParticipantInfo::id`].
        participant_id: String,
        /// Why, for the log and the manifest.
        reason: String,
    },
    /// The layout of a session that carries several participants: which participant and
    /// track each m-line (mid) carries. Always the whole table, sent with every offer that
    /// changes it and just before that offer.
    StreamsChanged {
        /// The session.
        session_id: String,
        /// Every m-line of the session, in m-line order.
        streams: Vec<RemoteStream>,
    },
}

/// Something callrec asks the signalling server to do.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalCommand {
    /// Start a session with a producer; with `offer`, callrec offers instead of the producer.
    StartSession {
        /// The producer.
        peer_id: String,
        /// callrec's own SDP offer, if it offers.
        offer: Option<String>,
    },
    /// Send our SDP answer.
    Answer {
        /// The session.
        session_id: String,
        /// The SDP text.
        sdp: String,
    },
    /// Send one of our ICE candidates.
    Ice {
        /// The session.
        session_id: String,
        /// The candidate line.
        candidate: String,
        /// The m-line it belongs to.
        mline_index: u32,
    },
    /// No more ICE candidates of ours will come for this session (end of gathering).
    EndOfCandidates {
        /// The session.
        session_id: String,
    },
    /// End a session from our side.
    EndSession {
        /// The session.
        session_id: String,
    },
}
