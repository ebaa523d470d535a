//! History benchmark (`BENCH_MODE=history`): the bar queries at 10 thousand and at 10 million
//! windows, each database ingested by the real aggregator binary from a pre-filled topic, and the
//! aggregator's memory and commit time at few and at many tickers.
//!
//! Per size: `BENCH_HISTORY_TICKERS` (1000) tickers, every ticker priced once in each of
//! `BENCH_HISTORY_WINDOWS` (10, 10080: five minutes and 3.5 days) consecutive 30-second windows
//! ending an hour ago, three tickers a message. Each query then runs under wrk with one and with 64
//! connections, beside pgbench on the SQL the API sent; the figures that matter are the ratio of
//! p50 at the large size to p50 at the small one (goal ≤ 1.5: the cost follows the answer, not the
//! history), no non-2xx answer, and API ÷ pgbench (goal ≥ 0.8).
//!
//! Then `BENCH_HISTORY_TICKER_COUNTS` ("10:2880,10000:20": tickers:windows) ingests measure the
//! aggregator's peak memory (VmHWM) and its commit time per window written.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tickpipe_common::message::{Tick, TickerMessage};
use tickpipe_testkit::{TestDatabase, TestRecord};

use crate::capture::{capture, pgbench};
use crate::measure::{peak_rss_mib, wrk_with, Load};
use crate::{env, start_api, stop, wait_until_ready};

const WINDOW_SECS: i64 = 30;

/// A database the aggregator filled: `tickers` × `windows` windows, the newest starting at `newest`.
struct Filled {
    db: TestDatabase,
    newest: i64,
    first: i64,
}

fn ticker(i: i64) -> String {
    format!("T{i:05}")
}

/// Produces the records of `tickers` × `windows` windows to a fresh 3-partition topic; returns it,
/// the records and the prices produced, and the first and newest window start (Unix seconds).
async fn prefill(tickers: i64, windows: i64) -> anyhow::Result<(String, usize, i64, i64)> {
    let topic = tickpipe_testkit::create_topic("history", 3).await;
    let now = chrono::Utc::now().timestamp();
    let newest = (now - 3600) / WINDOW_SECS * WINDOW_SECS;
    let first = newest - (windows - 1) * WINDOW_SECS;
    let mut batch = Vec::new();
    let mut records = 0;
    for w in 0..windows {
        let start_ms = (first + w * WINDOW_SECS) * 1000;
        for chunk in 0..(tickers + 2) / 3 {
            let ticks: Vec<Tick> = (chunk * 3..(chunk * 3 + 3).min(tickers))
                .map(|t| Tick {
                    name: ticker(t).into(),
                    price: 100 + (t * 7 + w * 13) % 5000,
                })
                .collect();
            let value = TickerMessage { tickers: ticks }.encode();
            let partition = i32::try_from(chunk % 3)?;
            batch.push(TestRecord::new(
                partition,
                start_ms + (chunk * 11) % 30_000,
                value,
            ));
            if batch.len() == 50_000 {
                records += batch.len();
                tickpipe_testkit::produce(&topic, &batch).await;
                batch.clear();
            }
        }
    }
    records += batch.len();
    tickpipe_testkit::produce(&topic, &batch).await;
    Ok((topic, records, first, newest))
}

fn start_aggregator(topic: &str, db: &TestDatabase, metrics_port: u16) -> anyhow::Result<Child> {
    Ok(
        Command::new(env("AGGREGATOR_BIN", "target/release/aggregator"))
            .env_clear()
            .env("KAFKA_BROKERS", tickpipe_testkit::brokers())
            .env("KAFKA_TOPIC", topic)
            .env("DATABASE_URL", &db.url)
            .env("AGGREGATOR_GROUP_ID", format!("{topic}-group"))
            .env("AGGREGATOR_DLQ_TOPIC", format!("{topic}.dlq"))
            .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    )
}

/// A value of the aggregator's `/metrics` (the first sample whose line starts with `name `).
fn metric(port: u16, name: &str) -> anyhow::Result<f64> {
    let output = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
        .output()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {name} in the aggregator's metrics"))
}

/// Ingests `tickers` × `windows` windows through the aggregator binary, printing its throughput,
/// memory, commit time per window and write amplification.
async fn ingest(tickers: i64, windows: i64) -> anyhow::Result<Filled> {
    let (topic, records, first, newest) = prefill(tickers, windows).await?;
    let db = TestDatabase::create().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let mut aggregator = start_aggregator(&topic, &db, port)?;
    let expected = tickers * windows;
    tickpipe_testkit::eventually(
        "every window ingested",
        Duration::from_secs(3600),
        || async {
            let prices: Option<i64> =
                sqlx::query_scalar("SELECT sum(sample_count)::bigint FROM window_prices")
                    .fetch_one(&db.pool)
                    .await
                    .ok()?;
            if prices == Some(expected) {
                Some(())
            } else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                None
            }
        },
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let label = format!("{tickers} tickers × {windows} windows");
    let commit_secs = metric(port, "aggregator_write_latency_seconds_sum")?;
    let written = metric(port, "aggregator_windows_written_total")?;
    println!(
        "bench|history ingest, {label}: records/s, start to last window|{:.0}|rec/s|||",
        records as f64 / elapsed
    );
    println!(
        "bench|history ingest, {label}: aggregator peak memory (VmHWM)|{:.1}|MiB|||",
        peak_rss_mib(aggregator.id())?
    );
    println!(
        "bench|history ingest, {label}: commit time per window written|{:.1}|µs|||",
        commit_secs / written * 1e6
    );
    stop(&mut aggregator);
    let rows: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM window_prices),
                (SELECT count(*) FROM bars_1m) + (SELECT count(*) FROM bars_5m)
                  + (SELECT count(*) FROM bars_1h) + (SELECT count(*) FROM bars_1d),
                (SELECT count(*) FROM window_changes)",
    )
    .fetch_one(&db.pool)
    .await?;
    println!(
        "bench|history ingest, {label}: rows written per window (window + rollups + change log)|{:.2}|rows|||",
        (rows.0 + rows.1 + rows.2) as f64 / rows.0 as f64
    );
    sqlx::query("VACUUM ANALYZE").execute(&db.pool).await?;
    Ok(Filled { db, newest, first })
}

/// The four history queries of issue 20, in the order [`queries`] gives them.
const QUERY_NAMES: [&str; 4] = [
    "interval=1d, whole history, one ticker",
    "interval=1h, one day, all tickers",
    "interval=1m, one day, one ticker",
    "interval=1d, limit=10000, all tickers",
];

/// The history queries over a database whose windows span `[first, newest]`.
fn queries(base: &str, filled: &Filled) -> Vec<(&'static str, String)> {
    let (first, end) = (filled.first, filled.newest + WINDOW_SECS);
    let day = end - 86_400;
    let since = first - 86_400;
    let urls = [
        format!("{base}/v1/get-prices?interval=1d&ticker=T00001&startTime={since}&endTime={end}"),
        format!("{base}/v1/get-prices?interval=1h&startTime={day}&endTime={end}"),
        format!("{base}/v1/get-prices?interval=1m&ticker=T00001&startTime={day}&endTime={end}"),
        format!("{base}/v1/get-prices?interval=1d&limit=10000&startTime={since}&endTime={end}"),
    ];
    QUERY_NAMES.into_iter().zip(urls).collect()
}

fn print_load(name: &str, size: &str, clients: u32, load: &Load) {
    println!(
        "bench|history {name}, {size}: p50, {clients} client(s)|{:.2}|ms|||",
        load.p50_ms
    );
    println!(
        "bench|history {name}, {size}: p99, {clients} client(s)|{:.2}|ms|||",
        load.p99_ms
    );
    if load.errors > 0.0 {
        println!(
            "bench|history {name}, {size}: non-2xx, {clients} client(s)|{:.0}|of {:.0}|goal|0|",
            load.errors, load.requests
        );
    }
}

/// How many entries one answer to `url` holds: what the query's cost should follow.
fn entries(url: &str) -> anyhow::Result<usize> {
    let output = Command::new("curl").args(["-sf", url]).output()?;
    anyhow::ensure!(output.status.success(), "{url} failed");
    let body: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(body["prices"].as_array().map_or(0, Vec::len))
}

/// Loads each query on `filled` with 1 and 64 connections and pgbench; returns the 64-client p50s.
async fn measure(filled: &Filled, size: &str, secs: u64) -> anyhow::Result<Vec<f64>> {
    let free_port = || -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let port = free_port()?;
    let loads = queries(&format!("http://127.0.0.1:{port}"), filled);
    let capture_port = free_port()?;
    let captured = capture(
        &filled.db,
        &queries(&format!("http://127.0.0.1:{capture_port}"), filled),
        capture_port,
    )
    .await?;
    let mut api = start_api(&filled.db.url, port)?;
    let result = async {
        wait_until_ready(port).await;
        let mut p50s = Vec::new();
        for ((name, url), sql) in loads.iter().zip(&captured) {
            println!("bench|history {name}, {size}: entries in the answer|{}|entries|||", entries(url)?);
            wrk_with(url, 2, 1)?; // warm-up
            let single = wrk_with(url, secs, 1)?;
            print_load(name, size, 1, &single);
            let many = wrk_with(url, secs, 64)?;
            print_load(name, size, 64, &many);
            let (tps, _) = pgbench(&filled.db.url, sql, secs)?;
            println!(
                "bench|history {name}, {size}: requests/s, 64 clients|{:.0}|req/s|pgbench, same SQL (tps)|{tps:.0}|{:.2}",
                many.requests_per_sec,
                many.requests_per_sec / tps
            );
            p50s.push(many.p50_ms);
        }
        anyhow::Ok(p50s)
    }
    .await;
    stop(&mut api);
    result
}

pub(crate) async fn run(secs: u64) -> anyhow::Result<()> {
    let tickers: i64 = env("BENCH_HISTORY_TICKERS", "1000").parse()?;
    let sizes: Vec<i64> = env("BENCH_HISTORY_WINDOWS", "10,10080")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let mut p50s: Vec<(String, Vec<f64>)> = Vec::new();
    for windows in sizes {
        let filled = ingest(tickers, windows).await?;
        let size = format!("{} windows", tickers * windows);
        p50s.push((size.clone(), measure(&filled, &size, secs).await?));
    }
    if let [(small_size, small), .., (large_size, large)] = p50s.as_slice() {
        for ((name, small), large) in QUERY_NAMES.iter().zip(small).zip(large) {
            println!(
                "bench|history {name}: p50 at {large_size} ÷ at {small_size} (64 clients)|{large:.2}|ms|goal ≤ 1.5 × p50 at {small_size}|{small:.2}|{:.2}",
                large / small
            );
        }
    }
    for pair in env("BENCH_HISTORY_TICKER_COUNTS", "10:2880,10000:20").split(',') {
        let (tickers, windows) = pair.split_once(':').ok_or_else(|| {
            anyhow::anyhow!("BENCH_HISTORY_TICKER_COUNTS: expected tickers:windows, got {pair}")
        })?;
        ingest(tickers.parse()?, windows.parse()?).await?;
    }
    Ok(())
}
