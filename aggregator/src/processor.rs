//! What happens to one record, and to the windows it closes.
//!
//! [`Processor`] owns the assigned partitions' in-memory state. For each record it validates
//! ([`record::decode`]), adds valid prices to the partition's open window ([`PartitionState`]) or
//! sends an invalid record to the [`DeadLetters`], then writes the windows that became final,
//! together with the partition's progress, in one transaction ([`tickpipe_store::commit`]), at most
//! four times a second per partition ([`crate::group_commit`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::PgPool;
use tickpipe_common::backoff::{retry, Backoff};
use tickpipe_common::message::{InvalidMessage, InvalidReason};
use tickpipe_store::changes;
use tickpipe_store::{Commit, Flush};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::cancellable::block_on_unless_cancelled;
use crate::dead_letters::DeadLetters;
use crate::group_commit::WriteSchedule;
use crate::metrics::{AggregatorMetrics, ErrorLabel, PartitionLabel, ReasonLabel};
use crate::ownership::{AggregatorConsumer, Rebalanced};
use crate::partition::{Outcome, PartitionState, Timing};
use crate::record;
use crate::settings::Settings;
use crate::throttle::Throttle;
use crate::topic_watch::TopicWatch;
use crate::traces::CommitTraces;
use tickpipe_common::otel::Tracing;

/// How often an instance prunes the change log of entries past their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The consume loop's state: the assigned partitions and where their output goes.
#[derive(Debug)]
pub(crate) struct Processor {
    /// The loop runs on a blocking thread; database calls are driven through the runtime.
    runtime: Handle,
    pool: PgPool,
    topic: String,
    timing: Timing,
    /// Keyed by partition number: a handful of entries, looked up once per record.
    partitions: HashMap<i32, PartitionState>,
    /// Holds a partition's closed windows while it wrote less than a quarter second ago.
    writes: WriteSchedule,
    dead_letters: DeadLetters,
    metrics: AggregatorMetrics,
    /// Each commit's span and its links to the records folded (nothing with export off).
    commit_traces: CommitTraces,
    shutdown: CancellationToken,
    /// Invalid records and consumer errors can arrive by the thousand: one log line per interval.
    invalid_log: Throttle,
    error_log: Throttle,
    /// The change log is pruned about this often (every instance does it; deleting twice is harmless).
    prune_every: Throttle,
    /// Records the topic's partition count every few seconds, for partitions added while running.
    topic_watch: TopicWatch,
    /// Wall clock (Unix ms), refreshed by the loop every few hundred polls and when idle: reading
    /// the clock for each record cost more than handling it.
    pub(crate) now_ms: i64,
}

impl Processor {
    /// The state of an instance that owns no partition yet, with its dead-letter producer.
    pub(crate) fn new(
        settings: &Settings,
        pool: PgPool,
        metrics: AggregatorMetrics,
        traces: Tracing,
        runtime: Handle,
        shutdown: CancellationToken,
    ) -> Result<Self, KafkaError> {
        let dead_letters = DeadLetters::new(
            &settings.kafka,
            &settings.aggregator.dlq_topic,
            runtime.clone(),
            shutdown.clone(),
            metrics.dead_letters.clone(),
        )?;
        Ok(Self {
            runtime,
            pool,
            topic: settings.kafka.topic.clone(),
            timing: settings.aggregator.timing(),
            partitions: HashMap::new(),
            writes: WriteSchedule::default(),
            dead_letters,
            metrics,
            commit_traces: CommitTraces::new(traces),
            shutdown,
            invalid_log: Throttle::new(Duration::from_secs(1)),
            error_log: Throttle::new(Duration::from_secs(5)),
            prune_every: Throttle::new(PRUNE_EVERY),
            topic_watch: TopicWatch::new(
                settings.kafka.topic.clone(),
                settings.aggregator.timing(),
                settings.aggregator.metadata_refresh(),
            ),
            now_ms: tickpipe_common::clock::now_ms(),
        })
    }

    /// Takes over claimed partitions and forgets revoked ones.
    pub(crate) fn rebalanced(&mut self, event: Rebalanced) {
        match event {
            Rebalanced::Assigned(claimed) => {
                for (partition, progress) in claimed {
                    self.partitions.insert(
                        partition,
                        PartitionState::new(partition, progress, self.timing),
                    );
                }
            }
            Rebalanced::Revoked(partitions) => {
                // Nothing to save: open windows are rebuilt by whoever resumes from the stored offset.
                for partition in partitions {
                    self.partitions.remove(&partition);
                    self.writes.forget(partition);
                    self.commit_traces.forget(partition);
                    self.metrics
                        .consumer_lag
                        .remove(&PartitionLabel { partition });
                    self.metrics.watermark.remove(&PartitionLabel { partition });
                }
            }
        }
    }

    /// One record: applied or dead-lettered, then any window it closed is written.
    pub(crate) fn handle(&mut self, consumer: &AggregatorConsumer, message: &BorrowedMessage<'_>) {
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
        match record::decode(message, self.now_ms, stored_future_verdict) {
            Ok((timestamp_ms, ticks)) => {
                let outcome = state.apply(offset, timestamp_ms, &ticks, self.now_ms);
                if outcome != Outcome::Late {
                    self.commit_traces.folded(partition, message);
                }
                self.count(outcome, partition, offset, timestamp_ms);
            }
            Err(invalid) => {
                let future = invalid.reason == InvalidReason::FutureTimestamp;
                if state.skip_invalid(offset, future) {
                    self.dead_letters.send(message, &invalid);
                }
                self.count_invalid(&invalid, partition, offset);
            }
        }
        self.flush(consumer, partition);
    }

    fn count(&self, outcome: Outcome, partition: i32, offset: i64, timestamp_ms: i64) {
        match outcome {
            Outcome::Applied => self.metrics.applied.inc(),
            Outcome::Late => {
                tracing::debug!(partition, offset, timestamp_ms, "late record not applied");
                self.metrics.late.inc()
            }
            Outcome::Replayed => self.metrics.replayed.inc(),
        };
    }

    fn count_invalid(&mut self, invalid: &InvalidMessage, partition: i32, offset: i64) {
        let reason = invalid.reason.as_str();
        self.metrics
            .invalid
            .get_or_create(&ReasonLabel { reason })
            .inc();
        if let Some(suppressed) = self.invalid_log.allow() {
            tracing::warn!(partition, offset, reason, detail = %invalid.detail, suppressed, "invalid record sent to the dead-letter topic");
        }
    }

    /// The consumer reached the end of `partition`.
    pub(crate) fn caught_up(&mut self, partition: i32) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.mark_caught_up();
            tracing::debug!(
                partition,
                watermark_ms = state.progress().watermark_ms,
                "caught up"
            );
        }
    }

    /// A consumer error. Only a lost connection to the cluster makes every partition uncertain
    /// (producers were cut off too, see [`PartitionState::mark_uncertain`]); any other error
    /// concerns one partition or request and must not hold back the wall clock of the others.
    pub(crate) fn consumer_error(&mut self, error: &KafkaError) {
        let code = error.rdkafka_error_code();
        self.metrics
            .consumer_errors
            .get_or_create(&ErrorLabel {
                code: code.map_or_else(|| "other".to_owned(), |c| format!("{c:?}")),
            })
            .inc();
        if code.is_some_and(is_connectivity_error) {
            let now = self.now_ms;
            self.partitions
                .values_mut()
                .for_each(|state| state.mark_uncertain(now));
        }
        if let Some(suppressed) = self.error_log.allow() {
            tracing::warn!(%error, suppressed, "Kafka consumer error; librdkafka keeps retrying");
        }
    }

    /// Advances caught-up partitions by the wall clock and writes what that closed; now and then
    /// prunes the change log.
    pub(crate) fn tick(&mut self, consumer: &AggregatorConsumer) {
        if self.prune_every.allow().is_some() {
            self.prune_changes();
        }
        self.check_partitions(consumer);
        let now = self.now_ms;
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        for partition in partitions {
            if let Some(state) = self.partitions.get_mut(&partition) {
                state.advance_idle(now);
            }
            self.flush(consumer, partition);
        }
    }

    /// Writes the partition's final windows with its progress, if it is due to write (see
    /// [`crate::group_commit`]), retrying until it is done, the partition is fenced, or the
    /// service shuts down. Consumption waits meanwhile: that is the back-pressure of a database
    /// outage.
    fn flush(&mut self, consumer: &AggregatorConsumer, partition: i32) {
        if !self.write_due(partition) {
            return;
        }
        let Some(flush) = self
            .partitions
            .get_mut(&partition)
            .and_then(PartitionState::take_closed)
        else {
            return;
        };
        // Progress may only be stored once the dead letters it accounts for are delivered.
        if !self.dead_letters.settle() {
            return;
        }
        let span = self.commit_traces.start_commit(partition, flush.rows.len());
        let trace_parent = span.as_ref().map(|span| span.traceparent.as_str());
        let Some(commit) = self.commit(&flush, trace_parent) else {
            return;
        };
        if let Some(span) = span {
            span.end(commit == Commit::Written);
        }
        match commit {
            Commit::Written => {
                self.writes.wrote(partition, self.now_ms);
                self.metrics.windows_written.inc_by(flush.rows.len() as u64);
                self.metrics
                    .watermark
                    .get_or_create(&PartitionLabel { partition })
                    .set(flush.progress.watermark_ms as f64 / 1000.0);
                self.commit_informational_offset(consumer, partition, flush.progress.resume_offset);
            }
            Commit::Fenced => {
                self.metrics.fenced.inc();
                self.metrics.watermark.remove(&PartitionLabel { partition });
                self.writes.forget(partition);
                tracing::warn!(
                    partition,
                    "partition now owned by another instance; dropping its state"
                );
                self.partitions.remove(&partition);
            }
        }
    }

    /// Whether `partition` has closed windows and may write them now. The coarse clock is refreshed
    /// every few hundred polls, which on a slow stream can be seconds: before holding windows back
    /// on its word, the real clock is read (only while windows are held, never per record otherwise).
    fn write_due(&mut self, partition: i32) -> bool {
        if !self
            .partitions
            .get(&partition)
            .is_some_and(PartitionState::has_closed)
        {
            return false;
        }
        if self.writes.due(partition, self.now_ms) {
            return true;
        }
        self.now_ms = tickpipe_common::clock::now_ms();
        self.writes.due(partition, self.now_ms)
    }

    /// Stores `flush`, retrying while it fails. `None` once the service shuts down.
    #[tracing::instrument(level = "debug", skip_all, fields(partition = flush.partition, windows = flush.rows.len(), resume_offset = flush.progress.resume_offset))]
    fn commit(&self, flush: &Flush, trace_parent: Option<&str>) -> Option<Commit> {
        let started = Instant::now();
        // Retried on every error: the transaction either happened whole or not at all, and until
        // it does nothing later on this partition can be stored.
        let committed = retry(
            "writing windows (consumption paused until it succeeds)",
            Backoff::default(),
            &self.shutdown,
            |_: &sqlx::Error| true,
            || tickpipe_store::commit_traced(&self.pool, &self.topic, flush, trace_parent),
        );
        let commit = self.runtime.block_on(committed).ok()?;
        self.metrics
            .write_latency
            .observe(started.elapsed().as_secs_f64());
        Some(commit)
    }

    /// Records the topic's partition count if a check is due (see [`TopicWatch`]).
    pub(crate) fn check_partitions(&mut self, consumer: &AggregatorConsumer) {
        self.topic_watch
            .check_if_due(consumer, &self.pool, &self.runtime, &self.shutdown);
    }

    /// Best effort: a failure only leaves old entries a little longer.
    fn prune_changes(&self) {
        let pruned =
            block_on_unless_cancelled(&self.runtime, &self.shutdown, changes::prune(&self.pool));
        match pruned {
            Some(Ok(deleted)) if deleted > 0 => tracing::debug!(deleted, "change log pruned"),
            Some(Err(error)) => {
                tracing::warn!(%error, "pruning the change log failed; retried later")
            }
            _ => {}
        }
    }

    /// Mirrors the stored resume offset into Kafka so that standard tools show the group's lag.
    fn commit_informational_offset(
        &self,
        consumer: &AggregatorConsumer,
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
