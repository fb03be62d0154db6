//! Sessions where callrec makes the offer: for producers that only answer (a gst-webrtc
//! source with `offerer = "callrec"`).
//!
//! The offer goes in the request that starts the session, so it exists before the server
//! names the session: the call keeps the session under a key of its own, and
//! [`Call::bind_offer`] ties it to the server's id when the session starts. Local
//! candidates gathered before then wait, and go out once it is named. The producer's answer
//! is applied by a job that reports back with [`CallEvent::AnswerApplied`].

use gst::prelude::*;
use tracing::{debug, info, warn};

use super::incoming;
use super::negotiation::{display_label, make_local, set_remote};
use super::session::{Role, Session};
use super::{media, Call, CallCmd, CallEvent};
use crate::media::layout::OfferLayout;
use crate::media::sdp;
use crate::names;
use crate::signalling::SignalCommand;
use crate::templates::Kind;

/// RTP payload types callrec offers, per codec name (dynamic range, as browsers number them).
const OFFERED_VIDEO: &[(&str, u32, &str)] = &[
    ("VP8", 96, ""),
    ("VP9", 98, ""),
    (
        "H264",
        102,
        "packetization-mode=1;profile-level-id=42e01f;level-asymmetry-allowed=1",
    ),
    ("AV1", 45, ""),
];

impl Call {
    /// Creates a session for `peer_id` with a receive-only offer for audio and video in
    /// every codec callrec records here; a job makes the offer and reports back with
    /// [`CallEvent::OfferMade`], and the offer then goes out in `StartSession`.
    pub(super) fn prepare_offer(&mut self, peer_id: &str, meta: serde_json::Value) {
        if let Err(e) = self.try_prepare_offer(peer_id, meta) {
            warn!(call = %self.settings.name, %peer_id, "cannot offer to the producer: {e}");
        }
    }

    fn try_prepare_offer(&mut self, peer_id: &str, meta: serde_json::Value) -> Result<(), String> {
        self.next_output += 1;
        let key = format!("offer{}:{peer_id}", self.next_output);
        let name = self.unique_name(names::participant_name(peer_id, &meta));
        let label = display_label(&meta).unwrap_or_else(|| name.clone());
        let pads = incoming::new_table(false);
        let webrtcbin = self.add_webrtcbin(&format!("webrtc-{name}"), &key, pads.clone())?;
        for (kind, caps) in [(Kind::Audio, audio_caps()), (Kind::Video, video_caps())] {
            let Some(caps) = caps else {
                debug!(call = %self.settings.name, kind = kind.as_str(), "no codec of this kind to offer");
                continue;
            };
            webrtcbin.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                "add-transceiver",
                &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps],
            );
        }
        let index = self.add_participant_entry(peer_id, &name, meta, "");
        info!(call = %self.settings.name, participant = %name, "participant joined; offering");
        let mut session = Session::new(
            &key,
            peer_id,
            name,
            label,
            webrtcbin.clone(),
            Some(index),
            Role::Participant,
        );
        session.pads = pads;
        session.signal_id = None;
        session.callrec_offers = true;
        session.negotiating = true;
        self.sessions.insert(key.clone(), session);
        self.save_manifest();
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let offer = make_local(&webrtcbin, gst_webrtc::WebRTCSDPType::Offer, |_| {}).await;
            events
                .report(CallEvent::OfferMade {
                    session: key,
                    offer,
                })
                .await;
        });
        Ok(())
    }

    /// The offer is made: it goes out in `StartSession`.
    pub(super) fn on_offer_made(&mut self, key: &str, offer: Result<String, String>) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        session.negotiating = false;
        match offer {
            Ok(sdp) => {
                debug!(call = %self.settings.name, session = %key, offer = %sdp, "offering");
                let peer_id = session.peer_id.clone();
                self.signal(SignalCommand::StartSession {
                    peer_id,
                    offer: Some(sdp),
                });
            }
            Err(e) => {
                warn!(call = %self.settings.name, session = %key, "cannot make an offer: {e}");
                self.end_session(key, &format!("could not make an offer: {e}"));
            }
        }
    }

    /// The server started the session callrec offered to `peer_id`: it is named, and the
    /// candidates gathered so far go out.
    pub(super) fn bind_offer(&mut self, session_id: &str, peer_id: &str) -> Result<(), String> {
        let key = self
            .sessions
            .iter()
            .find(|(_, s)| s.callrec_offers && s.signal_id.is_none() && s.peer_id == peer_id)
            .map(|(k, _)| k.clone())
            .ok_or("callrec has no offer waiting for this producer")?;
        self.session_keys.insert(session_id.to_owned(), key.clone());
        let Some(session) = self.sessions.get_mut(&key) else {
            return Err("session gone".into());
        };
        session.signal_id = Some(session_id.to_owned());
        let candidates = std::mem::take(&mut session.unsent_ice);
        let gathered = session.gathered;
        if let Some(index) = session.manifest_index {
            if let Some(entry) = self.manifest.participants.get_mut(index) {
                entry.session = session_id.to_owned();
            }
        }
        for (mline, candidate) in candidates {
            self.signal(SignalCommand::Ice {
                session_id: session_id.to_owned(),
                candidate,
                mline_index: mline,
            });
        }
        if gathered {
            self.signal(SignalCommand::EndOfCandidates {
                session_id: session_id.to_owned(),
            });
        }
        self.save_manifest();
        Ok(())
    }

    /// The producer's answer: applied by a job. An answer to a session where callrec did not
    /// offer ends that session.
    pub(super) fn on_answer(&mut self, key: &str, sdp_text: String) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if !session.callrec_offers || session.remote_set || session.negotiating {
            let reason = "the producer sent an answer to an offer callrec did not make";
            warn!(call = %self.settings.name, session = %key, "{reason}");
            self.end_session(key, reason);
            return;
        }
        debug!(call = %self.settings.name, session = %key, answer = %sdp_text, "the producer's answer");
        let parsed = sdp::offered_tracks(&sdp_text).map_err(|e| e.to_string());
        let (msg, sent) = match parsed {
            Ok(x) => x,
            Err(e) => {
                warn!(call = %self.settings.name, session = %key, "unusable answer: {e}");
                self.end_session(key, &format!("unusable answer: {e}"));
                return;
            }
        };
        // The answer names the streams to come, as an offer would.
        session
            .pads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .layout = OfferLayout::read(&msg);
        session.negotiating = true;
        let webrtcbin = session.webrtcbin.clone();
        let events = self.events_tx.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            let answer =
                gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, msg);
            let result = set_remote(&webrtcbin, &answer).await;
            events
                .report(CallEvent::AnswerApplied {
                    session: key,
                    sent,
                    result,
                })
                .await;
        });
    }

    /// The answer is in place: candidates that waited are added, and the participant's
    /// outputs wait for the tracks it says the producer sends.
    pub(super) fn on_answer_applied(
        &mut self,
        key: &str,
        sent: Vec<sdp::OfferedTrack>,
        result: Result<(), String>,
    ) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        session.negotiating = false;
        if let Err(e) = result {
            warn!(call = %self.settings.name, session = %key, "cannot apply the answer: {e}");
            self.end_session(key, &format!("negotiation failed: {e}"));
            return;
        }
        session.remote_description_set();
        debug!(call = %self.settings.name, session = %key, ?sent, "answer applied");
        session.offered = sent;
        self.create_participant_outputs(key);
        self.save_manifest();
    }

    /// The session key of a server's session id (they differ for sessions callrec offered).
    pub(super) fn local_session(&self, session_id: String) -> String {
        self.session_keys
            .get(&session_id)
            .cloned()
            .unwrap_or(session_id)
    }

    /// The server's id of a session, for the signalling messages about it.
    pub(super) fn signal_id(&self, key: &str) -> String {
        self.sessions
            .get(key)
            .and_then(|s| s.signal_id.clone())
            .unwrap_or_else(|| key.to_owned())
    }

    /// A command with its server session id replaced by the call's key for that session.
    pub(super) fn with_local_session(&self, cmd: CallCmd) -> CallCmd {
        match cmd {
            CallCmd::Offer { session_id, sdp } => CallCmd::Offer {
                session_id: self.local_session(session_id),
                sdp,
            },
            CallCmd::Answer { session_id, sdp } => CallCmd::Answer {
                session_id: self.local_session(session_id),
                sdp,
            },
            CallCmd::Ice {
                session_id,
                mline,
                candidate,
            } => CallCmd::Ice {
                session_id: self.local_session(session_id),
                mline,
                candidate,
            },
            CallCmd::RemoteEnded { session_id, reason } => CallCmd::RemoteEnded {
                session_id: self.local_session(session_id),
                reason,
            },
            other => other,
        }
    }
}

/// Caps offering every available codec of `codecs`, one structure per payload type.
fn offer_caps(
    media_kind: &str,
    codecs: &[(&str, u32, &str)],
    clock_rate: i32,
) -> Option<gst::Caps> {
    let mut caps = gst::Caps::new_empty();
    let caps_mut = caps.get_mut()?;
    for &(name, pt, fmtp) in codecs {
        if !media::codec_for(name).is_some_and(|c| c.available()) {
            continue;
        }
        let mut s = gst::Structure::builder("application/x-rtp")
            .field("media", media_kind)
            .field("encoding-name", name)
            .field("payload", pt as i32)
            .field("clock-rate", clock_rate)
            .build();
        if media_kind == "video" {
            for fb in ["rtcp-fb-nack", "rtcp-fb-nack-pli", "rtcp-fb-ccm-fir"] {
                s.set(fb, true);
            }
        }
        for pair in fmtp.split(';').filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once('=') {
                s.set(k, v);
            }
        }
        caps_mut.append_structure(s);
    }
    (!caps.is_empty()).then_some(caps)
}

fn video_caps() -> Option<gst::Caps> {
    offer_caps("video", OFFERED_VIDEO, 90_000)
}

fn audio_caps() -> Option<gst::Caps> {
    let mut caps = offer_caps("audio", &[("OPUS", 111, "")], 48_000)?;
    if let Some(s) = caps.get_mut().and_then(|c| c.structure_mut(0)) {
        s.set("encoding-params", "2");
    }
    Some(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_names_every_available_codec() {
        gst::init().unwrap();
        let video = video_caps().expect("VP8 at least is installed");
        let names: Vec<String> = video
            .iter()
            .filter_map(|s| s.get::<String>("encoding-name").ok())
            .collect();
        assert!(names.contains(&"VP8".to_owned()), "{names:?}");
        let h264 = video
            .iter()
            .find(|s| s.get::<String>("encoding-name").ok().as_deref() == Some("H264"));
        if let Some(h264) = h264 {
            assert_eq!(h264.get::<String>("packetization-mode").unwrap(), "1");
        }
        let audio = audio_caps().unwrap();
        assert_eq!(
            audio
                .structure(0)
                .unwrap()
                .get::<String>("encoding-name")
                .unwrap(),
            "OPUS"
        );
    }
}
