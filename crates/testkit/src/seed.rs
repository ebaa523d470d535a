//! Seeding the aggregator's tables through the aggregator's own write path.
//!
//! Tests, benchmarks and examples that need windows, progress or change-log entries write them as
//! the aggregator does, through [`tickpipe_store::claim`] and [`tickpipe_store::commit`]: a
//! partition is claimed (its epoch bumped), then each commit adds window rows (merging into rows
//! already there), moves `latest_windows` forward, stores the partition's `closed_before_ms` and
//! appends the change log (with its lock and NOTIFY) in one transaction. Nothing here re-types
//! that SQL, so a change of the write path reaches every seeded database at once.
//!
//! ```ignore
//! use tickpipe_testkit::seed::{self, Totals};
//! // Two windows of AMZN, written by partition 0, which has closed everything before 10:00:30.
//! let rows = [
//!     seed::window("AMZN", (T0_MS, T0_MS + 30_000), Totals::flat(1000, 4, 250)),
//!     seed::from_prices("AMZN", (T0_MS + 30_000, T0_MS + 60_000), &[240, 260]),
//! ];
//! seed::write(&db.pool, 0, T0_MS + 30_000, rows).await;
//! ```
//!
//! What the write path does to keep in mind when seeding: a commit *adds* to a (ticker, window)
//! row that exists (sums and counts add, min/max and open/close merge); `latest_windows` only moves
//! forward; and the `complete` boundary (the change log's too) is the minimum `closed_before_ms`
//! over *every* progress row, so a partition claimed and never advanced holds it at 0.
//!
//! The one write this module makes itself is [`legacy_database`]'s: rows without open and close
//! as the aggregator wrote them before migration 4, in the schema of that time, which the store no
//! longer writes.

use std::borrow::Cow;

use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection, PgPool};
use tickpipe_common::config::DatabaseSettings;
use tickpipe_store::{Accumulator, Commit, Flush, KeyedPrice, PriceKey, Progress, WindowRow};

use crate::TestDatabase;

/// The topic seeded progress rows belong to (the aggregator's default).
pub const TOPIC: &str = "stocks";
/// Rows per commit in [`Partition::commit_chunks`] and [`write`]: large enough that a million
/// rows take a hundred transactions, small enough that each statement's arrays stay modest.
pub const CHUNK: usize = 10_000;
/// The migration that added open and close (`migrations/*_open_close.sql`).
pub const OPEN_CLOSE_MIGRATION: i64 = 20_261_127_000_004;

/// The totals of one window: sum, count, min and max of its prices, and its open and close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub sum: i64,
    pub count: i64,
    pub min: i64,
    pub max: i64,
    pub open: i64,
    pub close: i64,
}

impl Totals {
    /// `count` prices summing to `sum`, all between `min` and `max`, opening at `min` and closing
    /// at `max`.
    pub fn new(sum: i64, count: i64, min: i64, max: i64) -> Self {
        Self {
            sum,
            count,
            min,
            max,
            open: min,
            close: max,
        }
    }

    /// `count` prices of `price` each.
    pub fn flat(count: i64, price: i64) -> Self {
        Self::new(price * count, count, price, price)
    }

    /// The same totals with another open and close.
    pub fn open_close(self, open: i64, close: i64) -> Self {
        Self {
            open,
            close,
            ..self
        }
    }
}

/// A window row of `ticker` over `[start_ms, end_ms)` with `totals`. Its open is keyed at the
/// window's first millisecond and its close at its last (partition 0, offsets 0 and 1), so a later
/// contribution to the same window keeps this open and close unless its keys say otherwise.
pub fn window(ticker: &str, (start_ms, end_ms): (i64, i64), totals: Totals) -> WindowRow {
    let key = |timestamp_ms, offset| PriceKey {
        timestamp_ms,
        partition: 0,
        offset,
    };
    keyed(
        ticker,
        (start_ms, end_ms),
        totals,
        (key(start_ms, 0), key(end_ms - 1, 1)),
    )
}

/// [`window`] with the keys of its open and close given: for tests whose windows merge
/// contributions of several partitions, where the keys decide which open and close win.
pub fn keyed(
    ticker: &str,
    (start_ms, end_ms): (i64, i64),
    totals: Totals,
    (open_key, close_key): (PriceKey, PriceKey),
) -> WindowRow {
    WindowRow {
        ticker: ticker.to_owned(),
        window_start_ms: start_ms,
        window_end_ms: end_ms,
        totals: Accumulator {
            sum: totals.sum,
            count: totals.count,
            min: totals.min,
            max: totals.max,
            open: KeyedPrice {
                key: open_key,
                price: totals.open,
            },
            close: KeyedPrice {
                key: close_key,
                price: totals.close,
            },
        },
    }
}

/// The window row of `prices` as the aggregator folds them, in order: the first is the open,
/// the last the close (keyed at consecutive milliseconds from `start_ms`, partition 0).
///
/// # Panics
/// If `prices` is empty: a window row holds at least one price.
pub fn from_prices(ticker: &str, (start_ms, end_ms): (i64, i64), prices: &[i64]) -> WindowRow {
    let key = |i: usize| PriceKey {
        timestamp_ms: start_ms + i as i64,
        partition: 0,
        offset: i as i64,
    };
    let (first, rest) = prices.split_first().expect("a window holds a price");
    let mut totals = Accumulator::new(*first, key(0));
    for (i, price) in rest.iter().enumerate() {
        totals.add(*price, key(i + 1));
    }
    WindowRow {
        ticker: ticker.to_owned(),
        window_start_ms: start_ms,
        window_end_ms: end_ms,
        totals,
    }
}

/// A partition of [`TOPIC`] (or another topic) claimed as an aggregator instance claims it on
/// assignment: every commit through it is fenced by the epoch of that claim, as the aggregator's.
#[derive(Debug, Clone)]
pub struct Partition {
    pool: PgPool,
    topic: String,
    partition: i32,
    progress: Progress,
}

impl Partition {
    /// Claims `partition` of [`TOPIC`]. A partition claimed for the first time has closed
    /// nothing: the boundary drops to 0 until it commits a `closed_before_ms` (logged as a
    /// watermark entry, as the aggregator's claim is).
    pub async fn claim(pool: &PgPool, partition: i32) -> Self {
        Self::claim_in(pool, TOPIC, partition).await
    }

    /// Claims `partition` of `topic`.
    pub async fn claim_in(pool: &PgPool, topic: &str, partition: i32) -> Self {
        let progress = tickpipe_store::claim(pool, topic, partition)
            .await
            .unwrap_or_else(|e| panic!("claim {topic}/{partition}: {e}"));
        Self {
            pool: pool.clone(),
            topic: topic.to_owned(),
            partition,
            progress,
        }
    }

    /// The partition's number.
    pub fn number(&self) -> i32 {
        self.partition
    }

    /// The progress as last claimed or committed.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// One aggregator commit: adds `rows`, stores `closed_before_ms` (every window starting before
    /// it is final for this partition) and appends the change log, in one transaction.
    ///
    /// # Panics
    /// If the commit fails or another claim of the partition fenced this one off.
    pub async fn commit(&mut self, closed_before_ms: i64, rows: Vec<WindowRow>) {
        let mut progress = self.progress.clone();
        progress.closed_before_ms = closed_before_ms;
        progress.watermark_ms = progress.watermark_ms.max(closed_before_ms);
        let flush = Flush {
            partition: self.partition,
            rows,
            progress,
        };
        let outcome = tickpipe_store::commit(&self.pool, &self.topic, &flush)
            .await
            .unwrap_or_else(|e| panic!("commit to {}/{}: {e}", self.topic, self.partition));
        assert_eq!(
            outcome,
            Commit::Written,
            "{}/{} was claimed again since this claim",
            self.topic,
            self.partition
        );
        self.progress = flush.progress;
    }

    /// Moves the partition's boundary to `closed_before_ms` without writing a window.
    pub async fn close_before(&mut self, closed_before_ms: i64) {
        self.commit(closed_before_ms, Vec::new()).await;
    }

    /// Commits `rows` [`CHUNK`] at a time, each commit storing `closed_before_ms`: for bulk seeding,
    /// where one transaction of a million rows would hold a million-element array per column.
    /// Returns how many rows were written.
    pub async fn commit_chunks(
        &mut self,
        closed_before_ms: i64,
        rows: impl IntoIterator<Item = WindowRow>,
    ) -> usize {
        let mut written = 0;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<WindowRow> = rows.by_ref().take(CHUNK).collect();
            written += chunk.len();
            self.commit(closed_before_ms, chunk).await;
        }
        if written == 0 {
            self.close_before(closed_before_ms).await;
        }
        written
    }
}

/// Claims `partition` of [`TOPIC`] and commits `rows` through it ([`CHUNK`] at a time), storing
/// `closed_before_ms`: a database as an aggregator leaves it after reading those windows.
pub async fn write(
    pool: &PgPool,
    partition: i32,
    closed_before_ms: i64,
    rows: impl IntoIterator<Item = WindowRow>,
) -> Partition {
    let mut claimed = Partition::claim(pool, partition).await;
    claimed.commit_chunks(closed_before_ms, rows).await;
    claimed
}

/// Claims `partition` of [`TOPIC`] and moves its boundary to `closed_before_ms`, as an aggregator
/// taking the partition over and closing windows without new rows.
pub async fn close_before(pool: &PgPool, partition: i32, closed_before_ms: i64) -> Partition {
    write(pool, partition, closed_before_ms, Vec::new()).await
}

/// A window written before open and close were recorded (migration [`OPEN_CLOSE_MIGRATION`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyWindow {
    pub ticker: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub sum: i64,
    pub count: i64,
    pub min: i64,
    pub max: i64,
}

/// A fresh database holding `legacy` windows as they are after an upgrade: migrated up to the
/// migration before [`OPEN_CLOSE_MIGRATION`], the windows (and `latest_windows`) written in that
/// schema, then migrated to the end, which leaves their open and close NULL. Seed newer rows on
/// it through [`write`] or a [`Partition`].
pub async fn legacy_database(legacy: &[LegacyWindow]) -> TestDatabase {
    assert!(
        tickpipe_store::schema::MIGRATOR
            .iter()
            .any(|m| m.version == OPEN_CLOSE_MIGRATION && m.description.contains("open close")),
        "migration {OPEN_CLOSE_MIGRATION} is no longer the one adding open and close"
    );
    let db = database_before(OPEN_CLOSE_MIGRATION).await;
    write_legacy(&db.pool, legacy).await;
    tickpipe_store::schema::MIGRATOR
        .run(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("migrate {} to the end: {e}", db.name));
    db
}

/// A fresh database migrated up to, not including, migration `version`: the schema an older
/// release left, for upgrade tests. Run `tickpipe_store::schema::MIGRATOR` on it to upgrade.
pub async fn database_before(version: i64) -> TestDatabase {
    let db = unmigrated_database().await;
    let before = Migrator {
        migrations: Cow::Owned(
            tickpipe_store::schema::MIGRATOR
                .migrations
                .iter()
                .filter(|m| m.version < version)
                .cloned()
                .collect(),
        ),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    before
        .run(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("migrate {} before {version}: {e}", db.name));
    db
}

/// The aggregator's insert of the schema before open and close (no change log then either).
/// Outside the store on purpose: the store writes today's schema, these rows predate it.
async fn write_legacy(pool: &PgPool, rows: &[LegacyWindow]) {
    sqlx::query(
        "INSERT INTO window_prices (ticker, window_start, window_end, price_sum, sample_count, min_price, max_price)
         SELECT ticker, TIMESTAMPTZ 'epoch' + start_ms * INTERVAL '1 millisecond',
                TIMESTAMPTZ 'epoch' + end_ms * INTERVAL '1 millisecond', price_sum, sample_count, min_price, max_price
         FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
              AS t(ticker, start_ms, end_ms, price_sum, sample_count, min_price, max_price)",
    )
    .bind(rows.iter().map(|r| r.ticker.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.start_ms).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.end_ms).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.sum).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.count).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.min).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.max).collect::<Vec<_>>())
    .execute(pool)
    .await
    .expect("legacy windows");
    sqlx::query(
        "INSERT INTO latest_windows (ticker, window_start)
         SELECT ticker, max(window_start) FROM window_prices GROUP BY ticker",
    )
    .execute(pool)
    .await
    .expect("legacy latest windows");
}

/// A fresh database without any migration (what [`TestDatabase::create`] makes before migrating).
pub async fn unmigrated_database() -> TestDatabase {
    let admin_url = crate::admin_database_url();
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin_url} ({e})"));
    let name = crate::unique_name("test");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    let url = crate::replace_database(&admin_url, &name);
    let settings = DatabaseSettings::direct(url.clone(), 4);
    let pool = tickpipe_common::db::lazy_pool(&settings).expect("pool");
    TestDatabase { name, url, pool }
}
