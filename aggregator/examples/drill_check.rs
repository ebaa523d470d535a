//! The fault drill's referee: reads the whole topic from the beginning with its own consumer,
//! computes every (ticker, window) independently of the aggregator, waits for the aggregators to
//! drain, and compares. Exits non-zero on any difference.
//!
//! Environment: KAFKA_BROKERS, KAFKA_TOPIC, DATABASE_URL, AGGREGATOR_WINDOW_SECS (default 30),
//! AGGREGATOR_IDLE_LAG_MS (default 30000),
//! DRILL_PRODUCED and DRILL_ACKNOWLEDGED (figures from the generator, printed, and each must equal
//! the records in the topic when given as a number),
//! DRILL_DRAIN_SECS (default 120).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sqlx::Row;
use tickpipe_common::message::TickerMessage;
use tickpipe_testkit::env_or;

/// (ticker, window start ms) -> (sum, count, open, close).
type Windows = BTreeMap<(String, i64), (i64, i64, Option<i64>, Option<i64>)>;
/// A price's (record timestamp ms, partition, offset): open is the smallest, close the largest.
type PriceKey = (i64, i32, i64);

/// Every record of the topic, folded into (ticker, window start ms) -> (sum, count, open, close).
fn reference(brokers: &str, topic: &str, width_ms: i64) -> anyhow::Result<(Windows, u64, u64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("drill-referee-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0i64;
    for partition in metadata.topics()[0].partitions() {
        let (low, high) =
            consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(10))?;
        remaining += high - low;
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let (mut windows, mut records, mut invalid) = (Windows::new(), 0u64, 0u64);
    let mut keys: BTreeMap<(String, i64), (PriceKey, PriceKey)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while remaining > 0 && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message?;
        remaining -= 1;
        records += 1;
        let (Some(payload), Some(ts)) = (message.payload(), message.timestamp().to_millis()) else {
            invalid += 1;
            continue;
        };
        let Ok(decoded) = TickerMessage::decode(payload) else {
            invalid += 1;
            continue;
        };
        let start = ts.div_euclid(width_ms) * width_ms;
        let key = (ts, message.partition(), message.offset());
        for tick in decoded.tickers {
            let id = (tick.name.into_owned(), start);
            let entry = windows.entry(id.clone()).or_default();
            entry.0 += tick.price;
            entry.1 += 1;
            let (open, close) = keys.entry(id).or_insert((key, key));
            if key <= *open {
                (*open, entry.2) = (key, Some(tick.price));
            }
            if key >= *close {
                (*close, entry.3) = (key, Some(tick.price));
            }
        }
    }
    anyhow::ensure!(
        remaining == 0,
        "could not read the whole topic: {remaining} records missing"
    );
    Ok((windows, records, invalid))
}

async fn stored(pool: &sqlx::PgPool) -> anyhow::Result<Windows> {
    let rows = sqlx::query(
        "SELECT ticker, (extract(epoch FROM window_start) * 1000)::bigint AS start_ms,
                price_sum, sample_count, open_price, close_price
         FROM window_prices",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                (r.get("ticker"), r.get("start_ms")),
                (
                    r.get("price_sum"),
                    r.get("sample_count"),
                    r.get("open_price"),
                    r.get("close_price"),
                ),
            )
        })
        .collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = env_or("KAFKA_BROKERS", "127.0.0.1:9092");
    let topic = env_or("KAFKA_TOPIC", "stocks");
    let width_ms: i64 = env_or("AGGREGATOR_WINDOW_SECS", "30").parse::<i64>()? * 1000;
    let drain = Duration::from_secs(env_or("DRILL_DRAIN_SECS", "120").parse()?);
    let pool = sqlx::PgPool::connect(&env_or("DATABASE_URL", "")).await?;

    let (expected, records, invalid) =
        tokio::task::spawn_blocking(move || reference(&brokers, &topic, width_ms)).await??;
    let expected_samples: i64 = expected.values().map(|v| v.1).sum();

    // Drain: until the table holds every sample, or stops changing for 30 s more than the
    // aggregators' idle lag (the last windows are written one idle lag after they end), or the
    // deadline.
    let idle_lag = Duration::from_millis(env_or("AGGREGATOR_IDLE_LAG_MS", "30000").parse()?);
    let stall = idle_lag + Duration::from_secs(30);
    let started = Instant::now();
    let mut last = (-1i64, Instant::now());
    let actual = loop {
        let actual = stored(&pool).await?;
        let samples: i64 = actual.values().map(|v| v.1).sum();
        if samples != last.0 {
            last = (samples, Instant::now());
        }
        if samples >= expected_samples || last.1.elapsed() > stall || started.elapsed() > drain {
            tokio::time::sleep(Duration::from_secs(2)).await;
            break stored(&pool).await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let (mut differ, mut lost, mut twice) = (0u64, 0i64, 0i64);
    let keys: std::collections::BTreeSet<_> =
        expected.keys().chain(actual.keys()).cloned().collect();
    for key in &keys {
        let want = expected.get(key).copied().unwrap_or_default();
        let got = actual.get(key).copied().unwrap_or_default();
        if want != got {
            differ += 1;
            lost += (want.1 - got.1).max(0);
            twice += (got.1 - want.1).max(0);
            if differ <= 10 {
                eprintln!(
                    "differs: {key:?} expected (sum, count, open, close) {want:?}, stored {got:?}"
                );
            }
        }
    }
    println!("records produced:        {}", env_or("DRILL_PRODUCED", "?"));
    println!(
        "records acknowledged:    {}",
        env_or("DRILL_ACKNOWLEDGED", "?")
    );
    println!("records in the topic:    {records} ({invalid} invalid)");
    println!("prices in the topic:     {expected_samples}");
    println!("windows compared:        {}", keys.len());
    println!("windows that differ:     {differ}");
    println!("prices lost:             {lost}");
    println!("prices counted twice:    {twice}");
    anyhow::ensure!(
        differ == 0 && !keys.is_empty(),
        "the drill found differences"
    );
    // produced = acknowledged = in the topic, for the figures the generator reported.
    for name in ["DRILL_PRODUCED", "DRILL_ACKNOWLEDGED"] {
        if let Ok(given) = env_or(name, "?").parse::<u64>() {
            anyhow::ensure!(
                given == records,
                "{name} is {given}, but the topic holds {records} records"
            );
        }
    }
    println!("drill: 1 passed, 0 failed");
    Ok(())
}
