//! Fills a topic with the past hour of ticker messages, so that the dashboard's charts have an
//! hour of bars as soon as the aggregator has read them (the browser test, `scripts/browser-test.sh`,
//! and its screenshot). Messages are shaped like the generator's (the testkit's
//! [`Rng::sample_message`]: 1 to 3 distinct sample stocks, prices within ±10 % of their means);
//! record timestamps are spread evenly over the last `HISTORY_SECS` up to one second ago, the
//! partitions taken in turn.
//!
//! Environment: `KAFKA_BROKERS`, `KAFKA_TOPIC` (created with `GENERATOR_PARTITIONS`, default 3,
//! unless it exists), `HISTORY_SECS` (3600), `HISTORY_RATE` (messages per second of history, 2),
//! `HISTORY_SEED` (a fixed default, so runs are alike).

use std::time::{SystemTime, UNIX_EPOCH};

use tickpipe_testkit::rng::Rng;
use tickpipe_testkit::{env_or, produce, TestRecord};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = env_or("KAFKA_BROKERS", "127.0.0.1:9092");
    let topic = env_or("KAFKA_TOPIC", "stocks");
    let partitions: i32 = env_or("GENERATOR_PARTITIONS", "3").parse()?;
    let secs: i64 = env_or("HISTORY_SECS", "3600").parse()?;
    let rate: f64 = env_or("HISTORY_RATE", "2").parse()?;
    let mut rng = Rng::new(env_or("HISTORY_SEED", "20261127").parse::<u64>()?);

    tickpipe_common::kafka::ensure_topic(&brokers, &topic, partitions, 1, &[]).await?;
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let first_ms = now_ms - secs * 1000;
    // Truncation is intended: a whole number of messages.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let count = (secs as f64 * rate) as i64;
    let step_ms = (secs * 1000 - 1000) / count.max(1);
    let mut records = Vec::new();
    for n in 0..count {
        let value = rng.sample_message().encode();
        let partition = i32::try_from(n % i64::from(partitions))?;
        records.push(TestRecord::new(partition, first_ms + n * step_ms, value));
    }
    produce(&topic, &records).await;
    println!(
        "history: {} messages over the last {secs} s into {topic} ({partitions} partitions)",
        records.len()
    );
    Ok(())
}
