//! Shared helpers of the aggregator's integration tests.

use std::collections::BTreeMap;
use std::time::Duration;
use tickpipe_common::service::ServiceSettings;

use sqlx::{PgPool, Row};
use tickpipe_aggregator::metrics::AggregatorMetrics;
use tickpipe_aggregator::settings::Settings;
use tickpipe_common::config::Layers;
use tickpipe_common::message::{Tick, TickerMessage};
use tickpipe_testkit::{TestDatabase, TestRecord};
use tokio_util::sync::CancellationToken;

/// Tests that restart a shared service (PostgreSQL) or load the whole machine hold this
/// exclusively; every other test holds it shared, so no test sees a restart it did not ask for.
pub static SERVICES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// 2026-11-20T10:00:00Z, a window start in the past: Kafka 4 rejects timestamps more than an hour
/// ahead (log.message.timestamp.after.max.ms), and the aggregator rejects those a minute ahead.
pub const T0: i64 = 1_795_168_800_000;

/// One expected (or stored) row: (ticker, window start ms) -> (sum, count, min, max, open, close).
pub type Rows = BTreeMap<(String, i64), (i64, i64, i64, i64, i64, i64)>;

pub fn value(ticks: &[(&str, i64)]) -> Vec<u8> {
    TickerMessage {
        tickers: ticks
            .iter()
            .map(|&(name, price)| Tick {
                name: name.into(),
                price,
            })
            .collect(),
    }
    .encode()
}

/// Aggregator settings for a test topic and database, from the same layers the binary reads.
pub fn settings(topic: &str, db: &TestDatabase, extra: &[(&str, &str)]) -> Settings {
    let mut vars = env_vars(topic, db);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load(&Layers::from_vars(vars).expect("layers")).expect("settings")
}

/// The environment a child aggregator process gets.
pub fn env_vars(topic: &str, db: &TestDatabase) -> Vec<(String, String)> {
    vec![
        ("KAFKA_BROKERS".into(), tickpipe_testkit::brokers()),
        ("KAFKA_TOPIC".into(), topic.into()),
        ("DATABASE_URL".into(), db.url.clone()),
        ("AGGREGATOR_GROUP_ID".into(), format!("{topic}-group")),
        ("AGGREGATOR_DLQ_TOPIC".into(), format!("{topic}.dlq")),
        ("METRICS_ADDR".into(), "127.0.0.1:0".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}

/// An aggregator running in this process. Dropping it (also when a test panics) stops it, so a
/// failing test fails instead of waiting forever for the consume thread.
pub struct Running {
    pub metrics: AggregatorMetrics,
    task: Option<tokio::task::JoinHandle<()>>,
    _stop_on_drop: tokio_util::sync::DropGuard,
    shutdown: CancellationToken,
}

impl Running {
    /// Stops the aggregator and waits until it has.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("aggregator stopped cleanly");
        }
    }
}

/// Starts an aggregator in this process.
pub fn start(settings: Settings) -> Running {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = AggregatorMetrics::register(&mut registry);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        async move {
            tickpipe_aggregator::run_with_metrics(settings, metrics, shutdown)
                .await
                .expect("aggregator run");
        }
    });
    Running {
        metrics,
        task: Some(task),
        _stop_on_drop: shutdown.clone().drop_guard(),
        shutdown,
    }
}

pub async fn stored_rows(pool: &PgPool) -> Rows {
    let rows = sqlx::query(
        "SELECT ticker, (extract(epoch FROM window_start) * 1000)::bigint AS start_ms,
                (extract(epoch FROM window_end - window_start) * 1000)::bigint AS width_ms,
                price_sum, sample_count, min_price, max_price, average_price, open_price, close_price
         FROM window_prices",
    )
    .fetch_all(pool)
    .await
    .expect("rows");
    rows.into_iter()
        .map(|r| {
            let (sum, count): (i64, i64) = (r.get("price_sum"), r.get("sample_count"));
            let average: f64 = r.get("average_price");
            assert_eq!(average, sum as f64 / count as f64, "average is sum / count");
            let known = |column: &str| -> i64 {
                let price: Option<i64> = r.get(column);
                price.unwrap_or_else(|| panic!("{column} is written with every window"))
            };
            (
                (r.get("ticker"), r.get("start_ms")),
                (
                    sum,
                    count,
                    r.get("min_price"),
                    r.get("max_price"),
                    known("open_price"),
                    known("close_price"),
                ),
            )
        })
        .collect()
}

pub async fn stored_samples(pool: &PgPool) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>("SELECT sum(sample_count)::bigint FROM window_prices")
        .fetch_one(pool)
        .await
        .unwrap_or(None)
        .unwrap_or(0)
}

/// The rows one uninterrupted run must write for records that are never late: a plain group-by,
/// with the open (close) the price of the smallest (largest) (timestamp, partition, offset) key.
/// `offsets` are the records' offsets, as [`tickpipe_testkit::produce`] returns them.
pub fn reference(records: &[TestRecord], offsets: &[i64], width_ms: i64) -> Rows {
    assert_eq!(records.len(), offsets.len(), "one offset per record");
    let mut rows = Rows::new();
    // (timestamp, partition, offset) of each row's open and close so far.
    type Key = (i64, i32, i64);
    let mut keys: BTreeMap<(String, i64), (Key, Key)> = BTreeMap::new();
    for (record, &offset) in records.iter().zip(offsets) {
        let Ok(message) = TickerMessage::decode(&record.value) else {
            continue;
        };
        let start = record.timestamp_ms.div_euclid(width_ms) * width_ms;
        let key = (record.timestamp_ms, record.partition, offset);
        for tick in &message.tickers {
            let id = (tick.name.to_string(), start);
            let price = tick.price;
            let entry = rows
                .entry(id.clone())
                .or_insert((0, 0, i64::MAX, i64::MIN, price, price));
            let (open_key, close_key) = keys.entry(id).or_insert((key, key));
            entry.0 += price;
            entry.1 += 1;
            entry.2 = entry.2.min(price);
            entry.3 = entry.3.max(price);
            if key < *open_key {
                (*open_key, entry.4) = (key, price);
            }
            if key > *close_key {
                (*close_key, entry.5) = (key, price);
            }
        }
    }
    rows
}

/// `n` generator messages spread over `partitions`, timestamps increasing by `step_ms` per record
/// with a jitter inside the grace period, starting at `T0`.
pub fn generated_records(n: usize, partitions: i32, step_ms: i64, seed: u64) -> Vec<TestRecord> {
    let stocks = tickpipe_generator::stocks::StockList::default();
    let mut source = tickpipe_generator::stocks::MessageSource::new(&stocks, Some(seed));
    (0..n)
        .map(|i| {
            let i = i as i64;
            let jitter = (i * 7919) % 1500; // < 2 s grace: never late
            TestRecord::new(
                (i % i64::from(partitions)) as i32,
                T0 + i * step_ms - jitter,
                source.next_message().encode(),
            )
        })
        .collect()
}

/// Waits until the table holds `samples` prices in all, then a little longer to catch any excess.
pub async fn wait_for_samples(pool: &PgPool, samples: i64, timeout: Duration) -> Rows {
    tickpipe_testkit::eventually("all samples written", timeout, || async {
        (stored_samples(pool).await >= samples).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stored_rows(pool).await
}
