//! Making sure a service's topic is there before it is used: created when `KAFKA_CREATE_TOPICS`
//! allows it, only looked up when it does not. Unreachable brokers are waited for (at startup the
//! broker may still be electing a controller), but a refusal that no wait can heal (the principal
//! may not create or see the topic, or the topic is missing and may not be created) ends the wait
//! with one line that says what to change.

use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::backoff::{retry, Backoff, RetryError};
use crate::kafka::{client_config, create_topic_with};
use crate::kafka_diagnosis::probe;
use crate::kafka_settings::KafkaSettings;

/// How long one attempt to reach the broker may take before it is logged and retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a topic cannot be used; each is final.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error(
        "topic {topic} does not exist and KAFKA_CREATE_TOPICS is false: create it, or set \
         KAFKA_CREATE_TOPICS=true"
    )]
    Missing { topic: String },
    /// The brokers refuse this client's connection: wrong credentials, CA, host or protocol.
    #[error("cannot connect to Kafka: {0}")]
    Connection(String),
    #[error(
        "topic {topic}: the broker refuses to let this client {action} it ({code}): grant the \
         principal of KAFKA_SASL_USERNAME that ACL, or create the topic beforehand and set \
         KAFKA_CREATE_TOPICS=false"
    )]
    NotAuthorized {
        topic: String,
        action: &'static str,
        code: RDKafkaErrorCode,
    },
}

/// What one attempt ended in: a final refusal, or something worth another attempt.
#[derive(Debug, thiserror::Error)]
enum Attempt {
    #[error(transparent)]
    Final(TopicError),
    #[error(transparent)]
    Kafka(KafkaError),
}

/// Makes sure `topic` exists (creating it with `partitions` and `replication_factor` if
/// `KAFKA_CREATE_TOPICS` allows; -1 takes the broker's default), retried with backoff while the
/// brokers cannot be reached. `Ok(false)` if `shutdown` is cancelled first.
pub async fn ensure_topic_with_retry(
    kafka: &KafkaSettings,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    shutdown: &CancellationToken,
) -> Result<bool, TopicError> {
    let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let what = if kafka.create_topics {
        "creating the topic"
    } else {
        "looking up the topic"
    };
    let outcome = retry(
        what,
        backoff,
        shutdown,
        |attempt| matches!(attempt, Attempt::Kafka(_)),
        || async {
            let attempt = async {
                let admin = client_config(kafka, "tickpipe-admin")
                    .set("allow.auto.create.topics", "false")
                    .create()
                    .map_err(Attempt::Kafka)?;
                if kafka.create_topics {
                    create(&admin, topic, partitions, replication_factor).await
                } else {
                    look_up(admin, topic).await
                }
            };
            // Each attempt is bounded: the admin client waits indefinitely for an unreachable broker.
            let result = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
                .await
                .unwrap_or(Err(Attempt::Kafka(KafkaError::AdminOp(
                    RDKafkaErrorCode::OperationTimedOut,
                ))));
            // A broker that refuses this client's settings looks like one that is down; a probe
            // connection tells them apart.
            match result {
                Err(Attempt::Kafka(error)) => match diagnose_connection(kafka).await {
                    Some(line) => Err(Attempt::Final(TopicError::Connection(line))),
                    None => Err(Attempt::Kafka(error)),
                },
                result => result,
            }
        },
    )
    .await;
    match outcome {
        Ok(created) => {
            tracing::info!(%topic, created, "topic ready");
            Ok(true)
        }
        Err(RetryError::Cancelled) => Ok(false),
        Err(RetryError::Permanent(Attempt::Final(error))) => Err(error),
        // Not reached: every other error is retried.
        Err(RetryError::Permanent(Attempt::Kafka(_))) => Ok(false),
    }
}

async fn create(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
) -> Result<bool, Attempt> {
    match create_topic_with(admin, topic, partitions, replication_factor, &[]).await {
        Ok(created) => Ok(created),
        Err(KafkaError::AdminOp(code)) if is_authorization(code) => {
            Err(Attempt::Final(TopicError::NotAuthorized {
                topic: topic.to_owned(),
                action: "create",
                code,
            }))
        }
        Err(error) => Err(Attempt::Kafka(error)),
    }
}

/// Looks the topic up in the cluster's metadata (a blocking librdkafka call, so off the runtime).
async fn look_up(admin: AdminClient<DefaultClientContext>, topic: &str) -> Result<bool, Attempt> {
    let name = topic.to_owned();
    let metadata = tokio::task::spawn_blocking(move || {
        admin.inner().fetch_metadata(Some(&name), ATTEMPT_TIMEOUT)
    })
    .await
    .map_err(|_| Attempt::Kafka(KafkaError::Canceled))?
    .map_err(Attempt::Kafka)?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found.and_then(|t| t.error()) {
        None if found.is_some_and(|t| !t.partitions().is_empty()) => Ok(false),
        Some(code) if is_authorization(code.into()) => {
            Err(Attempt::Final(TopicError::NotAuthorized {
                topic: topic.to_owned(),
                action: "describe",
                code: code.into(),
            }))
        }
        _ => Err(Attempt::Final(TopicError::Missing {
            topic: topic.to_owned(),
        })),
    }
}

/// [`probe`], off the runtime (it blocks for up to [`ATTEMPT_TIMEOUT`]).
async fn diagnose_connection(kafka: &KafkaSettings) -> Option<String> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || probe(&kafka, ATTEMPT_TIMEOUT))
        .await
        .ok()
        .flatten()
}

fn is_authorization(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
    )
}
