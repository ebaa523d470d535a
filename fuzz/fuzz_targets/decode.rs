//! Fuzz target for `TickerMessage::decode`, the first code that touches every Kafka record.
//!
//! For arbitrary bytes: decoding never panics; a rejection names the reason the input really has
//! where that is decidable from the bytes alone (size, UTF-8); an accepted message satisfies every
//! rule of the wire contract, checked here independently of `validate`, and encoding it gives bytes
//! that decode to an equal message and that are never longer than the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tickpipe_message::{
    InvalidReason, TickerMessage, MAX_MESSAGE_BYTES, MAX_PRICE, MAX_TICKERS_PER_MESSAGE,
    MAX_TICKER_LEN,
};

fuzz_target!(|data: &[u8]| {
    match TickerMessage::decode(data) {
        Ok(message) => check_accepted(data, &message),
        Err(error) => {
            // The checks run in this order, so these two reasons are exact.
            let oversized = data.len() > MAX_MESSAGE_BYTES;
            assert_eq!(error.reason == InvalidReason::Oversized, oversized);
            if !oversized {
                let utf8 = std::str::from_utf8(data).is_ok();
                assert_eq!(error.reason == InvalidReason::NotUtf8, !utf8);
            }
            // Decode-time reasons only: timestamps are judged on the Kafka record, not the value.
            assert!(!matches!(
                error.reason,
                InvalidReason::MissingTimestamp | InvalidReason::FutureTimestamp
            ));
            // The rendering goes into logs and dead-letter headers.
            assert!(!error.to_string().is_empty());
        }
    }
});

fn check_accepted(data: &[u8], message: &TickerMessage<'_>) {
    assert!(data.len() <= MAX_MESSAGE_BYTES, "{} bytes", data.len());
    let count = message.tickers.len();
    assert!((1..=MAX_TICKERS_PER_MESSAGE).contains(&count), "{count}");
    for (index, tick) in message.tickers.iter().enumerate() {
        let name = tick.name.as_bytes();
        assert!(
            (1..=MAX_TICKER_LEN).contains(&name.len())
                && name.iter().all(|&b| {
                    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                }),
            "{:?}",
            tick.name
        );
        assert!(
            message.tickers[..index].iter().all(|t| t.name != tick.name),
            "duplicate {:?}",
            tick.name
        );
        assert!(0 < tick.price && tick.price <= MAX_PRICE, "{}", tick.price);
    }

    let encoded = message.encode();
    // Canonical JSON drops whitespace, unknown fields and escapes, and JSON has no shorter form of
    // an integer: re-encoding never grows a message, so it can never become oversized.
    assert!(
        !encoded.is_empty() && encoded.len() <= data.len(),
        "{} bytes re-encoded from {}",
        encoded.len(),
        data.len()
    );
    let again = match TickerMessage::decode(&encoded) {
        Ok(again) => again,
        Err(error) => panic!(
            "re-encoded message rejected ({error}): {}",
            String::from_utf8_lossy(&encoded)
        ),
    };
    assert_eq!(&again, message);
    // The encoding is canonical: a second round gives the same bytes.
    assert_eq!(again.encode(), encoded);
}
