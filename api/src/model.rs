//! The row model both endpoints serve: a [`WindowPrice`] is what `GET /v1/get-prices` lists and
//! what a `price` event of `GET /v1/stream-prices` carries, and [`page`] turns the rows of one
//! query into a [`PricesPage`] with its `nextCursor` (which carries the page's `sort`).
//!
//! [`never_changes`] says whether a page is final, for the caching headers.
//!
//! Its own module because the change feed builds the same rows from the change log and renders the
//! same page from memory: the JSON must be byte for byte what the database path returns.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;

use crate::params::cursor::Cursor;
use crate::params::interval::Window;
use crate::query::{Form, PriceQuery};

/// The prices of one ticker over one window, or over one bar of several windows (`interval`).
#[derive(Debug, Clone, PartialEq, Serialize, FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WindowPrice {
    #[schema(example = "AMZN")]
    pub(crate) ticker: String,
    /// Start of the window, or of the bar (aligned to the Unix epoch, UTC) with `interval`.
    #[serde(serialize_with = "rfc3339")]
    pub(crate) window_start: DateTime<Utc>,
    /// End of the window or bar (exclusive): `windowStart` plus the interval.
    #[serde(serialize_with = "rfc3339")]
    pub(crate) window_end: DateTime<Utc>,
    /// Sum of every price in the window or bar divided by their count (never an average of averages).
    #[schema(example = 1903.25)]
    pub(crate) average_price: f64,
    /// Number of prices.
    #[sqlx(rename = "sample_count")]
    pub(crate) samples: i64,
    pub(crate) min_price: i64,
    pub(crate) max_price: i64,
    /// The first price: the one with the earliest (record timestamp, partition, offset). `null`
    /// when unknown (windows written before open and close were recorded).
    #[schema(example = 1890)]
    pub(crate) open_price: Option<i64>,
    /// The last price: the one with the latest (record timestamp, partition, offset). `null` when
    /// unknown, as `openPrice`.
    #[schema(example = 1911)]
    pub(crate) close_price: Option<i64>,
    /// `true` once every Kafka partition has closed every window up to `windowEnd`: the values
    /// will not change again. `false` while a partition may still add to them.
    pub(crate) complete: bool,
}

/// `time` as chrono's own `Serialize` writes it (RFC 3339, `Z`, as many fraction digits as needed),
/// handed to the serializer as one string: chrono's impl goes through `collect_str`, which
/// serde_json escapes character by character — with two instants per row, the largest single cost
/// of a 1000-row page in the profile (README, Benchmarks).
fn rfc3339<S: serde::Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PricesPage {
    pub(crate) prices: Vec<WindowPrice>,
    /// Pass as `cursor` to get the next page, in the same order (it carries `sort`); `null` on the
    /// last page.
    pub(crate) next_cursor: Option<String>,
}

/// Trims the extra row fetched past the limit into a `nextCursor`.
pub(crate) fn page(query: &PriceQuery, mut rows: Vec<WindowPrice>) -> PricesPage {
    let limit = usize::try_from(query.limit)
        .expect("limit is validated to lie in 1..=MAX_LIMIT, which fits a usize");
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last()
            .map(|last| next_cursor(query, &last.ticker, last.window_start))
    } else {
        None
    };
    PricesPage {
        prices: rows,
        next_cursor,
    }
}

/// The `nextCursor` of a page of `query` whose last entry is `ticker`'s at `window_start`.
pub(crate) fn next_cursor(query: &PriceQuery, ticker: &str, window_start: DateTime<Utc>) -> String {
    let (sort, bar_secs) = (query.sort, query.bars.map(|bars| bars.secs()));
    let ticker = ticker.to_owned();
    match query.form {
        Form::Latest => Cursor::Latest {
            sort,
            bar_secs,
            ticker,
        },
        Form::Range { .. } => Cursor::Range {
            sort,
            bar_secs,
            window_start,
            ticker,
        },
    }
    .encode()
}

/// Whether the answer to `query` can never change, so that caches may keep it
/// ([`crate::http_cache`]): a range with both bounds, every window (bar) of which ends at or
/// before the `complete` boundary read before its rows (`boundary`, Unix milliseconds) — so every
/// partition had closed all of it and no entry can be added or change — and every entry
/// `complete` (`all_complete`). (The last check follows from the first; it is kept so that a page is never marked
/// final while it shows an entry that is not.) A range without a start is not: it is answered
/// from the oldest kept entry on, which moves when retention drops history. The page's order
/// (`sort`) plays no part: a page of a closed range is final whichever end it is read from, and its
/// `ETag`, taken from the bytes, differs between the two orders.
pub(crate) fn never_changes(
    query: &PriceQuery,
    window: Window,
    boundary: Option<i64>,
    all_complete: bool,
) -> bool {
    let (
        Form::Range {
            start: Some(_),
            end: Some(end),
        },
        Some(boundary),
    ) = (query.form, boundary)
    else {
        return false;
    };
    // Entries start before `end`, aligned to their width, so the last one ends at `end` rounded up.
    let width = i64::from(query.bars.unwrap_or(window.interval()).secs()) * 1000;
    let last_end = end.timestamp_millis().div_euclid(width) * width
        + if end.timestamp_millis().rem_euclid(width) == 0 {
            0
        } else {
            width
        };
    last_end <= boundary && all_complete
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn instants_serialize_exactly_as_chrono_serializes_them() {
        #[derive(Serialize)]
        struct Fast(#[serde(serialize_with = "rfc3339")] DateTime<Utc>);
        for (seconds, nanos) in [
            (1_795_773_600, 0),
            (1_795_773_600, 500_000_000),
            (1_795_773_600, 123_456_000),
            (1_795_773_600, 1),
            (0, 0),
            (-62_167_219_200, 0),
            (253_402_300_799, 999_999_999),
        ] {
            let time = Utc.timestamp_opt(seconds, nanos).single().expect("time");
            assert_eq!(
                serde_json::to_string(&Fast(time)).expect("fast"),
                serde_json::to_string(&time).expect("chrono"),
            );
        }
    }
}
