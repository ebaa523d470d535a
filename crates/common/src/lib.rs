//! Code shared by the three tickpipe services, written once.
//!
//! What lives here: the wire schema of the `stocks` topic and its validation ([`message`]), layered
//! configuration loading ([`config`]), logging and Prometheus metrics ([`telemetry`]), OpenTelemetry traces ([`otel`]), the database pools
//! ([`db`]), Kafka client settings ([`kafka_settings`], checked by [`kafka_check`]) and the clients' common
//! configuration ([`kafka`]), topic creation or lookup ([`topics`]), secrets and `<VAR>_FILE` ([`secret`]), graceful shutdown
//! ([`shutdown`]), retry pacing ([`backoff`]) and the container health probe ([`healthcheck`]).
//!
//! What does not: anything specific to one service. Windowing belongs to the aggregator, pacing to the
//! generator, HTTP routes to the API, the database
//! schema and its write path to `tickpipe-store`.

pub mod backoff;
pub mod config;
pub mod db;
mod db_tls;
pub mod healthcheck;
pub mod kafka;
pub mod kafka_check;
pub mod kafka_diagnosis;
pub mod kafka_settings;
pub mod otel;
pub mod pool_metrics;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod topics;

/// The wire schema and its validation, kept in the `tickpipe-message` crate so that fuzzing it does
/// not compile rdkafka and sqlx; re-exported so that `tickpipe_common::message::...` keeps working.
pub use tickpipe_message as message;

/// Wall-clock time in Unix milliseconds, the unit of Kafka record timestamps.
pub mod clock {
    pub fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or_default()
    }
}
