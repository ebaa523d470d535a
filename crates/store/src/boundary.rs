//! The `complete` boundary: every window starting before it is final on every partition.
//!
//! Each partition's progress row stores `closed_before_ms` (every window starting before it is
//! written for that partition); the boundary is their minimum. No progress row means no partition
//! has closed anything, so nothing is complete (SQL's `min` over no rows is NULL, and an entry
//! compared with NULL is not complete). One definition, used by the API's queries (which mark
//! entries `complete`), its in-memory latest prices, and the change log's watermark entries.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// The boundary in Unix milliseconds as a scalar SQL subquery, for queries that compare entries
/// with it: `window_end <= to_timestamp(..)` style comparisons are left to the caller.
pub const BOUNDARY_MS_SQL: &str = "(SELECT min(closed_before_ms) FROM aggregator_progress)";

/// The boundary as an instant, `None` while no partition has progress.
pub async fn complete_before<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT TIMESTAMPTZ 'epoch' + min(closed_before_ms) * INTERVAL '1 millisecond' \
         FROM aggregator_progress",
    )
    .fetch_one(executor)
    .await
}
