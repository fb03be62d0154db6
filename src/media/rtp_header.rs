//! Reading RTP header extensions (RFC 8285) straight from a packet's bytes: the `mid` and
//! `rid` a sender puts in its first packets (RFC 8843, RFC 8852), which say which m-line and
//! which simulcast encoding a stream with no `a=ssrc` in the offer belongs to.

/// The value of header extension `id` in an RTP packet, if the packet has it. Malformed
/// packets give `None`: the bytes come from the network.
pub fn extension(packet: &[u8], id: u8) -> Option<&[u8]> {
    if id == 0 || packet.len() < 12 || packet[0] >> 6 != 2 || packet[0] & 0x10 == 0 {
        return None;
    }
    let csrcs = usize::from(packet[0] & 0x0f);
    let start = 12 + 4 * csrcs;
    let header = packet.get(start..start + 4)?;
    let profile = u16::from_be_bytes([header[0], header[1]]);
    let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let body = packet.get(start + 4..start + 4 + 4 * words)?;
    match profile {
        0xBEDE => one_byte(body, id),
        p if p & 0xFFF0 == 0x1000 => two_byte(body, id),
        _ => None,
    }
}

/// One-byte elements: a 4-bit id and a 4-bit length minus one; id 0 is padding, 15 stops.
fn one_byte(mut body: &[u8], id: u8) -> Option<&[u8]> {
    while let Some((&first, rest)) = body.split_first() {
        let element = first >> 4;
        if element == 0 {
            body = rest;
            continue;
        }
        if element == 15 {
            return None;
        }
        let len = usize::from(first & 0x0f) + 1;
        let value = rest.get(..len)?;
        if element == id {
            return Some(value);
        }
        body = &rest[len..];
    }
    None
}

/// Two-byte elements: an 8-bit id and an 8-bit length; id 0 is padding.
fn two_byte(mut body: &[u8], id: u8) -> Option<&[u8]> {
    while let Some((&element, rest)) = body.split_first() {
        if element == 0 {
            body = rest;
            continue;
        }
        let (&len, rest) = rest.split_first()?;
        let value = rest.get(..usize::from(len))?;
        if element == id {
            return Some(value);
        }
        body = &rest[usize::from(len)..];
    }
    None
}

/// A header extension's value as text (`mid` and `rid` are short tokens), if it is one.
pub fn extension_text(packet: &[u8], id: u8) -> Option<String> {
    let value = extension(packet, id)?;
    let text = std::str::from_utf8(value).ok()?;
    let token = text.trim_end_matches('\0');
    let fine = !token.is_empty()
        && token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    fine.then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 packet as Chromium sends it with simulcast: one-byte extensions mid (4) = "1",
    /// rid (10) = "f", and transport-cc (3).
    fn chromium_packet() -> Vec<u8> {
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78];
        let ext = [0x31, 0x00, 0x01, 0x40, b'1', 0xa0, b'f', 0x00];
        p.extend_from_slice(&[0xBE, 0xDE, 0, 2]);
        p.extend_from_slice(&ext);
        p.extend_from_slice(&[0x90, 0x80, 0x00]);
        p
    }

    #[test]
    fn reads_one_byte_extensions() {
        let p = chromium_packet();
        assert_eq!(extension_text(&p, 4).as_deref(), Some("1"));
        assert_eq!(extension_text(&p, 10).as_deref(), Some("f"));
        assert_eq!(extension(&p, 3), Some(&[0x00, 0x01][..]));
        assert_eq!(extension(&p, 11), None);
    }

    #[test]
    fn reads_two_byte_extensions() {
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        p.extend_from_slice(&[0x10, 0x00, 0, 2]);
        p.extend_from_slice(&[0, 7, 3, b'a', b'b', b'c', 0, 0]);
        assert_eq!(extension_text(&p, 7).as_deref(), Some("abc"));
    }

    #[test]
    fn survives_malformed_packets() {
        let p = chromium_packet();
        for cut in 0..p.len() {
            let _ = extension(&p[..cut], 10);
        }
        // A length that runs past the end, no extension bit, a bad version, a stop byte.
        let mut long = p.clone();
        long[14] = 0xff;
        assert_eq!(extension(&long, 10), None);
        let mut plain = p.clone();
        plain[0] = 0x80;
        assert_eq!(extension(&plain, 10), None);
        assert_eq!(extension(&[0x10; 40], 1), None);
        let mut stop = p;
        stop[16] = 0xf0;
        assert_eq!(extension(&stop, 10), None);
        assert_eq!(
            extension_text(
                &[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0, 1, 0x40, 0xff, 0, 0],
                4
            ),
            None
        );
    }
}
