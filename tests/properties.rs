//! Property tests over the parsers that take untrusted or operator-written text: signalling
//! messages, SDP offers, templates and their `${variables}`, safe names, manifests and the
//! config. The same functions are fuzzed by the targets in `fuzz/`; these run in the normal
//! test suite, so they stay small (a few hundred cases each, a few seconds in all).
//!
//! Each property calls the library once or twice, so the module layout can change under them
//! with a one-line edit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

use callrec::config::{self, Config};
use callrec::names::{self, is_safe_component, safe_name};
use callrec::recording::{
    CallStatus, LayerSpan, Manifest, MixBehind, MixEntry, MixGap, MixStatus, OnScreen,
    ParticipantEntry, PipelineEntry, PostEntry, PostStatus, TrackEntry, TrackStatus,
};
use callrec::signalling::{gst_webrtc, SignalCommand, SignalEvent};
use callrec::templates::{LayoutKind, Template};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Real offers (webrtcbin's, Chromium's, Firefox's): the fuzz corpus seeds.
const OFFERS: &[&str] = &[
    include_str!("../fuzz/seeds/sdp/webrtcbin-vp8-opus.sdp"),
    include_str!("../fuzz/seeds/sdp/webrtcbin-h264-opus.sdp"),
    include_str!("../fuzz/seeds/sdp/webrtcbin-vp9-nobundle.sdp"),
    include_str!("../fuzz/seeds/sdp/webrtcbin-two-video-compat.sdp"),
    include_str!("../fuzz/seeds/sdp/chromium-audio-video.sdp"),
    include_str!("../fuzz/seeds/sdp/chromium-simulcast-candidates.sdp"),
    include_str!("../fuzz/seeds/sdp/firefox-audio-video.sdp"),
];

const CONFIGS: &[&str] = &[
    include_str!("../systemd/callrec.toml"),
    include_str!("../fuzz/seeds/config/every-key.toml"),
    include_str!("../fuzz/seeds/config/bad-values.toml"),
];

const TEMPLATES: &[&str] = &[
    include_str!("../pipelines/participant-mkv.pipeline"),
    include_str!("../pipelines/track-mkv.pipeline"),
    include_str!("../pipelines/mix-mp4.pipeline"),
    include_str!("../pipelines/mix-hls.pipeline"),
    include_str!("../pipelines/post-mp4.pipeline"),
];

fn gst_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| gst::init().expect("GStreamer initialises"));
}

/// Values from the network, biased towards what could change pipeline syntax or paths.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9 !\"'=./_${}\\\\\n\t,:;|&<>-]{0,24}",
        prop::sample::select(vec![
            "../../etc",
            "/../x",
            "a/../../b",
            "..",
            ".",
            "",
            "a ! filesink location=/tmp/x",
            "\"q\"",
            "it's",
            "${call_dir}",
            "日本語 Ö",
            "name=mux",
            "a\u{0}b",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Mutations of a real input: truncation, a line dropped or doubled, text inserted.
fn mutated(seeds: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::sample::select(seeds),
        prop::collection::vec((0usize..4, any::<prop::sample::Index>(), hostile()), 0..4),
    )
        .prop_map(|(seed, edits)| {
            let mut lines: Vec<String> = seed.split_inclusive('\n').map(str::to_owned).collect();
            for (op, at, text) in edits {
                if lines.is_empty() {
                    lines.push(text);
                    continue;
                }
                let i = at.index(lines.len());
                match op {
                    0 => {
                        lines.remove(i);
                    }
                    1 => lines.insert(i, lines[i].clone()),
                    2 => lines.insert(i, text),
                    _ => {
                        let cut = lines[i]
                            .char_indices()
                            .map(|(p, _)| p)
                            .nth(at.index(lines[i].chars().count().max(1)))
                            .unwrap_or(0);
                        lines[i] = format!("{}{text}{}", &lines[i][..cut], &lines[i][cut..]);
                    }
                }
            }
            lines.concat()
        })
}

// ---- signalling ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn signalling_parse_never_panics(text in any::<String>()) {
        let _ = gst_webrtc::parse(&text);
    }

    #[test]
    fn signalling_parse_never_panics_on_near_messages(
        kind in prop::sample::select(vec![
            "welcome", "list", "listConsumers", "peerStatusChanged", "sessionStarted",
            "startSession", "endSession", "peer", "error", "nope",
        ]),
        fields in prop::collection::btree_map(
            prop::sample::select(vec![
                "peerId", "sessionId", "roles", "meta", "producers", "sdp", "ice",
                "details", "offer", "candidate", "sdpMLineIndex", "type",
            ]),
            json_value(),
            0..5,
        ),
    ) {
        let mut msg: serde_json::Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        msg.insert("type".into(), kind.into());
        let _ = gst_webrtc::parse(&Value::Object(msg).to_string());
    }

    #[test]
    fn offers_and_candidates_arrive_unchanged(
        session in hostile(), sdp in any::<String>(), candidate in any::<String>(), mline in any::<u32>(),
    ) {
        let offer = json!({"type": "peer", "sessionId": session, "sdp": {"type": "offer", "sdp": sdp}});
        prop_assert_eq!(
            gst_webrtc::parse(&offer.to_string()).unwrap(),
            vec![SignalEvent::Offer { session_id: session.clone(), sdp }]
        );
        let ice = json!({"type": "peer", "sessionId": session, "ice": {"candidate": candidate, "sdpMLineIndex": mline}});
        prop_assert_eq!(
            gst_webrtc::parse(&ice.to_string()).unwrap(),
            vec![SignalEvent::Ice { session_id: session, candidate, mline_index: mline }]
        );
    }

    #[test]
    fn producers_get_safe_call_and_file_names(peer_id in hostile(), meta in json_value()) {
        let msg = json!({"type": "peerStatusChanged", "roles": ["producer"], "meta": meta, "peerId": peer_id});
        for event in gst_webrtc::parse(&msg.to_string()).unwrap() {
            let SignalEvent::ProducerAdded { peer_id, meta } = event else {
                panic!("not a producer: {event:?}");
            };
            let meta = meta.unwrap_or_default();
            let (_, call) = callrec::supervisor::call_key(&peer_id, &meta, "call");
            prop_assert!(is_safe_component(&safe_name(&call)));
            prop_assert!(is_safe_component(&names::participant_name(&peer_id, &meta)));
        }
    }

    #[test]
    fn commands_are_valid_protocol_messages(session in any::<String>(), text in any::<String>(), mline in any::<u32>()) {
        use gst_plugin_webrtc_signalling_protocol as p;
        for command in [
            SignalCommand::StartSession { peer_id: session.clone(), offer: Some(text.clone()) },
            SignalCommand::Answer { session_id: session.clone(), sdp: text.clone() },
            SignalCommand::Ice { session_id: session.clone(), candidate: text.clone(), mline_index: mline },
            SignalCommand::EndSession { session_id: session.clone() },
        ] {
            let wire = gst_webrtc::serialize(&command).expect("each of these has a message");
            prop_assert!(serde_json::from_str::<p::IncomingMessage>(&wire).is_ok(), "{}", wire);
        }
    }
}

/// Any JSON value with finite numbers, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        hostile().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![hostile(), Just("name".to_owned()), Just("call".to_owned())],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// ---- SDP ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn sdp_reader_never_panics_on_mutated_offers(sdp in mutated(OFFERS)) {
        gst_init();
        if let Ok((msg, tracks)) = callrec::media::sdp::offered_tracks(&sdp) {
            prop_assert!(!tracks.is_empty());
            prop_assert!(tracks.windows(2).all(|w| w[0].mline < w[1].mline));
            prop_assert!(tracks.iter().all(|t| t.mline < msg.medias_len()));
        }
    }

    #[test]
    fn sdp_reader_never_panics_on_text(sdp in any::<String>()) {
        gst_init();
        let _ = callrec::media::sdp::offered_tracks(&sdp);
    }
}

#[test]
fn real_offers_have_tracks() {
    gst_init();
    for offer in OFFERS {
        let (_, tracks) = callrec::media::sdp::offered_tracks(offer).unwrap();
        assert!(!tracks.is_empty(), "{offer}");
    }
}

// ---- templates and variables ----

/// The shipped track template: every variable a track instance gets.
fn track_template() -> Template {
    Template::parse(
        Path::new("track-mkv.pipeline"),
        include_str!("../pipelines/track-mkv.pipeline"),
    )
    .unwrap()
}

/// A template with a quoted location, where a value could try to close the quote.
fn quoted_template() -> Template {
    Template::parse(
        Path::new("q.pipeline"),
        "# scope: participant\n# media: audio/x-opus\n# inputs: mux\n\
         oggmux name=mux ! filesink location=\"${call_dir}/${call}/${participant} x.ogg\"\n",
    )
    .unwrap()
}

fn vars(participant: &str, call: &str) -> BTreeMap<&'static str, String> {
    let mut vars = BTreeMap::new();
    vars.insert("call_dir", "/var/lib/callrec/recordings/c".to_owned());
    vars.insert("call", call.to_owned());
    vars.insert("participant", participant.to_owned());
    vars.insert("template", "t".to_owned());
    vars.insert("track", "video0".to_owned());
    vars.insert("kind", "video".to_owned());
    vars.insert("codec", "vp8".to_owned());
    vars
}

/// What decides a gst-launch text's structure: its words, links, quotes, assignments and
/// path separators.
fn shape(text: &str) -> (usize, Vec<usize>) {
    let count = |c: char| text.matches(c).count();
    (
        text.split_whitespace().count(),
        "!\"'=/$".chars().map(count).collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn variables_never_change_pipeline_syntax(participant in hostile(), call in hostile()) {
        for template in [track_template(), quoted_template()] {
            let reference = shape(&template.render(&vars("p", "c")).unwrap());
            // A raw value is either refused or changes nothing but the name.
            if let Ok(text) = template.render(&vars(&participant, &call)) {
                prop_assert!(is_safe_component(&participant) && is_safe_component(&call));
                prop_assert_eq!(shape(&text), reference.clone(), "{}", text);
            }
            // Its safe name always renders, into the same structure.
            let (p, c) = (safe_name(&participant), safe_name(&call));
            let text = template.render(&vars(&p, &c)).unwrap();
            prop_assert_eq!(shape(&text), reference, "{}", text);
        }
    }

    #[test]
    fn outputs_stay_in_the_call_dir(participant in hostile()) {
        let name = safe_name(&participant);
        let text = track_template().render(&vars(&name, "c")).unwrap();
        let location = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("location="))
            .unwrap();
        let file = location
            .strip_prefix("/var/lib/callrec/recordings/c/")
            .expect("the file is in the call dir");
        prop_assert_eq!(file.to_owned(), format!("{name}-video0.mkv"));
        prop_assert!(!file.contains('/') && !file.starts_with('.'));
    }

    #[test]
    fn template_parser_never_panics(text in prop_oneof![mutated(TEMPLATES), any::<String>()]) {
        let Ok(template) = Template::parse(Path::new("t.pipeline"), &text) else {
            return Ok(());
        };
        if let Ok(body) = template.render(&template.sample_vars()) {
            let _ = callrec::offline::launch::launch_command(&body, None);
        }
        let _ = callrec::offline::launch::with_test_sources(&template, 3, 1, Path::new("/tmp/out"));
    }

    #[test]
    fn tokenisers_never_panic(message in hostile(), body in prop_oneof![mutated(TEMPLATES), hostile()]) {
        use callrec::templates::diagnose as diagnose;
        gst_init();
        let lines: Vec<diagnose::Line> =
            body.lines().enumerate().map(|(i, l)| (i + 1, l.to_owned())).collect();
        let _ = diagnose::unbalanced_quote(&lines);
        for word in body.split_whitespace().take(8) {
            let _ = diagnose::line_of_element(&lines, word);
            let _ = diagnose::line_of_property(&lines, word);
        }
        let _ = diagnose::explain_parse_error(&lines, &message, &["callrec-no-such-element".into()]);
        let _ = callrec::offline::launch::launch_command(&body, None);
    }
}

/// Text made of gst-launch's syntax: quotes, escapes, links, assignments, pad references,
/// caps punctuation, continuations and comments, with some non-ASCII.
fn launchish() -> impl Strategy<Value = String> {
    "([a-z0-9_]{1,6}|[=!\"'\\\\.,()/:;{}#$ \t\n]|\\\\\n|Ö|日|\u{a0}){0,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn launch_text_tokens_cover_the_text_in_order(
        text in prop_oneof![launchish(), mutated(TEMPLATES), hostile(), any::<String>()],
    ) {
        use callrec::templates::launch_text::{self, LaunchText, LexError, Span, TokenKind};
        let lexed = LaunchText::lex(&text);
        let within = |inner: Span, outer: Span| outer.start <= inner.start && inner.end <= outer.end;
        let mut at = 0;
        for token in lexed.tokens() {
            prop_assert_eq!(token.span.start, at, "{:?}: {:?}", text, lexed.tokens());
            prop_assert!(token.span.end > token.span.start, "{:?}", text);
            prop_assert!(text.is_char_boundary(token.span.end), "{:?}", text);
            match token.kind {
                TokenKind::Property { key, value } => {
                    prop_assert!(within(key, token.span) && within(value, token.span));
                    prop_assert!(key.end < value.start);
                }
                TokenKind::PadRef { element, pad } => {
                    prop_assert!(within(element, token.span) && within(pad, token.span));
                }
                _ => {}
            }
            at = token.span.end;
        }
        prop_assert_eq!(at, text.len());
        if let Some(LexError::UnterminatedQuote { quote, at }) = lexed.error() {
            prop_assert_eq!(text[at..].chars().next(), Some(quote));
        }
        for (span, _) in lexed.names() {
            prop_assert!(text.get(span.range()).is_some());
        }
        // The arguments are the text's words, in order.
        let mut from = 0;
        for argument in lexed.arguments() {
            let found = text[from..].find(argument);
            prop_assert!(found.is_some(), "{:?} in {:?}", argument, text);
            from += found.unwrap_or(0) + argument.len();
        }
        prop_assert_eq!(lexed.edit(vec![]), text.clone());
        prop_assert_eq!(launch_text::source_lines(&text).len(), text.lines().count());
    }
}

// ---- safe names ----

/// Strings close to escapes and to each other, where collisions would hide.
fn escapish() -> impl Strategy<Value = String> {
    prop_oneof!["[a_.2ef/+-]{0,8}", any::<String>(), "[a_]{60,70}"]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn safe_names_are_injective(a in escapish(), b in escapish()) {
        prop_assert!(a == b || safe_name(&a) != safe_name(&b), "{:?} {:?}", a, b);
    }

    #[test]
    fn safe_names_stay_in_the_charset(s in prop_oneof![escapish(), hostile()]) {
        let name = safe_name(&s);
        prop_assert!(is_safe_component(&name), "{:?} -> {:?}", s, name);
        prop_assert!(name.len() <= names::MAX_NAME_LEN + 1, "{:?} -> {:?}", s, name);
        prop_assert!(!name.contains('+'), "`+` is kept for callrec's own suffixes");
    }
}

// ---- manifest ----

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), hostile()]
}

fn track_status() -> impl Strategy<Value = TrackStatus> {
    prop_oneof![
        Just(TrackStatus::Recording),
        Just(TrackStatus::Complete),
        Just(TrackStatus::Interrupted),
        Just(TrackStatus::Empty),
        Just(TrackStatus::Skipped),
    ]
}

fn mix_status() -> impl Strategy<Value = MixStatus> {
    prop_oneof![
        Just(MixStatus::Recording),
        Just(MixStatus::Complete),
        Just(MixStatus::Interrupted),
        Just(MixStatus::Failed),
    ]
}

fn post_status() -> impl Strategy<Value = PostStatus> {
    prop_oneof![
        Just(PostStatus::Queued),
        Just(PostStatus::Running),
        Just(PostStatus::Complete),
        Just(PostStatus::Skipped),
        Just(PostStatus::Failed),
    ]
}

prop_compose! {
    fn participant()(
        id in text(), name in text(), meta in json_value(), session in text(), joined_at in text(),
        left_at in prop::option::of(text()), end_reason in prop::option::of(text()),
        source in prop::option::of(text()),
    ) -> ParticipantEntry {
        ParticipantEntry { id, name, meta, source, session, joined_at, left_at, end_reason }
    }
}

prop_compose! {
    fn track()(
        participant in text(), kind in text(), codec in text(), mline in any::<u32>(),
        template in prop::option::of(text()), file in prop::option::of(text()), status in track_status(),
        start_offset_ms in any::<Option<i64>>(), duration_ms in any::<Option<u64>>(),
        bytes in any::<Option<u64>>(), note in prop::option::of(text()),
        layers in prop::collection::vec(
            (prop::option::of(text()), any::<Option<u32>>(), any::<Option<u32>>(), any::<u64>()),
            0..3,
        ),
    ) -> TrackEntry {
        let layers = layers
            .into_iter()
            .map(|(rid, width, height, from_ms)| LayerSpan { rid, width, height, from_ms })
            .collect();
        TrackEntry {
            participant, kind, codec, mline, template, file, status, start_offset_ms,
            duration_ms, bytes, note, layers,
        }
    }
}

prop_compose! {
    fn pipeline()(
        template in text(), scope in text(), participant in text(),
        track in prop::option::of(text()), files in prop::collection::vec(text(), 0..3),
        pipeline in text(),
    ) -> PipelineEntry {
        PipelineEntry { template, scope, participant, track, files, pipeline }
    }
}

prop_compose! {
    fn mix()(
        template in text(), files in prop::collection::vec(text(), 0..3),
        speaker in any::<bool>(), canvas in text(), status in mix_status(),
        on_screen in prop::collection::vec((text(), any::<u64>(), any::<u64>()), 0..3),
        pipeline in text(), remixed_at in prop::option::of(text()),
        gaps in prop::collection::vec((any::<u64>(), any::<u64>()), 0..3),
        dropped_frames in prop::option::of(any::<u64>()),
        behind in prop::collection::vec(any::<(u64, u64, u64, u64)>(), 0..3),
    ) -> MixEntry {
        MixEntry {
            template, files, canvas, status, pipeline, remixed_at,
            gaps: gaps
                .into_iter()
                .map(|(from_ms, to_ms)| MixGap { from_ms, to_ms })
                .collect(),
            layout: if speaker { LayoutKind::Speaker } else { LayoutKind::Grid },
            on_screen: on_screen
                .into_iter()
                .map(|(participant, from_ms, to_ms)| OnScreen { participant, from_ms, to_ms })
                .collect(),
            dropped_frames,
            behind: behind
                .into_iter()
                .map(|(from_ms, to_ms, dropped_frames, max_lag_ms)| MixBehind {
                    from_ms, to_ms, dropped_frames, max_lag_ms,
                })
                .collect(),
        }
    }
}

prop_compose! {
    fn post()(
        template in text(), status in post_status(), files in prop::collection::vec(text(), 0..3),
        error in prop::option::of(text()), started_at in prop::option::of(text()),
        finished_at in prop::option::of(text()), pipelines in prop::collection::vec(text(), 0..2),
    ) -> PostEntry {
        PostEntry { template, status, files, error, started_at, finished_at, pipelines }
    }
}

prop_compose! {
    fn manifest()(
        call in text(), dir in text(),
        status in prop::sample::select(vec![
            CallStatus::Recording, CallStatus::Complete, CallStatus::Interrupted, CallStatus::Failed,
        ]),
        ended_at in prop::option::of(text()), end_reason in prop::option::of(text()),
        participants in prop::collection::vec(participant(), 0..3),
        tracks in prop::collection::vec(track(), 0..3),
        pipelines in prop::collection::vec(pipeline(), 0..2),
        mixes in prop::collection::vec(mix(), 0..2),
        warnings in prop::collection::vec(text(), 0..3),
        post in prop::collection::vec(post(), 0..2),
    ) -> Manifest {
        let mut m = Manifest::new(&call, &dir);
        m.status = status;
        m.ended_at = ended_at;
        m.end_reason = end_reason;
        m.participants = participants;
        m.tracks = tracks;
        m.pipelines = pipelines;
        m.mixes = mixes;
        m.warnings = warnings;
        m.post = post;
        m
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn manifests_round_trip(m in manifest()) {
        let once = serde_json::to_string_pretty(&m).unwrap();
        let back: Manifest = serde_json::from_str(&once).unwrap();
        prop_assert_eq!(&serde_json::to_string_pretty(&back).unwrap(), &once);
        // What callrec writes is what it wrote: the meta values, byte for byte.
        for (a, b) in m.participants.iter().zip(&back.participants) {
            prop_assert_eq!(&a.meta, &b.meta);
        }
    }

    #[test]
    fn manifest_parser_never_panics(text in any::<String>()) {
        let _ = serde_json::from_str::<Manifest>(&text);
    }
}

// ---- config ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn config_parser_never_panics(text in prop_oneof![mutated(CONFIGS), any::<String>()]) {
        if let Ok(config) = Config::parse(&text) {
            let _ = config.validate();
        }
    }

    #[test]
    fn valid_configs_have_usable_durations(
        key in prop::sample::select(vec![
            "connect_timeout_secs", "reconnect_min_secs", "reconnect_max_secs",
            "negotiation_timeout_secs",
        ]),
        value in prop_oneof![
            any::<f64>(),
            Just(f64::INFINITY),
            Just(f64::NAN),
            Just(-0.0),
            Just(86_399.999),
            Just(1e-300),
        ],
    ) {
        // TOML spells the special values inf and nan.
        let value = match value {
            v if v.is_nan() => "nan".to_owned(),
            v if v.is_infinite() => if v > 0.0 { "inf".to_owned() } else { "-inf".to_owned() },
            v => format!("{v:?}"),
        };
        let text = format!(
            "[signalling]\nurl = \"ws://127.0.0.1:8443\"\n{key} = {value}\n\
             [recording]\ndir = \"/r\"\nlinger_secs = {value}\n"
        );
        let config = Config::parse(&text).unwrap();
        if config.validate().is_ok() {
            let s = &config.sources[0];
            for v in [s.connect_timeout_secs, s.reconnect_min_secs, s.reconnect_max_secs,
                      s.negotiation_timeout_secs, config.recording.linger_secs] {
                let _ = config::secs(v);
            }
        }
    }
}
