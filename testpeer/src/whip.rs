//! The WHIP client (RFC 9725): the HTTP requests that publish to a WHIP endpoint, and the SDP
//! texts they carry.
//!
//! * `POST <endpoint>` with `Content-Type: application/sdp` and the offer; `201 Created` with
//!   a `Location` (relative to the endpoint) and an `application/sdp` answer creates the
//!   session;
//! * `PATCH <Location>` with `Content-Type: application/trickle-ice-sdpfrag` trickles local
//!   candidates (RFC 8840 fragments, see [`sdpfrag`]); `204 No Content` accepts them;
//! * `DELETE <Location>` ends the session; `200 OK` confirms it.
//!
//! Every request carries `Authorization: Bearer <token>` when `--whip-token` is given (and
//! `If-Match` with the session's ETag on PATCH when the endpoint returned one), is bounded by
//! [`REQUEST_TIMEOUT`], never follows redirects (a 3xx is reported like any other refusal)
//! and never goes through a proxy: the tests publish to loopback. ureq is blocking, so each
//! request runs on tokio's blocking pool.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ureq::http::header;
use url::Url;

/// Upper bound for one request, from connecting to the end of the response body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest response body read; an endpoint sending more is broken (an answer is a few KiB).
const MAX_BODY: u64 = 1 << 20;

/// Media type of offers and answers.
pub const SDP_TYPE: &str = "application/sdp";

/// Media type of trickle ICE fragments (RFC 8840).
pub const SDPFRAG_TYPE: &str = "application/trickle-ice-sdpfrag";

/// The parts of a response the client looks at.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub etag: Option<String>,
    /// The media type without parameters, lowercased.
    pub content_type: Option<String>,
    /// The body as (lossy) UTF-8.
    pub body: String,
}

/// An HTTP client for one WHIP endpoint: the agent and the bearer token.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    token: Option<String>,
}

impl Client {
    /// A client trusting the CAs of `ca_file` (else the public web roots) for https://.
    pub fn new(ca_file: Option<&Path>, token: Option<String>) -> Result<Self> {
        use ureq::tls::{RootCerts, TlsConfig};
        let roots = match ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read the CA file {}", path.display()))?;
                let certs = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("bad PEM in the CA file {}", path.display()))?;
                if certs.is_empty() {
                    bail!("no certificate in the CA file {}", path.display());
                }
                RootCerts::from(certs)
            }
            None => RootCerts::WebPki,
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            // Refusals are answers to report (status and body), not transport errors.
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(concat!("callrec-testpeer/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build();
        Ok(Self {
            agent: config.into(),
            token,
        })
    }

    /// `POST`s the offer to the endpoint.
    pub async fn post_offer(&self, endpoint: &Url, offer: String) -> Result<Reply> {
        let (this, url) = (self.clone(), endpoint.to_string());
        blocking(move || {
            let req = this
                .agent
                .post(&url)
                .header(header::CONTENT_TYPE, SDP_TYPE)
                .header(header::ACCEPT, SDP_TYPE);
            reply(this.authorize(req).send(offer))
        })
        .await
        .with_context(|| format!("POST {endpoint}"))
    }

    /// `PATCH`es a trickle ICE fragment to the session.
    pub async fn patch_sdpfrag(
        &self,
        session: &Url,
        etag: Option<&str>,
        fragment: String,
    ) -> Result<Reply> {
        let (this, url, etag) = (self.clone(), session.to_string(), etag.map(str::to_owned));
        blocking(move || {
            let mut req = this
                .agent
                .patch(&url)
                .header(header::CONTENT_TYPE, SDPFRAG_TYPE);
            if let Some(etag) = etag {
                req = req.header(header::IF_MATCH, etag);
            }
            reply(this.authorize(req).send(fragment))
        })
        .await
        .with_context(|| format!("PATCH {session}"))
    }

    /// `DELETE`s the session.
    pub async fn delete(&self, session: &Url) -> Result<Reply> {
        let (this, url) = (self.clone(), session.to_string());
        blocking(move || reply(this.authorize(this.agent.delete(&url)).call()))
            .await
            .with_context(|| format!("DELETE {session}"))
    }

    /// Adds the bearer token, if any.
    fn authorize<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => req.header(header::AUTHORIZATION, format!("Bearer {token}")),
            None => req,
        }
    }
}

/// Runs a blocking request on tokio's blocking pool.
async fn blocking(request: impl FnOnce() -> Result<Reply> + Send + 'static) -> Result<Reply> {
    tokio::task::spawn_blocking(request)
        .await
        .map_err(|e| anyhow!("request task: {e}"))?
}

/// True if the request failed because nothing listens at the endpoint (yet): no request
/// reached a server, so it may be sent again.
pub fn is_connection_refused(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<ureq::Error>() {
        Some(ureq::Error::Io(io)) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        Some(ureq::Error::ConnectionFailed) => true,
        _ => false,
    }
}

/// Reads the parts of a response that matter, whatever the server sent.
fn reply(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Reply> {
    let mut res = res.map_err(|e| match e {
        ureq::Error::Timeout(_) => anyhow::Error::new(e).context(format!(
            "no complete reply within {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
        e => anyhow::Error::new(e),
    })?;
    let text = |name: header::HeaderName| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
    };
    let location = text(header::LOCATION);
    let etag = text(header::ETAG);
    let content_type = text(header::CONTENT_TYPE).map(|t| {
        t.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    let status = res.status().as_u16();
    // A status without a readable body is still worth reporting: keep the status.
    let body = match res.body_mut().with_config().limit(MAX_BODY).read_to_vec() {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<unreadable body: {e}>"),
    };
    Ok(Reply {
        status,
        location,
        etag,
        content_type,
        body,
    })
}

/// Resolves a `Location` header against the URL it answered.
pub fn resolve_location(endpoint: &Url, location: &str) -> Result<Url> {
    let url = endpoint
        .join(location)
        .map_err(|e| anyhow!("bad Location {location:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("Location {location:?} is not an http(s) URL");
    }
    Ok(url)
}

/// The id of a WHIP session: the last non-empty path segment of its URL (the whole URL if
/// the path has none).
pub fn session_id(session: &Url) -> String {
    session
        .path_segments()
        .and_then(|mut segments| segments.rfind(|s| !s.is_empty()))
        .map(str::to_owned)
        .unwrap_or_else(|| session.to_string())
}

/// What trickle fragments need from our offer: its ICE credentials and the mid of each
/// m-line, in m-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferIce {
    pub ufrag: String,
    pub pwd: String,
    pub mids: Vec<String>,
}

impl OfferIce {
    /// Takes the credentials (media level first, as webrtcbin writes them, else session
    /// level) and the mids (the m-line index where one has none) from an SDP offer.
    pub fn parse(offer: &str) -> Result<Self> {
        let sdp = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes())
            .map_err(|e| anyhow!("unparsable local offer: {e}"))?;
        let attr = |name: &str| {
            sdp.medias()
                .find_map(|m| m.attribute_val(name))
                .or_else(|| sdp.attribute_val(name))
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("local offer without a=ice-{name}"))
        };
        let ufrag = attr("ice-ufrag")?;
        let pwd = attr("ice-pwd")?;
        let mids = sdp
            .medias()
            .enumerate()
            .map(|(i, m)| m.attribute_val("mid").map_or(i.to_string(), str::to_owned))
            .collect();
        Ok(Self { ufrag, pwd, mids })
    }
}

/// The value of a local candidate's `a=candidate:` attribute: webrtcbin hands out
/// `candidate:...`; a bare value or a whole `a=` line is taken as well.
fn candidate_value(candidate: &str) -> &str {
    let candidate = candidate.trim();
    let candidate = candidate.strip_prefix("a=").unwrap_or(candidate);
    candidate.strip_prefix("candidate:").unwrap_or(candidate)
}

/// A trickle ICE fragment (RFC 8840 section 9, as in RFC 9725 section 4.3.1): our ufrag and
/// pwd, then for each m-line with news a dummy `m=audio 9 UDP/TLS/RTP/SAVPF 0` (the endpoint
/// goes by the mid), its `a=mid`, its candidates and, once gathering is `complete`, an
/// `a=end-of-candidates` for every m-line. Candidates of unknown m-lines are left out.
pub fn sdpfrag(ice: &OfferIce, candidates: &[(u32, String)], complete: bool) -> String {
    let mut frag = format!("a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n", ice.ufrag, ice.pwd);
    for (mline, mid) in ice.mids.iter().enumerate() {
        let mut lines: Vec<String> = candidates
            .iter()
            .filter(|(m, _)| usize::try_from(*m).is_ok_and(|m| m == mline))
            .map(|(_, c)| format!("a=candidate:{}\r\n", candidate_value(c)))
            .collect();
        if lines.is_empty() && !complete {
            continue;
        }
        if complete {
            lines.push("a=end-of-candidates\r\n".to_owned());
        }
        frag.push_str(&format!("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:{mid}\r\n"));
        frag.extend(lines);
    }
    frag
}

/// The offer with the gathered candidates in their m-lines (and `a=end-of-candidates` in
/// each when gathering is `complete`), for an endpoint that gets no trickle.
pub fn offer_with_candidates(
    offer: &str,
    candidates: &[(u32, String)],
    complete: bool,
) -> Result<String> {
    let mut sdp = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes())
        .map_err(|e| anyhow!("unparsable local offer: {e}"))?;
    for (mline, candidate) in candidates {
        let Some(media) = sdp.media_mut(*mline) else {
            continue;
        };
        media.add_attribute("candidate", Some(candidate_value(candidate)));
    }
    if complete {
        for i in 0..sdp.medias_len() {
            if let Some(media) = sdp.media_mut(i) {
                media.add_attribute("end-of-candidates", None);
            }
        }
    }
    sdp.as_text()
        .map_err(|e| anyhow!("cannot serialize the offer: {e}"))
}

/// A one-thread HTTP/1.1 server for the tests: answers each connection with the next canned
/// response and hands over each request (head and body) as text.
#[cfg(test)]
pub mod fake_server {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// Starts the server; returns its base URL and the requests it got.
    pub fn serve(responses: Vec<String>) -> (url::Url, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for response in responses {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let _ = tx.send(format!("{head}\r\n{}", String::from_utf8_lossy(&body)));
                let mut stream = stream;
                let _ = stream.write_all(response.as_bytes());
            }
        });
        (url, rx)
    }

    /// A response with `Connection: close` and a body.
    pub fn response(status: &str, headers: &[&str], body: &str) -> String {
        let mut text = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for header in headers {
            text.push_str(&format!("{header}\r\n"));
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::fake_server::{response, serve};
    use super::*;

    const OFFER: &str = "v=0\r\n\
        o=- 1 0 IN IP4 0.0.0.0\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=group:BUNDLE video0 audio1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=ice-ufrag:UFRAG\r\n\
        a=ice-pwd:PWD\r\n\
        a=mid:video0\r\n\
        a=sendonly\r\n\
        a=rtpmap:96 VP8/90000\r\n\
        m=audio 0 UDP/TLS/RTP/SAVPF 97\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=bundle-only\r\n\
        a=ice-ufrag:UFRAG\r\n\
        a=ice-pwd:PWD\r\n\
        a=mid:audio1\r\n\
        a=sendonly\r\n\
        a=rtpmap:97 OPUS/48000/2\r\n";

    const CAND: &str = "candidate:1 1 UDP 2015363327 127.0.0.1 40000 typ host";

    #[test]
    fn locations_resolve_against_the_endpoint() {
        let endpoint = Url::parse("http://127.0.0.1:8080/whip/standup?name=alice").unwrap();
        let url = resolve_location(&endpoint, "/whip/standup/sessions/abc123").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/whip/standup/sessions/abc123"
        );
        assert_eq!(session_id(&url), "abc123");
        let url = resolve_location(&endpoint, "resource/xyz/").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/whip/resource/xyz/");
        assert_eq!(session_id(&url), "xyz");
        let url = resolve_location(&endpoint, "https://other.example/s/9").unwrap();
        assert_eq!(session_id(&url), "9");
        assert!(resolve_location(&endpoint, "ftp://h/x").is_err());
        let root = Url::parse("http://h:1/").unwrap();
        assert_eq!(session_id(&root), "http://h:1/");
    }

    #[test]
    fn the_offer_gives_credentials_and_mids() {
        gst::init().unwrap();
        let ice = OfferIce::parse(OFFER).unwrap();
        assert_eq!(ice.ufrag, "UFRAG");
        assert_eq!(ice.pwd, "PWD");
        assert_eq!(ice.mids, ["video0", "audio1"]);
        assert!(OfferIce::parse("v=0\r\n").is_err());
    }

    #[test]
    fn fragments_group_candidates_by_mid() {
        gst::init().unwrap();
        let ice = OfferIce::parse(OFFER).unwrap();
        let frag = sdpfrag(&ice, &[(0, CAND.to_owned()), (7, CAND.to_owned())], false);
        assert_eq!(
            frag,
            format!(
                "a=ice-ufrag:UFRAG\r\na=ice-pwd:PWD\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:video0\r\na={CAND}\r\n"
            )
        );
        let frag = sdpfrag(&ice, &[], true);
        assert_eq!(
            frag,
            "a=ice-ufrag:UFRAG\r\na=ice-pwd:PWD\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:video0\r\na=end-of-candidates\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:audio1\r\na=end-of-candidates\r\n"
        );
    }

    #[test]
    fn a_full_offer_holds_the_candidates() {
        gst::init().unwrap();
        let bare = CAND.strip_prefix("candidate:").unwrap();
        let sdp =
            offer_with_candidates(OFFER, &[(0, CAND.to_owned()), (1, bare.into())], true).unwrap();
        let video = sdp.find("m=video").unwrap();
        let audio = sdp.find("m=audio").unwrap();
        assert_eq!(sdp.matches(&format!("a={CAND}\r\n")).count(), 2);
        assert!(sdp[video..audio].contains(&format!("a={CAND}\r\n")));
        assert!(sdp[video..audio].contains("a=end-of-candidates\r\n"));
        assert!(sdp[audio..].contains("a=end-of-candidates\r\n"));
        let sdp = offer_with_candidates(OFFER, &[(0, CAND.to_owned())], false).unwrap();
        assert!(!sdp.contains("end-of-candidates"));
    }

    /// The lines of a request's head, lowercased, without the line ends.
    fn head_lines(request: &str) -> Vec<String> {
        let (head, _) = request.split_once("\r\n\r\n").unwrap();
        head.lines().map(str::to_ascii_lowercase).collect()
    }

    #[tokio::test]
    async fn requests_carry_the_whip_headers_and_replies_are_read() {
        let (base, requests) = serve(vec![
            response(
                "201 Created",
                &[
                    "Location: /whip/res/s1",
                    "ETag: \"e1\"",
                    "Content-Type: Application/SDP; charset=utf-8",
                ],
                "v=0\r\n",
            ),
            response("204 No Content", &[], ""),
            response("200 OK", &[], ""),
            response(
                "401 Unauthorized",
                &["Content-Type: text/plain"],
                "who are you\n",
            ),
            "HELLO\r\n\r\n".to_owned(),
        ]);
        let client = Client::new(None, Some("t0k".into())).unwrap();
        let endpoint = base.join("whip/room?name=alice").unwrap();

        let reply = client
            .post_offer(&endpoint, "v=0\r\n".into())
            .await
            .unwrap();
        assert_eq!(reply.status, 201);
        assert_eq!(reply.location.as_deref(), Some("/whip/res/s1"));
        assert_eq!(reply.etag.as_deref(), Some("\"e1\""));
        assert_eq!(reply.content_type.as_deref(), Some(SDP_TYPE));
        assert_eq!(reply.body, "v=0\r\n");
        let post = requests.recv().unwrap();
        let head = head_lines(&post);
        assert_eq!(head[0], "post /whip/room?name=alice http/1.1");
        for line in [
            "content-type: application/sdp",
            "accept: application/sdp",
            "authorization: bearer t0k",
        ] {
            assert!(head.iter().any(|l| l == line), "no {line:?} in {head:?}");
        }
        assert!(post.ends_with("\r\n\r\nv=0\r\n"));

        let session = resolve_location(&endpoint, "/whip/res/s1").unwrap();
        let reply = client
            .patch_sdpfrag(&session, Some("\"e1\""), "a=ice-ufrag:u\r\n".into())
            .await
            .unwrap();
        assert_eq!(reply.status, 204);
        let head = head_lines(&requests.recv().unwrap());
        assert_eq!(head[0], "patch /whip/res/s1 http/1.1");
        assert!(head
            .iter()
            .any(|l| l == "content-type: application/trickle-ice-sdpfrag"));
        assert!(head.iter().any(|l| l == "if-match: \"e1\""));

        let reply = client.delete(&session).await.unwrap();
        assert_eq!(reply.status, 200);
        let head = head_lines(&requests.recv().unwrap());
        assert_eq!(head[0], "delete /whip/res/s1 http/1.1");
        assert!(head.iter().any(|l| l == "authorization: bearer t0k"));

        let reply = client
            .post_offer(&endpoint, "v=0\r\n".into())
            .await
            .unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (401, "who are you\n"));
        assert!(client
            .post_offer(&endpoint, "v=0\r\n".into())
            .await
            .is_err());
    }

    #[tokio::test]
    async fn nothing_listening_is_told_apart() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/whip")).unwrap();
        let client = Client::new(None, None).unwrap();
        let e = client.post_offer(&url, String::new()).await.unwrap_err();
        assert!(is_connection_refused(&e), "{e:#}");
    }
}
