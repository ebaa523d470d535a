//! History at any size: the rollups kept beside the windows, the time partitions of every table,
//! and retention (schema and SQL functions in `migrations/20261204000001_history.sql`).
//!
//! A rollup is a table of wider windows (bars) with the columns of `window_prices`, kept in the
//! same transaction as the windows it folds ([`crate::write`]), so it is exact by construction: at
//! every commit a bar is the fold of its windows. A query for bars of any width reads the coarsest
//! stored table whose width divides it ([`source_for`]), so its cost follows the answer, not the
//! length of the history.
//!
//! Partitions are epoch-aligned spans of `history_tables.partition_secs`: created ahead of the
//! clock by the aggregator's housekeeping ([`create_ahead`]), and by every commit for the spans its
//! windows fall in (a replay of old records, a restart after a long stop), so no write fails for
//! want of one. Retention ([`apply_retention`]) drops whole partitions once they end before the
//! retention horizon of their table, and records how far it dropped ([`dropped_before`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use crate::rows::{Accumulator, WindowRow};

const DAY_MS: i64 = 86_400_000;

/// The table of the windows themselves.
pub const WINDOWS_TABLE: &str = "window_prices";

/// A stored rollup: a table of bars of one width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    pub table: &'static str,
    pub width_secs: u32,
}

/// Every rollup table, narrowest first (as in the migration's `history_tables`). Which of them are
/// kept depends on the window width ([`rollups_for`]). 1m, 5m, 1h and 1d: every bar width the API
/// offers is one of them or at most 6 rows of a narrower one (15m and 30m from 5m, 4h from 1h),
/// and each window costs four small upserts.
pub const ROLLUPS: [Rollup; 4] = [
    Rollup {
        table: "bars_1m",
        width_secs: 60,
    },
    Rollup {
        table: "bars_5m",
        width_secs: 300,
    },
    Rollup {
        table: "bars_1h",
        width_secs: 3600,
    },
    Rollup {
        table: "bars_1d",
        width_secs: 86_400,
    },
];

/// The rollups kept for windows of `window_secs`: those wider than the window and a multiple of it
/// (a bar must be a union of whole windows; one as wide as the window would be a copy of it).
pub fn rollups_for(window_secs: u32) -> impl Iterator<Item = Rollup> {
    ROLLUPS.into_iter().filter(move |rollup| {
        window_secs > 0 && rollup.width_secs > window_secs && rollup.width_secs % window_secs == 0
    })
}

/// A stored table and the width of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub table: &'static str,
    pub width_secs: u32,
}

/// The table bars of `bar_secs` are read from, for windows of `window_secs`: the widest stored
/// table whose width divides the bar (the windows themselves when no rollup does).
pub fn source_for(window_secs: u32, bar_secs: u32) -> Source {
    rollups_for(window_secs)
        .filter(|rollup| bar_secs % rollup.width_secs == 0)
        .last()
        .map(|rollup| Source {
            table: rollup.table,
            width_secs: rollup.width_secs,
        })
        .unwrap_or(Source {
            table: WINDOWS_TABLE,
            width_secs: window_secs,
        })
}

/// Every stored table for windows of `window_secs`: the windows, then the kept rollups.
pub fn sources(window_secs: u32) -> Vec<Source> {
    std::iter::once(Source {
        table: WINDOWS_TABLE,
        width_secs: window_secs,
    })
    .chain(rollups_for(window_secs).map(|rollup| Source {
        table: rollup.table,
        width_secs: rollup.width_secs,
    }))
    .collect()
}

/// A width as the API names it: `30s`, `1m`, `4h`, `1d` (the largest unit that divides it).
pub fn width_name(secs: u32) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The rows of one rollup a flush adds: its windows folded per (ticker, bar), in key order (so
/// concurrent commits lock the bars they share in the same order and cannot deadlock).
pub(crate) fn fold(rows: &[WindowRow], rollup: Rollup) -> Vec<WindowRow> {
    let width_ms = i64::from(rollup.width_secs) * 1000;
    let mut bars: BTreeMap<(&str, i64), Accumulator> = BTreeMap::new();
    for row in rows {
        let bar_start = row.window_start_ms.div_euclid(width_ms) * width_ms;
        bars.entry((row.ticker.as_str(), bar_start))
            .and_modify(|bar| bar.merge(&row.totals))
            .or_insert(row.totals);
    }
    bars.into_iter()
        .map(|((ticker, start), totals)| WindowRow {
            ticker: ticker.to_owned(),
            window_start_ms: start,
            window_end_ms: start + width_ms,
            totals,
        })
        .collect()
}

/// How long the upkeep's partition DDL waits for its table's lock. Creating or dropping a partition
/// takes an ACCESS EXCLUSIVE lock on the parent table, and while that request waits behind a long
/// read every later query of the table (commits and API reads) queues behind it: a slow report
/// would stall the pipeline. Giving up quickly and trying again at the next upkeep bounds that
/// stall; commits create any partition they lack themselves, so nothing depends on the upkeep.
const DDL_LOCK_TIMEOUT: &str = "250ms";

/// Runs `statement` (one row, one integer) in a transaction of its own under
/// [`DDL_LOCK_TIMEOUT`]: `Ok(None)` when the lock was not granted in time (nothing changed).
async fn under_lock_timeout(
    pool: &PgPool,
    statement: sqlx::query::QueryScalar<'_, sqlx::Postgres, i32, sqlx::postgres::PgArguments>,
) -> Result<Option<i32>, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'"))
        .execute(&mut *transaction)
        .await?;
    match statement.fetch_one(&mut *transaction).await {
        Ok(value) => {
            transaction.commit().await?;
            Ok(Some(value))
        }
        Err(error) if is_lock_timeout(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// `lock_not_available` (55P03): the lock timeout expired.
fn is_lock_timeout(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| code == "55P03")
}

/// What a pass of partition DDL did: the count per table that changed, and the tables whose lock
/// was held by a long query (left for the next pass).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpkeepPass {
    pub done: Vec<(String, i32)>,
    pub deferred: Vec<String>,
}

/// Creates, for every table, the partition holding `now` and the next one if missing, so that
/// live writes find their partition made.
pub async fn create_ahead(pool: &PgPool) -> Result<UpkeepPass, sqlx::Error> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name FROM history_tables ORDER BY table_name")
            .fetch_all(pool)
            .await?;
    let mut pass = UpkeepPass::default();
    // A transaction per table: creating a partition locks its table until commit, and holding one
    // table's lock while waiting for another's could deadlock with a commit.
    for table in tables {
        let statement = sqlx::query_scalar(
            "SELECT tickpipe_ensure_partitions(table_name, now(), now() + partition_secs * INTERVAL '1 second')
             FROM history_tables WHERE table_name = $1",
        )
        .bind(table.clone());
        match under_lock_timeout(pool, statement).await? {
            Some(0) => {}
            Some(created) => pass.done.push((table, created)),
            None => pass.deferred.push(table),
        }
    }
    Ok(pass)
}

/// Creates the partitions of `tables` holding windows that start at `starts` (milliseconds),
/// missing ones only. Called before every commit: usually a catalog lookup per table and day.
pub(crate) async fn ensure_partitions<'e>(
    executor: impl PgExecutor<'e>,
    tables: &[&str],
    starts: impl Iterator<Item = i64>,
) -> Result<(), sqlx::Error> {
    // Every partition spans whole days, so the days of the windows name every partition needed.
    let days: BTreeSet<i64> = starts.map(|ms| ms.div_euclid(DAY_MS) * DAY_MS).collect();
    let days: Vec<DateTime<Utc>> = days
        .into_iter()
        .filter_map(DateTime::from_timestamp_millis)
        .collect();
    // One round trip; the creations commit with it. Creating partitions of two tables in one
    // statement holds the first's lock while taking the second's, which can deadlock with a
    // commit in flight; that happens at most when a new span starts (the housekeeping creates
    // them a span ahead), PostgreSQL breaks it within `deadlock_timeout`, and the aggregator
    // retries a failed commit.
    sqlx::query(
        "SELECT tickpipe_ensure_partitions(t, d, d) FROM UNNEST($1::text[]) AS t, UNNEST($2::timestamptz[]) AS d",
    )
    .bind(tables)
    .bind(days)
    .execute(executor)
    .await?;
    Ok(())
}

/// How long a table's rows are kept: `None` for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub table: &'static str,
    pub keep: Option<Duration>,
}

/// Drops every partition of each table that ends more than its retention ago: the number dropped
/// per table (only tables that dropped some), and the tables a long query kept locked.
pub async fn apply_retention(
    pool: &PgPool,
    policy: &[Retention],
) -> Result<UpkeepPass, sqlx::Error> {
    let mut pass = UpkeepPass::default();
    for retention in policy {
        let Some(keep) = retention.keep else { continue };
        let statement = sqlx::query_scalar(
            "SELECT tickpipe_drop_partitions($1, now() - $2 * INTERVAL '1 millisecond')",
        )
        .bind(retention.table)
        .bind(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        match under_lock_timeout(pool, statement).await? {
            Some(0) => {}
            Some(dropped) => pass.done.push((retention.table.to_owned(), dropped)),
            None => pass.deferred.push(retention.table.to_owned()),
        }
    }
    Ok(pass)
}

/// For each table retention has dropped from, the instant before which its history is gone.
pub async fn dropped_before<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<HashMap<String, DateTime<Utc>>, sqlx::Error> {
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT table_name, dropped_before FROM history_tables WHERE dropped_before IS NOT NULL",
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::PriceKey;

    #[test]
    fn rollups_are_wider_multiples_of_the_window() {
        let tables = |w| rollups_for(w).map(|r| r.table).collect::<Vec<_>>();
        assert_eq!(tables(30), ["bars_1m", "bars_5m", "bars_1h", "bars_1d"]);
        assert_eq!(tables(60), ["bars_5m", "bars_1h", "bars_1d"]);
        assert_eq!(tables(7200), ["bars_1d"]);
        assert_eq!(tables(86_400), Vec::<&str>::new());
        assert_eq!(tables(45), ["bars_1h", "bars_1d"]);
    }

    #[test]
    fn a_bar_is_read_from_the_widest_table_dividing_it() {
        let table = |w, b| source_for(w, b).table;
        assert_eq!(table(30, 30), "window_prices");
        assert_eq!(table(30, 60), "bars_1m");
        assert_eq!(table(30, 900), "bars_5m");
        assert_eq!(table(30, 1800), "bars_5m");
        assert_eq!(table(30, 14_400), "bars_1h");
        assert_eq!(table(30, 86_400), "bars_1d");
        assert_eq!(table(60, 60), "window_prices");
        assert_eq!(table(45, 90), "window_prices");
        assert_eq!(table(7200, 14_400), "window_prices");
    }

    #[test]
    fn widths_are_named_by_their_largest_unit() {
        let names: Vec<String> = [30, 60, 900, 3600, 14_400, 86_400, 90]
            .into_iter()
            .map(width_name)
            .collect();
        assert_eq!(names, ["30s", "1m", "15m", "1h", "4h", "1d", "90s"]);
    }

    #[test]
    fn a_flush_folds_into_bars_in_key_order() {
        let row = |ticker: &str, start_ms: i64, price: i64, offset: i64| WindowRow {
            ticker: ticker.to_owned(),
            window_start_ms: start_ms,
            window_end_ms: start_ms + 30_000,
            totals: Accumulator::new(
                price,
                PriceKey {
                    timestamp_ms: start_ms + 1,
                    partition: 0,
                    offset,
                },
            ),
        };
        let rows = [
            row("MSFT", 90_000, 7, 3),
            row("AMZN", 30_000, 2, 1),
            row("AMZN", 0, 1, 0),
            row("AMZN", 60_000, 3, 2),
        ];
        let bars = fold(&rows, ROLLUPS[0]);
        let keys: Vec<(&str, i64, i64)> = bars
            .iter()
            .map(|b| (b.ticker.as_str(), b.window_start_ms, b.window_end_ms))
            .collect();
        assert_eq!(
            keys,
            [
                ("AMZN", 0, 60_000),
                ("AMZN", 60_000, 120_000),
                ("MSFT", 60_000, 120_000)
            ]
        );
        let first = &bars[0].totals;
        assert_eq!(
            (first.sum, first.count, first.open.price, first.close.price),
            (3, 2, 1, 2)
        );
    }
}
