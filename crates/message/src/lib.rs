//! The wire schema of the `stocks` topic and the rules a message must satisfy.
//!
//! One message value is UTF-8 JSON of exactly this shape:
//! `{"tickers":[{"name":"AMZN","price":1950},{"name":"AAPL","price":210}]}`. The generator encodes it
//! with [`TickerMessage::encode`]; the aggregator decodes it with [`TickerMessage::decode`], which
//! borrows ticker names from the input instead of allocating, because it runs once per record.
//!
//! Validation is all-or-nothing: a message with one bad entry is rejected whole, with an
//! [`InvalidReason`] that the aggregator uses as a metric label and a dead-letter header.
//!
//! This is a crate of its own, depending only on serde, serde_json and thiserror, so that the
//! fuzz target (`fuzz/fuzz_targets/decode.rs`) builds it without rdkafka and sqlx. The services
//! reach it as `tickpipe_common::message`, a re-export.
//!
//! [`stocks`] holds the sample stocks (the generator's defaults), which tests quote too.

pub mod stocks;

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest message value accepted, in bytes. Real messages are about 100 bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Most entries one message may hold (the wire contract says 1 to 3).
pub const MAX_TICKERS_PER_MESSAGE: usize = 3;
/// Prices above this are treated as corrupt rather than as market data.
pub const MAX_PRICE: i64 = 1_000_000_000;
/// Longest ticker name accepted.
pub const MAX_TICKER_LEN: usize = 16;

/// One message on the `stocks` topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickerMessage<'a> {
    #[serde(borrow)]
    pub tickers: Vec<Tick<'a>>,
}

/// One price observation inside a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    pub price: i64,
}

/// Why a message was rejected. The `as_str` form is stable: it is a metric label and a header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    Oversized,
    NotUtf8,
    InvalidJson,
    WrongShape,
    EmptyTickers,
    TooManyTickers,
    InvalidName,
    DuplicateName,
    NonPositivePrice,
    AbsurdPrice,
    MissingTimestamp,
    FutureTimestamp,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 12] = [
        Self::Oversized,
        Self::NotUtf8,
        Self::InvalidJson,
        Self::WrongShape,
        Self::EmptyTickers,
        Self::TooManyTickers,
        Self::InvalidName,
        Self::DuplicateName,
        Self::NonPositivePrice,
        Self::AbsurdPrice,
        Self::MissingTimestamp,
        Self::FutureTimestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::NotUtf8 => "not_utf8",
            Self::InvalidJson => "invalid_json",
            Self::WrongShape => "wrong_shape",
            Self::EmptyTickers => "empty_tickers",
            Self::TooManyTickers => "too_many_tickers",
            Self::InvalidName => "invalid_name",
            Self::DuplicateName => "duplicate_name",
            Self::NonPositivePrice => "non_positive_price",
            Self::AbsurdPrice => "absurd_price",
            Self::MissingTimestamp => "missing_timestamp",
            Self::FutureTimestamp => "future_timestamp",
        }
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected message: the reason (for metrics) and a human-readable detail (for logs and the DLQ).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct InvalidMessage {
    pub reason: InvalidReason,
    pub detail: String,
}

impl InvalidMessage {
    pub fn new(reason: InvalidReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl<'a> TickerMessage<'a> {
    /// Parses and validates one message value. Either every entry is valid or the message is rejected.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, InvalidMessage> {
        use InvalidReason::*;
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(InvalidMessage::new(
                Oversized,
                format!("{} bytes, limit {MAX_MESSAGE_BYTES}", bytes.len()),
            ));
        }
        let text =
            std::str::from_utf8(bytes).map_err(|e| InvalidMessage::new(NotUtf8, e.to_string()))?;
        let message: TickerMessage<'a> = serde_json::from_str(text).map_err(|e| {
            let reason = match e.classify() {
                serde_json::error::Category::Data => WrongShape,
                _ => InvalidJson,
            };
            InvalidMessage::new(reason, e.to_string())
        })?;
        message.validate()?;
        Ok(message)
    }

    /// Checks the rules that JSON types alone cannot express.
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        use InvalidReason::*;
        if self.tickers.is_empty() {
            return Err(InvalidMessage::new(EmptyTickers, "\"tickers\" is empty"));
        }
        if self.tickers.len() > MAX_TICKERS_PER_MESSAGE {
            return Err(InvalidMessage::new(
                TooManyTickers,
                format!(
                    "{} entries, at most {MAX_TICKERS_PER_MESSAGE}",
                    self.tickers.len()
                ),
            ));
        }
        for (index, tick) in self.tickers.iter().enumerate() {
            validate_ticker_name(&tick.name)
                .map_err(|detail| InvalidMessage::new(InvalidName, detail))?;
            if self.tickers[..index].iter().any(|t| t.name == tick.name) {
                return Err(InvalidMessage::new(
                    DuplicateName,
                    format!("{} appears twice", tick.name),
                ));
            }
            if tick.price <= 0 {
                return Err(InvalidMessage::new(
                    NonPositivePrice,
                    format!("{} has price {}", tick.name, tick.price),
                ));
            }
            if tick.price > MAX_PRICE {
                return Err(InvalidMessage::new(
                    AbsurdPrice,
                    format!("{} has price {}, limit {MAX_PRICE}", tick.name, tick.price),
                ));
            }
        }
        Ok(())
    }

    /// The JSON value as it goes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain strings and integers into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A ticker name is 1 to 16 characters of `A-Z`, `0-9`, `.` and `-`, e.g. `AMZN` or `BRK.B`.
pub fn validate_ticker_name(name: &str) -> Result<(), String> {
    let well_formed = !name.is_empty()
        && name.len() <= MAX_TICKER_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "ticker name {name:?} is not 1-{MAX_TICKER_LEN} characters of A-Z, 0-9, '.', '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(bytes: &[u8]) -> InvalidReason {
        TickerMessage::decode(bytes)
            .expect_err("must be rejected")
            .reason
    }

    #[test]
    fn round_trips_the_exact_wire_shape() {
        let wire = br#"{"tickers":[{"name":"AMZN","price":1950},{"name":"AAPL","price":210}]}"#;
        let message = TickerMessage::decode(wire).expect("valid");
        assert_eq!(message.tickers.len(), 2);
        assert_eq!(message.tickers[0].name, "AMZN");
        assert_eq!(message.tickers[1].price, 210);
        assert_eq!(message.encode(), wire.to_vec());
    }

    #[test]
    fn borrows_names_from_the_input() {
        let wire = br#"{"tickers":[{"name":"MSFT","price":107}]}"#;
        let message = TickerMessage::decode(wire).expect("valid");
        assert!(matches!(message.tickers[0].name, Cow::Borrowed(_)));
    }

    #[test]
    fn rejects_each_kind_of_bad_input_with_its_reason() {
        use InvalidReason::*;
        let cases: Vec<(Vec<u8>, InvalidReason)> = vec![
            (b"not json".to_vec(), InvalidJson),
            (b"{\"tickers\":[".to_vec(), InvalidJson),
            (vec![0xff, 0xfe, b'{'], NotUtf8),
            (br#"{"tickers":"AMZN"}"#.to_vec(), WrongShape),
            (br#"{"tickers":[{"name":"AMZN","price":"10"}]}"#.to_vec(), WrongShape),
            (br#"{"tickers":[{"name":"AMZN","price":10.5}]}"#.to_vec(), WrongShape),
            (br#"{"tickers":[{"name":"AMZN"}]}"#.to_vec(), WrongShape),
            (br#"{"prices":[]}"#.to_vec(), WrongShape),
            (br#"[1,2]"#.to_vec(), WrongShape),
            (br#"{"tickers":[]}"#.to_vec(), EmptyTickers),
            (
                br#"{"tickers":[{"name":"A","price":1},{"name":"B","price":1},{"name":"C","price":1},{"name":"D","price":1}]}"#.to_vec(),
                TooManyTickers,
            ),
            (br#"{"tickers":[{"name":"","price":10}]}"#.to_vec(), InvalidName),
            (br#"{"tickers":[{"name":"amzn","price":10}]}"#.to_vec(), InvalidName),
            (
                br#"{"tickers":[{"name":"AMZN","price":1},{"name":"AMZN","price":2}]}"#.to_vec(),
                DuplicateName,
            ),
            (br#"{"tickers":[{"name":"AMZN","price":0}]}"#.to_vec(), NonPositivePrice),
            (br#"{"tickers":[{"name":"AMZN","price":-5}]}"#.to_vec(), NonPositivePrice),
            (
                br#"{"tickers":[{"name":"AMZN","price":1000000000000}]}"#.to_vec(),
                AbsurdPrice,
            ),
            (vec![b' '; MAX_MESSAGE_BYTES + 1], Oversized),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                reason(&bytes),
                expected,
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn a_bad_entry_rejects_the_whole_message() {
        let wire = br#"{"tickers":[{"name":"AMZN","price":1950},{"name":"AAPL","price":-1}]}"#;
        assert_eq!(reason(wire), InvalidReason::NonPositivePrice);
    }

    #[test]
    fn reason_labels_are_distinct() {
        let labels: std::collections::HashSet<_> =
            InvalidReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), InvalidReason::ALL.len());
    }
}
