//! ICE over WHIP: the client's trickled candidates (`application/trickle-ice-sdpfrag`,
//! RFC 8840) read into m-line indices, and callrec's own candidates written into its answer
//! (a WHIP endpoint cannot trickle to the client, so the answer carries them all).

/// What a client's SDP fragment says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    /// `a=ice-ufrag`, if given: a new one means an ICE restart.
    pub ufrag: Option<String>,
    /// `(m-line index, candidate line without "a=")`.
    pub candidates: Vec<(u32, String)>,
    /// `a=end-of-candidates` was there.
    pub end: bool,
}

/// A fragment callrec cannot read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// A candidate names a media section the offer did not have.
    #[error("the fragment names mid {0:?}, which the offer has no m-line for")]
    UnknownMid(String),
    /// A candidate comes before any `a=mid` (or `m=` line) says where it belongs.
    #[error("a candidate comes before any a=mid line says which m-line it is for")]
    NoMid,
    /// Too many lines to be a real fragment.
    #[error("the fragment has more than {MAX_FRAGMENT_CANDIDATES} candidates")]
    TooMany,
}

/// Most candidates one PATCH may carry.
pub const MAX_FRAGMENT_CANDIDATES: usize = 256;

/// Reads a fragment; `mids` are the offer's m-lines' mids, in order. A candidate after an
/// `m=` line with no `a=mid` belongs to that m-line's position among the fragment's `m=`
/// lines, which RFC 8840 allows when the mids are absent.
pub fn parse_fragment(text: &str, mids: &[Option<String>]) -> Result<Fragment, FragmentError> {
    let mut fragment = Fragment::default();
    let mut current: Option<u32> = None;
    let mut sections = 0u32;
    for line in text.lines().map(str::trim) {
        if line.starts_with("m=") {
            current = Some(sections);
            sections += 1;
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            let index = mids
                .iter()
                .position(|m| m.as_deref() == Some(mid))
                .ok_or_else(|| FragmentError::UnknownMid(mid.chars().take(64).collect()))?;
            current = Some(index as u32);
        } else if let Some(ufrag) = line.strip_prefix("a=ice-ufrag:") {
            fragment.ufrag = Some(ufrag.to_owned());
        } else if let Some(candidate) = line.strip_prefix("a=") {
            if candidate.starts_with("candidate:") {
                let mline = current.ok_or(FragmentError::NoMid)?;
                if fragment.candidates.len() >= MAX_FRAGMENT_CANDIDATES {
                    return Err(FragmentError::TooMany);
                }
                fragment.candidates.push((mline, candidate.to_owned()));
            } else if candidate == "end-of-candidates" {
                fragment.end = true;
            }
        }
    }
    Ok(fragment)
}

/// The `a=mid` of each m-line of an SDP, in order (`None` for an m-line without one).
pub fn mids(sdp: &str) -> Vec<Option<String>> {
    let mut mids: Vec<Option<String>> = vec![];
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            mids.push(None);
        } else if let (Some(mid), Some(last)) = (line.strip_prefix("a=mid:"), mids.last_mut()) {
            *last = Some(mid.to_owned());
        }
    }
    mids
}

/// The `a=ice-ufrag` of an SDP (the session's, or its first m-line's).
pub fn ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .map(str::to_owned)
}

/// `answer` with `candidates` (`(m-line, "candidate:…")`) added at the end of their m-line
/// sections, and `a=end-of-candidates` after them when gathering is `complete`. Lines end in
/// CRLF, as SDP wants.
pub fn with_candidates(answer: &str, candidates: &[(u32, String)], complete: bool) -> String {
    let mut out = String::with_capacity(answer.len() + candidates.len() * 100);
    let mut section: Option<u32> = None;
    let close = |out: &mut String, section: Option<u32>| {
        if let Some(index) = section {
            for (_, c) in candidates.iter().filter(|(m, _)| *m == index) {
                out.push_str("a=");
                out.push_str(c.strip_prefix("a=").unwrap_or(c));
                out.push_str("\r\n");
            }
            if complete {
                out.push_str("a=end-of-candidates\r\n");
            }
        }
    };
    let mut next = 0u32;
    for line in answer.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            close(&mut out, section);
            section = Some(next);
            next += 1;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    close(&mut out, section);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\ns=-\r\na=ice-ufrag:abcd\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n";

    #[test]
    fn fragments_map_candidates_to_mlines() {
        let mids = mids(OFFER);
        assert_eq!(mids, [Some("0".to_owned()), Some("1".to_owned())]);
        assert_eq!(ufrag(OFFER).as_deref(), Some("abcd"));
        let frag = "a=ice-ufrag:abcd\r\na=ice-pwd:x\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:1\r\na=candidate:1 1 UDP 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n";
        let f = parse_fragment(frag, &mids).unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("abcd"));
        assert_eq!(
            f.candidates,
            [(1, "candidate:1 1 UDP 1 127.0.0.1 5000 typ host".to_owned())]
        );
        assert!(f.end);
        // Without mids, the m= lines count.
        let f = parse_fragment(
            "m=audio 9 X 0\r\nm=video 9 X 0\r\na=candidate:2 1 UDP 1 ::1 1 typ host\r\n",
            &[None, None],
        )
        .unwrap();
        assert_eq!(f.candidates[0].0, 1);
    }

    #[test]
    fn bad_fragments_are_refused() {
        let mids = mids(OFFER);
        assert_eq!(
            parse_fragment("a=mid:9\r\n", &mids),
            Err(FragmentError::UnknownMid("9".into()))
        );
        assert_eq!(
            parse_fragment("a=candidate:1 1 UDP 1 1.2.3.4 5 typ host\r\n", &mids),
            Err(FragmentError::NoMid)
        );
        let many = format!(
            "a=mid:0\r\n{}",
            "a=candidate:1 1 UDP 1 1.2.3.4 5 typ host\r\n".repeat(300)
        );
        assert_eq!(parse_fragment(&many, &mids), Err(FragmentError::TooMany));
    }

    #[test]
    fn answers_carry_their_candidates() {
        let answer = "v=0\r\ns=-\r\nm=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:1\r\n";
        let out = with_candidates(
            answer,
            &[
                (1, "candidate:1 1 UDP 1 127.0.0.1 6 typ host".into()),
                (0, "candidate:2 1 UDP 1 127.0.0.1 7 typ host".into()),
            ],
            true,
        );
        assert_eq!(
            out,
            "v=0\r\ns=-\r\nm=audio 9 X 111\r\na=mid:0\r\na=candidate:2 1 UDP 1 127.0.0.1 7 typ host\r\na=end-of-candidates\r\n\
             m=video 9 X 96\r\na=mid:1\r\na=candidate:1 1 UDP 1 127.0.0.1 6 typ host\r\na=end-of-candidates\r\n"
        );
    }
}
