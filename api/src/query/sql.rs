//! The SQL a [`PriceQuery`] becomes: one statement per page, keyset-paginated, fetching one row
//! more than the limit to learn whether a next page exists.
//!
//! The latest form reads through `latest_windows` (one index seek per ticker, whatever the table's
//! size) and sorts by ticker in byte order (`COLLATE "C"`), windows and bars alike: the order of
//! the latest prices kept in memory (`changes::latest`), which must answer exactly as this query
//! does. The range form reads through the (ticker, window_start) or (window_start, ticker) index.
//!
//! `sort=desc` reverses every order as a whole (each `ORDER BY` term descending, the keyset
//! comparison `<` instead of `>`), so each statement is its ascending twin read from the other end:
//! PostgreSQL scans the same btree indexes backwards (and a partitioned table's partitions in
//! reverse), and a descending page is exactly the reverse of the ascending one.
//!
//! Every query reads one table: the windows, or for bars the widest stored rollup whose width
//! divides the bar (`tickpipe_store::history::source_for`), so a bar costs at most a handful of rows
//! however long the history. Bars stored at their own width are read like windows.
//!
//! Bars are rolled up in PostgreSQL (sums and counts added, the open of the smallest key, the
//! close of the largest). The latest form gives the bar holding each ticker's latest window; the
//! range form reads bar by bar so that a page reads the windows of its own bars and no more (see
//! [`PriceQuery::range_bars_sql`]).
//!
//! Every entry says whether it is `complete`: every partition's stored boundary
//! (`aggregator_progress.closed_before_ms`, the minimum over all rows; no rows, not complete) has
//! passed its end, so its values are final. It is read in the same statement as the rows, so both
//! come from one snapshot.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};

use crate::params::cursor::Cursor;
use crate::params::interval::Interval;
use crate::params::sort::Sort;

use super::{Form, PriceQuery};

/// The `complete` boundary in Unix milliseconds, as a scalar subquery (`NULL` while nothing is
/// complete): every window ending at or before it is final. Defined by the store, with the
/// tables it reads.
pub(crate) const BOUNDARY_SQL: &str = tickpipe_store::boundary::BOUNDARY_MS_SQL;

/// A bar's values from its windows (alias `p`, grouped): sums and counts added (the average is
/// never one of averages), minimum and maximum, and what [`bar_open_close`] needs: whether every
/// window's open (close) is known, and the first and last window.
const BAR_AGGREGATES: &str = "sum(p.price_sum)::float8 / sum(p.sample_count)::float8 AS average_price, \
     sum(p.sample_count)::bigint AS sample_count, min(p.min_price) AS min_price, max(p.max_price) AS max_price, \
     count(p.open_key) = count(*) AS open_known, count(p.close_key) = count(*) AS close_known, \
     min(p.window_start) AS first_window, max(p.window_start) AS last_window";

type Sql = QueryBuilder<'static, Postgres>;

impl PriceQuery {
    /// The SQL of this query, fetching one row more than the limit to learn whether a next page exists.
    pub(crate) fn to_sql(&self) -> Sql {
        match (self.bars, self.form) {
            (None, _) => self.windows_sql(),
            // Bars stored at their own width: read like windows, one row an entry.
            (Some(_), Form::Range { .. }) if self.stored_bars => self.windows_sql(),
            (Some(bars), Form::Latest) => self.latest_bars_sql(bars),
            (Some(bars), Form::Range { start, end }) => self.range_bars_sql(bars, start, end),
        }
    }

    /// One entry per stored window.
    fn windows_sql(&self) -> Sql {
        let mut sql = QueryBuilder::new(
            "SELECT w.ticker, w.window_start, w.window_end, w.average_price, w.sample_count, \
             w.min_price, w.max_price, w.open_price, w.close_price, ",
        );
        sql.push(complete("w.window_end"));
        if let Form::Range { .. } = self.form {
            sql.push(", ").push(range_meta(self.table));
        }
        match self.form {
            Form::Latest => {
                // LATERAL with LIMIT cannot be flattened into a join, so whatever the statistics say
                // (a young `latest_windows` is never analyzed), each ticker costs one index lookup
                // instead of a hash join over the whole of `window_prices`.
                sql.push(
                    " FROM latest_windows l CROSS JOIN LATERAL (SELECT * FROM window_prices p \
                     WHERE p.ticker = l.ticker AND p.window_start = l.window_start LIMIT 1) w WHERE TRUE",
                );
                self.push_ticker_filter(&mut sql, "l.ticker");
                self.push_latest_order(&mut sql);
            }
            Form::Range { start, end } => {
                sql.push(format!(" FROM {} w WHERE TRUE", self.table));
                self.push_ticker_filter(&mut sql, "w.ticker");
                if let Some(start) = start {
                    sql.push(" AND w.window_start >= ").push_bind(start);
                }
                if let Some(end) = end {
                    sql.push(" AND w.window_start < ").push_bind(end);
                }
                if let Some(Cursor::Range {
                    window_start,
                    ticker,
                    ..
                }) = &self.after
                {
                    sql.push(format!(
                        " AND (w.window_start, w.ticker) {} (",
                        self.sort.after()
                    ))
                    .push_bind(*window_start)
                    .push(", ")
                    .push_bind(ticker.clone())
                    .push(")");
                }
                let direction = self.sort.direction();
                sql.push(format!(
                    " ORDER BY w.window_start{direction}, w.ticker{direction}"
                ));
            }
        }
        sql.push(" LIMIT ").push_bind(self.limit + 1);
        sql
    }

    /// The latest form's keyset and order over `latest_windows` (alias `l`): after the cursor's
    /// ticker, by ticker, in byte order whatever the database's collation (the order of the latest
    /// prices kept in memory, `changes::latest`), reversed for `desc`.
    fn push_latest_order(&self, sql: &mut Sql) {
        if let Some(Cursor::Latest { ticker, .. }) = &self.after {
            sql.push(format!(
                " AND l.ticker COLLATE \"C\" {} ",
                self.sort.after()
            ))
            .push_bind(ticker.clone());
        }
        sql.push(format!(
            " ORDER BY l.ticker COLLATE \"C\"{}",
            self.sort.direction()
        ));
    }

    /// The bar holding each ticker's latest window: per ticker of `latest_windows`, one aggregate
    /// over that bar's windows through the primary key (the aggregate keeps it from being flattened
    /// into a join, as the LIMIT does in [`Self::windows_sql`]).
    fn latest_bars_sql(&self, bars: Interval) -> Sql {
        let width = bars.sql();
        let table = self.table;
        let mut sql = QueryBuilder::new(format!(
            "SELECT l.ticker, b.bar_start AS window_start, b.bar_start + {width} AS window_end, \
             g.average_price, g.sample_count, g.min_price, g.max_price, {}, {} \
             FROM latest_windows l \
             CROSS JOIN LATERAL (SELECT date_bin({width}, l.window_start, TIMESTAMPTZ 'epoch') AS bar_start) b \
             CROSS JOIN LATERAL (SELECT {BAR_AGGREGATES} FROM {table} p \
             WHERE p.ticker = l.ticker AND p.window_start >= b.bar_start AND p.window_start < b.bar_start + {width} \
             HAVING count(*) > 0) g WHERE TRUE",
            bar_open_close(table, "l.ticker"),
            complete(&format!("b.bar_start + {width}")),
        ));
        self.push_ticker_filter(&mut sql, "l.ticker");
        self.push_latest_order(&mut sql);
        sql.push(" LIMIT ").push_bind(self.limit + 1);
        sql
    }

    /// Bars starting in `[start, end)` (already rounded up to the bar width), after the cursor in
    /// the page's order.
    ///
    /// A plain `GROUP BY date_bin(...)` over the range would have to aggregate all of it before its
    /// `ORDER BY ... LIMIT` could pick a page (the planner cannot tell that `date_bin` follows the
    /// index order), so an open-ended range would read the table to its end for every page. Instead
    /// a recursive query walks the non-empty bars in order, one index seek each (`min(window_start)`
    /// at or after the previous bar's end, so gaps cost nothing), counting their (bar, ticker)
    /// groups with an index-only scan, and stops once it has the page and one more group; each of
    /// those bars is then aggregated from its own windows. Every window read belongs to the page's
    /// bars. Descending, the walk goes the other way: from the last non-empty bar
    /// (`max(window_start)`), each step the last one before the previous bar's start.
    fn range_bars_sql(
        &self,
        bars: Interval,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Sql {
        let width = bars.sql();
        let cursor_bar = match &self.after {
            Some(Cursor::Range { window_start, .. }) => Some(*window_start),
            _ => None,
        };
        let seek = match self.sort {
            // Ascending, the walk starts at the later of the range's start and the cursor's bar.
            Sort::Asc => Seek {
                lower: match (start, cursor_bar) {
                    (Some(start), Some(bar)) => Some(start.max(bar)),
                    (start, bar) => start.or(bar),
                },
                upper: end,
                before_end_of: None,
            },
            // Descending, at the earlier of the range's end and the cursor's bar's end.
            Sort::Desc => Seek {
                lower: start,
                upper: end,
                before_end_of: cursor_bar,
            },
        };
        let table = self.table;
        let mut sql =
            QueryBuilder::new("WITH RECURSIVE bars (bar_start, groups) AS (SELECT f.bar_start, ");
        self.push_groups(&mut sql, &width, "f.bar_start");
        sql.push(" FROM (");
        self.push_seek(&mut sql, &width, &seek, None);
        sql.push(") f WHERE f.bar_start IS NOT NULL UNION ALL SELECT n.bar_start, bars.groups + ");
        self.push_groups(&mut sql, &width, "n.bar_start");
        sql.push(" FROM bars CROSS JOIN LATERAL (");
        self.push_seek(&mut sql, &width, &seek, Some("bars.bar_start"));
        sql.push(") n WHERE n.bar_start IS NOT NULL AND bars.groups <= ")
            .push_bind(self.limit);
        sql.push(format!(
            ") SELECT g.ticker, bars.bar_start AS window_start, bars.bar_start + {width} AS window_end, \
             g.average_price, g.sample_count, g.min_price, g.max_price, {}, {}, {} \
             FROM bars CROSS JOIN LATERAL (SELECT p.ticker, {BAR_AGGREGATES} FROM {table} p \
             WHERE p.window_start >= bars.bar_start AND p.window_start < bars.bar_start + {width}",
            bar_open_close(table, "g.ticker"),
            complete(&format!("bars.bar_start + {width}")),
            range_meta(table),
        ));
        self.push_row_filter(&mut sql, &width);
        let direction = self.sort.direction();
        sql.push(format!(
            " GROUP BY p.ticker) g ORDER BY bars.bar_start{direction}, g.ticker{direction} LIMIT "
        ))
        .push_bind(self.limit + 1);
        sql
    }

    /// The walk's step: the start of the first non-empty bar in the page's order after the bar
    /// starting at `from` (`None`: the first of the walk), inside the seek's bounds.
    fn push_seek(&self, sql: &mut Sql, width: &str, seek: &Seek, from: Option<&str>) {
        sql.push(format!(
            "SELECT date_bin({width}, {}(p.window_start), TIMESTAMPTZ 'epoch') AS bar_start \
             FROM {} p WHERE TRUE",
            self.sort.first(),
            self.table
        ));
        match (self.sort, from) {
            (Sort::Asc, Some(previous)) => {
                sql.push(format!(" AND p.window_start >= {previous} + {width}"));
            }
            (Sort::Desc, Some(previous)) => {
                sql.push(format!(" AND p.window_start < {previous}"));
            }
            (_, None) => {}
        }
        if let Some(lower) = seek.lower {
            sql.push(" AND p.window_start >= ").push_bind(lower);
        }
        if let Some(upper) = seek.upper {
            sql.push(" AND p.window_start < ").push_bind(upper);
        }
        if let Some(bar) = seek.before_end_of {
            sql.push(" AND p.window_start < ")
                .push_bind(bar)
                .push(format!(" + {width}"));
        }
        self.push_row_filter(sql, width);
    }

    /// The number of (bar, ticker) groups of the page in the bar starting at `bar`.
    fn push_groups(&self, sql: &mut Sql, width: &str, bar: &str) {
        sql.push(format!(
            "(SELECT count(DISTINCT p.ticker) FROM {} p \
             WHERE p.window_start >= {bar} AND p.window_start < {bar} + {width}",
            self.table
        ));
        self.push_row_filter(sql, width);
        sql.push(")");
    }

    /// The windows (alias `p`) a bar query may read: the tickers asked for, and after a cursor only
    /// windows of a later bar or of a later ticker (the cursor's bar is where the walk starts);
    /// descending, of an earlier bar or an earlier ticker.
    fn push_row_filter(&self, sql: &mut Sql, width: &str) {
        self.push_ticker_filter(sql, "p.ticker");
        if let Some(Cursor::Range {
            window_start,
            ticker,
            ..
        }) = &self.after
        {
            let (other_bar, other_ticker) = match self.sort {
                Sort::Asc => (
                    " AND (p.window_start >= ",
                    format!(" + {width} OR p.ticker > "),
                ),
                Sort::Desc => (" AND (p.window_start < ", " OR p.ticker < ".to_owned()),
            };
            sql.push(other_bar)
                .push_bind(*window_start)
                .push(other_ticker)
                .push_bind(ticker.clone())
                .push(")");
        }
    }

    fn push_ticker_filter(&self, sql: &mut Sql, column: &str) {
        match self.tickers.as_deref() {
            None => {}
            // One ticker as a plain equality, so the planner can walk the primary key in order.
            Some([one]) => {
                sql.push(format!(" AND {column} = ")).push_bind(one.clone());
            }
            Some(many) => {
                sql.push(format!(" AND {column} = ANY("))
                    .push_bind(many.to_vec())
                    .push(")");
            }
        }
    }
}

/// Where the range bars' walk may go: windows starting in `[lower, upper)`, and before the end of
/// the bar starting at `before_end_of` (descending after a cursor: where the walk starts).
#[derive(Debug)]
struct Seek {
    lower: Option<DateTime<Utc>>,
    upper: Option<DateTime<Utc>>,
    before_end_of: Option<DateTime<Utc>>,
}

/// The open and close of a bar (alias `g`, from [`BAR_AGGREGATES`]) of `ticker`: the open of its
/// smallest key and the close of its largest. A key starts with the record timestamp, which is
/// what put the record in its window, so every key of a window lies inside it: the smallest key of
/// a bar is its first window's open and the largest its last window's close, each one primary-key
/// lookup. (Folding the keys themselves, `min(open_key || open_price)` or `array_agg(open_price
/// ORDER BY open_key)`, made a day's bars two to three times slower.) A window with an unknown
/// (NULL) open or close, written before they were recorded, makes the bar's unknown too.
fn bar_open_close(table: &str, ticker: &str) -> String {
    format!(
        "CASE WHEN g.open_known THEN (SELECT o.open_price FROM {table} o \
         WHERE o.ticker = {ticker} AND o.window_start = g.first_window) END AS open_price, \
         CASE WHEN g.close_known THEN (SELECT c.close_price FROM {table} c \
         WHERE c.ticker = {ticker} AND c.window_start = g.last_window) END AS close_price"
    )
}

/// A range's two trailing columns, the same on every row: how far retention has dropped `table`'s
/// history (`dropped_before`, so that dropped history is refused rather than answered with a
/// shorter page) and the `complete` boundary in Unix milliseconds (`boundary_ms`, for the caching
/// headers). Scalar subqueries, evaluated once per statement from the rows' own snapshot: no
/// statement of their own, whose round trip cost as much as a small page's query. `table` is one
/// of the store's table names, never input.
fn range_meta(table: &str) -> String {
    debug_assert!(table
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
    format!(
        "(SELECT h.dropped_before FROM history_tables h WHERE h.table_name = '{table}') \
         AS dropped_before, {BOUNDARY_SQL}::int8 AS boundary_ms"
    )
}

/// The same two values of `table` alone, for a range whose page came back empty (no row to carry
/// them).
pub(crate) fn range_meta_sql(table: &str) -> String {
    format!("SELECT {}", range_meta(table))
}

/// The `complete` column of an entry ending at `end`: whether every partition has closed every
/// window before it (the least boundary of all partitions, [`BOUNDARY_SQL`]; no partition yet, not
/// complete). A scalar subquery in the same statement: read once, from the same snapshot as the rows.
fn complete(end: &str) -> String {
    format!("COALESCE(extract(epoch FROM {end}) * 1000 <= {BOUNDARY_SQL}, false) AS complete")
}
