//! The consume loop: Kafka records in, window rows and progress out.
//!
//! It runs on a dedicated thread with a synchronous `BaseConsumer`, because the rebalance callback
//! must look up each newly assigned partition's progress in PostgreSQL *before* the partition is
//! assigned, so that consumption starts exactly at the stored resume offset and never at whatever
//! offset Kafka's group happens to hold. On that thread the async database calls are driven with
//! `Handle::block_on`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sqlx::PgPool;
use tickpipe_common::backoff::Backoff;
use tickpipe_common::clock::now_ms;
use tickpipe_common::kafka::client_config;
use tickpipe_common::message::{InvalidMessage, InvalidReason, TickerMessage};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::cancellable::{block_on_unless_cancelled, sleep_unless_cancelled};
use crate::dead_letters::DeadLetters;
use crate::metrics::{AggregatorMetrics, ErrorLabel, PartitionLabel, ReasonLabel};
use crate::partition::{Outcome, PartitionState, Progress};
use crate::settings::Settings;
use crate::store::{self, Commit};
use crate::throttle::Throttle;

/// Records stamped further than this into the future are invalid.
const MAX_FUTURE_SKEW_MS: i64 = 60_000;
/// How often caught-up partitions advance their watermark by the wall clock.
const IDLE_TICK: Duration = Duration::from_millis(200);
/// A busy loop reads the clock once per this many polls (well under a millisecond of records).
const CLOCK_EVERY: u32 = 256;

/// A partition assignment change seen by the rebalance callback, applied by the loop.
#[derive(Debug)]
enum Rebalanced {
    Assigned(Vec<(i32, Progress)>),
    Revoked(Vec<i32>),
}

/// Consumer context: claims partitions in PostgreSQL during rebalances and reports lag.
#[derive(Debug)]
pub struct AggregatorContext {
    runtime: Handle,
    pool: PgPool,
    topic: String,
    shutdown: CancellationToken,
    metrics: AggregatorMetrics,
    events: Mutex<Vec<Rebalanced>>,
}

impl AggregatorContext {
    /// Claims a partition, retrying while the database is unreachable. `None` if shutting down.
    fn claim(&self, partition: i32) -> Option<Progress> {
        let mut backoff = Backoff::default();
        loop {
            let claimed = block_on_unless_cancelled(
                &self.runtime,
                &self.shutdown,
                store::claim(&self.pool, &self.topic, partition),
            )?;
            match claimed {
                Ok(progress) => return Some(progress),
                Err(error) => {
                    let (delay, attempt) = backoff.next_delay();
                    tracing::warn!(%error, partition, attempt, retry_in = ?delay, "cannot claim partition; retrying");
                    if !sleep_unless_cancelled(&self.runtime, &self.shutdown, delay) {
                        return None;
                    }
                }
            }
        }
    }

    fn push(&self, event: Rebalanced) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    fn take_events(&self) -> Vec<Rebalanced> {
        self.events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }
}

impl ClientContext for AggregatorContext {
    /// librdkafka also reports each end of partition as a "global error"; that one is expected.
    fn error(&self, error: KafkaError, reason: &str) {
        let end_of_partition = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end_of_partition {
            tracing::warn!(%error, reason, "Kafka client error");
        }
    }

    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for (&partition, stats) in &topic.partitions {
                if partition >= 0 && stats.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .get_or_create(&PartitionLabel { partition })
                        .set(stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for AggregatorContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut claimed = Vec::with_capacity(partitions.len());
                for partition in partitions {
                    let Some(progress) = self.claim(partition) else {
                        return;
                    };
                    let offset = if progress.resume_offset < 0 {
                        Offset::Beginning
                    } else {
                        Offset::Offset(progress.resume_offset)
                    };
                    if let Err(error) = tpl.set_partition_offset(&self.topic, partition, offset) {
                        tracing::error!(%error, partition, "cannot set the resume offset");
                    }
                    tracing::info!(
                        partition,
                        resume_offset = progress.resume_offset,
                        epoch = progress.epoch,
                        "partition assigned"
                    );
                    claimed.push((partition, progress));
                }
                match consumer.assign(tpl) {
                    Ok(()) => self.push(Rebalanced::Assigned(claimed)),
                    Err(error) => tracing::error!(%error, "assigning partitions failed"),
                }
            }
            other => {
                if other != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::warn!(error = ?other, "rebalance error; dropping the assignment");
                }
                tracing::info!(?partitions, "partitions revoked");
                self.push(Rebalanced::Revoked(partitions));
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "unassigning partitions failed");
                }
            }
        }
    }
}

/// The loop's state: the assigned partitions and where their output goes.
struct Processor {
    runtime: Handle,
    pool: PgPool,
    topic: String,
    window_ms: i64,
    grace_ms: i64,
    partitions: HashMap<i32, PartitionState>,
    dead_letters: DeadLetters,
    metrics: AggregatorMetrics,
    shutdown: CancellationToken,
    invalid_log: Throttle,
    error_log: Throttle,
    /// Wall clock (Unix ms), refreshed by the loop every `CLOCK_EVERY` polls and when idle.
    now_ms: i64,
}

/// Consumes until `shutdown` is cancelled. Blocking: call it from `spawn_blocking`.
pub fn consume(
    settings: &Settings,
    pool: PgPool,
    metrics: AggregatorMetrics,
    runtime: Handle,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let topic = settings.kafka.kafka_topic.clone();
    let context = AggregatorContext {
        runtime: runtime.clone(),
        pool: pool.clone(),
        topic: topic.clone(),
        shutdown: shutdown.clone(),
        metrics: metrics.clone(),
        events: Mutex::new(Vec::new()),
    };
    let consumer: BaseConsumer<AggregatorContext> =
        client_config(&settings.kafka.kafka_brokers, "tickpipe-aggregator")
            .set("group.id", &settings.aggregator.aggregator_group_id)
            // Progress lives in PostgreSQL; offsets committed to Kafka are informational only.
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("partition.assignment.strategy", "range")
            // A killed instance's partitions move to the others after 10 s rather than 45 s.
            .set("session.timeout.ms", "10000")
            .set("statistics.interval.ms", "5000")
            // Bounded prefetch keeps memory small during a backfill (about 20,000 records or 4 MiB
            // per partition); once a queue is below that, fetch again at once (librdkafka's default
            // backoff is a whole second, which held a backfill to ~100k records/s).
            .set("queued.max.messages.kbytes", "4096")
            .set("queued.min.messages", "20000")
            .set("fetch.queue.backoff.ms", "5")
            .set("fetch.wait.max.ms", "100")
            .set("fetch.max.bytes", "4194304")
            .create_with_context(context)?;
    consumer.subscribe(&[&topic])?;

    let mut processor = Processor {
        runtime: runtime.clone(),
        pool,
        topic,
        window_ms: settings.aggregator.window_ms(),
        grace_ms: settings.aggregator.grace_ms(),
        partitions: HashMap::new(),
        dead_letters: DeadLetters::new(
            &settings.kafka.kafka_brokers,
            &settings.aggregator.aggregator_dlq_topic,
            runtime.clone(),
            shutdown.clone(),
            metrics.dead_letters.clone(),
        )?,
        metrics,
        shutdown: shutdown.clone(),
        invalid_log: Throttle::new(Duration::from_secs(1)),
        error_log: Throttle::new(Duration::from_secs(5)),
        now_ms: now_ms(),
    };
    let mut last_tick = Instant::now();
    let mut polls: u32 = 0;
    loop {
        let polled = consumer.poll(Duration::from_millis(100));
        for event in consumer.context().take_events() {
            processor.rebalanced(event);
        }
        let idle = polled.is_none();
        match polled {
            None => {}
            Some(Ok(message)) => processor.handle(&consumer, &message),
            Some(Err(KafkaError::PartitionEOF(partition))) => processor.caught_up(partition),
            Some(Err(error)) => processor.consumer_error(&error),
        }
        // Clock reads and the shutdown check cost more than handling a record, so a busy loop
        // does them every few hundred records rather than for each one.
        polls = polls.wrapping_add(1);
        if idle || polls % CLOCK_EVERY == 0 {
            if shutdown.is_cancelled() {
                break;
            }
            processor.now_ms = now_ms();
            if last_tick.elapsed() >= IDLE_TICK {
                last_tick = Instant::now();
                processor.tick(&consumer);
            }
        }
    }
    tracing::info!("aggregator stopping; open windows are rebuilt from Kafka on the next start");
    Ok(())
}

impl Processor {
    fn rebalanced(&mut self, event: Rebalanced) {
        match event {
            Rebalanced::Assigned(claimed) => {
                for (partition, progress) in claimed {
                    self.partitions.insert(
                        partition,
                        PartitionState::new(partition, progress, self.window_ms, self.grace_ms),
                    );
                }
            }
            Rebalanced::Revoked(partitions) => {
                // Nothing to save: open windows are rebuilt by whoever resumes from the stored offset.
                for partition in partitions {
                    self.partitions.remove(&partition);
                    self.metrics
                        .consumer_lag
                        .remove(&PartitionLabel { partition });
                }
            }
        }
    }

    fn handle(
        &mut self,
        consumer: &BaseConsumer<AggregatorContext>,
        message: &BorrowedMessage<'_>,
    ) {
        let partition = message.partition();
        let offset = message.offset();
        let Some(state) = self.partitions.get_mut(&partition) else {
            tracing::debug!(
                partition,
                offset,
                "record from a partition not assigned here; ignored"
            );
            return;
        };
        self.metrics.consumed.inc();
        let stored_future_verdict = state.stored_future_verdict(offset);
        match decode(message, self.now_ms, stored_future_verdict) {
            Ok((timestamp_ms, ticks)) => {
                match state.apply(offset, timestamp_ms, &ticks, self.now_ms) {
                    Outcome::Applied => {
                        self.metrics.applied.inc();
                    }
                    Outcome::Late => {
                        self.metrics.late.inc();
                        tracing::debug!(partition, offset, timestamp_ms, "late record not applied");
                    }
                    Outcome::Replayed => {
                        self.metrics.replayed.inc();
                    }
                }
            }
            Err(invalid) => {
                self.metrics
                    .invalid
                    .get_or_create(&ReasonLabel {
                        reason: invalid.reason.as_str(),
                    })
                    .inc();
                let future = invalid.reason == InvalidReason::FutureTimestamp;
                if state.skip_invalid(offset, future) {
                    self.dead_letters.send(message, &invalid);
                }
                if let Some(suppressed) = self.invalid_log.allow() {
                    tracing::warn!(partition, offset, reason = %invalid.reason, detail = %invalid.detail, suppressed, "invalid record sent to the dead-letter topic");
                }
            }
        }
        self.flush(consumer, partition);
    }

    fn caught_up(&mut self, partition: i32) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.mark_caught_up();
        }
    }

    /// A consumer error. Only a lost connection to the cluster makes every partition uncertain
    /// (producers were cut off too, see [`PartitionState::mark_uncertain`]); any other error
    /// concerns one partition or request and must not hold back the wall clock of the others.
    fn consumer_error(&mut self, error: &KafkaError) {
        let code = error.rdkafka_error_code();
        self.metrics
            .consumer_errors
            .get_or_create(&ErrorLabel {
                code: code.map_or_else(|| "other".to_owned(), |c| format!("{c:?}")),
            })
            .inc();
        if code.is_some_and(is_connectivity_error) {
            self.partitions
                .values_mut()
                .for_each(PartitionState::mark_uncertain);
        }
        if let Some(suppressed) = self.error_log.allow() {
            tracing::warn!(%error, suppressed, "Kafka consumer error; librdkafka keeps retrying");
        }
    }

    fn tick(&mut self, consumer: &BaseConsumer<AggregatorContext>) {
        let now = self.now_ms;
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        for partition in partitions {
            if let Some(state) = self.partitions.get_mut(&partition) {
                state.advance_idle(now);
            }
            self.flush(consumer, partition);
        }
    }

    /// Writes the partition's final windows with its progress, retrying until it is done, the
    /// partition is fenced, or the service shuts down. Consumption waits meanwhile: that is the
    /// back-pressure of a database outage.
    fn flush(&mut self, consumer: &BaseConsumer<AggregatorContext>, partition: i32) {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return;
        };
        let Some(flush) = state.take_closed() else {
            return;
        };
        if !self.dead_letters.settle() {
            return;
        }
        let mut backoff = Backoff::default();
        loop {
            let started = Instant::now();
            let Some(committed) = block_on_unless_cancelled(
                &self.runtime,
                &self.shutdown,
                store::commit(&self.pool, &self.topic, &flush),
            ) else {
                return;
            };
            match committed {
                Ok(Commit::Written) => {
                    self.metrics
                        .write_latency
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.windows_written.inc_by(flush.rows.len() as u64);
                    if !flush.rows.is_empty() {
                        tracing::debug!(
                            partition,
                            windows = flush.rows.len(),
                            resume_offset = flush.progress.resume_offset,
                            "windows written"
                        );
                    }
                    self.commit_informational_offset(
                        consumer,
                        partition,
                        flush.progress.resume_offset,
                    );
                    return;
                }
                Ok(Commit::Fenced) => {
                    self.metrics.fenced.inc();
                    tracing::warn!(
                        partition,
                        "partition now owned by another instance; dropping its state"
                    );
                    self.partitions.remove(&partition);
                    return;
                }
                Err(error) => {
                    let (delay, attempt) = backoff.next_delay();
                    tracing::warn!(%error, partition, attempt, retry_in = ?delay, "writing windows failed; consumption paused until the database is back");
                    if !sleep_unless_cancelled(&self.runtime, &self.shutdown, delay) {
                        return;
                    }
                }
            }
        }
    }

    /// Mirrors the stored resume offset into Kafka so that standard tools show the group's lag.
    fn commit_informational_offset(
        &self,
        consumer: &BaseConsumer<AggregatorContext>,
        partition: i32,
        resume_offset: i64,
    ) {
        if resume_offset < 0 {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        let committed = offsets
            .add_partition_offset(&self.topic, partition, Offset::Offset(resume_offset))
            .and_then(|()| consumer.commit(&offsets, CommitMode::Async));
        if let Err(error) = committed {
            // Not fatal: the truth about progress is in PostgreSQL; only lag tooling reads this.
            tracing::debug!(%error, partition, "informational offset commit failed");
        }
    }
}

/// Errors that mean the client lost the cluster rather than one partition's data.
fn is_connectivity_error(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::BrokerDestroy
            | RDKafkaErrorCode::DestroyBroker
    )
}

/// Validates a record: its value by the wire schema, its timestamp by the clock, unless a replay
/// already knows whether the timestamp was too far ahead (`stored_future_verdict`).
fn decode<'a>(
    message: &'a BorrowedMessage<'_>,
    now_ms: i64,
    stored_future_verdict: Option<bool>,
) -> Result<(i64, TickerMessage<'a>), InvalidMessage> {
    let timestamp_ms = match message.timestamp().to_millis() {
        Some(ms) if ms >= 0 => ms,
        _ => {
            return Err(InvalidMessage::new(
                InvalidReason::MissingTimestamp,
                "record has no timestamp",
            ))
        }
    };
    let too_far_ahead =
        stored_future_verdict.unwrap_or(timestamp_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS));
    if too_far_ahead {
        return Err(InvalidMessage::new(
            InvalidReason::FutureTimestamp,
            format!(
                "timestamp {timestamp_ms} is {} ms ahead of the clock",
                timestamp_ms - now_ms
            ),
        ));
    }
    let Some(payload) = message.payload() else {
        return Err(InvalidMessage::new(
            InvalidReason::WrongShape,
            "record has no value",
        ));
    };
    Ok((timestamp_ms, TickerMessage::decode(payload)?))
}
