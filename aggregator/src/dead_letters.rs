//! The dead-letter topic: invalid records, byte for byte, with the reason and origin in headers.
//!
//! Delivery is at least once. Before a partition's progress is stored, every dead letter sent so
//! far must be acknowledged ([`DeadLetters::settle`]); the stored `dlq_next_offset` then keeps a
//! restart from sending them again. Only a crash between acknowledgement and commit repeats one,
//! and its `dlq.source.*` headers identify the duplicate.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::Message;
use tickpipe_common::backoff::Backoff;
use tickpipe_common::kafka::client_config;
use tickpipe_common::message::InvalidMessage;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Header names on dead-letter records.
pub mod headers {
    pub const REASON: &str = "dlq.reason";
    pub const DETAIL: &str = "dlq.detail";
    pub const SOURCE_TOPIC: &str = "dlq.source.topic";
    pub const SOURCE_PARTITION: &str = "dlq.source.partition";
    pub const SOURCE_OFFSET: &str = "dlq.source.offset";
}

/// One dead letter, kept until acknowledged so that it can be sent again.
struct Letter {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    timestamp_ms: Option<i64>,
    headers: OwnedHeaders,
}

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    pending: Vec<(Letter, DeliveryFuture)>,
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
    pub fn new(brokers: &str, topic: &str) -> Result<Self, KafkaError> {
        let producer = client_config(brokers, "tickpipe-aggregator-dlq")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            pending: Vec::new(),
        })
    }

    /// Sends the original bytes of `message` with the reason it was rejected.
    pub fn send(&mut self, message: &BorrowedMessage<'_>, invalid: &InvalidMessage) {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: headers::REASON,
                value: Some(invalid.reason.as_str()),
            })
            .insert(Header {
                key: headers::DETAIL,
                value: Some(invalid.detail.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE_TOPIC,
                value: Some(message.topic()),
            })
            .insert(Header {
                key: headers::SOURCE_PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE_OFFSET,
                value: Some(offset.as_str()),
            });
        let letter = Letter {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            timestamp_ms: message.timestamp().to_millis(),
            headers,
        };
        self.enqueue(letter);
    }

    fn enqueue(&mut self, letter: Letter) {
        let mut record =
            FutureRecord::<[u8], [u8]>::to(&self.topic).headers(letter.headers.clone());
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &letter.payload {
            record = record.payload(payload.as_slice());
        }
        if let Some(timestamp) = letter.timestamp_ms {
            record = record.timestamp(timestamp);
        }
        let future = self
            .producer
            .send_result(record)
            .map_err(|(error, _)| error);
        match future {
            Ok(future) => self.pending.push((letter, future)),
            Err(error) => {
                // Queue full or similar: wait for a slot synchronously and try again.
                tracing::warn!(%error, "dead-letter producer busy; retrying");
                std::thread::sleep(Duration::from_millis(50));
                self.enqueue(letter);
            }
        }
    }

    /// Waits until every dead letter sent so far is acknowledged, sending failed ones again.
    /// Returns false if `shutdown` was cancelled first.
    pub fn settle(&mut self, runtime: &Handle, shutdown: &CancellationToken) -> bool {
        let mut backoff = Backoff::default();
        while !self.pending.is_empty() {
            let mut failed = Vec::new();
            for (letter, future) in self.pending.drain(..) {
                match runtime.block_on(future) {
                    Ok(Ok(_)) => {}
                    Ok(Err((error, _))) => {
                        tracing::warn!(%error, topic = %self.topic, "dead letter not delivered; sending again");
                        failed.push(letter);
                    }
                    Err(_) => failed.push(letter),
                }
            }
            if !failed.is_empty() {
                let (delay, _) = backoff.next_delay();
                if shutdown.is_cancelled() {
                    return false;
                }
                std::thread::sleep(delay);
            }
            for letter in failed {
                self.enqueue(letter);
            }
        }
        true
    }
}
