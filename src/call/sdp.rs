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

/// An offer callrec cannot use.
#[derive(Debug, thiserror::Error)]
pub enum SdpError {
    /// The text is not SDP.
    #[error("the producer's offer is not valid SDP: {0}")]
    Invalid(String),
    /// Nothing in it is sent towards us.
    #[error("the producer's offer has no audio or video it sends (all m-lines are recvonly, inactive or rejected)")]
    NothingSent,
}

/// Parses an offer and lists the tracks the producer will send.
pub fn offered_tracks(sdp: &str) -> Result<(gst_sdp::SDPMessage, Vec<OfferedTrack>), SdpError> {
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
    if tracks.is_empty() {
        return Err(SdpError::NothingSent);
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
