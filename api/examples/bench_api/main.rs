//! API benchmark: seeds 10 thousand and 1 million rows, starts the API binary, and loads five
//! queries with wrk at 64 connections: no parameters, one ticker over one hour, one day with
//! limit 1000, `interval=1h` over one day for all tickers, `interval=1d` over 30 days for one
//! ticker. Prints requests/s, p50/p99 latency and the API's peak memory.
//!
//! Beside each wrk figure, pgbench runs the exact SQL text and parameters the API sends for that
//! request (`-M prepared -c 64 -j 2`, same duration, same database, same run): the database's own
//! ceiling for that query, and the ratio API ÷ pgbench. The SQL is captured from PostgreSQL's log:
//! a short-lived capture API answers one request per query on a database that logs every
//! statement, then logging is switched off again before the measured API starts.
//!
//! Per query it also prints the API's CPU time per request (utime + stime of the API process from
//! `/proc/<pid>/stat`, before and after the wrk run) and, from `pg_stat_statements` (which
//! `scripts/services.sh` loads; the extension is created in the bench database only), the statements
//! PostgreSQL executed per API request and their mean execution and planning time, next to the same
//! figures under pgbench: where the time of each request goes.
//!
//! With `BENCH_MODE=history`, the history benchmark instead ([`history`]).
//!
//! Environment: DATABASE_URL (from `scripts/services.sh env`), API_BIN (default
//! target/release/api), BENCH_SECS per query (default 10), BENCH_SIZES (default 10000,1000000),
//! TICKPIPE_PG_LOG (PostgreSQL's log file; default /tmp/tickpipe-services/logs/postgres.log).

mod capture;
mod history;
mod measure;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tickpipe_testkit::seed::{self, Totals};
use tickpipe_testkit::TestDatabase;

use self::capture::{capture, pgbench, Captured};
use self::measure::{
    cpu_secs, enable_statements, peak_rss_mib, print_db_work, reset_statements, statements, wrk,
    Load,
};

/// Newest seeded window start: 2026-11-27T10:00:00Z.
const NEWEST: i64 = 1_795_773_600;
const TICKERS: [&str; 3] = ["AAPL", "AMZN", "MSFT"];

pub(crate) fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Seeds `rows` windows (a third per ticker, one every 30 s back from [`NEWEST`]) through the
/// aggregator's write path ([`seed::write`], 10 000 rows a commit, with `latest_windows` and the
/// change log), by one partition whose boundary is past every window: every entry is complete.
async fn seed(db: &TestDatabase, rows: i64) -> anyhow::Result<i64> {
    let per_ticker = rows / TICKERS.len() as i64;
    let started = Instant::now();
    let windows = TICKERS.iter().flat_map(|ticker| {
        (0..per_ticker).map(move |w| {
            let start_ms = (NEWEST - w * 30) * 1000;
            // Open at the minimum, close at the maximum, keyed inside their window.
            let totals = Totals::new(1000 + w % 97, 5, 150, 250);
            seed::window(ticker, (start_ms, start_ms + 30_000), totals)
        })
    });
    seed::write(&db.pool, 0, (NEWEST + 30) * 1000, windows).await;
    eprintln!(
        "seeded {} rows through the write path in {:.1?}",
        per_ticker * TICKERS.len() as i64,
        started.elapsed()
    );
    sqlx::query("VACUUM ANALYZE window_prices")
        .execute(&db.pool)
        .await?;
    Ok(per_ticker)
}

/// Starts the API binary on `port` over `database_url`; its metrics on a port of their own.
pub(crate) fn start_api(database_url: &str, port: u16) -> anyhow::Result<Child> {
    Ok(Command::new(env("API_BIN", "target/release/api"))
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("API_BIND", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        // The API's default pool (8) unless BENCH_POOL says otherwise: on 2 cores a larger pool
        // only adds backends competing for them (4: ratio 0.67, 16: 0.59, 64: 0.42 for the latest
        // query through the database).
        .env("DATABASE_MAX_CONNECTIONS", env("BENCH_POOL", "8"))
        // The load comes from this one address: measured without rate limits.
        .env("API_RATE_LIMIT_RPS", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?)
}

/// The loads: no parameters (from memory), the same query through the database (`?limit=1000`, the
/// default spelled out), an hour and a day in the middle of the seeded range, hourly bars over that
/// day for every ticker, and daily bars over 30 days for one ticker. `BENCH_QUERIES` (names, comma
/// separated, matched as substrings) keeps only some.
pub(crate) fn queries(base: &str, per_ticker: i64) -> Vec<(&'static str, String)> {
    let middle = NEWEST - per_ticker * 30 / 2;
    let only = env("BENCH_QUERIES", "");
    let all = [
        ("no parameters", format!("{base}/v1/get-prices")),
        (
            "latest through the database (limit=1000)",
            format!("{base}/v1/get-prices?limit=1000"),
        ),
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
        (
            "interval=1h, one day, all tickers",
            format!(
                "{base}/v1/get-prices?interval=1h&startTime={}&endTime={}",
                middle - 43_200,
                middle + 43_200
            ),
        ),
        (
            "interval=1d, 30 days, one ticker",
            format!(
                "{base}/v1/get-prices?interval=1d&ticker=AMZN&startTime={}&endTime={}",
                NEWEST - 30 * 86_400,
                NEWEST
            ),
        ),
    ];
    all.into_iter()
        .filter(|(name, _)| only.is_empty() || only.split(',').any(|part| name.contains(part)))
        .collect()
}

pub(crate) fn stop(api: &mut Child) {
    // Stopped whatever happened, so that a failed run leaves no API behind.
    let stopped = Command::new("kill")
        .args(["-TERM", &api.id().to_string()])
        .status();
    if stopped.is_err() {
        let _ = api.kill();
    }
    let _ = api.wait();
}

pub(crate) async fn wait_until_ready(port: u16) {
    tickpipe_testkit::eventually("api up", Duration::from_secs(20), || async {
        tickpipe_common::healthcheck::probe(&format!("127.0.0.1:{port}"), "/readyz").then_some(())
    })
    .await;
}

fn print_load(name: &str, rows: i64, load: &Load, pgbench_tps: f64, cpu_us: f64) {
    println!("bench|api {name}, {rows} rows: API CPU per request|{cpu_us:.1}|µs|||");
    if load.errors > 0.0 {
        println!(
            "bench|api {name}, {rows} rows: non-2xx responses|{:.0}|of {:.0}|||",
            load.errors, load.requests
        );
    }
    println!(
        "bench|api {name}, {rows} rows: requests/s|{:.0}|req/s|pgbench, same SQL (tps)|{pgbench_tps:.0}|{:.2}",
        load.requests_per_sec,
        load.requests_per_sec / pgbench_tps
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

/// Seeds `rows`, runs the API over them and loads each query, with pgbench on the same SQL beside
/// it; returns the no-parameter p50.
async fn bench_size(rows: i64, secs: u64) -> anyhow::Result<f64> {
    let db = TestDatabase::create().await;
    let per_ticker = seed(&db, rows).await?;
    // Before any API session starts: the database's settings apply to sessions opened later.
    let profile = enable_statements(&db).await;
    let free_port = || -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let capture_port = free_port()?;
    let capture_queries = queries(&format!("http://127.0.0.1:{capture_port}"), per_ticker);
    let captured = capture(&db, &capture_queries, capture_port).await?;
    let port = free_port()?;
    let mut api = start_api(&db.url, port)?;
    let result = load(
        &db,
        port,
        (rows, per_ticker),
        secs,
        api.id(),
        &captured,
        profile,
    )
    .await;
    stop(&mut api);
    result
}

/// Loads each query against the API on `port` (process `pid`), then pgbench on the SQL captured
/// for it; returns the no-parameter p50.
async fn load(
    db: &TestDatabase,
    port: u16,
    (rows, per_ticker): (i64, i64),
    secs: u64,
    pid: u32,
    captured: &[Captured],
    profile: bool,
) -> anyhow::Result<f64> {
    wait_until_ready(port).await;
    let mut latest_p50 = None;
    let loads = queries(&format!("http://127.0.0.1:{port}"), per_ticker);
    for ((name, url), sql) in loads.iter().zip(captured) {
        // Warm-up: connections, prepared statements and PostgreSQL's buffer cache.
        wrk(url, 2)?;
        if profile {
            reset_statements(db).await?;
        }
        let cpu_before = cpu_secs(pid)?;
        let load = wrk(url, secs)?;
        let cpu_us = (cpu_secs(pid)? - cpu_before) / load.requests * 1e6;
        let api_work = if profile {
            let work = statements(db).await?;
            reset_statements(db).await?;
            Some(work)
        } else {
            None
        };
        let (tps, transactions) = pgbench(&db.url, sql, secs)?;
        print_load(name, rows, &load, tps, cpu_us);
        if let Some(api_work) = api_work {
            print_db_work("api", name, rows, api_work, load.requests);
            print_db_work("pgbench", name, rows, statements(db).await?, transactions);
        }
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
    if env("BENCH_MODE", "api") == "history" {
        return history::run(secs).await;
    }
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
