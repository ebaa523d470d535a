//! Helpers for integration tests against the real Kafka broker and PostgreSQL.
//!
//! The services come from `scripts/services.sh up` (the test command `scripts/test.sh` starts them).
//! Nothing here fakes either one. Every test gets its own topic and its own database, so tests run
//! in parallel without seeing each other's data. When a service is unreachable the helpers panic
//! with a message naming the command that starts it: a test never skips silently.

pub mod referee;
pub mod rng;
pub mod seed;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sqlx::{Connection, PgConnection, PgPool};
use tickpipe_common::config::DatabaseSettings;

const START_HINT: &str = "start them with `scripts/services.sh up` (scripts/test.sh does this)";

/// An environment variable, or `default` when it is unset: how the benchmarks and the drill's
/// referee take their knobs.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The broker address tests use: `KAFKA_BROKERS`, as printed by `scripts/services.sh env`.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// The admin database URL tests use: `DATABASE_URL`, as printed by `scripts/services.sh env`.
pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/stocks".to_owned())
}

/// A name no other test (or earlier run) uses.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let salt: u32 = rand::thread_rng().gen();
    format!("{prefix}_{}_{nanos}_{salt:08x}", std::process::id())
}

/// Panics unless the broker answers a metadata request within a few seconds.
pub fn require_kafka() -> String {
    let brokers = brokers();
    let consumer: BaseConsumer = client(&brokers)
        .create()
        .unwrap_or_else(|e| panic!("cannot create a Kafka client for {brokers}: {e}"));
    if let Err(error) = consumer.fetch_metadata(None, Duration::from_secs(10)) {
        panic!("Kafka is not reachable at {brokers} ({error}); {START_HINT}");
    }
    brokers
}

fn client(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4");
    config
}

/// Creates a fresh topic with `partitions` partitions and returns its name.
pub async fn create_topic(prefix: &str, partitions: i32) -> String {
    create_topic_with(prefix, partitions, &[]).await
}

/// [`create_topic`] with topic-level `configs` (e.g. `compression.type`, `max.message.bytes`).
///
/// Every test topic keeps its records forever (`retention.ms=-1`): tests stamp records at fixed
/// instants in the past, and Kafka's time retention counts from the record timestamps, so with
/// the broker's default of 7 days a test's topic would be deleted under it once its instants are
/// a week old (it was: a crash test started failing on the day its fixed instant turned 7 days).
pub async fn create_topic_with(prefix: &str, partitions: i32, configs: &[(&str, &str)]) -> String {
    let topic = unique_name(prefix);
    create_named_topic(&topic, partitions, configs).await;
    topic
}

/// Creates the topic `name` exactly (e.g. the dead-letter topic an aggregator will use), with
/// `configs` and the records kept forever as in [`create_topic_with`].
pub async fn create_named_topic(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let brokers = require_kafka();
    let mut all_configs = vec![("retention.ms", "-1")];
    all_configs.extend_from_slice(configs);
    let created = tickpipe_common::kafka::ensure_topic(&brokers, name, partitions, 1, &all_configs)
        .await
        .unwrap_or_else(|e| panic!("cannot create topic {name}: {e}"));
    assert!(created, "topic {name} existed already");
}

/// One record to produce: partition, Kafka timestamp in Unix ms, value bytes.
#[derive(Debug, Clone)]
pub struct TestRecord {
    pub partition: i32,
    pub timestamp_ms: i64,
    pub value: Vec<u8>,
}

impl TestRecord {
    pub fn new(partition: i32, timestamp_ms: i64, value: impl Into<Vec<u8>>) -> Self {
        Self {
            partition,
            timestamp_ms,
            value: value.into(),
        }
    }
}

/// Produces the records in order, waits until every one is acknowledged, and returns their offsets
/// (in the order of `records`).
pub async fn produce(topic: &str, records: &[TestRecord]) -> Vec<i64> {
    let producer: FutureProducer = client(&brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut deliveries = Vec::with_capacity(records.len());
    for record in records {
        let future = producer
            .send_result(
                FutureRecord::<(), _>::to(topic)
                    .partition(record.partition)
                    .timestamp(record.timestamp_ms)
                    .payload(&record.value),
            )
            .unwrap_or_else(|(e, _)| panic!("enqueue to {topic}: {e}"));
        deliveries.push(future);
    }
    let mut offsets = Vec::with_capacity(records.len());
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(delivered)) => offsets.push(delivered.offset),
            Ok(Err((e, _))) => panic!("delivery to {topic} failed: {e}"),
            Err(_) => panic!("delivery to {topic} cancelled"),
        }
    }
    offsets
}

/// Reads every record of every partition of `topic` from the beginning until `expected` records
/// have arrived or `timeout` passes; returns what arrived.
pub fn consume_all(topic: &str, expected: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let brokers = require_kafka();
    let consumer: BaseConsumer = client(&brokers)
        .set("group.id", unique_name("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut assignment = TopicPartitionList::new();
    for topic_metadata in metadata.topics() {
        for partition in topic_metadata.partitions() {
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Beginning)
                .expect("assignment");
        }
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = std::time::Instant::now() + timeout;
    let mut messages = Vec::new();
    while messages.len() < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            messages.push(message.detach());
        }
    }
    messages
}

/// Header value of a consumed message as a string.
pub fn header(message: &OwnedMessage, key: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h: &Header<'_, &[u8]>| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A database of its own for one test, migrated, with a pool and its URL.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDatabase {
    /// Creates and migrates a fresh database on the server of `DATABASE_URL`.
    pub async fn create() -> Self {
        Self::create_at(&admin_database_url()).await
    }

    /// Creates and migrates a fresh database on the server of `admin_url` (its database is where
    /// the `CREATE DATABASE` runs; the new one keeps its host, user and query parameters).
    pub async fn create_at(admin_url: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {admin_url} ({e}); {START_HINT}")
        });
        let name = unique_name("test");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        let url = replace_database(&admin_url, &name);
        let settings = DatabaseSettings::direct(url.clone(), 4);
        let pool = tickpipe_common::db::lazy_pool(&settings).expect("pool");
        tickpipe_store::schema::MIGRATOR
            .run(&pool)
            .await
            .unwrap_or_else(|e| panic!("migrate {name}: {e}"));
        Self { name, url, pool }
    }

    pub fn settings(&self) -> DatabaseSettings {
        DatabaseSettings::direct(self.url.clone(), 4)
    }
}

/// The same URL with another database name (the path after the last `/`, before any `?`).
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(query) => format!("{prefix}/{database}?{query}"),
        None => format!("{prefix}/{database}"),
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `scripts/services.sh <command>` (e.g. `restart-postgres`) and panics if it fails.
pub fn services(command: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/services.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .arg(command)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {script} {command}: {e}"));
    assert!(status.success(), "{script} {command} failed: {status}");
}

/// Runs one of Kafka's own command-line tools (`org.apache.kafka.tools.<tool>`) from the jars that
/// `scripts/services.sh` fetched (`TICKPIPE_KAFKA_LIBS`) and returns its standard output. The
/// benchmarks use ProducerPerformance and ConsumerPerformance as yardsticks.
pub fn kafka_tool(tool: &str, args: &[&str]) -> std::io::Result<String> {
    let libs = std::env::var("TICKPIPE_KAFKA_LIBS").map_err(|_| {
        std::io::Error::other(format!("TICKPIPE_KAFKA_LIBS is not set; {START_HINT}"))
    })?;
    let output = std::process::Command::new("java")
        .args(["-Xmx512m", "-cp", &format!("{libs}/*")])
        .arg(format!("org.apache.kafka.tools.{tool}"))
        .args(args)
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
