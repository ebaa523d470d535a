//! The `complete` boundary: every window starting before it is final on every partition.
//!
//! Each partition's progress row stores `closed_before_ms` (every window starting before it is
//! written for that partition); the boundary is their minimum, held back further by what the
//! aggregators know of partitions nobody has claimed yet ([`crate::partitions`]): an unclaimed
//! partition counts as closed only up to the instant it became known, and a topic only up to its
//! last metadata check (a partition added after it can hold records from then on). No progress row
//! and no known partition means nothing is complete (SQL's `min` over no rows is NULL, and an entry
//! compared with NULL is not complete). One definition, used by the API's queries (which mark
//! entries `complete`), its in-memory latest prices, and the change log's watermark entries.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// The boundary in Unix milliseconds as a scalar SQL subquery, for queries that compare entries
/// with it.
pub const BOUNDARY_MS_SQL: &str = "(SELECT min(bound) FROM (\
     SELECT closed_before_ms AS bound FROM aggregator_progress \
     UNION ALL \
     SELECT k.known_since_ms FROM kafka_partitions k WHERE NOT EXISTS (\
         SELECT FROM aggregator_progress p \
         WHERE p.topic = k.topic AND p.kafka_partition = k.kafka_partition) \
     UNION ALL \
     SELECT partitions_checked_ms FROM kafka_topics\
 ) AS bounds)";

/// The boundary as an instant, `None` while no partition has progress.
pub async fn complete_before<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let boundary_ms: Option<i64> = sqlx::query_scalar(&format!("SELECT {BOUNDARY_MS_SQL}"))
        .fetch_one(executor)
        .await?;
    Ok(boundary_ms.and_then(DateTime::from_timestamp_millis))
}
