//! The dead-letter topic: invalid records, byte for byte where they fit, with the reason and origin
//! in headers.
//!
//! Delivery is at least once. Before a partition's progress is stored, every dead letter sent so
//! far must be settled ([`DeadLetters::settle`]); the stored `dlq_next_offset` then keeps a restart
//! from sending them again. Only a crash between acknowledgement and commit repeats one, and its
//! `dlq.source.*` headers identify the duplicate.
//!
//! A dead letter must never stop consumption, so every way of failing is bounded:
//! - A record too large to forward whole (librdkafka's `message.max.bytes` counts key + value +
//!   headers, and the dead-letter topic may have a smaller `max.message.bytes` than the source) is
//!   forwarded with its key and value cut to what fits, halving the budget each time the producer or
//!   the broker says "too large", and headers giving the original sizes ([`headers::TRUNCATED`]).
//! - Any other failure is retried with backoff at most [`MAX_ATTEMPTS`] times; then the letter is
//!   given up: counted in `aggregator_dead_letters_failed_total`, logged at most once per interval,
//!   and the partition moves on. Exactly-once of the valid records does not depend on dead letters.
//! - Every wait is iterative and ends at once when the service shuts down.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;
use tickpipe_common::backoff::Backoff;
use tickpipe_common::config::KafkaSettings;
use tickpipe_common::kafka::{client_config, send_when_queue_has_room};
use tickpipe_common::message::InvalidMessage;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::cancellable::{block_on_unless_cancelled, sleep_unless_cancelled};
use crate::throttle::Throttle;

/// Header names on dead-letter records.
pub mod headers {
    pub const REASON: &str = "dlq.reason";
    pub const DETAIL: &str = "dlq.detail";
    pub const SOURCE_TOPIC: &str = "dlq.source.topic";
    pub const SOURCE_PARTITION: &str = "dlq.source.partition";
    pub const SOURCE_OFFSET: &str = "dlq.source.offset";
    /// Present only on a letter whose key or value was cut: `true`.
    pub const TRUNCATED: &str = "dlq.truncated";
    /// On a cut letter: the original key length in bytes (absent when the record had no key).
    pub const ORIGINAL_KEY_BYTES: &str = "dlq.original.key.bytes";
    /// On a cut letter: the original value length in bytes (absent when the record had no value).
    pub const ORIGINAL_VALUE_BYTES: &str = "dlq.original.value.bytes";
}

/// The producer's `message.max.bytes` (librdkafka's default, stated so the budget below follows it).
const PRODUCER_MAX_MESSAGE_BYTES: usize = 1_000_000;
/// Key + value bytes a letter starts with: the producer limit less room for our headers (the
/// detail is capped at `MAX_DETAIL_BYTES`, a topic name at 249) and the record's framing.
pub const LETTER_BUDGET_BYTES: usize = PRODUCER_MAX_MESSAGE_BYTES - 16 * 1024;
/// The rejection detail is free text from a parser; it never needs more than this.
const MAX_DETAIL_BYTES: usize = 1024;
/// Attempts per letter for failures other than "too large" before it is given up.
pub(crate) const MAX_ATTEMPTS: u32 = 5;
/// How long one send waits for room in a full producer queue before the attempt counts as failed.
const QUEUE_FULL_PATIENCE: Duration = Duration::from_secs(30);
/// Letters awaiting acknowledgement hold a copy of their bytes; past this many the sender settles
/// them before taking more, so a burst of large invalid records cannot grow memory without bound.
const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;
/// Delivery attempts by librdkafka itself end after this (its default is five minutes).
const MESSAGE_TIMEOUT_MS: &str = "30000";

/// How many bytes of a key and of a value fit together in `budget` bytes. Both are kept whole when
/// they fit; otherwise the value keeps at least half of the budget when it needs it (it is what
/// shows why the record was rejected) and the key gets the rest.
pub(crate) fn cut(key_len: usize, value_len: usize, budget: usize) -> (usize, usize) {
    if key_len.saturating_add(value_len) <= budget {
        return (key_len, value_len);
    }
    let key = key_len.min(budget - value_len.min(budget / 2));
    let value = value_len.min(budget - key);
    (key, value)
}

/// One dead letter, kept until acknowledged so that it can be sent again.
struct Letter {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp_ms: Option<i64>,
    reason: &'static str,
    detail: String,
    source_topic: String,
    source_partition: i32,
    source_offset: i64,
    /// Key + value bytes this letter may carry; halved on every "too large" answer.
    budget: usize,
    /// Failed attempts other than "too large".
    failures: u32,
}

impl Letter {
    fn bytes(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len)
    }

    /// Key and value as sent under the current budget, and whether either was cut.
    fn parts(&self) -> (Option<&[u8]>, Option<&[u8]>, bool) {
        let key_len = self.key.as_ref().map_or(0, Vec::len);
        let value_len = self.value.as_ref().map_or(0, Vec::len);
        let (key_kept, value_kept) = cut(key_len, value_len, self.budget);
        let key = self.key.as_deref().map(|k| &k[..key_kept]);
        let value = self.value.as_deref().map(|v| &v[..value_kept]);
        (key, value, key_kept < key_len || value_kept < value_len)
    }

    /// Halves the budget after a "too large" answer. False once there is nothing left to cut.
    fn shrink(&mut self) -> bool {
        let sent = {
            let (key, value, _) = self.parts();
            key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)
        };
        if sent == 0 {
            return false;
        }
        self.budget = sent / 2;
        true
    }

    fn record<'a>(&'a self, topic: &'a str) -> FutureRecord<'a, [u8], [u8]> {
        let (key, value, truncated) = self.parts();
        let partition = self.source_partition.to_string();
        let offset = self.source_offset.to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: headers::REASON,
                value: Some(self.reason),
            })
            .insert(Header {
                key: headers::DETAIL,
                value: Some(self.detail.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE_TOPIC,
                value: Some(self.source_topic.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE_PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE_OFFSET,
                value: Some(offset.as_str()),
            });
        if truncated {
            headers = headers.insert(Header {
                key: headers::TRUNCATED,
                value: Some("true"),
            });
            if let Some(original) = &self.key {
                headers = headers.insert(Header {
                    key: headers::ORIGINAL_KEY_BYTES,
                    value: Some(original.len().to_string().as_str()),
                });
            }
            if let Some(original) = &self.value {
                headers = headers.insert(Header {
                    key: headers::ORIGINAL_VALUE_BYTES,
                    value: Some(original.len().to_string().as_str()),
                });
            }
        }
        let mut record = FutureRecord::to(topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(timestamp) = self.timestamp_ms {
            record = record.timestamp(timestamp);
        }
        record
    }
}

/// Whether a producer error means the record is too large for the producer or the broker.
fn too_large(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidRecord)
    )
}

/// Counters the dead-letter path reports to.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterMetrics {
    /// Letters given up after bounded retries.
    pub failed: Counter,
    /// Letters forwarded with their key or value cut.
    pub truncated: Counter,
}

pub(crate) struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    runtime: Handle,
    shutdown: CancellationToken,
    metrics: DeadLetterMetrics,
    /// Sent and not yet acknowledged; resent from here when delivery fails.
    pending: Vec<(Letter, DeliveryFuture)>,
    pending_bytes: usize,
    failure_log: Throttle,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl DeadLetters {
    pub(crate) fn new(
        kafka: &KafkaSettings,
        topic: &str,
        runtime: Handle,
        shutdown: CancellationToken,
        metrics: DeadLetterMetrics,
    ) -> Result<Self, KafkaError> {
        let producer = client_config(kafka, "tickpipe-aggregator-dlq")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.max.bytes", PRODUCER_MAX_MESSAGE_BYTES.to_string())
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS)
            .create()?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            runtime,
            shutdown,
            metrics,
            pending: Vec::new(),
            pending_bytes: 0,
            failure_log: Throttle::new(Duration::from_secs(10)),
        })
    }

    /// Sends `message` to the dead-letter topic with the reason it was rejected.
    pub(crate) fn send(&mut self, message: &BorrowedMessage<'_>, invalid: &InvalidMessage) {
        if self.pending_bytes > MAX_PENDING_BYTES {
            self.settle();
        }
        let letter = Letter {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            timestamp_ms: message.timestamp().to_millis(),
            reason: invalid.reason.as_str(),
            detail: truncate_utf8(&invalid.detail, MAX_DETAIL_BYTES).to_owned(),
            source_topic: message.topic().to_owned(),
            source_partition: message.partition(),
            source_offset: message.offset(),
            budget: LETTER_BUDGET_BYTES,
            failures: 0,
        };
        self.dispatch(letter);
    }

    /// Hands `letter` to the producer, cutting it while it is too large and waiting (bounded)
    /// while the producer's queue is full.
    // rdkafka's `send_result` hands a refused record back in its error: large, and not ours.
    #[allow(clippy::result_large_err)]
    fn dispatch(&mut self, mut letter: Letter) {
        loop {
            let producer = &self.producer;
            let record = letter.record(&self.topic);
            let enqueue = async {
                tokio::time::timeout(
                    QUEUE_FULL_PATIENCE,
                    send_when_queue_has_room(record, |r| producer.send_result(r)),
                )
                .await
                .unwrap_or(Err(KafkaError::MessageProduction(
                    RDKafkaErrorCode::QueueFull,
                )))
            };
            let Some(sent) = block_on_unless_cancelled(&self.runtime, &self.shutdown, enqueue)
            else {
                return;
            };
            match sent {
                Ok(future) => {
                    self.pending_bytes += letter.bytes();
                    self.pending.push((letter, future));
                    return;
                }
                Err(error) if too_large(&error) && letter.shrink() => {}
                Err(error) => return self.give_up(&letter, &error),
            }
        }
    }

    /// Waits until every dead letter sent so far is acknowledged or given up, sending failed ones
    /// again. Returns false if the service is shutting down (progress must not be stored then).
    pub(crate) fn settle(&mut self) -> bool {
        if !self.pending.is_empty() {
            tracing::debug!(letters = self.pending.len(), "settling dead letters");
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        while !self.pending.is_empty() {
            let mut retry = Vec::new();
            let pending = std::mem::take(&mut self.pending);
            self.pending_bytes = 0;
            for (mut letter, future) in pending {
                let Some(delivery) =
                    block_on_unless_cancelled(&self.runtime, &self.shutdown, future)
                else {
                    return false;
                };
                match delivery {
                    Ok(Ok(_)) => {
                        if letter.parts().2 {
                            self.metrics.truncated.inc();
                        }
                    }
                    Ok(Err((error, _))) if too_large(&error) => {
                        if letter.shrink() {
                            retry.push(letter);
                        } else {
                            self.give_up(&letter, &error);
                        }
                    }
                    Ok(Err((error, _))) => {
                        letter.failures += 1;
                        if letter.failures >= MAX_ATTEMPTS {
                            self.give_up(&letter, &error);
                        } else {
                            retry.push(letter);
                        }
                    }
                    Err(_cancelled) => {
                        self.give_up(&letter, &KafkaError::Canceled);
                    }
                }
            }
            if retry.iter().any(|letter| letter.failures > 0) {
                let (delay, _) = backoff.next_delay();
                if !sleep_unless_cancelled(&self.runtime, &self.shutdown, delay) {
                    return false;
                }
            }
            for letter in retry {
                self.dispatch(letter);
            }
        }
        !self.shutdown.is_cancelled()
    }

    fn give_up(&mut self, letter: &Letter, error: &KafkaError) {
        self.metrics.failed.inc();
        if let Some(suppressed) = self.failure_log.allow() {
            tracing::error!(
                %error,
                topic = %self.topic,
                source_partition = letter.source_partition,
                source_offset = letter.source_offset,
                reason = letter.reason,
                suppressed,
                "dead letter given up after bounded retries; the record is skipped"
            );
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_fits_is_kept_whole() {
        assert_eq!(cut(10, 100, 110), (10, 100));
        assert_eq!(cut(0, 0, 0), (0, 0));
    }

    #[test]
    fn a_huge_value_is_cut_and_a_small_key_kept() {
        assert_eq!(cut(10, 1_000_000, 1000), (10, 990));
    }

    #[test]
    fn a_huge_key_is_cut_and_a_small_value_kept() {
        assert_eq!(cut(1_000_000, 10, 1000), (990, 10));
    }

    #[test]
    fn two_huge_parts_share_the_budget() {
        assert_eq!(cut(1_000_000, 1_000_000, 1000), (500, 500));
        assert_eq!(cut(1_000_000, 1_000_000, 1001), (501, 500));
    }

    #[test]
    fn never_exceeds_the_budget() {
        for key in [0, 1, 7, 500, 999, 1000, 5000] {
            for value in [0, 1, 7, 500, 999, 1000, 5000] {
                for budget in [0, 1, 2, 999, 1000, 1001] {
                    let (k, v) = cut(key, value, budget);
                    assert!(k <= key && v <= value);
                    assert!(k + v <= budget, "{key}+{value} in {budget}: {k}+{v}");
                    // Nothing is cut that would have fitted.
                    assert_eq!(k + v, (key + value).min(budget));
                }
            }
        }
    }

    #[test]
    fn detail_is_cut_on_a_character_boundary() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
