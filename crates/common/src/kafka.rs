//! The Kafka client configuration and topic creation shared by the services.

use std::time::Duration;

use crate::kafka_settings::KafkaSettings;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use rdkafka::ClientContext;

/// The configuration every Kafka client of tickpipe starts from (producers, consumers, admin
/// clients): the bootstrap servers, a client id, then the security settings and the passthrough
/// properties of `kafka`, so that no client can miss them. Callers add their own properties after
/// these; where a caller sets one for correctness (the consumer's offsets, the producers'
/// idempotence), its value wins over the passthrough's.
pub fn client_config(kafka: &KafkaSettings, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", client_id)
        // Prefer IPv4 for "localhost": the native broker listens on 127.0.0.1 only. A passthrough
        // (KAFKA_LIBRDKAFKA_BROKER_ADDRESS_FAMILY=any) overrides it.
        .set("broker.address.family", "v4");
    for property in kafka.properties() {
        config.set(property.name, property.value);
    }
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
    let kafka = KafkaSettings::plaintext(brokers);
    create_topic(&kafka, topic, partitions, replication_factor, configs).await
}

/// [`ensure_topic`] on the cluster of `kafka`, with its security settings.
pub async fn create_topic(
    kafka: &KafkaSettings,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) -> Result<bool, KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(kafka, "tickpipe-admin").create()?;
    create_topic_with(&admin, topic, partitions, replication_factor, configs).await
}

/// [`create_topic`] with an admin client the caller made (and whose context it watches).
pub async fn create_topic_with<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) -> Result<bool, KafkaError> {
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
