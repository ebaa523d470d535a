//! The change log: every committed change of a window row, in commit order, for the API's live
//! stream and its in-memory latest prices.
//!
//! Appended in the same transaction as the change, as the last step before commit:
//! 1. take a transaction-level advisory lock (held until commit), so that ids taken from the
//!    sequence become visible in id order even with several instances committing at once — a
//!    reader that has seen id N never later sees a new id below N, so "resume after N" is exact;
//! 2. log each changed row as it stands after this transaction, with the boundary
//!    (`complete_before`, [`crate::boundary`]: every window starting before it is final on every partition), then a
//!    watermark entry (no ticker) when that boundary moved — forward as windows close, or back
//!    when a partition is claimed for the first time (a new partition has closed nothing yet);
//! 3. `NOTIFY window_changes` with the newest id, which PostgreSQL delivers only on commit.
//!
//! The lock is taken after every row lock of the transaction, so it cannot deadlock with them:
//! whoever holds it only inserts new log rows and commits.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, Postgres, Transaction};

use crate::boundary;

/// The notification channel; its payload is the newest id committed.
pub const CHANNEL: &str = "window_changes";
/// Key of the advisory lock that orders the log (an arbitrary constant, "tickpipe" in ASCII).
const LOG_LOCK: i64 = 0x7469_636b_7069_7065;
/// How long changes are kept for clients to resume from.
pub const RETENTION: &str = "24 hours";

/// A window row as the upsert left it.
#[derive(Debug, Clone, FromRow)]
pub struct ChangedRow {
    pub ticker: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub price_sum: i64,
    pub sample_count: i64,
    pub min_price: i64,
    pub max_price: i64,
    pub open_price: Option<i64>,
    pub close_price: Option<i64>,
}

/// Appends `rows` (and a watermark entry if the boundary moved) to the log and
/// notifies listeners on commit. Call it last in the transaction. `trace_parent` is the W3C
/// `traceparent` of the commit's span, stored with each entry so that the API's deliveries join
/// its trace; `None` when traces are off.
pub async fn append(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[ChangedRow],
    trace_parent: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOG_LOCK)
        .execute(&mut **tx)
        .await?;
    // Read under the lock: the previous holder's commit is visible to these statements.
    let boundary = boundary::complete_before(&mut **tx).await?;
    let logged: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT complete_before FROM window_changes ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?
            .flatten();
    let moved = match (boundary, logged) {
        (Some(now), Some(before)) => now != before,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let mut newest = log_rows(tx, rows, boundary, trace_parent).await?;
    if moved {
        // After the price entries, so a client learns a window is final after its last change.
        newest = Some(log_watermark(tx, boundary, trace_parent).await?);
    }
    if let Some(newest) = newest {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(newest.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Logs each row with the boundary as of this commit; returns the newest id taken, if any.
async fn log_rows(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[ChangedRow],
    boundary: Option<DateTime<Utc>>,
    trace_parent: Option<&str>,
) -> Result<Option<i64>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(None);
    }
    sqlx::query_scalar(
        "WITH changed AS (
             INSERT INTO window_changes (id, ticker, window_start, window_end, price_sum, sample_count,
                                         min_price, max_price, open_price, close_price, complete_before,
                                         trace_parent)
             SELECT nextval('window_changes_id'), t.*, $10, $11
             FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::bigint[],
                         $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[]) AS t
             RETURNING id
         )
         SELECT max(id) FROM changed",
    )
    .bind(rows.iter().map(|r| r.ticker.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.window_start).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.window_end).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.price_sum).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.sample_count).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.min_price).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.max_price).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.open_price).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.close_price).collect::<Vec<_>>())
    .bind(boundary)
    .bind(trace_parent)
    .fetch_one(&mut **tx)
    .await
}

/// Logs a watermark entry (no ticker): the boundary moved. Returns its id.
async fn log_watermark(
    tx: &mut Transaction<'_, Postgres>,
    boundary: Option<DateTime<Utc>>,
    trace_parent: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO window_changes (id, complete_before, trace_parent)
         VALUES (nextval('window_changes_id'), $1, $2) RETURNING id",
    )
    .bind(boundary)
    .bind(trace_parent)
    .fetch_one(&mut **tx)
    .await
}

/// Deletes changes older than [`RETENTION`], always keeping the newest (it carries the current
/// boundary). Clients that ask to resume from a deleted id are told to reload.
pub async fn prune(pool: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    prune_older_than(pool, RETENTION).await
}

/// [`prune`] with another retention: deletes changes committed more than `age` (a PostgreSQL
/// interval, e.g. `"24 hours"`) ago, always keeping the newest. Tests prune with a short one.
pub async fn prune_older_than(pool: &sqlx::PgPool, age: &str) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM window_changes
         WHERE committed_at < now() - $1::interval
           AND id < (SELECT max(id) FROM window_changes)",
    )
    .bind(age)
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}
