//! Counting failed attempts per key (a user, an address or an account) in fixed windows.
//!
//! An attempt is reserved before it is checked and released when it succeeds, so concurrent
//! attempts cannot pass the limit together. Counts live in this process's memory: with several
//! replicas, each one enforces the limit on its own share of the traffic.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// Limits failures per key: after `limit` failures in one window, further attempts are rejected
/// until the window ends.
#[derive(Debug)]
pub struct FailureLimiter {
    limit: u32,
    window: Duration,
    delay_step: Duration,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Failures rejected without delay before each further failure gets a longer one.
const FREE_FAILURES: u32 = 3;
/// Maximum number of delay steps added to the response to one failure.
const MAX_DELAY_STEPS: u32 = 8;
/// Above this many tracked keys, ended windows are swept on the next reservation.
const SWEEP_THRESHOLD: usize = 10_000;

impl FailureLimiter {
    /// Creates a limiter allowing `limit` failures per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        FailureLimiter {
            limit,
            window,
            delay_step: Duration::ZERO,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Delays the response to each failure after the first few by `step` per extra failure.
    pub fn with_delay_step(mut self, step: Duration) -> Self {
        self.delay_step = step;
        self
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Instant, u32)>> {
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves one attempt for each key, or returns the seconds to wait when any key has used
    /// up its window. A reserved attempt counts as a failure until [`release`](Self::release).
    pub fn reserve(&self, keys: &[String], now: Instant) -> Result<(), u64> {
        let mut windows = self.lock();
        if windows.len() >= SWEEP_THRESHOLD {
            let window = self.window;
            windows.retain(|_, (started, _)| now < *started + window);
        }
        let mut wait = None;
        for key in keys {
            if let Some((started, count)) = windows.get(key) {
                let ends = *started + self.window;
                if now < ends && *count >= self.limit {
                    wait = wait.max(Some(ends.duration_since(now).as_secs().max(1)));
                }
            }
        }
        if let Some(seconds) = wait {
            return Err(seconds);
        }
        for key in keys {
            let entry = windows.entry(key.clone()).or_insert((now, 0));
            if now >= entry.0 + self.window {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        Ok(())
    }

    /// Takes back attempts reserved for `keys` that did not fail.
    pub fn release(&self, keys: &[String]) {
        let mut windows = self.lock();
        for key in keys {
            if let Some((_, count)) = windows.get_mut(key) {
                *count = count.saturating_sub(1);
            }
        }
    }

    /// Returns how long to wait before responding to a failure of `keys`: nothing for the first
    /// failures of a window, then one more step per failure, up to eight steps.
    pub fn delay_for(&self, keys: &[String], now: Instant) -> Duration {
        let windows = self.lock();
        let failures = keys
            .iter()
            .filter_map(|key| windows.get(key))
            .filter(|(started, _)| now < *started + self.window)
            .map(|(_, count)| *count)
            .max()
            .unwrap_or(0);
        self.delay_step * failures.saturating_sub(FREE_FAILURES).min(MAX_DELAY_STEPS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn blocks_after_limit_until_window_ends() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.reserve(&keys(&["user"]), start), Ok(()));
        }
        assert_eq!(limiter.reserve(&keys(&["user"]), start), Err(60));
        assert_eq!(limiter.reserve(&keys(&["other"]), start), Ok(()));
        assert_eq!(
            limiter.reserve(&keys(&["user"]), start + Duration::from_secs(61)),
            Ok(())
        );
    }

    #[test]
    fn released_attempts_do_not_count() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.reserve(&keys(&["user", "address"]), start), Ok(()));
            limiter.release(&keys(&["user", "address"]));
        }
        assert_eq!(limiter.reserve(&keys(&["user"]), start), Ok(()));
    }

    #[test]
    fn any_blocked_key_blocks_and_reserves_nothing() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(limiter.reserve(&keys(&["address"]), start), Ok(()));
        assert!(limiter.reserve(&keys(&["user", "address"]), start).is_err());
        assert_eq!(
            limiter.reserve(&keys(&["user"]), start),
            Ok(()),
            "the blocked call reserved nothing"
        );
    }

    #[test]
    fn delay_grows_after_free_failures() {
        let limiter = FailureLimiter::new(10, Duration::from_secs(60))
            .with_delay_step(Duration::from_millis(100));
        let start = Instant::now();
        let account = keys(&["account"]);
        for _ in 0..3 {
            limiter.reserve(&account, start).unwrap();
        }
        assert_eq!(limiter.delay_for(&account, start), Duration::ZERO);
        limiter.reserve(&account, start).unwrap();
        limiter.reserve(&account, start).unwrap();
        assert_eq!(
            limiter.delay_for(&account, start),
            Duration::from_millis(200)
        );
    }
}
