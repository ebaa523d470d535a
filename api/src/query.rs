//! `GET /v1/get-prices` parameters: parsing, validation, cursors and the SQL they become.
//!
//! Kept free of I/O so every rule has a fast unit test. Two query forms exist:
//! - latest: no `startTime`/`endTime`, the latest written window of each ticker, sorted by ticker,
//!   read through `latest_windows` (one index seek per ticker, whatever the table's size);
//! - range: windows whose start lies in `[startTime, endTime)`, sorted by window start then ticker,
//!   read through the (ticker, window_start) or (window_start, ticker) index.
//!
//! Pagination is keyset: the cursor holds the sort key of the last row returned, never an offset.
//!
//! Each parameter's syntax is also published as a pattern in the OpenAPI document ([`patterns`]);
//! the parsers here accept exactly what those patterns (plus the calendar) accept, and the unit
//! tests check the two against each other, so a client generated from the document sends only
//! requests the API takes, and whatever the document forbids is a 400.

use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{Postgres, QueryBuilder};
use tickpipe_common::message::{validate_ticker_name, MAX_TICKER_LEN};

use crate::pattern::{integer_range, Hex};

pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;
/// Most names one `ticker` parameter may list (counted as given, before duplicates are dropped,
/// so that the pattern in the OpenAPI document can state it).
pub const MAX_TICKERS: usize = 100;
pub const ACCEPTED_PARAMETERS: [&str; 5] = ["ticker", "startTime", "endTime", "limit", "cursor"];

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

    /// The hex of `L|TICKER` or `R|UNIX-MS|TICKER`, lower case, with the milliseconds a canonical
    /// integer inside the accepted time range.
    pub static CURSOR: LazyLock<String> = LazyLock::new(|| {
        // A-Z 41-5a, 0-9 30-39, '.' 2e, '-' 2d.
        let ticker_byte = "(?:4[1-9a-f]|5[0-9a]|3[0-9]|2[de])";
        let millis = integer_range::<Hex>(MIN_TIME_SECS * 1000, MAX_TIME_SECS * 1000 + 999);
        format!("^(?:4c7c|527c{millis}7c){ticker_byte}{{1,{MAX_TICKER_LEN}}}$")
    });
}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceQuery {
    /// Upper-cased, deduplicated, sorted; `None` means every ticker.
    pub tickers: Option<Vec<String>>,
    pub form: Form,
    pub limit: i64,
    pub after: Option<Cursor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Latest,
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

/// The sort key of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    Latest {
        ticker: String,
    },
    Range {
        window_start: DateTime<Utc>,
        ticker: String,
    },
}

impl Cursor {
    /// Opaque to clients: hex of `L|ticker` or `R|unix-ms|ticker`.
    pub fn encode(&self) -> String {
        let plain = match self {
            Self::Latest { ticker } => format!("L|{ticker}"),
            Self::Range {
                window_start,
                ticker,
            } => format!("R|{}|{ticker}", window_start.timestamp_millis()),
        };
        plain.bytes().map(|b| format!("{b:02x}")).collect()
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
        let mut parts = plain.split('|');
        let cursor = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("L"), Some(ticker), None, None) => Self::Latest {
                ticker: ticker.to_owned(),
            },
            (Some("R"), Some(ms), Some(ticker), None) => {
                let ms = parse_canonical_integer(ms).ok_or(CursorError::Malformed)?;
                Self::Range {
                    window_start: time_from_millis(ms).ok_or(CursorError::OutOfRange)?,
                    ticker: ticker.to_owned(),
                }
            }
            _ => return Err(CursorError::Malformed),
        };
        let ticker = match &cursor {
            Self::Latest { ticker } | Self::Range { ticker, .. } => ticker,
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
    /// Validates raw query pairs. Every error names the parameter and the accepted form.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, String> {
        let given = Given::read(pairs)?;
        let form = given.form()?;
        let after = match &given.cursor {
            None => None,
            Some(text) => Some(parse_cursor(text, form)?),
        };
        Ok(Self {
            tickers: given.tickers,
            form,
            limit: given.limit.unwrap_or(DEFAULT_LIMIT),
            after,
        })
    }

    /// The SQL of this query, fetching one row more than the limit to learn whether a next page exists.
    pub fn to_sql(&self) -> QueryBuilder<'static, Postgres> {
        const COLUMNS: &str = "w.ticker, w.window_start, w.window_end, w.average_price, w.sample_count, w.min_price, w.max_price";
        let mut sql = QueryBuilder::new("SELECT ");
        sql.push(COLUMNS);
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
                if let Some(Cursor::Latest { ticker }) = &self.after {
                    sql.push(" AND l.ticker > ").push_bind(ticker.clone());
                }
                sql.push(" ORDER BY l.ticker");
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

/// Each parameter as given, checked on its own.
#[derive(Debug, Default)]
struct Given {
    tickers: Option<Vec<String>>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    limit: Option<i64>,
    cursor: Option<String>,
}

impl Given {
    /// Reads the pairs: unknown parameters and repeated ones are refused.
    fn read(pairs: &[(String, String)]) -> Result<Self, String> {
        let mut given = Self::default();
        for (name, value) in pairs {
            let slot_taken = match name.as_str() {
                "ticker" => given.tickers.replace(parse_tickers(value)?).is_some(),
                "startTime" => given
                    .start
                    .replace(parse_time("startTime", value)?)
                    .is_some(),
                "endTime" => given.end.replace(parse_time("endTime", value)?).is_some(),
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

    /// Latest without times, else a range whose start is before its end.
    fn form(&self) -> Result<Form, String> {
        let (start, end) = (self.start, self.end);
        if let (Some(s), Some(e)) = (start, end) {
            if s >= e {
                return Err("startTime must be earlier than endTime".to_owned());
            }
        }
        Ok(if start.is_some() || end.is_some() {
            Form::Range { start, end }
        } else {
            Form::Latest
        })
    }
}

/// A cursor that [`Cursor::encode`] wrote for a query of the same form.
fn parse_cursor(text: &str, form: Form) -> Result<Cursor, String> {
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
    );
    if !fits {
        return Err("cursor belongs to a different kind of query; repeat the parameters of the request that returned it".to_owned());
    }
    Ok(decoded)
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
        PriceQuery::parse(&pairs)
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
            window_start: at("2026-11-27T10:00:30Z"),
            ticker: "MSFT".into(),
        };
        assert_eq!(Cursor::decode(&range.encode()), Ok(range.clone()));
        let latest = Cursor::Latest {
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
            "SELECT w.ticker, w.window_start, w.window_end, w.average_price, w.sample_count, w.min_price, w.max_price \
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
        assert!(accepted >= 6, "{accepted}");
    }
}
