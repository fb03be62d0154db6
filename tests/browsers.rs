//! Real browsers publishing to callrec: headless Chromium sends AV1, VP9, H.264 and VP8 (each
//! with Opus) through the gst-webrtc signalling server and through callrec's WHIP endpoint,
//! and Firefox ESR sends VP8 + Opus through the signalling server; Chromium also answers
//! callrec's own offer (`offerer = "callrec"`) in VP8 and H.264. The pages are in
//! `tests/browser/` (`producer.html` speaks the gst-webrtc protocol, `whip.html` is a WHIP
//! client); `common::BrowserPage` starts the browser on them.
//!
//! Each recording is checked as any other: the manifest lists the participant's audio and
//! video tracks as complete, the file has the codec the browser says it sent, every frame
//! decodes without an error, and it lasts as long as the browser sent. One signalling server
//! and one daemon (with a gst-webrtc and a WHIP source) serve every case of a test, one
//! browser at a time (software AV1 and VP9 encoders are heavy on two cores).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{BrowserKind, BrowserPage, Daemon, Expect, SignallingServer};
use serde_json::Value;

/// Opens every WHIP call.
const TOKEN: &str = "browser-test-token-0123456789";
/// Seconds each browser sends once connected.
const SEND_SECS: &str = "6";
/// Allowed difference between a file's duration and what the browser sent.
const TOLERANCE_S: f64 = 1.0;
/// Share of the frames the browser sent that a file must decode.
const MIN_FRAMES: f64 = 0.8;

/// A signalling server and a daemon recording from it and from its WHIP endpoint.
struct Recorder {
    server: SignallingServer,
    daemon: Daemon,
    whip: SocketAddr,
    rec: tempfile::TempDir,
    _files: tempfile::TempDir,
}

impl Recorder {
    fn start() -> Self {
        Self::start_with("")
    }

    /// With `extra` lines in `[recording]`.
    fn start_with(extra: &str) -> Self {
        Self::start_config("", extra)
    }

    /// With `signalling` lines in `[signalling]` (the gst-webrtc source) and `extra` lines in
    /// `[recording]`.
    fn start_config(signalling: &str, extra: &str) -> Self {
        let server = SignallingServer::start();
        let files = tempfile::tempdir().unwrap();
        let tokens = files.path().join("whip-tokens");
        std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
        let rec = tempfile::tempdir().unwrap();
        let whip: SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap();
        let daemon = Daemon::start(&format!(
            r#"
[signalling]
url = "{url}"
reconnect_min_secs = 0.2
reconnect_max_secs = 1.0
{signalling}

[[source]]
name = "whip"
protocol = "whip"
listen = "{whip}"
tokens_file = "{tokens}"

[recording]
dir = "{dir}"
pipelines_dir = "{pipelines}"
linger_secs = 1
media_timeout_secs = 6
{extra}

[ice]
local_addresses = ["127.0.0.1"]
"#,
            url = server.url(),
            tokens = tokens.display(),
            dir = rec.path().display(),
            pipelines = common::PIPELINES,
        ));
        Recorder {
            server,
            daemon,
            whip,
            rec,
            _files: files,
        }
    }
}

/// What one browser publishes.
#[derive(Debug, Clone, Copy)]
struct Case {
    /// The codec the page prefers (`VP8`, `VP9`, `H264`, `AV1`).
    codec: &'static str,
    /// ffprobe's name for it.
    ffprobe: &'static str,
    /// A scalability mode for its one encoding (VP9 SVC), if any.
    svc: Option<&'static str>,
    /// Three simulcast encodings (rids `q`, `h`, `f`).
    simulcast: bool,
}

const fn case(codec: &'static str, ffprobe: &'static str) -> Case {
    Case {
        codec,
        ffprobe,
        svc: None,
        simulcast: false,
    }
}

/// Every codec Chromium sends, most demanding first.
const CHROMIUM_CODECS: [Case; 4] = [
    case("AV1", "av1"),
    case("VP9", "vp9"),
    case("H264", "h264"),
    case("VP8", "vp8"),
];

/// The page's query options for a case.
fn options(case: &Case) -> Vec<(&'static str, &'static str)> {
    let mut q = vec![("codec", case.codec), ("duration", SEND_SECS)];
    if let Some(svc) = case.svc {
        q.push(("svc", svc));
    }
    if case.simulcast {
        q.push(("simulcast", "1"));
    }
    q
}

/// What a browser published: the id callrec knows it by, where it was recorded, the page's
/// `done` report, and (gst-webrtc) its `session` report.
struct Published {
    id: String,
    call_dir: PathBuf,
    done: Value,
    session: Value,
}

/// `kind` publishes `case` through the signalling server into call `call`.
fn publish_gst_webrtc(r: &Recorder, kind: BrowserKind, case: &Case, call: &str) -> Published {
    publish_gst_webrtc_with(r, kind, case, call, &[])
}

/// As [`publish_gst_webrtc`], with `extra` query options for the page.
fn publish_gst_webrtc_with(
    r: &Recorder,
    kind: BrowserKind,
    case: &Case,
    call: &str,
    extra: &[(&'static str, &'static str)],
) -> Published {
    let url = r.server.url();
    let mut query = vec![("ws", url.as_str()), ("call", call), ("name", call)];
    // An option in `extra` replaces the case's.
    query.extend(
        options(case)
            .into_iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k)),
    );
    query.extend_from_slice(extra);
    let mut page = BrowserPage::open(kind, "producer.html", &query);
    let id = page.wait_event("registered", Duration::from_secs(60))["peer_id"]
        .as_str()
        .expect("registered carries peer_id")
        .to_owned();
    let mut session = page.wait_event("session", Duration::from_secs(60));
    let done = page.wait_event("done", Duration::from_secs(90));
    let mut reports = page.reports();
    // What the page received and answered, for the checks of a session callrec offered.
    for event in ["offer_received", "answered_offer"] {
        if let Some(pos) = reports.iter().position(|v| v["event"] == event) {
            session[event] = reports.remove(pos)["sdp"].clone();
        }
    }
    Published {
        id,
        call_dir: r.rec.path().join(call),
        done,
        session,
    }
}

/// `kind` publishes `case` to the WHIP endpoint, into call `call`.
fn publish_whip(r: &Recorder, kind: BrowserKind, case: &Case, call: &str) -> Published {
    let endpoint = format!("http://{}/whip/{call}?name={call}", r.whip);
    let mut query = vec![("whip", endpoint.as_str()), ("token", TOKEN)];
    query.extend(options(case));
    let mut page = BrowserPage::open(kind, "whip.html", &query);
    let id = page.wait_event("session", Duration::from_secs(60))["session_id"]
        .as_str()
        .expect("session carries session_id")
        .to_owned();
    let done = page.wait_event("done", Duration::from_secs(90));
    Published {
        id,
        call_dir: r.rec.path().join(format!("whip-{call}")),
        done,
        session: Value::Null,
    }
}

/// The page's statistics for its outbound video streams.
fn video_streams(done: &Value) -> Vec<&Value> {
    done["streams"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["kind"] == "video").collect())
        .unwrap_or_default()
}

/// The participant's tracks in the manifest.
fn tracks_of<'a>(m: &'a Value, id: &str) -> Vec<&'a Value> {
    m["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["participant"] == id)
        .collect()
}

/// The call is complete, the browser's audio and video tracks are complete in one file with
/// the expected codecs, every frame decodes, the file covers what was sent, and it holds
/// most of the frames sent (lost pictures would still decode).
fn check_recording(p: &Published, case: &Case) -> Value {
    check_recording_in(p, case, "")
}

/// As [`check_recording`], for the file of `template` where the call has others too (all of
/// them if `template` is empty).
fn check_recording_in(p: &Published, case: &Case, template: &str) -> Value {
    let sent = p.done["sent_secs"]
        .as_f64()
        .expect("done carries sent_secs");
    let video = video_streams(&p.done);
    eprintln!(
        "{}: sent {sent:.2} s; video as the browser reports it: {}",
        p.call_dir.display(),
        serde_json::to_string(&video).unwrap()
    );
    // The browser really sent what the case asks for (a silent fallback to VP8 would test
    // nothing).
    assert!(
        video.iter().any(|s| s["codec"]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case(&format!("video/{}", case.codec)))
            && s["frames_encoded"].as_u64().unwrap_or(0) > 0),
        "the browser did not send {}: {:#}",
        case.codec,
        p.done
    );
    let m = common::wait_complete(&p.call_dir);
    let tracks: Vec<&Value> = tracks_of(&m, &p.id)
        .into_iter()
        .filter(|t| template.is_empty() || t["template"] == template)
        .collect();
    for kind in ["audio", "video"] {
        let t = tracks
            .iter()
            .find(|t| t["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} track for {}: {m:#}", p.id));
        assert_eq!(t["status"], "complete", "{kind}: {t:#}\n{m:#}");
    }
    let mut files: Vec<String> = tracks
        .iter()
        .filter_map(|t| t["file"].as_str().map(str::to_owned))
        .collect();
    files.dedup();
    assert_eq!(files.len(), 1, "one file for {}: {m:#}", p.id);
    let file = p.call_dir.join(&files[0]);
    let info = common::probe(&file);
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{}: {:.2} s, {:.0} kbit/s, streams {:?}",
        file.display(),
        info.duration_s,
        bytes as f64 * 8.0 / 1000.0 / info.duration_s.max(0.001),
        info.streams
    );
    let decoded = common::assert_playable(
        &file,
        &Expect {
            video_codec: Some(case.ffprobe),
            audio_codec: Some("opus"),
            duration_s: sent,
            tolerance_s: TOLERANCE_S,
        },
    );
    // Every picture the browser sent is there, not just a playable few: at least 80 % of its
    // frame rate over the file, or of the frames it encoded if fewer (a starved browser
    // skips frames, and its rate at the end says nothing of that).
    let max_of = |key: &str| {
        video
            .iter()
            .filter_map(|s| s[key].as_f64())
            .fold(0.0, f64::max)
    };
    let (fps, encoded) = (max_of("fps"), max_of("frames_encoded"));
    let expected = (fps * info.duration_s).min(encoded);
    assert!(
        decoded.video_frames as f64 >= MIN_FRAMES * expected,
        "{}: {} video frames decode, the browser sent {fps} a second for {:.2} s and encoded \
         {encoded} ({expected:.0} expected)",
        file.display(),
        decoded.video_frames,
        info.duration_s
    );
    m
}

fn assert_no_panic(daemon: &Daemon) {
    assert!(!daemon.log().contains("panicked"), "the daemon panicked");
}

#[test]
fn chromium_publishes_av1_vp9_h264_and_vp8_through_gst_webrtc() {
    let r = Recorder::start();
    for case in &CHROMIUM_CODECS {
        let call = format!("chromium-{}", case.ffprobe);
        let p = publish_gst_webrtc(&r, BrowserKind::Chromium, case, &call);
        check_recording(&p, case);
    }
    assert_no_panic(&r.daemon);
}

#[test]
fn chromium_publishes_av1_vp9_h264_and_vp8_through_whip() {
    let r = Recorder::start();
    for case in &CHROMIUM_CODECS {
        let call = format!("chromium-{}", case.ffprobe);
        let p = publish_whip(&r, BrowserKind::Chromium, case, &call);
        let m = check_recording(&p, case);
        assert_eq!(m["participants"][0]["source"], "whip", "{m:#}");
    }
    assert_no_panic(&r.daemon);
}

#[test]
fn firefox_publishes_vp8_and_opus_through_gst_webrtc() {
    let r = Recorder::start();
    let case = case("VP8", "vp8");
    let p = publish_gst_webrtc(&r, BrowserKind::Firefox, &case, "firefox-vp8");
    check_recording(&p, &case);
    assert_no_panic(&r.daemon);
}

/// callrec makes the offer (`offerer = "callrec"`) and a real answerer takes it: Chromium,
/// refusing any session that comes without an offer (`answerOnly=1`), answers callrec's
/// receive-only offer with send-only audio and video in the codec it prefers among those
/// callrec offered (VP8, then H.264), and the recording is as complete as when the browser
/// offers. The manifest names the signalling server's session, not callrec's own key for it.
#[test]
fn chromium_answering_a_callrec_offer_is_recorded() {
    let r = Recorder::start_config(r#"offerer = "callrec""#, "");
    for case in [case("H264", "h264"), case("VP8", "vp8")] {
        let call = format!("chromium-answers-{}", case.ffprobe);
        let p = publish_gst_webrtc_with(
            &r,
            BrowserKind::Chromium,
            &case,
            &call,
            &[("answerOnly", "1")],
        );
        assert_eq!(p.session["offered"], true, "{:#}", p.session);
        // callrec offered every codec it records, and the browser picked the case's.
        let offer = p.session["offer_received"].as_str().unwrap_or_default();
        for codec in ["opus/48000", "VP8/90000", "H264/90000"] {
            assert!(
                offer
                    .to_ascii_lowercase()
                    .contains(&codec.to_ascii_lowercase()),
                "callrec's offer lacks {codec}:\n{offer}"
            );
        }
        let answer = p.session["answered_offer"].as_str().unwrap_or_default();
        let mlines = |sdp: &str| -> Vec<String> {
            sdp.lines()
                .filter(|l| l.starts_with("m=") || l.starts_with("a=rtpmap:"))
                .map(str::to_owned)
                .collect()
        };
        eprintln!(
            "{call}: callrec offered {:?}; the browser answered {:?}",
            mlines(offer),
            mlines(answer)
        );
        assert!(
            answer.contains("a=sendonly"),
            "the browser's answer sends nothing:\n{answer}"
        );
        let m = check_recording(&p, &case);
        let session_id = p.session["session_id"].as_str().expect("session_id");
        let participant = m["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == p.id.as_str())
            .unwrap_or_else(|| panic!("no participant {}: {m:#}", p.id));
        assert_eq!(participant["session"], session_id, "{m:#}");
        assert!(
            !session_id.starts_with("offer"),
            "the server's session id looks like callrec's key: {session_id}"
        );
    }
    assert_no_panic(&r.daemon);
}

/// VP9 with spatial and temporal layers in one encoding (`L3T3_KEY`, what SFUs ask browsers
/// for): callrec records the stream as sent, every picture with its layers, and the file
/// decodes at the browser's frame rate. The picture sizes ffmpeg's own decoder gives are
/// printed: a lower layer than libvpx shows, since pictures carry no superframe index.
#[test]
fn chromium_vp9_svc_is_recorded_with_every_layer() {
    let r = Recorder::start();
    let case = Case {
        svc: Some("L3T3_KEY"),
        ..case("VP9", "vp9")
    };
    let p = publish_gst_webrtc(&r, BrowserKind::Chromium, &case, "chromium-vp9-svc");
    // The browser picks how many spatial layers it can afford (L2T3_KEY on a slow start),
    // but it sends layers.
    let video = video_streams(&p.done);
    assert!(
        video.iter().any(|s| s["scalability_mode"]
            .as_str()
            .is_some_and(|m| m.ends_with("T3_KEY"))),
        "the browser did not send VP9 SVC: {video:?}"
    );
    let m = check_recording(&p, &case);
    let file = p.call_dir.join(&common::files_of(&m, &p.id)[0]);
    eprintln!(
        "decoded picture sizes (size: frames): {:?}",
        decoded_sizes(&file)
    );
    assert_no_panic(&r.daemon);
}

/// ffprobe's `fields` of each decoded video frame, one line each (comma-separated, in
/// ffprobe's own order).
fn frame_fields(file: &std::path::Path, fields: &str) -> Vec<String> {
    let mut cmd = std::process::Command::new("ffprobe");
    cmd.args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg(format!("frame={fields}"))
        .args(["-of", "csv=p=0"])
        .arg(file);
    let out = common::run_ok(cmd, Duration::from_secs(60));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How many decoded video frames of each size a file has.
fn decoded_sizes(file: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    let mut sizes = std::collections::BTreeMap::new();
    for line in frame_fields(file, "width,height") {
        *sizes.entry(line.replace(',', "x")).or_insert(0) += 1;
    }
    sizes
}

/// An AV1 participant in a live mix: its track is decoded (av1dec) and shown, while its file
/// records as sent.
#[test]
fn chromium_av1_is_decoded_into_a_live_mix() {
    let r = Recorder::start_with(r#"templates = ["participant-mkv", "mix-mp4"]"#);
    let case = case("AV1", "av1");
    let p = publish_gst_webrtc(&r, BrowserKind::Chromium, &case, "chromium-av1-mix");
    let m = check_recording(&p, &case);
    let mix = &m["mixes"][0];
    assert_eq!(mix["template"], "mix-mp4", "{m:#}");
    assert_eq!(mix["status"], "complete", "{m:#}");
    let span = &mix["on_screen"][0];
    assert_eq!(span["participant"], p.id.as_str(), "{m:#}");
    let shown_s = (span["to_ms"].as_f64().unwrap() - span["from_ms"].as_f64().unwrap()) / 1000.0;
    let sent = p.done["sent_secs"].as_f64().unwrap();
    assert!(
        shown_s >= sent - TOLERANCE_S,
        "on screen {shown_s:.2} s of {sent:.2} s sent: {m:#}"
    );
    let file = p.call_dir.join(mix["files"][0].as_str().unwrap());
    let report = common::decode_check(&file);
    assert!(
        report.video_frames > 0 && report.audio_frames > 0 && report.errors.trim().is_empty(),
        "{}: {report:?}",
        file.display()
    );
    // The tile shows the browser's camera, not the black canvas: Chromium's fake camera is
    // a bright test pattern.
    let mid_s = span["from_ms"].as_f64().unwrap() / 1000.0 + shown_s / 2.0;
    let rgb = common::analysis::frame_rgb(&file, mid_s).mean_rgb(0.25, 0.25, 0.75, 0.75);
    assert!(
        rgb.iter().sum::<f64>() / 3.0 > 40.0,
        "the mix shows no picture at {mid_s:.2} s: mean {rgb:?}"
    );
    assert_no_panic(&r.daemon);
}

/// The simulcast video track's layer switches in its `participant-mkv` entry: (rid, width,
/// from_ms).
fn layer_switches(m: &Value, id: &str) -> Vec<(String, u64, u64)> {
    let video = tracks_of(m, id)
        .into_iter()
        .find(|t| t["kind"] == "video" && t["template"] == "participant-mkv")
        .unwrap_or_else(|| panic!("no video track for {id}: {m:#}"));
    video["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("the video track lists no layers: {video:#}"))
        .iter()
        .map(|l| {
            (
                l["rid"].as_str().unwrap_or("").to_owned(),
                l["width"].as_u64().unwrap_or(0),
                l["from_ms"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Each decoded video frame's time and width.
fn decoded_widths(file: &std::path::Path) -> Vec<(f64, u64)> {
    frame_fields(file, "pts_time,width")
        .iter()
        .filter_map(|l| {
            let (t, w) = l.split_once(',')?;
            // ffprobe prints the fields in its own order (width first).
            let (t, w) = if t.contains('.') { (t, w) } else { (w, t) };
            Some((t.trim().parse().ok()?, w.trim().parse().ok()?))
        })
        .collect()
}

/// Simulcast (three VP8 encodings, rids `q`, `h`, `f`, of 320, 640 and 1280 pixels across),
/// through the signalling server and through WHIP: the track is recorded from its best
/// layer (the page's top one, once the sender's bandwidth estimate allows it; callrec's
/// answer takes every encoding and gives transport-wide congestion feedback), the manifest
/// says which layer was recorded from when, and the live mix shows the same layer.
#[test]
fn chromium_vp8_simulcast_is_recorded_from_its_best_layer() {
    let r =
        Recorder::start_with(r#"templates = ["participant-mkv", "mix-mp4", "track-layers-mkv"]"#);
    let case = Case {
        simulcast: true,
        ..case("VP8", "vp8")
    };
    for (how, p) in [
        (
            "gst-webrtc",
            publish_gst_webrtc(&r, BrowserKind::Chromium, &case, "sim-gst"),
        ),
        (
            "whip",
            publish_whip(&r, BrowserKind::Chromium, &case, "sim-whip"),
        ),
    ] {
        // What the browser sent: its encodings, and the largest still sending at the end (a
        // browser short of CPU or bandwidth turns its top one off for a while).
        let streams = video_streams(&p.done);
        let sent: Vec<(String, u64)> = streams
            .iter()
            .filter(|s| s["frames_encoded"].as_u64().unwrap_or(0) > 0)
            .filter_map(|s| Some((s["rid"].as_str()?.to_owned(), s["width"].as_u64()?)))
            .collect();
        assert!(
            sent.len() >= 2,
            "{how}: the browser sent {sent:?}: {:#}",
            p.done
        );
        let top = streams
            .iter()
            .filter(|s| s["fps"].as_f64().unwrap_or(0.0) > 0.0)
            .filter_map(|s| s["width"].as_u64())
            .max()
            .unwrap_or(0);
        let m = check_recording_in(&p, &case, "participant-mkv");
        // track-layers-mkv: the audio, and each layer on its own, decodable from its start.
        for (rid, width) in &sent {
            let entry = tracks_of(&m, &p.id)
                .into_iter()
                .find(|t| {
                    t["template"] == "track-layers-mkv" && t["layers"][0]["rid"] == rid.as_str()
                })
                .unwrap_or_else(|| panic!("{how}: no file for layer {rid}: {m:#}"));
            assert_eq!(entry["status"], "complete", "{how}: {entry:#}");
            let file = p.call_dir.join(entry["file"].as_str().unwrap());
            let report = common::decode_check(&file);
            assert!(
                report.video_frames > 40 && report.errors.trim().is_empty(),
                "{how}: layer {rid}: {report:?}"
            );
            let widths = decoded_widths(&file);
            let at_width = widths.iter().filter(|(_, w)| w == width).count();
            assert!(
                at_width as f64 >= 0.5 * widths.len() as f64,
                "{how}: layer {rid} ({width} wide at the end): {:?}",
                decoded_sizes(&file)
            );
        }
        assert!(
            tracks_of(&m, &p.id)
                .iter()
                .any(|t| t["template"] == "track-layers-mkv" && t["kind"] == "audio"),
            "{how}: no audio file from track-layers-mkv: {m:#}"
        );
        let layers = layer_switches(&m, &p.id);
        eprintln!("{how}: layer switches {layers:?}");
        let last = layers.last().expect("at least the first layer is listed");
        assert_eq!(
            last.1, top,
            "{how}: the best layer sending is {top} wide: {layers:?}"
        );
        let file = p.call_dir.join(format!(
            "{}.mkv",
            m["participants"][0]["name"].as_str().unwrap()
        ));
        let widths = decoded_widths(&file);
        let full = widths.iter().filter(|(_, w)| *w == top).count();
        assert!(
            full as f64 >= 0.5 * widths.len() as f64,
            "{how}: {full} of {} frames are {top} wide: {:?}",
            widths.len(),
            decoded_sizes(&file)
        );
        let mix = &m["mixes"][0];
        assert_eq!(mix["status"], "complete", "{how}: {m:#}");
        let report = common::decode_check(&p.call_dir.join(mix["files"][0].as_str().unwrap()));
        assert!(
            report.video_frames > 0 && report.errors.trim().is_empty(),
            "{how}: the mix: {report:?}"
        );
    }
    assert_no_panic(&r.daemon);
}

/// The top encoding stops for a while (as when the sender runs short of bandwidth) and comes
/// back: the file goes down to the next layer at its keyframe and back up, and every frame
/// decodes.
#[test]
fn chromium_simulcast_moves_down_a_layer_and_back_up() {
    let r = Recorder::start();
    let case = Case {
        simulcast: true,
        ..case("VP8", "vp8")
    };
    let p = publish_gst_webrtc_with(
        &r,
        BrowserKind::Chromium,
        &case,
        "sim-switch",
        &[("topOff", "3-7"), ("duration", "11")],
    );
    let m = check_recording(&p, &case);
    let layers = layer_switches(&m, &p.id);
    eprintln!("layer switches {layers:?}");
    let rids: Vec<&str> = layers.iter().map(|l| l.0.as_str()).collect();
    let down = rids
        .windows(2)
        .position(|w| w == ["f", "h"])
        .unwrap_or_else(|| panic!("no switch from f down to h: {layers:?}"));
    let up = rids[down + 1..]
        .iter()
        .position(|r| *r == "f")
        .map(|i| i + down + 1)
        .unwrap_or_else(|| panic!("no switch back up to f: {layers:?}"));
    let held_s = (layers[up].2 - layers[down + 1].2) as f64 / 1000.0;
    assert!(
        (2.0..=5.5).contains(&held_s),
        "the top layer was off for 4 s, h was recorded for {held_s:.2} s: {layers:?}"
    );
    let file = p.call_dir.join(&common::files_of(&m, &p.id)[0]);
    let widths = decoded_widths(&file);
    let sizes: Vec<u64> = widths.iter().map(|(_, w)| *w).collect();
    let middle = sizes.iter().filter(|w| **w == 640).count();
    assert!(
        middle >= 20,
        "{middle} frames at 640 wide: {:?}",
        decoded_sizes(&file)
    );
    assert_eq!(sizes.last(), Some(&1280), "{:?}", decoded_sizes(&file));
    let gap = common::analysis::max_frame_gap_s(&file);
    assert!(gap < 1.6, "the switch left {gap:.2} s without a frame");
    assert_no_panic(&r.daemon);
}
