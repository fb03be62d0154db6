//! Who is the active speaker, from audio levels, with hysteresis so a cough does not move
//! the view. Pure logic on a clock the caller gives, shared by the live mix (call running
//! time) and `callrec remix` (the recorded call's timeline).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// Below this level (dBFS) nobody is speaking.
pub const SPEAKING_DB: f64 = -50.0;
/// How much louder (dB) a challenger must be than the current speaker.
pub const SWITCH_MARGIN_DB: f64 = 6.0;
/// How long a challenger must stay louder before the view switches.
pub const SWITCH_AFTER: Duration = Duration::from_millis(1200);
/// Level of someone not heard yet.
const SILENT_DB: f64 = -100.0;

/// The speaker choice over a set of participants keyed by `K`.
#[derive(Debug, Clone)]
pub struct SpeakerPicker<K> {
    levels: HashMap<K, f64>,
    speaker: Option<K>,
    challenger: Option<(K, Duration)>,
}

impl<K> Default for SpeakerPicker<K> {
    fn default() -> Self {
        Self {
            levels: HashMap::new(),
            speaker: None,
            challenger: None,
        }
    }
}

impl<K: Eq + Hash + Clone> SpeakerPicker<K> {
    /// Feeds a level (dBFS, loudest channel) of `who` at `now`. Returns true when the speaker
    /// changed.
    pub fn level(&mut self, who: &K, db: f64, now: Duration) -> bool {
        let smoothed = self.levels.entry(who.clone()).or_insert(SILENT_DB);
        // Smooth over ~0.3 s (at 10 levels a second) so single syllables weigh little.
        *smoothed = 0.7 * *smoothed + 0.3 * db.max(SILENT_DB);
        let Some((loudest, loudest_db)) = self
            .levels
            .iter()
            .filter(|(_, db)| **db > SPEAKING_DB)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, db)| (k.clone(), *db))
        else {
            return false;
        };
        let current_db = self
            .speaker
            .as_ref()
            .and_then(|s| self.levels.get(s))
            .copied()
            .unwrap_or(f64::NEG_INFINITY);
        if self.speaker.as_ref() == Some(&loudest) || loudest_db < current_db + SWITCH_MARGIN_DB {
            self.challenger = None;
            return false;
        }
        match &self.challenger {
            Some((k, since)) if *k == loudest => {
                if now.saturating_sub(*since) >= SWITCH_AFTER || self.speaker.is_none() {
                    self.speaker = Some(loudest);
                    self.challenger = None;
                    return true;
                }
                false
            }
            _ => {
                self.challenger = Some((loudest, now));
                false
            }
        }
    }

    /// `who` left; if they were the speaker, nobody is until someone speaks up.
    pub fn forget(&mut self, who: &K) {
        self.levels.remove(who);
        if self.speaker.as_ref() == Some(who) {
            self.speaker = None;
        }
        if self.challenger.as_ref().is_some_and(|(k, _)| k == who) {
            self.challenger = None;
        }
    }

    /// The current speaker.
    pub fn speaker(&self) -> Option<&K> {
        self.speaker.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_voice_wins_then_a_cough_does_not_switch() {
        let mut p = SpeakerPicker::default();
        let mut changed = vec![];
        for i in 0..100u64 {
            let t = ms(i * 100);
            // a talks all along; b coughs loudly for 0.5 s at 3 s.
            if p.level(&"a", -20.0, t) {
                changed.push((t, *p.speaker().unwrap()));
            }
            let b = if (30..35).contains(&i) { -5.0 } else { -90.0 };
            if p.level(&"b", b, t) {
                changed.push((t, *p.speaker().unwrap()));
            }
        }
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(changed[0].1, "a");
    }

    #[test]
    fn a_clearly_louder_voice_takes_over_after_a_while() {
        let mut p = SpeakerPicker::default();
        let mut switched_at = None;
        for i in 0..60u64 {
            let t = ms(i * 100);
            p.level(&"a", if i < 20 { -20.0 } else { -60.0 }, t);
            p.level(&"b", if i < 20 { -90.0 } else { -15.0 }, t);
            if switched_at.is_none() && p.speaker() == Some(&"b") {
                switched_at = Some(t);
            }
        }
        let at = switched_at.expect("b becomes the speaker");
        assert!(at >= ms(2000 + 1200) && at <= ms(2000 + 2000), "{at:?}");
        p.forget(&"b");
        assert_eq!(p.speaker(), None);
    }
}
