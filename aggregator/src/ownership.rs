//! Partition ownership: which partitions this instance consumes, and from which offset.
//!
//! The rebalance callback claims each newly assigned partition in PostgreSQL (bumping its owner
//! epoch, which fences the former owner's writes) and seeks it to the stored resume offset
//! *before* assigning it, so consumption starts exactly where the table's progress says and never
//! at whatever offset Kafka's group happens to hold. Claims and revocations are handed to the poll
//! loop as [`Rebalanced`] events, because the callback runs inside `poll` while the loop's state is
//! borrowed elsewhere.

use std::sync::{Mutex, PoisonError};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sqlx::PgPool;
use tickpipe_common::backoff::{retry, Backoff};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::metrics::{AggregatorMetrics, PartitionLabel};
use tickpipe_store::Progress;

/// The consumer type of the aggregator, named once.
pub(crate) type AggregatorConsumer = BaseConsumer<AggregatorContext>;

/// `partition.assignment.strategy` of the consumer. The hand-written
/// [`AggregatorContext::rebalance`] replaces librdkafka's default with an eager `assign`/`unassign`
/// of the whole list it is given; that is correct only for an eager strategy such as `range`. A
/// cooperative strategy hands over increments and needs `incremental_assign` instead: change both
/// together.
pub(crate) const ASSIGNMENT_STRATEGY: &str = "range";

/// A partition assignment change seen by the rebalance callback, applied by the loop.
#[derive(Debug)]
pub(crate) enum Rebalanced {
    /// Claimed partitions with the progress to resume from.
    Assigned(Vec<(i32, Progress)>),
    Revoked(Vec<i32>),
}

/// Consumer context: claims partitions during rebalances, logs client errors, reports lag.
#[derive(Debug)]
pub(crate) struct AggregatorContext {
    /// The callback runs on the consume thread, outside the runtime: async calls go through it.
    runtime: Handle,
    pool: PgPool,
    topic: String,
    shutdown: CancellationToken,
    metrics: AggregatorMetrics,
    /// Written by the callback inside `poll`, drained by the loop right after. A `Mutex` because
    /// `ConsumerContext` must be `Sync`; it is never contended (one thread does both).
    events: Mutex<Vec<Rebalanced>>,
}

impl AggregatorContext {
    pub(crate) fn new(
        runtime: Handle,
        pool: PgPool,
        topic: String,
        shutdown: CancellationToken,
        metrics: AggregatorMetrics,
    ) -> Self {
        Self {
            runtime,
            pool,
            topic,
            shutdown,
            metrics,
            events: Mutex::new(Vec::new()),
        }
    }

    /// The assignment changes since the last call, oldest first.
    pub(crate) fn take_events(&self) -> Vec<Rebalanced> {
        // A panic while the lock was held cannot leave the list half-written (push is the only
        // writer), so the events are still good: recover them rather than drop a claim.
        std::mem::take(&mut *self.events.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn push(&self, event: Rebalanced) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }

    /// Claims a partition, retrying while the database is unreachable. `None` if shutting down.
    fn claim(&self, partition: i32) -> Option<Progress> {
        // Retried on every error: the claim is one idempotent upsert, and without it the partition
        // cannot be consumed at all.
        let claimed = retry(
            "claiming a partition",
            Backoff::default(),
            &self.shutdown,
            |_: &sqlx::Error| true,
            || tickpipe_store::claim(&self.pool, &self.topic, partition),
        );
        self.runtime.block_on(claimed).ok()
    }

    /// Claims every partition in `tpl`, seeks each to its resume offset and assigns them.
    fn assign(
        &self,
        consumer: &AggregatorConsumer,
        tpl: &mut TopicPartitionList,
        partitions: Vec<i32>,
    ) {
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
    /// Replaces librdkafka's default rebalance (plain assign/unassign) with claim-then-assign.
    /// Eager protocol only: see [`ASSIGNMENT_STRATEGY`].
    fn rebalance(
        &self,
        consumer: &AggregatorConsumer,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            return self.assign(consumer, tpl, partitions);
        }
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
            tracing::warn!(error = ?err, "rebalance error; dropping the assignment");
        }
        tracing::info!(?partitions, "partitions revoked");
        self.push(Rebalanced::Revoked(partitions));
        if let Err(error) = consumer.unassign() {
            tracing::error!(%error, "unassigning partitions failed");
        }
    }
}
