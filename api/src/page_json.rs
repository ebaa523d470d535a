//! A page of `GET /v1/get-prices` read from the database, written as JSON straight from the rows
//! PostgreSQL returned: each column read by its position and written into one buffer, with no
//! [`WindowPrice`] built, no string allocated per row and no instant formatted through
//! `fmt::Write`. The per-row work of the API was as large as PostgreSQL's execution of the query
//! (docs/benchmarks.md, "The API against the database's own ceiling"); this is the cheaper half of
//! it.
//!
//! The bytes are exactly those of `serde_json::to_vec(&model::page(query, rows))` over the same rows
//! (the serializer that the answers from memory and the stream's events still use): a test compares
//! the two over every form, interval and order (`api/tests/api/page_bytes.rs`).
//!
//! Every statement [`PriceQuery::to_sql`] builds selects the columns in [`COLUMNS`] order (a
//! range's adds two more after them, read by `prices::fetch_rows`); the first row's names are
//! checked against it, so a statement that drifted is a 500 naming the
//! column, never a page with values under the wrong names.
//!
//! [`WindowPrice`]: crate::model::WindowPrice

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{Column, Row};

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::http_cache::Immutable;
use crate::model::next_cursor;
use crate::problem::ApiError;
use crate::query::PriceQuery;

/// The columns of every prices statement, in order.
pub(crate) const COLUMNS: [&str; 10] = [
    "ticker",
    "window_start",
    "window_end",
    "average_price",
    "sample_count",
    "min_price",
    "max_price",
    "open_price",
    "close_price",
    "complete",
];

/// A page written as JSON, and what the response headers need to know about it.
#[derive(Debug)]
pub(crate) struct PageJson {
    pub(crate) body: Vec<u8>,
    /// Every entry on the page is `complete` (true for an empty page).
    pub(crate) all_complete: bool,
}

impl PageJson {
    /// The 200 answer; `immutable` marks a page that can never change for the caching headers.
    pub(crate) fn into_response(self, immutable: bool) -> Response {
        let mut response =
            ([(header::CONTENT_TYPE, "application/json")], self.body).into_response();
        if immutable {
            response.extensions_mut().insert(Immutable);
        }
        response
    }
}

/// The page of `query` from `rows` (the limit plus at most one more, which becomes `nextCursor`).
/// A value that does not decode as its column's type is a 500 (the statements are ours).
pub(crate) fn write(query: &PriceQuery, rows: &[PgRow]) -> Result<PageJson, ApiError> {
    write_rows(query, rows)
        .map_err(|error| ApiError::Internal(format!("cannot write the prices page: {error}")))
}

fn write_rows(query: &PriceQuery, rows: &[PgRow]) -> Result<PageJson, sqlx::Error> {
    if let Some(first) = rows.first() {
        check_columns(first)?;
    }
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let shown = &rows[..rows.len().min(limit)];
    // About 200 bytes a row: one allocation for a whole page as a rule.
    let mut body = Vec::with_capacity(64 + shown.len() * 224);
    body.extend_from_slice(b"{\"prices\":[");
    let mut all_complete = true;
    for (index, row) in shown.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        all_complete &= write_row(&mut body, row)?;
    }
    body.extend_from_slice(b"],\"nextCursor\":");
    match shown.last().filter(|_| rows.len() > limit) {
        Some(last) => {
            let ticker: &str = last.try_get(0)?;
            let cursor = next_cursor(query, ticker, last.try_get(1)?);
            json(&mut body, &cursor);
        }
        None => body.extend_from_slice(b"null"),
    }
    body.push(b'}');
    Ok(PageJson { body, all_complete })
}

/// The (ticker, start, end) of each row shown: what the trace of an answer links commits by.
pub(crate) fn keys(
    query: &PriceQuery,
    rows: &[PgRow],
) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    rows.iter()
        .take(limit)
        .filter_map(|row| {
            Some((
                row.try_get(0).ok()?,
                row.try_get(1).ok()?,
                row.try_get(2).ok()?,
            ))
        })
        .collect()
}

/// The row starts with [`COLUMNS`] (a range's statement adds two of its own after them).
fn check_columns(row: &PgRow) -> Result<(), sqlx::Error> {
    let names = row.columns().iter().take(COLUMNS.len()).map(Column::name);
    let expected = COLUMNS.iter().copied();
    if row.columns().len() >= COLUMNS.len() && names.eq(expected) {
        return Ok(());
    }
    let got: Vec<&str> = row.columns().iter().map(Column::name).collect();
    Err(sqlx::Error::ColumnNotFound(format!(
        "the prices statement selects {got:?}, not the columns the page is written from"
    )))
}

/// One entry, as `WindowPrice` serializes; returns its `complete`.
fn write_row(body: &mut Vec<u8>, row: &PgRow) -> Result<bool, sqlx::Error> {
    let complete: bool = row.try_get(9)?;
    body.extend_from_slice(b"{\"ticker\":");
    json(body, &row.try_get::<&str, _>(0)?);
    body.extend_from_slice(b",\"windowStart\":\"");
    write_rfc3339(body, row.try_get(1)?);
    body.extend_from_slice(b"\",\"windowEnd\":\"");
    write_rfc3339(body, row.try_get(2)?);
    body.extend_from_slice(b"\",\"averagePrice\":");
    json(body, &row.try_get::<f64, _>(3)?);
    body.extend_from_slice(b",\"samples\":");
    json(body, &row.try_get::<i64, _>(4)?);
    body.extend_from_slice(b",\"minPrice\":");
    json(body, &row.try_get::<i64, _>(5)?);
    body.extend_from_slice(b",\"maxPrice\":");
    json(body, &row.try_get::<i64, _>(6)?);
    body.extend_from_slice(b",\"openPrice\":");
    json(body, &row.try_get::<Option<i64>, _>(7)?);
    body.extend_from_slice(b",\"closePrice\":");
    json(body, &row.try_get::<Option<i64>, _>(8)?);
    body.extend_from_slice(if complete {
        b",\"complete\":true}"
    } else {
        b",\"complete\":false}"
    });
    Ok(complete)
}

/// `value` as serde_json writes it (ryu for floats, `null` for a non-finite one, escaped strings).
fn json<T: Serialize + ?Sized>(body: &mut Vec<u8>, value: &T) {
    // Serializing a string, a number or an option of one into a Vec cannot fail.
    let _ = value.serialize(&mut serde_json::Serializer::new(&mut *body));
}

/// `time` as chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)` writes it (`Z`, and a fraction
/// of 3, 6 or 9 digits only when it is not zero), without going through `fmt`. Years outside
/// 0–9999 and leap seconds, which no window has, take chrono's own path.
pub(crate) fn write_rfc3339(body: &mut Vec<u8>, time: DateTime<Utc>) {
    // The naive UTC value once: each accessor of a `DateTime` would add the (zero) offset again.
    let time = time.naive_utc();
    let (year, nanos) = (time.year(), time.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        let text = time
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        body.extend_from_slice(text.as_bytes());
        return;
    }
    let digits = |body: &mut Vec<u8>, value: u32, width: u32| {
        for place in (0..width).rev() {
            body.push(b'0' + (value / 10_u32.pow(place) % 10) as u8);
        }
    };
    digits(body, year.unsigned_abs(), 4);
    body.push(b'-');
    digits(body, time.month(), 2);
    body.push(b'-');
    digits(body, time.day(), 2);
    body.push(b'T');
    digits(body, time.hour(), 2);
    body.push(b':');
    digits(body, time.minute(), 2);
    body.push(b':');
    digits(body, time.second(), 2);
    if nanos != 0 {
        body.push(b'.');
        match (nanos % 1_000_000, nanos % 1_000) {
            (0, _) => digits(body, nanos / 1_000_000, 3),
            (_, 0) => digits(body, nanos / 1_000, 6),
            _ => digits(body, nanos, 9),
        }
    }
    body.push(b'Z');
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn instants_are_written_as_chrono_writes_them() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            // xorshift: many instants, the same ones on every run.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut cases = vec![
            (1_795_773_600, 0),
            (1_795_773_600, 500_000_000),
            (1_795_773_600, 123_456_000),
            (1_795_773_600, 1),
            (1_795_773_600, 10),
            (0, 0),
            (-1, 999_999_000),
            (-62_167_219_200, 0),
            (-62_167_219_201, 0),
            (253_402_300_799, 999_999_999),
            (253_402_300_800, 0),
            (1_483_228_799, 1_500_000_000),
        ];
        for _ in 0..20_000 {
            let seconds = (next() % 400_000_000_000) as i64 - 100_000_000_000;
            let nanos = match next() % 4 {
                0 => 0,
                1 => (next() % 1000) as u32 * 1_000_000,
                2 => (next() % 1_000_000) as u32 * 1_000,
                _ => (next() % 1_000_000_000) as u32,
            };
            cases.push((seconds, nanos));
        }
        for (seconds, nanos) in cases {
            let Some(time) = Utc.timestamp_opt(seconds, nanos).single() else {
                continue;
            };
            let mut written = Vec::new();
            write_rfc3339(&mut written, time);
            assert_eq!(
                String::from_utf8(written).expect("utf-8"),
                time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                "{seconds} s {nanos} ns"
            );
        }
    }
}
