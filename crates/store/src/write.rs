//! The aggregator's write path: claiming a partition, and committing final windows together with
//! the partition's progress and the change log in one transaction.
//!
//! That shared transaction is what makes the table exact across crashes, restarts and rebalances:
//! a window row is added exactly when the progress that accounts for its records is stored, and a
//! former owner of the partition (fenced by the epoch) can no longer write either.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::changes::{self, ChangedRow};
use crate::history::{self, WINDOWS_TABLE};
use crate::rows::{Flush, KeyedPrice, Progress, WindowRow};

/// Result of a commit attempt that reached the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Written,
    /// Another instance claimed the partition since we did: nothing was written.
    Fenced,
}

/// Takes ownership of a partition: bumps its epoch (fencing any former owner) and returns the
/// progress to resume from, creating the row for a partition never seen before.
pub async fn claim(pool: &PgPool, topic: &str, partition: i32) -> Result<Progress, sqlx::Error> {
    let fresh = Progress::fresh();
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "INSERT INTO aggregator_progress
             (topic, kafka_partition, resume_offset, next_offset, watermark_ms, closed_before_ms, dlq_next_offset, owner_epoch)
         VALUES ($1, $2, $3, $4,
                 -- A partition added to the topic after it was first seen starts where it became known.
                 COALESCE((SELECT known_since_ms FROM kafka_partitions WHERE topic = $1 AND kafka_partition = $2), $5),
                 COALESCE((SELECT known_since_ms FROM kafka_partitions WHERE topic = $1 AND kafka_partition = $2), $6),
                 $7, 1)
         ON CONFLICT (topic, kafka_partition)
         DO UPDATE SET owner_epoch = aggregator_progress.owner_epoch + 1, updated_at = now()
         RETURNING resume_offset, next_offset, watermark_ms, closed_before_ms, dlq_next_offset, owner_epoch, future_offsets",
    )
    .bind(topic)
    .bind(partition)
    .bind(fresh.resume_offset)
    .bind(fresh.next_offset)
    .bind(fresh.watermark_ms)
    .bind(fresh.closed_before_ms)
    .bind(fresh.dlq_next_offset)
    .fetch_one(&mut *tx)
    .await?;
    // A partition claimed for the first time may lower the boundary (one not known before
    // has closed nothing): the log (and so the API's stream and in-memory latest prices) must
    // learn it like any other move.
    changes::append(&mut tx, &[], None).await?;
    tx.commit().await?;
    Ok(Progress {
        resume_offset: row.try_get("resume_offset")?,
        next_offset: row.try_get("next_offset")?,
        watermark_ms: row.try_get("watermark_ms")?,
        closed_before_ms: row.try_get("closed_before_ms")?,
        dlq_next_offset: row.try_get("dlq_next_offset")?,
        epoch: row.try_get("owner_epoch")?,
        future_offsets: row.try_get("future_offsets")?,
    })
}

/// Adds the flushed windows to the table and stores the progress, atomically, unless fenced.
pub async fn commit(pool: &PgPool, topic: &str, flush: &Flush) -> Result<Commit, sqlx::Error> {
    commit_traced(pool, topic, flush, None).await
}

/// [`commit`], with the `traceparent` of the commit's span stored in the change log's entries
/// (see [`changes::append`]).
#[tracing::instrument(level = "debug", skip_all, fields(partition = flush.partition))]
pub async fn commit_traced(
    pool: &PgPool,
    topic: &str,
    flush: &Flush,
    trace_parent: Option<&str>,
) -> Result<Commit, sqlx::Error> {
    let window_ms = flush
        .rows
        .first()
        .map(|r| r.window_end_ms - r.window_start_ms);
    let rollups: Vec<_> = window_ms
        .map(|ms| history::rollups_for(u32::try_from(ms / 1000).unwrap_or(0)).collect())
        .unwrap_or_default();
    if !flush.rows.is_empty() {
        // Before the transaction, in a statement of its own: creating a partition locks its
        // table, which inside the transaction would be held across the row locks below. (If
        // retention drops one in between, the insert fails and the caller retries the commit.)
        let tables: Vec<&str> = std::iter::once(WINDOWS_TABLE)
            .chain(rollups.iter().map(|rollup| rollup.table))
            .collect();
        history::ensure_partitions(pool, &tables, flush.rows.iter().map(|r| r.window_start_ms))
            .await?;
    }
    let mut tx = pool.begin().await?;
    // First, so that the ownership check also locks the progress row until commit.
    if !store_progress(&mut tx, topic, flush.partition, &flush.progress).await? {
        tx.rollback().await?;
        return Ok(Commit::Fenced);
    }
    let mut changed = Vec::new();
    if !flush.rows.is_empty() {
        let columns = WindowColumns::from(flush.rows.as_slice());
        changed = add_windows(&mut tx, &columns).await?;
        advance_latest(&mut tx, &columns).await?;
        // After the windows and in a fixed order (narrowest first, each in key order): every
        // commit takes its row locks in the same order, so concurrent ones cannot deadlock.
        for rollup in rollups {
            let bars = history::fold(&flush.rows, rollup);
            add_bars(&mut tx, rollup.table, &WindowColumns::from(bars.as_slice())).await?;
        }
    }
    // Last: it takes the log's lock, which must come after every row lock (see `changes`).
    changes::append(&mut tx, &changed, trace_parent).await?;
    tx.commit().await?;
    Ok(Commit::Written)
}

/// Stores a partition's progress if `progress.epoch` still owns it. False when fenced.
async fn store_progress(
    tx: &mut Transaction<'_, Postgres>,
    topic: &str,
    partition: i32,
    progress: &Progress,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE aggregator_progress
         SET resume_offset = $3, next_offset = $4, watermark_ms = $5, closed_before_ms = $6,
             dlq_next_offset = $7, future_offsets = $9, updated_at = now()
         WHERE topic = $1 AND kafka_partition = $2 AND owner_epoch = $8",
    )
    .bind(topic)
    .bind(partition)
    .bind(progress.resume_offset)
    .bind(progress.next_offset)
    .bind(progress.watermark_ms)
    .bind(progress.closed_before_ms)
    .bind(progress.dlq_next_offset)
    .bind(progress.epoch)
    .bind(&progress.future_offsets)
    .execute(&mut **tx)
    .await?;
    Ok(updated.rows_affected() > 0)
}

/// Flushed rows as one array per column, the shape `UNNEST` takes: one statement for any number
/// of rows instead of one round trip each.
struct WindowColumns<'a> {
    tickers: Vec<&'a str>,
    starts: Vec<DateTime<Utc>>,
    ends: Vec<DateTime<Utc>>,
    sums: Vec<i64>,
    counts: Vec<i64>,
    mins: Vec<i64>,
    maxs: Vec<i64>,
    open: KeyedColumns,
    close: KeyedColumns,
}

/// A keyed price per row, as four columns.
struct KeyedColumns {
    timestamps: Vec<i64>,
    partitions: Vec<i64>,
    offsets: Vec<i64>,
    prices: Vec<i64>,
}

impl KeyedColumns {
    fn from(prices: impl Iterator<Item = KeyedPrice> + Clone) -> Self {
        Self {
            timestamps: prices.clone().map(|p| p.key.timestamp_ms).collect(),
            partitions: prices.clone().map(|p| i64::from(p.key.partition)).collect(),
            offsets: prices.clone().map(|p| p.key.offset).collect(),
            prices: prices.map(|p| p.price).collect(),
        }
    }
}

impl<'a> From<&'a [WindowRow]> for WindowColumns<'a> {
    fn from(rows: &'a [WindowRow]) -> Self {
        Self::in_order(rows.iter().collect())
    }
}

impl<'a> WindowColumns<'a> {
    /// The rows' columns in key order, (window start, ticker): every commit locks the rows it
    /// shares with another in the same order, so concurrent commits cannot deadlock.
    fn in_order(mut rows: Vec<&'a WindowRow>) -> Self {
        rows.sort_unstable_by(|a, b| {
            (a.window_start_ms, &a.ticker).cmp(&(b.window_start_ms, &b.ticker))
        });
        Self {
            tickers: rows.iter().map(|r| r.ticker.as_str()).collect(),
            starts: rows
                .iter()
                .map(|r| to_datetime(r.window_start_ms))
                .collect(),
            ends: rows.iter().map(|r| to_datetime(r.window_end_ms)).collect(),
            sums: rows.iter().map(|r| r.totals.sum).collect(),
            counts: rows.iter().map(|r| r.totals.count).collect(),
            mins: rows.iter().map(|r| r.totals.min).collect(),
            maxs: rows.iter().map(|r| r.totals.max).collect(),
            open: KeyedColumns::from(rows.iter().map(|r| r.totals.open)),
            close: KeyedColumns::from(rows.iter().map(|r| r.totals.close)),
        }
    }
}

/// Binds the fifteen column arrays of [`upsert_sql`] to a `query` or `query_as` alike.
macro_rules! bind_columns {
    ($query:expr, $columns:expr) => {{
        let c = $columns;
        $query
            .bind(&c.tickers)
            .bind(&c.starts)
            .bind(&c.ends)
            .bind(&c.sums)
            .bind(&c.counts)
            .bind(&c.mins)
            .bind(&c.maxs)
            .bind(&c.open.timestamps)
            .bind(&c.open.partitions)
            .bind(&c.open.offsets)
            .bind(&c.open.prices)
            .bind(&c.close.timestamps)
            .bind(&c.close.partitions)
            .bind(&c.close.offsets)
            .bind(&c.close.prices)
    }};
}
/// Adds the rows to `window_prices`: contributions of other partitions to the same (ticker,
/// window) add up, and the open (close) with the smaller (larger) key wins. Keys compare as arrays,
/// element by element: (timestamp, partition, offset). Returns the rows as they now stand.
async fn add_windows(
    tx: &mut Transaction<'_, Postgres>,
    columns: &WindowColumns<'_>,
) -> Result<Vec<ChangedRow>, sqlx::Error> {
    let sql = format!(
        "{} RETURNING ticker, window_start, window_end, price_sum, sample_count, min_price, max_price,
                   open_price, close_price",
        upsert_sql(WINDOWS_TABLE)
    );
    bind_columns!(sqlx::query_as(&sql), columns)
        .fetch_all(&mut **tx)
        .await
}

/// Adds folded bars to the rollup `table` with the same merge as the windows.
async fn add_bars(
    tx: &mut Transaction<'_, Postgres>,
    table: &str,
    columns: &WindowColumns<'_>,
) -> Result<(), sqlx::Error> {
    let sql = upsert_sql(table);
    bind_columns!(sqlx::query(&sql), columns)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The upsert of rows into `table` (the windows or a rollup: the same columns), merging with the
/// row already there: sums and counts add, min and max, the open with the smaller key and the
/// close with the larger. A NULL key (rows written before keys were recorded) never compares
/// smaller or larger, so an unknown open or close stays unknown.
fn upsert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (ticker, window_start, window_end, price_sum, sample_count, min_price, max_price,
                              open_key, open_price, close_key, close_price)
         SELECT ticker, window_start, window_end, price_sum, sample_count, min_price, max_price,
                ARRAY[open_ms, open_partition, open_offset], open_price,
                ARRAY[close_ms, close_partition, close_offset], close_price
         FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
                     $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
                     $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[])
              AS t(ticker, window_start, window_end, price_sum, sample_count, min_price, max_price,
                   open_ms, open_partition, open_offset, open_price,
                   close_ms, close_partition, close_offset, close_price)
         ON CONFLICT (ticker, window_start) DO UPDATE SET
             price_sum = {table}.price_sum + EXCLUDED.price_sum,
             sample_count = {table}.sample_count + EXCLUDED.sample_count,
             min_price = LEAST({table}.min_price, EXCLUDED.min_price),
             max_price = GREATEST({table}.max_price, EXCLUDED.max_price),
             open_price = CASE WHEN EXCLUDED.open_key < {table}.open_key
                               THEN EXCLUDED.open_price ELSE {table}.open_price END,
             open_key = CASE WHEN EXCLUDED.open_key < {table}.open_key
                             THEN EXCLUDED.open_key ELSE {table}.open_key END,
             close_price = CASE WHEN EXCLUDED.close_key > {table}.close_key
                                THEN EXCLUDED.close_price ELSE {table}.close_price END,
             close_key = CASE WHEN EXCLUDED.close_key > {table}.close_key
                              THEN EXCLUDED.close_key ELSE {table}.close_key END,
             updated_at = now()"
    )
}

/// Moves each ticker's entry in `latest_windows` forward to its newest written window.
async fn advance_latest(
    tx: &mut Transaction<'_, Postgres>,
    columns: &WindowColumns<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO latest_windows (ticker, window_start)
         SELECT ticker, max(window_start) FROM UNNEST($1::text[], $2::timestamptz[]) AS t(ticker, window_start)
         GROUP BY ticker
         -- Rows are locked in this order: the same in every commit, so none deadlock.
         ORDER BY ticker
         ON CONFLICT (ticker) DO UPDATE SET window_start = GREATEST(latest_windows.window_start, EXCLUDED.window_start)",
    )
    .bind(&columns.tickers)
    .bind(&columns.starts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn to_datetime(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms)
        .expect("window bounds come from record timestamps between 0 and now + 60 s: in range")
}
