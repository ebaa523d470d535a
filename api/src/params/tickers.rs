//! The `ticker` parameter of both endpoints: a comma-separated list of names, its grammar and the
//! pattern the OpenAPI document publishes for it.
//!
//! One function for both endpoints, so that `GET /v1/get-prices` and `GET /v1/stream-prices` accept
//! and refuse exactly the same lists with the same words.

use std::sync::LazyLock;

use tickpipe_common::message::{validate_ticker_name, MAX_TICKER_LEN};

/// Most names one `ticker` parameter may list (counted as given, before duplicates are dropped,
/// so that the pattern in the OpenAPI document can state it).
pub(crate) const MAX_TICKERS: usize = 100;

/// One or more comma-separated names of 1-16 of `A-Z a-z 0-9 . -`, each optionally padded with
/// spaces, at most [`MAX_TICKERS`] of them.
pub static PATTERN: LazyLock<String> = LazyLock::new(|| {
    let name = format!(" *[A-Za-z0-9.-]{{1,{MAX_TICKER_LEN}}} *");
    format!("^{name}(?:,{name}){{0,{}}}$", MAX_TICKERS - 1)
});

/// The names of a `ticker` value, upper-cased, deduplicated and sorted (byte order); the error
/// names the parameter and the accepted form.
pub(crate) fn parse(value: &str) -> Result<Vec<String>, String> {
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
