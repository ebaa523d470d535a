//! The SQL the API sends, captured from PostgreSQL's log, and pgbench on exactly that SQL.

use std::process::Command;
use std::time::Duration;

use tickpipe_testkit::TestDatabase;

use super::{env, start_api, stop, wait_until_ready};

/// What the API sent to PostgreSQL for one request: the SQL text and its parameters as text.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) sql: String,
    pub(crate) params: Vec<String>,
}

/// Splits PostgreSQL's `$1 = 'a', $2 = 'it''s'` into the values.
pub(crate) fn parse_parameters(text: &str) -> anyhow::Result<Vec<String>> {
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
pub(crate) fn statement_in_log(excerpt: &str) -> anyhow::Result<Captured> {
    let lines: Vec<&str> = excerpt.lines().collect();
    let mut found = None;
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = line.find(" execute ") else {
            continue;
        };
        let Some((_, sql)) = line[at + 9..].split_once(": ") else {
            continue;
        };
        if !["window_prices", "latest_windows", "bars_"]
            .iter()
            .any(|table| sql.contains(table))
        {
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
/// `queries` are the (name, URL) pairs to answer, their URLs on `port`.
pub(crate) async fn capture(
    db: &TestDatabase,
    queries: &[(&str, String)],
    port: u16,
) -> anyhow::Result<Vec<Captured>> {
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
    let captured = async {
        wait_until_ready(port).await;
        let mut captured = Vec::new();
        for (name, url) in queries {
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
            let before = usize::try_from(before)?;
            // PostgreSQL writes the statement and its parameters as one message, once the
            // logging collector gets to it: wait for it to be in the file.
            let statement = tickpipe_testkit::eventually(
                "the API's statement in PostgreSQL's log",
                Duration::from_secs(10),
                || async {
                    let log = std::fs::read(&log_path).ok()?;
                    statement_in_log(&String::from_utf8_lossy(log.get(before..)?)).ok()
                },
            )
            .await;
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
pub(crate) fn pgbench(
    database_url: &str,
    captured: &Captured,
    secs: u64,
) -> anyhow::Result<(f64, f64)> {
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
