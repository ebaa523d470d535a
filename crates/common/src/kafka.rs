//! Kafka client settings and topic creation shared by the services.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

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

/// Creates `topic` unless it exists. An existing topic is used as it is, whatever its partition count.
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
) -> Result<bool, KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(brokers, "tickpipe-admin").create()?;
    let new_topic = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication_factor),
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
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        // Bounded, because the admin client waits indefinitely for an unreachable broker.
        let attempt = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            ensure_topic(brokers, topic, partitions, replication_factor),
        );
        let result = tokio::select! {
            result = attempt => result.unwrap_or(Err(KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut))),
            _ = shutdown.cancelled() => return false,
        };
        match result {
            Ok(created) => {
                tracing::info!(%topic, created, "topic ready");
                return true;
            }
            Err(error) => {
                let (delay, attempt) = backoff.next_delay();
                tracing::warn!(%brokers, %topic, %error, attempt, retry_in = ?delay, "Kafka not reachable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return false,
                }
            }
        }
    }
}
