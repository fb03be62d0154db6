//! The publisher's side of the Janus API (Janus 1.x, WebSocket transport, VideoRoom plugin)
//! as plain data: the requests a publisher sends, and what Janus sends back, parsed into
//! [`Incoming`]. No I/O here; [`crate::janus_peer`] drives it.
//!
//! What a publisher does, in order: `create` (a Janus session), `attach` to
//! `janus.plugin.videoroom` (a handle), a plugin `message` `join` with `ptype: publisher`,
//! then `publish` with its offer as `jsep`; Janus answers in the `configured` event's `jsep`.
//! Candidates go both ways as `trickle` (ours as requests, Janus's as events, `completed`
//! at the end). `keepalive` keeps the session from Janus's `session_timeout`. `unpublish`
//! ends the media (the handle stays in the room, and may `publish` again with the same feed
//! id), `leave` leaves the room, `destroy` ends the session.
//!
//! Janus answers every request with the request's `transaction`: `success` or `error` for
//! core requests (`create`, `attach`, `destroy`), `ack` for `keepalive` and `trickle`, and for
//! plugin messages an `ack` followed by an `event` carrying the plugin's reply (in either
//! order: both were seen). Events of the handle without a transaction (`webrtcup`, `media`,
//! `hangup`, `trickle`, the room's news) come whenever they happen.

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};

/// The WebSocket subprotocol Janus requires (it refuses connections without it).
pub const SUBPROTOCOL: &str = "janus-protocol";

/// The plugin the publisher attaches to.
pub const VIDEOROOM: &str = "janus.plugin.videoroom";

/// Makes requests, each with a transaction of its own, and the `apisecret` if Janus wants one.
#[derive(Debug)]
pub struct Requests {
    prefix: String,
    next: u64,
    api_secret: Option<String>,
}

/// One request: its transaction (to match the reply) and its JSON text.
#[derive(Debug, Clone)]
pub struct Request {
    pub transaction: String,
    pub text: String,
}

impl Requests {
    /// `prefix` starts every transaction id (so that a log tells whose they are).
    pub fn new(prefix: &str, api_secret: Option<String>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            next: 0,
            api_secret,
        }
    }

    /// Adds a transaction (and the API secret) to `msg`.
    fn request(&mut self, mut msg: Map<String, Value>) -> Request {
        self.next += 1;
        let transaction = format!("{}-{}", self.prefix, self.next);
        msg.insert("transaction".into(), transaction.clone().into());
        if let Some(secret) = &self.api_secret {
            msg.insert("apisecret".into(), secret.clone().into());
        }
        Request {
            transaction,
            text: Value::Object(msg).to_string(),
        }
    }

    /// A core request `janus` on nothing, a session or a handle.
    fn core(
        &mut self,
        janus: &str,
        session: Option<u64>,
        handle: Option<u64>,
    ) -> Map<String, Value> {
        let mut msg = Map::new();
        msg.insert("janus".into(), janus.into());
        if let Some(session) = session {
            msg.insert("session_id".into(), session.into());
        }
        if let Some(handle) = handle {
            msg.insert("handle_id".into(), handle.into());
        }
        msg
    }

    /// `create`: a new Janus session.
    pub fn create(&mut self) -> Request {
        let msg = self.core("create", None, None);
        self.request(msg)
    }

    /// `attach`: a handle on the VideoRoom plugin.
    pub fn attach(&mut self, session: u64) -> Request {
        let mut msg = self.core("attach", Some(session), None);
        msg.insert("plugin".into(), VIDEOROOM.into());
        self.request(msg)
    }

    /// A plugin `message` with `body`, and our SDP as `jsep` if there is one.
    pub fn message(
        &mut self,
        session: u64,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Request {
        let mut msg = self.core("message", Some(session), Some(handle));
        msg.insert("body".into(), body);
        if let Some(jsep) = jsep {
            msg.insert("jsep".into(), jsep);
        }
        self.request(msg)
    }

    /// `trickle` of one local candidate of m-line `mline`, or (`None`) the end of them.
    pub fn trickle(
        &mut self,
        session: u64,
        handle: u64,
        candidate: Option<(u32, &str)>,
    ) -> Request {
        let mut msg = self.core("trickle", Some(session), Some(handle));
        let candidate = match candidate {
            Some((mline, candidate)) => json!({"candidate": candidate, "sdpMLineIndex": mline}),
            None => json!({"completed": true}),
        };
        msg.insert("candidate".into(), candidate);
        self.request(msg)
    }

    /// `keepalive` of the session.
    pub fn keepalive(&mut self, session: u64) -> Request {
        let msg = self.core("keepalive", Some(session), None);
        self.request(msg)
    }

    /// `destroy` of the session (Janus detaches its handles).
    pub fn destroy(&mut self, session: u64) -> Request {
        let msg = self.core("destroy", Some(session), None);
        self.request(msg)
    }
}

/// The `join` body of a publisher in `room`, with its display name and PIN if any.
pub fn join(room: u64, display: Option<&str>, pin: Option<&str>) -> Value {
    let mut body = json!({"request": "join", "ptype": "publisher", "room": room});
    if let Some(display) = display {
        body["display"] = display.into();
    }
    if let Some(pin) = pin {
        body["pin"] = pin.into();
    }
    body
}

/// The `publish` body: every track of the offer, as offered.
pub fn publish() -> Value {
    json!({"request": "publish"})
}

/// The `unpublish` body.
pub fn unpublish() -> Value {
    json!({"request": "unpublish"})
}

/// The `leave` body.
pub fn leave() -> Value {
    json!({"request": "leave"})
}

/// An offer as `jsep`.
pub fn offer_jsep(sdp: &str) -> Value {
    json!({"type": "offer", "sdp": sdp})
}

/// A description Janus sent (`jsep`).
#[derive(Debug, Clone, PartialEq)]
pub struct Jsep {
    /// `offer` or `answer`.
    pub kind: String,
    pub sdp: String,
}

/// A remote candidate Janus trickled: its m-line and text.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub mline: u32,
    pub candidate: String,
}

/// One message from Janus.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A core request succeeded; `id` is the new session's or handle's.
    Success {
        transaction: String,
        id: Option<u64>,
    },
    /// A request failed (`transaction` may be absent on errors Janus cannot attribute).
    Error {
        transaction: Option<String>,
        code: i64,
        reason: String,
    },
    /// A request was received (for plugin messages, the reply follows as an event).
    Ack { transaction: String },
    /// A plugin event: the reply to a message (`transaction`) or news of the room.
    Event {
        transaction: Option<String>,
        sender: Option<u64>,
        data: Value,
        jsep: Option<Jsep>,
    },
    /// A candidate of Janus's (`None`: its gathering is complete).
    Trickle {
        sender: Option<u64>,
        candidate: Option<Candidate>,
    },
    /// The handle's PeerConnection is up (ICE and DTLS done).
    WebrtcUp { sender: Option<u64> },
    /// Janus started or stopped receiving one kind of media.
    Media {
        sender: Option<u64>,
        kind: String,
        receiving: bool,
    },
    /// The handle's PeerConnection is gone.
    Hangup { sender: Option<u64>, reason: String },
    /// Janus forgot the session (no keepalive in time).
    Timeout,
    /// Anything else (`slowlink`, `detached`, ...), by its `janus` name.
    Other(String),
}

/// Reads a JSON number id (Janus's session and handle ids are numbers).
fn id_of(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn transaction_of(v: &Value) -> Option<String> {
    v["transaction"].as_str().map(str::to_owned)
}

fn require_transaction(v: &Value) -> Result<String> {
    transaction_of(v).ok_or_else(|| anyhow!("{} without a transaction", v["janus"]))
}

/// Parses one text message from Janus; an error for text that is not a Janus message.
pub fn parse(text: &str) -> Result<Incoming> {
    let v: Value = serde_json::from_str(text).map_err(|e| anyhow!("not JSON: {e}"))?;
    let Some(kind) = v["janus"].as_str() else {
        bail!("not a Janus message (no `janus` field)");
    };
    let sender = id_of(&v["sender"]);
    Ok(match kind {
        "success" => Incoming::Success {
            transaction: require_transaction(&v)?,
            id: id_of(&v["data"]["id"]),
        },
        "error" => Incoming::Error {
            transaction: transaction_of(&v),
            code: v["error"]["code"].as_i64().unwrap_or(0),
            reason: v["error"]["reason"].as_str().unwrap_or("").to_owned(),
        },
        "ack" => Incoming::Ack {
            transaction: require_transaction(&v)?,
        },
        "event" => {
            let jsep = match (&v["jsep"]["type"], &v["jsep"]["sdp"]) {
                (Value::String(kind), Value::String(sdp)) => Some(Jsep {
                    kind: kind.clone(),
                    sdp: sdp.clone(),
                }),
                _ => None,
            };
            Incoming::Event {
                transaction: transaction_of(&v),
                sender,
                data: v["plugindata"]["data"].clone(),
                jsep,
            }
        }
        "trickle" => {
            let c = &v["candidate"];
            let candidate = if c["completed"] == true {
                None
            } else {
                let Some(text) = c["candidate"].as_str() else {
                    bail!("trickle without a candidate");
                };
                Some(Candidate {
                    mline: c["sdpMLineIndex"]
                        .as_u64()
                        .and_then(|m| u32::try_from(m).ok())
                        .unwrap_or(0),
                    candidate: text.to_owned(),
                })
            };
            Incoming::Trickle { sender, candidate }
        }
        "webrtcup" => Incoming::WebrtcUp { sender },
        "media" => Incoming::Media {
            sender,
            kind: v["type"].as_str().unwrap_or("").to_owned(),
            receiving: v["receiving"] == true,
        },
        "hangup" => Incoming::Hangup {
            sender,
            reason: v["reason"].as_str().unwrap_or("").to_owned(),
        },
        "timeout" => Incoming::Timeout,
        other => Incoming::Other(other.to_owned()),
    })
}

/// What a VideoRoom event says to the publisher.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// We are in the room: our feed id (a number, or a string with `string_ids`).
    Joined {
        feed: String,
        private_id: Option<u64>,
    },
    /// Our `publish` (or `configure`) went through.
    Configured,
    /// Our `unpublish` went through.
    Unpublished,
    /// Our `leave` went through.
    Left,
    /// The plugin refused a request.
    Error { code: i64, error: String },
    /// News of the room (other publishers) or anything else.
    Other,
}

/// An id that Janus gives as a number or (with `string_ids`) as a string, as text.
pub fn feed_id(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Reads the plugin data of a VideoRoom event. Janus says `"unpublished": "ok"` and
/// `"leaving": "ok"` for our own requests and gives a feed id for others', so only `"ok"`
/// is ours.
pub fn room_event(data: &Value) -> RoomEvent {
    if let Some(code) = data["error_code"].as_i64() {
        return RoomEvent::Error {
            code,
            error: data["error"].as_str().unwrap_or("").to_owned(),
        };
    }
    match data["videoroom"].as_str() {
        Some("joined") => match feed_id(&data["id"]) {
            Some(feed) => RoomEvent::Joined {
                feed,
                private_id: data["private_id"].as_u64(),
            },
            None => RoomEvent::Error {
                code: 0,
                error: "joined without a feed id".into(),
            },
        },
        Some("event") if data["configured"] == "ok" => RoomEvent::Configured,
        Some("event") if data["unpublished"] == "ok" => RoomEvent::Unpublished,
        Some("event") if data["leaving"] == "ok" => RoomEvent::Left,
        _ => RoomEvent::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages captured from Janus 1.1.2 (`src/signalling/janus/samples/` of callrec).
    fn sample(name: &str) -> String {
        let path = format!(
            "{}/../src/signalling/janus/samples/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn requests_carry_a_fresh_transaction_ids_and_the_secret() {
        let mut r = Requests::new("p", Some("s3cret".into()));
        let a = r.create();
        let b = r.attach(7);
        assert_ne!(a.transaction, b.transaction);
        let b: Value = serde_json::from_str(&b.text).unwrap();
        assert_eq!(b["janus"], "attach");
        assert_eq!(b["session_id"], 7);
        assert_eq!(b["plugin"], VIDEOROOM);
        assert_eq!(b["apisecret"], "s3cret");
        let m = r.message(7, 9, join(1234, Some("Alice"), Some("sesame")), None);
        let m: Value = serde_json::from_str(&m.text).unwrap();
        assert_eq!(m["handle_id"], 9);
        assert_eq!(
            m["body"],
            json!({"request": "join", "ptype": "publisher", "room": 1234,
                   "display": "Alice", "pin": "sesame"})
        );
        assert!(m.get("jsep").is_none());
        let p = r.message(7, 9, publish(), Some(offer_jsep("v=0")));
        let p: Value = serde_json::from_str(&p.text).unwrap();
        assert_eq!(p["jsep"], json!({"type": "offer", "sdp": "v=0"}));
        let t = r.trickle(7, 9, Some((1, "candidate:1 1 UDP 1 10.0.0.2 5 typ host")));
        let t: Value = serde_json::from_str(&t.text).unwrap();
        assert_eq!(t["candidate"]["sdpMLineIndex"], 1);
        let end = r.trickle(7, 9, None);
        let end: Value = serde_json::from_str(&end.text).unwrap();
        assert_eq!(end["candidate"], json!({"completed": true}));
        let plain = Requests::new("q", None).keepalive(7);
        assert!(!plain.text.contains("apisecret"));
    }

    #[test]
    fn janus_messages_parse() {
        assert!(matches!(
            parse(&sample("create-success")).unwrap(),
            Incoming::Success {
                id: Some(6975856131110468),
                ..
            }
        ));
        assert!(matches!(
            parse(&sample("keepalive-ack")).unwrap(),
            Incoming::Ack { .. }
        ));
        assert!(matches!(
            parse(&sample("error-session-gone")).unwrap(),
            Incoming::Error { code: 458, .. }
        ));
        let Incoming::Trickle {
            candidate: Some(c), ..
        } = parse(&sample("trickle-candidate")).unwrap()
        else {
            panic!("not a candidate");
        };
        assert_eq!(c.mline, 0);
        assert!(c.candidate.starts_with("candidate:1 1 udp"));
        assert!(matches!(
            parse(&sample("trickle-completed")).unwrap(),
            Incoming::Trickle {
                candidate: None,
                ..
            }
        ));
        assert!(matches!(
            parse(&sample("webrtcup")).unwrap(),
            Incoming::WebrtcUp { sender: Some(_) }
        ));
        assert!(matches!(
            parse(&sample("media")).unwrap(),
            Incoming::Media {
                receiving: true,
                ..
            }
        ));
        assert!(matches!(
            parse(&sample("hangup")).unwrap(),
            Incoming::Hangup { .. }
        ));
        assert_eq!(parse(&sample("timeout")).unwrap(), Incoming::Timeout);
        assert!(parse("[]").is_err());
        assert!(parse("{\"janus\": \"success\"}").is_err());
    }

    #[test]
    fn room_events_say_what_is_ours() {
        let data = |name: &str| match parse(&sample(name)).unwrap() {
            Incoming::Event { data, .. } => data,
            other => panic!("{name}: not an event: {other:?}"),
        };
        let RoomEvent::Joined { feed, private_id } = room_event(&data("joined-empty")) else {
            panic!("not joined");
        };
        assert_eq!(feed, "8517626038078328");
        assert_eq!(private_id, Some(1461707365));
        assert_eq!(room_event(&data("leave-ok")), RoomEvent::Left);
        assert!(matches!(
            room_event(&data("join-wrong-pin")),
            RoomEvent::Error { code: 433, .. }
        ));
        // Another publisher's unpublish is news, not ours.
        assert_eq!(room_event(&data("unpublished-bob")), RoomEvent::Other);
        assert_eq!(room_event(&data("publishers-alice")), RoomEvent::Other);
        assert_eq!(
            room_event(&json!({"videoroom": "event", "room": 1, "configured": "ok"})),
            RoomEvent::Configured
        );
        assert_eq!(
            room_event(&json!({"videoroom": "event", "room": 1, "unpublished": "ok"})),
            RoomEvent::Unpublished
        );
        assert_eq!(feed_id(&json!("abc")), Some("abc".into()));
    }
}
