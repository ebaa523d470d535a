//! The aggregator's Prometheus metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::dead_letters::DeadLetterMetrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// A consumer error's librdkafka code name, e.g. `BrokerTransportFailure`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabel {
    pub(crate) code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PartitionLabel {
    pub(crate) partition: i32,
}

#[derive(Debug, Clone)]
pub struct AggregatorMetrics {
    pub consumed: Counter,
    pub(crate) applied: Counter,
    pub invalid: Family<ReasonLabel, Counter>,
    pub late: Counter,
    pub(crate) replayed: Counter,
    pub windows_written: Counter,
    pub(crate) fenced: Counter,
    pub(crate) write_latency: Histogram,
    pub(crate) consumer_lag: Family<PartitionLabel, Gauge>,
    /// The watermark each owned partition last committed with its windows, in Unix seconds.
    pub(crate) watermark: Family<PartitionLabel, Gauge<f64, AtomicU64>>,
    pub dead_letters: DeadLetterMetrics,
    pub(crate) consumer_errors: Family<ErrorLabel, Counter>,
    /// `AGGREGATOR_WINDOW_SECS`, so that alert rules can express "two windows" without a copy
    /// of the setting.
    pub(crate) window_seconds: Gauge,
    /// `AGGREGATOR_GRACE_MS` in seconds, for the same reason (the staleness alert's threshold).
    pub(crate) grace_seconds: Gauge<f64, AtomicU64>,
}

impl AggregatorMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            consumed: Counter::default(),
            applied: Counter::default(),
            invalid: Family::default(),
            late: Counter::default(),
            replayed: Counter::default(),
            windows_written: Counter::default(),
            fenced: Counter::default(),
            write_latency: Histogram::new(exponential_buckets(0.000_5, 2.0, 14)),
            consumer_lag: Family::default(),
            watermark: Family::default(),
            dead_letters: DeadLetterMetrics::default(),
            consumer_errors: Family::default(),
            window_seconds: Gauge::default(),
            grace_seconds: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("aggregator");
        metrics.register_records(r);
        metrics.register_writes(r);
        metrics.register_settings(r);
        metrics
    }

    /// Records the settings that alert thresholds are derived from (see `register_settings`).
    pub(crate) fn record_settings(&self, window_secs: u32, grace_ms: u32) {
        self.window_seconds.set(i64::from(window_secs));
        self.grace_seconds.set(f64::from(grace_ms) / 1000.0);
    }

    /// The window width and grace as gauges: the staleness alert
    /// (`deploy/prometheus/rules/tickpipe.yml`) waits two windows plus the grace, and reads both
    /// here rather than from a copy in the rules that could drift from the running setting.
    fn register_settings(&self, r: &mut Registry) {
        r.register(
            "window_seconds",
            "Width of the tumbling windows (AGGREGATOR_WINDOW_SECS)",
            self.window_seconds.clone(),
        );
        r.register(
            "grace_seconds",
            "Lateness allowed behind the newest timestamp (AGGREGATOR_GRACE_MS), in seconds",
            self.grace_seconds.clone(),
        );
    }

    /// What became of the records read.
    fn register_records(&self, r: &mut Registry) {
        let metrics = self;
        r.register(
            "records_consumed",
            "Records read from Kafka",
            metrics.consumed.clone(),
        );
        r.register(
            "records_applied",
            "Valid records added to an open window",
            metrics.applied.clone(),
        );
        r.register(
            "records_invalid",
            "Invalid records sent to the dead-letter topic, by reason",
            metrics.invalid.clone(),
        );
        r.register(
            "records_late",
            "Valid records whose window was already written",
            metrics.late.clone(),
        );
        r.register(
            "records_replayed",
            "Records read again after a restart or rebalance, already accounted for",
            metrics.replayed.clone(),
        );
    }

    /// What was written, to PostgreSQL and to the dead-letter topic, and the consumer's health.
    fn register_writes(&self, r: &mut Registry) {
        let metrics = self;
        r.register(
            "windows_written",
            "(ticker, window) contributions written to PostgreSQL",
            metrics.windows_written.clone(),
        );
        r.register(
            "dead_letters_failed",
            "Invalid records given up after bounded retries to the dead-letter topic",
            metrics.dead_letters.failed.clone(),
        );
        r.register(
            "dead_letters_truncated",
            "Invalid records forwarded to the dead-letter topic with their key or value cut to fit",
            metrics.dead_letters.truncated.clone(),
        );
        r.register(
            "consumer_errors",
            "Errors reported by the Kafka consumer, by error code",
            metrics.consumer_errors.clone(),
        );
        r.register(
            "writes_fenced",
            "Writes refused because another instance owns the partition",
            metrics.fenced.clone(),
        );
        r.register(
            "write_latency_seconds",
            "Duration of one window-and-progress transaction",
            metrics.write_latency.clone(),
        );
        r.register(
            "consumer_lag",
            "Records behind the end of each assigned partition",
            metrics.consumer_lag.clone(),
        );
        r.register(
            "watermark_timestamp_seconds",
            "Watermark committed with the last windows written, per partition owned here (Unix time)",
            metrics.watermark.clone(),
        );
    }
}
