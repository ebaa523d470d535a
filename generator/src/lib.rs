//! The generator: a steady stream of stock-ticker JSON into the Kafka topic `stocks`.
//!
//! [`run`] creates the topic if it is missing, then sends one [`TickerMessage`] per tick of an
//! absolute schedule ([`schedule`]), each stamped with its creation time, which is the event time
//! downstream. Deliveries are idempotent with acks=all and every delivery report is counted. It does
//! not aggregate, and it does not retry a message that the broker rejected for good: that one is
//! logged and counted as failed.
//!
//! [`TickerMessage`]: tickpipe_common::message::TickerMessage

pub mod metrics;
mod producer;
mod schedule;
pub mod settings;
pub mod stocks;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tickpipe_common::telemetry::serve_metrics;
use tickpipe_common::topics::{ensure_topic_with_retry, TopicError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::GeneratorMetrics;
use crate::producer::TickerProducer;
use crate::schedule::Schedule;
use crate::settings::{GeneratorSettings, Settings};
use crate::stocks::MessageSource;
use tickpipe_common::otel::Tracing;

/// Most schedule-lag samples kept for the run summary (one minute at 10 msgs/s needs 600).
const MAX_LAG_SAMPLES: usize = 1_000_000;

/// Why the generator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error(transparent)]
    Metrics(#[from] tickpipe_common::telemetry::MetricsServerError),
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("cannot create the Kafka producer: {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
    #[error("flushing in-flight messages failed: {0}")]
    Flush(#[source] rdkafka::error::KafkaError),
    #[error("{failed} of {sent} messages were not delivered")]
    Undelivered { sent: u64, failed: u64 },
    #[error(transparent)]
    Traces(#[from] tickpipe_common::otel::OtelError),
}

/// What a run did: counts and how closely it kept its schedule.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub sent: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// How late each send was against its schedule (empty when unthrottled).
    pub schedule_lag: Vec<Duration>,
}

/// Runs the generator until `shutdown` is cancelled or `GENERATOR_MAX_MESSAGES` are acknowledged.
pub async fn run(
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<RunSummary, GeneratorError> {
    let mut registry = Registry::default();
    let metrics = GeneratorMetrics::register(&mut registry);
    serve_metrics(
        settings.generator.metrics_addr,
        Arc::new(registry),
        shutdown.clone(),
    )
    .await?;
    run_with_metrics(settings, metrics, shutdown).await
}

/// [`run`] without the metrics endpoint; benchmarks and tests drive this one.
pub async fn run_with_metrics(
    settings: Settings,
    metrics: GeneratorMetrics,
    shutdown: CancellationToken,
) -> Result<RunSummary, GeneratorError> {
    let traces = Tracing::for_service(&settings.telemetry.otel, "generator")?;
    let Some(producer) = connect(&settings, &metrics, traces.clone(), &shutdown).await? else {
        traces.shutdown().await;
        return Ok(RunSummary::default());
    };
    let start = Instant::now();
    let summary = produce_on_schedule(&settings.generator, &producer, &metrics, &shutdown).await;
    let flush_timeout = Duration::from_secs(settings.generator.flush_timeout_secs);
    let finished = finish(producer, summary, start, flush_timeout).await;
    traces.shutdown().await;
    finished
}

/// Makes sure the topic exists and creates the producer; `None` if shut down meanwhile.
async fn connect(
    settings: &Settings,
    metrics: &GeneratorMetrics,
    traces: Tracing,
    shutdown: &CancellationToken,
) -> Result<Option<TickerProducer>, GeneratorError> {
    let generator = &settings.generator;
    let topic = &settings.kafka.topic;
    let topic_ready = ensure_topic_with_retry(
        &settings.kafka,
        topic,
        generator.partitions,
        generator.replication_factor,
        shutdown,
    )
    .await?;
    if !topic_ready {
        return Ok(None);
    }
    let producer = TickerProducer::new(
        &settings.kafka,
        topic,
        generator.compression,
        metrics.clone(),
        traces,
    )
    .map_err(GeneratorError::Producer)?;
    tracing::info!(
        %topic,
        rate = generator.rate,
        compression = %generator.compression,
        "producing"
    );
    Ok(Some(producer))
}

/// Sends one message per tick of the schedule until shut down or `max_messages` are sent.
async fn produce_on_schedule(
    generator: &GeneratorSettings,
    producer: &TickerProducer,
    metrics: &GeneratorMetrics,
    shutdown: &CancellationToken,
) -> RunSummary {
    metrics.configured_rate.set(generator.rate);
    let mut source = MessageSource::new(&generator.stocks, generator.seed);
    let start = Instant::now();
    let schedule = Schedule::new(start, generator.rate);
    let mut summary = RunSummary::default();
    let mut last_timestamp_ms = 0i64;
    let mut last_rate_update = start;
    while generator.max_messages.is_none_or(|max| summary.sent < max) {
        if let Some(due) = schedule.due(summary.sent) {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = shutdown.cancelled() => break,
            }
            let lag = Instant::now().saturating_duration_since(due);
            metrics.schedule_lag.observe(lag.as_secs_f64());
            if summary.schedule_lag.len() < MAX_LAG_SAMPLES {
                summary.schedule_lag.push(lag);
            }
        } else if shutdown.is_cancelled() {
            break;
        }
        // Non-decreasing event times even if the wall clock steps back.
        last_timestamp_ms = last_timestamp_ms.max(tickpipe_common::clock::now_ms());
        let payload = source.next_message().encode();
        if producer.send(&payload, last_timestamp_ms).await {
            metrics.sent.inc();
        }
        summary.sent += 1;
        if last_rate_update.elapsed() >= Duration::from_secs(1) {
            last_rate_update = Instant::now();
            metrics
                .achieved_rate
                .set(summary.sent as f64 / start.elapsed().as_secs_f64());
        }
    }
    summary
}

/// Waits for in-flight messages and completes the summary; an error if any was not delivered.
async fn finish(
    producer: TickerProducer,
    mut summary: RunSummary,
    start: Instant,
    flush_timeout: Duration,
) -> Result<RunSummary, GeneratorError> {
    tracing::info!(sent = summary.sent, "stopping: flushing in-flight messages");
    let tracker = producer
        .flush(flush_timeout)
        .await
        .map_err(GeneratorError::Flush)?;
    summary.elapsed = start.elapsed();
    summary.acknowledged = tracker.acknowledged();
    summary.failed = tracker.failed();
    tracing::info!(
        sent = summary.sent,
        acknowledged = summary.acknowledged,
        failed = summary.failed,
        elapsed = ?summary.elapsed,
        "generator stopped"
    );
    if summary.failed > 0 {
        return Err(GeneratorError::Undelivered {
            sent: summary.sent,
            failed: summary.failed,
        });
    }
    Ok(summary)
}
