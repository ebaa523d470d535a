//! Validating one Kafka record: its value by the wire schema, its timestamp by the clock.

use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tickpipe_common::message::{InvalidMessage, InvalidReason, TickerMessage};

/// Records stamped further than this into the future are invalid (dead-lettered): accepted, such a
/// record would keep its window, and so the partition's resume offset, open until the wall clock
/// reaches it, making every restart replay that far back.
pub(crate) const MAX_FUTURE_SKEW_MS: i64 = 60_000;

/// The record's timestamp and prices, or why it is invalid. A record read again after a restart
/// takes `stored_future_verdict` (whether it was too far ahead the first time) instead of
/// comparing with today's clock, so that a replay judges it as the first run did.
pub(crate) fn decode<'a>(
    message: &'a BorrowedMessage<'_>,
    now_ms: i64,
    stored_future_verdict: Option<bool>,
) -> Result<(i64, TickerMessage<'a>), InvalidMessage> {
    let timestamp_ms = match message.timestamp().to_millis() {
        Some(ms) if ms >= 0 => ms,
        _ => {
            return Err(InvalidMessage::new(
                InvalidReason::MissingTimestamp,
                "record has no timestamp",
            ))
        }
    };
    let too_far_ahead =
        stored_future_verdict.unwrap_or(timestamp_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS));
    if too_far_ahead {
        return Err(InvalidMessage::new(
            InvalidReason::FutureTimestamp,
            format!(
                "timestamp {timestamp_ms} is {} ms ahead of the clock",
                timestamp_ms - now_ms
            ),
        ));
    }
    let Some(payload) = message.payload() else {
        return Err(InvalidMessage::new(
            InvalidReason::WrongShape,
            "record has no value",
        ));
    };
    Ok((timestamp_ms, TickerMessage::decode(payload)?))
}
