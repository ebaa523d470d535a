//! The cursor codec: the sort key of a page's last row, the direction of the order (`sort`) and
//! for bars their width, as the opaque `nextCursor` / `cursor` token, and the pattern the OpenAPI
//! document publishes for it.
//!
//! Pagination is keyset: the cursor holds the sort key of the last row returned, never an offset,
//! and for bars their width, so that it continues only a query with the same `interval`. It also
//! holds the direction, because the key alone cannot say on which side of it the next page lies:
//! the token the response carries is all a client needs to go on in the same direction. A `desc`
//! cursor is marked by a `D` after the letter; an `asc` one is written as before `sort` existed, so
//! cursors handed out by an older version keep working. Whether a decoded cursor fits the query it
//! is given with is the query's rule (`crate::query`), not the codec's.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use tickpipe_common::message::{validate_ticker_name, MAX_TICKER_LEN};

use super::integer::{integer_range, parse_canonical, Hex};
use super::interval::DAY_SECS;
use super::sort::Sort;
use super::time::{self, MAX_TIME_SECS, MIN_TIME_SECS};

/// The hex of `L|TICKER` or `R|UNIX-MS|TICKER`, or for bars `L|SECONDS|TICKER` or
/// `R|SECONDS|UNIX-MS|TICKER`, with `LD` and `RD` for `L` and `R` in descending order, lower case,
/// with the milliseconds a canonical integer inside the accepted time range and the bar width a
/// canonical integer from 1 to 86400.
pub static PATTERN: LazyLock<String> = LazyLock::new(|| {
    // A-Z 41-5a, 0-9 30-39, '.' 2e, '-' 2d.
    let ticker_byte = "(?:4[1-9a-f]|5[0-9a]|3[0-9]|2[de])";
    let millis = integer_range::<Hex>(MIN_TIME_SECS * 1000, MAX_TIME_SECS * 1000 + 999);
    let width = integer_range::<Hex>(1, i64::from(DAY_SECS));
    format!(
        "^(?:4c(?:44)?7c(?:{width}7c)?|52(?:44)?7c(?:{width}7c)?{millis}7c){ticker_byte}{{1,{MAX_TICKER_LEN}}}$"
    )
});

/// The sort key of the last row of a page, the order it was sorted in, and for bars their width
/// in seconds (`bar_secs`, `None` for windows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cursor {
    Latest {
        sort: Sort,
        bar_secs: Option<u32>,
        ticker: String,
    },
    Range {
        sort: Sort,
        bar_secs: Option<u32>,
        window_start: DateTime<Utc>,
        ticker: String,
    },
}

/// Why a cursor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CursorError {
    /// Not something [`Cursor::encode`] writes.
    Malformed,
    /// Well formed, but its instant lies outside the accepted time range (an edited cursor).
    OutOfRange,
}

impl Cursor {
    /// Opaque to clients: hex of `L|ticker` or `R|unix-ms|ticker`, with the bar width in seconds
    /// after the letter for bars (`L|3600|ticker`, `R|3600|unix-ms|ticker`), and the letter
    /// followed by `D` in descending order (`LD|ticker`, `RD|3600|unix-ms|ticker`).
    pub(crate) fn encode(&self) -> String {
        let width = |bar_secs: &Option<u32>| bar_secs.map(|s| format!("{s}|")).unwrap_or_default();
        let order = |sort: &Sort| match sort {
            Sort::Asc => "",
            Sort::Desc => "D",
        };
        let plain = match self {
            Self::Latest {
                sort,
                bar_secs,
                ticker,
            } => format!("L{}|{}{ticker}", order(sort), width(bar_secs)),
            Self::Range {
                sort,
                bar_secs,
                window_start,
                ticker,
            } => format!(
                "R{}|{}{}|{ticker}",
                order(sort),
                width(bar_secs),
                window_start.timestamp_millis()
            ),
        };
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// The bar width the cursor was written for (`None`: windows).
    pub(crate) fn bar_secs(&self) -> Option<u32> {
        match self {
            Self::Latest { bar_secs, .. } | Self::Range { bar_secs, .. } => *bar_secs,
        }
    }

    /// The order of the pages the cursor continues.
    pub(crate) fn sort(&self) -> Sort {
        match self {
            Self::Latest { sort, .. } | Self::Range { sort, .. } => *sort,
        }
    }

    /// Reads what [`Cursor::encode`] wrote: exactly the texts [`PATTERN`] matches.
    pub(crate) fn decode(text: &str) -> Result<Self, CursorError> {
        let plain = unhex(text).ok_or(CursorError::Malformed)?;
        let parts: Vec<&str> = plain.split('|').collect();
        let width = |text: &str| -> Result<Option<u32>, CursorError> {
            parse_canonical(text)
                .filter(|secs| (1..=i64::from(DAY_SECS)).contains(secs))
                .and_then(|secs| u32::try_from(secs).ok())
                .map(Some)
                .ok_or(CursorError::Malformed)
        };
        let range = |sort: Sort, bar_secs: Option<u32>, ms: &str, ticker: &str| {
            let ms = parse_canonical(ms).ok_or(CursorError::Malformed)?;
            Ok(Self::Range {
                sort,
                bar_secs,
                window_start: time::from_millis(ms).ok_or(CursorError::OutOfRange)?,
                ticker: ticker.to_owned(),
            })
        };
        let latest = |sort: Sort, bar_secs: Option<u32>, ticker: &str| Self::Latest {
            sort,
            bar_secs,
            ticker: ticker.to_owned(),
        };
        let (kind, fields) = parts.split_first().ok_or(CursorError::Malformed)?;
        let cursor = match (*kind, fields) {
            ("L" | "LD", [ticker]) => latest(order(kind), None, ticker),
            ("L" | "LD", [secs, ticker]) => latest(order(kind), width(secs)?, ticker),
            ("R" | "RD", [ms, ticker]) => range(order(kind), None, ms, ticker)?,
            ("R" | "RD", [secs, ms, ticker]) => range(order(kind), width(secs)?, ms, ticker)?,
            _ => return Err(CursorError::Malformed),
        };
        let ticker = match &cursor {
            Self::Latest { ticker, .. } | Self::Range { ticker, .. } => ticker,
        };
        validate_ticker_name(ticker).map_err(|_| CursorError::Malformed)?;
        Ok(cursor)
    }
}

/// The order a cursor's first field (`L`, `LD`, `R` or `RD`) stands for.
fn order(kind: &str) -> Sort {
    if kind.ends_with('D') {
        Sort::Desc
    } else {
        Sort::Asc
    }
}

/// The text whose bytes `text` spells in lower-case hex (only what `encode` writes, so that the
/// published pattern is exact), if it is UTF-8.
fn unhex(text: &str) -> Option<String> {
    let is_lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if text.len() % 2 != 0 || text.len() > 128 || !text.as_bytes().iter().all(is_lower_hex) {
        return None;
    }
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()?;
    String::from_utf8(bytes).ok()
}
