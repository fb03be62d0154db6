//! The JSON protocol of `gst-webrtc-signalling-server`, as a listener and consumer.
//!
//! Plain translation, no I/O: wire text in, [`SignalEvent`]s out; [`SignalCommand`]s in,
//! wire text out. The message types are those of the `gst-plugin-webrtc-signalling-protocol`
//! crate, so we follow the server exactly.

use gst_plugin_webrtc_signalling_protocol as p;
use serde_json::Value;

pub use super::ProtocolError;
use super::{Protocol, SignalCommand, SignalEvent};

/// The gst-webrtc protocol as callrec speaks it: a listener that starts consumer sessions.
#[derive(Debug, Clone)]
pub struct GstWebrtc {
    /// The meta callrec registers with (`[signalling] meta`).
    pub meta: serde_json::Map<String, Value>,
}

impl Protocol for GstWebrtc {
    fn hello(&mut self) -> Vec<String> {
        hello(&self.meta)
    }

    fn parse(&mut self, text: &str) -> Result<Vec<SignalEvent>, ProtocolError> {
        parse(text)
    }

    fn encode(&mut self, command: &SignalCommand) -> Vec<String> {
        serialize(command).into_iter().collect()
    }
}

/// The messages callrec sends right after connecting: register as a listener (so the server
/// tells us about producers) and ask for the producers that already exist.
pub fn hello(meta: &serde_json::Map<String, Value>) -> Vec<String> {
    let status = p::IncomingMessage::SetPeerStatus(p::PeerStatus {
        roles: vec![p::PeerRole::Listener],
        meta: Some(Value::Object(meta.clone())),
        peer_id: None,
    });
    vec![to_text(&status), to_text(&p::IncomingMessage::List)]
}

/// Translates one text frame from the server into events (a `list` gives several).
pub fn parse(text: &str) -> Result<Vec<SignalEvent>, ProtocolError> {
    let msg: p::OutgoingMessage =
        serde_json::from_str(text).map_err(|source| ProtocolError::Malformed {
            source,
            excerpt: ProtocolError::excerpt(text),
        })?;
    Ok(match msg {
        p::OutgoingMessage::Welcome { .. } | p::OutgoingMessage::ListConsumers { .. } => vec![],
        p::OutgoingMessage::PeerStatusChanged(status) => match status.peer_id {
            // A status without an id cannot be acted on.
            None => vec![],
            Some(peer_id) if status.producing() => vec![SignalEvent::ProducerAdded {
                peer_id,
                meta: status.meta,
            }],
            Some(peer_id) => vec![SignalEvent::ProducerRemoved { peer_id }],
        },
        p::OutgoingMessage::List { producers } => producers
            .into_iter()
            .map(|peer| SignalEvent::ProducerAdded {
                peer_id: peer.id,
                meta: peer.meta,
            })
            .collect(),
        p::OutgoingMessage::SessionStarted {
            peer_id,
            session_id,
        } => vec![SignalEvent::SessionStarted {
            session_id,
            peer_id,
        }],
        // A producer-initiated session towards a passive consumer: callrec does not register
        // as one, so this is unexpected; ending it is the polite answer.
        p::OutgoingMessage::StartSession { session_id, .. } => {
            vec![SignalEvent::SessionEnded { session_id }]
        }
        p::OutgoingMessage::EndSession(end) => vec![SignalEvent::SessionEnded {
            session_id: end.session_id,
        }],
        p::OutgoingMessage::Peer(msg) => {
            let session_id = msg.session_id;
            vec![match msg.peer_message {
                p::PeerMessageInner::Sdp(p::SdpMessage::Offer { sdp }) => {
                    SignalEvent::Offer { session_id, sdp }
                }
                p::PeerMessageInner::Sdp(p::SdpMessage::Answer { sdp }) => {
                    SignalEvent::Answer { session_id, sdp }
                }
                p::PeerMessageInner::Ice {
                    candidate,
                    sdp_m_line_index,
                } => SignalEvent::Ice {
                    session_id,
                    candidate,
                    mline_index: sdp_m_line_index,
                },
            }]
        }
        p::OutgoingMessage::Error { details } => vec![SignalEvent::ServerError { details }],
    })
}

/// Translates a command into the text frame to send; `None` for a command this protocol has
/// no message for (it has no end-of-candidates message).
pub fn serialize(command: &SignalCommand) -> Option<String> {
    let msg = match command.clone() {
        SignalCommand::StartSession { peer_id, offer } => {
            p::IncomingMessage::StartSession(p::StartSessionMessage { peer_id, offer })
        }
        SignalCommand::Answer { session_id, sdp } => p::IncomingMessage::Peer(p::PeerMessage {
            session_id,
            peer_message: p::PeerMessageInner::Sdp(p::SdpMessage::Answer { sdp }),
        }),
        SignalCommand::Ice {
            session_id,
            candidate,
            mline_index,
        } => p::IncomingMessage::Peer(p::PeerMessage {
            session_id,
            peer_message: p::PeerMessageInner::Ice {
                candidate,
                sdp_m_line_index: mline_index,
            },
        }),
        SignalCommand::EndSession { session_id } => {
            p::IncomingMessage::EndSession(p::EndSessionMessage { session_id })
        }
        SignalCommand::EndOfCandidates { .. } => return None,
    };
    Some(to_text(&msg))
}

fn to_text(msg: &p::IncomingMessage) -> String {
    // These types hold only strings and JSON values, which always serialise.
    serde_json::to_string(msg).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> SignalEvent {
        let mut events = parse(text).unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        events.remove(0)
    }

    #[test]
    fn hello_registers_as_listener_and_lists() {
        let mut meta = serde_json::Map::new();
        meta.insert("name".into(), "callrec".into());
        let msgs = hello(&meta);
        let status: Value = serde_json::from_str(&msgs[0]).unwrap();
        assert_eq!(
            status,
            json!({"type": "setPeerStatus", "roles": ["listener"], "meta": {"name": "callrec"}})
        );
        let list: Value = serde_json::from_str(&msgs[1]).unwrap();
        assert_eq!(list, json!({"type": "list"}));
    }

    #[test]
    fn producer_status_changes() {
        let added = one(
            r#"{"type":"peerStatusChanged","roles":["producer"],"meta":{"call":"c1"},"peerId":"p1"}"#,
        );
        assert_eq!(
            added,
            SignalEvent::ProducerAdded {
                peer_id: "p1".into(),
                meta: Some(json!({"call": "c1"}))
            }
        );
        let removed = one(r#"{"type":"peerStatusChanged","roles":[],"meta":null,"peerId":"p1"}"#);
        assert_eq!(
            removed,
            SignalEvent::ProducerRemoved {
                peer_id: "p1".into()
            }
        );
        // Listeners and consumers appearing are not producers.
        let listener =
            one(r#"{"type":"peerStatusChanged","roles":["listener"],"meta":null,"peerId":"l"}"#);
        assert!(matches!(listener, SignalEvent::ProducerRemoved { .. }));
    }

    #[test]
    fn list_gives_one_event_per_producer() {
        let events = parse(
            r#"{"type":"list","producers":[{"id":"a","meta":{"call":"x"}},{"id":"b","meta":null}]}"#,
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1],
            SignalEvent::ProducerAdded {
                peer_id: "b".into(),
                meta: None
            }
        );
    }

    #[test]
    fn session_messages() {
        assert_eq!(
            one(r#"{"type":"sessionStarted","peerId":"p","sessionId":"s"}"#),
            SignalEvent::SessionStarted {
                session_id: "s".into(),
                peer_id: "p".into()
            }
        );
        assert_eq!(
            one(r#"{"type":"peer","sessionId":"s","sdp":{"type":"offer","sdp":"v=0"}}"#),
            SignalEvent::Offer {
                session_id: "s".into(),
                sdp: "v=0".into()
            }
        );
        assert_eq!(
            one(
                r#"{"type":"peer","sessionId":"s","ice":{"candidate":"candidate:1","sdpMLineIndex":1}}"#
            ),
            SignalEvent::Ice {
                session_id: "s".into(),
                candidate: "candidate:1".into(),
                mline_index: 1
            }
        );
        assert_eq!(
            one(r#"{"type":"endSession","sessionId":"s"}"#),
            SignalEvent::SessionEnded {
                session_id: "s".into()
            }
        );
        assert_eq!(
            one(r#"{"type":"error","details":"boom"}"#),
            SignalEvent::ServerError {
                details: "boom".into()
            }
        );
        assert!(parse(r#"{"type":"welcome","peerId":"me"}"#)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"type":"nope"}"#,
            r#"{"type":"peer","sessionId":5}"#,
            r#"{"type":"peer","sessionId":"s","ice":{"candidate":1}}"#,
            "[1,2,3]",
            &"{".repeat(100_000),
        ] {
            assert!(parse(bad).is_err(), "{bad:.40}");
        }
    }

    fn text_of(command: &SignalCommand) -> String {
        serialize(command).unwrap()
    }

    #[test]
    fn commands_serialise_to_the_wire_format() {
        assert_eq!(
            serialize(&SignalCommand::EndOfCandidates {
                session_id: "s".into()
            }),
            None
        );
        let start: Value = serde_json::from_str(&text_of(&SignalCommand::StartSession {
            peer_id: "p".into(),
            offer: None,
        }))
        .unwrap();
        assert_eq!(
            start,
            json!({"type": "startSession", "peerId": "p", "offer": null})
        );
        let answer: Value = serde_json::from_str(&text_of(&SignalCommand::Answer {
            session_id: "s".into(),
            sdp: "v=0".into(),
        }))
        .unwrap();
        assert_eq!(
            answer,
            json!({"type": "peer", "sessionId": "s", "sdp": {"type": "answer", "sdp": "v=0"}})
        );
        let ice: Value = serde_json::from_str(&text_of(&SignalCommand::Ice {
            session_id: "s".into(),
            candidate: "c".into(),
            mline_index: 0,
        }))
        .unwrap();
        assert_eq!(
            ice,
            json!({"type": "peer", "sessionId": "s", "ice": {"candidate": "c", "sdpMLineIndex": 0}})
        );
        let end: Value = serde_json::from_str(&text_of(&SignalCommand::EndSession {
            session_id: "s".into(),
        }))
        .unwrap();
        assert_eq!(end, json!({"type": "endSession", "sessionId": "s"}));
    }
}
