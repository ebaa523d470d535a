//! Exponential backoff, and the one way tickpipe retries an operation.
//!
//! Every service retries its broker and database connections instead of crash-looping, so that a
//! restart of Kafka or PostgreSQL heals by itself. [`Backoff`] keeps the pacing identical everywhere,
//! and [`retry`] is the loop around it: each caller states what it retries on, each failed attempt
//! is logged once, and a shutdown ends the wait at once.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

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

/// Why [`retry`] ended without a result.
#[derive(Debug, PartialEq, Eq)]
pub enum RetryError<E> {
    /// The service is shutting down.
    Cancelled,
    /// An error the caller does not retry on.
    Permanent(E),
}

/// Runs `operation` until it succeeds, or fails with an error `retry_on` rejects, or `shutdown` is
/// cancelled (also in the middle of an attempt). Failed attempts are logged at warn with `what`.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    mut backoff: Backoff,
    shutdown: &CancellationToken,
    retry_on: impl Fn(&E) -> bool,
    mut operation: F,
) -> Result<T, RetryError<E>>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        let error = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Err(RetryError::Cancelled),
            result = operation() => match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            },
        };
        if !retry_on(&error) {
            return Err(RetryError::Permanent(error));
        }
        let (delay, attempt) = backoff.next_delay();
        tracing::warn!(%error, attempt, retry_in = ?delay, "{what} failed; retrying");
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Err(RetryError::Cancelled),
            () = tokio::time::sleep(delay) => {}
        }
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

    fn quick() -> Backoff {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(2))
    }

    #[tokio::test]
    async fn retries_what_it_is_told_to_until_success() {
        let mut attempts = 0;
        let result = retry(
            "test",
            quick(),
            &CancellationToken::new(),
            |_: &String| true,
            || {
                attempts += 1;
                let outcome = if attempts < 3 {
                    Err(format!("attempt {attempts}"))
                } else {
                    Ok(attempts)
                };
                async move { outcome }
            },
        )
        .await;
        assert_eq!(result, Ok(3));
    }

    #[tokio::test]
    async fn stops_at_an_error_it_does_not_retry_on() {
        let result: Result<(), _> = retry(
            "test",
            quick(),
            &CancellationToken::new(),
            |e: &String| e != "fatal",
            || async { Err("fatal".to_owned()) },
        )
        .await;
        assert_eq!(result, Err(RetryError::Permanent("fatal".to_owned())));
    }

    #[tokio::test]
    async fn a_shutdown_ends_even_an_attempt_in_progress() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let result: Result<(), RetryError<String>> = retry(
            "test",
            quick(),
            &shutdown,
            |_| true,
            std::future::pending::<Result<(), String>>,
        )
        .await;
        assert_eq!(result, Err(RetryError::Cancelled));
    }
}
