//! One session in a call: its webrtcbin, tracks, outputs and decoders, and what it can do on
//! its own (find its elements, wait for keyframes, finalise its files).
//!
//! A session is usually one participant with a webrtcbin of its own. A room's session (an
//! SFU's multistream subscription, see [`super::room`]) carries many: its *carrier* holds the
//! webrtcbin and the track chains, and each participant in it is a *member* session that
//! holds only its outputs and decoders, fed from the carrier's track tees.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::incoming::{self, SharedPadTable};
use super::output::Output;
use super::room::RoomLink;
use super::{media, owns, EOS_TIMEOUT, MAX_OFFERS_PER_MINUTE};
use crate::media::sdp;
use crate::templates::Kind;

/// Where a session stands; it only moves forward. An ended session leaves the call's table
/// (its files are finalised by a job), so there is no `Ended` here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SessionState {
    /// Started on the server; no offer yet.
    AwaitingOffer,
    /// Answered; ICE and DTLS under way.
    Answered,
    /// Media can flow.
    Connected,
}

/// An incoming track and its depayloading chain.
#[derive(Debug)]
pub(super) struct Track {
    pub kind: Kind,
    pub codec: &'static media::Codec,
    pub chain: media::TrackChain,
    pub last_keyframe_request: Option<Instant>,
    /// A simulcast track's layer switches so far (empty otherwise).
    pub layers: Vec<crate::recording::LayerSpan>,
    /// A simulcast track's layers so far.
    pub layer_count: usize,
}

/// What a session is in the call.
#[derive(Debug)]
pub(super) enum Role {
    /// One participant with a webrtcbin of its own.
    Participant,
    /// A room's session: it owns the webrtcbin and track chains, and has no files itself.
    Carrier(RoomLink),
    /// A participant in a room's session (the carrier, by session key): its webrtcbin and
    /// track chains are the carrier's.
    Member {
        /// The carrier's session key.
        carrier: String,
    },
}

/// A session of the call (see the module documentation).
#[derive(Debug)]
pub(super) struct Session {
    pub id: String,
    pub peer_id: String,
    pub name: String,
    /// What the mix shows for them: their meta name, or their safe name.
    pub label: String,
    pub state: SessionState,
    pub created: Instant,
    pub connected_at: Option<Instant>,
    pub webrtcbin: gst::Element,
    pub remote_set: bool,
    pub pending_ice: Vec<(u32, String)>,
    /// Remote candidates taken so far (at most `MAX_REMOTE_CANDIDATES`).
    pub remote_candidates: usize,
    /// A negotiation job is running for it.
    pub negotiating: bool,
    /// The latest offer that came while a negotiation ran; older ones are superseded.
    pub next_offer: Option<String>,
    /// Offers in the current minute, and when that minute started.
    pub offers: (u32, Instant),
    pub offered: Vec<sdp::OfferedTrack>,
    pub tracks: BTreeMap<u32, Track>,
    pub discarded: Vec<gst::Element>,
    pub outputs: Vec<Output>,
    pub decoders: BTreeMap<u32, media::DecodeChain>,
    /// Its entry in the manifest's participants (a carrier has none).
    pub manifest_index: Option<usize>,
    pub role: Role,
    /// The server's id for the session, which signalling messages carry: the session's key,
    /// or, for a session callrec offered, the id the server gave it later (none before).
    pub signal_id: Option<String>,
    /// callrec made the offer; the producer answers.
    pub callrec_offers: bool,
    /// Local candidates gathered before the server named the session (callrec offered).
    pub unsent_ice: Vec<(u32, String)>,
    /// Gathering completed before the server named the session.
    pub gathered: bool,
    /// Where its webrtcbin's streams go (shared with the pad-added callback); a member's is
    /// unused (its carrier's places the streams).
    pub pads: SharedPadTable,
}

impl Session {
    /// A session that has just started on the server.
    pub fn new(
        id: &str,
        peer_id: &str,
        name: String,
        label: String,
        webrtcbin: gst::Element,
        manifest_index: Option<usize>,
        role: Role,
    ) -> Self {
        Session {
            id: id.to_owned(),
            peer_id: peer_id.to_owned(),
            name,
            label,
            state: SessionState::AwaitingOffer,
            created: Instant::now(),
            connected_at: None,
            webrtcbin,
            remote_set: false,
            pending_ice: vec![],
            remote_candidates: 0,
            negotiating: false,
            next_offer: None,
            offers: (0, Instant::now()),
            offered: vec![],
            tracks: BTreeMap::new(),
            discarded: vec![],
            outputs: vec![],
            decoders: BTreeMap::new(),
            manifest_index,
            role,
            signal_id: Some(id.to_owned()),
            callrec_offers: false,
            unsent_ice: vec![],
            gathered: false,
            pads: incoming::new_table(false),
        }
    }

    /// The other side's description is in place: the session is answered, and the remote
    /// candidates that came before it are added now.
    pub fn remote_description_set(&mut self) {
        self.remote_set = true;
        if self.state < SessionState::Answered {
            self.state = SessionState::Answered;
        }
        for (mline, candidate) in self.pending_ice.drain(..) {
            self.webrtcbin
                .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
        }
    }

    /// True for a session that is a participant (with files of its own), not a carrier.
    pub fn is_participant(&self) -> bool {
        !matches!(self.role, Role::Carrier(_))
    }

    /// The carrier's session key, for a member of a room's session.
    pub fn carrier(&self) -> Option<&str> {
        match &self.role {
            Role::Member { carrier } => Some(carrier),
            _ => None,
        }
    }

    /// Whether the webrtcbin and track chains are this session's own (not a carrier's).
    fn owns_transport(&self) -> bool {
        !matches!(self.role, Role::Member { .. })
    }

    /// True if `src` is one of this session's elements or inside one.
    pub fn owns(&self, src: &gst::Object) -> bool {
        let transport = self.owns_transport()
            && (owns(src, &self.webrtcbin)
                || self
                    .tracks
                    .values()
                    .any(|t| t.chain.elements.iter().any(|e| owns(src, e))));
        transport
            || self.outputs.iter().any(|o| owns(src, &o.bin))
            || self
                .decoders
                .values()
                .any(|d| d.elements.iter().any(|e| owns(src, e)))
    }

    /// Counts an offer; false once the producer has offered more than
    /// `MAX_OFFERS_PER_MINUTE` times in a minute (a renegotiation flood).
    pub fn count_offer(&mut self) -> bool {
        if self.offers.1.elapsed() >= Duration::from_secs(60) {
            self.offers = (0, Instant::now());
        }
        self.offers.0 += 1;
        // A room's server re-offers on every publisher's arrival and departure.
        let limit = match self.role {
            Role::Carrier(_) => MAX_OFFERS_PER_MINUTE * 10,
            _ => MAX_OFFERS_PER_MINUTE,
        };
        self.offers.0 <= limit
    }

    /// The m-lines of video tracks an output still waits on for a keyframe.
    pub fn video_waiting_for_keyframe(&self) -> Vec<u32> {
        let mut mlines: Vec<u32> = self
            .outputs
            .iter()
            .flat_map(|o| o.inputs.iter())
            .filter(|i| {
                i.kind == Kind::Video && !i.released && i.first.is_none() && i.tee_pad.is_some()
            })
            .map(|i| i.mline)
            .collect();
        mlines.dedup();
        mlines
    }

    /// Every element of the session at the pipeline's top level, webrtcbin and track chains
    /// first (nothing flows once they stop), then the outputs, unlinked from their tees.
    /// A member leaves the carrier's chains running: its decoders' pads on their tees are
    /// released here, so the tees no longer feed what is being stopped.
    pub fn take_elements(&mut self) -> Vec<gst::Element> {
        let mut elements = vec![];
        if self.owns_transport() {
            elements.push(self.webrtcbin.clone());
            for track in self.tracks.values() {
                elements.extend(track.chain.elements.iter().cloned());
            }
        }
        for decoder in self.decoders.values() {
            if !self.owns_transport() {
                crate::media::pads::release_tee_pad(&decoder.tee_pad);
            }
            elements.extend(decoder.elements.iter().cloned());
        }
        elements.extend(self.discarded.iter().cloned());
        for out in &mut self.outputs {
            out.detach();
            elements.push(out.bin.clone().upcast());
        }
        elements
    }

    /// The top-level elements, for telling whose a bus message is while the session is being
    /// finalised.
    pub fn elements(&self) -> Vec<gst::Element> {
        let mut elements = vec![];
        if self.owns_transport() {
            elements.push(self.webrtcbin.clone());
            elements.extend(
                self.tracks
                    .values()
                    .flat_map(|t| t.chain.elements.iter().cloned()),
            );
        }
        // Decoders too: one failing on the last, cut-off frame of a leaving participant (as
        // av1dec does) would otherwise fail the whole call.
        elements.extend(
            self.decoders
                .values()
                .flat_map(|d| d.elements.iter().cloned()),
        );
        elements.extend(self.outputs.iter().map(|o| o.bin.clone().upcast()));
        elements
    }

    /// Finalises the session's files: EOS into every output that has data, then a wait
    /// (bounded by `EOS_TIMEOUT`) for every sink to see it. Returns how many outputs did not
    /// finish. Runs as a job, never inside the call's loop.
    pub async fn flush(&mut self) -> usize {
        // Data that waited for a missing track goes out now.
        for out in &mut self.outputs {
            out.start();
        }
        // EOS into every output that has data, each pad from its own thread: a muxer can hold
        // one input's streaming thread while it waits for another, so the order must not
        // matter.
        let mut sends = vec![];
        for out in &mut self.outputs {
            if !out.has_data() {
                continue;
            }
            out.eos_sent = true;
            for ghost in out.live_inputs() {
                sends.push(tokio::task::spawn_blocking(move || {
                    ghost.send_event(gst::event::Eos::new());
                }));
            }
        }
        let deadline = tokio::time::Instant::now() + EOS_TIMEOUT;
        let _ = tokio::time::timeout_at(deadline, futures::future::join_all(sends)).await;
        loop {
            let mut unfinished = 0;
            for out in self.outputs.iter_mut().filter(|o| o.eos_sent) {
                out.completed = out.finished();
                unfinished += usize::from(!out.completed);
            }
            if unfinished == 0 || tokio::time::Instant::now() >= deadline {
                return unfinished;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
