//! API benchmark: seeds 10 thousand and 1 million rows, starts the API binary, and loads three
//! queries with wrk at 64 connections: no parameters, one ticker over one hour, one day with
//! limit 1000. Prints requests/s, p50/p99 latency and the API's peak memory. Figures only.
//!
//! Environment: DATABASE_URL (from `scripts/services.sh env`), API_BIN (default
//! target/release/api), BENCH_SECS per query (default 10), BENCH_SIZES (default 10000,1000000).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tickpipe_testkit::TestDatabase;

/// Newest seeded window start: 2026-11-27T10:00:00Z.
const NEWEST: i64 = 1_795_773_600;
const TICKERS: [&str; 3] = ["AAPL", "AMZN", "MSFT"];

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn seed(db: &TestDatabase, rows: i64) -> anyhow::Result<i64> {
    let per_ticker = rows / TICKERS.len() as i64;
    for ticker in TICKERS {
        sqlx::query(
            "INSERT INTO window_prices (ticker, window_start, window_end, price_sum, sample_count, min_price, max_price)
             SELECT $1, to_timestamp($2 - w * 30), to_timestamp($2 - w * 30 + 30), 1000 + w % 97, 5, 150, 250
             FROM generate_series(0, $3 - 1) AS w",
        )
        .bind(ticker)
        .bind(NEWEST as f64)
        .bind(per_ticker)
        .execute(&db.pool)
        .await?;
    }
    sqlx::query("INSERT INTO latest_windows SELECT ticker, max(window_start) FROM window_prices GROUP BY ticker")
        .execute(&db.pool)
        .await?;
    sqlx::query("VACUUM ANALYZE window_prices")
        .execute(&db.pool)
        .await?;
    Ok(per_ticker)
}

struct Load {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn to_ms(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(v) = text.strip_suffix("us") {
        (v, 1e-3)
    } else if let Some(v) = text.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = text.strip_suffix('s') {
        (v, 1e3)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

fn wrk(url: &str, secs: u64) -> anyhow::Result<Load> {
    let output = Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{secs}s"), "--latency", url])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let find = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    let non_2xx = text.lines().find(|l| l.contains("Non-2xx"));
    anyhow::ensure!(non_2xx.is_none(), "errors under load: {text}");
    Ok(Load {
        requests_per_sec: find("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no Requests/sec in {text}"))?,
        p50_ms: find("50%")
            .and_then(|v| to_ms(&v))
            .ok_or_else(|| anyhow::anyhow!("no p50 in {text}"))?,
        p99_ms: find("99%")
            .and_then(|v| to_ms(&v))
            .ok_or_else(|| anyhow::anyhow!("no p99 in {text}"))?,
    })
}

/// Peak resident memory of `pid` (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?;
    Ok(kib / 1024.0)
}

/// Starts the API binary on `port` over `database_url`; its metrics on a port of their own.
fn start_api(database_url: &str, port: u16) -> anyhow::Result<Child> {
    Ok(Command::new(env("API_BIN", "target/release/api"))
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("API_BIND", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("DATABASE_MAX_CONNECTIONS", "16")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?)
}

/// The three loads: no parameters, and an hour and a day in the middle of the seeded range.
fn queries(base: &str, per_ticker: i64) -> [(&'static str, String); 3] {
    let middle = NEWEST - per_ticker * 30 / 2;
    [
        ("no parameters", format!("{base}/v1/get-prices")),
        (
            "one ticker, one hour",
            format!(
                "{base}/v1/get-prices?ticker=AMZN&startTime={}&endTime={}",
                middle,
                middle + 3600
            ),
        ),
        (
            "one day, limit 1000",
            format!(
                "{base}/v1/get-prices?startTime={}&endTime={}&limit=1000",
                middle - 43_200,
                middle + 43_200
            ),
        ),
    ]
}

fn print_load(name: &str, rows: i64, load: &Load) {
    println!(
        "bench|api {name}, {rows} rows: requests/s|{:.0}|req/s|||",
        load.requests_per_sec
    );
    println!(
        "bench|api {name}, {rows} rows: p50|{:.2}|ms|||",
        load.p50_ms
    );
    println!(
        "bench|api {name}, {rows} rows: p99|{:.2}|ms|target|5|{:.3}",
        load.p99_ms,
        load.p99_ms / 5.0
    );
}

/// Seeds `rows`, runs the API over them and loads each query; returns the no-parameter p50.
async fn bench_size(rows: i64, secs: u64) -> anyhow::Result<f64> {
    let db = TestDatabase::create().await;
    let per_ticker = seed(&db, rows).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut api = start_api(&db.url, port)?;
    let result = load(port, rows, per_ticker, secs, api.id()).await;
    // Stopped whatever happened, so that a failed run leaves no API behind.
    let _ = Command::new("kill")
        .args(["-TERM", &api.id().to_string()])
        .status();
    let _ = api.wait();
    result
}

/// Loads each query against the API on `port` (process `pid`); returns the no-parameter p50.
async fn load(port: u16, rows: i64, per_ticker: i64, secs: u64, pid: u32) -> anyhow::Result<f64> {
    tickpipe_testkit::eventually("api up", Duration::from_secs(20), || async {
        tickpipe_common::healthcheck::probe(&format!("127.0.0.1:{port}"), "/readyz").then_some(())
    })
    .await;
    let mut latest_p50 = None;
    for (name, url) in &queries(&format!("http://127.0.0.1:{port}"), per_ticker) {
        // Warm-up: connections, prepared statements and PostgreSQL's buffer cache.
        wrk(url, 2)?;
        let load = wrk(url, secs)?;
        print_load(name, rows, &load);
        if *name == "no parameters" {
            latest_p50 = Some(load.p50_ms);
        }
    }
    println!(
        "bench|api peak memory (VmHWM), {rows} rows|{:.1}|MiB|||",
        peak_rss_mib(pid)?
    );
    latest_p50.ok_or_else(|| anyhow::anyhow!("the no-parameter query did not run"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = env("BENCH_SECS", "10").parse()?;
    let sizes: Vec<i64> = env("BENCH_SIZES", "10000,1000000")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let mut latest_p50 = Vec::new();
    for rows in sizes {
        latest_p50.push((rows, bench_size(rows, secs).await?));
    }
    if let [(small_rows, small), .., (large_rows, large)] = latest_p50.as_slice() {
        println!(
            "bench|api no-parameter p50 at {large_rows} vs {small_rows} rows|{large:.2}|ms|p50 at {small_rows} rows|{small:.2}|{:.3}",
            large / small
        );
    }
    Ok(())
}
