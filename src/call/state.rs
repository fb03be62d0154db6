//! A call's state: it only moves forward, so a second stop or a late event cannot take a
//! finished call back to recording.

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallState {
    /// Participants are joining; nothing is being written for them yet (a live mix may be).
    Negotiating,
    /// At least one participant's files are being written.
    Recording,
    /// Ending: sessions are being finalised and no new one is taken.
    Draining,
    /// Ended and finalised.
    Finished,
    /// Ended because the call's pipeline failed.
    Failed,
}

impl CallState {
    /// Moves to `to` if that is forward; returns whether it moved. `Finished` and `Failed`
    /// are both final.
    pub fn advance(&mut self, to: CallState) -> bool {
        let terminal = matches!(self, CallState::Finished | CallState::Failed);
        if terminal || to <= *self {
            return false;
        }
        *self = to;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::CallState::{self, *};

    #[test]
    fn only_moves_forward() {
        let mut s = Negotiating;
        assert!(s.advance(Recording));
        assert!(!s.advance(Recording), "no change");
        assert!(!s.advance(Negotiating), "never back");
        assert!(s.advance(Draining));
        assert!(!s.advance(Recording));
        assert!(s.advance(Finished));
        assert!(!s.advance(Failed), "final");
        assert_eq!(s, Finished);
        let mut f = Draining;
        assert!(f.advance(Failed));
        assert!(!f.advance(Finished));
        let mut skip: CallState = Negotiating;
        assert!(
            skip.advance(Draining),
            "a call nobody joined goes straight to draining"
        );
    }
}
