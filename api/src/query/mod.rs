//! A `GET /v1/get-prices` request as a validated [`PriceQuery`]: which parameters it takes, how they
//! combine (the form, the bars, the cursor that must fit both), and the SQL it becomes ([`sql`]).
//!
//! Kept free of I/O so every rule has a fast unit test; each parameter's own grammar is in
//! [`crate::params`]. Two query forms exist:
//! - latest: no `startTime`/`endTime`, the latest written window of each ticker, sorted by ticker;
//! - range: windows whose start lies in `[startTime, endTime)`, sorted by window start then ticker.
//!
//! `sort=desc` reverses either order as a whole (see [`crate::params::sort`]). A cursor carries the
//! order it was written for, so a page asked for with a cursor alone continues in that order;
//! `sort` given beside it must agree with it (a contradiction is a 400, never silently resolved).
//!
//! With an `interval` wider than the aggregator's window, each entry is a bar: the windows of one
//! ticker inside one epoch-aligned interval. The range form then gives the bars starting in
//! `[startTime, endTime)`, which are exactly the windows starting in `[ceil(startTime),
//! ceil(endTime))` (ceil to the bar): the bounds are rounded here, once.

mod sql;

pub(crate) use sql::range_meta_sql;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use tickpipe_store::history;

use crate::params::cursor::{Cursor, CursorError};
use crate::params::interval::{Interval, Window};
use crate::params::sort::Sort;
use crate::params::tickers;
use crate::params::time::{self, TIME_RANGE_TEXT};

pub(crate) const DEFAULT_LIMIT: i64 = 1000;
pub(crate) const MAX_LIMIT: i64 = 10_000;
pub const ACCEPTED_PARAMETERS: [&str; 7] = [
    "ticker",
    "startTime",
    "endTime",
    "limit",
    "cursor",
    "interval",
    "sort",
];

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PriceQuery {
    /// Upper-cased, deduplicated, sorted; `None` means every ticker.
    pub(crate) tickers: Option<Vec<String>>,
    pub(crate) form: Form,
    /// `None`: one entry per window (no `interval`, or the window's own). Otherwise the width of
    /// the bars, a multiple of the window.
    pub(crate) bars: Option<Interval>,
    pub(crate) limit: i64,
    /// The order of the page: `sort`, or the cursor's.
    pub(crate) sort: Sort,
    pub(crate) after: Option<Cursor>,
    /// The table the entries are read from: the windows, or the widest rollup dividing the bars.
    pub(crate) table: &'static str,
    /// The bars are stored at their own width in `table`: one row an entry.
    pub(crate) stored_bars: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
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
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Latest => "latest",
            Self::Range { .. } => "range",
        }
    }
}

impl PriceQuery {
    /// Validates raw query pairs; `window` is the aggregator's (`AGGREGATOR_WINDOW_SECS`). Every
    /// error names the parameter and the accepted form.
    pub(crate) fn parse(pairs: &[(String, String)], window: Window) -> Result<Self, String> {
        let given = Given::read(pairs, window)?;
        let bars = given
            .interval
            .filter(|interval| *interval != window.interval());
        let form = given.form(bars)?;
        let after = match &given.cursor {
            None => None,
            Some(text) => Some(parse_cursor(text, form, bars)?),
        };
        let sort = page_order(given.sort, after.as_ref())?;
        let source = bars.map(|bars| history::source_for(window.interval().secs(), bars.secs()));
        Ok(Self {
            tickers: given.tickers,
            form,
            bars,
            limit: given.limit.unwrap_or(DEFAULT_LIMIT),
            sort,
            after,
            table: source.map_or(history::WINDOWS_TABLE, |source| source.table),
            stored_bars: source
                .zip(bars)
                .is_some_and(|(source, bars)| source.width_secs == bars.secs()),
        })
    }

    /// What a request without parameters parses to: the latest window of every ticker, the
    /// default page.
    pub(crate) fn latest() -> Self {
        Self {
            tickers: None,
            form: Form::Latest,
            bars: None,
            limit: DEFAULT_LIMIT,
            sort: Sort::Asc,
            after: None,
            table: history::WINDOWS_TABLE,
            stored_bars: false,
        }
    }
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
    sort: Option<Sort>,
}

impl Given {
    /// Reads the pairs: unknown parameters and repeated ones are refused.
    fn read(pairs: &[(String, String)], window: Window) -> Result<Self, String> {
        let mut given = Self::default();
        for (name, value) in pairs {
            let slot_taken = match name.as_str() {
                "ticker" => given.tickers.replace(tickers::parse(value)?).is_some(),
                "startTime" => given
                    .start
                    .replace(time::parse("startTime", value)?)
                    .is_some(),
                "endTime" => given.end.replace(time::parse("endTime", value)?).is_some(),
                "interval" => given.interval.replace(window.parse(value)?).is_some(),
                "limit" => given.limit.replace(parse_limit(value)?).is_some(),
                "cursor" => given.cursor.replace(value.clone()).is_some(),
                "sort" => given.sort.replace(Sort::parse(value)?).is_some(),
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

/// The order of the page: the cursor's, which `sort` may repeat but not contradict; without a
/// cursor, `sort`, by default ascending.
fn page_order(given: Option<Sort>, after: Option<&Cursor>) -> Result<Sort, String> {
    match (given, after.map(Cursor::sort)) {
        (Some(given), Some(cursor)) if given != cursor => Err(sort_mismatch(cursor)),
        (given, cursor) => Ok(cursor.or(given).unwrap_or_default()),
    }
}

/// The 400 for a `sort` that contradicts the cursor's order: one text per order, both listed by
/// `scripts/schemathesis.sh` among the rules that span parameters.
fn sort_mismatch(cursor: Sort) -> String {
    let other = match cursor {
        Sort::Asc => Sort::Desc,
        Sort::Desc => Sort::Asc,
    };
    format!(
        "cursor continues a sort={} query, not sort={}; give sort={} or leave sort out",
        cursor.name(),
        other.name(),
        cursor.name()
    )
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
                sort,
                bar_secs,
                window_start,
                ticker,
            },
            Some(bars),
        ) => Ok(Cursor::Range {
            sort,
            bar_secs,
            window_start: bars.floor(window_start).ok_or_else(|| {
                format!("cursor holds a time outside the accepted range, {TIME_RANGE_TEXT}")
            })?,
            ticker,
        }),
        (decoded, _) => Ok(decoded),
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
