//! The fault drill's referee: reads the whole topic from the beginning with its own consumer,
//! computes every (ticker, window) with the testkit's referee (independently of the aggregator),
//! waits for the aggregators to drain, and compares. Exits non-zero on any difference.
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
use sqlx::PgPool;
use tickpipe_testkit::env_or;
use tickpipe_testkit::referee::{self, Comparison, Referee, Windows};

/// Partition -> offset after its last record, when the topic was read.
type Ends = BTreeMap<i32, i64>;

/// Every record of the topic through the referee, and the end of each partition.
fn read_topic(brokers: &str, topic: &str, width_ms: i64) -> anyhow::Result<(Referee, Ends)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("drill-referee-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    let (mut remaining, mut ends) = (0i64, Ends::new());
    for partition in metadata.topics()[0].partitions() {
        let (low, high) =
            consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(10))?;
        remaining += high - low;
        ends.insert(partition.id(), high);
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut referee = Referee::new(width_ms);
    let deadline = Instant::now() + Duration::from_secs(300);
    while remaining > 0 && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message?;
        remaining -= 1;
        // A record without a timestamp has no window: invalid, like one without a valid value.
        let timestamp = message.timestamp().to_millis();
        let value = timestamp.and(message.payload());
        referee.record(
            message.partition(),
            message.offset(),
            timestamp.unwrap_or(0),
            value,
        );
    }
    anyhow::ensure!(
        remaining == 0,
        "could not read the whole topic: {remaining} records missing"
    );
    Ok((referee, ends))
}

/// Whether every partition's stored progress has its resume offset at the partition's end: every
/// window holding a record is written, and nothing is left for the aggregators to write.
async fn accounted(pool: &PgPool, topic: &str, ends: &Ends) -> anyhow::Result<bool> {
    let resume: BTreeMap<i32, i64> = sqlx::query_as(
        "SELECT kafka_partition, resume_offset FROM aggregator_progress WHERE topic = $1",
    )
    .bind(topic)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    Ok(ends
        .iter()
        .all(|(p, &end)| end <= 0 || resume.get(p).is_some_and(|&r| r >= end)))
}

/// Waits until the aggregators have written every sample and accounted for every record, or the
/// table stops changing for 30 s more than their idle lag (the last windows are written one idle
/// lag after they end), or `drain` passes; returns the table.
async fn drain(
    pool: &PgPool,
    topic: &str,
    expected_samples: i64,
    ends: &Ends,
    drain: Duration,
) -> anyhow::Result<Windows> {
    let idle_lag = Duration::from_millis(env_or("AGGREGATOR_IDLE_LAG_MS", "30000").parse()?);
    let stall = idle_lag + Duration::from_secs(30);
    let started = Instant::now();
    let mut last = (-1i64, Instant::now());
    loop {
        let stored = referee::stored(pool).await?;
        let samples = referee::samples(&stored);
        if samples != last.0 {
            last = (samples, Instant::now());
        }
        let done = samples >= expected_samples && accounted(pool, topic, ends).await?;
        if done || last.1.elapsed() > stall || started.elapsed() > drain {
            return Ok(stored);
        }
        // How often the table is read, not a wait for a state: the loop waits for one.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Prints the figures (stdout) and the first differences (stderr); an error on any difference.
fn report(referee: &Referee, comparison: &Comparison) -> anyhow::Result<()> {
    for (id, want, got) in comparison.differences.iter().take(10) {
        eprintln!(
            "differs: {id:?} expected (sum, count, min, max, open, close) {want:?}, stored {got:?}"
        );
    }
    let (records, invalid) = (referee.records(), referee.invalid());
    println!("records produced:        {}", env_or("DRILL_PRODUCED", "?"));
    println!(
        "records acknowledged:    {}",
        env_or("DRILL_ACKNOWLEDGED", "?")
    );
    println!("records in the topic:    {records} ({invalid} invalid)");
    println!(
        "prices in the topic:     {}",
        referee::samples(referee.windows())
    );
    println!("windows compared:        {}", comparison.compared);
    println!("windows that differ:     {}", comparison.differences.len());
    println!("prices lost:             {}", comparison.lost);
    println!("prices counted twice:    {}", comparison.twice);
    anyhow::ensure!(
        comparison.differences.is_empty() && comparison.compared > 0,
        "the drill found differences"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = env_or("KAFKA_BROKERS", "127.0.0.1:9092");
    let topic = env_or("KAFKA_TOPIC", "stocks");
    let width_ms: i64 = env_or("AGGREGATOR_WINDOW_SECS", "30").parse::<i64>()? * 1000;
    let drain_for = Duration::from_secs(env_or("DRILL_DRAIN_SECS", "120").parse()?);
    let pool = PgPool::connect(&env_or("DATABASE_URL", "")).await?;

    let (referee, ends) = tokio::task::spawn_blocking({
        let (brokers, topic) = (brokers.clone(), topic.clone());
        move || read_topic(&brokers, &topic, width_ms)
    })
    .await??;
    let expected_samples = referee::samples(referee.windows());
    let stored = drain(&pool, &topic, expected_samples, &ends, drain_for).await?;
    report(&referee, &referee::compare(referee.windows(), &stored))?;
    // produced = acknowledged = in the topic, for the figures the generator reported.
    for name in ["DRILL_PRODUCED", "DRILL_ACKNOWLEDGED"] {
        if let Ok(given) = env_or(name, "?").parse::<u64>() {
            anyhow::ensure!(
                given == referee.records(),
                "{name} is {given}, but the topic holds {} records",
                referee.records()
            );
        }
    }
    println!("drill: 1 passed, 0 failed");
    Ok(())
}
