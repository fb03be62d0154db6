//! Incoming streams: which track each pad webrtcbin adds belongs to, and the chain it gets.
//!
//! GStreamer 1.22's webrtcbin knows a stream's m-line only from the offer's `a=ssrc` lines.
//! A stream the offer names no SSRC for (every simulcast encoding, and senders that list no
//! SSRCs) gets a pad on the *first* transceiver, whatever its kind. Such a pad is placed at
//! its first packet instead: by the `mid` header extension it carries, else by the one m-line
//! of its kind with its payload type, and its simulcast layer by its `rid`.
//!
//! In a room (an SFU's multistream subscription) m-lines are reused: webrtcbin adds a new pad
//! for each new stream and hands it to the first m-line of its payload type, so the server's
//! SSRCs place it, and it joins the m-line's chain through the funnel heading it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gst::prelude::*;

use super::media::{self, ChainHead};
use super::simulcast::{self, LayeredTrack};
use super::{CallEvent, EventSender};
use crate::media::layout::OfferLayout;
use crate::media::rtp_header;
use crate::templates::Kind;

/// What the pad-added callback needs, shared with the call (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct PadTable {
    /// The session is a room's: m-lines may be reused by later streams.
    pub room: bool,
    /// The latest offer's layout.
    pub layout: OfferLayout,
    /// A room's chain head of each m-line that has one, with the encoding it carries.
    pub heads: HashMap<u32, (String, gst::Element)>,
    /// Simulcast tracks by m-line, once their first layer arrived.
    pub layered: HashMap<u32, Arc<LayeredTrack>>,
}

/// [`PadTable`] as the pad-added callback and the call both hold it.
pub(crate) type SharedPadTable = Arc<Mutex<PadTable>>;

/// A new table; `room` for a room's session.
pub(crate) fn new_table(room: bool) -> SharedPadTable {
    Arc::new(Mutex::new(PadTable {
        room,
        ..PadTable::default()
    }))
}

fn lock(table: &Mutex<PadTable>) -> std::sync::MutexGuard<'_, PadTable> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a pad's caps say.
struct PadCaps {
    ssrc: Option<u32>,
    encoding: String,
    kind: Option<Kind>,
    payload: Option<u8>,
}

fn pad_caps(pad: &gst::Pad) -> PadCaps {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let s = caps.structure(0);
    PadCaps {
        ssrc: s.and_then(|s| s.get::<u32>("ssrc").ok()),
        encoding: s
            .and_then(|s| s.get::<String>("encoding-name").ok())
            .unwrap_or_default(),
        kind: match s.and_then(|s| s.get::<String>("media").ok()).as_deref() {
            Some("audio") => Some(Kind::Audio),
            Some("video") => Some(Kind::Video),
            _ => None,
        },
        payload: s
            .and_then(|s| s.get::<i32>("payload").ok())
            .and_then(|p| u8::try_from(p).ok()),
    }
}

/// webrtcbin's pad-added: place the pad now if its SSRC says where, else at its first packet
/// (see the module documentation). Either way its chain is built right there, as a src pad
/// must be linked before data flows; then the call task is told.
pub(super) fn on_pad_added(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    session: &str,
    tx: &EventSender,
    table: &SharedPadTable,
) {
    let caps = pad_caps(pad);
    let transceiver_mline = pad
        .property::<Option<gst_webrtc::WebRTCRTPTransceiver>>("transceiver")
        .map(|t| t.mlineindex())
        .unwrap_or(u32::MAX);
    let (known, room) = {
        let t = lock(table);
        (
            caps.ssrc.and_then(|s| t.layout.ssrcs.get(&s).copied()),
            t.room,
        )
    };
    tracing::debug!(%session, ?known, transceiver_mline, ssrc = ?caps.ssrc, pad = %pad.name(), "webrtcbin added a pad");
    if let Some(mline) = known {
        return place(pipeline, pad, session, tx, table, &caps, mline, None);
    }
    if room {
        return place(
            pipeline,
            pad,
            session,
            tx,
            table,
            &caps,
            transceiver_mline,
            None,
        );
    }
    // Placed at the first packet, which waits here (a blocking probe) until it is.
    let pipeline = pipeline.downgrade();
    let session = session.to_owned();
    let tx = tx.clone();
    let table = table.clone();
    pad.add_probe(
        gst::PadProbeType::BLOCK | gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |pad, info| {
            let first = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => Some(b.clone()),
                Some(gst::PadProbeData::BufferList(l)) => l.get(0).map(|b| b.to_owned()),
                _ => None,
            };
            let Some(pipeline) = pipeline.upgrade() else {
                return gst::PadProbeReturn::Remove;
            };
            let (mid, rid) = {
                let t = lock(&table);
                let map = first.as_ref().and_then(|b| b.map_readable().ok());
                let ext = |id: Option<u8>| {
                    map.as_ref()
                        .zip(id)
                        .and_then(|(m, id)| rtp_header::extension_text(m, id))
                };
                (ext(t.layout.mid_ext), ext(t.layout.rid_ext))
            };
            let mline = {
                let t = lock(&table);
                mid.as_deref()
                    .and_then(|m| t.layout.mline_for_mid(m))
                    .or_else(|| {
                        caps.kind
                            .zip(caps.payload)
                            .and_then(|(k, pt)| t.layout.only_mline_for(k, pt))
                    })
                    .unwrap_or(transceiver_mline)
            };
            tracing::debug!(%session, mline, ?mid, ?rid, ssrc = ?caps.ssrc, "placed a stream the offer names no SSRC for");
            place(&pipeline, pad, &session, &tx, &table, &caps, mline, rid);
            gst::PadProbeReturn::Remove
        },
    );
}

/// Builds the chain for a pad placed on `mline` (a layer `rid` of it, for simulcast).
#[allow(clippy::too_many_arguments)]
fn place(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    session: &str,
    tx: &EventSender,
    table: &SharedPadTable,
    caps: &PadCaps,
    mline: u32,
    rid: Option<String>,
) {
    let encoding = caps.encoding.clone();
    let discard = |reason: String| {
        let sink = crate::media::pads::discard(pipeline, pad).ok();
        tx.send(CallEvent::TrackDiscarded {
            session: session.to_owned(),
            mline,
            encoding: encoding.clone(),
            reason,
            sink,
        });
    };
    let mut t = lock(table);
    if let Some((head_encoding, funnel)) = t.heads.get(&mline) {
        if !head_encoding.eq_ignore_ascii_case(&encoding) {
            discard(format!(
                "its m-line was reused for {encoding} after {head_encoding}; callrec records an m-line in one codec"
            ));
            return;
        }
        let joined = funnel
            .request_pad_simple("sink_%u")
            .ok_or_else(|| "the funnel gave no pad".to_owned())
            .and_then(|sink| {
                crate::media::probes::drop_eos(&sink);
                pad.link(&sink).map_err(|e| format!("{e:?}"))
            });
        match joined {
            Ok(_) => tx.send(CallEvent::TrackRenewed {
                session: session.to_owned(),
                mline,
            }),
            Err(e) => discard(format!("cannot join the m-line's chain: {e}")),
        }
        return;
    }
    if let Some(track) = t.layered.get(&mline).cloned() {
        drop(t);
        // Each new SSRC would be a layer: a sender inventing them gets no more than an offer
        // may declare.
        if track.layer_count() >= crate::media::layout::MAX_RIDS {
            discard(format!(
                "more than {} simulcast layers on one track",
                crate::media::layout::MAX_RIDS
            ));
            return;
        }
        if !track.codec.encoding.eq_ignore_ascii_case(&encoding) {
            discard(format!(
                "a simulcast layer in {encoding}, where the track's others are {}",
                track.codec.name
            ));
            return;
        }
        match simulcast::add_layer(
            pipeline,
            pad,
            &track,
            rid.clone(),
            layer_changes(session, mline, tx),
        ) {
            Ok(layer) => tx.send(CallEvent::LayerAdded {
                session: session.to_owned(),
                mline,
                rid,
                layer,
            }),
            Err(e) => discard(format!("cannot add simulcast layer {rid:?}: {e}")),
        }
        return;
    }
    let Some(codec) = media::codec_for(&encoding) else {
        discard(format!("callrec cannot record RTP encoding {encoding:?}"));
        return;
    };
    if !codec.available() {
        discard(format!(
            "{} needs {} and {}, which are not installed",
            codec.name,
            codec.depays.join(" or "),
            codec.parse.unwrap_or("nothing else")
        ));
        return;
    }
    let head = if t.room {
        ChainHead::Merge
    } else if t.layout.is_simulcast(mline) {
        ChainHead::Layers
    } else {
        ChainHead::Plain
    };
    let built = media::build_chain(pipeline, pad, codec, head).and_then(|chain| {
        let mut first = None;
        if let (ChainHead::Layers, Some(funnel)) = (head, &chain.funnel) {
            let track = LayeredTrack::new(funnel.clone(), codec);
            let changes = layer_changes(session, mline, tx);
            first = Some(simulcast::add_layer(
                pipeline,
                pad,
                &track,
                rid.clone(),
                changes,
            )?);
            t.layered.insert(mline, track);
        }
        Ok((chain, first))
    });
    match built {
        Ok((chain, first)) => {
            if let (ChainHead::Merge, Some(funnel)) = (head, &chain.funnel) {
                t.heads.insert(mline, (encoding.clone(), funnel.clone()));
            }
            // Sent under the table's lock: a later layer's `LayerAdded` comes after it.
            tx.send(CallEvent::TrackReady {
                session: session.to_owned(),
                mline,
                codec,
                chain,
            });
            if let Some(layer) = first {
                tx.send(CallEvent::LayerAdded {
                    session: session.to_owned(),
                    mline,
                    rid,
                    layer,
                });
            }
        }
        Err(e) => {
            drop(t);
            discard(format!("cannot build the {} chain: {e}", codec.name));
        }
    }
}

/// Tells the call of each switch between a simulcast track's layers.
fn layer_changes(
    session: &str,
    mline: u32,
    tx: &EventSender,
) -> impl Fn(simulcast::LayerChange) + Send + Sync + 'static {
    let session = session.to_owned();
    let tx = tx.clone();
    move |change| {
        tx.send(CallEvent::LayerSwitched {
            session: session.clone(),
            mline,
            change,
        })
    }
}
