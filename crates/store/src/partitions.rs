//! The partitions each topic has, as the aggregators last read them from Kafka's metadata.
//!
//! Without this, the `complete` boundary could only be computed over partitions that have progress
//! rows, that is, that some instance has claimed: between a partition's creation (`kafka-topics
//! --alter --partitions`) and its first claim, windows would be marked complete that its records
//! can still change. So every aggregator reads the topic's metadata every few seconds and records
//! what it saw ([`record`]). The boundary ([`crate::boundary`]) then holds the whole topic at the
//! last check (a partition created after it can hold records stamped from then on) and an
//! unclaimed partition at the instant it became known; a first claim starts its progress there.
//!
//! A partition first seen at a check did not exist at the previous one, so no record in it is
//! stamped before that previous check: that is its `known_since_ms`. The partitions found at the
//! first check of a topic have an unknown history and are known since the beginning of time.

use sqlx::PgPool;

use crate::changes;

/// Records that `topic` had `partitions` partitions when its metadata was read. `checked_ms` must
/// be an instant before which no partition created after that read can hold records: a time read
/// *before* the metadata was, less the allowed timestamp disorder, aligned down to a window start.
///
/// If the boundary moved (a topic's check is one of its bounds), the change log learns it in the
/// same transaction, as at any commit. Returns the partitions that were not known before.
pub async fn record(
    pool: &PgPool,
    topic: &str,
    partitions: i32,
    checked_ms: i64,
) -> Result<Vec<i32>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Every sub-statement sees the same snapshot: `previous` is the check before this one, the
    // instant from which the partitions new at this check can hold records.
    let added: Vec<i32> = sqlx::query_scalar(
        "WITH previous AS (
             SELECT partitions_checked_ms FROM kafka_topics WHERE topic = $1
         ),
         checked AS (
             INSERT INTO kafka_topics (topic, partitions_checked_ms) VALUES ($1, $3)
             ON CONFLICT (topic) DO UPDATE
                 SET partitions_checked_ms = GREATEST(kafka_topics.partitions_checked_ms, EXCLUDED.partitions_checked_ms)
         )
         INSERT INTO kafka_partitions (topic, kafka_partition, known_since_ms)
         SELECT $1, partition, COALESCE((SELECT partitions_checked_ms FROM previous), 0)
         FROM generate_series(0, $2 - 1) AS partition
         ON CONFLICT (topic, kafka_partition) DO NOTHING
         RETURNING kafka_partition",
    )
    .bind(topic)
    .bind(partitions)
    .bind(checked_ms)
    .fetch_all(&mut *tx)
    .await?;
    changes::append(&mut tx, &[], None).await?;
    tx.commit().await?;
    Ok(added)
}

/// When each known partition of `topic` became known (Unix ms), by partition.
pub async fn known_since(pool: &PgPool, topic: &str) -> Result<Vec<(i32, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kafka_partition, known_since_ms FROM kafka_partitions
         WHERE topic = $1 ORDER BY kafka_partition",
    )
    .bind(topic)
    .fetch_all(pool)
    .await
}
