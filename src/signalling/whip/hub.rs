//! The WHIP sessions: what each one waits for, and the events and commands that move it on.
//! One task owns them all, so no lock is held across the HTTP server's requests.
//!
//! A session goes `Announced` (the supervisor was told of a new producer) → `Started` (the
//! supervisor asked for its session; the call has the offer) → `Live` (the client has its
//! answer). It leaves the table when the client ends it (`DELETE`), when callrec ends it, or
//! when a POST gives up (the client went away, or no answer came in time).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::trickle::{self, FragmentError};
use super::{WhipSettings, GATHER_WAIT, MAX_SESSIONS};
use crate::media::sdp;
use crate::signalling::{SignalCommand, SignalEvent};

/// Room for requests from the HTTP server.
pub(super) const REQUEST_QUEUE: usize = 256;
/// Most candidates of ours an answer carries (host, server-reflexive and relay candidates
/// of one bundled transport are a handful).
const MAX_ANSWER_CANDIDATES: usize = 64;

/// A request the HTTP server could not fulfil: the status and a short reason for the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

/// A published session: what the `201 Created` carries.
#[derive(Debug)]
pub(super) struct Published {
    pub session: String,
    pub answer: String,
    pub etag: String,
}

/// What the HTTP server asks of the hub; each request carries where the reply goes.
#[derive(Debug)]
pub(super) enum Request {
    /// `POST /whip/{call}`: a new participant's offer.
    Publish {
        call: String,
        name: Option<String>,
        offer: String,
        reply: oneshot::Sender<Result<Published, Refusal>>,
    },
    /// `PATCH /whip/{call}/{session}`: trickled candidates.
    Trickle {
        call: String,
        session: String,
        if_match: Option<String>,
        fragment: String,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// `DELETE /whip/{call}/{session}`.
    End {
        call: String,
        session: String,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
}

enum Phase {
    /// Announced to the supervisor; waiting for it to start the session.
    Announced {
        reply: oneshot::Sender<Result<Published, Refusal>>,
    },
    /// The call has the offer; waiting for its answer and the end of its gathering.
    Started {
        reply: oneshot::Sender<Result<Published, Refusal>>,
        answer: Option<(String, Instant)>,
        candidates: Vec<(u32, String)>,
        gathered: bool,
    },
    /// The client has its answer.
    Live,
}

struct Session {
    call: String,
    offer: String,
    mids: Vec<Option<String>>,
    ufrag: Option<String>,
    etag: String,
    since: Instant,
    phase: Phase,
}

/// The sessions and the way to the supervisor.
pub(super) struct Hub {
    settings: WhipSettings,
    events: mpsc::Sender<SignalEvent>,
    sessions: HashMap<String, Session>,
}

/// A random id, hex: session ids and entity tags.
fn random_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Hub {
    pub fn new(settings: WhipSettings, events: mpsc::Sender<SignalEvent>) -> Self {
        Hub {
            settings,
            events,
            sessions: HashMap::new(),
        }
    }

    /// Runs until `stop`, or until the supervisor or the HTTP server is gone.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut commands: mpsc::Receiver<SignalCommand>,
        stop: CancellationToken,
    ) {
        // The listener is bound: clients can publish from now on.
        self.emit(SignalEvent::Connected).await;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                request = requests.recv() => match request {
                    Some(request) => self.on_request(request).await,
                    None => break,
                },
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                _ = tick.tick() => self.on_tick().await,
            }
        }
        // Whatever still waits gets an answer; the calls end their sessions themselves.
        for (_, session) in self.sessions.drain() {
            refuse(session.phase, Refusal::new(503, "callrec is shutting down"));
        }
    }

    async fn emit(&self, event: SignalEvent) {
        if self.events.send(event).await.is_err() {
            debug!("the supervisor is gone; dropping a WHIP event");
        }
    }

    async fn on_request(&mut self, request: Request) {
        match request {
            Request::Publish {
                call,
                name,
                offer,
                reply,
            } => match self.check_offer(&offer) {
                Ok(()) => {
                    let (id, meta) = self.publish(call, name, offer, reply);
                    self.emit(SignalEvent::ProducerAdded {
                        peer_id: id,
                        meta: Some(meta),
                    })
                    .await;
                }
                Err(refusal) => {
                    let _ = reply.send(Err(refusal));
                }
            },
            Request::Trickle {
                call,
                session,
                if_match,
                fragment,
                reply,
            } => {
                let result = self.trickle(&call, &session, if_match, &fragment);
                let result = match result {
                    Ok(candidates) => {
                        for (mline_index, candidate) in candidates {
                            self.emit(SignalEvent::Ice {
                                session_id: session.clone(),
                                candidate,
                                mline_index,
                            })
                            .await;
                        }
                        Ok(())
                    }
                    Err(refusal) => Err(refusal),
                };
                let _ = reply.send(result);
            }
            Request::End {
                call,
                session,
                reply,
            } => {
                if self.sessions.get(&session).is_none_or(|s| s.call != call) {
                    let _ = reply.send(Err(not_found()));
                    return;
                }
                let ended = self.sessions.remove(&session).expect("looked up");
                info!(source = %self.settings.source, call = %ended.call, %session, "WHIP client ended its session");
                self.end(
                    session,
                    ended.phase,
                    Refusal::new(503, "ended by the client"),
                )
                .await;
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Whether an offer can be taken: room for it, SDP that parses, a codec callrec records.
    fn check_offer(&self, offer: &str) -> Result<(), Refusal> {
        if self.sessions.len() >= MAX_SESSIONS {
            return Err(Refusal::new(
                503,
                format!(
                    "callrec takes at most {MAX_SESSIONS} WHIP sessions at once; try again later"
                ),
            ));
        }
        let (_, tracks) =
            sdp::offered_tracks(offer).map_err(|e| Refusal::new(400, e.to_string()))?;
        let records = self.settings.records_encoding;
        if !tracks
            .iter()
            .any(|t| t.encodings.iter().any(|e| records(e)))
        {
            let offered: Vec<&str> = tracks
                .iter()
                .flat_map(|t| t.encodings.iter().map(String::as_str))
                .collect();
            return Err(Refusal::new(
                406,
                format!(
                    "callrec records none of the codecs offered ({}); offer VP8, VP9, H264 or Opus",
                    offered.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Makes the session of a checked offer, waiting for the supervisor. Returns its id and
    /// the meta the supervisor groups and names the participant by.
    fn publish(
        &mut self,
        call: String,
        name: Option<String>,
        offer: String,
        reply: oneshot::Sender<Result<Published, Refusal>>,
    ) -> (String, Value) {
        let id = random_id();
        let mut meta = serde_json::Map::new();
        meta.insert(self.settings.group_key.clone(), Value::String(call.clone()));
        if let Some(name) = &name {
            meta.insert("name".into(), Value::String(name.clone()));
        }
        meta.insert("whip".into(), Value::Bool(true));
        info!(source = %self.settings.source, %call, name = name.as_deref().unwrap_or(""), session = %id, "WHIP client publishes");
        self.sessions.insert(
            id.clone(),
            Session {
                call,
                mids: trickle::mids(&offer),
                ufrag: trickle::ufrag(&offer),
                offer,
                etag: random_id(),
                since: Instant::now(),
                phase: Phase::Announced { reply },
            },
        );
        (id, Value::Object(meta))
    }

    /// Checks a PATCH and reads its candidates.
    fn trickle(
        &self,
        call: &str,
        id: &str,
        if_match: Option<String>,
        fragment: &str,
    ) -> Result<Vec<(u32, String)>, Refusal> {
        let session = self
            .sessions
            .get(id)
            .filter(|s| s.call == call)
            .ok_or_else(not_found)?;
        if let Some(tag) = if_match {
            let tag = tag.trim();
            if tag != "*" && tag.trim_matches('"') != session.etag {
                return Err(Refusal::new(
                    412,
                    "If-Match does not match the session's entity tag",
                ));
            }
        }
        let parsed = trickle::parse_fragment(fragment, &session.mids)
            .map_err(|e: FragmentError| Refusal::new(400, e.to_string()))?;
        if parsed.ufrag.is_some() && parsed.ufrag != session.ufrag {
            // RFC 9725: an endpoint that takes trickle but not restarts answers 422.
            return Err(Refusal::new(
                422,
                "callrec does not restart ICE; DELETE this session and publish again",
            ));
        }
        Ok(parsed.candidates)
    }

    async fn on_command(&mut self, command: SignalCommand) {
        match command {
            SignalCommand::StartSession { peer_id, .. } => {
                let Some(session) = self.sessions.get_mut(&peer_id) else {
                    // Asked for a client that has gone: the supervisor forgets it.
                    self.emit(SignalEvent::ProducerRemoved { peer_id }).await;
                    return;
                };
                let phase = std::mem::replace(&mut session.phase, Phase::Live);
                let Phase::Announced { reply } = phase else {
                    session.phase = phase;
                    return;
                };
                session.phase = Phase::Started {
                    reply,
                    answer: None,
                    candidates: vec![],
                    gathered: false,
                };
                let sdp = session.offer.clone();
                self.emit(SignalEvent::SessionStarted {
                    session_id: peer_id.clone(),
                    peer_id: peer_id.clone(),
                })
                .await;
                self.emit(SignalEvent::Offer {
                    session_id: peer_id,
                    sdp,
                })
                .await;
            }
            SignalCommand::Answer { session_id, sdp } => {
                if let Some(Phase::Started { answer, .. }) =
                    self.sessions.get_mut(&session_id).map(|s| &mut s.phase)
                {
                    *answer = Some((sdp, Instant::now()));
                }
                self.reply_if_ready(&session_id).await;
            }
            SignalCommand::Ice {
                session_id,
                candidate,
                mline_index,
            } => {
                if let Some(Phase::Started { candidates, .. }) =
                    self.sessions.get_mut(&session_id).map(|s| &mut s.phase)
                {
                    if candidates.len() < MAX_ANSWER_CANDIDATES {
                        candidates.push((mline_index, candidate));
                    }
                }
                // Once answered, the client cannot be told of more (WHIP has no server-side
                // trickle); the ones in the answer are enough for host and relayed paths.
            }
            SignalCommand::EndOfCandidates { session_id } => {
                if let Some(Phase::Started { gathered, .. }) =
                    self.sessions.get_mut(&session_id).map(|s| &mut s.phase)
                {
                    *gathered = true;
                }
                self.reply_if_ready(&session_id).await;
            }
            SignalCommand::EndSession { session_id } => {
                if let Some(session) = self.sessions.remove(&session_id) {
                    debug!(source = %self.settings.source, call = %session.call, session = %session_id, "callrec ended a WHIP session");
                    refuse(
                        session.phase,
                        Refusal::new(
                            503,
                            "callrec ended the session before answering it; its log says why",
                        ),
                    );
                }
            }
        }
    }

    /// Answers the POST once the answer is there and gathering is over (or has had
    /// [`GATHER_WAIT`]).
    async fn reply_if_ready(&mut self, id: &str) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        let ready = matches!(&session.phase, Phase::Started { answer: Some((_, at)), gathered, .. }
            if *gathered || at.elapsed() >= GATHER_WAIT);
        if !ready {
            return;
        }
        let Phase::Started {
            reply,
            answer: Some((answer, _)),
            candidates,
            gathered,
        } = std::mem::replace(&mut session.phase, Phase::Live)
        else {
            return;
        };
        let published = Published {
            session: id.to_owned(),
            answer: trickle::with_candidates(&answer, &candidates, gathered),
            etag: session.etag.clone(),
        };
        if reply.send(Ok(published)).is_err() {
            // The client gave up before its answer came: end what was started for it.
            self.sessions.remove(id);
            self.emit(SignalEvent::SessionEnded {
                session_id: id.to_owned(),
            })
            .await;
        }
    }

    /// Gives up on POSTs that waited too long or whose client went away.
    async fn on_tick(&mut self) {
        let timeout = self.settings.answer_timeout;
        let mut expired = vec![];
        let mut ready = vec![];
        for (id, session) in &self.sessions {
            match &session.phase {
                Phase::Announced { reply } | Phase::Started { reply, .. } if reply.is_closed() => {
                    expired.push(id.clone());
                }
                // Answered: it goes out within GATHER_WAIT, whatever the timeout says.
                Phase::Started {
                    answer: Some(_), ..
                } => ready.push(id.clone()),
                Phase::Announced { .. } | Phase::Started { .. }
                    if session.since.elapsed() >= timeout =>
                {
                    expired.push(id.clone());
                }
                _ => {}
            }
        }
        for id in ready {
            self.reply_if_ready(&id).await;
        }
        for id in expired {
            let Some(session) = self.sessions.remove(&id) else {
                continue;
            };
            let refusal = match session.phase {
                Phase::Announced { .. } => Refusal::new(
                    503,
                    "callrec is not recording this call now ([recording] filter, max_calls or min_free_mb; its log says which)",
                ),
                _ => Refusal::new(504, "callrec did not answer the offer in time"),
            };
            warn!(source = %self.settings.source, call = %session.call, session = %id, status = refusal.status, "WHIP publish not answered: {}", refusal.reason);
            self.end(id, session.phase, refusal).await;
        }
    }

    /// Tells the supervisor a session is over, however far it got, and answers its POST
    /// with `refusal` if that still waits.
    async fn end(&self, id: String, phase: Phase, refusal: Refusal) {
        let event = match &phase {
            Phase::Announced { .. } => SignalEvent::ProducerRemoved { peer_id: id },
            _ => SignalEvent::SessionEnded { session_id: id },
        };
        refuse(phase, refusal);
        self.emit(event).await;
    }
}

/// Answers a POST still waiting in `phase` with `refusal`.
fn refuse(phase: Phase, refusal: Refusal) {
    if let Phase::Announced { reply } | Phase::Started { reply, .. } = phase {
        let _ = reply.send(Err(refusal));
    }
}

fn not_found() -> Refusal {
    Refusal::new(404, "no such WHIP session (it ended, or never existed)")
}
