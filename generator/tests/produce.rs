//! The generator against a real Kafka broker.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;
use tickpipe_common::service::ServiceSettings;

use rdkafka::Message;
use tickpipe_common::config::Layers;
use tickpipe_common::message::TickerMessage;
use tickpipe_generator::settings::{Compression, Settings};
use tickpipe_testkit::{consume_all, create_topic, kafka_tool, require_kafka};
use tokio_util::sync::CancellationToken;

fn settings(topic: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars = vec![
        ("KAFKA_BROKERS".to_owned(), require_kafka()),
        ("KAFKA_TOPIC".to_owned(), topic.to_owned()),
        ("METRICS_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load(&Layers::from_vars(vars).expect("layers")).expect("settings")
}

async fn generate(topic: &str, extra: &[(&str, &str)]) -> tickpipe_generator::RunSummary {
    tickpipe_generator::run(settings(topic, extra), CancellationToken::new())
        .await
        .expect("run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produces_messages_that_follow_the_contract() {
    let topic = tickpipe_testkit::unique_name("gen");
    let summary = generate(
        &topic,
        &[("GENERATOR_RATE", "0"), ("GENERATOR_MAX_MESSAGES", "3000")],
    )
    .await;
    assert_eq!(
        (summary.sent, summary.acknowledged, summary.failed),
        (3000, 3000, 0)
    );

    let messages = consume_all(&topic, 3000, Duration::from_secs(30));
    assert_eq!(messages.len(), 3000);
    let bounds: HashMap<&str, (i64, i64)> = [
        ("AMZN", (1712, 2092)),
        ("MSFT", (97, 117)),
        ("AAPL", (194, 236)),
    ]
    .into();
    let mut partitions = HashSet::new();
    let mut last_timestamp: HashMap<i32, i64> = HashMap::new();
    for message in &messages {
        let value = message.payload().expect("value");
        let decoded = TickerMessage::decode(value).expect("valid message");
        // Exactly the wire shape: re-encoding gives the same bytes.
        assert_eq!(decoded.encode(), value);
        assert!((1..=3).contains(&decoded.tickers.len()));
        for tick in &decoded.tickers {
            let (low, high) = bounds[tick.name.as_ref()];
            assert!((low..=high).contains(&tick.price), "{tick:?}");
        }
        let timestamp = message.timestamp().to_millis().expect("timestamp");
        let previous = last_timestamp
            .insert(message.partition(), timestamp)
            .unwrap_or(0);
        assert!(
            timestamp >= previous,
            "timestamps never decrease within a partition"
        );
        partitions.insert(message.partition());
    }
    assert!(
        message_partitions_exist(&topic, 3),
        "created with 3 partitions"
    );
    assert!(!partitions.is_empty());
}

/// Records in `topic`: the sum of its partitions' end offsets.
fn records_in(topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", require_kafka())
        .create()
        .expect("client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

fn message_partitions_exist(topic: &str, expected: usize) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", require_kafka())
        .create()
        .expect("client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics()[0].partitions().len() == expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_messages() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        // One partition each, so that consumption order is production order.
        let topic = create_topic("seed", 1).await;
        generate(
            &topic,
            &[
                ("GENERATOR_RATE", "0"),
                ("GENERATOR_MAX_MESSAGES", "200"),
                ("GENERATOR_SEED", "1234"),
            ],
        )
        .await;
        let values: Vec<Vec<u8>> = consume_all(&topic, 200, Duration::from_secs(30))
            .iter()
            .map(|m| m.payload().expect("value").to_vec())
            .collect();
        assert_eq!(values.len(), 200);
        runs.push(values);
    }
    assert_eq!(runs[0], runs[1]);
}

#[test]
fn an_invalid_configuration_stops_the_binary_with_one_line_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_generator"))
        .env("GENERATOR_RATE", "abc")
        .output()
        .expect("run generator");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("GENERATOR_RATE"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_everything_in_flight() {
    let topic = create_topic("sigterm", 3).await;
    let child = Command::new(env!("CARGO_BIN_EXE_generator"))
        .env("KAFKA_BROKERS", require_kafka())
        .env("KAFKA_TOPIC", &topic)
        .env("GENERATOR_RATE", "2000")
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn generator");
    // Well under way: more than a thousand records acknowledged, more in flight.
    tickpipe_testkit::eventually(
        "over 1000 records in the topic",
        Duration::from_secs(30),
        || {
            let records = records_in(&topic);
            async move { (records > 1000).then_some(()) }
        },
    )
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || {
        let output = child.wait_with_output();
        output.expect("wait")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "exit 0 after SIGTERM: {:?}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stopped: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "generator stopped")
        .expect("a 'generator stopped' log line");
    let acknowledged = stopped["acknowledged"].as_u64().expect("acknowledged");
    assert!(acknowledged > 1000, "{stopped}");
    assert_eq!(stopped["failed"], 0);
    let in_topic = consume_all(&topic, acknowledged as usize + 1, Duration::from_secs(15)).len();
    assert_eq!(
        in_topic as u64, acknowledged,
        "acknowledged = messages in the topic"
    );
}

/// Each `GENERATOR_COMPRESSION` codec against the real broker: the same seeded messages go into one
/// topic per codec, every record reads back with exactly the bytes the uncompressed run produced, and
/// the broker's log of each compressed topic is smaller than the uncompressed one (so the codec really
/// reached the producer: reading back alone would pass without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips_through_the_broker() {
    const MESSAGES: usize = 2000;
    let mut topics = Vec::new();
    let mut payloads = Vec::new();
    for codec in Compression::ALL {
        // One partition, so that consumption order is production order.
        let topic = create_topic(&format!("codec-{codec}"), 1).await;
        let summary = generate(
            &topic,
            &[
                ("GENERATOR_RATE", "0"),
                ("GENERATOR_MAX_MESSAGES", &MESSAGES.to_string()),
                ("GENERATOR_SEED", "10"),
                ("GENERATOR_COMPRESSION", codec.as_str()),
            ],
        )
        .await;
        assert_eq!(
            (summary.acknowledged, summary.failed),
            (MESSAGES as u64, 0),
            "{codec}"
        );
        let values: Vec<Vec<u8>> = consume_all(&topic, MESSAGES, Duration::from_secs(30))
            .iter()
            .map(|m| m.payload().expect("value").to_vec())
            .collect();
        assert_eq!(values.len(), MESSAGES, "{codec}");
        for value in &values {
            TickerMessage::decode(value).expect("a valid message");
        }
        topics.push((codec, topic));
        payloads.push(values);
    }
    for ((codec, _), values) in topics.iter().zip(&payloads) {
        assert!(
            values == &payloads[0],
            "{codec}: the records differ from the uncompressed run"
        );
    }

    let sizes = log_sizes(topics.iter().map(|(_, topic)| topic.as_str()));
    let uncompressed = sizes[&topics[0].1];
    assert!(uncompressed > 0, "{sizes:?}");
    for (codec, topic) in &topics[1..] {
        // About 70-byte JSON messages in batches of hundreds: every codec at least halves them.
        assert!(
            sizes[topic] * 2 < uncompressed,
            "{codec}: {} bytes on the broker, uncompressed {uncompressed}",
            sizes[topic]
        );
    }
}

/// Bytes each topic's only partition occupies on the broker, from Kafka's `LogDirsCommand`.
fn log_sizes<'a>(topics: impl Iterator<Item = &'a str>) -> HashMap<String, u64> {
    let topics: Vec<&str> = topics.collect();
    let output = kafka_tool(
        "LogDirsCommand",
        &[
            "--bootstrap-server",
            &require_kafka(),
            "--describe",
            "--topic-list",
            &topics.join(","),
        ],
    )
    .expect("run LogDirsCommand");
    let report: serde_json::Value = output
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON in the LogDirsCommand output: {output}"));
    let mut sizes = HashMap::new();
    for broker in report["brokers"].as_array().expect("brokers") {
        for log_dir in broker["logDirs"].as_array().expect("logDirs") {
            for partition in log_dir["partitions"].as_array().expect("partitions") {
                let name = partition["partition"].as_str().expect("partition name");
                let topic = name.strip_suffix("-0").expect("partition 0");
                let size = partition["size"].as_u64().expect("size");
                *sizes.entry(topic.to_owned()).or_default() += size;
            }
        }
    }
    for topic in topics {
        assert!(sizes.contains_key(topic), "{topic} missing: {output}");
    }
    sizes
}
