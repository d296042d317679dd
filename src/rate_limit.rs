//! Counting failed attempts per key (a user, an address or an account) in fixed windows.
//!
//! Counts live in this process's memory, so with several replicas each one
//! enforces the limit on its own share of the traffic.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Limits failures per key: after `limit` failures in one window, further attempts are rejected
/// until the window ends.
#[derive(Debug)]
pub struct FailureLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Above this many tracked keys, ended windows are swept on the next failure.
const SWEEP_THRESHOLD: usize = 10_000;

impl FailureLimiter {
    /// Creates a limiter allowing `limit` failures per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        FailureLimiter {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the seconds to wait when `key` has used up its failures, or `None` when it may try.
    pub fn blocked_for(&self, key: &str, now: Instant) -> Option<u64> {
        let windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (started, failures) = windows.get(key)?;
        let ends = *started + self.window;
        (*failures >= self.limit && now < ends).then(|| ends.duration_since(now).as_secs().max(1))
    }

    /// Records one failure of `key`.
    pub fn record_failure(&self, key: &str, now: Instant) {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= SWEEP_THRESHOLD {
            let window = self.window;
            windows.retain(|_, (started, _)| now < *started + window);
        }
        let entry = windows.entry(key.to_owned()).or_insert((now, 0));
        if now >= entry.0 + self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_until_window_ends() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.blocked_for("user", start), None);
            limiter.record_failure("user", start);
        }
        assert_eq!(limiter.blocked_for("user", start), Some(60));
        assert_eq!(limiter.blocked_for("other", start), None);
        assert_eq!(
            limiter.blocked_for("user", start + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn failure_after_window_starts_new_count() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(10));
        let start = Instant::now();
        limiter.record_failure("address", start);
        limiter.record_failure("address", start + Duration::from_secs(11));
        assert_eq!(
            limiter.blocked_for("address", start + Duration::from_secs(12)),
            None
        );
    }
}
