//! What a load costs: wrk's figures, the API process's memory and CPU time, and what PostgreSQL
//! executed for it (`pg_stat_statements`).

use std::process::Command;

use tickpipe_testkit::TestDatabase;

pub(crate) struct Load {
    pub(crate) requests: f64,
    /// Responses that were not 2xx (counted in `requests`).
    pub(crate) errors: f64,
    pub(crate) requests_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

pub(crate) fn to_ms(text: &str) -> Option<f64> {
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

pub(crate) fn wrk(url: &str, secs: u64) -> anyhow::Result<Load> {
    wrk_with(url, secs, 64)
}

/// wrk with `connections` connections (two threads, or one for a single connection).
pub(crate) fn wrk_with(url: &str, secs: u64, connections: u32) -> anyhow::Result<Load> {
    let threads = connections.clamp(1, 2);
    let output = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
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
pub(crate) fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?;
    Ok(kib / 1024.0)
}

/// CPU time (user + system) the process `pid` has used so far, in seconds.
pub(crate) fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
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
pub(crate) struct DbWork {
    /// Executions of statements reading the price tables.
    pub(crate) calls: f64,
    /// Every statement executed (the price queries plus anything else, e.g. `SET`, `SELECT 1`).
    pub(crate) all_calls: f64,
    pub(crate) exec_ms: f64,
    pub(crate) plan_ms: f64,
    pub(crate) plans: f64,
}

/// Creates `pg_stat_statements` in the bench database (if the server loads the library) and
/// tracks planning too. `false` when it is not available: the figures are then left out.
pub(crate) async fn enable_statements(db: &TestDatabase) -> bool {
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

pub(crate) async fn reset_statements(db: &TestDatabase) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub(crate) async fn statements(db: &TestDatabase) -> anyhow::Result<DbWork> {
    let (calls, all_calls, exec_ms, plan_ms, plans): (f64, f64, f64, f64, f64) = sqlx::query_as(
        "SELECT COALESCE(sum(calls) FILTER (WHERE query ~ '(window_prices|latest_windows|bars_)'), 0)::float8,
                COALESCE(sum(calls) FILTER (WHERE query !~ 'pg_stat_statements'), 0)::float8,
                COALESCE(sum(total_exec_time) FILTER (WHERE query ~ '(window_prices|latest_windows|bars_)'), 0)::float8,
                COALESCE(sum(total_plan_time) FILTER (WHERE query ~ '(window_prices|latest_windows|bars_)'), 0)::float8,
                COALESCE(sum(plans) FILTER (WHERE query ~ '(window_prices|latest_windows|bars_)'), 0)::float8
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
pub(crate) fn print_db_work(label: &str, name: &str, rows: i64, work: DbWork, requests: f64) {
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
