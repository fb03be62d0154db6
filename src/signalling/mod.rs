//! Signalling: the WebSocket connection to the app's existing signalling server.
//!
//! The rest of callrec never sees wire messages. A protocol adapter turns them into
//! [`SignalEvent`]s and turns [`SignalCommand`]s back into wire messages; the [`client`]
//! owns the socket, keeps it alive and reconnects.

pub mod client;
pub mod gst_webrtc;

use serde_json::Value;

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
