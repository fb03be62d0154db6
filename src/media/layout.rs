//! An offer's layout, as placing its streams needs it: each m-line's kind, mid, payload
//! types and simulcast encodings (rids), the SSRCs it names, and the ids of the `mid` and
//! `rid` header extensions. Also what the answer must add to receive simulcast, which
//! GStreamer 1.22's webrtcbin does not write.

use std::collections::HashMap;

use super::Kind;

/// RFC 8843's `mid` header extension.
pub const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// RFC 8852's `rid` header extension.
pub const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// RFC 8852's `rid` of the stream a retransmission repairs.
pub const REPAIRED_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
/// Transport-wide congestion control's sequence numbers, which callrec's feedback on them
/// needs.
pub const TWCC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// Most encodings callrec takes for one simulcast track (browsers send three).
pub const MAX_RIDS: usize = 8;

/// One m-line of an offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MlineLayout {
    /// Audio or video (none for data channels and the like).
    pub kind: Option<Kind>,
    /// `a=mid`.
    pub mid: Option<String>,
    /// Payload types on the m-line.
    pub payloads: Vec<u8>,
    /// The simulcast encodings it sends (`a=simulcast:send`, each with an `a=rid … send`),
    /// in the offer's order; empty without simulcast.
    pub rids: Vec<String>,
}

/// What an offer says about where its streams go (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferLayout {
    /// By m-line index.
    pub mlines: Vec<MlineLayout>,
    /// The id of the `mid` header extension, if offered.
    pub mid_ext: Option<u8>,
    /// The id of the `rid` header extension, if offered.
    pub rid_ext: Option<u8>,
    /// The id of the repaired `rid` header extension, if offered.
    pub repaired_rid_ext: Option<u8>,
    /// The id of the transport-wide congestion control extension, if offered.
    pub twcc_ext: Option<u8>,
    /// SSRC → m-line, from `a=ssrc` lines.
    pub ssrcs: HashMap<u32, u32>,
}

impl OfferLayout {
    /// Reads an offer.
    pub fn read(msg: &gst_sdp::SDPMessageRef) -> Self {
        let mut layout = OfferLayout::default();
        let session_ext = msg
            .attributes()
            .filter(|a| a.key() == "extmap")
            .filter_map(|a| a.value().and_then(extmap));
        let mut exts: Vec<(u8, String)> = session_ext.collect();
        for (i, media) in msg.medias().enumerate() {
            let kind = match media.media() {
                Some("audio") => Some(Kind::Audio),
                Some("video") => Some(Kind::Video),
                _ => None,
            };
            let attr = |key: &'static str| {
                media
                    .attributes()
                    .filter(move |a| a.key() == key)
                    .filter_map(|a| a.value())
            };
            exts.extend(attr("extmap").filter_map(extmap));
            let sent_rids: Vec<&str> = attr("rid")
                .filter_map(|v| {
                    let mut words = v.split_whitespace();
                    let id = words.next()?;
                    (words.next() == Some("send")).then_some(id)
                })
                .collect();
            let rids = attr("simulcast")
                .find_map(simulcast_send)
                .unwrap_or_default()
                .into_iter()
                .filter(|rid| sent_rids.contains(&rid.as_str()))
                .take(MAX_RIDS)
                .collect();
            for ssrc in attr("ssrc").filter_map(|v| v.split_whitespace().next()?.parse().ok()) {
                layout.ssrcs.insert(ssrc, i as u32);
            }
            layout.mlines.push(MlineLayout {
                kind,
                mid: attr("mid").next().filter(|m| token(m)).map(str::to_owned),
                payloads: (0..media.formats_len())
                    .filter_map(|f| media.format(f)?.parse().ok())
                    .collect(),
                rids,
            });
        }
        let find = |uri: &str| exts.iter().find(|(_, u)| u == uri).map(|(id, _)| *id);
        layout.mid_ext = find(MID_URI);
        layout.rid_ext = find(RID_URI);
        layout.repaired_rid_ext = find(REPAIRED_RID_URI);
        layout.twcc_ext = find(TWCC_URI);
        layout
    }

    /// The m-line with this `mid`.
    pub fn mline_for_mid(&self, mid: &str) -> Option<u32> {
        self.mlines
            .iter()
            .position(|m| m.mid.as_deref() == Some(mid))
            .map(|i| i as u32)
    }

    /// The one m-line of this kind that carries payload type `pt`, if only one does.
    pub fn only_mline_for(&self, kind: Kind, pt: u8) -> Option<u32> {
        let mut found = self
            .mlines
            .iter()
            .enumerate()
            .filter(|(_, m)| m.kind == Some(kind) && m.payloads.contains(&pt));
        let (first, _) = found.next()?;
        found.next().is_none().then_some(first as u32)
    }

    /// The m-line sends simulcast.
    pub fn is_simulcast(&self, mline: u32) -> bool {
        self.mlines
            .get(mline as usize)
            .is_some_and(|m| m.rids.len() > 1)
    }

    /// Any m-line sends simulcast.
    pub fn has_simulcast(&self) -> bool {
        (0..self.mlines.len() as u32).any(|m| self.is_simulcast(m))
    }

    /// Adds to webrtcbin's answer what receiving the offer's simulcast takes: the `mid` and
    /// `rid` header extensions (a sender marks each encoding with its rid only if the answer
    /// takes the extension), and `a=rid … recv` with `a=simulcast:recv` for every encoding
    /// (without them, the sender falls back to its first encoding alone). Also transport-wide
    /// congestion control: webrtcbin's RTP session then reports what arrived when, and the
    /// sender's bandwidth estimate grows to what its upper layers need (it starts at about
    /// 300 kbit/s, enough for the lowest one alone). Returns the m-lines changed; an offer
    /// without simulcast leaves the answer as it is.
    pub fn accept_simulcast(&self, answer: &mut gst_sdp::SDPMessage) -> usize {
        if !self.has_simulcast() {
            return 0;
        }
        let mut changed = 0;
        for i in 0..answer.medias_len() {
            let Some(offered) = self.mlines.get(i as usize) else {
                break;
            };
            let Some(media) = answer.media_mut(i) else {
                continue;
            };
            if media.port() == 0 || offered.kind.is_none() {
                continue;
            }
            let has_ext = |media: &gst_sdp::SDPMediaRef, uri: &str| {
                media
                    .attributes()
                    .filter(|a| a.key() == "extmap")
                    .any(|a| a.value().and_then(extmap).is_some_and(|(_, u)| u == uri))
            };
            let mut exts = vec![(self.mid_ext, MID_URI), (self.twcc_ext, TWCC_URI)];
            if !offered.rids.is_empty() {
                exts.push((self.rid_ext, RID_URI));
                exts.push((self.repaired_rid_ext, REPAIRED_RID_URI));
            }
            for (id, uri) in exts {
                if let Some(id) = id.filter(|_| !has_ext(media, uri)) {
                    media.add_attribute("extmap", Some(&format!("{id} {uri}")));
                }
            }
            if offered.rids.len() > 1 {
                for rid in &offered.rids {
                    media.add_attribute("rid", Some(&format!("{rid} recv")));
                }
                media.add_attribute(
                    "simulcast",
                    Some(&format!("recv {}", offered.rids.join(";"))),
                );
            }
            changed += 1;
        }
        changed
    }
}

/// `<id>[/<direction>] <uri> …` → (id, uri).
fn extmap(value: &str) -> Option<(u8, String)> {
    let mut words = value.split_whitespace();
    let id = words.next()?.split('/').next()?.parse::<u8>().ok()?;
    let uri = words.next()?;
    (id > 0).then(|| (id, uri.to_owned()))
}

/// The encodings of `send <list>` in an `a=simulcast` value (RFC 8853): `;` between
/// encodings, `,` between alternatives, `~` before a paused one. Paused ones count: a sender
/// may resume them.
fn simulcast_send(value: &str) -> Option<Vec<String>> {
    let mut words = value.split_whitespace();
    while let Some(direction) = words.next() {
        let list = words.next()?;
        if direction == "send" {
            let rids = list
                .split([';', ','])
                .map(|r| r.trim_start_matches('~'))
                .filter(|r| token(r))
                .map(str::to_owned)
                .collect();
            return Some(rids);
        }
    }
    None
}

/// A short token of letters, digits, `-` and `_` (what mids and rids are).
fn token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chromium() -> gst_sdp::SDPMessage {
        gst::init().unwrap();
        let text = include_str!("../../fuzz/seeds/sdp/chromium-simulcast-candidates.sdp");
        gst_sdp::SDPMessage::parse_buffer(text.as_bytes()).unwrap()
    }

    #[test]
    fn reads_chromium_simulcast() {
        let layout = OfferLayout::read(&chromium());
        assert_eq!(layout.mlines[0].kind, Some(Kind::Video));
        assert_eq!(layout.mlines[0].mid.as_deref(), Some("0"));
        assert_eq!(layout.mlines[0].rids, ["q", "h", "f"]);
        assert_eq!(layout.mlines[0].payloads, [96, 97]);
        assert_eq!(layout.mid_ext, Some(4));
        assert_eq!(layout.rid_ext, Some(10));
        assert_eq!(layout.repaired_rid_ext, Some(11));
        assert!(layout.is_simulcast(0));
        assert_eq!(layout.mline_for_mid("0"), Some(0));
        assert_eq!(layout.only_mline_for(Kind::Video, 96), Some(0));
        assert_eq!(layout.only_mline_for(Kind::Audio, 96), None);
    }

    #[test]
    fn simulcast_lists_and_hostile_rids() {
        assert_eq!(
            simulcast_send("send q;~h,h2;f recv x").unwrap(),
            ["q", "h", "h2", "f"]
        );
        assert_eq!(simulcast_send("recv a;b send c").unwrap(), ["c"]);
        assert_eq!(simulcast_send("recv a;b"), None);
        assert_eq!(simulcast_send("send ../x;a b").unwrap(), ["a"]);
        assert_eq!(extmap("3/recvonly urn:x"), Some((3, "urn:x".into())));
        assert_eq!(extmap("0 urn:x"), None);
        assert_eq!(extmap("x urn:x"), None);
    }

    #[test]
    fn the_answer_takes_every_encoding() {
        let layout = OfferLayout::read(&chromium());
        let mut answer = gst_sdp::SDPMessage::parse_buffer(
            b"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n",
        )
        .unwrap();
        assert_eq!(layout.accept_simulcast(&mut answer), 1);
        let text = answer.as_text().unwrap();
        for line in [
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            "a=rid:q recv",
            "a=rid:f recv",
            "a=simulcast:recv q;h;f",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        let plain = OfferLayout::default();
        assert_eq!(plain.accept_simulcast(&mut answer), 0);
    }

    #[test]
    fn ssrcs_are_read_per_mline_from_a_janus_offer() {
        gst::init().unwrap();
        let sample: serde_json::Value = serde_json::from_str(include_str!(
            "../signalling/janus/samples/updated-reused-mlines.json"
        ))
        .unwrap();
        let sdp = sample["jsep"]["sdp"].as_str().unwrap();
        let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes()).unwrap();
        let mut ssrcs: Vec<_> = OfferLayout::read(&msg).ssrcs.into_iter().collect();
        ssrcs.sort_unstable();
        assert_eq!(
            ssrcs,
            vec![
                (314321882, 2),
                (589612755, 1),
                (1193856262, 0),
                (1386644594, 3)
            ]
        );
    }
}
