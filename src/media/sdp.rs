//! Reading a producer's SDP offer: which tracks it will send, and in which codecs.

use crate::templates::Kind;

/// A track the offer says the producer will send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedTrack {
    /// Its m-line index.
    pub mline: u32,
    /// Audio or video.
    pub kind: Kind,
    /// RTP encoding names offered for it, upper case, in the offer's order.
    pub encodings: Vec<String>,
}

/// Largest offer callrec reads. A browser's offer with simulcast and a dozen tracks is tens
/// of kB; anything near this is broken or hostile.
pub const MAX_SDP_BYTES: usize = 1 << 20;
/// Most m-lines an offer may have (webrtcbin builds a transceiver, and callrec a chain, for
/// each).
pub const MAX_MLINES: usize = 64;

/// An offer callrec cannot use.
#[derive(Debug, thiserror::Error)]
pub enum SdpError {
    /// Larger than [`MAX_SDP_BYTES`].
    #[error("the producer's offer is {0} bytes, more than the {MAX_SDP_BYTES} callrec reads")]
    TooLarge(usize),
    /// More than [`MAX_MLINES`] m-lines.
    #[error("the producer's offer has {0} m-lines, more than the {MAX_MLINES} callrec takes")]
    TooManyTracks(usize),
    /// The text is not SDP.
    #[error("the producer's offer is not valid SDP: {0}")]
    Invalid(String),
    /// Nothing in it is sent towards us.
    #[error("the producer's offer has no audio or video it sends (all m-lines are recvonly, inactive or rejected)")]
    NothingSent,
}

/// Offers an SFU's inactive m-lines to webrtcbin as `sendonly`; returns how many.
///
/// An SFU sets an m-line `inactive` when its publisher leaves and may later reuse it for
/// another publisher. GStreamer 1.22's webrtcbin cannot change a transceiver's direction
/// once negotiated ("transceiver direction changes are not implemented"), so that later
/// renegotiation would fail. Kept `sendonly`, the transceiver stays receiving: nothing
/// arrives on it until it is reused. The tracks callrec records come from the offer as
/// sent ([`offered_tracks`]), where the m-line is inactive.
pub fn inactive_as_sendonly(msg: &mut gst_sdp::SDPMessage) -> usize {
    let mut changed = 0;
    for i in 0..msg.medias_len() {
        let Some(media) = msg.media_mut(i) else {
            continue;
        };
        let inactive = (0..media.attributes_len()).find(|&a| {
            media
                .attribute(a)
                .is_some_and(|attr| attr.key() == "inactive")
        });
        if let Some(index) = inactive {
            if media
                .replace_attribute(index, gst_sdp::SDPAttribute::new("sendonly", None))
                .is_ok()
            {
                changed += 1;
            }
        }
    }
    changed
}

/// Parses an offer and lists the tracks the producer will send; an offer that sends
/// nothing is an error.
pub fn offered_tracks(sdp: &str) -> Result<(gst_sdp::SDPMessage, Vec<OfferedTrack>), SdpError> {
    let (msg, tracks) = read_offer(sdp)?;
    if tracks.is_empty() {
        return Err(SdpError::NothingSent);
    }
    Ok((msg, tracks))
}

/// Parses an offer and lists the tracks it sends, which may be none: an SFU's offer for a
/// room whose publishers have all gone is still to be answered.
pub fn read_offer(sdp: &str) -> Result<(gst_sdp::SDPMessage, Vec<OfferedTrack>), SdpError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge(sdp.len()));
    }
    let mlines = sdp.lines().filter(|l| l.starts_with("m=")).count();
    if mlines > MAX_MLINES {
        return Err(SdpError::TooManyTracks(mlines));
    }
    // GStreamer's parser asserts a non-empty buffer (a GLib critical, not an error).
    if sdp.is_empty() {
        return Err(SdpError::Invalid("empty offer".into()));
    }
    let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
        .map_err(|e| SdpError::Invalid(e.to_string()))?;
    let session_dir = direction(msg.attributes().map(|a| a.key()));
    let mut tracks = vec![];
    for (i, media) in msg.medias().enumerate() {
        let kind = match media.media() {
            Some("audio") => Kind::Audio,
            Some("video") => Kind::Video,
            _ => continue,
        };
        // Port 0 rejects an m-line, unless it is bundle-only (JSEP's max-bundle offers).
        if media.port() == 0 && !media.attributes().any(|a| a.key() == "bundle-only") {
            continue;
        }
        let dir = direction(media.attributes().map(|a| a.key())).or(session_dir);
        if matches!(dir, Some("recvonly") | Some("inactive")) {
            continue;
        }
        let encodings = media
            .attributes()
            .filter(|a| a.key() == "rtpmap")
            .filter_map(|a| a.value())
            .filter_map(|v| v.split_whitespace().nth(1))
            .filter_map(|enc| enc.split('/').next())
            .map(|enc| enc.to_ascii_uppercase())
            .collect();
        tracks.push(OfferedTrack {
            mline: i as u32,
            kind,
            encodings,
        });
    }
    Ok((msg, tracks))
}

fn direction<'a>(keys: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    keys.into_iter()
        .find(|k| matches!(*k, "sendrecv" | "sendonly" | "recvonly" | "inactive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE video0 audio1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:video0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 H264/90000\r\n\
m=audio 0 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=bundle-only\r\na=mid:audio1\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 98\r\nc=IN IP4 0.0.0.0\r\na=mid:video2\r\na=recvonly\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 99\r\nc=IN IP4 0.0.0.0\r\na=mid:video3\r\na=sendonly\r\na=rtpmap:99 VP8/90000\r\na=rtpmap:98 VP8/90000\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:data\r\n";

    #[test]
    fn lists_sent_tracks() {
        gst::init().unwrap();
        let (_, tracks) = offered_tracks(OFFER).unwrap();
        assert_eq!(
            tracks,
            vec![
                OfferedTrack {
                    mline: 0,
                    kind: Kind::Video,
                    encodings: vec!["VP8".into(), "H264".into()]
                },
                OfferedTrack {
                    mline: 1,
                    kind: Kind::Audio,
                    encodings: vec!["OPUS".into()]
                },
            ]
        );
    }

    #[test]
    fn refuses_huge_offers_before_parsing() {
        gst::init().unwrap();
        let huge = format!("{OFFER}a=x:{}\r\n", "y".repeat(MAX_SDP_BYTES));
        assert!(matches!(offered_tracks(&huge), Err(SdpError::TooLarge(_))));
        let many = (0..=MAX_MLINES).fold(String::from(OFFER), |mut s, i| {
            s.push_str(&format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:x{i}\r\n"
            ));
            s
        });
        assert!(matches!(
            offered_tracks(&many),
            Err(SdpError::TooManyTracks(n)) if n > MAX_MLINES
        ));
    }

    #[test]
    fn rejects_garbage_and_empty_offers() {
        gst::init().unwrap();
        assert!(offered_tracks("v=0\r\n").is_err());
        assert!(matches!(offered_tracks(""), Err(SdpError::Invalid(_))));
        let recv_only = OFFER
            .replace("a=sendonly", "a=recvonly")
            .replace("a=sendrecv", "a=inactive");
        assert!(matches!(
            offered_tracks(&recv_only),
            Err(SdpError::NothingSent)
        ));
    }
}
