//! `GET /v1/get-prices` parameters: parsing, validation, cursors and the SQL they become.
//!
//! Kept free of I/O so every rule has a fast unit test. Two query forms exist:
//! - latest: no `startTime`/`endTime`, the latest written window of each ticker, sorted by ticker,
//!   read through `latest_windows` (one index seek per ticker, whatever the table's size);
//! - range: windows whose start lies in `[startTime, endTime)`, sorted by window start then ticker,
//!   read through the (ticker, window_start) or (window_start, ticker) index.
//!
//! With an `interval` wider than the aggregator's window, each entry is a bar: the windows of one
//! ticker inside one epoch-aligned interval, rolled up in PostgreSQL (sums and counts added, the
//! open of the smallest key, the close of the largest). The latest form gives the bar holding each
//! ticker's latest window; the range form the bars starting in `[startTime, endTime)`, which are
//! exactly the windows starting in `[ceil(startTime), ceil(endTime))` (ceil to the bar), read bar by
//! bar so that a page reads the windows of its own bars and no more (see [`PriceQuery::to_sql`]).
//!
//! Every entry says whether it is `complete`: every partition's stored boundary
//! (`aggregator_progress.closed_before_ms`, the minimum over all rows; no rows, not complete) has
//! passed its end, so its values are final. It is read in the same statement as the rows, so both
//! come from one snapshot.
//!
//! Pagination is keyset: the cursor holds the sort key of the last row returned, never an offset,
//! and for bars their width, so that it continues only a query with the same `interval`.
//!
//! Each parameter's syntax is also published as a pattern in the OpenAPI document ([`patterns`]);
//! the parsers here accept exactly what those patterns (plus the calendar) accept, and the unit
//! tests check the two against each other, so a client generated from the document sends only
//! requests the API takes, and whatever the document forbids is a 400.

use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{Postgres, QueryBuilder};
use tickpipe_common::message::{validate_ticker_name, MAX_TICKER_LEN};

use crate::interval::{Interval, Window, DAY_SECS};
use crate::pattern::{integer_range, Hex};

pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;
/// Most names one `ticker` parameter may list (counted as given, before duplicates are dropped,
/// so that the pattern in the OpenAPI document can state it).
pub const MAX_TICKERS: usize = 100;
pub const ACCEPTED_PARAMETERS: [&str; 6] = [
    "ticker",
    "startTime",
    "endTime",
    "limit",
    "cursor",
    "interval",
];

/// Earliest accepted time, in Unix seconds: 0000-01-01T00:00:00+23:59, the earliest instant RFC 3339
/// can write. Every time input (`startTime`, `endTime`, the instant in a cursor) must lie between
/// [`MIN_TIME_SECS`] and [`MAX_TIME_SECS`] (inclusive, with any fraction of that last second).
///
/// Why this range: PostgreSQL's `timestamptz` stores 4713 BC to 294276 AD, so any narrower range keeps
/// it from failing (a `-300000000000` used to be a 500), and this one is exactly what RFC 3339 text can
/// express with its four-digit years and offsets up to ±23:59. A narrower UTC range such as
/// 0001-01-01T00:00:00Z.. would reject well-formed RFC 3339 such as `0001-01-01T00:00:00+01:00`, which
/// the OpenAPI `date-time` format promises clients they may send.
pub const MIN_TIME_SECS: i64 = -62_167_305_540;
/// Latest accepted time, in Unix seconds: 9999-12-31T23:59:59-23:59, the latest instant RFC 3339 can
/// write (with any fraction of the second). See [`MIN_TIME_SECS`].
pub const MAX_TIME_SECS: i64 = 253_402_387_139;
/// The accepted range as the error messages and the documentation state it.
pub const TIME_RANGE_TEXT: &str =
    "from 0000-01-01T00:00:00+23:59 to 9999-12-31T23:59:59.999999999-23:59 \
     (Unix seconds -62167305540 to 253402387139)";
/// Most digits of a second's fraction accepted: nanoseconds, what the parser keeps (PostgreSQL then
/// keeps microseconds).
const MAX_FRACTION_DIGITS: usize = 9;

/// The patterns each parameter must match, as published in the OpenAPI document.
pub mod patterns {
    use super::*;

    /// RFC 3339 `date-time` (section 5.6) with an upper-case `T` and `Z`, seconds 00-59 (no leap
    /// second) and at most nine fraction digits. Every text it matches that names a real calendar
    /// day lies inside the accepted time range.
    pub static RFC3339: LazyLock<String> = LazyLock::new(|| {
        format!(
            "^[0-9]{{4}}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\
             (?:\\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
        )
    });

    /// One or more comma-separated names of 1-16 of `A-Z a-z 0-9 . -`, each optionally padded with
    /// spaces, at most [`MAX_TICKERS`] of them.
    pub static TICKERS: LazyLock<String> = LazyLock::new(|| {
        let name = format!(" *[A-Za-z0-9.-]{{1,{MAX_TICKER_LEN}}} *");
        format!("^{name}(?:,{name}){{0,{}}}$", MAX_TICKERS - 1)
    });

    /// The hex of `L|TICKER` or `R|UNIX-MS|TICKER`, or for bars `L|SECONDS|TICKER` or
    /// `R|SECONDS|UNIX-MS|TICKER`, lower case, with the milliseconds a canonical integer inside the
    /// accepted time range and the bar width a canonical integer from 1 to 86400.
    pub static CURSOR: LazyLock<String> = LazyLock::new(|| {
        // A-Z 41-5a, 0-9 30-39, '.' 2e, '-' 2d.
        let ticker_byte = "(?:4[1-9a-f]|5[0-9a]|3[0-9]|2[de])";
        let millis = integer_range::<Hex>(MIN_TIME_SECS * 1000, MAX_TIME_SECS * 1000 + 999);
        let width = integer_range::<Hex>(1, i64::from(DAY_SECS));
        format!(
            "^(?:4c7c(?:{width}7c)?|527c(?:{width}7c)?{millis}7c){ticker_byte}{{1,{MAX_TICKER_LEN}}}$"
        )
    });
}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceQuery {
    /// Upper-cased, deduplicated, sorted; `None` means every ticker.
    pub tickers: Option<Vec<String>>,
    pub form: Form,
    /// `None`: one entry per window (no `interval`, or the window's own). Otherwise the width of
    /// the bars, a multiple of the window.
    pub bars: Option<Interval>,
    pub limit: i64,
    pub after: Option<Cursor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Latest,
    /// Bounds on the start of the windows read. For bars they are the given bounds rounded up to
    /// the bar width, which makes them bounds on the bars' starts too.
    Range {
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    },
}

impl Form {
    /// `latest` or `range`, for the logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Latest => "latest",
            Self::Range { .. } => "range",
        }
    }
}

/// The sort key of the last row of a page, and for bars their width in seconds (`bar_secs`,
/// `None` for windows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    Latest {
        bar_secs: Option<u32>,
        ticker: String,
    },
    Range {
        bar_secs: Option<u32>,
        window_start: DateTime<Utc>,
        ticker: String,
    },
}

impl Cursor {
    /// Opaque to clients: hex of `L|ticker` or `R|unix-ms|ticker`, with the bar width in seconds
    /// after the letter for bars (`L|3600|ticker`, `R|3600|unix-ms|ticker`).
    pub fn encode(&self) -> String {
        let width = |bar_secs: &Option<u32>| bar_secs.map(|s| format!("{s}|")).unwrap_or_default();
        let plain = match self {
            Self::Latest { bar_secs, ticker } => format!("L|{}{ticker}", width(bar_secs)),
            Self::Range {
                bar_secs,
                window_start,
                ticker,
            } => format!(
                "R|{}{}|{ticker}",
                width(bar_secs),
                window_start.timestamp_millis()
            ),
        };
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// The bar width the cursor was written for (`None`: windows).
    fn bar_secs(&self) -> Option<u32> {
        match self {
            Self::Latest { bar_secs, .. } | Self::Range { bar_secs, .. } => *bar_secs,
        }
    }

    /// Reads what [`Cursor::encode`] wrote: exactly the texts [`patterns::CURSOR`] matches.
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        // Only what `encode` writes: lower-case hex (so that the published pattern is exact).
        let is_lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if text.len() % 2 != 0 || text.len() > 128 || !text.as_bytes().iter().all(is_lower_hex) {
            return Err(CursorError::Malformed);
        }
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<_>>()
            .ok_or(CursorError::Malformed)?;
        let plain = String::from_utf8(bytes).map_err(|_| CursorError::Malformed)?;
        let parts: Vec<&str> = plain.split('|').collect();
        let width = |text: &str| -> Result<Option<u32>, CursorError> {
            parse_canonical_integer(text)
                .filter(|secs| (1..=i64::from(DAY_SECS)).contains(secs))
                .and_then(|secs| u32::try_from(secs).ok())
                .map(Some)
                .ok_or(CursorError::Malformed)
        };
        let range = |bar_secs: Option<u32>, ms: &str, ticker: &str| {
            let ms = parse_canonical_integer(ms).ok_or(CursorError::Malformed)?;
            Ok(Self::Range {
                bar_secs,
                window_start: time_from_millis(ms).ok_or(CursorError::OutOfRange)?,
                ticker: ticker.to_owned(),
            })
        };
        let cursor = match parts.as_slice() {
            ["L", ticker] => Self::Latest {
                bar_secs: None,
                ticker: (*ticker).to_owned(),
            },
            ["L", secs, ticker] => Self::Latest {
                bar_secs: width(secs)?,
                ticker: (*ticker).to_owned(),
            },
            ["R", ms, ticker] => range(None, ms, ticker)?,
            ["R", secs, ms, ticker] => range(width(secs)?, ms, ticker)?,
            _ => return Err(CursorError::Malformed),
        };
        let ticker = match &cursor {
            Self::Latest { ticker, .. } | Self::Range { ticker, .. } => ticker,
        };
        validate_ticker_name(ticker).map_err(|_| CursorError::Malformed)?;
        Ok(cursor)
    }
}

/// Why a cursor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorError {
    /// Not something [`Cursor::encode`] writes.
    Malformed,
    /// Well formed, but its instant lies outside the accepted time range (an edited cursor).
    OutOfRange,
}

/// `-?[1-9][0-9]*` or `0`, as [`Cursor::encode`] writes integers; `+1`, `01` and `-0` are refused.
fn parse_canonical_integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    canonical.then(|| text.parse().ok()).flatten()
}

/// The instant `ms` milliseconds after the epoch, if it lies in the accepted time range.
fn time_from_millis(ms: i64) -> Option<DateTime<Utc>> {
    let seconds = ms.div_euclid(1000);
    if !(MIN_TIME_SECS..=MAX_TIME_SECS).contains(&seconds) {
        return None;
    }
    Utc.timestamp_millis_opt(ms).single()
}

impl PriceQuery {
    /// Validates raw query pairs; `window` is the aggregator's (`AGGREGATOR_WINDOW_SECS`). Every
    /// error names the parameter and the accepted form.
    pub fn parse(pairs: &[(String, String)], window: Window) -> Result<Self, String> {
        let given = Given::read(pairs, window)?;
        let bars = given
            .interval
            .filter(|interval| *interval != window.interval());
        let form = given.form(bars)?;
        let after = match &given.cursor {
            None => None,
            Some(text) => Some(parse_cursor(text, form, bars)?),
        };
        Ok(Self {
            tickers: given.tickers,
            form,
            bars,
            limit: given.limit.unwrap_or(DEFAULT_LIMIT),
            after,
        })
    }

    /// The SQL of this query, fetching one row more than the limit to learn whether a next page exists.
    pub fn to_sql(&self) -> QueryBuilder<'static, Postgres> {
        match (self.bars, self.form) {
            (None, _) => self.windows_sql(),
            (Some(bars), Form::Latest) => self.latest_bars_sql(bars),
            (Some(bars), Form::Range { start, end }) => self.range_bars_sql(bars, start, end),
        }
    }

    /// One entry per stored window.
    fn windows_sql(&self) -> QueryBuilder<'static, Postgres> {
        let mut sql = QueryBuilder::new(
            "SELECT w.ticker, w.window_start, w.window_end, w.average_price, w.sample_count, \
             w.min_price, w.max_price, w.open_price, w.close_price, ",
        );
        sql.push(complete("w.window_end"));
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
                // Byte order whatever the database's collation: the order of the latest prices
                // kept in memory (`stream::latest`), which must answer exactly as this query does.
                if let Some(Cursor::Latest { ticker, .. }) = &self.after {
                    sql.push(" AND l.ticker COLLATE \"C\" > ")
                        .push_bind(ticker.clone());
                }
                sql.push(" ORDER BY l.ticker COLLATE \"C\"");
            }
            Form::Range { start, end } => {
                sql.push(" FROM window_prices w WHERE TRUE");
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
                    sql.push(" AND (w.window_start, w.ticker) > (")
                        .push_bind(*window_start)
                        .push(", ")
                        .push_bind(ticker.clone())
                        .push(")");
                }
                sql.push(" ORDER BY w.window_start, w.ticker");
            }
        }
        sql.push(" LIMIT ").push_bind(self.limit + 1);
        sql
    }

    /// The bar holding each ticker's latest window: per ticker of `latest_windows`, one aggregate
    /// over that bar's windows through the primary key (the aggregate keeps it from being flattened
    /// into a join, as the LIMIT does in [`Self::windows_sql`]).
    fn latest_bars_sql(&self, bars: Interval) -> QueryBuilder<'static, Postgres> {
        let width = bars.sql();
        let mut sql = QueryBuilder::new(format!(
            "SELECT l.ticker, b.bar_start AS window_start, b.bar_start + {width} AS window_end, \
             g.average_price, g.sample_count, g.min_price, g.max_price, {}, {} \
             FROM latest_windows l \
             CROSS JOIN LATERAL (SELECT date_bin({width}, l.window_start, TIMESTAMPTZ 'epoch') AS bar_start) b \
             CROSS JOIN LATERAL (SELECT {BAR_AGGREGATES} FROM window_prices p \
             WHERE p.ticker = l.ticker AND p.window_start >= b.bar_start AND p.window_start < b.bar_start + {width} \
             HAVING count(*) > 0) g WHERE TRUE",
            bar_open_close("l.ticker"),
            complete(&format!("b.bar_start + {width}")),
        ));
        self.push_ticker_filter(&mut sql, "l.ticker");
        if let Some(Cursor::Latest { ticker, .. }) = &self.after {
            sql.push(" AND l.ticker > ").push_bind(ticker.clone());
        }
        sql.push(" ORDER BY l.ticker LIMIT ")
            .push_bind(self.limit + 1);
        sql
    }

    /// Bars starting in `[start, end)` (already rounded up to the bar width), after the cursor.
    ///
    /// A plain `GROUP BY date_bin(...)` over the range would have to aggregate all of it before its
    /// `ORDER BY ... LIMIT` could pick a page (the planner cannot tell that `date_bin` follows the
    /// index order), so an open-ended range would read the table to its end for every page. Instead
    /// a recursive query walks the non-empty bars in order, one index seek each (`min(window_start)`
    /// at or after the previous bar's end, so gaps cost nothing), counting their (bar, ticker)
    /// groups with an index-only scan, and stops once it has the page and one more group; each of
    /// those bars is then aggregated from its own windows. Every window read belongs to the page's
    /// bars.
    fn range_bars_sql(
        &self,
        bars: Interval,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> QueryBuilder<'static, Postgres> {
        let width = bars.sql();
        // The walk starts at the later of the range's start and the cursor's bar.
        let cursor_bar = match &self.after {
            Some(Cursor::Range { window_start, .. }) => Some(*window_start),
            _ => None,
        };
        let first = match (start, cursor_bar) {
            (Some(start), Some(bar)) => Some(start.max(bar)),
            (start, bar) => start.or(bar),
        };
        let seek = |sql: &mut QueryBuilder<'static, Postgres>, from: Option<&str>| {
            sql.push(format!(
                "SELECT date_bin({width}, min(p.window_start), TIMESTAMPTZ 'epoch') AS bar_start \
                 FROM window_prices p WHERE TRUE"
            ));
            match from {
                Some(previous) => {
                    sql.push(format!(" AND p.window_start >= {previous} + {width}"));
                }
                None => {
                    if let Some(first) = first {
                        sql.push(" AND p.window_start >= ").push_bind(first);
                    }
                }
            }
            if let Some(end) = end {
                sql.push(" AND p.window_start < ").push_bind(end);
            }
            self.push_row_filter(sql, &width);
        };
        let groups = |sql: &mut QueryBuilder<'static, Postgres>, bar: &str| {
            sql.push(format!(
                "(SELECT count(DISTINCT p.ticker) FROM window_prices p \
                 WHERE p.window_start >= {bar} AND p.window_start < {bar} + {width}"
            ));
            self.push_row_filter(sql, &width);
            sql.push(")");
        };
        let mut sql =
            QueryBuilder::new("WITH RECURSIVE bars (bar_start, groups) AS (SELECT f.bar_start, ");
        groups(&mut sql, "f.bar_start");
        sql.push(" FROM (");
        seek(&mut sql, None);
        sql.push(") f WHERE f.bar_start IS NOT NULL UNION ALL SELECT n.bar_start, bars.groups + ");
        groups(&mut sql, "n.bar_start");
        sql.push(" FROM bars CROSS JOIN LATERAL (");
        seek(&mut sql, Some("bars.bar_start"));
        sql.push(") n WHERE n.bar_start IS NOT NULL AND bars.groups <= ")
            .push_bind(self.limit);
        sql.push(format!(
            ") SELECT g.ticker, bars.bar_start AS window_start, bars.bar_start + {width} AS window_end, \
             g.average_price, g.sample_count, g.min_price, g.max_price, {}, {} \
             FROM bars CROSS JOIN LATERAL (SELECT p.ticker, {BAR_AGGREGATES} FROM window_prices p \
             WHERE p.window_start >= bars.bar_start AND p.window_start < bars.bar_start + {width}",
            bar_open_close("g.ticker"),
            complete(&format!("bars.bar_start + {width}")),
        ));
        self.push_row_filter(&mut sql, &width);
        sql.push(" GROUP BY p.ticker) g ORDER BY bars.bar_start, g.ticker LIMIT ")
            .push_bind(self.limit + 1);
        sql
    }

    /// The windows (alias `p`) a bar query may read: the tickers asked for, and after a cursor only
    /// windows of a later bar or of a later ticker (the cursor's bar is where the walk starts).
    fn push_row_filter(&self, sql: &mut QueryBuilder<'static, Postgres>, width: &str) {
        self.push_ticker_filter(sql, "p.ticker");
        if let Some(Cursor::Range {
            window_start,
            ticker,
            ..
        }) = &self.after
        {
            sql.push(" AND (p.window_start >= ")
                .push_bind(*window_start)
                .push(format!(" + {width} OR p.ticker > "))
                .push_bind(ticker.clone())
                .push(")");
        }
    }

    fn push_ticker_filter(&self, sql: &mut QueryBuilder<'static, Postgres>, column: &str) {
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

/// A bar's values from its windows (alias `p`, grouped): sums and counts added (the average is
/// never one of averages), minimum and maximum, and what [`bar_open_close`] needs: whether every
/// window's open (close) is known, and the first and last window.
const BAR_AGGREGATES: &str = "sum(p.price_sum)::float8 / sum(p.sample_count)::float8 AS average_price, \
     sum(p.sample_count)::bigint AS sample_count, min(p.min_price) AS min_price, max(p.max_price) AS max_price, \
     count(p.open_key) = count(*) AS open_known, count(p.close_key) = count(*) AS close_known, \
     min(p.window_start) AS first_window, max(p.window_start) AS last_window";

/// The open and close of a bar (alias `g`, from [`BAR_AGGREGATES`]) of `ticker`: the open of its
/// smallest key and the close of its largest. A key starts with the record timestamp, which is
/// what put the record in its window, so every key of a window lies inside it: the smallest key of
/// a bar is its first window's open and the largest its last window's close, each one primary-key
/// lookup. (Folding the keys themselves, `min(open_key || open_price)` or `array_agg(open_price
/// ORDER BY open_key)`, made a day's bars two to three times slower.) A window with an unknown
/// (NULL) open or close, written before they were recorded, makes the bar's unknown too.
fn bar_open_close(ticker: &str) -> String {
    format!(
        "CASE WHEN g.open_known THEN (SELECT o.open_price FROM window_prices o \
         WHERE o.ticker = {ticker} AND o.window_start = g.first_window) END AS open_price, \
         CASE WHEN g.close_known THEN (SELECT c.close_price FROM window_prices c \
         WHERE c.ticker = {ticker} AND c.window_start = g.last_window) END AS close_price"
    )
}

/// The `complete` column of an entry ending at `end`: whether every partition has closed every
/// window before it (the least boundary of all partitions; no partition yet, not complete). A
/// scalar subquery in the same statement: read once, from the same snapshot as the rows.
fn complete(end: &str) -> String {
    format!(
        "COALESCE(extract(epoch FROM {end}) * 1000 <= \
         (SELECT min(a.closed_before_ms) FROM aggregator_progress a), false) AS complete"
    )
}

/// Each parameter as given, checked on its own.
#[derive(Debug, Default)]
struct Given {
    tickers: Option<Vec<String>>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    interval: Option<Interval>,
    limit: Option<i64>,
    cursor: Option<String>,
}

impl Given {
    /// Reads the pairs: unknown parameters and repeated ones are refused.
    fn read(pairs: &[(String, String)], window: Window) -> Result<Self, String> {
        let mut given = Self::default();
        for (name, value) in pairs {
            let slot_taken = match name.as_str() {
                "ticker" => given.tickers.replace(parse_tickers(value)?).is_some(),
                "startTime" => given
                    .start
                    .replace(parse_time("startTime", value)?)
                    .is_some(),
                "endTime" => given.end.replace(parse_time("endTime", value)?).is_some(),
                "interval" => given.interval.replace(window.parse(value)?).is_some(),
                "limit" => given.limit.replace(parse_limit(value)?).is_some(),
                "cursor" => given.cursor.replace(value.clone()).is_some(),
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?}; accepted parameters are {}",
                        ACCEPTED_PARAMETERS.join(", ")
                    ))
                }
            };
            if slot_taken {
                return Err(format!(
                    "query parameter {name:?} is given more than once; give it once"
                ));
            }
        }
        Ok(given)
    }

    /// Latest without times, else a range whose start is before its end; for bars, the bounds
    /// rounded up to the bar width (a bar starts in `[start, end)` exactly when it starts in
    /// `[ceil(start), ceil(end))`).
    fn form(&self, bars: Option<Interval>) -> Result<Form, String> {
        let (start, end) = (self.start, self.end);
        if let (Some(s), Some(e)) = (start, end) {
            if s >= e {
                return Err("startTime must be earlier than endTime".to_owned());
            }
        }
        if start.is_none() && end.is_none() {
            return Ok(Form::Latest);
        }
        let Some(bars) = bars else {
            return Ok(Form::Range { start, end });
        };
        let ceil = |name: &str, time: Option<DateTime<Utc>>| match time {
            None => Ok(None),
            Some(time) => bars
                .ceil(time)
                .map(Some)
                .ok_or_else(|| format!("{name} is outside the accepted range, {TIME_RANGE_TEXT}")),
        };
        Ok(Form::Range {
            start: ceil("startTime", start)?,
            end: ceil("endTime", end)?,
        })
    }
}

/// A cursor that [`Cursor::encode`] wrote for a query of the same form and interval. For bars its
/// instant is taken as the bar holding it (an edited cursor still starts at a bar's start).
fn parse_cursor(text: &str, form: Form, bars: Option<Interval>) -> Result<Cursor, String> {
    let decoded = Cursor::decode(text).map_err(|error| match error {
        CursorError::Malformed => {
            "cursor is not valid; pass the nextCursor of a previous response unchanged".to_owned()
        }
        CursorError::OutOfRange => format!(
            "cursor holds a time outside the accepted range, {TIME_RANGE_TEXT}; pass the nextCursor of a previous response unchanged"
        ),
    })?;
    let fits = matches!(
        (&decoded, form),
        (Cursor::Latest { .. }, Form::Latest) | (Cursor::Range { .. }, Form::Range { .. })
    ) && decoded.bar_secs() == bars.map(Interval::secs);
    if !fits {
        return Err("cursor belongs to a different kind of query; repeat the parameters of the request that returned it".to_owned());
    }
    match (decoded, bars) {
        (
            Cursor::Range {
                bar_secs,
                window_start,
                ticker,
            },
            Some(bars),
        ) => Ok(Cursor::Range {
            bar_secs,
            window_start: bars.floor(window_start).ok_or_else(|| {
                format!("cursor holds a time outside the accepted range, {TIME_RANGE_TEXT}")
            })?,
            ticker,
        }),
        (decoded, _) => Ok(decoded),
    }
}

fn parse_tickers(value: &str) -> Result<Vec<String>, String> {
    let mut tickers = Vec::new();
    for raw in value.split(',') {
        // Spaces only (not tabs or newlines), as the published pattern says.
        let ticker = raw.trim_matches(' ').to_ascii_uppercase();
        validate_ticker_name(&ticker).map_err(|e| {
            format!("ticker: {e}; give one or more comma-separated, e.g. ticker=AMZN,MSFT")
        })?;
        tickers.push(ticker);
    }
    if tickers.len() > MAX_TICKERS {
        return Err(format!("ticker: at most {MAX_TICKERS} tickers per request"));
    }
    tickers.sort();
    tickers.dedup();
    Ok(tickers)
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, String> {
    let invalid = || {
        format!("{name} {value:?} is not a time; use RFC 3339 such as 2026-11-27T10:00:00Z (upper-case T and Z, seconds 00-59, at most {MAX_FRACTION_DIGITS} fraction digits), or integer Unix seconds")
    };
    let out_of_range =
        || format!("{name} {value:?} is outside the accepted range; use a time {TIME_RANGE_TEXT}");
    if let Ok(seconds) = value.parse::<i64>() {
        if !(MIN_TIME_SECS..=MAX_TIME_SECS).contains(&seconds) {
            return Err(out_of_range());
        }
        return Utc.timestamp_opt(seconds, 0).single().ok_or_else(invalid);
    }
    if !has_rfc3339_shape(value) {
        return Err(invalid());
    }
    // The shape is right; chrono checks the calendar (no 30 February). Four-digit years with
    // offsets up to ±23:59 cannot leave the accepted range, but the check stays as a guard.
    let time = DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid())?;
    if !(MIN_TIME_SECS..=MAX_TIME_SECS).contains(&time.timestamp()) {
        return Err(out_of_range());
    }
    Ok(time)
}

/// Whether `text` matches [`patterns::RFC3339`] (the tests hold the two together). By hand, because
/// chrono's RFC 3339 parser is more lenient (lower-case `t`, a space, leap seconds, any number of
/// fraction digits) than the pattern the document publishes.
fn has_rfc3339_shape(text: &str) -> bool {
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let is = |i: usize, c: u8| b.get(i) == Some(&c);
    let two = |i: usize, low: u8, high: u8| {
        digit(i) && digit(i + 1) && (low..=high).contains(&((b[i] - b'0') * 10 + (b[i + 1] - b'0')))
    };
    let date_time = (0..4).all(digit)
        && is(4, b'-')
        && two(5, 1, 12)
        && is(7, b'-')
        && two(8, 1, 31)
        && is(10, b'T')
        && two(11, 0, 23)
        && is(13, b':')
        && two(14, 0, 59)
        && is(16, b':')
        && two(17, 0, 59);
    if !date_time {
        return false;
    }
    let mut i = 19;
    if is(i, b'.') {
        let fraction = (i + 1..b.len()).take_while(|&j| digit(j)).count();
        if !(1..=MAX_FRACTION_DIGITS).contains(&fraction) {
            return false;
        }
        i += 1 + fraction;
    }
    match b.get(i) {
        Some(b'Z') => b.len() == i + 1,
        Some(b'+' | b'-') => {
            two(i + 1, 0, 23) && is(i + 3, b':') && two(i + 4, 0, 59) && b.len() == i + 6
        }
        _ => false,
    }
}

fn parse_limit(value: &str) -> Result<i64, String> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            format!("limit {value:?} is out of range; use an integer from 1 to {MAX_LIMIT}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &[(&str, &str)]) -> Result<PriceQuery, String> {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PriceQuery::parse(&pairs, Window::default())
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn no_parameters_is_latest_of_every_ticker() {
        let q = parse(&[]).expect("valid");
        assert_eq!(
            q,
            PriceQuery {
                tickers: None,
                form: Form::Latest,
                bars: None,
                limit: DEFAULT_LIMIT,
                after: None
            }
        );
    }

    #[test]
    fn tickers_are_case_insensitive_sorted_and_deduplicated() {
        let q = parse(&[("ticker", "msft,AMZN, amzn")]).expect("valid");
        assert_eq!(q.tickers, Some(vec!["AMZN".to_owned(), "MSFT".to_owned()]));
    }

    #[test]
    fn times_accept_rfc3339_and_unix_seconds() {
        let q = parse(&[
            ("startTime", "2026-11-27T10:00:00Z"),
            ("endTime", "1795777200"),
        ])
        .expect("valid");
        assert_eq!(
            q.form,
            Form::Range {
                start: Some(at("2026-11-27T10:00:00Z")),
                end: Some(at("2026-11-27T11:00:00Z"))
            }
        );
        let open = parse(&[("endTime", "2026-11-27T11:00:00+01:00")]).expect("valid");
        assert_eq!(
            open.form,
            Form::Range {
                start: None,
                end: Some(at("2026-11-27T10:00:00Z"))
            }
        );
    }

    #[test]
    fn errors_name_the_parameter_and_the_form() {
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static [&'static str],
        );
        let cases: [Case; 9] = [
            (
                &[("startTime", "yesterday")],
                &["startTime", "RFC 3339", "Unix seconds"],
            ),
            (
                &[("startTime", "1795777200"), ("endTime", "1795777200")],
                &["startTime", "endTime"],
            ),
            (&[("limit", "0")], &["limit", "1 to 10000"]),
            (&[("limit", "10001")], &["limit"]),
            (&[("limit", "ten")], &["limit"]),
            (&[("ticker", "AM ZN")], &["ticker"]),
            (&[("ticker", "")], &["ticker"]),
            (&[("cursor", "zz")], &["cursor"]),
            (
                &[("from", "1")],
                &["\"from\"", "ticker, startTime, endTime, limit, cursor"],
            ),
        ];
        for (query, needles) in cases {
            let error = parse(query).expect_err("invalid");
            for needle in needles {
                assert!(error.contains(needle), "{query:?}: {error}");
            }
        }
        assert!(parse(&[("limit", "5"), ("limit", "6")])
            .expect_err("repeated")
            .contains("more than once"));
    }

    #[test]
    fn cursors_round_trip_and_must_match_the_form() {
        let range = Cursor::Range {
            bar_secs: None,
            window_start: at("2026-11-27T10:00:30Z"),
            ticker: "MSFT".into(),
        };
        assert_eq!(Cursor::decode(&range.encode()), Ok(range.clone()));
        let latest = Cursor::Latest {
            bar_secs: None,
            ticker: "AAPL".into(),
        };
        assert_eq!(Cursor::decode(&latest.encode()), Ok(latest.clone()));
        assert!(parse(&[("cursor", &range.encode())])
            .expect_err("form")
            .contains("cursor"));
        assert!(parse(&[("cursor", &latest.encode()), ("startTime", "0")]).is_err());
        assert_eq!(
            Cursor::decode("4c7c"),
            Err(CursorError::Malformed),
            "empty ticker"
        );
    }

    #[test]
    fn sql_uses_keyset_pagination_and_no_offset() {
        let q = parse(&[
            ("ticker", "AMZN"),
            ("startTime", "1795773600"),
            (
                "cursor",
                &Cursor::Range {
                    bar_secs: None,
                    window_start: at("2026-11-27T10:00:30Z"),
                    ticker: "AMZN".into(),
                }
                .encode(),
            ),
        ])
        .expect("valid");
        let sql = q.to_sql().into_sql();
        assert_eq!(
            sql,
            "SELECT w.ticker, w.window_start, w.window_end, w.average_price, w.sample_count, w.min_price, w.max_price, \
             w.open_price, w.close_price, COALESCE(extract(epoch FROM w.window_end) * 1000 <= \
             (SELECT min(a.closed_before_ms) FROM aggregator_progress a), false) AS complete \
             FROM window_prices w WHERE TRUE AND w.ticker = $1 AND w.window_start >= $2 AND (w.window_start, w.ticker) > ($3, $4) \
             ORDER BY w.window_start, w.ticker LIMIT $5"
        );
        let latest = parse(&[("ticker", "AMZN,MSFT")])
            .expect("valid")
            .to_sql()
            .into_sql();
        assert!(
            latest.contains("FROM latest_windows l CROSS JOIN LATERAL"),
            "{latest}"
        );
        assert!(latest.contains("l.ticker = ANY($1)"), "{latest}");
        assert!(!latest.to_uppercase().contains("OFFSET"));
    }

    fn hex(plain: &str) -> String {
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn times_postgres_cannot_store_are_a_400_naming_the_range() {
        for (name, value) in [
            ("startTime", "-300000000000"),
            ("endTime", "-300000000000"),
            ("startTime", "-210866803201"),
            ("endTime", "300000000000"),
            ("startTime", "-62167305541"),
            ("endTime", "253402387140"),
            ("startTime", "-9223372036854775808"),
            ("endTime", "9223372036854775807"),
        ] {
            let error = parse(&[(name, value)]).expect_err(value);
            assert!(
                error.contains(name)
                    && error.contains("outside the accepted range")
                    && error.contains("0000-01-01T00:00:00+23:59")
                    && error.contains("253402387139"),
                "{name}={value}: {error}"
            );
        }
        let edges = parse(&[("startTime", "-62167305540"), ("endTime", "253402387139")])
            .expect("the edges are inside");
        assert_eq!(
            edges.form,
            Form::Range {
                start: Utc.timestamp_opt(MIN_TIME_SECS, 0).single(),
                end: Utc.timestamp_opt(MAX_TIME_SECS, 0).single(),
            }
        );
        let text_edges = parse(&[
            ("startTime", "0000-01-01T00:00:00+23:59"),
            ("endTime", "9999-12-31T23:59:59.999999999-23:59"),
        ])
        .expect("RFC 3339 extremes are inside");
        let Form::Range {
            start: Some(start),
            end: Some(end),
        } = text_edges.form
        else {
            panic!("range form: {text_edges:?}");
        };
        assert_eq!(start.timestamp(), MIN_TIME_SECS);
        assert_eq!(end.timestamp(), MAX_TIME_SECS);
    }

    #[test]
    fn a_cursor_edited_to_a_time_out_of_range_is_a_400_naming_the_range() {
        for ms in ["-300000000000000", "-62167305540001", "253402387140000"] {
            let cursor = hex(&format!("R|{ms}|AMZN"));
            assert_eq!(
                Cursor::decode(&cursor),
                Err(CursorError::OutOfRange),
                "{ms}"
            );
            let error = parse(&[("cursor", &cursor), ("startTime", "0")]).expect_err(ms);
            assert!(
                error.contains("cursor") && error.contains("0000-01-01T00:00:00+23:59"),
                "{error}"
            );
        }
        for ms in ["-62167305540000", "253402387139999", "0", "-1"] {
            let cursor = hex(&format!("R|{ms}|AMZN"));
            assert!(Cursor::decode(&cursor).is_ok(), "{ms}");
        }
        for bad in [
            "R|+5|AMZN",
            "R|05|AMZN",
            "R|-0|AMZN",
            "R||AMZN",
            "R|1.5|AMZN",
        ] {
            assert_eq!(
                Cursor::decode(&hex(bad)),
                Err(CursorError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            Cursor::decode(&hex("L|AMZN").to_uppercase()),
            Err(CursorError::Malformed),
            "encode writes lower case only"
        );
    }

    #[test]
    fn times_need_the_published_rfc3339_shape() {
        for good in [
            "2026-11-27T10:00:00Z",
            "2026-11-27T10:00:00.5+01:00",
            "2026-11-27T10:00:00.123456789-23:59",
            "2024-02-29T00:00:00-00:00",
        ] {
            assert!(parse(&[("startTime", good)]).is_ok(), "{good}");
        }
        for bad in [
            "2026-11-27t10:00:00Z",
            "2026-11-27T10:00:00z",
            "2026-11-27 10:00:00Z",
            "2026-11-27T10:00:00",
            "2026-11-27T23:59:60Z",
            "2026-11-27T10:00:00.1234567890Z",
            "2026-11-27T10:00:00.Z",
            "2026-11-27T10:00:00+24:00",
            "2026-02-30T10:00:00Z",
            "2025-02-29T10:00:00Z",
            "+2026-11-27T10:00:00Z",
            "12026-11-27T10:00:00Z",
            "2026-11-27T10:00:00Z\n",
            "",
        ] {
            let error = parse(&[("startTime", bad)]).expect_err(bad);
            assert!(error.contains("RFC 3339"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn at_most_100_ticker_names_counted_as_given() {
        let hundred = vec!["AMZN"; MAX_TICKERS].join(",");
        assert_eq!(
            parse(&[("ticker", &hundred)]).expect("100").tickers,
            Some(vec!["AMZN".to_owned()])
        );
        let more = format!("{hundred},AMZN");
        assert!(parse(&[("ticker", &more)])
            .expect_err("101")
            .contains("at most 100"));
        assert!(
            parse(&[("ticker", "AMZN\t")]).is_err(),
            "only spaces are trimmed"
        );
    }

    /// A small deterministic generator, so the agreement tests need no extra dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    /// Mutations of a valid text: the neighbours a schema-driven fuzzer tries.
    fn mutants(rng: &mut Rng, seed: &str, alphabet: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..400 {
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..=rng.below(3) {
                let i = rng.below(bytes.len() + 1);
                let c = alphabet[rng.below(alphabet.len())];
                match rng.below(3) {
                    0 if i < bytes.len() => bytes[i] = c,
                    1 if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => bytes.insert(i, c),
                }
            }
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        out
    }

    #[test]
    fn the_published_time_pattern_is_exactly_what_is_accepted() {
        let re = regex::Regex::new(&patterns::RFC3339).expect("pattern compiles");
        let mut rng = Rng(0x5eed_1234_abcd);
        let mut texts: Vec<String> = Vec::new();
        for _ in 0..300 {
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{}",
                rng.below(10_000),
                1 + rng.below(12),
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60),
                rng.pick(&["", ".5", ".123456789", ".000001"]),
                rng.pick(&["Z", "+00:00", "-23:59", "+23:59", "+05:30"]),
            );
            texts.extend(mutants(&mut rng, &text, b"0123456789-:.TZtz+ 6"));
            texts.push(text);
        }
        let mut accepted = 0;
        for text in &texts {
            // Calendar validity is the format's business, not the pattern's: only compare texts
            // that name a real day.
            let real_day = text
                .get(..10)
                .is_some_and(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok());
            if !real_day {
                continue;
            }
            let ok = parse_time("startTime", text).is_ok();
            accepted += usize::from(ok);
            assert_eq!(ok, re.is_match(text), "{text:?}");
        }
        assert!(accepted > 300, "the sample has valid times: {accepted}");
    }

    #[test]
    fn the_published_ticker_pattern_is_exactly_what_is_accepted() {
        let re = regex::Regex::new(&patterns::TICKERS).expect("pattern compiles");
        let mut rng = Rng(0x7ac4_e55e_0001);
        let mut texts = vec![
            vec!["A"; MAX_TICKERS].join(","),
            vec!["A"; MAX_TICKERS + 1].join(","),
            "A".repeat(MAX_TICKER_LEN),
            "A".repeat(MAX_TICKER_LEN + 1),
        ];
        for seed in ["AMZN", "amzn, MSFT", " brk.b ,BF-A", "A,B,C"] {
            texts.extend(mutants(&mut rng, seed, b"Aa0.-, _\t|\xc3"));
            texts.push(seed.to_owned());
        }
        for text in &texts {
            assert_eq!(
                parse_tickers(text).is_ok(),
                re.is_match(text),
                "{text:?}: {:?}",
                parse_tickers(text)
            );
        }
    }

    #[test]
    fn the_published_cursor_pattern_is_exactly_what_is_accepted() {
        let re = regex::Regex::new(&patterns::CURSOR).expect("pattern compiles");
        let mut rng = Rng(0xc0ff_ee00_4242);
        let mut texts = Vec::new();
        for plain in [
            "L|AMZN",
            "L|BRK.B",
            "R|1795773600000|AMZN",
            "R|-62167305540000|A",
            "R|253402387139999|ABCDEFGHIJKLMNOP",
            "R|253402387140000|A",
            "R|0|A-1",
            "L|3600|AMZN",
            "L|86400|123",
            "L|0|AMZN",
            "L|86401|A",
            "R|3600|1795773600000|AMZN",
            "R|30|-1|A",
            "R|1|0|9",
            "R|60|253402387140000|A",
            "R|0600|1|A",
            "R|60|60|60",
        ] {
            let encoded = hex(plain);
            texts.extend(mutants(&mut rng, &encoded, b"0123456789abcdefABCDEF7c2d"));
            texts.push(encoded);
        }
        let mut accepted = 0;
        for text in &texts {
            let ok = Cursor::decode(text).is_ok();
            accepted += usize::from(ok);
            assert_eq!(ok, re.is_match(text), "{text:?}");
        }
        assert!(accepted >= 12, "{accepted}");
    }

    #[test]
    fn an_interval_wider_than_the_window_reads_bars_between_rounded_up_bounds() {
        let q = parse(&[
            ("interval", "1h"),
            ("startTime", "2026-11-27T10:00:00.5Z"),
            ("endTime", "2026-11-27T12:00:00Z"),
        ])
        .expect("valid");
        assert_eq!(q.bars.map(Interval::secs), Some(3600));
        assert_eq!(
            q.form,
            Form::Range {
                start: Some(at("2026-11-27T11:00:00Z")),
                end: Some(at("2026-11-27T12:00:00Z"))
            },
            "bars starting in [10:00:00.5, 12:00) are those starting in [11:00, 12:00)"
        );
        // Bounds inside one bar leave no bar start between them: an empty page, not an error.
        let q = parse(&[
            ("interval", "1h"),
            ("startTime", "2026-11-27T10:10:00Z"),
            ("endTime", "2026-11-27T10:20:00Z"),
        ])
        .expect("valid");
        assert_eq!(
            q.form,
            Form::Range {
                start: Some(at("2026-11-27T11:00:00Z")),
                end: Some(at("2026-11-27T11:00:00Z"))
            }
        );
        // The window's own interval is the window form, given or not.
        assert_eq!(parse(&[("interval", "30s")]), parse(&[]));
        assert_eq!(
            parse(&[("interval", "30s"), ("startTime", "1795773601")]),
            parse(&[("startTime", "1795773601")])
        );
        // The accepted values follow the window.
        let minute = Window::new(60).expect("window");
        let pairs = |value: &str| vec![("interval".to_owned(), value.to_owned())];
        assert!(PriceQuery::parse(&pairs("30s"), minute)
            .expect_err("30 s is no multiple of 60 s")
            .contains("1m, 5m, 15m, 30m, 1h, 4h, 1d"));
        assert_eq!(
            PriceQuery::parse(&pairs("1m"), minute).map(|q| q.bars),
            Ok(None)
        );
        assert_eq!(
            PriceQuery::parse(&pairs("5m"), minute).map(|q| q.bars.map(Interval::secs)),
            Ok(Some(300))
        );
    }

    #[test]
    fn bar_cursors_carry_the_width_and_continue_only_the_same_interval() {
        let range = Cursor::Range {
            bar_secs: Some(3600),
            window_start: at("2026-11-27T10:00:00Z"),
            ticker: "MSFT".into(),
        };
        assert_eq!(range.encode(), hex("R|3600|1795773600000|MSFT"));
        assert_eq!(Cursor::decode(&range.encode()), Ok(range.clone()));
        let latest = Cursor::Latest {
            bar_secs: Some(86_400),
            ticker: "AAPL".into(),
        };
        assert_eq!(latest.encode(), hex("L|86400|AAPL"));
        assert_eq!(Cursor::decode(&latest.encode()), Ok(latest.clone()));

        let continued = parse(&[
            ("interval", "1h"),
            ("startTime", "0"),
            ("cursor", &range.encode()),
        ])
        .expect("same interval");
        assert_eq!(continued.after, Some(range.clone()));
        assert_eq!(
            parse(&[("interval", "1d"), ("cursor", &latest.encode())])
                .expect("same interval")
                .after,
            Some(latest.clone())
        );
        let window_range = Cursor::Range {
            bar_secs: None,
            window_start: at("2026-11-27T10:00:00Z"),
            ticker: "MSFT".into(),
        };
        let other_width = hex("R|7|1795773600000|MSFT");
        for query in [
            &[
                ("interval", "5m"),
                ("startTime", "0"),
                ("cursor", &range.encode()),
            ][..],
            &[("startTime", "0"), ("cursor", &range.encode())],
            &[
                ("interval", "30s"),
                ("startTime", "0"),
                ("cursor", &range.encode()),
            ],
            &[("interval", "1h"), ("cursor", &range.encode())],
            &[
                ("interval", "1h"),
                ("startTime", "0"),
                ("cursor", &window_range.encode()),
            ],
            &[
                ("interval", "1h"),
                ("startTime", "0"),
                ("cursor", &latest.encode()),
            ],
            &[("cursor", &latest.encode())],
            &[("interval", "1h"), ("cursor", &latest.encode())],
            &[("startTime", "0"), ("cursor", &other_width)],
        ] {
            assert_eq!(
                parse(query),
                Err("cursor belongs to a different kind of query; repeat the parameters of the request that returned it".to_owned()),
                "{query:?}"
            );
        }
        // An edited instant inside a bar stands for that bar.
        let edited = parse(&[
            ("interval", "1h"),
            ("startTime", "0"),
            ("cursor", &hex("R|3600|1795775400001|MSFT")),
        ])
        .expect("valid");
        assert_eq!(edited.after, Some(range));
    }

    #[test]
    fn bar_sql_reads_bar_by_bar_with_keyset_pagination() {
        let cursor = Cursor::Range {
            bar_secs: Some(300),
            window_start: at("2026-11-27T10:00:00Z"),
            ticker: "AMZN".into(),
        };
        let range = parse(&[
            ("interval", "5m"),
            ("ticker", "AMZN,MSFT"),
            ("startTime", "1795773600"),
            ("endTime", "1795777200"),
            ("cursor", &cursor.encode()),
        ])
        .expect("valid")
        .to_sql()
        .into_sql();
        for needle in [
            "WITH RECURSIVE bars (bar_start, groups)",
            "date_bin(interval '300 seconds', min(p.window_start), TIMESTAMPTZ 'epoch')",
            "p.window_start >= bars.bar_start + interval '300 seconds'",
            "count(DISTINCT p.ticker)",
            "p.ticker = ANY(",
            "OR p.ticker > ",
            "sum(p.price_sum)::float8 / sum(p.sample_count)::float8 AS average_price",
            "min(p.window_start) AS first_window",
            "WHEN g.open_known THEN (SELECT o.open_price FROM window_prices o WHERE o.ticker = g.ticker AND o.window_start = g.first_window)",
            "WHEN g.close_known THEN (SELECT c.close_price FROM window_prices c WHERE c.ticker = g.ticker AND c.window_start = g.last_window)",
            "(SELECT min(a.closed_before_ms) FROM aggregator_progress a)",
            "GROUP BY p.ticker) g ORDER BY bars.bar_start, g.ticker LIMIT $",
        ] {
            assert!(range.contains(needle), "{needle}: {range}");
        }
        let latest = parse(&[("interval", "1d"), ("ticker", "AMZN")])
            .expect("valid")
            .to_sql()
            .into_sql();
        for needle in [
            "FROM latest_windows l",
            "date_bin(interval '86400 seconds', l.window_start, TIMESTAMPTZ 'epoch')",
            "p.ticker = l.ticker",
            "o.ticker = l.ticker AND o.window_start = g.first_window",
            "HAVING count(*) > 0",
            "l.ticker = $1",
            "ORDER BY l.ticker LIMIT $2",
            "AS complete",
        ] {
            assert!(latest.contains(needle), "{needle}: {latest}");
        }
        for sql in [range, latest] {
            assert!(!sql.to_uppercase().contains("OFFSET"), "{sql}");
        }
    }
}
