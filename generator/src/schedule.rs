//! Absolute pacing: message `n` is due at `start + n / rate`.
//!
//! Computing each due time from the start (rather than sleeping `1 / rate` after each send) means a
//! late tick does not shift the ones after it, so there is no drift over hours.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    /// `rate` in messages per second; 0 means unthrottled (every message is due at once).
    pub(crate) fn new(start: Instant, rate: f64) -> Self {
        Self { start, rate }
    }

    /// When message `n` (0-based) is due, or `None` when unthrottled.
    pub(crate) fn due(&self, n: u64) -> Option<Instant> {
        (self.rate > 0.0).then(|| self.start + Duration::from_secs_f64(n as f64 / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_absolute() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 10.0);
        assert_eq!(schedule.due(0), Some(start));
        assert_eq!(schedule.due(10), Some(start + Duration::from_secs(1)));
        // After an hour the schedule has not drifted by a single millisecond.
        assert_eq!(
            schedule.due(36_000),
            Some(start + Duration::from_secs(3600))
        );
    }

    #[test]
    fn rate_zero_is_unthrottled() {
        assert_eq!(Schedule::new(Instant::now(), 0.0).due(5), None);
    }
}
