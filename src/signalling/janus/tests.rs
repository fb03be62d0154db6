//! The Janus adapter on messages captured from Janus 1.1.2 (`samples/`, see its README).
//!
//! Each test plays one stretch of the conversation: callrec's requests come from the
//! adapter, Janus's answers from the samples (with the request's transaction put in), and
//! the ids in the assertions are read from the samples, so the tests hold for any capture.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::signalling::{
    MediaKind, ParticipantInfo, Protocol, RemoteStream, RoomInfo, SignalCommand, SignalEvent,
};

/// One captured message.
fn sample(name: &str) -> Value {
    let path = format!(
        "{}/src/signalling/janus/samples/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The handle id an attach sample hands out.
fn handle_of(name: &str) -> u64 {
    sample(name)["data"]["id"].as_u64().unwrap()
}

/// The first publisher's feed id in a `publishers`/`joined` sample.
fn feed_of(name: &str) -> u64 {
    sample(name)
        .pointer("/plugindata/data/publishers/0/id")
        .and_then(Value::as_u64)
        .unwrap()
}

fn session_id() -> u64 {
    handle_of("create-success")
}

fn texts(messages: Vec<String>) -> Vec<Value> {
    messages
        .iter()
        .map(|m| serde_json::from_str(m).unwrap())
        .collect()
}

/// An adapter and a clock.
struct H {
    j: Janus,
    t0: Instant,
}

type Step = (Vec<SignalEvent>, Vec<Value>);

impl H {
    fn new(rooms: RoomSelection) -> Self {
        let mut settings = JanusSettings::new("janus1", rooms);
        settings.access.insert(
            JanusId::Num(4321),
            RoomAccess {
                pin: Some(Secret::new("sesame")),
                token: None,
            },
        );
        Self::with(settings)
    }

    fn with(settings: JanusSettings) -> Self {
        let j = Janus::new(settings);
        // After the adapter's own clock, so `t0 + 20 s` is at least 20 s after it.
        H {
            j,
            t0: Instant::now(),
        }
    }

    fn hello(&mut self) -> Vec<Value> {
        texts(self.j.hello())
    }

    /// Feeds a sample, as the answer to `request` if given.
    fn feed(&mut self, name: &str, request: Option<&Value>) -> Step {
        let mut msg = sample(name);
        if let Some(request) = request {
            msg["transaction"] = request["transaction"].clone();
        }
        self.feed_value(&msg)
    }

    fn feed_value(&mut self, msg: &Value) -> Step {
        let events = self
            .j
            .parse(&msg.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let out = self.j.take_output();
        (
            events.into_iter().chain(out.events).collect(),
            texts(out.messages),
        )
    }

    fn command(&mut self, command: SignalCommand) -> Step {
        let mut sent = self.j.encode(&command);
        let out = self.j.take_output();
        sent.extend(out.messages);
        (out.events, texts(sent))
    }

    fn tick(&mut self, secs: u64) -> Step {
        let mut sent = self.j.tick(self.t0 + Duration::from_secs(secs));
        let out = self.j.take_output();
        sent.extend(out.messages);
        (out.events, texts(sent))
    }
}

/// `hello`, and Janus's `create` answer: returns what the adapter sends next.
fn connected(h: &mut H) -> Vec<Value> {
    let hello = h.hello();
    assert_eq!(hello.len(), 1);
    let (events, sent) = h.feed("create-success", Some(&hello[0]));
    assert!(events.is_empty(), "{events:?}");
    sent
}

/// Room `room`, configured alone, followed with these captured answers to the attach and
/// the join; returns the join's events.
fn followed(room: u64, attach: &str, joined: &str) -> (H, Vec<SignalEvent>) {
    let mut h = H::new(RoomSelection::List(vec![JanusId::Num(room)]));
    let attaches = connected(&mut h);
    let (_, join) = h.feed(attach, Some(&attaches[0]));
    let (events, _) = h.feed(joined, Some(&join[0]));
    (h, events)
}

/// Room 1234 followed, nobody publishing yet (as in the capture).
fn following_1234() -> H {
    let (h, events) = followed(1234, "attach-follower-1234", "joined-empty");
    assert!(
        matches!(events[..], [SignalEvent::RoomAdded { .. }]),
        "{events:?}"
    );
    h
}

/// Room 1234 with Alice publishing, recorded: the first offer is in.
fn recording_1234() -> H {
    let mut h = following_1234();
    h.feed("publishers-alice", None);
    let (_, attach) = h.command(start("1234"));
    let (_, join) = h.feed("attach-subscriber-1234", Some(&attach[0]));
    let (events, _) = h.feed("attached", Some(&join[0]));
    assert_eq!(events.len(), 3, "{events:?}");
    h
}

fn start(room: &str) -> SignalCommand {
    SignalCommand::StartSession {
        peer_id: room.into(),
        offer: None,
    }
}

fn sub_session() -> String {
    handle_of("attach-subscriber-1234").to_string()
}

fn server_error(events: &[SignalEvent]) -> String {
    match events {
        [SignalEvent::ServerError { details }] => details.clone(),
        other => panic!("not one server error: {other:?}"),
    }
}

// ---- the session ------------------------------------------------------------------------

#[test]
fn hello_creates_a_session_then_follows_the_configured_rooms() {
    let mut h = H::new(RoomSelection::List(vec![
        JanusId::Num(1234),
        JanusId::Num(4321),
    ]));
    let hello = h.hello();
    assert_eq!(hello[0]["janus"], "create");
    assert!(hello[0]["transaction"].is_string());
    assert!(hello[0].get("session_id").is_none());
    let (events, attaches) = h.feed("create-success", Some(&hello[0]));
    assert!(events.is_empty());
    assert_eq!(attaches.len(), 2);
    for (attach, room) in attaches.iter().zip(["1234", "4321"]) {
        assert_eq!(attach["janus"], "attach");
        assert_eq!(attach["plugin"], "janus.plugin.videoroom");
        assert_eq!(attach["session_id"], session_id());
        assert_eq!(attach["opaque_id"], format!("callrec-follow-{room}"));
    }
    assert_ne!(attaches[0]["transaction"], attaches[1]["transaction"]);

    // Room 1234: a passive publisher join, then `joined` announces the room.
    let (_, joins) = h.feed("attach-follower-1234", Some(&attaches[0]));
    assert_eq!(
        joins[0]["body"],
        json!({"request": "join", "ptype": "publisher", "room": 1234, "display": "callrec"})
    );
    assert_eq!(joins[0]["handle_id"], handle_of("attach-follower-1234"));
    let (events, sent) = h.feed("joined-empty", Some(&joins[0]));
    assert!(sent.is_empty(), "nothing to subscribe to: {sent:?}");
    assert_eq!(
        events,
        vec![SignalEvent::RoomAdded {
            room: RoomInfo {
                id: "1234".into(),
                source: "janus1".into(),
                description: Some("Demo Room".into()),
                meta: json!({"source": "janus1", "room": 1234, "description": "Demo Room"}),
            }
        }]
    );
    // The ack may come after the result; it changes nothing.
    let (events, sent) = h.feed("join-ack", Some(&joins[0]));
    assert!(events.is_empty() && sent.is_empty());

    // Room 4321 takes its PIN.
    let (_, joins) = h.feed("attach-follower-4321", Some(&attaches[1]));
    assert_eq!(joins[0]["body"]["pin"], "sesame");
    let (events, _) = h.feed("joined-pin", Some(&joins[0]));
    assert!(matches!(&events[..], [SignalEvent::RoomAdded { room }] if room.id == "4321"));
}

#[test]
fn keepalives_go_out_every_20_seconds() {
    let mut h = following_1234();
    assert!(h.tick(19).1.is_empty());
    let (_, sent) = h.tick(20);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["janus"], "keepalive");
    assert_eq!(sent[0]["session_id"], session_id());
    assert!(h.tick(21).1.is_empty());
    let (_, sent) = h.tick(40);
    assert_eq!(sent[0]["janus"], "keepalive");
    // Their acks are harmless.
    let (events, sent) = h.feed("keepalive-ack", Some(&sent[0]));
    assert!(events.is_empty() && sent.is_empty());
    // No gap between keepalives is ever longer than 25 s, whatever the tick times.
    let mut last = 40;
    for t in (41..400).step_by(3) {
        if h.tick(t).1.iter().any(|m| m["janus"] == "keepalive") {
            assert!(t - last <= 25, "{last} -> {t}");
            last = t;
        }
    }
}

#[test]
fn an_unanswered_create_is_reported_and_sent_again() {
    let mut h = H::new(RoomSelection::All);
    h.hello();
    assert!(h.tick(29).0.is_empty());
    let (events, _) = h.tick(30);
    let details = server_error(&events);
    assert!(
        details.contains("creating a session failed: Janus did not answer"),
        "{details}"
    );
    assert!(h.tick(34).1.is_empty());
    let (_, sent) = h.tick(35);
    assert_eq!(sent[0]["janus"], "create");
}

#[test]
fn api_secret_goes_with_every_request_and_secrets_stay_out_of_logs() {
    let mut settings = JanusSettings::new("j", RoomSelection::All);
    settings.api_secret = Some(Secret::new("s3cret"));
    settings.admin_key = Some(Secret::new("capture-admin-key"));
    settings.access.insert(
        JanusId::Num(1),
        RoomAccess {
            pin: Some(Secret::new("1234pin")),
            token: Some(Secret::new("tok")),
        },
    );
    let shown = format!("{settings:?}");
    for secret in ["s3cret", "capture-admin-key", "1234pin", "tok\""] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let mut h = H::with(settings);
    let hello = h.hello();
    assert_eq!(hello[0]["apisecret"], "s3cret");
    let (_, attach) = h.feed("create-success", Some(&hello[0]));
    assert_eq!(attach[0]["apisecret"], "s3cret");
    assert_eq!(attach[0]["opaque_id"], "callrec-list");
    let (_, list) = h.feed("attach-control-success", Some(&attach[0]));
    assert_eq!(
        list[0]["body"],
        json!({"request": "list", "admin_key": "capture-admin-key"})
    );
    assert_eq!(list[0]["apisecret"], "s3cret");
    assert!(!format!("{:?}", h.j).contains("s3cret"));
}

// ---- which rooms ------------------------------------------------------------------------

#[test]
fn all_rooms_are_listed_and_listed_again_to_find_new_ones() {
    let mut h = H::new(RoomSelection::All);
    let attach = connected(&mut h);
    assert_eq!(attach.len(), 1);
    let (_, list) = h.feed("attach-control-success", Some(&attach[0]));
    assert_eq!(list[0]["body"], json!({"request": "list"}));
    // Without the admin key: the two public rooms.
    let (events, follows) = h.feed("list", Some(&list[0]));
    assert!(events.is_empty());
    let mut follows: Vec<&str> = follows
        .iter()
        .filter_map(|m| m["opaque_id"].as_str())
        .collect();
    follows.sort();
    assert_eq!(follows, vec!["callrec-follow-1234", "callrec-follow-4321"]);
    // 30 s later the rooms are listed again; only the new one is followed.
    assert!(h.tick(29).1.iter().all(|m| m["janus"] != "message"));
    let (_, sent) = h.tick(30);
    let relist = sent
        .iter()
        .find(|m| m["body"]["request"] == "list")
        .expect("a new listing");
    let (_, follows) = h.feed("list-admin-key", Some(relist));
    let follows: Vec<&Value> = follows.iter().map(|m| &m["opaque_id"]).collect();
    assert_eq!(follows, vec!["callrec-follow-777"]);
}

#[test]
fn a_wrong_admin_key_is_reported_with_a_hint() {
    let mut h = H::new(RoomSelection::All);
    let attach = connected(&mut h);
    let (_, list) = h.feed("attach-control-success", Some(&attach[0]));
    let (events, sent) = h.feed("list-wrong-admin-key", Some(&list[0]));
    let details = server_error(&events);
    assert!(
        details.contains("Janus (janus1) refused listing rooms: Unauthorized (wrong admin_key) (433); check the admin key"),
        "{details}"
    );
    assert!(sent.is_empty());
}

#[test]
fn a_configured_room_that_does_not_exist_is_tried_again() {
    let mut h = H::new(RoomSelection::List(vec![JanusId::Num(1234)]));
    let attach = connected(&mut h);
    let (_, join) = h.feed("attach-follower-1234", Some(&attach[0]));
    let (events, sent) = h.feed("join-no-such-room", Some(&join[0]));
    let details = server_error(&events);
    assert!(
        details
            .contains("refused following room 1234: No such room (9999) (426); check the room id"),
        "{details}"
    );
    // Its handle is given back, and the room tried again at the next listing.
    assert_eq!(sent[0]["janus"], "detach");
    assert_eq!(sent[0]["handle_id"], handle_of("attach-follower-1234"));
    assert!(h.tick(29).1.iter().all(|m| m["janus"] != "attach"));
    let (_, sent) = h.tick(30);
    assert!(sent.iter().any(|m| m["opaque_id"] == "callrec-follow-1234"));
}

#[test]
fn pin_errors_are_reported_with_a_hint() {
    for name in ["join-wrong-pin", "join-missing-pin"] {
        let mut h = H::new(RoomSelection::List(vec![JanusId::Num(4321)]));
        let attach = connected(&mut h);
        let (_, join) = h.feed("attach-follower-4321", Some(&attach[0]));
        let (events, _) = h.feed(name, Some(&join[0]));
        let details = server_error(&events);
        assert!(details.contains("check this room's PIN"), "{details}");
        assert!(details.contains("pin"), "{details}");
    }
}

#[test]
fn string_room_and_feed_ids_work_like_numbers() {
    // Not captured (Janus with `string_ids = true`); shapes as in janus_videoroom.c.
    let mut h = H::new(RoomSelection::List(vec![JanusId::Str("standup".into())]));
    let attach = connected(&mut h);
    let mut attached = sample("attach-follower-1234");
    attached["transaction"] = attach[0]["transaction"].clone();
    let (_, join) = h.feed_value(&attached);
    assert_eq!(join[0]["body"]["room"], "standup");
    let mut joined = sample("joined-with-publisher");
    joined["transaction"] = join[0]["transaction"].clone();
    joined["sender"] = attached["data"]["id"].clone();
    joined["plugindata"]["data"]["room"] = json!("standup");
    joined["plugindata"]["data"]["publishers"][0]["id"] = json!("alice");
    let (events, _) = h.feed_value(&joined);
    let [SignalEvent::RoomAdded { room }, SignalEvent::ParticipantAdded {
        room_id,
        participant,
    }] = &events[..]
    else {
        panic!("{events:?}");
    };
    assert_eq!((room.id.as_str(), room_id.as_str()), ("standup", "standup"));
    assert_eq!(room.meta["room"], "standup");
    assert_eq!(participant.id, "alice");
    assert_eq!(participant.meta["feed"], "alice");
}

// ---- following a room --------------------------------------------------------------------

#[test]
fn publishers_come_and_go_as_participants() {
    let mut h = following_1234();
    let alice = feed_of("publishers-alice");
    let bob = feed_of("publishers-bob");
    let (events, sent) = h.feed("publishers-alice", None);
    assert!(sent.is_empty(), "not recorded yet, so nothing to subscribe");
    assert_eq!(
        events,
        vec![SignalEvent::ParticipantAdded {
            room_id: "1234".into(),
            participant: ParticipantInfo {
                id: alice.to_string(),
                display: Some("Alice <b>&amp;".into()),
                meta: json!({"source": "janus1", "room": 1234, "feed": alice, "name": "Alice <b>&amp;"}),
            },
        }]
    );
    let (events, _) = h.feed("publishers-bob", None);
    assert!(
        matches!(&events[..], [SignalEvent::ParticipantAdded { participant, .. }] if participant.id == bob.to_string())
    );
    // Bob unpublishes: Janus says so twice, and then that he leaves. One event.
    let removed = SignalEvent::ParticipantRemoved {
        room_id: "1234".into(),
        participant_id: bob.to_string(),
        reason: "stopped publishing".into(),
    };
    assert_eq!(h.feed("unpublished-bob", None).0, vec![removed]);
    assert!(h.feed("unpublished-bob-repeated", None).0.is_empty());
    // He publishes again: a participant anew.
    let (events, _) = h.feed("publishers-bob-again", None);
    assert!(matches!(
        &events[..],
        [SignalEvent::ParticipantAdded { .. }]
    ));
    assert_eq!(
        h.feed("leaving-bob", None).0,
        vec![SignalEvent::ParticipantRemoved {
            room_id: "1234".into(),
            participant_id: bob.to_string(),
            reason: "left the room".into(),
        }]
    );
    // Someone who never published is kicked: nobody callrec records.
    assert!(h.feed("kicked-other", None).0.is_empty());
}

#[test]
fn joining_a_room_with_publishers_lists_them() {
    let (_, events) = followed(1234, "attach-second-follower-1234", "joined-with-publisher");
    assert!(
        matches!(&events[..], [SignalEvent::RoomAdded { .. }, SignalEvent::ParticipantAdded { participant, .. }]
            if participant.id == feed_of("joined-with-publisher").to_string()),
        "{events:?}"
    );
}

#[test]
fn kicked_out_the_follower_joins_again_and_catches_up() {
    let (mut h, _) = followed(1234, "attach-second-follower-1234", "joined-with-publisher");
    let (events, sent) = h.feed("kicked-self", None);
    let details = server_error(&events);
    assert!(details.contains("kicked callrec out"), "{details}");
    assert_eq!(sent[0]["janus"], "detach");
    // It joins again; meanwhile Alice left: the fresh `joined` says so.
    let (_, sent) = h.tick(30);
    let attach = sent
        .iter()
        .find(|m| m["janus"] == "attach")
        .expect("attach again");
    let (_, join) = h.feed("attach-follower-1234", Some(attach));
    let (events, _) = h.feed("joined-empty", Some(&join[0]));
    assert_eq!(
        events,
        vec![SignalEvent::ParticipantRemoved {
            room_id: "1234".into(),
            participant_id: feed_of("joined-with-publisher").to_string(),
            reason: "no longer publishing when callrec joined the room again".into(),
        }],
        "the room was announced already"
    );
}

#[test]
fn a_destroyed_room_ends_and_is_tried_again_if_configured() {
    let (mut h, _) = followed(4242, "attach-follower-4242", "joined-temp");
    let (events, sent) = h.feed("destroyed", None);
    assert_eq!(
        events,
        vec![SignalEvent::RoomRemoved {
            room_id: "4242".into(),
            reason: "the room was destroyed".into(),
        }]
    );
    assert_eq!(sent[0]["janus"], "detach");
    let (_, sent) = h.tick(30);
    assert!(sent.iter().any(|m| m["opaque_id"] == "callrec-follow-4242"));
}

#[test]
fn a_detached_follower_is_not_detached_again() {
    let (mut h, _) = followed(4321, "attach-follower-4321", "joined-pin");
    let (events, sent) = h.feed("detached", None);
    assert!(server_error(&events).contains("Janus detached its handle"));
    assert!(sent.is_empty());
}

// ---- receiving --------------------------------------------------------------------------

#[test]
fn recording_a_room_subscribes_to_every_stream_and_answers_the_offer() {
    let mut h = following_1234();
    let alice = feed_of("publishers-alice");
    h.feed("publishers-alice", None);
    let (events, attach) = h.command(start("1234"));
    assert!(events.is_empty());
    assert_eq!(attach[0]["opaque_id"], "callrec-record-1234");
    let (_, join) = h.feed("attach-subscriber-1234", Some(&attach[0]));
    let private_id = sample("joined-empty")["plugindata"]["data"]["private_id"].clone();
    assert_eq!(
        join[0]["body"],
        json!({
            "request": "join", "ptype": "subscriber", "room": 1234,
            "streams": [{"feed": alice, "mid": "audio1"}, {"feed": alice, "mid": "video0"}],
            "private_id": private_id, "autoupdate": true,
        })
    );
    let (events, sent) = h.feed("attached", Some(&join[0]));
    assert!(sent.is_empty(), "{sent:?}");
    let session = sub_session();
    let offer = sample("attached")["jsep"]["sdp"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        events,
        vec![
            SignalEvent::SessionStarted {
                session_id: session.clone(),
                peer_id: "1234".into(),
            },
            SignalEvent::StreamsChanged {
                session_id: session.clone(),
                streams: vec![
                    RemoteStream {
                        mid: "0".into(),
                        mline: 0,
                        kind: MediaKind::Video,
                        active: true,
                        participant_id: Some(alice.to_string()),
                        display: Some("Alice <b>&amp;".into()),
                        source_mid: Some("video0".into()),
                        codec: Some("vp8".into()),
                    },
                    RemoteStream {
                        mid: "1".into(),
                        mline: 1,
                        kind: MediaKind::Audio,
                        active: true,
                        participant_id: Some(alice.to_string()),
                        display: Some("Alice <b>&amp;".into()),
                        source_mid: Some("audio1".into()),
                        codec: Some("opus".into()),
                    },
                ],
            },
            SignalEvent::Offer {
                session_id: session.clone(),
                sdp: offer,
            },
        ]
    );
    // The answer goes out as `start`; Janus says `started`.
    let (_, sent) = h.command(SignalCommand::Answer {
        session_id: session.clone(),
        sdp: "v=0 answer".into(),
    });
    assert_eq!(sent[0]["body"], json!({"request": "start"}));
    assert_eq!(
        sent[0]["jsep"],
        json!({"type": "answer", "sdp": "v=0 answer"})
    );
    assert_eq!(sent[0]["handle_id"], handle_of("attach-subscriber-1234"));
    let (events, sent) = h.feed("started", Some(&sent[0]));
    assert!(events.is_empty() && sent.is_empty());
    // A second StartSession for the same room changes nothing.
    assert_eq!(h.command(start("1234")), (vec![], vec![]));
}

#[test]
fn trickle_goes_both_ways() {
    let mut h = recording_1234();
    let session = sub_session();
    let candidate = sample("trickle-candidate")["candidate"]["candidate"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        h.feed("trickle-candidate", None).0,
        vec![SignalEvent::Ice {
            session_id: session.clone(),
            candidate,
            mline_index: 0,
        }]
    );
    assert!(h.feed("trickle-completed", None).0.is_empty());
    assert!(h.feed("webrtcup", None).0.is_empty());
    let (_, sent) = h.command(SignalCommand::Ice {
        session_id: session.clone(),
        candidate: "candidate:1 1 UDP 1 10.0.0.1 5000 typ host".into(),
        mline_index: 0,
    });
    assert_eq!(sent[0]["janus"], "trickle");
    assert_eq!(
        sent[0]["candidate"],
        json!({"candidate": "candidate:1 1 UDP 1 10.0.0.1 5000 typ host", "sdpMLineIndex": 0})
    );
    let (_, sent) = h.command(SignalCommand::EndOfCandidates {
        session_id: session.clone(),
    });
    assert_eq!(sent[0]["candidate"], json!({"completed": true}));
    // Commands for a session callrec does not have send nothing.
    let (events, sent) = h.command(SignalCommand::Ice {
        session_id: "42".into(),
        candidate: "c".into(),
        mline_index: 0,
    });
    assert!(events.is_empty() && sent.is_empty());
}

#[test]
fn publishers_coming_and_going_renegotiate_the_subscription() {
    let mut h = recording_1234();
    let session = sub_session();
    let bob = feed_of("publishers-bob");
    // Bob publishes: a participant, and an `update` for his streams.
    let (events, sent) = h.feed("publishers-bob", None);
    assert!(matches!(
        &events[..],
        [SignalEvent::ParticipantAdded { .. }]
    ));
    assert_eq!(
        sent[0]["body"],
        json!({"request": "update", "subscribe": [{"feed": bob, "mid": "audio1"}, {"feed": bob, "mid": "video0"}]})
    );
    let (events, _) = h.feed("updated-subscribe", Some(&sent[0]));
    let [SignalEvent::StreamsChanged { streams, .. }, SignalEvent::Offer { session_id, .. }] =
        &events[..]
    else {
        panic!("{events:?}");
    };
    assert_eq!(session_id, &session);
    let bobs: Vec<(&str, Option<&str>)> = streams
        .iter()
        .filter(|s| s.participant_id.as_deref() == Some(&bob.to_string()))
        .map(|s| (s.mid.as_str(), s.codec.as_deref()))
        .collect();
    assert_eq!(bobs, vec![("2", Some("h264")), ("3", Some("opus"))]);
    // The renegotiation is answered with `start` too.
    let (_, sent) = h.command(SignalCommand::Answer {
        session_id: session.clone(),
        sdp: "v=0 again".into(),
    });
    assert_eq!(sent[0]["body"]["request"], "start");
    assert!(h.feed("started-renegotiation", Some(&sent[0])).0.is_empty());

    // Bob unpublishes: no `unsubscribe` (Janus drops his streams itself), and Janus's own
    // re-offer marks his m-lines inactive.
    let (events, sent) = h.feed("unpublished-bob", None);
    assert!(matches!(
        &events[..],
        [SignalEvent::ParticipantRemoved { .. }]
    ));
    assert!(sent.is_empty(), "{sent:?}");
    let (events, _) = h.feed("updated-by-janus", None);
    let [SignalEvent::StreamsChanged { streams, .. }, SignalEvent::Offer { .. }] = &events[..]
    else {
        panic!("{events:?}");
    };
    let inactive: Vec<&str> = streams
        .iter()
        .filter(|s| !s.active)
        .map(|s| s.mid.as_str())
        .collect();
    assert_eq!(inactive, vec!["2", "3"]);
    assert!(streams
        .iter()
        .filter(|s| !s.active)
        .all(|s| s.participant_id.is_none()));

    // He publishes again with the same feed id: subscribed again, and Janus puts his new
    // streams on the m-lines his old ones left inactive (same mids, same m-line count).
    let (events, sent) = h.feed("publishers-bob-again", None);
    assert!(matches!(
        &events[..],
        [SignalEvent::ParticipantAdded { .. }]
    ));
    assert_eq!(sent[0]["body"]["request"], "update");
    assert_eq!(sent[0]["body"]["subscribe"].as_array().unwrap().len(), 2);
    let (events, _) = h.feed("updated-reused-mlines", Some(&sent[0]));
    let [SignalEvent::StreamsChanged { streams, .. }, SignalEvent::Offer { .. }] = &events[..]
    else {
        panic!("{events:?}");
    };
    assert_eq!(streams.len(), 4);
    let bob = bob.to_string();
    let on_reused: Vec<Option<&str>> = streams[2..]
        .iter()
        .map(|s| s.participant_id.as_deref())
        .collect();
    assert_eq!(on_reused, vec![Some(bob.as_str()), Some(bob.as_str())]);

    // He `leave`s (no `unpublish`): Janus says so, but does not re-offer, and its later table
    // still shows his m-lines active. The participant event is what says he is gone.
    let (events, sent) = h.feed("leaving-bob", None);
    assert!(
        matches!(&events[..], [SignalEvent::ParticipantRemoved { participant_id, .. }] if *participant_id == bob)
    );
    assert!(sent.is_empty());
    let (events, _) = h.feed("updated-alice-gone", None);
    let [SignalEvent::StreamsChanged { streams, .. }, SignalEvent::Offer { .. }] = &events[..]
    else {
        panic!("{events:?}");
    };
    assert!(streams[2..]
        .iter()
        .all(|s| s.active && s.participant_id.as_deref() == Some(bob.as_str())));
}

#[test]
fn a_refused_update_is_asked_for_again_at_the_next_listing() {
    let mut h = recording_1234();
    let (_, sent) = h.feed("publishers-bob", None);
    let (events, _) = h.feed("subscribe-no-such-feed", Some(&sent[0]));
    assert!(server_error(&events).contains("No such feed"));
    let (_, sent) = h.tick(30);
    assert!(
        sent.iter().any(|m| m["body"]["request"] == "update"),
        "{sent:?}"
    );
}

#[test]
fn an_update_postponed_by_janus_waits_for_its_offer() {
    let mut h = recording_1234();
    let (_, sent) = h.feed("publishers-bob", None);
    // Not captured; as janus_videoroom.c sends it while an earlier offer is unanswered.
    let updating = json!({
        "janus": "event", "session_id": session_id(), "transaction": sent[0]["transaction"],
        "sender": handle_of("attach-subscriber-1234"),
        "plugindata": {"plugin": "janus.plugin.videoroom", "data": {"videoroom": "updating", "room": 1234}},
    });
    let (events, sent) = h.feed_value(&updating);
    assert!(events.is_empty() && sent.is_empty());
    // The offer comes later, without a transaction.
    let (events, _) = h.feed("updated-by-janus", None);
    assert!(matches!(&events[..], [_, SignalEvent::Offer { .. }]));
}

#[test]
fn one_join_takes_every_publisher_of_the_room() {
    let (mut h, _) = followed(4321, "attach-follower-4321", "joined-pin");
    // Carol and Dave, as the two-feed subscription names them.
    let attached = sample("attached-two-feeds");
    let streams = attached["plugindata"]["data"]["streams"]
        .as_array()
        .unwrap();
    let publishers: Vec<Value> = [0, 2]
        .iter()
        .map(|&i| {
            json!({"id": streams[i]["feed_id"], "display": streams[i]["feed_display"],
                   "streams": [{"type": "video", "mid": "video0"}, {"type": "audio", "mid": "audio1"}]})
        })
        .collect();
    let mut news = sample("publishers-alice");
    news["sender"] = handle_of("attach-follower-4321").into();
    news["plugindata"]["data"]["room"] = 4321.into();
    news["plugindata"]["data"]["publishers"] = publishers.into();
    let (events, _) = h.feed_value(&news);
    assert_eq!(events.len(), 2);
    let (_, attach) = h.command(start("4321"));
    let (_, join) = h.feed("attach-subscriber-4321", Some(&attach[0]));
    assert_eq!(join[0]["body"]["pin"], "sesame");
    assert_eq!(join[0]["body"]["streams"].as_array().unwrap().len(), 4);
    let (events, _) = h.feed("attached-two-feeds", Some(&join[0]));
    let [SignalEvent::SessionStarted { .. }, SignalEvent::StreamsChanged { streams, .. }, SignalEvent::Offer { .. }] =
        &events[..]
    else {
        panic!("{events:?}");
    };
    // Each publisher's two streams side by side, in the order the join named them.
    let mut who: Vec<Option<&str>> = streams.iter().map(|s| s.display.as_deref()).collect();
    assert_eq!(who[0], who[1]);
    assert_eq!(who[2], who[3]);
    who.sort();
    assert_eq!(
        who,
        vec![Some("Carol"), Some("Carol"), Some("Dave"), Some("Dave")]
    );
    // When both vanish, Janus re-offers with every m-line inactive.
    let mut gone = sample("updated-all-inactive");
    gone["sender"] = handle_of("attach-subscriber-4321").into();
    let (events, _) = h.feed_value(&gone);
    let [SignalEvent::StreamsChanged { streams, .. }, SignalEvent::Offer { .. }] = &events[..]
    else {
        panic!("{events:?}");
    };
    assert!(streams.iter().all(|s| !s.active));
}

#[test]
fn a_subscriber_join_naming_a_departed_feed_is_sent_again_then_given_up() {
    let mut h = recording_1234();
    // A second room state is simpler to get by ending this recording and starting anew.
    let (_, sent) = h.command(SignalCommand::EndSession {
        session_id: sub_session(),
    });
    assert_eq!(sent[0]["janus"], "detach");
    let (_, attach) = h.command(start("1234"));
    let (_, join) = h.feed("attach-subscriber-1234", Some(&attach[0]));
    let mut last = join[0].clone();
    // Three joins in all: the first and two more.
    for _ in 0..2 {
        let (events, sent) = h.feed("subscribe-no-such-feed", Some(&last));
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(sent[0]["body"]["ptype"], "subscriber");
        last = sent[0].clone();
    }
    let (events, sent) = h.feed("subscribe-no-such-feed", Some(&last));
    assert!(server_error(&events).contains("No such feed"));
    assert_eq!(sent[0]["janus"], "detach");
}

#[test]
fn recording_needs_a_followed_room_with_publishers_and_janus_offers() {
    let mut h = following_1234();
    let details = server_error(&h.command(start("9999")).0);
    assert!(details.contains("does not follow it"), "{details}");
    let details = server_error(&h.command(start("1234")).0);
    assert!(details.contains("nobody publishes there"), "{details}");
    let offer = SignalCommand::StartSession {
        peer_id: "1234".into(),
        offer: Some("v=0".into()),
    };
    let details = server_error(&h.command(offer).0);
    assert!(details.contains("Janus makes the offers"), "{details}");
    let mut idle = H::new(RoomSelection::All);
    let details = server_error(&idle.command(start("1234")).0);
    assert!(details.contains("no Janus session"), "{details}");
}

#[test]
fn a_wrong_pin_for_the_subscription_is_reported() {
    let mut h = recording_1234();
    h.command(SignalCommand::EndSession {
        session_id: sub_session(),
    });
    let (_, attach) = h.command(start("1234"));
    let (_, join) = h.feed("attach-subscriber-1234", Some(&attach[0]));
    let (events, sent) = h.feed("subscribe-wrong-pin", Some(&join[0]));
    let details = server_error(&events);
    assert!(
        details.contains("refused subscribing to room 1234: Unauthorized (wrong pin) (433)"),
        "{details}"
    );
    assert_eq!(sent[0]["janus"], "detach");
}

#[test]
fn ending_a_session_detaches_it_and_its_news_is_ignored() {
    let mut h = recording_1234();
    let (events, sent) = h.command(SignalCommand::EndSession {
        session_id: sub_session(),
    });
    assert!(events.is_empty());
    assert_eq!(sent[0]["janus"], "detach");
    assert_eq!(sent[0]["handle_id"], handle_of("attach-subscriber-1234"));
    assert_eq!(h.feed("updated-by-janus", None), (vec![], vec![]));
    assert_eq!(h.feed("trickle-candidate", None), (vec![], vec![]));
    // Janus confirms the detach.
    let (events, sent) = h.feed("leave-ok", Some(&sent[0]));
    assert!(events.is_empty() && sent.is_empty());
}

#[test]
fn a_hangup_ends_the_session() {
    let mut h = recording_1234();
    let mut hangup = sample("hangup");
    hangup["sender"] = handle_of("attach-subscriber-1234").into();
    let (events, sent) = h.feed_value(&hangup);
    assert_eq!(
        events,
        vec![SignalEvent::SessionEnded {
            session_id: sub_session()
        }]
    );
    assert_eq!(sent[0]["janus"], "detach");
    // Publishers stay; the supervisor may ask for the room again.
    let (_, attach) = h.command(start("1234"));
    assert_eq!(attach[0]["opaque_id"], "callrec-record-1234");
}

// ---- reconnecting -----------------------------------------------------------------------

/// What ends with a recorded room 1234 where Alice publishes.
fn endings(reason: &str) -> Vec<SignalEvent> {
    vec![
        SignalEvent::SessionEnded {
            session_id: sub_session(),
        },
        SignalEvent::ParticipantRemoved {
            room_id: "1234".into(),
            participant_id: feed_of("publishers-alice").to_string(),
            reason: reason.into(),
        },
        SignalEvent::RoomRemoved {
            room_id: "1234".into(),
            reason: reason.into(),
        },
    ]
}

#[test]
fn after_a_disconnect_everything_ends_and_starts_afresh() {
    let mut h = recording_1234();
    assert_eq!(
        h.j.disconnected(),
        endings("the connection to Janus was lost")
    );
    assert_eq!(h.j.take_output(), Output::default(), "nothing left to send");
    assert!(h.j.disconnected().is_empty(), "said once");
    // The old session's news means nothing now.
    assert_eq!(h.feed("publishers-bob", None), (vec![], vec![]));
    assert!(h.tick(60).1.is_empty(), "no keepalive for a dead session");
    // A new connection: a new session, rooms and publishers found afresh.
    let hello = h.hello();
    assert_eq!(hello.len(), 1);
    assert_eq!(hello[0]["janus"], "create");
    let (_, attach) = h.feed("create-success", Some(&hello[0]));
    let (_, join) = h.feed("attach-follower-1234", Some(&attach[0]));
    let (events, _) = h.feed("joined-with-publisher", Some(&join[0]));
    assert!(matches!(
        &events[..],
        [
            SignalEvent::RoomAdded { .. },
            SignalEvent::ParticipantAdded { .. }
        ]
    ));
}

#[test]
fn hello_alone_forgets_the_old_session() {
    let mut h = recording_1234();
    let hello = h.hello();
    assert_eq!(hello.len(), 1);
    assert_eq!(h.j.take_output(), Output::default());
    assert!(
        h.j.disconnected().is_empty(),
        "nothing of the old session left"
    );
    assert_eq!(h.feed("publishers-bob", None), (vec![], vec![]));
}

#[test]
fn a_session_janus_forgot_ends_and_is_created_again() {
    // Janus expired the session, or restarted behind a proxy that kept the socket.
    for how in ["timeout", "error-session-gone"] {
        let mut h = recording_1234();
        let mut msg = sample(how);
        msg["session_id"] = session_id().into();
        let (mut events, sent) = h.feed_value(&msg);
        let details = server_error(&events[..1]);
        assert!(details.contains("the Janus session is gone"), "{details}");
        let reason = match &events[1] {
            SignalEvent::SessionEnded { .. } => match &events[2] {
                SignalEvent::ParticipantRemoved { reason, .. } => reason.clone(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        events.remove(0);
        assert_eq!(events, endings(&reason));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["janus"], "create");
    }
}

#[test]
fn another_sessions_timeout_changes_nothing() {
    let mut h = recording_1234();
    let (events, sent) = h.feed("timeout", None);
    assert!(events.is_empty() && sent.is_empty());
}

// ---- robustness -------------------------------------------------------------------------

#[test]
fn core_errors_become_server_errors() {
    let mut h = following_1234();
    let (events, _) = h.feed("error-unhandled-request", None);
    let details = server_error(&events);
    assert!(
        details.contains("Unhandled request 'nonsense'"),
        "{details}"
    );
    // For another session: reported, but ours goes on.
    let (events, sent) = h.feed("error-no-such-session", None);
    assert!(server_error(&events).contains("No such session"));
    assert!(sent.is_empty());
}

#[test]
fn malformed_and_unexpected_messages_are_errors_not_panics() {
    let mut h = recording_1234();
    for bad in [
        "",
        "not json",
        "{}",
        "[1,2,3]",
        r#"{"janus":"event"}"#,
        r#"{"janus":"event","sender":"x","plugindata":{"plugin":"janus.plugin.videoroom","data":{}}}"#,
        r#"{"janus":"success","transaction":5}"#,
        r#"{"janus":"trickle","sender":1}"#,
        r#"{"janus":"event","sender":1,"plugindata":{"plugin":"janus.plugin.videoroom","data":{"streams":"x"}}}"#,
        r#"{"janus":"event","sender":1,"plugindata":{"plugin":"janus.plugin.videoroom","data":{"publishers":[{"id":-1}]}}}"#,
        &"[".repeat(100_000),
    ] {
        assert!(
            matches!(h.j.parse(bad), Err(ProtocolError::Malformed { .. })),
            "{bad:.60}"
        );
    }
    // Well-formed, but not something callrec can use.
    let other_plugin = json!({"janus": "event", "sender": 1, "plugindata": {"plugin": "janus.plugin.echotest", "data": {}}});
    assert!(matches!(
        h.j.parse(&other_plugin.to_string()),
        Err(ProtocolError::Unexpected { .. })
    ));
    let mut answer = sample("updated-by-janus");
    answer["jsep"]["type"] = "answer".into();
    assert!(matches!(
        h.j.parse(&answer.to_string()),
        Err(ProtocolError::Unexpected { .. })
    ));
    // What the message said before its fault still goes out.
    let out = h.j.take_output();
    assert!(
        matches!(&out.events[..], [SignalEvent::StreamsChanged { .. }]),
        "{out:?}"
    );
    // Harmless ones are ignored.
    for fine in [
        json!({"janus": "server_info", "version": 1102}),
        sample("media"),
        json!({"janus": "slowlink", "sender": 1, "uplink": true, "lost": 3}),
        json!({"janus": "ack", "transaction": "nobody"}),
        json!({"janus": "success", "transaction": "nobody"}),
    ] {
        assert_eq!(h.feed_value(&fine), (vec![], vec![]), "{fine}");
    }
}

#[test]
fn an_attached_without_offer_is_unexpected() {
    let mut h = following_1234();
    h.feed("publishers-alice", None);
    let (_, attach) = h.command(start("1234"));
    let (_, join) = h.feed("attach-subscriber-1234", Some(&attach[0]));
    let mut attached = sample("attached");
    attached["transaction"] = join[0]["transaction"].clone();
    attached.as_object_mut().unwrap().remove("jsep");
    assert!(matches!(
        h.j.parse(&attached.to_string()),
        Err(ProtocolError::Unexpected { .. })
    ));
    // The subscription is given back, and can be asked for again.
    let out = h.j.take_output();
    assert!(texts(out.messages).iter().any(|m| m["janus"] == "detach"));
    assert!(!h.command(start("1234")).1.is_empty());
}

#[test]
fn every_sample_in_every_state_is_handled_without_panic() {
    let dir = format!(
        "{}/src/signalling/janus/samples",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 40, "{names:?}");
    let states: [fn() -> H; 3] = [
        || H::new(RoomSelection::All),
        following_1234,
        recording_1234,
    ];
    for state in states {
        let mut h = state();
        for name in &names {
            let text = sample(name).to_string();
            let _ = h.j.parse(&text);
            // Cut short anywhere: an error, never a panic.
            for cut in [1, text.len() / 3, text.len() / 2, text.len() - 1] {
                let cut = (0..=cut).rev().find(|&c| text.is_char_boundary(c)).unwrap();
                let _ = h.j.parse(&text[..cut]);
            }
        }
        let _ = h.j.take_output();
        h.tick(31);
        h.tick(3600);
    }
}

#[test]
fn sizes_are_bounded() {
    // A room with far too many publishers, with huge names.
    let mut h = following_1234();
    let mut news = sample("publishers-alice");
    let publishers: Vec<Value> = (1..=300u64)
        .map(|i| json!({"id": i, "display": "x".repeat(10_000), "streams": [{"type": "audio", "mid": "a"}]}))
        .collect();
    news["plugindata"]["data"]["publishers"] = publishers.into();
    let (events, _) = h.feed_value(&news);
    assert_eq!(events.len(), rooms::MAX_PUBLISHERS);
    let SignalEvent::ParticipantAdded { participant, .. } = &events[0] else {
        panic!("{:?}", events[0]);
    };
    assert_eq!(
        participant.display.as_ref().unwrap().chars().count(),
        rooms::MAX_TEXT
    );
    // A listing of far too many rooms, some with absurd ids.
    let mut h = H::new(RoomSelection::All);
    let attach = connected(&mut h);
    let (_, list) = h.feed("attach-control-success", Some(&attach[0]));
    let mut listing = sample("list");
    listing["transaction"] = list[0]["transaction"].clone();
    let mut rooms_listed: Vec<Value> = (1..=1000u64).map(|i| json!({"room": i})).collect();
    rooms_listed.insert(0, json!({"room": "r".repeat(10_000)}));
    listing["plugindata"]["data"]["list"] = rooms_listed.into();
    let (_, follows) = h.feed_value(&listing);
    assert_eq!(
        follows.len(),
        rooms::MAX_ROOMS - 1,
        "the absurd id is skipped"
    );
    // A streams table far too long.
    let mut h = recording_1234();
    let mut update = sample("updated-by-janus");
    let stream = update["plugindata"]["data"]["streams"][0].clone();
    update["plugindata"]["data"]["streams"] = vec![stream; 2000].into();
    let (events, _) = h.feed_value(&update);
    let SignalEvent::StreamsChanged { streams, .. } = &events[0] else {
        panic!("{events:?}");
    };
    assert_eq!(streams.len(), mapping::MAX_STREAMS);
}

#[test]
fn requests_janus_never_answers_are_undone() {
    let mut h = H::new(RoomSelection::List(vec![JanusId::Num(1234)]));
    let attach = connected(&mut h);
    assert_eq!(attach.len(), 1);
    let (events, _) = h.tick(30);
    let details = server_error(&events);
    assert!(
        details.contains("following room 1234 failed: Janus did not answer"),
        "{details}"
    );
    // Tried again at the next listing.
    let (_, sent) = h.tick(60);
    assert!(sent.iter().any(|m| m["opaque_id"] == "callrec-follow-1234"));
}
