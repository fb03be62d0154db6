//! When a request fails: Janus refuses it (a VideoRoom error, a core error), never answers
//! it, or it is forgotten. Each failure is reported as a `ServerError` naming what failed
//! with a hint where one helps, and what the request had started is put back so it is tried
//! again in due time.

use super::messages::CoreError;
use super::rooms::{self, Follower, Subscriber};
use super::{
    Control, Janus, Req, Session, CREATE_RETRY, NO_SUCH_FEED, NO_SUCH_SESSION, RELIST_EVERY,
};

impl Janus {
    /// The VideoRoom refused a request.
    pub(super) fn refused(&mut self, kind: Req, code: i64, error: String) {
        if let Req::JoinSubscriber(key) = &kind {
            if code == NO_SUCH_FEED && self.retry_join(key) {
                return;
            }
        }
        let hint = match (&kind, code) {
            (Req::List, 433) => "; check the admin key of this source",
            (_, 426) => "; check the room id",
            (_, 429 | 433) => "; check this room's PIN",
            _ => "",
        };
        let source = self.settings.source.clone();
        self.report(format!(
            "Janus ({source}) refused {}: {error}{hint}",
            kind.describe()
        ));
        self.undo(&kind);
    }

    /// The core refused a request (or reported an error of its own).
    pub(super) fn on_core_error(
        &mut self,
        kind: Option<Req>,
        session_id: Option<u64>,
        error: CoreError,
    ) {
        let reason = rooms::cut(Some(error.reason)).unwrap_or_default();
        let ours = matches!(self.session, Session::Up(id) if session_id == Some(id));
        if error.code == NO_SUCH_SESSION && ours {
            self.session_lost(&format!("{reason} ({})", error.code));
            return;
        }
        let hint = if error.code == 403 {
            "; check the api secret of this source"
        } else {
            ""
        };
        let source = self.settings.source.clone();
        match kind {
            Some(kind) => {
                self.report(format!(
                    "Janus ({source}) refused {}: {reason} ({}){hint}",
                    kind.describe(),
                    error.code
                ));
                self.undo(&kind);
            }
            None => self.report(format!(
                "Janus ({source}) reported an error: {reason} ({}){hint}",
                error.code
            )),
        }
    }

    /// A request failed without a reply (unanswered, or forgotten).
    pub(super) fn fail(&mut self, kind: &Req, why: &str) {
        if *kind != Req::Detach {
            let source = self.settings.source.clone();
            self.report(format!(
                "Janus ({source}): {} failed: {why}",
                kind.describe()
            ));
        }
        self.undo(kind);
    }

    /// Puts back what a failed request had started, so it is tried again in due time.
    pub(super) fn undo(&mut self, kind: &Req) {
        let retry_at = self.now + RELIST_EVERY;
        match kind {
            Req::Create => self.session = Session::Retry(self.now + CREATE_RETRY),
            Req::AttachControl => self.control = Control::None,
            Req::List | Req::Start(_) | Req::Detach => {}
            Req::AttachFollower(key) | Req::JoinFollower(key) => {
                let Some(room) = self.rooms.get_mut(key) else {
                    return;
                };
                let handle = room.follower_handle();
                room.follower = Follower::Out { retry_at };
                if let Some(handle) = handle {
                    self.detach(handle);
                }
            }
            Req::AttachSubscriber(key) | Req::JoinSubscriber(key) => {
                let Some(room) = self.rooms.get_mut(key) else {
                    return;
                };
                let handle = room.subscriber_handle();
                room.subscriber = Subscriber::None;
                if let Some(handle) = handle {
                    self.detach(handle);
                }
            }
            Req::Update(key, refs) => {
                if let Some(room) = self.rooms.get_mut(key) {
                    room.unask(refs);
                }
            }
        }
    }
}
