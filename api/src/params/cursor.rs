//! The cursor codec: the sort key of a page's last row (and for bars their width) as the opaque
//! `nextCursor` / `cursor` token, and the pattern the OpenAPI document publishes for it.
//!
//! Pagination is keyset: the cursor holds the sort key of the last row returned, never an offset,
//! and for bars their width, so that it continues only a query with the same `interval`. Whether a
//! decoded cursor fits the query it is given with is the query's rule (`crate::query`), not the
//! codec's.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use tickpipe_common::message::{validate_ticker_name, MAX_TICKER_LEN};

use super::integer::{integer_range, parse_canonical, Hex};
use super::interval::DAY_SECS;
use super::time::{self, MAX_TIME_SECS, MIN_TIME_SECS};

/// The hex of `L|TICKER` or `R|UNIX-MS|TICKER`, or for bars `L|SECONDS|TICKER` or
/// `R|SECONDS|UNIX-MS|TICKER`, lower case, with the milliseconds a canonical integer inside the
/// accepted time range and the bar width a canonical integer from 1 to 86400.
pub static PATTERN: LazyLock<String> = LazyLock::new(|| {
    // A-Z 41-5a, 0-9 30-39, '.' 2e, '-' 2d.
    let ticker_byte = "(?:4[1-9a-f]|5[0-9a]|3[0-9]|2[de])";
    let millis = integer_range::<Hex>(MIN_TIME_SECS * 1000, MAX_TIME_SECS * 1000 + 999);
    let width = integer_range::<Hex>(1, i64::from(DAY_SECS));
    format!(
        "^(?:4c7c(?:{width}7c)?|527c(?:{width}7c)?{millis}7c){ticker_byte}{{1,{MAX_TICKER_LEN}}}$"
    )
});

/// The sort key of the last row of a page, and for bars their width in seconds (`bar_secs`,
/// `None` for windows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cursor {
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
    /// after the letter for bars (`L|3600|ticker`, `R|3600|unix-ms|ticker`).
    pub(crate) fn encode(&self) -> String {
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
    pub(crate) fn bar_secs(&self) -> Option<u32> {
        match self {
            Self::Latest { bar_secs, .. } | Self::Range { bar_secs, .. } => *bar_secs,
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
        let range = |bar_secs: Option<u32>, ms: &str, ticker: &str| {
            let ms = parse_canonical(ms).ok_or(CursorError::Malformed)?;
            Ok(Self::Range {
                bar_secs,
                window_start: time::from_millis(ms).ok_or(CursorError::OutOfRange)?,
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
