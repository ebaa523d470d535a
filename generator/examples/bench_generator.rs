//! Generator benchmark: pacing at the default rate, and throughput at rate 0 next to Kafka's own
//! ProducerPerformance with the same record size, same broker, same run. Prints figures; asserts
//! nothing about time (timed assertions are flaky on a shared 2-core machine).
//!
//! Environment: KAFKA_BROKERS, TICKPIPE_KAFKA_LIBS (from `scripts/services.sh env`),
//! BENCH_PACING_SECS (default 60), BENCH_MESSAGES (default 1,000,000).
//! Output: `bench|name|value|unit|reference|reference value|ratio` lines for scripts/bench.sh.

use std::time::Duration;
use tickpipe_common::service::ServiceSettings;

use prometheus_client::registry::Registry;
use tickpipe_common::config::Layers;
use tickpipe_generator::metrics::GeneratorMetrics;
use tickpipe_generator::settings::Settings;
use tickpipe_generator::stocks::{MessageSource, StockList};
use tickpipe_testkit::env_or;
use tokio_util::sync::CancellationToken;

fn settings(topic: &str, rate: &str, max: Option<u64>) -> anyhow::Result<Settings> {
    let mut vars = vec![
        (
            "KAFKA_BROKERS".to_owned(),
            env_or("KAFKA_BROKERS", "127.0.0.1:9092"),
        ),
        ("KAFKA_TOPIC".to_owned(), topic.to_owned()),
        ("GENERATOR_RATE".to_owned(), rate.to_owned()),
    ];
    if let Some(max) = max {
        vars.push(("GENERATOR_MAX_MESSAGES".to_owned(), max.to_string()));
    }
    Ok(Settings::load(&Layers::from_vars(vars)?)?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs ProducerPerformance and returns its records/s.
fn producer_performance(topic: &str, records: u64, record_size: usize) -> anyhow::Result<f64> {
    let brokers = format!(
        "bootstrap.servers={}",
        env_or("KAFKA_BROKERS", "127.0.0.1:9092")
    );
    let (records, record_size) = (records.to_string(), record_size.to_string());
    let stdout = tickpipe_testkit::kafka_tool(
        "ProducerPerformance",
        &[
            "--topic",
            topic,
            "--num-records",
            &records,
            "--record-size",
            &record_size,
            "--throughput",
            "-1",
            "--producer-props",
            &brokers,
            "acks=all",
            "enable.idempotence=true",
            "linger.ms=5",
        ],
    )?;
    // Last line: "N records sent, X records/sec (Y MB/sec), ..."
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains("records sent"))
        .ok_or_else(|| anyhow::anyhow!("no summary in: {stdout}"))?;
    let rate = summary
        .split(',')
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .ok_or_else(|| anyhow::anyhow!("unparsable: {summary}"))?;
    Ok(rate.parse()?)
}

/// Runs the generator at the default 10 msgs/s for `pacing_secs` and prints the achieved rate and
/// how far sends strayed from their schedule.
async fn pacing(run: &str, pacing_secs: u64) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        // The measurement's length, not a wait for a state.
        tokio::time::sleep(Duration::from_secs(pacing_secs)).await;
        stopper.cancel();
    });
    let metrics = GeneratorMetrics::register(&mut Registry::default());
    let paced = tickpipe_generator::run_with_metrics(
        settings(&format!("{run}_paced"), "10", None)?,
        metrics,
        shutdown,
    )
    .await?;
    let mut lags = paced.schedule_lag.clone();
    lags.sort();
    let achieved = paced.sent as f64 / pacing_secs as f64;
    println!(
        "bench|generator paced rate ({pacing_secs} s)|{achieved:.3}|msgs/s|configured|10|{:.4}",
        achieved / 10.0
    );
    println!(
        "bench|generator schedule deviation p50|{:.3}|ms|||",
        percentile(&lags, 0.5).as_secs_f64() * 1e3
    );
    println!(
        "bench|generator schedule deviation p99|{:.3}|ms|||",
        percentile(&lags, 0.99).as_secs_f64() * 1e3
    );
    Ok(())
}

/// Throughput at rate 0, then ProducerPerformance with the generator's mean record size.
async fn throughput(run: &str, messages: u64) -> anyhow::Result<()> {
    let mut source = MessageSource::new(&StockList::default(), Some(1));
    let record_size = (0..10_000)
        .map(|_| source.next_message().encode().len())
        .sum::<usize>()
        / 10_000;
    let metrics = GeneratorMetrics::register(&mut Registry::default());
    let fast = tickpipe_generator::run_with_metrics(
        settings(&format!("{run}_fast"), "0", Some(messages))?,
        metrics,
        CancellationToken::new(),
    )
    .await?;
    let ours = fast.acknowledged as f64 / fast.elapsed.as_secs_f64();
    tickpipe_common::kafka::ensure_topic(
        &env_or("KAFKA_BROKERS", "127.0.0.1:9092"),
        &format!("{run}_perf"),
        3,
        1,
        &[],
    )
    .await?;
    let reference = producer_performance(&format!("{run}_perf"), messages, record_size)?;
    println!(
        "bench|generator throughput, rate 0 ({messages} msgs, {record_size} B)|{ours:.0}|records/s|ProducerPerformance|{reference:.0}|{:.3}",
        ours / reference
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pacing_secs: u64 = env_or("BENCH_PACING_SECS", "60").parse()?;
    let messages: u64 = env_or("BENCH_MESSAGES", "1000000").parse()?;
    let run = tickpipe_testkit::unique_name("bench_gen");
    pacing(&run, pacing_secs).await?;
    throughput(&run, messages).await
}
