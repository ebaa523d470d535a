//! Exponential backoff for reconnect loops.
//!
//! Every service retries its broker and database connections instead of crash-looping, so that a
//! restart of Kafka or PostgreSQL heals by itself. One small type keeps the pacing identical everywhere.

use std::time::Duration;

/// Doubling delays from `initial` up to `max`; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
            attempt: 0,
        }
    }

    /// The delay to wait before the next attempt, and the number of that attempt (1-based).
    pub fn next_delay(&mut self) -> (Duration, u32) {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        self.attempt += 1;
        (delay, self.attempt)
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay()).collect();
        assert_eq!(
            delays,
            vec![
                (Duration::from_millis(100), 1),
                (Duration::from_millis(200), 2),
                (Duration::from_millis(350), 3),
                (Duration::from_millis(350), 4),
            ]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), (Duration::from_millis(100), 1));
    }
}
