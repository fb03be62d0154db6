//! One WebRTC session with a consumer: a bin with a valve and payloader per track feeding
//! one `webrtcbin`, attached to the shared tees. GStreamer callbacks hold weak references and
//! report to the peer task through [`SessionEvent`]s.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use gst::prelude::*;
use gst_webrtc::{
    WebRTCBundlePolicy, WebRTCICEGatheringState, WebRTCPeerConnectionState, WebRTCRTPTransceiver,
    WebRTCRTPTransceiverDirection, WebRTCSDPType, WebRTCSessionDescription,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::cli::Args;
use crate::media::{make, Kind, Media};
use crate::report::excerpt;

/// Every session bin's name starts with this, so bus messages from a session can be told
/// apart from those of the shared encoders by their source's ancestry.
pub const BIN_PREFIX: &str = "session-";

/// Upper bound for the unlink of one tee branch.
const UNLINK_TIMEOUT: Duration = Duration::from_secs(2);

/// Notification from GStreamer callbacks or timers to a peer task.
#[derive(Debug)]
pub struct SessionEvent {
    pub session_id: String,
    pub what: SessionEventKind,
}

/// Payload of a [`SessionEvent`].
#[derive(Debug)]
pub enum SessionEventKind {
    /// Our local description, to send to the consumer.
    LocalSdp { answer: bool, sdp: String },
    /// A local ICE candidate, to send to the consumer.
    Ice { mline: u32, candidate: String },
    /// ICE gathering is complete: no more local candidates will come.
    GatheringComplete,
    /// The peer connection state changed.
    State(WebRTCPeerConnectionState),
    /// Negotiation failed.
    Failed(String),
    /// All webrtcbin sink pads have caps (or we waited long enough): negotiate.
    CapsReady,
    /// Timer: start (`true`) or stop (`false`) sending a track.
    Valve { kind: Kind, open: bool },
}

/// Sender half used by callbacks and timers.
pub type EventTx = mpsc::UnboundedSender<SessionEvent>;

/// Sends an event, ignoring a peer task that is already gone.
fn notify(tx: &EventTx, session_id: &str, what: SessionEventKind) {
    let _ = tx.send(SessionEvent {
        session_id: session_id.to_owned(),
        what,
    });
}

/// One track of a session: the valve gating it and its link to the shared tee.
struct Branch {
    kind: Kind,
    payloading: crate::media::Payloading,
    pay: gst::Element,
    filter: gst::Element,
    transceiver: WebRTCRTPTransceiver,
    valve: gst::Element,
    tee: gst::Element,
    tee_pad: Option<gst::Pad>,
    ghost: gst::GhostPad,
}

/// One WebRTC session with a consumer.
pub struct Session {
    id: String,
    bin: gst::Bin,
    webrtc: gst::Element,
    branches: Vec<Branch>,
    /// webrtcbin sink pads, one per track.
    pub sink_pads: Vec<gst::Pad>,
    /// The consumer's offer, answered once the caps are known.
    pub remote_offer: Option<String>,
    pub connected_at: Option<Instant>,
    pub timers: Vec<JoinHandle<()>>,
}

impl Session {
    /// Builds the session bin, adds it to the pipeline and links it to the tees.
    pub fn start(
        media: &Media,
        ice_addresses: &[String],
        name: &str,
        session_id: &str,
        tx: &EventTx,
    ) -> Result<Self> {
        let bin = gst::Bin::with_name(name);
        let webrtc = gst::ElementFactory::make("webrtcbin")
            .name(format!("{name}-webrtcbin"))
            .property("bundle-policy", WebRTCBundlePolicy::MaxBundle)
            .build()
            .context("cannot create `webrtcbin`")?;
        restrict_ice_addresses(&webrtc, ice_addresses)?;
        bin.add(&webrtc)?;

        let mut branches = Vec::new();
        let mut sink_pads = Vec::new();
        for track in &media.tracks {
            let kind = track.payloading.kind();
            let queue = gst::ElementFactory::make("queue")
                .property("max-size-buffers", 0u32)
                .property("max-size-bytes", 0u32)
                .property("max-size-time", gst::ClockTime::SECOND)
                .build()
                .context("cannot create `queue`")?;
            queue.set_property_from_str("leaky", "downstream");
            let valve = make("valve")?;
            valve.set_property_from_str("drop-mode", "forward-sticky-events");
            valve.set_property("drop", true);
            let pay = track.payloading.make_payloader()?;
            let filter = make("capsfilter")?;
            filter.set_property("caps", track.payloading.rtp_caps());
            let chain = [queue.clone(), valve.clone(), pay.clone(), filter.clone()];
            bin.add_many(&chain)?;
            gst::Element::link_many(&chain)?;

            let sink = webrtc
                .request_pad_simple("sink_%u")
                .context("webrtcbin refused a sink pad")?;
            filter
                .static_pad("src")
                .context("capsfilter without src pad")?
                .link(&sink)
                .context("cannot link payloader to webrtcbin")?;
            let transceiver = sink.property::<WebRTCRTPTransceiver>("transceiver");
            sink_pads.push(sink.clone());
            transceiver.set_property("direction", WebRTCRTPTransceiverDirection::Sendonly);
            transceiver.set_property("codec-preferences", track.payloading.rtp_caps());
            // Offer NACK and RTX for video, as browsers do, so consumers can repair losses.
            transceiver.set_property("do-nack", kind == Kind::Video);

            let ghost = gst::GhostPad::builder_with_target(
                &queue.static_pad("sink").context("queue without sink pad")?,
            )?
            .name(kind.as_str())
            .build();
            bin.add_pad(&ghost)?;
            branches.push(Branch {
                kind,
                payloading: track.payloading,
                pay,
                filter,
                transceiver: transceiver.clone(),
                valve,
                tee: track.tee.clone(),
                tee_pad: None,
                ghost,
            });
        }
        Self::connect_signals(&webrtc, session_id, tx);

        media.pipeline.add(&bin)?;
        let mut session = Self {
            id: session_id.to_owned(),
            bin,
            webrtc,
            branches,
            sink_pads,
            remote_offer: None,
            connected_at: None,
            timers: Vec::new(),
        };
        if let Err(e) = session.attach() {
            session.detach_now(&media.pipeline);
            return Err(e);
        }
        Ok(session)
    }

    /// Starts the bin and links every branch to its tee.
    fn attach(&mut self) -> Result<()> {
        self.bin
            .sync_state_with_parent()
            .context("cannot start the session bin")?;
        for branch in &mut self.branches {
            let tee_pad = branch
                .tee
                .request_pad_simple("src_%u")
                .context("tee refused a src pad")?;
            branch.tee_pad = Some(tee_pad.clone());
            tee_pad
                .link(&branch.ghost)
                .context("cannot link the tee to the session")?;
        }
        Ok(())
    }

    /// Synchronous teardown used when the session could not even start.
    fn detach_now(&mut self, pipeline: &gst::Pipeline) {
        for branch in &mut self.branches {
            if let Some(tee_pad) = branch.tee_pad.take() {
                let _ = tee_pad.unlink(&branch.ghost);
                branch.tee.release_request_pad(&tee_pad);
            }
        }
        let _ = self.bin.set_state(gst::State::Null);
        let _ = pipeline.remove(&self.bin);
    }

    /// Forwards webrtcbin signals to the peer task (weak references only).
    fn connect_signals(webrtc: &gst::Element, session_id: &str, tx: &EventTx) {
        let (sid, etx) = (session_id.to_owned(), tx.clone());
        webrtc.connect("on-ice-candidate", false, move |values| {
            let mline = values.get(1).and_then(|v| v.get::<u32>().ok());
            let candidate = values.get(2).and_then(|v| v.get::<String>().ok());
            if let (Some(mline), Some(candidate)) = (mline, candidate) {
                notify(&etx, &sid, SessionEventKind::Ice { mline, candidate });
            }
            None
        });
        let (sid, etx) = (session_id.to_owned(), tx.clone());
        webrtc.connect_notify(Some("connection-state"), move |webrtc, _| {
            let state = webrtc.property::<WebRTCPeerConnectionState>("connection-state");
            notify(&etx, &sid, SessionEventKind::State(state));
        });
        let (sid, etx) = (session_id.to_owned(), tx.clone());
        webrtc.connect_notify(Some("ice-gathering-state"), move |webrtc, _| {
            let state = webrtc.property::<WebRTCICEGatheringState>("ice-gathering-state");
            debug!(session_id = %sid, ?state, "ICE gathering state");
            if state == WebRTCICEGatheringState::Complete {
                notify(&etx, &sid, SessionEventKind::GatheringComplete);
            }
        });
        let sid = session_id.to_owned();
        webrtc.connect_notify(Some("ice-connection-state"), move |webrtc, _| {
            let state =
                webrtc.property::<gst_webrtc::WebRTCICEConnectionState>("ice-connection-state");
            debug!(session_id = %sid, ?state, "ICE connection state");
        });
    }

    /// Creates an offer, sets it locally and hands it to the peer task.
    pub fn create_offer(&self, tx: &EventTx) {
        let weak = self.webrtc.downgrade();
        let (sid, etx) = (self.id.clone(), tx.clone());
        let promise = gst::Promise::with_change_func(move |reply| {
            let Some(webrtc) = weak.upgrade() else { return };
            match description_from_reply(reply, "offer") {
                Ok(offer) => set_local_and_send(&webrtc, offer, false, &sid, &etx),
                Err(e) => notify(&etx, &sid, SessionEventKind::Failed(format!("{e:#}"))),
            }
        });
        self.webrtc
            .emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
    }

    /// Creates an offer, sets it locally, and only then hands it to the peer task: for a
    /// server that answers faster than webrtcbin applies its own offer (Janus next door
    /// answers within a millisecond, and webrtcbin refuses an answer that comes before its
    /// offer is set). Local candidates may then be reported before the offer: the caller
    /// holds them back until the offer is sent.
    pub fn create_offer_set_first(&self, tx: &EventTx) {
        let weak = self.webrtc.downgrade();
        let (sid, etx) = (self.id.clone(), tx.clone());
        let promise = gst::Promise::with_change_func(move |reply| {
            let Some(webrtc) = weak.upgrade() else { return };
            let offer = match description_from_reply(reply, "offer") {
                Ok(offer) => offer,
                Err(e) => return notify(&etx, &sid, SessionEventKind::Failed(format!("{e:#}"))),
            };
            let sdp = match offer.sdp().as_text() {
                Ok(sdp) => sdp,
                Err(e) => {
                    let msg = format!("cannot serialize local SDP: {e}");
                    return notify(&etx, &sid, SessionEventKind::Failed(msg));
                }
            };
            let promise = gst::Promise::with_change_func(move |reply| match check_reply(reply) {
                Ok(_) => notify(
                    &etx,
                    &sid,
                    SessionEventKind::LocalSdp { answer: false, sdp },
                ),
                Err(e) => {
                    let msg = format!("cannot set the local offer: {e:#}");
                    notify(&etx, &sid, SessionEventKind::Failed(msg));
                }
            });
            webrtc.emit_by_name::<()>("set-local-description", &[&offer, &promise]);
        });
        self.webrtc
            .emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
    }

    /// Applies the consumer's offer, then answers it.
    pub fn answer_offer(&self, sdp: &str, tx: &EventTx) -> Result<()> {
        let sdp = parse_sdp(sdp, "offer")?;
        self.use_offered_payload_types(&sdp);
        let offer = WebRTCSessionDescription::new(WebRTCSDPType::Offer, sdp);
        let weak = self.webrtc.downgrade();
        let (sid, etx) = (self.id.clone(), tx.clone());
        let promise = gst::Promise::with_change_func(move |reply| {
            let Some(webrtc) = weak.upgrade() else { return };
            if let Err(e) = check_reply(reply) {
                let msg = format!("cannot set the remote offer: {e:#}");
                notify(&etx, &sid, SessionEventKind::Failed(msg));
                return;
            }
            let weak = webrtc.downgrade();
            let promise = gst::Promise::with_change_func(move |reply| {
                let Some(webrtc) = weak.upgrade() else { return };
                match description_from_reply(reply, "answer") {
                    Ok(answer) => set_local_and_send(&webrtc, answer, true, &sid, &etx),
                    Err(e) => notify(&etx, &sid, SessionEventKind::Failed(format!("{e:#}"))),
                }
            });
            webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
        });
        self.webrtc
            .emit_by_name::<()>("set-remote-description", &[&offer, &promise]);
        Ok(())
    }

    /// Sends each track with the payload type the consumer's offer gives its codec, as a
    /// browser answering does (webrtcbin answers only where the payload types agree).
    fn use_offered_payload_types(&self, offer: &gst_sdp::SDPMessage) {
        for branch in &self.branches {
            let wanted = branch.payloading.encoding_name();
            let pt = offer
                .medias()
                .filter(|m| m.media() == Some(branch.kind.as_str()))
                .flat_map(|m| m.attributes().filter(|a| a.key() == "rtpmap"))
                .filter_map(|a| a.value())
                .find_map(|v| {
                    let (pt, enc) = v.split_once(' ')?;
                    let name = enc.split('/').next()?;
                    name.eq_ignore_ascii_case(wanted)
                        .then(|| pt.parse::<u32>().ok())?
                });
            let current = branch.pay.property::<u32>("pt");
            if let Some(pt) = pt.filter(|&pt| pt != current) {
                let caps = branch.payloading.rtp_caps_with_pt(pt);
                branch.pay.set_property("pt", pt);
                branch.filter.set_property("caps", &caps);
                branch.transceiver.set_property("codec-preferences", &caps);
            }
        }
    }

    /// Applies the consumer's answer.
    pub fn apply_answer(&self, sdp: &str, tx: &EventTx) -> Result<()> {
        let sdp = parse_sdp(sdp, "answer")?;
        let answer = WebRTCSessionDescription::new(WebRTCSDPType::Answer, sdp);
        let (sid, etx) = (self.id.clone(), tx.clone());
        let promise = gst::Promise::with_change_func(move |reply| {
            if let Err(e) = check_reply(reply) {
                let msg = format!("cannot set the remote answer: {e:#}");
                notify(&etx, &sid, SessionEventKind::Failed(msg));
            }
        });
        self.webrtc
            .emit_by_name::<()>("set-remote-description", &[&answer, &promise]);
        Ok(())
    }

    /// Adds a remote ICE candidate.
    pub fn add_ice_candidate(&self, mline: u32, candidate: &str) {
        if candidate.is_empty() {
            return; // end-of-candidates marker
        }
        self.webrtc
            .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
    }

    /// Marks the session connected and starts the timers that open (after `--video-delay`
    /// or `--audio-delay`) and close (`--video-stop-after`) its valves; returns false, doing
    /// nothing, if it was connected already.
    pub fn start_media(&mut self, args: &Args, tx: &EventTx, now: Instant) -> bool {
        if self.connected_at.is_some() {
            return false;
        }
        self.connected_at = Some(now);
        for kind in self.kinds() {
            let delay = match kind {
                Kind::Video => args.video_delay,
                Kind::Audio => args.audio_delay,
            };
            let stop_after = match kind {
                Kind::Video => args.video_stop_after,
                Kind::Audio => None,
            };
            if stop_after.is_some_and(|s| s <= delay) {
                continue; // would stop before it starts
            }
            self.timers
                .push(spawn_timer(tx, &self.id, delay, kind, true));
            if let Some(stop_after) = stop_after {
                self.timers
                    .push(spawn_timer(tx, &self.id, stop_after, kind, false));
            }
        }
        true
    }

    /// The kinds of its tracks, in track order.
    pub fn kinds(&self) -> Vec<Kind> {
        self.branches.iter().map(|b| b.kind).collect()
    }

    /// Opens or closes the valve of one track; returns whether the state changed.
    pub fn set_flowing(&self, kind: Kind, flowing: bool) -> bool {
        let mut changed = false;
        for branch in self.branches.iter().filter(|b| b.kind == kind) {
            if branch.valve.property::<bool>("drop") == flowing {
                branch.valve.set_property("drop", !flowing);
                changed = true;
            }
        }
        changed
    }

    /// Stops all media of this session immediately.
    pub fn close_valves(&self) {
        for branch in &self.branches {
            branch.valve.set_property("drop", true);
        }
    }

    /// Unlinks the session from the tees, stops it and removes it from the pipeline.
    pub async fn teardown(mut self, pipeline: gst::Pipeline) {
        for timer in self.timers.drain(..) {
            timer.abort();
        }
        self.close_valves();
        for branch in &mut self.branches {
            let Some(tee_pad) = branch.tee_pad.take() else {
                continue;
            };
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let done_tx = Mutex::new(Some(done_tx));
            let ghost = branch.ghost.downgrade();
            tee_pad.add_probe(gst::PadProbeType::IDLE, move |pad, _| {
                if let Some(ghost) = ghost.upgrade() {
                    let _ = pad.unlink(&ghost);
                }
                if let Some(done) = done_tx.lock().ok().and_then(|mut d| d.take()) {
                    let _ = done.send(());
                }
                gst::PadProbeReturn::Remove
            });
            if tokio::time::timeout(UNLINK_TIMEOUT, done_rx).await.is_err() {
                warn!(session_id = %self.id, "tee branch never idle; unlinking anyway");
                let _ = tee_pad.unlink(&branch.ghost);
            }
            branch.tee.release_request_pad(&tee_pad);
        }
        let bin = self.bin.clone();
        let id = self.id.clone();
        let res = tokio::task::spawn_blocking(move || {
            let _ = bin.set_state(gst::State::Null);
            pipeline.remove(&bin)
        })
        .await;
        match res {
            Ok(Ok(())) => debug!(session_id = %id, "session removed from the pipeline"),
            Ok(Err(e)) => warn!(session_id = %id, "cannot remove session bin: {e}"),
            Err(e) => warn!(session_id = %id, "session teardown task failed: {e}"),
        }
    }
}

/// Lets ICE gather candidates on `addresses` only (all interfaces when empty), so tests on
/// loopback never wait for other interfaces.
fn restrict_ice_addresses(webrtc: &gst::Element, addresses: &[String]) -> Result<()> {
    if addresses.is_empty() {
        return Ok(());
    }
    let agent = webrtc.property::<glib::Object>("ice-agent");
    if glib::subclass::signal::SignalId::lookup("add-local-ip-address", agent.type_()).is_none() {
        bail!("this GStreamer's ICE agent cannot limit local addresses (--ice-address)");
    }
    for address in addresses {
        if !agent.emit_by_name::<bool>("add-local-ip-address", &[address]) {
            bail!("the ICE agent refused local address {address}");
        }
    }
    Ok(())
}

/// Parses a remote SDP, rejecting text without any media section.
fn parse_sdp(text: &str, what: &str) -> Result<gst_sdp::SDPMessage> {
    let sdp = gst_sdp::SDPMessage::parse_buffer(text.as_bytes())
        .map_err(|e| anyhow!("unparsable SDP {what}: {e}"))?;
    if sdp.medias_len() == 0 {
        bail!("SDP {what} without any media section: {:?}", excerpt(text));
    }
    Ok(sdp)
}

/// Fails if a promise reply is missing or carries an error.
fn check_reply(
    reply: Result<Option<&gst::StructureRef>, gst::PromiseError>,
) -> Result<Option<&gst::StructureRef>> {
    let reply = reply.map_err(|e| anyhow!("promise not fulfilled: {e:?}"))?;
    if let Some(s) = reply {
        if let Ok(err) = s.get::<glib::Error>("error") {
            bail!("{err}");
        }
    }
    Ok(reply)
}

/// Extracts the session description `field` from a create-offer/answer reply.
fn description_from_reply(
    reply: Result<Option<&gst::StructureRef>, gst::PromiseError>,
    field: &str,
) -> Result<WebRTCSessionDescription> {
    let reply = check_reply(reply)?.ok_or_else(|| anyhow!("empty {field} reply"))?;
    reply
        .get::<WebRTCSessionDescription>(field)
        .map_err(|e| anyhow!("no {field} in reply: {e}"))
}

/// Sends a local description to the peer task, then applies it to webrtcbin.
///
/// The description is queued first so it reaches the consumer before our ICE
/// candidates (gathering only starts once it is set).
fn set_local_and_send(
    webrtc: &gst::Element,
    desc: WebRTCSessionDescription,
    answer: bool,
    session_id: &str,
    tx: &EventTx,
) {
    match desc.sdp().as_text() {
        Ok(sdp) => notify(tx, session_id, SessionEventKind::LocalSdp { answer, sdp }),
        Err(e) => {
            let msg = format!("cannot serialize local SDP: {e}");
            notify(tx, session_id, SessionEventKind::Failed(msg));
            return;
        }
    }
    webrtc.emit_by_name::<()>("set-local-description", &[&desc, &None::<gst::Promise>]);
}

/// Sends a valve event for `kind` after `delay`.
pub fn spawn_timer(
    tx: &EventTx,
    sid: &str,
    delay: Duration,
    kind: Kind,
    open: bool,
) -> JoinHandle<()> {
    let (tx, sid) = (tx.clone(), sid.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        notify(&tx, &sid, SessionEventKind::Valve { kind, open });
    })
}

/// Sends [`SessionEventKind::CapsReady`] once every pad has caps (at most after 1 s).
///
/// Negotiating with known caps puts the SSRCs (and H.264 profile) in the SDP.
pub fn wait_for_caps(pads: &[gst::Pad], tx: &EventTx, sid: &str) -> JoinHandle<()> {
    const MAX_WAIT: Duration = Duration::from_secs(1);
    const POLL: Duration = Duration::from_millis(20);
    let pads: Vec<_> = pads.iter().map(|p| p.downgrade()).collect();
    let (tx, sid) = (tx.clone(), sid.to_owned());
    tokio::spawn(async move {
        let give_up = Instant::now() + MAX_WAIT;
        while Instant::now() < give_up {
            let ready = pads
                .iter()
                .all(|p| p.upgrade().is_none_or(|p| p.current_caps().is_some()));
            if ready {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        notify(&tx, &sid, SessionEventKind::CapsReady);
    })
}
