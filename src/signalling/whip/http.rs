//! The WHIP endpoint's HTTP side: routes, authentication, limits, CORS and the `Link`
//! headers, over plain TCP or TLS. Each request becomes a [`Request`] for the hub, and its
//! reply becomes the response; nothing here holds session state.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{options, post};
use axum::Router;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::hub::{Published, Refusal, Request};
use super::{WhipSettings, GATHER_WAIT, MAX_FRAGMENT_BYTES, MAX_OFFER_BYTES};

/// Most connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// Time a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a TLS handshake may take.
const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest call or participant name taken from a URL or header.
const MAX_NAME_CHARS: usize = 128;
/// Where a participant's name may come from besides `?name=`.
const NAME_HEADER: &str = "x-callrec-name";

#[derive(Clone)]
struct App {
    settings: Arc<WhipSettings>,
    requests: mpsc::Sender<Request>,
}

/// Serves WHIP on `listener` until `stop`.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    settings: WhipSettings,
    requests: mpsc::Sender<Request>,
    stop: CancellationToken,
) {
    let tls = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let app = App {
        settings: Arc::new(settings),
        requests,
    };
    let router = Router::new()
        .route(
            "/whip/{call}",
            post(publish)
                .options(preflight)
                .layer(DefaultBodyLimit::max(MAX_OFFER_BYTES)),
        )
        .route(
            "/whip/{call}/{session}",
            options(preflight)
                .patch(trickle)
                .delete(end)
                .layer(DefaultBodyLimit::max(MAX_FRAGMENT_BYTES)),
        )
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "no such WHIP resource; publish to /whip/{call}",
            )
        })
        .layer(axum::middleware::map_response(cors))
        .with_state(app);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    warn!("WHIP listener cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = hyper_util::service::TowerToHyperService::new(router);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let served = match tls {
                None => {
                    http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await
                }
                Some(tls) => match tokio::time::timeout(TLS_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await
                    }
                    Ok(Err(e)) => {
                        debug!(%peer, "WHIP TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "WHIP TLS handshake timed out");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                debug!(%peer, "WHIP connection ended: {e}");
            }
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}

/// CORS on every response, so a page on another origin can publish (tokens, not cookies,
/// authenticate, so any origin may ask).
async fn cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Accept-Patch, Accept-Post"),
    );
    response
}

/// `OPTIONS`: what the resource takes, for browsers' preflight and for clients that ask for
/// ICE servers first. TURN credentials go only to authenticated requests, so the
/// unauthenticated `OPTIONS` gets STUN servers alone.
async fn preflight(State(app): State<App>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, If-Match, X-Callrec-Name"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    h.insert(
        HeaderName::from_static("accept-post"),
        HeaderValue::from_static("application/sdp"),
    );
    h.insert(
        HeaderName::from_static("accept-patch"),
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    h.insert(
        header::ALLOW,
        HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"),
    );
    add_links(h, &app.settings, false);
    response
}

#[derive(serde::Deserialize)]
struct PublishQuery {
    name: Option<String>,
}

/// `POST /whip/{call}`: an offer in, `201 Created` with the answer out.
async fn publish(
    State(app): State<App>,
    Path(call): Path<String>,
    Query(query): Query<PublishQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = check_name("call", &call) {
        return refused(refusal);
    }
    let offer = match authorised_text(&app, &call, &headers, &body, "application/sdp", "the offer")
    {
        Ok(offer) => offer,
        Err(refusal) => return refused(refusal),
    };
    let name = query.name.or_else(|| {
        headers
            .get(NAME_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    if let Some(name) = &name {
        if let Err(refusal) = check_name("name", name) {
            return refused(refusal);
        }
    }
    let (reply, answer) = oneshot::channel();
    let request = Request::Publish {
        call: call.clone(),
        name,
        offer,
        reply,
    };
    let wait = app.settings.answer_timeout + GATHER_WAIT + Duration::from_secs(2);
    match ask(&app, request, answer, wait).await {
        Ok(published) => created(&app.settings, &call, published),
        Err(refusal) => refused(refusal),
    }
}

/// `PATCH /whip/{call}/{session}`: trickled candidates.
async fn trickle(
    State(app): State<App>,
    Path((call, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fragment = match authorised_text(
        &app,
        &call,
        &headers,
        &body,
        "application/trickle-ice-sdpfrag",
        "the candidates",
    ) {
        Ok(fragment) => fragment,
        Err(refusal) => return refused(refusal),
    };
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (reply, done) = oneshot::channel();
    let request = Request::Trickle {
        call,
        session,
        if_match,
        fragment,
        reply,
    };
    match ask(&app, request, done, Duration::from_secs(5)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => refused(refusal),
    }
}

/// `DELETE /whip/{call}/{session}`: the client is done.
async fn end(
    State(app): State<App>,
    Path((call, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !app
        .settings
        .tokens
        .allows(authorization(&headers), Some(&call))
    {
        return unauthorized();
    }
    let (reply, done) = oneshot::channel();
    let request = Request::End {
        call,
        session,
        reply,
    };
    match ask(&app, request, done, Duration::from_secs(5)).await {
        Ok(()) => text(
            StatusCode::OK,
            "session ended; its recording is being finalised",
        ),
        Err(refusal) => refused(refusal),
    }
}

/// The body of a request that carries one, once it has passed what every such request must:
/// a token for `call`, `content_type`, and UTF-8 text. `what` names the body in refusals.
fn authorised_text(
    app: &App,
    call: &str,
    headers: &HeaderMap,
    body: &Bytes,
    content_type: &str,
    what: &str,
) -> Result<String, Refusal> {
    if !app
        .settings
        .tokens
        .allows(authorization(headers), Some(call))
    {
        return Err(Refusal::new(401, UNAUTHORIZED));
    }
    if !content_type_is(headers, content_type) {
        return Err(Refusal::new(
            415,
            format!("{what} must be sent as Content-Type: {content_type}"),
        ));
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| Refusal::new(400, format!("{what} is not UTF-8 text")))
}

/// Hands a request to the hub and waits for its reply, at most `wait`.
async fn ask<T>(
    app: &App,
    request: Request,
    reply: oneshot::Receiver<Result<T, Refusal>>,
    wait: Duration,
) -> Result<T, Refusal> {
    let busy = || {
        Refusal::new(
            503,
            "callrec's WHIP endpoint is busy or stopping; try again",
        )
    };
    app.requests.try_send(request).map_err(|_| busy())?;
    match tokio::time::timeout(wait, reply).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(busy()),
        Err(_) => Err(Refusal::new(504, "callrec did not answer in time")),
    }
}

/// The `201 Created` of a published session.
fn created(settings: &WhipSettings, call: &str, published: Published) -> Response {
    let location = format!("/whip/{}/{}", encode_segment(call), published.session);
    let mut response = (StatusCode::CREATED, published.answer).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", published.etag)) {
        h.insert(header::ETAG, value);
    }
    h.insert(
        HeaderName::from_static("accept-patch"),
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    add_links(h, settings, true);
    response
}

/// `Link: <uri>; rel="ice-server"` for each ICE server (TURN credentials only if
/// `authenticated`).
fn add_links(headers: &mut HeaderMap, settings: &WhipSettings, authenticated: bool) {
    for server in &settings.ice_servers {
        if server.credentials.is_some() && !authenticated {
            continue;
        }
        if let Ok(value) = HeaderValue::from_str(&server.link()) {
            headers.append(header::LINK, value);
        }
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

/// A call or participant name from the network: bounded, printable. (Where it is used on
/// disk, callrec makes it safe as it does every name; this keeps logs and meta sane.)
fn check_name(what: &str, value: &str) -> Result<(), Refusal> {
    if value.is_empty() || value.chars().count() > MAX_NAME_CHARS {
        return Err(Refusal::new(
            400,
            format!("the {what} must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Refusal::new(
            400,
            format!("the {what} must not hold control characters"),
        ));
    }
    Ok(())
}

/// Everything but RFC 3986's unreserved characters.
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path segment with everything but unreserved characters percent-encoded.
fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, NOT_UNRESERVED).to_string()
}

/// The reason a `401` gives.
const UNAUTHORIZED: &str =
    "a valid bearer token for this call is needed (Authorization: Bearer TOKEN)";

fn unauthorized() -> Response {
    refused(Refusal::new(401, UNAUTHORIZED))
}

/// The response of a refusal; a `401` says which scheme authenticates.
fn refused(refusal: Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = text(status, &refusal.reason);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"callrec\""),
        );
    }
    response
}

fn text(status: StatusCode, reason: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(check_name("call", "standup").is_ok());
        assert!(check_name("call", "café ☕").is_ok());
        assert_eq!(check_name("call", "").unwrap_err().status, 400);
        assert_eq!(
            check_name("call", &"x".repeat(129)).unwrap_err().status,
            400
        );
        assert_eq!(check_name("name", "a\nb").unwrap_err().status, 400);
    }

    #[test]
    fn locations_encode_the_call() {
        assert_eq!(encode_segment("a b/../ç"), "a%20b%2F..%2F%C3%A7");
    }
}
