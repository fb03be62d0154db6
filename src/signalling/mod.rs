//! Signalling: the WebSocket connection to the app's existing signalling server.
//!
//! The rest of callrec never sees wire messages. A protocol adapter turns them into
//! [`SignalEvent`]s and turns [`SignalCommand`]s back into wire messages; the [`client`]
//! owns the socket, keeps it alive and reconnects.

pub mod client;
pub mod gst_webrtc;

use serde_json::Value;

/// One signalling protocol: wire messages in, [`SignalEvent`]s out, and [`SignalCommand`]s
/// in, wire messages out. Implementations are plain data with no I/O, so they are tested on
/// sample messages; the [`client`] owns the socket and calls them.
pub trait Protocol: Send + 'static {
    /// The messages to send once connected (registering, listing what already exists).
    fn hello(&mut self) -> Vec<String>;
    /// Translates one text message from the server (one message may give several events).
    fn parse(&mut self, text: &str) -> Result<Vec<SignalEvent>, ProtocolError>;
    /// Translates a command into the messages that carry it.
    fn encode(&mut self, command: &SignalCommand) -> Vec<String>;
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
        /// The producer it is with.
        peer_id: String,
    },
    /// The producer's SDP offer.
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
    /// End a session from our side.
    EndSession {
        /// The session.
        session_id: String,
    },
}
