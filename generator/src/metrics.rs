//! The generator's Prometheus metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct GeneratorMetrics {
    pub(crate) sent: Counter,
    pub(crate) acknowledged: Counter,
    pub(crate) failed: Counter,
    pub(crate) configured_rate: Gauge<f64, AtomicU64>,
    pub(crate) achieved_rate: Gauge<f64, AtomicU64>,
    pub(crate) schedule_lag: Histogram,
}

impl GeneratorMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            sent: Counter::default(),
            acknowledged: Counter::default(),
            failed: Counter::default(),
            configured_rate: Gauge::default(),
            achieved_rate: Gauge::default(),
            schedule_lag: Histogram::new(exponential_buckets(0.000_1, 4.0, 10)),
        };
        let registry = registry.sub_registry_with_prefix("generator");
        registry.register(
            "messages_sent",
            "Messages handed to the producer",
            metrics.sent.clone(),
        );
        registry.register(
            "messages_acknowledged",
            "Messages acknowledged by the broker (acks=all)",
            metrics.acknowledged.clone(),
        );
        registry.register(
            "messages_failed",
            "Messages whose delivery failed; each is also logged",
            metrics.failed.clone(),
        );
        registry.register(
            "configured_rate",
            "Configured messages per second (0 = unthrottled)",
            metrics.configured_rate.clone(),
        );
        registry.register(
            "achieved_rate",
            "Messages sent per second since start",
            metrics.achieved_rate.clone(),
        );
        registry.register(
            "schedule_lag_seconds",
            "How late each send was against its absolute schedule",
            metrics.schedule_lag.clone(),
        );
        metrics
    }
}
