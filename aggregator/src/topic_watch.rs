//! Watching the topic's partition count, so that partitions added to a live topic hold the
//! `complete` boundary back from the moment they exist (see `tickpipe_store::partitions`).
//!
//! librdkafka notices new partitions on its own metadata refresh (`topic.metadata.refresh.interval.ms`,
//! set to the same [`AGGREGATOR_METADATA_REFRESH_MS`](crate::settings) as this watch), after which the
//! group rebalances and some instance claims them. Until then nothing stops the boundary from passing
//! windows their records belong to, unless the database knows they exist. So every instance reads the
//! topic's metadata this often and records the partition count with the instant *before* the read:
//! a partition created after it can only hold records stamped later (less the grace period, the
//! disorder the aggregator allows), and the boundary never passes the last such instant.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use sqlx::PgPool;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::cancellable::block_on_unless_cancelled;
use crate::ownership::AggregatorConsumer;
use crate::partition::Timing;
use crate::throttle::Throttle;
use crate::window::window_start;

/// How long one metadata request may take before the check is skipped until the next one.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct TopicWatch {
    topic: String,
    timing: Timing,
    every: Duration,
    last: Option<Instant>,
    /// Failures come every few seconds while Kafka or PostgreSQL is away: one line per interval.
    error_log: Throttle,
}

impl TopicWatch {
    pub(crate) fn new(topic: String, timing: Timing, every: Duration) -> Self {
        Self {
            topic,
            timing,
            every,
            last: None,
            error_log: Throttle::new(Duration::from_secs(30)),
        }
    }

    /// Reads the partition count and records it, if a check is due. Best effort: a check that fails
    /// only holds the boundary where the last one left it, which is the safe direction.
    pub(crate) fn check_if_due(
        &mut self,
        consumer: &AggregatorConsumer,
        pool: &PgPool,
        runtime: &Handle,
        shutdown: &CancellationToken,
    ) {
        if self.last.is_some_and(|last| last.elapsed() < self.every) {
            return;
        }
        self.last = Some(Instant::now());
        // Read before the metadata: a partition the read does not show was created after this.
        let checked_ms = window_start(
            tickpipe_common::clock::now_ms() - self.timing.grace_ms,
            self.timing.width_ms,
        );
        let partitions = match self.partition_count(consumer) {
            Ok(partitions) => partitions,
            Err(reason) => return self.warn(&reason),
        };
        let record = tickpipe_store::partitions::record(pool, &self.topic, partitions, checked_ms);
        match block_on_unless_cancelled(runtime, shutdown, record) {
            Some(Ok(added)) if !added.is_empty() => {
                tracing::info!(topic = %self.topic, ?added, partitions, "new partitions of the topic recorded");
            }
            Some(Err(error)) => self.warn(&format!("recording it failed: {error}")),
            _ => {}
        }
    }

    fn partition_count(&self, consumer: &AggregatorConsumer) -> Result<i32, String> {
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), METADATA_TIMEOUT)
            .map_err(|error| format!("reading the metadata failed: {error}"))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|topic| topic.name() == self.topic)
            .ok_or_else(|| "the broker did not describe the topic".to_owned())?;
        if let Some(error) = topic.error() {
            return Err(format!("the broker reported {error:?} for the topic"));
        }
        i32::try_from(topic.partitions().len())
            .ok()
            .filter(|&count| count > 0)
            .ok_or_else(|| "the topic has no partitions yet".to_owned())
    }

    fn warn(&mut self, reason: &str) {
        if let Some(suppressed) = self.error_log.allow() {
            tracing::warn!(topic = %self.topic, reason, suppressed, "checking the topic's partitions failed; `complete` waits for the next check");
        }
    }
}
