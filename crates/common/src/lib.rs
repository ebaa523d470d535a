//! Code shared by the three tickpipe services, written once.
//!
//! What lives here: the wire schema of the `stocks` topic and its validation ([`message`]), layered
//! configuration loading ([`config`]), logging and Prometheus metrics ([`telemetry`]), the database pool
//! and migrations ([`db`]), Kafka client settings and topic creation ([`kafka`]), graceful shutdown
//! ([`shutdown`]), retry pacing ([`backoff`]) and the container health probe ([`healthcheck`]).
//!
//! What does not: anything specific to one service. Windowing belongs to the aggregator, pacing to the
//! generator, HTTP routes to the API.

pub mod backoff;
pub mod config;
pub mod db;
pub mod healthcheck;
pub mod kafka;
pub mod message;
pub mod shutdown;
pub mod telemetry;

/// Wall-clock time in Unix milliseconds, the unit of Kafka record timestamps.
pub mod clock {
    pub fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or_default()
    }
}

/// How a binary ends: exit 0, or one line `Error: ...` on stderr and exit 1.
///
/// Returning an error from `main` would print a backtrace when `RUST_BACKTRACE` is set; a service
/// that refuses its configuration should say why in one line instead.
pub fn exit_with<E: std::fmt::Display>(result: Result<(), E>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
