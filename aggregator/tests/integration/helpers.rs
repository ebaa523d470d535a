//! Shared helpers of the aggregator's integration tests.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use sqlx::PgPool;
use tickpipe_aggregator::metrics::AggregatorMetrics;
use tickpipe_aggregator::settings::Settings;
use tickpipe_common::config::Layers;
use tickpipe_common::message::{Tick, TickerMessage};
use tickpipe_common::service::ServiceSettings;
pub use tickpipe_testkit::referee::Windows;
use tickpipe_testkit::referee::{self, Referee};
use tickpipe_testkit::rng::Rng;
use tickpipe_testkit::{TestDatabase, TestRecord};
use tokio_util::sync::CancellationToken;

/// Tests that restart a shared service (PostgreSQL) or load the whole machine hold this
/// exclusively; every other test holds it shared, so no test sees a restart it did not ask for.
pub static SERVICES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// 2026-11-20T10:00:00Z, a window start in the past: Kafka 4 rejects timestamps more than an hour
/// ahead (log.message.timestamp.after.max.ms), and the aggregator rejects those a minute ahead.
pub const T0: i64 = 1_795_168_800_000;

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
    vars.extend(keep_everything(extra));
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

/// Retention variables keeping every table forever, for an aggregator started with the `extra`
/// variables (whose `AGGREGATOR_WINDOW_SECS` names the tables). The tests write windows at fixed
/// instants such as `T0`, older than the default retention of the windows (7 days) as the
/// calendar moves on.
pub fn keep_everything(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let window_secs = extra
        .iter()
        .find(|(name, _)| *name == "AGGREGATOR_WINDOW_SECS")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(30);
    tickpipe_store::history::sources(window_secs)
        .into_iter()
        .map(|source| {
            let name = tickpipe_store::history::width_name(source.width_secs).to_uppercase();
            (format!("TICKPIPE_RETENTION_{name}"), "forever".to_owned())
        })
        .collect()
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

/// The rows of `window_prices`, as the referee reads them (which checks each average too).
pub async fn stored_rows(pool: &PgPool) -> Windows {
    referee::stored(pool).await.expect("window_prices")
}

pub async fn stored_samples(pool: &PgPool) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>("SELECT sum(sample_count)::bigint FROM window_prices")
        .fetch_one(pool)
        .await
        .unwrap_or(None)
        .unwrap_or(0)
}

/// The rows one uninterrupted run must write for records that are never late, by the referee.
/// `offsets` are the records' offsets, as [`tickpipe_testkit::produce`] returns them.
pub fn reference(records: &[TestRecord], offsets: &[i64], width_ms: i64) -> Windows {
    assert_eq!(records.len(), offsets.len(), "one offset per record");
    let mut referee = Referee::new(width_ms);
    for (record, &offset) in records.iter().zip(offsets) {
        referee.record(
            record.partition,
            offset,
            record.timestamp_ms,
            Some(&record.value),
        );
    }
    referee.into_windows()
}

/// `n` messages such as the generator makes from the sample stocks, spread over `partitions`,
/// timestamps increasing by `step_ms` per record from `T0`, with a jitter inside the default grace
/// period of 2 s.
pub fn generated_records(n: usize, partitions: i32, step_ms: i64, seed: u64) -> Vec<TestRecord> {
    generated_records_from(T0, n, partitions, step_ms, seed)
}

/// [`generated_records`] from `start_ms` rather than `T0`.
pub fn generated_records_from(
    start_ms: i64,
    n: usize,
    partitions: i32,
    step_ms: i64,
    seed: u64,
) -> Vec<TestRecord> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let i = i as i64;
            let jitter = (i * 7919) % 1500; // < 2 s grace: never late
            TestRecord::new(
                (i % i64::from(partitions)) as i32,
                start_ms + i * step_ms - jitter,
                rng.sample_message().encode(),
            )
        })
        .collect()
}

/// Waits until the table holds `samples` prices and the aggregator has accounted for every record
/// of its topic (see [`wait_until_accounted`]), then returns the rows: nothing is left for it to
/// write, so a price counted twice would show.
pub async fn wait_for_samples(pool: &PgPool, samples: i64, timeout: Duration) -> Windows {
    tickpipe_testkit::eventually("all samples written", timeout, || async {
        (stored_samples(pool).await >= samples).then_some(())
    })
    .await;
    let ends = end_offsets_of_claimed(pool).await;
    wait_until_accounted(pool, &ends, timeout).await;
    stored_rows(pool).await
}

/// (topic, partition) -> offset after its last record.
pub type Ends = BTreeMap<(String, i32), i64>;

/// Waits until the stored progress of each partition in `ends` has its resume offset at the end:
/// every window holding one of its records is written (the progress is stored with the windows,
/// in one transaction), so the aggregator has nothing left to write for them.
pub async fn wait_until_accounted(pool: &PgPool, ends: &Ends, timeout: Duration) {
    tickpipe_testkit::eventually("progress past every record", timeout, || async {
        let stored: Vec<(String, i32, i64)> =
            sqlx::query_as("SELECT topic, kafka_partition, resume_offset FROM aggregator_progress")
                .fetch_all(pool)
                .await
                .ok()?;
        let resume: BTreeMap<(String, i32), i64> = stored
            .into_iter()
            .map(|(topic, partition, resume)| ((topic, partition), resume))
            .collect();
        ends.iter()
            .all(|(id, &end)| end <= 0 || resume.get(id).is_some_and(|&r| r >= end))
            .then_some(())
    })
    .await;
}

/// The end offsets of every partition the aggregator has claimed, from the broker (a test's topic
/// holds no transactional records here: its end is the offset after its last record).
async fn end_offsets_of_claimed(pool: &PgPool) -> Ends {
    let claimed: Vec<(String, i32)> =
        sqlx::query_as("SELECT topic, kafka_partition FROM aggregator_progress")
            .fetch_all(pool)
            .await
            .expect("claimed partitions");
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", tickpipe_testkit::brokers())
            .set("broker.address.family", "v4")
            .create()
            .expect("Kafka client");
        claimed
            .into_iter()
            .map(|(topic, partition)| {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                    .expect("watermarks");
                ((topic, partition), high)
            })
            .collect()
    })
    .await
    .expect("watermarks task")
}
