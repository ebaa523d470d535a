//! The Kafka producer: idempotent, acks=all, every delivery report checked.
//!
//! A `ThreadedProducer` with a delivery callback is used instead of one future per message: at
//! rate 0 the generator sends hundreds of thousands of messages a second, and a counter bumped in the
//! callback costs far less than a future polled per message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext, Message};
use tickpipe_common::config::KafkaSettings;
use tickpipe_common::kafka::{client_config, send_when_queue_has_room};
use tickpipe_common::otel::opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
use tickpipe_common::otel::opentelemetry::KeyValue;
use tickpipe_common::otel::{with_traceparent, Tracing};

use crate::metrics::GeneratorMetrics;
use crate::settings::Compression;

/// Counts delivery reports; shared between the callback thread and the sending loop.
#[derive(Debug)]
pub(crate) struct DeliveryTracker {
    metrics: GeneratorMetrics,
    acknowledged: AtomicU64,
    failed: AtomicU64,
}

impl DeliveryTracker {
    pub(crate) fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    pub(crate) fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Producer context whose delivery callback feeds the tracker.
#[derive(Debug, Clone)]
pub(crate) struct TrackingContext(Arc<DeliveryTracker>);

impl ClientContext for TrackingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        DefaultProducerContext.log(level, fac, log_message);
    }
}

impl ProducerContext for TrackingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.acknowledged.fetch_add(1, Ordering::Relaxed);
                self.0.metrics.acknowledged.inc();
            }
            Err((error, message)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                self.0.metrics.failed.inc();
                tracing::error!(%error, partition = message.partition(), "message delivery failed");
            }
        }
    }
}

/// The generator's producer configuration: idempotent, acks=all, short linger, and the configured
/// batch compression (`GENERATOR_COMPRESSION`).
fn producer_config(kafka: &KafkaSettings, compression: Compression) -> ClientConfig {
    let mut config = client_config(kafka, "tickpipe-generator");
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Small batches: invisible at 10 msgs/s, decisive for throughput at rate 0.
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("compression.type", compression.as_str());
    config
}

/// The generator's producer and the tracker of its deliveries.
pub(crate) struct TickerProducer {
    producer: ThreadedProducer<TrackingContext>,
    tracker: Arc<DeliveryTracker>,
    topic: String,
    /// With export on, each record gets a `generator.send` span whose context travels in its
    /// `traceparent` header; off, records carry no header at all.
    traces: Tracing,
}

impl std::fmt::Debug for TickerProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickerProducer")
            .field("topic", &self.topic)
            .finish()
    }
}

impl TickerProducer {
    pub(crate) fn new(
        kafka: &KafkaSettings,
        topic: &str,
        compression: Compression,
        metrics: GeneratorMetrics,
        traces: Tracing,
    ) -> Result<Self, KafkaError> {
        let tracker = Arc::new(DeliveryTracker {
            metrics,
            acknowledged: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let producer = producer_config(kafka, compression)
            .create_with_context(TrackingContext(tracker.clone()))?;
        Ok(Self {
            producer,
            tracker,
            topic: topic.to_owned(),
            traces,
        })
    }

    /// Enqueues one message with the given record timestamp, waiting while the local queue is full.
    /// Returns false when librdkafka refused the message for good (it is counted as failed).
    // rdkafka's `send` hands a refused record back in its error: large, and not ours to shrink.
    #[allow(clippy::result_large_err)]
    pub(crate) async fn send(&self, payload: &[u8], timestamp_ms: i64) -> bool {
        let mut record = BaseRecord::<(), [u8]>::to(&self.topic)
            .payload(payload)
            .timestamp(timestamp_ms);
        let span = self.traces.tracer().map(|tracer| {
            tracer
                .span_builder("generator.send")
                .with_kind(SpanKind::Producer)
                .with_attributes([
                    KeyValue::new("messaging.system", "kafka"),
                    KeyValue::new("messaging.destination.name", self.topic.clone()),
                ])
                .start(tracer)
        });
        if let Some(span) = &span {
            record = record.headers(with_traceparent(OwnedHeaders::new(), span.span_context()));
        }
        let sent = send_when_queue_has_room(record, |r| self.producer.send(r)).await;
        if let Some(mut span) = span {
            span.end();
        }
        match sent {
            Ok(()) => true,
            Err(error) => {
                self.tracker.failed.fetch_add(1, Ordering::Relaxed);
                self.tracker.metrics.failed.inc();
                tracing::error!(%error, "message refused by the producer");
                false
            }
        }
    }

    /// Waits until every enqueued message has a delivery report, or `timeout` passes.
    pub(crate) async fn flush(self, timeout: Duration) -> Result<Arc<DeliveryTracker>, KafkaError> {
        let tracker = self.tracker.clone();
        let producer = self.producer;
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|_| KafkaError::Canceled)??;
        Ok(tracker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_codec_reaches_librdkafka() {
        for codec in Compression::ALL {
            let config = producer_config(&KafkaSettings::plaintext("localhost:9092"), codec);
            assert_eq!(config.get("compression.type"), Some(codec.as_str()));
        }
    }

    /// librdkafka rejects a codec it was built without when the client is created, so every codec
    /// the setting accepts must be compiled in (zstd needs rdkafka's `zstd` feature). Creating a
    /// producer does not contact the broker.
    #[test]
    fn librdkafka_supports_every_codec() {
        for codec in Compression::ALL {
            let created = producer_config(&KafkaSettings::plaintext("localhost:9092"), codec)
                .create::<rdkafka::producer::BaseProducer>();
            assert!(created.is_ok(), "{codec}: {:?}", created.err());
        }
    }
}
