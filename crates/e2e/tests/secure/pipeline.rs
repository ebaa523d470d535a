//! The whole pipeline over TLS and SASL, the API and the aggregator's reads through PgBouncer in
//! transaction mode: every price counted once, and the API serving what is stored.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tickpipe_common::config::{KafkaSettings, Layers};
use tickpipe_testkit::referee::{self, Referee};
use tickpipe_testkit::{eventually, replace_database, unique_name, TestDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::support::{run_aggregator, run_api, run_generator, with, Secure, Vars};

const MESSAGES: u64 = 3_000;
const WIDTH_MS: i64 = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_over_tls_sasl_and_the_pooler_is_exact() {
    let secure = Secure::from_env();
    let topic = unique_name("secure");
    let kafka = secure.kafka(&topic);
    let summary = run_generator(&kafka, MESSAGES).await.expect("generator");
    assert_eq!(summary.acknowledged, MESSAGES, "{summary:?}");
    let (expected, ends) = read_topic(&kafka, &topic, MESSAGES);

    let db = TestDatabase::create_at(&secure.database_url).await;
    let database = with(
        &kafka,
        &[
            (
                "DATABASE_URL",
                &replace_database(&secure.pooled_url, &db.name),
            ),
            ("DATABASE_DIRECT_URL", &db.url),
            ("AGGREGATOR_GROUP_ID", &format!("{topic}-group")),
            ("AGGREGATOR_DLQ_TOPIC", &format!("{topic}.dlq")),
        ],
    );
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    let aggregator = {
        let (vars, stop) = (database.clone(), stop.clone());
        tokio::spawn(async move { run_aggregator(&vars, stop).await })
    };
    wait_until_accounted(&db, &ends).await;
    let stored = referee::stored(&db.pool).await.expect("window_prices");
    let comparison = referee::compare(&expected, &stored);
    assert!(comparison.differences.is_empty(), "{comparison:?}");
    assert!(comparison.compared > 0);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let api = {
        let (vars, stop) = (database.clone(), stop.clone());
        tokio::spawn(async move { run_api(&vars, listener, stop).await })
    };
    let (status, body) = get(port, "/v1/get-prices?startTime=0&limit=10000").await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let prices = body["prices"].as_array().expect("prices");
    let served: i64 = prices
        .iter()
        .map(|p| p["samples"].as_i64().expect("samples"))
        .sum();
    assert_eq!(prices.len(), stored.len(), "{body}");
    assert_eq!(served, referee::samples(&expected));
    let (status, _) = get(port, "/readyz").await;
    assert_eq!(status, 200);

    stop.cancel();
    aggregator
        .await
        .expect("aggregator task")
        .expect("aggregator");
    api.await.expect("API task").expect("API");
}

/// Every record of `topic`, read over the same secure settings, by the referee; and the end offset
/// of each partition.
fn read_topic(kafka: &Vars, topic: &str, records: u64) -> (referee::Windows, BTreeMap<i32, i64>) {
    let layers = Layers::from_vars(kafka.clone()).expect("layers");
    let settings = KafkaSettings::load(&layers).expect("Kafka settings");
    let consumer: BaseConsumer = tickpipe_common::kafka::client_config(&settings, "referee")
        .set("group.id", unique_name("referee"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in metadata.topics()[0].partitions() {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("assignment");
        let (_, high) = consumer
            .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(partition.id(), high);
    }
    consumer.assign(&assignment).expect("assign");
    let mut referee = Referee::new(WIDTH_MS);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while referee.records() < records {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {records}",
            referee.records()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("record");
            let timestamp = message.timestamp().to_millis().expect("timestamp");
            referee.record(
                message.partition(),
                message.offset(),
                timestamp,
                message.payload(),
            );
        }
    }
    (referee.into_windows(), ends)
}

/// Until the stored progress of every partition is at its end: every window is written.
async fn wait_until_accounted(db: &TestDatabase, ends: &BTreeMap<i32, i64>) {
    eventually(
        "the aggregator past every record",
        Duration::from_secs(120),
        || async {
            let resume: Vec<(i32, i64)> =
                sqlx::query_as("SELECT kafka_partition, resume_offset FROM aggregator_progress")
                    .fetch_all(&db.pool)
                    .await
                    .ok()?;
            let resume: BTreeMap<i32, i64> = resume.into_iter().collect();
            ends.iter()
                .all(|(partition, &end)| {
                    end == 0 || resume.get(partition).is_some_and(|&r| r >= end)
                })
                .then_some(())
        },
    )
    .await;
}

/// One HTTP/1.1 GET; the status and the body.
async fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}
