//! The request parameters both endpoints read, one module per kind: `time` (instants and their
//! range), `tickers` (the `ticker` list), `cursor` (the page token codec), `interval` (bar widths
//! and their alignment), `sort` (the direction of a page's order) and `integer` (canonical
//! integers: the one parser for them and the patterns of their ranges).
//!
//! Kept free of I/O and of any endpoint, so every rule has a fast unit test and `GET /v1/get-prices`
//! and `GET /v1/stream-prices` share each grammar instead of copying it. Each parameter's syntax is
//! also published as a pattern in the OpenAPI document; the parsers here accept exactly what those
//! patterns (plus the calendar) accept, and the unit tests check the two against each other, so a
//! client generated from the document sends only requests the API takes, and whatever the document
//! forbids is a 400.

pub(crate) mod cursor;
pub(crate) mod integer;
pub(crate) mod interval;
pub(crate) mod sort;
pub(crate) mod tickers;
pub(crate) mod time;

use axum::extract::Query;
use axum::http::Uri;

use crate::problem::ApiError;

/// The query string as (name, value) pairs in order, repeats kept (so a repeated parameter can be
/// refused); a malformed one is a 400. Shared by every endpoint's extractor.
pub(crate) fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|rejection| {
        ApiError::bad_request(format!(
            "query string is malformed: {}",
            rejection.body_text()
        ))
    })?;
    Ok(pairs)
}
