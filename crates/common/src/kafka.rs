//! Kafka client settings and topic creation shared by the services.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::{retry, Backoff, RetryError};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// How long one attempt to reach the broker may take before it is logged and retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client configuration with the bootstrap servers and a client id set; callers add the rest.
pub fn client_config(brokers: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        // Prefer IPv4 for "localhost": the native broker listens on 127.0.0.1 only.
        .set("broker.address.family", "v4");
    config
}

/// Hands a record to a producer with `send`, waiting while librdkafka's local queue is full: that
/// is the producer's back-pressure (the broker is slower than we produce), not a failure. Any other
/// refusal is returned. Works for every producer type, since each hands the record back on failure.
pub async fn send_when_queue_has_room<R, T>(
    mut record: R,
    mut send: impl FnMut(R) -> Result<T, (KafkaError, R)>,
) -> Result<T, KafkaError> {
    loop {
        match send(record) {
            Ok(sent) => return Ok(sent),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                // About what librdkafka needs to free a slot by delivering a batch.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// Creates `topic` unless it exists, with topic-level `configs` (e.g. `retention.ms`) on top of the
/// broker's defaults. An existing topic is used as it is, whatever its partition count or configs.
/// A `replication_factor` of -1 takes the broker's `default.replication.factor`.
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) -> Result<bool, KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(brokers, "tickpipe-admin").create()?;
    let new_topic = configs.iter().fold(
        NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(replication_factor),
        ),
        |new_topic, (key, value)| new_topic.set(key, value),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics([&new_topic], &options).await?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(false),
        Some(Err((_, code))) => Err(KafkaError::AdminOp(code)),
    }
}

/// [`ensure_topic`], retried with backoff and one log line per attempt while the broker is
/// unreachable. Returns false if `shutdown` is cancelled first.
pub async fn ensure_topic_with_retry(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    shutdown: &CancellationToken,
) -> bool {
    let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    // Retried on every error: at startup the broker may still be electing a controller or
    // creating its internal topics, and each attempt is bounded because the admin client waits
    // indefinitely for an unreachable broker.
    let created = retry(
        "creating the topic",
        backoff,
        shutdown,
        |_| true,
        || async {
            tokio::time::timeout(
                ATTEMPT_TIMEOUT,
                ensure_topic(brokers, topic, partitions, replication_factor, &[]),
            )
            .await
            .unwrap_or(Err(KafkaError::AdminOp(
                RDKafkaErrorCode::OperationTimedOut,
            )))
        },
    )
    .await;
    match created {
        Ok(created) => {
            tracing::info!(%topic, created, "topic ready");
            true
        }
        Err(RetryError::Cancelled | RetryError::Permanent(_)) => false,
    }
}
