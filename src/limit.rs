//! Per-key sliding-window limits in memory: how many events one key (a
//! person) may have within a window. Knows no domain; the limit and window
//! are passed on every call, so a reloaded config applies at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Beyond this many keys, keys with nothing inside their window are dropped.
const SWEEP_ABOVE: usize = 4096;

/// What one more event of a key comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Within the limit.
    Yes,
    /// The first event past the limit in this window: the moment to say so once.
    JustOver,
    /// Past the limit and already said: drop it.
    Over,
}

/// Events per key within the last window. Memory is bounded: a key keeps
/// at most `limit` instants, however fast it floods.
#[derive(Debug, Default)]
pub struct Limiter {
    keys: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Admitted events still inside the window, oldest first.
    events: VecDeque<Instant>,
    /// When the key was last answered [`Admit::JustOver`].
    told: Option<Instant>,
}

impl Seen {
    fn active(&self, now: Instant, window: Duration) -> bool {
        let recent = |t: &Instant| now.duration_since(*t) < window;
        self.events.back().is_some_and(recent) || self.told.as_ref().is_some_and(recent)
    }
}

impl Limiter {
    /// Counts one event of `key` at `now` against `limit` per `window`.
    pub fn admit(&self, key: &str, limit: u32, window: Duration, now: Instant) -> Admit {
        // A poisoned lock only means another thread panicked mid-update of
        // timestamps; the counts are still usable.
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() > SWEEP_ABOVE {
            keys.retain(|_, seen| seen.active(now, window));
        }
        let seen = keys.entry(key.to_string()).or_default();
        while seen
            .events
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            seen.events.pop_front();
        }
        if seen.events.len() < limit as usize {
            seen.events.push_back(now);
            return Admit::Yes;
        }
        // Told at most once per window, however long the flood lasts.
        if seen.told.is_some_and(|t| now.duration_since(t) < window) {
            return Admit::Over;
        }
        seen.told = Some(now);
        Admit::JustOver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_past_the_limit_is_told_the_rest_dropped_until_the_window_slides() {
        let limiter = Limiter::default();
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(limiter.admit("U1", 2, minute, at(0)), Admit::Yes);
        assert_eq!(limiter.admit("U1", 2, minute, at(1)), Admit::Yes);
        assert_eq!(limiter.admit("U1", 2, minute, at(2)), Admit::JustOver);
        assert_eq!(limiter.admit("U1", 2, minute, at(3)), Admit::Over);
        // Another person is not held back.
        assert_eq!(limiter.admit("U2", 2, minute, at(3)), Admit::Yes);
        // Once the first event leaves the window there is room for one more;
        // past the limit again within a minute of being told, still silent.
        assert_eq!(limiter.admit("U1", 2, minute, at(60)), Admit::Yes);
        assert_eq!(limiter.admit("U1", 2, minute, at(60)), Admit::Over);
        // A window after being told, the next one past the limit is told again.
        assert_eq!(limiter.admit("U1", 2, minute, at(62)), Admit::Yes);
        assert_eq!(limiter.admit("U1", 2, minute, at(62)), Admit::JustOver);
    }

    #[test]
    fn a_flood_keeps_at_most_limit_instants_and_is_told_once_per_window() {
        let limiter = Limiter::default();
        let now = Instant::now();
        let told = (0..10_000)
            .filter(|_| limiter.admit("U1", 5, Duration::from_secs(60), now) == Admit::JustOver)
            .count();
        assert_eq!(told, 1);
        let keys = limiter.keys.lock().unwrap();
        assert_eq!(keys["U1"].events.len(), 5);
    }

    #[test]
    fn idle_keys_are_swept_once_there_are_many() {
        let limiter = Limiter::default();
        let start = Instant::now();
        let window = Duration::from_secs(1);
        for i in 0..=SWEEP_ABOVE {
            limiter.admit(&format!("U{i}"), 1, window, start);
        }
        limiter.admit("late", 1, window, start + Duration::from_secs(2));
        assert_eq!(limiter.keys.lock().unwrap().len(), 1);
    }
}
