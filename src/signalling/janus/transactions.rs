//! Requests waiting for Janus's answer, matched by transaction id.
//!
//! Every request carries a transaction id of its own, and Janus echoes it in the reply
//! (`success`, `event` or `error`; an `ack` may come before or after and settles nothing).
//! The table is bounded and forgets a request Janus has not answered in [`STALE_AFTER`]: the
//! caller gets the forgotten requests back to undo what they had started.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a request may wait for its answer.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// Requests waiting at once. callrec has a handful per room at most, so reaching this means
/// Janus stopped answering; the oldest is forgotten to make room.
pub const MAX_PENDING: usize = 1024;

struct Entry<K> {
    kind: K,
    sent_at: Instant,
    seq: u64,
}

/// The waiting requests, each with what the caller needs to act on its answer (`K`).
pub struct Pending<K> {
    entries: HashMap<String, Entry<K>>,
    next: u64,
    inserted: u64,
}

impl<K> Default for Pending<K> {
    fn default() -> Self {
        Pending {
            entries: HashMap::new(),
            next: 0,
            inserted: 0,
        }
    }
}

impl<K> Pending<K> {
    /// A fresh transaction id, never handed out before by this table (ids keep counting
    /// across [`clear`](Self::clear), so a late reply can never match a new request).
    pub fn next_id(&mut self) -> String {
        self.next += 1;
        format!("cr{}", self.next)
    }

    /// Remembers a request sent at `now` under `id`. If the table is full, the oldest
    /// request is forgotten and returned.
    pub fn insert(&mut self, id: String, kind: K, now: Instant) -> Option<K> {
        let evicted = if self.entries.len() >= MAX_PENDING {
            self.oldest()
                .and_then(|old| self.entries.remove(&old).map(|e| e.kind))
        } else {
            None
        };
        self.inserted += 1;
        let seq = self.inserted;
        self.entries.insert(
            id,
            Entry {
                kind,
                sent_at: now,
                seq,
            },
        );
        evicted
    }

    /// The request this reply answers, which stops waiting.
    pub fn take(&mut self, id: &str) -> Option<K> {
        self.entries.remove(id).map(|e| e.kind)
    }

    /// Forgets and returns every request older than [`STALE_AFTER`], oldest first.
    pub fn expire(&mut self, now: Instant) -> Vec<K> {
        let mut stale: Vec<(u64, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.sent_at) >= STALE_AFTER)
            .map(|(id, e)| (e.seq, id.clone()))
            .collect();
        stale.sort();
        stale
            .into_iter()
            .filter_map(|(_, id)| self.entries.remove(&id).map(|e| e.kind))
            .collect()
    }

    /// Forgets everything (a new connection: no old request will be answered).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The id of the request waiting longest.
    fn oldest(&self) -> Option<String> {
        self.entries
            .iter()
            .min_by_key(|(_, e)| e.seq)
            .map(|(id, _)| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_match_their_request_once() {
        let mut p = Pending::default();
        let now = Instant::now();
        let a = p.next_id();
        let b = p.next_id();
        assert_ne!(a, b);
        p.insert(a.clone(), "a", now);
        p.insert(b.clone(), "b", now);
        assert_eq!(p.take(&b), Some("b"));
        assert_eq!(p.take(&b), None, "a second reply matches nothing");
        assert_eq!(p.take("unknown"), None);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn stale_requests_expire_oldest_first() {
        let mut p = Pending::default();
        let t0 = Instant::now();
        for (i, kind) in ["first", "second", "late"].into_iter().enumerate() {
            let id = p.next_id();
            p.insert(id, kind, t0 + Duration::from_secs(i as u64 * 10));
        }
        assert!(p.expire(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(
            p.expire(t0 + Duration::from_secs(40)),
            vec!["first", "second"]
        );
        assert_eq!(p.len(), 1);
        p.clear();
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut p = Pending::default();
        let now = Instant::now();
        let first = p.next_id();
        assert_eq!(p.insert(first.clone(), 0, now), None);
        for i in 1..MAX_PENDING {
            let id = p.next_id();
            assert_eq!(p.insert(id, i, now), None);
        }
        let id = p.next_id();
        assert_eq!(p.insert(id, MAX_PENDING, now), Some(0), "the oldest goes");
        assert_eq!(p.len(), MAX_PENDING);
        assert_eq!(p.take(&first), None);
    }

    #[test]
    fn ids_never_repeat_across_clear() {
        let mut p: Pending<()> = Pending::default();
        let a = p.next_id();
        p.clear();
        assert_ne!(p.next_id(), a);
    }
}
