//! One participant session in a call: its webrtcbin, tracks, outputs and decoders, and what
//! it can do on its own (find its elements, wait for keyframes, finalise its files).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::output::Output;
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
}

/// A participant session.
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
    pub manifest_index: usize,
}

impl Session {
    /// A session that has just started on the server.
    pub fn new(
        id: &str,
        peer_id: &str,
        name: String,
        label: String,
        webrtcbin: gst::Element,
        manifest_index: usize,
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
        }
    }

    /// True if `src` is one of this session's elements or inside one.
    pub fn owns(&self, src: &gst::Object) -> bool {
        owns(src, &self.webrtcbin)
            || self.outputs.iter().any(|o| owns(src, &o.bin))
            || self
                .tracks
                .values()
                .any(|t| t.chain.elements.iter().any(|e| owns(src, e)))
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
        self.offers.0 <= MAX_OFFERS_PER_MINUTE
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
    pub fn take_elements(&mut self) -> Vec<gst::Element> {
        let mut elements = vec![self.webrtcbin.clone()];
        for track in self.tracks.values() {
            elements.extend(track.chain.elements.iter().cloned());
        }
        for decoder in self.decoders.values() {
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
        let mut elements = vec![self.webrtcbin.clone()];
        elements.extend(
            self.tracks
                .values()
                .flat_map(|t| t.chain.elements.iter().cloned()),
        );
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
