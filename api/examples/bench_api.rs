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
//! Environment: DATABASE_URL (from `scripts/services.sh env`), API_BIN (default
//! target/release/api), BENCH_SECS per query (default 10), BENCH_SIZES (default 10000,1000000),
//! TICKPIPE_PG_LOG (PostgreSQL's log file; default /tmp/tickpipe-services/logs/postgres.log).

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
    // Open and close as the aggregator writes them: keys inside their window.
    sqlx::query(
        "UPDATE window_prices SET
             open_key = ARRAY[(extract(epoch FROM window_start) * 1000)::bigint, 0, 1], open_price = min_price,
             close_key = ARRAY[(extract(epoch FROM window_start) * 1000)::bigint + 29000, 0, 2], close_price = max_price",
    )
    .execute(&db.pool)
    .await?;
    sqlx::query("INSERT INTO latest_windows SELECT ticker, max(window_start) FROM window_prices GROUP BY ticker")
        .execute(&db.pool)
        .await?;
    // One partition whose boundary is past every window: every entry is complete.
    sqlx::query(
        "INSERT INTO aggregator_progress (topic, kafka_partition, resume_offset, next_offset, watermark_ms,
                                          closed_before_ms, dlq_next_offset, owner_epoch)
         VALUES ('stocks', 0, 0, 0, 0, ($1 + 30) * 1000, 0, 1)",
    )
    .bind(NEWEST)
    .execute(&db.pool)
    .await?;
    sqlx::query("VACUUM ANALYZE window_prices")
        .execute(&db.pool)
        .await?;
    Ok(per_ticker)
}

struct Load {
    requests: f64,
    /// Responses that were not 2xx (counted in `requests`).
    errors: f64,
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
    // Errors (503s past the query timeout on a loaded machine) are counted, not fatal: the run
    // goes on and the table says how many there were.
    let errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no request count in {text}"))?;
    Ok(Load {
        requests,
        errors,
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

/// CPU time (user + system) the process `pid` has used so far, in seconds.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat: {stat}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |field: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(field - 3)
            .ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat"))?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    Ok((ticks(14)? + ticks(15)?) / 100.0)
}

/// What PostgreSQL executed for this database since the last reset, from `pg_stat_statements`.
#[derive(Debug, Default, Clone, Copy)]
struct DbWork {
    /// Executions of statements reading the price tables.
    calls: f64,
    /// Every statement executed (the price queries plus anything else, e.g. `SET`, `SELECT 1`).
    all_calls: f64,
    exec_ms: f64,
    plan_ms: f64,
    plans: f64,
}

/// Creates `pg_stat_statements` in the bench database (if the server loads the library) and
/// tracks planning too. `false` when it is not available: the figures are then left out.
async fn enable_statements(db: &TestDatabase) -> bool {
    let created = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&db.pool)
        .await;
    let tracked = sqlx::query("SET pg_stat_statements.track_planning = on")
        .execute(&db.pool)
        .await;
    let set = sqlx::query(&format!(
        "ALTER DATABASE \"{}\" SET pg_stat_statements.track_planning = on",
        db.name
    ))
    .execute(&db.pool)
    .await;
    match (created, tracked, set) {
        (Ok(_), Ok(_), Ok(_)) => reset_statements(db).await.is_ok(),
        (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
            eprintln!("pg_stat_statements unavailable ({error}); no per-statement figures");
            false
        }
    }
}

async fn reset_statements(db: &TestDatabase) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&db.pool)
        .await?;
    Ok(())
}

async fn statements(db: &TestDatabase) -> anyhow::Result<DbWork> {
    let (calls, all_calls, exec_ms, plan_ms, plans): (f64, f64, f64, f64, f64) = sqlx::query_as(
        "SELECT COALESCE(sum(calls) FILTER (WHERE query ~ '(window_prices|latest_windows)'), 0)::float8,
                COALESCE(sum(calls) FILTER (WHERE query !~ 'pg_stat_statements'), 0)::float8,
                COALESCE(sum(total_exec_time) FILTER (WHERE query ~ '(window_prices|latest_windows)'), 0)::float8,
                COALESCE(sum(total_plan_time) FILTER (WHERE query ~ '(window_prices|latest_windows)'), 0)::float8,
                COALESCE(sum(plans) FILTER (WHERE query ~ '(window_prices|latest_windows)'), 0)::float8
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok(DbWork {
        calls,
        all_calls,
        exec_ms,
        plan_ms,
        plans,
    })
}

/// Prints, per request (API) or transaction (pgbench), what PostgreSQL did.
fn print_db_work(label: &str, name: &str, rows: i64, work: DbWork, requests: f64) {
    if requests <= 0.0 {
        return;
    }
    let per_call = |total: f64| {
        if work.calls > 0.0 {
            total / work.calls * 1000.0
        } else {
            0.0
        }
    };
    println!(
        "bench|{label} {name}, {rows} rows: statements per request (price queries / all)|{:.3} / {:.3}|||| ",
        work.calls / requests,
        work.all_calls / requests,
    );
    println!(
        "bench|{label} {name}, {rows} rows: PostgreSQL exec / plan per price query|{:.1} / {:.1}|µs|plans per call|{:.4}|",
        per_call(work.exec_ms),
        per_call(work.plan_ms),
        if work.calls > 0.0 { work.plans / work.calls } else { 0.0 },
    );
}

/// Starts the API binary on `port` over `database_url`; its metrics on a port of their own.
fn start_api(database_url: &str, port: u16) -> anyhow::Result<Child> {
    Ok(Command::new(env("API_BIN", "target/release/api"))
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("API_BIND", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        // The API's default pool (8) unless BENCH_POOL says otherwise: on 2 cores a larger pool
        // only adds backends competing for them (4: ratio 0.67, 16: 0.59, 64: 0.42 for the latest
        // query through the database).
        .env("DATABASE_MAX_CONNECTIONS", env("BENCH_POOL", "8"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?)
}

/// The loads: no parameters (from memory), the same query through the database (`?limit=1000`, the
/// default spelled out), an hour and a day in the middle of the seeded range, hourly bars over that
/// day for every ticker, and daily bars over 30 days for one ticker. `BENCH_QUERIES` (names, comma
/// separated, matched as substrings) keeps only some.
fn queries(base: &str, per_ticker: i64) -> Vec<(&'static str, String)> {
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

/// What the API sent to PostgreSQL for one request: the SQL text and its parameters as text.
#[derive(Debug)]
struct Captured {
    sql: String,
    params: Vec<String>,
}

/// Splits PostgreSQL's `$1 = 'a', $2 = 'it''s'` into the values.
fn parse_parameters(text: &str) -> anyhow::Result<Vec<String>> {
    let mut values = Vec::new();
    let mut rest = text.trim();
    while let Some(after) = rest.strip_prefix('$') {
        let (_, value) = after
            .split_once(" = '")
            .ok_or_else(|| anyhow::anyhow!("unexpected parameter text: {rest}"))?;
        let mut chars = value.char_indices().peekable();
        let mut parsed = String::new();
        let end = loop {
            match chars.next() {
                Some((_, '\'')) if chars.peek().map(|&(_, c)| c) == Some('\'') => {
                    chars.next();
                    parsed.push('\'');
                }
                Some((i, '\'')) => break i + 1,
                Some((_, c)) => parsed.push(c),
                None => anyhow::bail!("unterminated parameter in {text}"),
            }
        };
        values.push(parsed);
        rest = value[end..].trim_start_matches(", ");
    }
    Ok(values)
}

/// The last statement reading the price tables among the `execute` lines of a log excerpt.
fn statement_in_log(excerpt: &str) -> anyhow::Result<Captured> {
    let lines: Vec<&str> = excerpt.lines().collect();
    let mut found = None;
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = line.find(" execute ") else {
            continue;
        };
        let Some((_, sql)) = line[at + 9..].split_once(": ") else {
            continue;
        };
        if !(sql.contains("window_prices") || sql.contains("latest_windows")) {
            continue;
        }
        // PostgreSQL 15 writes `parameters:`, earlier versions `Parameters:`. (Missing them made
        // pgbench run with NULL parameters: an empty result, and a ceiling far too high.)
        let params = match lines.get(i + 1).and_then(|l| {
            l.split_once("DETAIL:  parameters: ")
                .or_else(|| l.split_once("DETAIL:  Parameters: "))
        }) {
            Some((_, params)) => parse_parameters(params)?,
            None => Vec::new(),
        };
        found = Some(Captured {
            sql: sql.to_owned(),
            params,
        });
    }
    found.ok_or_else(|| anyhow::anyhow!("no price query in the log excerpt:\n{excerpt}"))
}

/// Answers each query once through a capture API on a database that logs every statement, and
/// returns the SQL and parameters the API ran for each. Logging is off again when it returns.
async fn capture(db: &TestDatabase, per_ticker: i64, port: u16) -> anyhow::Result<Vec<Captured>> {
    let log_path = env(
        "TICKPIPE_PG_LOG",
        "/tmp/tickpipe-services/logs/postgres.log",
    );
    let set = |value: &str| {
        format!(
            "ALTER DATABASE \"{}\" SET log_min_duration_statement = {value}",
            db.name
        )
    };
    sqlx::query(&set("0")).execute(&db.pool).await?;
    let mut api = start_api(&db.url, port)?;
    let base = format!("http://127.0.0.1:{port}");
    let captured = async {
        wait_until_ready(port).await;
        let mut captured = Vec::new();
        for (name, url) in &queries(&base, per_ticker) {
            // Without parameters the answer may come from memory: the database's SQL for it is
            // that of the same query spelled out.
            let url = if *name == "no parameters" {
                format!("{url}?limit=1000")
            } else {
                url.clone()
            };
            let before = std::fs::metadata(&log_path)?.len();
            let status = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", &url])
                .status()?;
            anyhow::ensure!(status.success(), "{url} failed during capture");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let log = std::fs::read(&log_path)?;
            let excerpt = String::from_utf8_lossy(&log[usize::try_from(before)?..]).into_owned();
            let statement = statement_in_log(&excerpt)?;
            eprintln!(
                "pgbench will run for {url}: {} with {:?}",
                statement.sql, statement.params
            );
            captured.push(statement);
        }
        Ok(captured)
    }
    .await;
    stop(&mut api);
    sqlx::query(&set("-1")).execute(&db.pool).await?;
    captured
}

/// pgbench over the captured SQL and parameters, as the API's clients load it: 64 connections, 2
/// threads, prepared statements, `secs` seconds. Returns transactions per second and their number.
fn pgbench(database_url: &str, captured: &Captured, secs: u64) -> anyhow::Result<(f64, f64)> {
    let placeholders = regex::Regex::new(r"\$(\d+)")?;
    let script = std::env::temp_dir().join(format!("tickpipe-bench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!("{};\n", placeholders.replace_all(&captured.sql, ":p$1")),
    )?;
    let mut command = Command::new("pgbench");
    command.args([
        "-n",
        "-M",
        "prepared",
        "-c",
        "64",
        "-j",
        "2",
        "-T",
        &secs.to_string(),
        "-f",
    ]);
    command.arg(&script);
    for (i, value) in captured.params.iter().enumerate() {
        command.arg("-D").arg(format!("p{}={value}", i + 1));
    }
    let output = command.arg(database_url).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let missing = || {
        anyhow::anyhow!(
            "no tps in pgbench output: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(missing)?;
    let transactions = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(missing)?;
    Ok((tps, transactions))
}

fn stop(api: &mut Child) {
    // Stopped whatever happened, so that a failed run leaves no API behind.
    let stopped = Command::new("kill")
        .args(["-TERM", &api.id().to_string()])
        .status();
    if stopped.is_err() {
        let _ = api.kill();
    }
    let _ = api.wait();
}

async fn wait_until_ready(port: u16) {
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
    let captured = capture(&db, per_ticker, free_port()?).await?;
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
