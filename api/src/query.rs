//! `GET /v1/get-prices` parameters: parsing, validation, cursors and the SQL they become.
//!
//! Kept free of I/O so every rule has a fast unit test. Two query forms exist:
//! - latest: no `startTime`/`endTime`, the latest written window of each ticker, sorted by ticker,
//!   read through `latest_windows` (one index seek per ticker, whatever the table's size);
//! - range: windows whose start lies in `[startTime, endTime)`, sorted by window start then ticker,
//!   read through the (ticker, window_start) or (window_start, ticker) index.
//!
//! Pagination is keyset: the cursor holds the sort key of the last row returned, never an offset.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{Postgres, QueryBuilder};
use tickpipe_common::message::validate_ticker_name;

pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;
const MAX_TICKERS: usize = 100;
pub const ACCEPTED_PARAMETERS: [&str; 5] = ["ticker", "startTime", "endTime", "limit", "cursor"];

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

    pub fn decode(text: &str) -> Option<Self> {
        if text.len() % 2 != 0 || text.len() > 128 {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        let plain = String::from_utf8(bytes?).ok()?;
        let mut parts = plain.split('|');
        let cursor = match (parts.next()?, parts.next(), parts.next(), parts.next()) {
            ("L", Some(ticker), None, None) => Self::Latest {
                ticker: ticker.to_owned(),
            },
            ("R", Some(ms), Some(ticker), None) => Self::Range {
                window_start: Utc.timestamp_millis_opt(ms.parse().ok()?).single()?,
                ticker: ticker.to_owned(),
            },
            _ => return None,
        };
        let ticker = match &cursor {
            Self::Latest { ticker } | Self::Range { ticker, .. } => ticker,
        };
        validate_ticker_name(ticker).ok()?;
        Some(cursor)
    }
}

impl PriceQuery {
    /// Validates raw query pairs. Every error names the parameter and the accepted form.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, String> {
        let mut tickers = None;
        let (mut start, mut end, mut limit, mut cursor) = (None, None, None, None);
        for (name, value) in pairs {
            let slot_taken = match name.as_str() {
                "ticker" => tickers.replace(parse_tickers(value)?).is_some(),
                "startTime" => start.replace(parse_time("startTime", value)?).is_some(),
                "endTime" => end.replace(parse_time("endTime", value)?).is_some(),
                "limit" => limit.replace(parse_limit(value)?).is_some(),
                "cursor" => cursor.replace(value.clone()).is_some(),
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
        if let (Some(s), Some(e)) = (start, end) {
            if s >= e {
                return Err("startTime must be earlier than endTime".to_owned());
            }
        }
        let form = if start.is_some() || end.is_some() {
            Form::Range { start, end }
        } else {
            Form::Latest
        };
        let after = match cursor {
            None => None,
            Some(text) => {
                let decoded = Cursor::decode(&text).ok_or(
                    "cursor is not valid; pass the nextCursor of a previous response unchanged",
                )?;
                let fits = matches!(
                    (&decoded, form),
                    (Cursor::Latest { .. }, Form::Latest)
                        | (Cursor::Range { .. }, Form::Range { .. })
                );
                if !fits {
                    return Err("cursor belongs to a different kind of query; repeat the parameters of the request that returned it".to_owned());
                }
                Some(decoded)
            }
        };
        Ok(Self {
            tickers,
            form,
            limit: limit.unwrap_or(DEFAULT_LIMIT),
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

fn parse_tickers(value: &str) -> Result<Vec<String>, String> {
    let mut tickers = Vec::new();
    for raw in value.split(',') {
        let ticker = raw.trim().to_ascii_uppercase();
        validate_ticker_name(&ticker).map_err(|e| {
            format!("ticker: {e}; give one or more comma-separated, e.g. ticker=AMZN,MSFT")
        })?;
        tickers.push(ticker);
    }
    tickers.sort();
    tickers.dedup();
    if tickers.len() > MAX_TICKERS {
        return Err(format!("ticker: at most {MAX_TICKERS} tickers per request"));
    }
    Ok(tickers)
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, String> {
    let invalid = || {
        format!("{name} {value:?} is not a time; use RFC 3339 such as 2026-11-27T10:00:00Z, or integer Unix seconds")
    };
    if let Ok(seconds) = value.parse::<i64>() {
        return Utc.timestamp_opt(seconds, 0).single().ok_or_else(invalid);
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid())
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
        assert_eq!(Cursor::decode(&range.encode()), Some(range.clone()));
        let latest = Cursor::Latest {
            ticker: "AAPL".into(),
        };
        assert_eq!(Cursor::decode(&latest.encode()), Some(latest.clone()));
        assert!(parse(&[("cursor", &range.encode())])
            .expect_err("form")
            .contains("cursor"));
        assert!(parse(&[("cursor", &latest.encode()), ("startTime", "0")]).is_err());
        assert_eq!(Cursor::decode("4c7c"), None, "empty ticker");
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
}
