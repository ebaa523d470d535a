//! Aggregator benchmark: pre-fills a 3-partition topic with generator messages, then measures the
//! aggregator binary from start to the last window written, next to Kafka's ConsumerPerformance on
//! the same topic in the same run, and the aggregator's peak memory (VmHWM). Prints figures only.
//!
//! Environment: KAFKA_BROKERS, DATABASE_URL, TICKPIPE_KAFKA_LIBS (from `scripts/services.sh env`),
//! BENCH_RECORDS (default 2,000,000), AGGREGATOR_BIN (default target/release/aggregator).
//! For scripts/bench-scaling.sh: BENCH_PARTITIONS (default 3) and BENCH_REPLICATION (default 1) of
//! the topic, and BENCH_INSTANCES, e.g. "1,2,3": one measurement per count of aggregator instances
//! sharing a consumer group, each with a fresh database and group, on the same pre-filled topic
//! (one row each; no memory row; the reference is ConsumerPerformance's mean of a run before the
//! aggregators, which also warms the topic, and one after).
//! For the rollups section: BENCH_TICKERS (default 0: the generator's three stocks; otherwise that
//! many tickers, three consecutive ones a message) and BENCH_BASELINE_BIN, another aggregator binary
//! (an earlier revision) run on the same topic in the same run, with one more row: ours ÷ it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use tickpipe_common::kafka::send_when_queue_has_room;
use tickpipe_common::message::{Tick, TickerMessage};
use tickpipe_testkit::rng::Rng;
use tickpipe_testkit::{env_or, TestDatabase};

/// Produces `records` messages such as the generator makes, timestamps 1 ms apart in the past (so every window can
/// close as soon as the records are read), and returns the number of prices they hold.
// rdkafka's `send` hands a refused record back in its error: large, and not ours to shrink.
#[allow(clippy::result_large_err)]
async fn prefill(brokers: &str, topic: &str, records: u64, tickers: u64) -> anyhow::Result<i64> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut rng = Rng::new(2026);
    let start_ms = tickpipe_common::clock::now_ms() - records as i64 - 3_600_000;
    let mut prices = 0i64;
    for i in 0..records {
        let message = match tickers {
            0 => rng.sample_message(),
            n => many_tickers_message(&mut rng, i, n),
        };
        prices += message.tickers.len() as i64;
        let payload = message.encode();
        let timestamp = start_ms + i as i64;
        let record = BaseRecord::<(), [u8]>::to(topic)
            .payload(&payload)
            .timestamp(timestamp);
        send_when_queue_has_room(record, |r| producer.send(r)).await?;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(prices)
}

/// The `i`th message over `tickers` names: three consecutive tickers (fewer if there are fewer), so
/// every ticker is priced every `tickers / 3` records.
fn many_tickers_message(rng: &mut Rng, i: u64, tickers: u64) -> TickerMessage<'static> {
    let ticks = (0..tickers.min(3))
        .map(|k| Tick {
            name: format!("T{:05}", (i * 3 + k) % tickers).into(),
            price: rng.between(100, 2000),
        })
        .collect();
    TickerMessage { tickers: ticks }
}

fn consumer_performance(topic: &str, records: u64) -> anyhow::Result<f64> {
    let brokers = env_or("KAFKA_BROKERS", "127.0.0.1:9092");
    let records = records.to_string();
    let stdout = tickpipe_testkit::kafka_tool(
        "ConsumerPerformance",
        &[
            "--bootstrap-server",
            &brokers,
            "--topic",
            topic,
            "--messages",
            &records,
            "--timeout",
            "60000",
        ],
    )?;
    // Header "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, ..."
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .find(|l| l.contains("nMsg.sec"))
        .ok_or_else(|| anyhow::anyhow!("no header in: {stdout}"))?;
    let column = header
        .split(',')
        .position(|c| c.trim() == "nMsg.sec")
        .ok_or_else(|| anyhow::anyhow!("no nMsg.sec"))?;
    let row = lines
        .next()
        .ok_or_else(|| anyhow::anyhow!("no figures in: {stdout}"))?;
    let value = row
        .split(',')
        .nth(column)
        .ok_or_else(|| anyhow::anyhow!("short row: {row}"))?;
    Ok(value.trim().parse()?)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Against another binary both start from an empty database and run their own migrations (the
/// other's schema may differ); alone, from a migrated one, as a restart would.
async fn fresh_database() -> TestDatabase {
    match std::env::var_os("BENCH_BASELINE_BIN") {
        Some(_) => tickpipe_testkit::seed::unmigrated_database().await,
        None => TestDatabase::create().await,
    }
}

/// Runs `instances` aggregators in one new consumer group, with a fresh database, until every price is
/// written; returns the time from their start and the highest peak memory (KiB) of any of them.
/// They get the bench's own `OTEL_*` variables (the traces section turns export on) and no others.
async fn run_aggregators(
    bin: &str,
    brokers: &str,
    topic: &str,
    instances: usize,
    prices: i64,
) -> anyhow::Result<(Duration, u64)> {
    let db = fresh_database().await;
    let group = tickpipe_testkit::unique_name(&format!("{topic}_{instances}"));
    let started = Instant::now();
    let mut children = Vec::with_capacity(instances);
    for _ in 0..instances {
        children.push(
            Command::new(bin)
                .env_clear()
                .envs([("KAFKA_BROKERS", brokers), ("KAFKA_TOPIC", topic)])
                .envs([("DATABASE_URL", &db.url), ("AGGREGATOR_GROUP_ID", &group)])
                .env("AGGREGATOR_DLQ_TOPIC", format!("{topic}.dlq"))
                .envs([("METRICS_ADDR", "127.0.0.1:0"), ("RUST_LOG", "warn")])
                .envs(std::env::vars().filter(|(name, _)| name.starts_with("OTEL_")))
                .stdout(Stdio::null())
                .spawn()?,
        );
    }
    let peak_of = |children: &[std::process::Child]| {
        children
            .iter()
            .map(|c| peak_rss_kib(c.id()).unwrap_or(0))
            .max()
            .unwrap_or(0)
    };
    let mut peak = 0;
    loop {
        peak = peak.max(peak_of(&children));
        // An error is an empty database the aggregator has not migrated yet: nothing written.
        let written: Option<i64> =
            sqlx::query_scalar("SELECT sum(sample_count)::bigint FROM window_prices")
                .fetch_one(&db.pool)
                .await
                .unwrap_or(None);
        if written.unwrap_or(0) >= prices {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "aggregator did not finish in 15 minutes"
        );
        // How often the table is read: the loop itself waits for the state.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    peak = peak.max(peak_of(&children));
    for child in &mut children {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    Ok((elapsed, peak))
}

fn shape_of(tickers: u64) -> String {
    match tickers {
        0 => "3 tickers".to_owned(),
        n => format!("{n} tickers"),
    }
}

/// One measurement of `instances` aggregators: (instances, records/s, peak memory in KiB).
async fn run_instances(
    bin: &str,
    brokers: &str,
    topic: &str,
    instances: usize,
    prices: i64,
    records: u64,
) -> anyhow::Result<(usize, f64, u64)> {
    let (elapsed, peak) = run_aggregators(bin, brokers, topic, instances, prices).await?;
    eprintln!("{instances} aggregator instance(s): {elapsed:?}");
    Ok((instances, records as f64 / elapsed.as_secs_f64(), peak))
}

/// One row per measurement, against ConsumerPerformance; `topology` for scale-out runs.
fn print_runs(
    runs: &[(usize, f64, u64)],
    reference: f64,
    records: u64,
    shape: &str,
    scaling: Option<(i32, i32)>,
) {
    for &(n, ours, _) in runs {
        let label = match scaling {
            Some((partitions, replication)) => format!("aggregator throughput, {n} instance(s), {partitions} partitions (replication {replication}), {records} records, start to last window"),
            None => format!("aggregator throughput, {records} records, {shape}, start to last window"),
        };
        println!(
            "bench|{label}|{ours:.0}|records/s|ConsumerPerformance|{reference:.0}|{:.3}",
            ours / reference
        );
    }
}

/// The row comparing this aggregator with the baseline binary on the same topic.
fn print_against_baseline(records: u64, shape: &str, ours: f64, baseline: Duration) {
    let theirs = records as f64 / baseline.as_secs_f64();
    println!(
        "bench|aggregator throughput, {records} records, {shape}, against the baseline binary|{ours:.0}|records/s|BENCH_BASELINE_BIN, same topic|{theirs:.0}|{:.3}",
        ours / theirs
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = env_or("KAFKA_BROKERS", "127.0.0.1:9092");
    let records: u64 = env_or("BENCH_RECORDS", "2000000").parse()?;
    let partitions: i32 = env_or("BENCH_PARTITIONS", "3").parse()?;
    let replication: i32 = env_or("BENCH_REPLICATION", "1").parse()?;
    let scaling = std::env::var_os("BENCH_INSTANCES").is_some();
    let instances = env_or("BENCH_INSTANCES", "1")
        .split(',')
        .map(|n| n.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()?;
    let topic = tickpipe_testkit::unique_name("bench_agg");
    tickpipe_common::kafka::ensure_topic(&brokers, &topic, partitions, replication, &[]).await?;
    let fill_started = Instant::now();
    let tickers: u64 = env_or("BENCH_TICKERS", "0").parse()?;
    let shape = shape_of(tickers);
    let prices = prefill(&brokers, &topic, records, tickers).await?;
    eprintln!(
        "pre-filled {records} records ({prices} prices) in {:?}",
        fill_started.elapsed()
    );

    // Scale-out runs compare several measurements: ConsumerPerformance reads the topic first too, so
    // that the first of them does not also pay for replication settling and a cold page cache, and
    // the reference is the mean of its runs before and after.
    let before = scaling
        .then(|| consumer_performance(&topic, records))
        .transpose()?;
    let bin = env_or("AGGREGATOR_BIN", "target/release/aggregator");
    let baseline = match std::env::var("BENCH_BASELINE_BIN") {
        Ok(baseline) => Some(
            run_aggregators(&baseline, &brokers, &topic, 1, prices)
                .await?
                .0,
        ),
        Err(_) => None,
    };
    let mut runs = Vec::with_capacity(instances.len());
    for &n in &instances {
        runs.push(run_instances(&bin, &brokers, &topic, n, prices, records).await?);
    }
    let mut reference = consumer_performance(&topic, records)?;
    if let Some(before) = before {
        eprintln!("ConsumerPerformance: {before:.0} records/s before, {reference:.0} after");
        reference = (before + reference) / 2.0;
    }
    let topology = scaling.then_some((partitions, replication));
    print_runs(&runs, reference, records, &shape, topology);
    if let (Some(baseline), Some(&(_, ours, _))) = (baseline, runs.first()) {
        print_against_baseline(records, &shape, ours, baseline);
    }
    if !scaling {
        let peak = runs.iter().map(|r| r.2).max().unwrap_or(0);
        println!(
            "bench|aggregator peak memory (VmHWM)|{:.1}|MiB|target|64|{:.3}",
            peak as f64 / 1024.0,
            peak as f64 / 1024.0 / 64.0
        );
    }
    Ok(())
}
