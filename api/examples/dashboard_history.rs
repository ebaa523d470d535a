//! Fills a topic with the past hour of ticker messages, so that the dashboard's charts have an
//! hour of bars as soon as the aggregator has read them (the browser test, `scripts/browser-test.sh`,
//! and its screenshot). Messages are shaped like the generator's: 1 to 3 distinct tickers each,
//! every price an integer uniform within ±10 % of the ticker's mean; record timestamps are spread
//! evenly over the last `HISTORY_SECS` up to one second ago, the partitions taken in turn.
//!
//! Environment: `KAFKA_BROKERS`, `KAFKA_TOPIC` (created with `GENERATOR_PARTITIONS`, default 3,
//! unless it exists), `HISTORY_SECS` (3600), `HISTORY_RATE` (messages per second of history, 2),
//! `HISTORY_SEED` (a fixed default, so runs are alike).

use std::time::{SystemTime, UNIX_EPOCH};

use tickpipe_testkit::{env_or, produce, TestRecord};

const STOCKS: [(&str, i64); 3] = [("AMZN", 1902), ("MSFT", 107), ("AAPL", 215)];

/// xorshift64*: enough randomness for prices, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `low..=high` (the modulo bias is irrelevant here).
    fn between(&mut self, low: i64, high: i64) -> i64 {
        let span = u64::try_from(high - low + 1).unwrap_or(1);
        low + i64::try_from(self.next() % span).unwrap_or(0)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = env_or("KAFKA_BROKERS", "127.0.0.1:9092");
    let topic = env_or("KAFKA_TOPIC", "stocks");
    let partitions: i32 = env_or("GENERATOR_PARTITIONS", "3").parse()?;
    let secs: i64 = env_or("HISTORY_SECS", "3600").parse()?;
    let rate: f64 = env_or("HISTORY_RATE", "2").parse()?;
    let mut rng = Rng(env_or("HISTORY_SEED", "20261127").parse::<u64>()?.max(1));

    tickpipe_common::kafka::ensure_topic(&brokers, &topic, partitions, 1, &[]).await?;
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let first_ms = now_ms - secs * 1000;
    // Truncation is intended: a whole number of messages.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let count = (secs as f64 * rate) as i64;
    let step_ms = (secs * 1000 - 1000) / count.max(1);
    let mut records = Vec::new();
    for n in 0..count {
        let mut picked: Vec<(&str, i64)> = STOCKS.to_vec();
        let keep = usize::try_from(rng.between(1, 3)).unwrap_or(1);
        for i in (1..picked.len()).rev() {
            let j = usize::try_from(rng.between(0, i64::try_from(i)?)).unwrap_or(0);
            picked.swap(i, j);
        }
        picked.truncate(keep);
        let tickers: Vec<serde_json::Value> = picked
            .iter()
            .map(|(name, mean)| {
                let price = rng.between((9 * mean + 9) / 10, 11 * mean / 10);
                serde_json::json!({ "name": name, "price": price })
            })
            .collect();
        let value = serde_json::to_vec(&serde_json::json!({ "tickers": tickers }))?;
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
