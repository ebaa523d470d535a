//! What a request costs, in units of the client's token bucket: roughly what it asks of the
//! database, so that a tight loop of 10,000-row pages runs out long before a dashboard polling the
//! latest prices does.
//!
//! | request | cost | why |
//! | --- | --- | --- |
//! | `GET /v1/get-prices` without parameters | 1 | the latest prices, answered from memory while the change feed is live |
//! | `GET /v1/get-prices` with parameters | 1 + ⌈limit/100⌉ (2 to 101; 11 at the default limit 1000) | a query whose rows, and so its time and its answer's size, grow with `limit` |
//! | `GET /v1/stream-prices` | 5 | opening one reads the change log's bounds (and a backlog with `since`); then it costs nothing while open |
//! | anything else that reaches a handler (404, 405) | 1 | no database work, but not free: a scanner is limited too |
//! | `/healthz`, `/readyz`, `/v1/openapi.json`, the dashboard's files | free | probes and static files: never refused, no key needed |
//!
//! The cost is charged when the request arrives, before it is answered, whatever the answer (a 400
//! for a bad parameter, a 304). A `limit` that is not a valid one costs as the default does: the
//! request will be a 400 anyway.

use crate::query::{DEFAULT_LIMIT, MAX_LIMIT};

/// The cost of opening a stream.
pub(crate) const STREAM_COST: u32 = 5;
/// Rows per unit of a prices page.
const ROWS_PER_UNIT: i64 = 100;
/// The paths that are never limited and need no key: probes, the document and the dashboard's files.
const FREE_PATHS: [&str; 4] = ["/healthz", "/readyz", "/v1/openapi.json", "/"];

/// What a request costs: `None` when it is free (neither limited nor asked for a key).
pub(crate) fn cost(path: &str, query: Option<&str>) -> Option<u32> {
    if FREE_PATHS.contains(&path) || path.starts_with("/assets/") {
        return None;
    }
    match path {
        "/v1/get-prices" => Some(prices_cost(query)),
        "/v1/stream-prices" => Some(STREAM_COST),
        _ => Some(1),
    }
}

/// `GET /v1/get-prices`: 1 without parameters, else 1 + ⌈limit/100⌉.
fn prices_cost(query: Option<&str>) -> u32 {
    let Some(query) = query.filter(|query| !query.is_empty()) else {
        return 1;
    };
    let limit = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "limit")
        .and_then(|(_, value)| value.parse::<i64>().ok())
        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
        .unwrap_or(DEFAULT_LIMIT);
    let units = 1 + (limit + ROWS_PER_UNIT - 1) / ROWS_PER_UNIT;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// The most a request can cost (a 10,000-row page): a burst below it cannot serve one such page
/// in full, so such a request takes the whole bucket instead (see `crate::access::limit`).
pub(crate) fn max_cost() -> u32 {
    prices_cost(Some(&format!("limit={MAX_LIMIT}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cost_by_their_limit_and_the_latest_prices_one() {
        let prices = |query| cost("/v1/get-prices", query);
        assert_eq!(prices(None), Some(1));
        assert_eq!(prices(Some("")), Some(1));
        assert_eq!(prices(Some("limit=1")), Some(2));
        assert_eq!(prices(Some("limit=100")), Some(2));
        assert_eq!(prices(Some("limit=101")), Some(3));
        assert_eq!(prices(Some("ticker=AMZN")), Some(11), "default limit 1000");
        assert_eq!(prices(Some("startTime=0&limit=10000")), Some(101));
        assert_eq!(
            prices(Some("limit=%31%30")),
            Some(2),
            "decoded as the handler does"
        );
        for bad in ["limit=0", "limit=10001", "limit=x", "limit=-5"] {
            assert_eq!(prices(Some(bad)), Some(11), "{bad}: as the default");
        }
        assert_eq!(max_cost(), 101);
    }

    #[test]
    fn streams_cost_a_few_units_and_probes_and_files_nothing() {
        assert_eq!(
            cost("/v1/stream-prices", Some("since=3")),
            Some(STREAM_COST)
        );
        for free in [
            "/healthz",
            "/readyz",
            "/v1/openapi.json",
            "/",
            "/assets/app.1234.js",
        ] {
            assert_eq!(cost(free, None), None, "{free}");
        }
        assert_eq!(cost("/v1/nothing", None), Some(1));
        assert_eq!(cost("/assets", None), Some(1));
    }
}
