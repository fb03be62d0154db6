//! Which held packet goes next, and what the holding did: a bounded set of packet ids, each
//! with the time it is due, released earliest-due first, as netem does with its random delay
//! (so a packet that drew a short delay overtakes one that drew a long one). No I/O and no
//! clock of its own: the caller passes `now`, which keeps it testable.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::Rng;

/// The delay each packet draws: uniform in `mean ± jitter`, never below zero (netem's
/// `delay MEAN JITTER` without a distribution table).
#[derive(Debug, Clone, Copy)]
pub struct Jitter {
    /// The mean delay.
    pub mean: Duration,
    /// How far a delay may be from the mean, either way.
    pub jitter: Duration,
}

impl Jitter {
    /// One packet's delay.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let low = self.mean.saturating_sub(self.jitter);
        let high = self.mean + self.jitter;
        if low >= high {
            return low;
        }
        rng.random_range(low..=high)
    }
}

/// A held packet; ordered by when it is due, then by arrival (ids grow).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    due: Instant,
    id: u32,
    arrived: Instant,
}

/// What the holding did, reported when the injector stops.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    /// Packets the kernel queued to us.
    pub received: u64,
    /// Packets released after their delay.
    pub delayed: u64,
    /// Packets accepted at once because the bound was reached.
    pub over_bound: u64,
    /// Packets released early because the injector stopped.
    pub released_at_stop: u64,
    /// Sum of the delays of the `delayed` packets, as held (arrival to release).
    pub total_delay: Duration,
    /// The longest of those delays.
    pub max_delay: Duration,
    /// Packets released after a packet that arrived later than them.
    pub reordered: u64,
    /// Most packets held at once.
    pub max_held: usize,
    /// The highest id released so far (ids grow with arrival), for `reordered`.
    highest_released: Option<u32>,
}

impl Stats {
    /// Mean delay of the `delayed` packets.
    pub fn mean_delay(&self) -> Duration {
        u32::try_from(self.delayed)
            .ok()
            .filter(|n| *n > 0)
            .map_or(Duration::ZERO, |n| self.total_delay / n)
    }

    fn released(&mut self, id: u32) {
        match self.highest_released {
            Some(high) if id < high => self.reordered += 1,
            _ => self.highest_released = Some(id),
        }
    }
}

/// The packets held now, at most `bound` of them.
#[derive(Debug)]
pub struct Hold {
    held: BinaryHeap<Reverse<Held>>,
    bound: usize,
    stats: Stats,
}

impl Hold {
    /// An empty hold that takes at most `bound` packets at once.
    pub fn new(bound: usize) -> Self {
        Hold {
            held: BinaryHeap::new(),
            bound,
            stats: Stats::default(),
        }
    }

    /// Takes packet `id`, to be released `delay` after `now`. Returns false when the bound is
    /// reached: the caller accepts the packet at once (more delay would only turn into loss
    /// once the kernel's queue fills).
    pub fn admit(&mut self, id: u32, now: Instant, delay: Duration) -> bool {
        self.stats.received += 1;
        if self.held.len() >= self.bound {
            self.stats.over_bound += 1;
            self.stats.released(id);
            return false;
        }
        self.held.push(Reverse(Held {
            due: now + delay,
            id,
            arrived: now,
        }));
        self.stats.max_held = self.stats.max_held.max(self.held.len());
        true
    }

    /// When the next packet is due, if any is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.peek().map(|Reverse(h)| h.due)
    }

    /// The next packet due at or before `now`, taken out of the hold.
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        if self.next_due()? > now {
            return None;
        }
        let Reverse(h) = self.held.pop()?;
        let delay = now.saturating_duration_since(h.arrived);
        self.stats.delayed += 1;
        self.stats.total_delay += delay;
        self.stats.max_delay = self.stats.max_delay.max(delay);
        self.stats.released(h.id);
        Some(h.id)
    }

    /// Every packet still held, earliest due first, for release when stopping.
    pub fn drain(&mut self) -> Vec<u32> {
        let mut ids = vec![];
        while let Some(Reverse(h)) = self.held.pop() {
            self.stats.released_at_stop += 1;
            self.stats.released(h.id);
            ids.push(h.id);
        }
        ids
    }

    /// What the holding did so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn releases_by_due_time_and_counts_reordering() {
        let t0 = Instant::now();
        let mut hold = Hold::new(10);
        assert!(hold.admit(1, t0, 50 * MS));
        assert!(hold.admit(2, t0 + MS, 10 * MS));
        assert!(hold.admit(3, t0 + 2 * MS, 30 * MS));
        assert_eq!(hold.next_due(), Some(t0 + 11 * MS));
        assert_eq!(hold.pop_due(t0 + 10 * MS), None);
        assert_eq!(hold.pop_due(t0 + 40 * MS), Some(2));
        assert_eq!(hold.pop_due(t0 + 40 * MS), Some(3));
        assert_eq!(hold.pop_due(t0 + 40 * MS), None);
        assert_eq!(hold.pop_due(t0 + 60 * MS), Some(1));
        let s = hold.stats();
        assert_eq!(
            (s.received, s.delayed, s.reordered, s.max_held),
            (3, 3, 1, 3)
        );
        assert_eq!(s.max_delay, 60 * MS);
        assert_eq!(s.mean_delay(), (39 + 38 + 60) * MS / 3);
    }

    #[test]
    fn the_bound_lets_packets_through_at_once() {
        let t0 = Instant::now();
        let mut hold = Hold::new(2);
        assert!(hold.admit(1, t0, 5 * MS));
        assert!(hold.admit(2, t0, 5 * MS));
        assert!(!hold.admit(3, t0, 5 * MS));
        assert_eq!(hold.drain(), vec![1, 2]);
        let s = hold.stats();
        assert_eq!((s.over_bound, s.released_at_stop, s.delayed), (1, 2, 0));
        assert_eq!(s.reordered, 2, "1 and 2 left after 3");
        assert_eq!(s.mean_delay(), Duration::ZERO);
        assert_eq!(hold.next_due(), None);
    }

    #[test]
    fn delays_stay_in_mean_plus_or_minus_jitter() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let j = Jitter {
            mean: 30 * MS,
            jitter: 30 * MS,
        };
        let draws: Vec<Duration> = (0..10_000).map(|_| j.sample(&mut rng)).collect();
        assert!(draws.iter().all(|d| *d <= 60 * MS));
        let mean = draws.iter().sum::<Duration>() / 10_000;
        assert!(mean > 29 * MS && mean < 31 * MS, "{mean:?}");
        assert!(draws.iter().any(|d| *d < 3 * MS) && draws.iter().any(|d| *d > 57 * MS));
        let clipped = Jitter {
            mean: 5 * MS,
            jitter: 20 * MS,
        };
        assert!((0..1000).all(|_| clipped.sample(&mut rng) <= 25 * MS));
        let fixed = Jitter {
            mean: 7 * MS,
            jitter: Duration::ZERO,
        };
        assert_eq!(fixed.sample(&mut rng), 7 * MS);
    }
}
