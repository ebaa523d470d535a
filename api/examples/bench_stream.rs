//! Live stream benchmark: starts the API binary, opens N subscribers to `GET /v1/stream-prices`
//! (default 1000), measures the API's memory per idle subscriber, then commits changes at a steady
//! rate through the aggregator's own write path (`tickpipe_store`: windows and the change log, its
//! advisory lock, ids from the sequence, NOTIFY on commit) and measures, for every event every
//! subscriber receives, the time from the change's `committed_at` to its receipt. Prints figures;
//! asserts nothing about time.
//!
//! Environment: DATABASE_URL (from `scripts/services.sh env`), API_BIN (default
//! target/release/api), BENCH_STREAM_SUBSCRIBERS (default 1000), BENCH_STREAM_RATE commits per second
//! (default 10, three entries each), BENCH_STREAM_SECS (default 20), BENCH_API_LOG (a file for the
//! API's log; default: discarded).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tickpipe_testkit::seed::{self, Partition, Totals};
use tickpipe_testkit::{env_or, TestDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// 2026-11-27T10:00:00Z.
const T0: i64 = 1_795_773_600;
const TICKERS: [&str; 3] = ["AAPL", "AMZN", "MSFT"];

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A resident-memory line of /proc/`pid`/status (`VmRSS`, `VmHWM`), in KiB.
fn memory_kib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

fn start_api(database_url: &str, port: u16, subscribers: usize) -> anyhow::Result<Child> {
    Ok(Command::new(env_or("API_BIN", "target/release/api"))
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("API_BIND", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("API_MAX_STREAMS", (subscribers + 10).to_string())
        // Every subscriber comes from this one address: measured without rate limits.
        .env("API_RATE_LIMIT_RPS", "0")
        .env("RUST_LOG", "warn")
        .stdout(match std::env::var_os("BENCH_API_LOG") {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::null(),
        })
        .spawn()?)
}

/// One subscriber: connects, reports once its stream has opened, then records (id, receipt time in
/// Unix microseconds) for every event until `expected` have arrived or the connection ends.
async fn subscribe(
    port: u16,
    opening: Arc<Opening>,
    expected: Arc<AtomicUsize>,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let result = receive(port, &opening, expected).await;
    if result.is_err() {
        opening.failed.fetch_add(1, Ordering::AcqRel);
    }
    result
}

/// How the subscribers open their streams: at most [`OPENING_AT_ONCE`] at a time (as clients
/// arriving over a few seconds would, rather than 10,000 SYNs in the same millisecond, which
/// overflow the listen backlog and leave connections to the kernel's retransmission back-off).
struct Opening {
    gate: tokio::sync::Semaphore,
    opened: AtomicUsize,
    failed: AtomicUsize,
}

const OPENING_AT_ONCE: usize = 256;

async fn receive(
    port: u16,
    opening: &Opening,
    expected: Arc<AtomicUsize>,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let mut permit = Some(opening.gate.acquire().await?);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        // `Connection: close`: a stream the server ends (a subscriber dropped for falling behind)
        // ends the connection too, so this reader sees it.
        .write_all(b"GET /v1/stream-prices HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut received = Vec::new();
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut open = false;
    loop {
        let want = expected.load(Ordering::Acquire);
        if want > 0 && received.len() >= want {
            return Ok(received);
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            anyhow::ensure!(
                open,
                "the server closed the connection before the stream opened"
            );
            return Ok(received);
        }
        let at = now_micros();
        pending.extend_from_slice(&buf[..n]);
        // Every complete line; `id: N` lines name the events (the first one, without data, opens).
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + end];
            if let Some(id) = line.strip_prefix(b"id: ") {
                let id: i64 = std::str::from_utf8(id)?.trim().parse()?;
                if open {
                    received.push((id, at));
                } else {
                    open = true;
                    permit.take();
                    opening.opened.fetch_add(1, Ordering::AcqRel);
                }
            }
            start += end + 1;
        }
        pending.drain(..start);
    }
}

/// One aggregator commit through `partition` (the store's write path) of a contribution per ticker
/// to window `n / 10`, closing the windows before it; returns the ids the commit appended to the
/// change log (its rows, and a watermark when the boundary moved) and its `committed_at`.
async fn commit(
    pool: &PgPool,
    partition: &mut Partition,
    n: i64,
    seen: &mut i64,
) -> anyhow::Result<(Vec<i64>, i64)> {
    let start_ms = (T0 + 30 * (n / 10)) * 1000;
    let rows = TICKERS
        .iter()
        .zip(0..)
        .map(|(ticker, t)| {
            let totals = Totals::new(400 + n + t, 4, 90, 110).open_close(95, 105);
            seed::window(ticker, (start_ms, start_ms + 30_000), totals)
        })
        .collect();
    partition.commit(start_ms, rows).await;
    let appended: Vec<(i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, committed_at FROM window_changes WHERE id > $1 ORDER BY id")
            .bind(*seen)
            .fetch_all(pool)
            .await?;
    *seen = appended.last().map_or(*seen, |(id, _)| *id);
    let committed_at = appended.last().map_or(0, |(_, at)| at.timestamp_micros());
    Ok((
        appended.into_iter().map(|(id, _)| id).collect(),
        committed_at,
    ))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// What a subscriber received: (event id, receipt time in Unix microseconds) per event.
type Received = anyhow::Result<Vec<(i64, i64)>>;

/// Subscribers, once every stream has opened, and the API's memory per idle subscriber (KiB).
struct Subscribers {
    clients: Vec<tokio::task::JoinHandle<Received>>,
    /// How many events each must receive, once known.
    expected: Arc<AtomicUsize>,
    per_subscriber_kib: f64,
}

/// Opens `subscribers` streams, measuring the API's memory before and after.
async fn open(port: u16, pid: u32, subscribers: usize) -> anyhow::Result<Subscribers> {
    // One stream first, so that the feed (and its listening connection) is up in the baseline.
    let opening = Arc::new(Opening {
        gate: tokio::sync::Semaphore::new(OPENING_AT_ONCE),
        opened: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    });
    let expected = Arc::new(AtomicUsize::new(0));
    let spawn = || tokio::spawn(subscribe(port, Arc::clone(&opening), Arc::clone(&expected)));
    let all_open = |count: usize| {
        let opening = Arc::clone(&opening);
        move || {
            let opening = Arc::clone(&opening);
            async move {
                let failed = opening.failed.load(Ordering::Acquire);
                let done = opening.opened.load(Ordering::Acquire) == count;
                (done || failed > 0).then_some(failed)
            }
        }
    };
    let mut clients = vec![spawn()];
    let failed = tickpipe_testkit::eventually(
        "the first stream opens",
        Duration::from_secs(20),
        all_open(1),
    )
    .await;
    anyhow::ensure!(failed == 0, "the first stream failed to open");
    // Not a synchronization: a pause for the allocator to settle before the baseline reading.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = memory_kib(pid, "VmRSS:")?;
    clients.extend((1..subscribers).map(|_| spawn()));
    let failed = tickpipe_testkit::eventually(
        "every stream opens",
        Duration::from_secs(120),
        all_open(subscribers),
    )
    .await;
    if failed > 0 {
        for client in clients.into_iter().filter(|client| client.is_finished()) {
            if let Err(error) = client.await? {
                anyhow::bail!("{failed} subscribers failed to open their stream, e.g.: {error:#}");
            }
        }
        anyhow::bail!("{failed} subscribers failed to open their stream");
    }
    // Likewise a settling pause before the idle reading, not a wait for a state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = memory_kib(pid, "VmRSS:")?;
    Ok(Subscribers {
        clients,
        expected,
        per_subscriber_kib: (idle - baseline) / (subscribers - 1).max(1) as f64,
    })
}

/// Every event every subscriber received: (delivered, subscribers with every event once in
/// order, sorted latencies in ms from `committed_at` to receipt).
async fn collect(
    subscribers: Subscribers,
    committed: &HashMap<i64, i64>,
) -> anyhow::Result<(usize, usize, Vec<f64>)> {
    subscribers
        .expected
        .store(committed.len(), Ordering::Release);
    let mut latencies = Vec::new();
    let (mut delivered, mut exact) = (0usize, 0usize);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for client in subscribers.clients {
        let received = tokio::time::timeout_at(deadline, client)
            .await
            .context("the subscribers did not receive every event within 60 s")???;
        delivered += received.len();
        let mut ids: Vec<i64> = received.iter().map(|(id, _)| *id).collect();
        ids.dedup();
        if ids.len() == committed.len() && ids.windows(2).all(|w| w[0] < w[1]) {
            exact += 1;
        }
        for (id, at) in received {
            if let Some(commit) = committed.get(&id) {
                latencies.push((at - commit) as f64 / 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok((delivered, exact, latencies))
}

async fn run(db: &TestDatabase, port: u16, pid: u32) -> anyhow::Result<()> {
    let subscribers: usize = env_or("BENCH_STREAM_SUBSCRIBERS", "1000").parse()?;
    let rate: u64 = env_or("BENCH_STREAM_RATE", "10").parse()?;
    let secs: u64 = env_or("BENCH_STREAM_SECS", "20").parse()?;
    tickpipe_testkit::eventually("api up", Duration::from_secs(20), || async {
        tickpipe_common::healthcheck::probe(&format!("127.0.0.1:{port}"), "/readyz").then_some(())
    })
    .await;
    let mut partition = Partition::claim(&db.pool, 0).await;
    let mut seen = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM window_changes")
        .fetch_one(&db.pool)
        .await?;
    let open = open(port, pid, subscribers).await?;

    // The writer: `rate` commits per second of one entry per ticker (the interval paces it).
    let mut committed: HashMap<i64, i64> = HashMap::new();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0..rate * secs {
        ticks.tick().await;
        let (ids, at) = commit(&db.pool, &mut partition, n as i64, &mut seen).await?;
        committed.extend(ids.into_iter().map(|id| (id, at)));
    }
    let per_subscriber = open.per_subscriber_kib;
    let (delivered, exact, latencies) = collect(open, &committed).await?;
    let label = format!("stream, {subscribers} subscribers, {rate} commits/s x 3 entries");
    println!(
        "bench|{label}: events delivered|{delivered}|events|expected|{}|{:.3}",
        committed.len() * subscribers,
        delivered as f64 / (committed.len() * subscribers) as f64
    );
    println!("bench|{label}: subscribers with every event once, in order|{exact}|subscribers|||");
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        println!(
            "bench|{label}: committed_at to receipt {name}|{:.2}|ms|||",
            percentile(&latencies, p)
        );
    }
    println!(
        "bench|stream: API memory per idle subscriber ({subscribers} open)|{per_subscriber:.1}|KiB|||"
    );
    println!(
        "bench|stream: API peak memory (VmHWM), {subscribers} subscribers|{:.1}|MiB|||",
        memory_kib(pid, "VmHWM:")? / 1024.0
    );
    Ok(())
}

/// The API process, stopped (SIGTERM) when dropped: also when the benchmark fails or panics, so
/// that no API is left behind holding the terminal's output open.
struct Api(Child);

impl Drop for Api {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let subscribers: usize = env_or("BENCH_STREAM_SUBSCRIBERS", "1000").parse()?;
    let db = TestDatabase::create().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let api = Api(start_api(&db.url, port, subscribers)?);
    run(&db, port, api.0.id()).await
}
