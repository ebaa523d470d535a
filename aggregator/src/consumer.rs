//! The consume loop: Kafka records in, window rows and progress out.
//!
//! It runs on a dedicated thread with a synchronous `BaseConsumer`, because the rebalance callback
//! ([`ownership`](crate::ownership)) must look up each newly assigned partition's progress in
//! PostgreSQL *before* the partition is assigned. On that thread the async database calls are
//! driven with `Handle::block_on`. What happens to each record is the
//! [`Processor`](crate::processor::Processor)'s job; this file only configures the client and polls.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use sqlx::PgPool;
use tickpipe_common::clock::now_ms;
use tickpipe_common::kafka::client_config;
use tickpipe_common::otel::Tracing;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::metrics::AggregatorMetrics;
use crate::ownership::{AggregatorConsumer, AggregatorContext, ASSIGNMENT_STRATEGY};
use crate::processor::Processor;
use crate::settings::Settings;

/// How long one poll waits for a record; also the longest a shutdown waits for the loop.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often caught-up partitions advance their watermark by the wall clock.
const IDLE_TICK: Duration = Duration::from_millis(200);
/// A busy loop reads the clock once per this many polls (well under a millisecond of records).
const CLOCK_EVERY: u32 = 256;

/// Consumes until `shutdown` is cancelled. Blocking: call it from `spawn_blocking`.
///
/// The consumer subscribes at once, so that it joins the group while the caller migrates the
/// schema and checks the topics (a few hundred milliseconds of a short backfill otherwise spent
/// before the join), but polls nothing until `ready` fires. Nothing is lost by that: the
/// assignment, and with it each partition's claim in PostgreSQL, is served by `poll`, so no claim
/// runs before the schema exists. If `ready` is dropped instead (start-up failed or stopped), the
/// claims are called off before the consumer closes, so that closing never waits on a schema that
/// will not come.
pub(crate) fn consume(
    settings: &Settings,
    pool: PgPool,
    metrics: AggregatorMetrics,
    traces: Tracing,
    runtime: Handle,
    ready: oneshot::Receiver<()>,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let claims = shutdown.child_token();
    let context = AggregatorContext::new(
        runtime.clone(),
        pool.clone(),
        settings.kafka.topic.clone(),
        claims.clone(),
        metrics.clone(),
    );
    let consumer = create_consumer(settings, context)?;
    consumer.subscribe(&[&settings.kafka.topic])?;
    if runtime.block_on(ready).is_err() {
        claims.cancel();
        return Ok(());
    }
    let mut processor = Processor::new(settings, pool, metrics, traces, runtime, shutdown.clone())?;
    // Before the first poll, so before the first claim: a partition this instance claims is then
    // known to the database.
    processor.check_partitions(&consumer);
    poll_until_shutdown(&consumer, &mut processor, &shutdown);
    tracing::info!("aggregator stopping; open windows are rebuilt from Kafka on the next start");
    Ok(())
}

fn create_consumer(
    settings: &Settings,
    context: AggregatorContext,
) -> Result<AggregatorConsumer, KafkaError> {
    client_config(&settings.kafka, "tickpipe-aggregator")
        .set("group.id", &settings.aggregator.group_id)
        // Progress lives in PostgreSQL; offsets committed to Kafka are informational only.
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Records of aborted transactions are never counted (librdkafka's default, stated).
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        // The rebalance callback depends on this: see ASSIGNMENT_STRATEGY.
        .set("partition.assignment.strategy", ASSIGNMENT_STRATEGY)
        // A killed instance's partitions move to the others after 10 s rather than 45 s.
        .set("session.timeout.ms", "10000")
        .set("statistics.interval.ms", "5000")
        // How soon partitions added to the topic are noticed and rebalanced onto the group
        // (librdkafka's default is 5 minutes); the partition watch uses the same interval.
        .set(
            "topic.metadata.refresh.interval.ms",
            settings.aggregator.metadata_refresh_ms.to_string(),
        )
        // Bounded prefetch keeps memory small during a backfill (about 20,000 records or 4 MiB
        // per partition); once a queue is below that, fetch again at once (librdkafka's default
        // backoff is a whole second, which held a backfill to ~100k records/s).
        .set("queued.max.messages.kbytes", "4096")
        .set("queued.min.messages", "20000")
        .set("fetch.queue.backoff.ms", "5")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.max.bytes", "4194304")
        .create_with_context(context)
}

fn poll_until_shutdown(
    consumer: &AggregatorConsumer,
    processor: &mut Processor,
    shutdown: &CancellationToken,
) {
    let mut last_tick = Instant::now();
    let mut polls: u32 = 0;
    loop {
        let polled = consumer.poll(POLL_TIMEOUT);
        for event in consumer.context().take_events() {
            processor.rebalanced(event);
        }
        let idle = polled.is_none();
        match polled {
            None => {}
            Some(Ok(message)) => processor.handle(consumer, &message),
            Some(Err(KafkaError::PartitionEOF(partition))) => processor.caught_up(partition),
            Some(Err(error)) => processor.consumer_error(&error),
        }
        // Clock reads and the shutdown check cost more than handling a record, so a busy loop
        // does them every few hundred records rather than for each one.
        polls = polls.wrapping_add(1);
        if idle || polls % CLOCK_EVERY == 0 {
            if shutdown.is_cancelled() {
                return;
            }
            processor.now_ms = now_ms();
            if last_tick.elapsed() >= IDLE_TICK {
                last_tick = Instant::now();
                processor.tick(consumer);
            }
        }
    }
}
