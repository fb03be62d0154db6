//! Joining a participant: a webrtcbin per session, its signals wired to the call's event
//! channel, and the answer to the producer's offer.

use std::time::Duration;

use gst::prelude::*;
use tracing::{debug, info, warn};

use super::incoming::{self, SharedPadTable};
use super::session::Role;
use super::{Call, CallEvent, Session};
use crate::media::layout::OfferLayout;
use crate::media::sdp;
use crate::names;
use crate::recording::{self, ParticipantEntry};
use crate::signalling::SignalCommand;

impl Call {
    pub(super) fn start_session(
        &mut self,
        session_id: &str,
        peer_id: &str,
        meta: serde_json::Value,
    ) -> Result<(), String> {
        if self.sessions.contains_key(session_id) {
            return Err("duplicate session id".into());
        }
        let name = self.unique_name(names::participant_name(peer_id, &meta));
        let label = display_label(&meta).unwrap_or_else(|| name.clone());
        let pads = incoming::new_table(false);
        let webrtcbin = self.add_webrtcbin(&format!("webrtc-{name}"), session_id, pads.clone())?;
        let manifest_index = self.add_participant_entry(peer_id, &name, meta, session_id);
        info!(call = %self.settings.name, session = %session_id, participant = %name, "participant joined");
        let mut session = Session::new(
            session_id,
            peer_id,
            name,
            label,
            webrtcbin,
            Some(manifest_index),
            Role::Participant,
        );
        session.pads = pads;
        self.sessions.insert(session_id.to_owned(), session);
        self.save_manifest();
        Ok(())
    }

    /// `base`, or `base+N` if the call already has a participant of that name.
    pub(super) fn unique_name(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut n = 2;
        while self.used_names.contains(&name) {
            name = format!("{base}+{n}");
            n += 1;
        }
        self.used_names.insert(name.clone());
        name
    }

    /// A participant's manifest entry; returns its index.
    pub(super) fn add_participant_entry(
        &mut self,
        peer_id: &str,
        name: &str,
        meta: serde_json::Value,
        session_id: &str,
    ) -> usize {
        self.manifest.participants.push(ParticipantEntry {
            id: peer_id.to_owned(),
            name: name.to_owned(),
            meta,
            source: Some(self.settings.source.clone()),
            session: session_id.to_owned(),
            joined_at: recording::now_rfc3339(),
            left_at: None,
            end_reason: None,
        });
        self.manifest.participants.len() - 1
    }

    /// A webrtcbin for a session, with the call's ICE settings and its signals wired, added
    /// to the pipeline and started. `pads` places the streams it receives (see
    /// [`incoming`]).
    pub(super) fn add_webrtcbin(
        &self,
        element_name: &str,
        session_id: &str,
        pads: SharedPadTable,
    ) -> Result<gst::Element, String> {
        let webrtcbin = gst::ElementFactory::make("webrtcbin")
            .name(element_name)
            .property_from_str("bundle-policy", "max-bundle")
            .build()
            .map_err(|e| format!("cannot create webrtcbin: {e}"))?;
        if let Some(stun) = &self.settings.ice.stun_server {
            webrtcbin.set_property("stun-server", stun);
        }
        super::restrict_ice_addresses(&webrtcbin, &self.settings.ice.local_addresses)?;
        for turn in &self.settings.ice.turn_servers {
            webrtcbin.emit_by_name::<bool>("add-turn-server", &[turn]);
        }
        self.connect_signals(&webrtcbin, session_id, pads);
        self.pipeline
            .add(&webrtcbin)
            .map_err(|e| format!("cannot add webrtcbin: {e}"))?;
        webrtcbin
            .sync_state_with_parent()
            .map_err(|e| format!("cannot start webrtcbin: {e}"))?;
        Ok(webrtcbin)
    }

    /// Wires webrtcbin's signals to the call's event channel (weak references only).
    pub(super) fn connect_signals(
        &self,
        webrtcbin: &gst::Element,
        session_id: &str,
        pads: SharedPadTable,
    ) {
        // Retransmission (NACK, and RTX where the producer offers it) repairs most losses
        // within the jitterbuffer's latency, before the depayloader sees a gap. Without it,
        // every lost packet drops video until the next keyframe (the depayloader waits for one
        // and asks for it), and a keyframe, a dozen packets or more, often loses one too: under
        // 5 % loss only about a third of the frames reached the file (tests/packet_loss.rs).
        // webrtcbin creates the answer's transceivers itself, so `do-nack` is set as each one
        // appears; NACK and RTX are only answered where the offer has them.
        webrtcbin.connect("on-new-transceiver", false, |values| {
            if let Some(trans) = values.get(1).and_then(|v| v.get::<glib::Object>().ok()) {
                if trans.find_property("do-nack").is_some() {
                    trans.set_property("do-nack", true);
                }
            }
            None
        });
        // NACKs and keyframe requests (PLI) are RTCP feedback, and under the WebRTC profile
        // (AVPF) RTCP may go out early only once per regular RTCP interval. That interval is
        // budgeted from the session's bandwidth, which rtpsession learns from what it sends:
        // callrec sends nothing, so it assumes 64 kbit/s and reports every 0.7-1 s, and most
        // NACKs miss the jitterbuffer's 200 ms deadline. Telling it a call carries about
        // 1 Mbit/s gives RTCP the usual 5 % of that (about 50 ms between reports), so losses
        // are repaired or a keyframe asked for within a few tens of milliseconds. (rtpsession
        // computes this bandwidth in bits/s, whatever its property's blurb says.)
        const RTP_SESSION_BANDWIDTH_BITS: f64 = 1_000_000.0;
        if let Some(bin) = webrtcbin.downcast_ref::<gst::Bin>() {
            bin.connect_deep_element_added(|_, _, element| {
                if element.factory().is_some_and(|f| f.name() == "rtpsession") {
                    element.set_property("bandwidth", RTP_SESSION_BANDWIDTH_BITS);
                }
            });
        }
        let tx = self.events_tx.clone();
        let session = session_id.to_owned();
        webrtcbin.connect("on-ice-candidate", false, move |values| {
            let mline = values.get(1).and_then(|v| v.get::<u32>().ok())?;
            let candidate = values.get(2).and_then(|v| v.get::<String>().ok())?;
            tx.send(CallEvent::LocalIce {
                session: session.clone(),
                mline,
                candidate,
            });
            None
        });
        // The end of gathering matters where the answer must carry every candidate (WHIP
        // cannot trickle from the server); signalling that trickles ignores it.
        let tx = self.events_tx.clone();
        let session = session_id.to_owned();
        webrtcbin.connect_notify(Some("ice-gathering-state"), move |bin, _| {
            let state = bin.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
            if state == gst_webrtc::WebRTCICEGatheringState::Complete {
                tx.send(CallEvent::GatheringComplete {
                    session: session.clone(),
                });
            }
        });
        let tx = self.events_tx.clone();
        let session = session_id.to_owned();
        webrtcbin.connect_notify(Some("connection-state"), move |bin, _| {
            let state = bin.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state");
            tx.send(CallEvent::Connection {
                session: session.clone(),
                state,
            });
        });
        let tx = self.events_tx.clone();
        let session = session_id.to_owned();
        let pipeline = self.pipeline.downgrade();
        webrtcbin.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let Some(pipeline) = pipeline.upgrade() else {
                return;
            };
            incoming::on_pad_added(&pipeline, pad, &session, &tx, &pads);
        });
    }

    /// The producer's offer: answered by a job that reports back with
    /// [`CallEvent::Negotiated`]. An offer that comes while one is being answered waits, and
    /// only the latest one waiting is answered (a flood of renegotiations costs one).
    pub(super) fn on_offer(&mut self, session_id: &str, sdp_text: String) -> Result<(), String> {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return Err("unknown session".into());
        };
        if !session.count_offer() {
            return Err(format!(
                "more than {} offers in a minute (a renegotiation flood)",
                super::MAX_OFFERS_PER_MINUTE
            ));
        }
        if session.negotiating {
            session.next_offer = Some(sdp_text);
            return Ok(());
        }
        let (msg, offered) = if session.is_participant() {
            sdp::offered_tracks(&sdp_text).map_err(|e| e.to_string())?
        } else {
            let (mut msg, offered) = sdp::read_offer(&sdp_text).map_err(|e| e.to_string())?;
            sdp::inactive_as_sendonly(&mut msg);
            (msg, offered)
        };
        // The latest offer says where each stream is now (and bounds the table).
        let layout = OfferLayout::read(&msg);
        session
            .pads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .layout = layout.clone();
        session.negotiating = true;
        let webrtcbin = session.webrtcbin.clone();
        let events = self.events_tx.clone();
        let session = session_id.to_owned();
        tokio::spawn(async move {
            let answer = negotiate(&webrtcbin, msg, &layout).await;
            events
                .report(CallEvent::Negotiated {
                    session,
                    offered,
                    answer,
                })
                .await;
        });
        Ok(())
    }

    /// A negotiation job is done: send the answer and get ready for the tracks, or end the
    /// session.
    pub(super) fn on_negotiated(
        &mut self,
        session_id: &str,
        offered: Vec<sdp::OfferedTrack>,
        answer: Result<String, String>,
    ) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        session.negotiating = false;
        let sdp_answer = match answer {
            Ok(sdp) => sdp,
            Err(e) => {
                warn!(call = %self.settings.name, session = %session_id, "cannot answer the offer: {e}");
                self.end_session(session_id, &format!("negotiation failed: {e}"));
                return;
            }
        };
        // A later offer renegotiates: tracks it adds are recorded as they arrive (into their own
        // files if the participant's file has started), and nothing recorded so far changes.
        let renegotiating = session.remote_set;
        session.remote_description_set();
        debug!(call = %self.settings.name, session = %session_id, renegotiating, ?offered, "offer answered");
        session.offered = offered;
        let next = session.next_offer.take();
        let participant = session.is_participant();
        let signal_id = self.signal_id(session_id);
        self.signal(SignalCommand::Answer {
            session_id: signal_id,
            sdp: sdp_answer,
        });
        if participant {
            if !renegotiating {
                self.create_participant_outputs(session_id);
            }
        } else {
            // A room's session: who is in it and which tracks are whose may have changed.
            self.sync_room(session_id);
        }
        self.save_manifest();
        if let Some(next) = next {
            if let Err(e) = self.on_offer(session_id, next) {
                warn!(call = %self.settings.name, session = %session_id, "cannot answer the offer: {e}");
                self.end_session(session_id, &format!("negotiation failed: {e}"));
            }
        }
    }
}

/// Applies an offer to a webrtcbin and makes the answer, taking the offer's simulcast
/// ([`OfferLayout::accept_simulcast`]): three promises, each bounded.
async fn negotiate(
    webrtcbin: &gst::Element,
    offer: gst_sdp::SDPMessage,
    layout: &OfferLayout,
) -> Result<String, String> {
    let offer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, offer);
    set_remote(webrtcbin, &offer).await?;
    make_local(webrtcbin, gst_webrtc::WebRTCSDPType::Answer, |answer| {
        layout.accept_simulcast(answer);
    })
    .await
}

/// Sets the remote description (bounded).
pub(super) async fn set_remote(
    webrtcbin: &gst::Element,
    description: &gst_webrtc::WebRTCSessionDescription,
) -> Result<(), String> {
    let (promise, fut) = gst::Promise::new_future();
    webrtcbin.emit_by_name::<()>("set-remote-description", &[description, &promise]);
    await_promise(fut, "set-remote-description")
        .await
        .map(|_| ())
}

/// Creates an offer or an answer, lets `edit` add to it, sets it as the local description
/// and returns its text: two promises, each bounded.
pub(super) async fn make_local(
    webrtcbin: &gst::Element,
    kind: gst_webrtc::WebRTCSDPType,
    edit: impl FnOnce(&mut gst_sdp::SDPMessage),
) -> Result<String, String> {
    let (signal, field) = match kind {
        gst_webrtc::WebRTCSDPType::Offer => ("create-offer", "offer"),
        _ => ("create-answer", "answer"),
    };
    let (promise, fut) = gst::Promise::new_future();
    webrtcbin.emit_by_name::<()>(signal, &[&None::<gst::Structure>, &promise]);
    let reply = await_promise(fut, signal).await?;
    let description = reply
        .and_then(|r| r.get::<gst_webrtc::WebRTCSessionDescription>(field).ok())
        .ok_or_else(|| {
            format!(
                "webrtcbin gave no {field} (the other side's SDP has nothing callrec can receive)"
            )
        })?;
    let mut sdp = description.sdp().to_owned();
    edit(&mut sdp);
    let description = gst_webrtc::WebRTCSessionDescription::new(description.type_(), sdp);
    let (promise, fut) = gst::Promise::new_future();
    webrtcbin.emit_by_name::<()>("set-local-description", &[&description, &promise]);
    await_promise(fut, "set-local-description").await?;
    description
        .sdp()
        .as_text()
        .map_err(|e| format!("cannot serialise the {field}: {e}"))
}

pub(super) async fn await_promise(
    fut: gst::promise::PromiseFuture,
    what: &str,
) -> Result<Option<gst::Structure>, String> {
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(Ok(reply)) => {
            let reply = reply.map(|r| r.to_owned());
            if let Some(err) = reply
                .as_ref()
                .and_then(|r| r.get::<glib::Error>("error").ok())
            {
                return Err(format!("{what}: {err}"));
            }
            Ok(reply)
        }
        Ok(Err(e)) => Err(format!("{what}: {e:?}")),
        Err(_) => Err(format!("{what} timed out")),
    }
}

/// A participant's meta `name`, made fit to draw: control characters dropped, 40 characters
/// at most. It is only ever a property value, never pipeline text.
pub(super) fn display_label(meta: &serde_json::Value) -> Option<String> {
    let name = meta.get("name")?.as_str()?;
    let label: String = name.chars().filter(|c| !c.is_control()).take(40).collect();
    (!label.trim().is_empty()).then_some(label)
}
