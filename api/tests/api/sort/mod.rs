//! Issue 23 item 5, `sort=asc|desc`: every page walked both ways over windows with ties on their
//! start and over bars of every interval (stored and computed), a descending walk exactly the
//! reverse of the ascending one; windows committed between page requests; the cursor's order and
//! the 400s; the latest form; caching of descending pages; the OpenAPI document.

mod answers;
mod commits;
mod pages;

use axum::http::StatusCode;
use axum::Router;
use serde_json::Value;

use crate::helpers::call;

/// How a walk asks for the pages after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The cursor alone: it carries the order.
    CursorAlone,
    /// The cursor with `sort` repeated beside it.
    WithSort,
}

/// One page of `uri` through `app`, which must answer 200: its entries and next cursor.
async fn page(app: &Router, uri: &str) -> (Vec<Value>, Option<String>) {
    let answer = call(app, "GET", uri).await;
    assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.body);
    let prices = answer.body["prices"].as_array().expect("prices").clone();
    let next = answer.body["nextCursor"].as_str().map(str::to_owned);
    (prices, next)
}

/// Every page of `base` (which has a `?`) in order `sort`, following the cursors: the entries and
/// the number of pages. Every page but the last must be full (`limit`).
async fn walk(
    app: &Router,
    base: &str,
    sort: &str,
    limit: usize,
    next: Next,
) -> (Vec<Value>, usize) {
    let mut entries = Vec::new();
    let mut uri = format!("{base}&limit={limit}&sort={sort}");
    let mut pages = 0;
    loop {
        let (prices, cursor) = page(app, &uri).await;
        pages += 1;
        assert!(pages < 10_000, "{base}: endless pagination");
        assert!(prices.len() <= limit, "{uri}");
        entries.extend(prices.iter().cloned());
        let Some(cursor) = cursor else {
            return (entries, pages);
        };
        assert_eq!(prices.len(), limit, "{uri}: a page before the last is full");
        uri = match next {
            Next::CursorAlone => format!("{base}&limit={limit}&cursor={cursor}"),
            Next::WithSort => format!("{base}&limit={limit}&sort={sort}&cursor={cursor}"),
        };
    }
}

/// (windowStart, ticker) of an entry: the key pages are sorted by.
fn key(entry: &Value) -> (String, String) {
    (
        entry["windowStart"]
            .as_str()
            .expect("windowStart")
            .to_owned(),
        entry["ticker"].as_str().expect("ticker").to_owned(),
    )
}

/// Walks `base` ascending and descending (the descending way both with the cursor alone and with
/// `sort` repeated) by `limit`, checks that the ascending walk is `expected` and the descending
/// one exactly its reverse, each in `ceil(len / limit)` pages.
async fn both_ways(app: &Router, base: &str, limit: usize, expected: &[Value]) {
    let pages = expected.len().div_ceil(limit).max(1);
    let (asc, asc_pages) = walk(app, base, "asc", limit, Next::WithSort).await;
    assert_eq!(asc_pages, pages, "{base} asc by {limit}");
    assert_eq!(asc.len(), expected.len(), "{base} asc by {limit}");
    for (index, (got, want)) in asc.iter().zip(expected).enumerate() {
        assert_eq!(got, want, "{base} asc by {limit}, entry {index}");
    }
    let reversed: Vec<Value> = expected.iter().rev().cloned().collect();
    for next in [Next::CursorAlone, Next::WithSort] {
        let (desc, desc_pages) = walk(app, base, "desc", limit, next).await;
        assert_eq!(desc_pages, pages, "{base} desc by {limit} ({next:?})");
        assert_eq!(
            desc.len(),
            reversed.len(),
            "{base} desc by {limit} ({next:?})"
        );
        for (index, (got, want)) in desc.iter().zip(&reversed).enumerate() {
            assert_eq!(
                got, want,
                "{base} desc by {limit} ({next:?}), entry {index}"
            );
        }
    }
}
