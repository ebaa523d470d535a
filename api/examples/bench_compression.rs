//! What compressing a page of `/v1/get-prices` costs: CPU per page and size, per encoding and
//! level, through tower-http's `CompressionLayer` as the API configures it (the figure behind
//! `API_COMPRESSION_LEVEL`'s default; docs/benchmarks.md).
//!
//! ```sh
//! cargo run --release -p tickpipe-api --example bench_compression
//! ```
//!
//! The page is 1000 entries shaped as the API writes them (tickers in turn, 30-second windows,
//! prices with four to six digits). Each measurement sends the page through the layer
//! `BENCH_COMPRESSION_PAGES` times (default 200) on one thread and reads that thread's CPU time
//! (`/proc/thread-self/schedstat`; wall time where it cannot be read).
//!
//! Environment: `BENCH_COMPRESSION_PAGES`, `BENCH_COMPRESSION_ENTRIES` (1000).

use std::time::Instant;

use anyhow::Context;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use tickpipe_testkit::env_or;
use tower::ServiceExt;
use tower_http::compression::{CompressionLayer, CompressionLevel};

/// 2026-11-27T10:00:00Z.
const T0: i64 = 1_795_773_600;
const TICKERS: [&str; 10] = [
    "AAPL", "AMZN", "MSFT", "GOOG", "META", "NVDA", "TSLA", "NFLX", "ORCL", "INTC",
];

/// A page of `entries` as the API serializes it.
fn page(entries: usize) -> anyhow::Result<String> {
    let iso = |secs: i64| {
        chrono::DateTime::from_timestamp(secs, 0)
            .map(|time| time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .context("time")
    };
    let mut prices = Vec::with_capacity(entries);
    let mut seed: u64 = 20_261_205;
    for n in 0..entries {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let jitter = i64::try_from(seed >> 54).context("jitter")?;
        let start = T0 + i64::try_from(n / TICKERS.len())? * 30;
        let base = 1000 + 700 * i64::try_from(n % TICKERS.len())?;
        let samples = 30 + jitter % 40;
        prices.push(serde_json::json!({
            "ticker": TICKERS[n % TICKERS.len()],
            "windowStart": iso(start)?, "windowEnd": iso(start + 30)?,
            "averagePrice": base as f64 + jitter as f64 / 7.0, "samples": samples,
            "minPrice": base - jitter, "maxPrice": base + 2 * jitter,
            "openPrice": base + jitter / 2, "closePrice": base + jitter / 3,
            "complete": true,
        }));
    }
    let page = serde_json::json!({ "prices": prices, "nextCursor": "eyJ0IjoicmFuZ2UifQ" });
    Ok(serde_json::to_string(&page)?)
}

/// This thread's CPU time in nanoseconds, if the kernel says.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Sends `body` through the layer `pages` times with `accept`; the CPU µs per page and the size.
async fn measure(body: &str, accept: &str, level: i32, pages: u32) -> anyhow::Result<(f64, usize)> {
    let body = body.to_owned();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let body = body.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        )
        .layer(CompressionLayer::new().quality(CompressionLevel::Precise(level)));
    let mut size = 0;
    let (cpu, wall) = (thread_cpu_ns(), Instant::now());
    for _ in 0..pages {
        let request = Request::get("/")
            .header("accept-encoding", accept)
            .body(Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        size = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await?
            .len();
    }
    let nanos = match (cpu, thread_cpu_ns()) {
        (Some(before), Some(after)) => after.saturating_sub(before) as f64,
        _ => wall.elapsed().as_nanos() as f64,
    };
    Ok((nanos / 1000.0 / f64::from(pages), size))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let pages: u32 = env_or("BENCH_COMPRESSION_PAGES", "200").parse()?;
    let entries: usize = env_or("BENCH_COMPRESSION_ENTRIES", "1000").parse()?;
    let body = page(entries)?;
    let (identity_us, identity) = measure(&body, "identity", 1, pages).await?;
    println!(
        "page: {entries} entries, {identity} bytes; identity through the layer {identity_us:.0} µs"
    );
    println!("encoding level  CPU µs/page  bytes  ratio");
    for encoding in ["zstd", "gzip", "br"] {
        for level in [1, 3, 6, 9] {
            let (us, size) = measure(&body, encoding, level, pages).await?;
            println!(
                "{encoding:>8} {level:>5} {:>12.0} {size:>6} {:>6.1}",
                us - identity_us,
                identity as f64 / size as f64
            );
        }
    }
    Ok(())
}
