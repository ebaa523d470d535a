//! Hostile input against the real broker and PostgreSQL: sizes at and around every limit, every
//! compression codec, transactions committed and aborted, tombstones, keys and headers that are not
//! UTF-8, clocks skewed both ways, the epoch, bursts over many partitions, a dead-letter topic that
//! refuses letters, and SIGTERM while the aggregator waits on something.
//!
//! Each test checks the same promise against an independent reference: the aggregator stays up,
//! every valid record is counted exactly once (a plain group-by of what was produced), every invalid
//! record is in the dead-letter topic exactly once with its reason, and nothing else is.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::*;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message};
use tickpipe_aggregator::dead_letters::{headers, LETTER_BUDGET_BYTES};
use tickpipe_aggregator::metrics::{AggregatorMetrics, ReasonLabel};
use tickpipe_common::clock::now_ms;
use tickpipe_testkit::referee::Referee;
use tickpipe_testkit::{
    brokers, consume_all, create_named_topic, create_topic_with, header, unique_name, TestDatabase,
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// What the aggregator must make of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Valid and on time: counted once in its window.
    Counted,
    /// Valid but its window was already written: counted as late, not applied.
    Late,
    /// Invalid: in the dead-letter topic once, with this reason.
    Invalid(&'static str),
    /// Written in an aborted transaction: invisible.
    Aborted,
}

/// A record as a hostile producer may write it.
#[derive(Debug, Clone)]
struct Raw {
    partition: i32,
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(&'static str, Option<Vec<u8>>)>,
    expect: Expect,
    /// Filled in by the producer: the record's offset.
    offset: i64,
}

impl Raw {
    fn new(partition: i32, timestamp_ms: i64, value: impl Into<Vec<u8>>, expect: Expect) -> Self {
        Self {
            partition,
            timestamp_ms,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            expect,
            offset: -1,
        }
    }

    fn valid(partition: i32, timestamp_ms: i64, ticks: &[(&str, i64)]) -> Self {
        Self::new(partition, timestamp_ms, value(ticks), Expect::Counted)
    }

    fn invalid(
        partition: i32,
        timestamp_ms: i64,
        bytes: impl Into<Vec<u8>>,
        reason: &'static str,
    ) -> Self {
        Self::new(partition, timestamp_ms, bytes, Expect::Invalid(reason))
    }

    fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    fn without_value(mut self) -> Self {
        self.value = None;
        self
    }

    fn header(mut self, key: &'static str, value: Option<&[u8]>) -> Self {
        self.headers.push((key, value.map(<[u8]>::to_vec)));
        self
    }

    fn future_record<'a>(&'a self, topic: &'a str) -> FutureRecord<'a, [u8], [u8]> {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &self.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut record = FutureRecord::to(topic)
            .partition(self.partition)
            .timestamp(self.timestamp_ms)
            .headers(headers);
        if let Some(key) = &self.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &self.value {
            record = record.payload(value.as_slice());
        }
        record
    }
}

fn producer_config(extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers())
        .set("broker.address.family", "v4")
        .set("linger.ms", "5")
        // Large enough for the 1 MB records below; the broker enforces its own limit.
        .set("message.max.bytes", "2000000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
}

async fn deliver(producer: &FutureProducer, topic: &str, record: &mut Raw) {
    let delivery = producer
        .send_result(record.future_record(topic))
        .map_err(|(e, _)| e)
        .unwrap_or_else(|e| panic!("enqueue to {topic}: {e}"));
    match delivery.await {
        Ok(Ok(delivered)) => {
            assert_eq!(delivered.partition, record.partition);
            record.offset = delivered.offset;
        }
        Ok(Err((e, _))) => panic!("delivery to {topic} failed: {e}"),
        Err(_) => panic!("delivery to {topic} cancelled"),
    }
}

/// Produces `records` in order with producer settings `extra` (e.g. a compression codec).
async fn produce_raw(topic: &str, records: &mut [Raw], extra: &[(&str, &str)]) {
    let producer: FutureProducer = producer_config(extra)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    // All in flight at once; idempotence keeps each partition in the order listed.
    let deliveries: Vec<_> = records
        .iter()
        .map(|record| {
            producer
                .send_result(record.future_record(topic))
                .map_err(|(e, _)| e)
                .unwrap_or_else(|e| panic!("enqueue to {topic}: {e}"))
        })
        .collect();
    for (record, delivery) in records.iter_mut().zip(deliveries) {
        match delivery.await {
            Ok(Ok(delivered)) => {
                assert_eq!(delivered.partition, record.partition);
                record.offset = delivered.offset;
            }
            Ok(Err((e, _))) => panic!("delivery to {topic} failed: {e}"),
            Err(_) => panic!("delivery to {topic} cancelled"),
        }
    }
}

/// What the referee expects of the records that count.
fn expected_rows(records: &[Raw], width_ms: i64) -> Windows {
    let mut referee = Referee::new(width_ms);
    for r in records.iter().filter(|r| r.expect == Expect::Counted) {
        referee.record(r.partition, r.offset, r.timestamp_ms, r.value.as_deref());
    }
    referee.into_windows()
}

/// (topic, partition) -> offset after the last record a consumer sees (aborted ones are not seen).
fn visible_ends(topic: &str, records: &[Raw]) -> Ends {
    let mut ends = Ends::new();
    for record in records.iter().filter(|r| r.expect != Expect::Aborted) {
        let end = ends
            .entry((topic.to_owned(), record.partition))
            .or_default();
        *end = (*end).max(record.offset + 1);
    }
    ends
}

/// Every record accounted for: rows equal the reference, the dead-letter topic holds each invalid
/// record exactly once with its reason and bytes, and the metrics agree.
async fn verify(
    topic: &str,
    db: &TestDatabase,
    records: &[Raw],
    width_ms: i64,
    aggregator: &Running,
) -> Vec<OwnedMessage> {
    let visible = records
        .iter()
        .filter(|r| r.expect != Expect::Aborted)
        .count() as u64;
    tickpipe_testkit::eventually("every record consumed", Duration::from_secs(90), || async {
        let consumed = aggregator.metrics.consumed.get();
        (consumed >= visible).then_some(())
    })
    .await;
    // Done once every partition's stored progress is past its last record: nothing is left to
    // write, so a record lost or counted twice shows in the rows.
    wait_until_accounted(
        &db.pool,
        &visible_ends(topic, records),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        stored_rows(&db.pool).await,
        expected_rows(records, width_ms),
        "rows equal the independent reference"
    );
    assert_eq!(
        aggregator.metrics.consumed.get(),
        visible,
        "no record read twice"
    );

    let late = records.iter().filter(|r| r.expect == Expect::Late).count() as u64;
    assert_eq!(aggregator.metrics.late.get(), late, "late records");

    let invalid: Vec<&Raw> = records
        .iter()
        .filter(|r| matches!(r.expect, Expect::Invalid(_)))
        .collect();
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for record in &invalid {
        if let Expect::Invalid(reason) = record.expect {
            *by_reason.entry(reason).or_default() += 1;
        }
    }
    for (reason, count) in &by_reason {
        let counted = aggregator
            .metrics
            .invalid
            .get_or_create(&ReasonLabel { reason })
            .get();
        assert_eq!(counted, *count, "invalid records counted as {reason}");
    }

    // Read everything the dead-letter topic holds (more than expected would show a duplicate).
    let letters = consume_all(
        &format!("{topic}.dlq"),
        invalid.len() + 1,
        Duration::from_secs(8),
    );
    assert_eq!(
        letters.len(),
        invalid.len(),
        "one letter per invalid record"
    );
    for record in invalid {
        let Expect::Invalid(reason) = record.expect else {
            unreachable!("filtered above")
        };
        let matching: Vec<&OwnedMessage> = letters
            .iter()
            .filter(|l| {
                header(l, headers::SOURCE_PARTITION) == Some(record.partition.to_string())
                    && header(l, headers::SOURCE_OFFSET) == Some(record.offset.to_string())
            })
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "offset {} in the dead-letter topic once",
            record.offset
        );
        let letter = matching[0];
        assert_eq!(header(letter, headers::REASON).as_deref(), Some(reason));
        assert_eq!(
            header(letter, headers::SOURCE_TOPIC).as_deref(),
            Some(topic)
        );
        assert_letter_carries(letter, record);
    }
    assert_eq!(aggregator.metrics.dead_letters.failed.get(), 0);
    letters
}

/// Runs an aggregator with default settings over `records` (already produced), verifies them as
/// [`verify`] does, stops it, and returns its metrics and the dead letters.
async fn run_and_verify(
    topic: &str,
    db: &TestDatabase,
    records: &[Raw],
) -> (AggregatorMetrics, Vec<OwnedMessage>) {
    let aggregator = start(settings(topic, db, &[]));
    let letters = verify(topic, db, records, 30_000, &aggregator).await;
    let metrics = aggregator.metrics.clone();
    aggregator.stop().await;
    (metrics, letters)
}

/// The letter holds the original key and value, or prefixes of them with the original sizes in
/// headers when the whole would not fit.
fn assert_letter_carries(letter: &OwnedMessage, record: &Raw) {
    let truncated = header(letter, headers::TRUNCATED).as_deref() == Some("true");
    let whole = record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len);
    assert_eq!(
        truncated,
        whole > LETTER_BUDGET_BYTES,
        "cut only what does not fit"
    );
    for (sent, kept, size_header) in [
        (&record.key, letter.key(), headers::ORIGINAL_KEY_BYTES),
        (
            &record.value,
            letter.payload(),
            headers::ORIGINAL_VALUE_BYTES,
        ),
    ] {
        match sent {
            None => assert!(kept.is_none_or(<[u8]>::is_empty)),
            Some(original) if truncated => {
                let kept = kept.unwrap_or_default();
                assert!(original.starts_with(kept), "a prefix of the original");
                assert_eq!(
                    header(letter, size_header),
                    Some(original.len().to_string())
                );
            }
            Some(original) => assert_eq!(kept.unwrap_or_default(), original.as_slice()),
        }
    }
    if truncated {
        let carried = letter.key().map_or(0, <[u8]>::len) + letter.payload().map_or(0, <[u8]>::len);
        assert!(carried <= LETTER_BUDGET_BYTES);
    }
}

/// A valid message padded with spaces (JSON allows trailing whitespace) to exactly `len` bytes.
fn padded_valid(len: usize) -> Vec<u8> {
    let mut bytes = value(&[("AMZN", 1902)]);
    assert!(bytes.len() <= len);
    bytes.resize(len, b' ');
    bytes
}

const MAX_VALUE: usize = tickpipe_common::message::MAX_MESSAGE_BYTES;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_at_and_around_every_limit() {
    let _shared = SERVICES.read().await;
    let topic = create_topic_with("sizes", 2, &[]).await;
    let db = TestDatabase::create().await;
    let mut records = vec![
        Raw::valid(0, T0 + 1_000, &[("MSFT", 107)]),
        Raw::new(0, T0 + 1_001, padded_valid(MAX_VALUE), Expect::Counted),
        Raw::invalid(0, T0 + 1_002, padded_valid(MAX_VALUE + 1), "oversized"),
        Raw::invalid(0, T0 + 1_003, vec![b'x'; 1_000_000], "oversized"),
        Raw::invalid(0, T0 + 1_004, vec![b'x'; LETTER_BUDGET_BYTES], "oversized"),
        Raw::invalid(0, T0 + 1_005, vec![b'x'; LETTER_BUDGET_BYTES + 1], "oversized"),
        Raw::invalid(1, T0 + 1_006, b"nope".to_vec(), "invalid_json").key(vec![b'k'; 1_000_000]),
        Raw::valid(1, T0 + 1_007, &[("AAPL", 215)]).key(vec![b'k'; 1_000_000]),
        Raw::invalid(1, T0 + 1_008, Vec::new(), "invalid_json"),
        Raw::invalid(1, T0 + 1_009, b"{}".to_vec(), "wrong_shape"),
        Raw::valid(1, T0 + 1_010, &[("AMZN", 1), ("MSFT", 2), ("AAPL", 3)]),
        Raw::invalid(
            1,
            T0 + 1_011,
            br#"{"tickers":[{"name":"A","price":1},{"name":"B","price":1},{"name":"C","price":1},{"name":"D","price":1}]}"#.to_vec(),
            "too_many_tickers",
        ),
        Raw::valid(1, T0 + 1_012, &[("AMZN", tickpipe_common::message::MAX_PRICE)]),
        Raw::invalid(
            1,
            T0 + 1_013,
            format!(r#"{{"tickers":[{{"name":"AMZN","price":{}}}]}}"#, tickpipe_common::message::MAX_PRICE + 1),
            "absurd_price",
        ),
    ];
    produce_raw(&topic, &mut records, &[]).await;
    let (metrics, _) = run_and_verify(&topic, &db, &records).await;
    assert!(metrics.dead_letters.truncated.get() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_is_read() {
    let _shared = SERVICES.read().await;
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let topic = create_topic_with("codecs", codecs.len() as i32, &[]).await;
    let db = TestDatabase::create().await;
    let mut all = Vec::new();
    for (partition, codec) in codecs.iter().enumerate() {
        let partition = partition as i32;
        let mut records: Vec<Raw> = (0..200)
            .map(|i| {
                Raw::valid(
                    partition,
                    T0 + i * 97,
                    &[("AMZN", 1900 + i), ("MSFT", 100 + partition as i64)],
                )
            })
            .collect();
        records.push(Raw::invalid(
            partition,
            T0 + 50,
            b"{\"tickers\":".to_vec(),
            "invalid_json",
        ));
        produce_raw(&topic, &mut records, &[("compression.type", codec)]).await;
        all.extend(records);
    }
    run_and_verify(&topic, &db, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_the_broker_compresses_with_zstd_is_read() {
    let _shared = SERVICES.read().await;
    let topic = create_topic_with("zstd_topic", 2, &[("compression.type", "zstd")]).await;
    let db = TestDatabase::create().await;
    let mut records: Vec<Raw> = (0..300)
        .map(|i| Raw::valid((i % 2) as i32, T0 + i * 50, &[("AAPL", 200 + i)]))
        .collect();
    records.push(Raw::invalid(1, T0 + 20, vec![0xff, 0xfe], "not_utf8"));
    produce_raw(&topic, &mut records, &[("compression.type", "gzip")]).await;
    run_and_verify(&topic, &db, &records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_count_only_what_was_committed() {
    let _shared = SERVICES.read().await;
    let topic = create_topic_with("txn", 2, &[]).await;
    let db = TestDatabase::create().await;
    let producer: FutureProducer = producer_config(&[("transactional.id", &unique_name("txn"))])
        .create()
        .expect("transactional producer");
    let timeout = Duration::from_secs(30);
    producer
        .init_transactions(timeout)
        .expect("init transactions");
    let mut records = Vec::new();
    for (batch, commit) in [(0_i64, true), (1, false), (2, true), (3, false)] {
        producer.begin_transaction().expect("begin");
        let expect = |e: Expect| if commit { e } else { Expect::Aborted };
        let mut batch_records = vec![
            Raw::new(
                0,
                T0 + batch * 1_000,
                value(&[("AMZN", 10 + batch)]),
                expect(Expect::Counted),
            ),
            Raw::new(
                1,
                T0 + batch * 1_000 + 1,
                value(&[("MSFT", 20 + batch)]),
                expect(Expect::Counted),
            ),
            Raw::new(
                1,
                T0 + batch * 1_000 + 2,
                b"[]".to_vec(),
                expect(Expect::Invalid("wrong_shape")),
            ),
        ];
        for record in &mut batch_records {
            deliver(&producer, &topic, record).await;
        }
        if commit {
            producer.commit_transaction(timeout).expect("commit");
        } else {
            producer.abort_transaction(timeout).expect("abort");
        }
        records.extend(batch_records);
    }
    // Non-transactional records after the markers.
    let mut plain = vec![Raw::valid(0, T0 + 9_000, &[("AAPL", 215)])];
    produce_raw(&topic, &mut plain, &[]).await;
    records.extend(plain);
    run_and_verify(&topic, &db, &records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_keys_and_headers_are_never_trusted() {
    let _shared = SERVICES.read().await;
    let topic = create_topic_with("tombstones", 1, &[]).await;
    let db = TestDatabase::create().await;
    let not_utf8: &[u8] = &[0xc3, 0x28, 0xff];
    let mut records = vec![
        Raw::invalid(0, T0 + 1, Vec::new(), "wrong_shape")
            .key(b"AMZN".to_vec())
            .without_value(),
        Raw::invalid(0, T0 + 2, Vec::new(), "wrong_shape").without_value(),
        Raw::valid(0, T0 + 3, &[("AMZN", 1)]).key(not_utf8.to_vec()),
        Raw::valid(0, T0 + 4, &[("AMZN", 2)])
            .header("trace", Some(not_utf8))
            .header("empty", None)
            .header("", Some(b"")),
        Raw::invalid(0, T0 + 5, not_utf8.to_vec(), "not_utf8").key(not_utf8.to_vec()),
        Raw::invalid(
            0,
            T0 + 6,
            b"{\"tickers\":[{\"name\":\"AM\\u0000ZN\",\"price\":1}]}".to_vec(),
            "invalid_name",
        )
        .header("dlq.reason", Some(b"forged")),
        Raw::valid(0, T0 + 7, &[("MSFT", 3)]).header("dlq.source.offset", Some(b"-5")),
    ];
    let mut many_headers = Raw::valid(0, T0 + 8, &[("AAPL", 4)]);
    for _ in 0..200 {
        many_headers = many_headers.header("h", Some(not_utf8));
    }
    records.push(many_headers);
    produce_raw(&topic, &mut records, &[]).await;
    let (_, letters) = run_and_verify(&topic, &db, &records).await;
    // A forged reason header on the input is not what the letter says.
    assert!(letters
        .iter()
        .all(|l| header(l, headers::REASON).as_deref() != Some("forged")));
}

/// Waits until an aggregator has claimed `partitions` partitions `times` times in all.
async fn wait_for_claims(db: &TestDatabase, partitions: i64, times: i64) {
    tickpipe_testkit::eventually("partitions claimed", Duration::from_secs(60), || async {
        let (rows, epochs): (i64, Option<i64>) =
            sqlx::query_as("SELECT count(*), sum(owner_epoch)::bigint FROM aggregator_progress")
                .fetch_one(&db.pool)
                .await
                .ok()?;
        (rows == partitions && epochs.unwrap_or(0) >= partitions * times).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_skewed_both_ways_the_epoch_and_the_distant_past() {
    let _shared = SERVICES.read().await;
    let topic = create_topic_with("clocks", 2, &[]).await;
    let db = TestDatabase::create().await;
    // Partition 1, written before the aggregator starts (a caught-up partition follows the wall
    // clock, so there these would all be late): the epoch (librdkafka reads 0 as "now", so 1 ms
    // after it) and the distant past, in order.
    let mut past = vec![
        Raw::valid(1, 1, &[("AMZN", 3)]),
        Raw::valid(1, 315_532_800_000, &[("AMZN", 4)]), // 1980-01-01
        Raw::valid(1, T0, &[("AAPL", 5)]),
        // Behind the watermark of its partition by decades: late, not applied.
        Raw::new(1, 2, value(&[("AMZN", 6)]), Expect::Late),
        Raw::valid(1, now_ms() - 1_000, &[("AAPL", 7)]),
    ];
    produce_raw(&topic, &mut past, &[]).await;
    // Partition 0 live, not a backlog: the aggregator keeps up with the producers.
    let aggregator = start(settings(
        &topic,
        &db,
        &[
            ("AGGREGATOR_WINDOW_SECS", "5"),
            ("AGGREGATOR_GRACE_MS", "3000"),
        ],
    ));
    wait_for_claims(&db, 2, 1).await;
    let now = now_ms();
    let mut records = vec![Raw::valid(0, now - 1_000, &[("AMZN", 1)])];
    // A producer whose clock runs 20 s ahead (within the 60 s allowed)...
    records.push(Raw::valid(0, now + 20_000, &[("AMZN", 2)]));
    // ...cannot make other producers' on-time records late.
    for i in 0..20 {
        records.push(Raw::valid(0, now - 1_500 + i * 50, &[("MSFT", 100 + i)]));
    }
    // Beyond the future limit: dead-lettered, whatever the aggregator's clock reads later.
    records.push(Raw::invalid(
        0,
        now + 90_000,
        value(&[("AAPL", 1)]),
        "future_timestamp",
    ));
    records.push(Raw::invalid(
        0,
        now + 1_800_000,
        value(&[("AAPL", 2)]),
        "future_timestamp",
    ));
    produce_raw(&topic, &mut records, &[]).await;
    records.extend(past);
    verify(&topic, &db, &records, 5_000, &aggregator).await;
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_across_many_partitions() {
    let _shared = SERVICES.read().await;
    let partitions = 16;
    let topic = create_topic_with("burst", partitions, &[]).await;
    let db = TestDatabase::create().await;
    let mut records: Vec<Raw> = generated_records(8_000, partitions, 20, 7)
        .into_iter()
        .map(|r| Raw::new(r.partition, r.timestamp_ms, r.value, Expect::Counted))
        .collect();
    for i in (0..records.len()).step_by(97) {
        let (partition, ts) = (records[i].partition, records[i].timestamp_ms);
        records.insert(
            i,
            Raw::invalid(
                partition,
                ts,
                b"{\"tickers\":[{\"name\":\"amzn\",\"price\":1}]}".to_vec(),
                "invalid_name",
            ),
        );
    }
    // One producer per record order keeps each partition's order as listed.
    produce_raw(&topic, &mut records, &[("compression.type", "lz4")]).await;
    run_and_verify(&topic, &db, &records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_with_a_small_record_limit_gets_letters_cut_to_fit() {
    let _shared = SERVICES.read().await;
    let topic = create_topic_with("dlq_small", 1, &[]).await;
    create_named_topic(&format!("{topic}.dlq"), 1, &[("max.message.bytes", "4096")]).await;
    let db = TestDatabase::create().await;
    let original = vec![b'z'; 12_000];
    let mut records = vec![
        Raw::valid(0, T0 + 1, &[("AMZN", 1)]),
        Raw::invalid(0, T0 + 2, original.clone(), "oversized"),
        Raw::valid(0, T0 + 3, &[("AMZN", 2)]),
    ];
    produce_raw(&topic, &mut records, &[]).await;
    let aggregator = start(settings(&topic, &db, &[]));
    let rows = wait_for_samples(&db.pool, 2, Duration::from_secs(60)).await;
    assert_eq!(rows, expected_rows(&records, 30_000));
    let letters = consume_all(&format!("{topic}.dlq"), 2, Duration::from_secs(20));
    assert_eq!(
        letters.len(),
        1,
        "delivered once, cut to what the topic accepts"
    );
    let letter = &letters[0];
    assert_eq!(header(letter, headers::TRUNCATED).as_deref(), Some("true"));
    assert_eq!(
        header(letter, headers::ORIGINAL_VALUE_BYTES),
        Some("12000".into())
    );
    let kept = letter.payload().unwrap_or_default();
    assert!(!kept.is_empty() && kept.len() < 4096 && original.starts_with(kept));
    assert_eq!(aggregator.metrics.dead_letters.failed.get(), 0);
    assert_eq!(aggregator.metrics.dead_letters.truncated.get(), 1);
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_that_refuses_every_letter_does_not_stop_consumption() {
    let _shared = SERVICES.read().await;
    let topic = create_topic_with("dlq_refuses", 2, &[]).await;
    // Smaller than the dead-letter headers alone: no letter can ever be delivered.
    create_named_topic(&format!("{topic}.dlq"), 1, &[("max.message.bytes", "64")]).await;
    let db = TestDatabase::create().await;
    let mut records = Vec::new();
    for i in 0..40 {
        records.push(Raw::valid(
            i % 2,
            T0 + i64::from(i) * 500,
            &[("MSFT", 100 + i64::from(i))],
        ));
        records.push(Raw::invalid(
            i % 2,
            T0 + i64::from(i) * 500,
            vec![b'!'; 100],
            "invalid_json",
        ));
    }
    produce_raw(&topic, &mut records, &[]).await;
    let aggregator = start(settings(&topic, &db, &[]));
    let expected = expected_rows(&records, 30_000);
    let rows = wait_for_samples(&db.pool, 40, Duration::from_secs(120)).await;
    assert_eq!(rows, expected);
    tickpipe_testkit::eventually("every letter given up", Duration::from_secs(60), || async {
        (aggregator.metrics.dead_letters.failed.get() == 40).then_some(())
    })
    .await;
    aggregator.stop().await;
}

/// The aggregator binary as a child process, its JSON log lines collected as they come.
struct Child {
    process: tokio::process::Child,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Child {
    /// Starts it on `topic` and `db`, logging at warn, with `extra` variables.
    fn spawn(topic: &str, db: &TestDatabase, extra: &[(&str, &str)]) -> Self {
        let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
            .env_clear()
            .envs(env_vars(topic, db))
            .envs(keep_everything(extra))
            .env("RUST_LOG", "warn")
            .env("LOG_FORMAT", "json")
            .envs(extra.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn aggregator");
        let stdout = process.stdout.take().expect("stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(entry) = serde_json::from_str(&line) {
                        log.lock().expect("log").push(entry);
                    }
                }
            }
        });
        Self { process, log }
    }

    /// Log entries whose message contains `text`.
    fn logged(&self, text: &str) -> Vec<serde_json::Value> {
        let log = self.log.lock().expect("log");
        log.iter()
            .filter(|entry| entry["message"].as_str().is_some_and(|m| m.contains(text)))
            .cloned()
            .collect()
    }

    /// Waits until the log holds an entry whose message contains `text`.
    async fn until_logged(&self, text: &str) {
        tickpipe_testkit::eventually(
            &format!("the log line {text:?}"),
            Duration::from_secs(60),
            || async { (!self.logged(text).is_empty()).then_some(()) },
        )
        .await
    }

    /// Sends SIGTERM and returns how long it took to exit, asserting a clean exit within 20 s.
    async fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        let pid = self.process.id().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.process.wait())
            .await
            .expect("the aggregator ignored SIGTERM")
            .expect("wait");
        assert!(exit.success(), "clean exit after SIGTERM: {exit}");
        started.elapsed()
    }
}

/// Progress stored for the dead letters: the highest `dlq_next_offset` of any partition.
async fn dead_letters_stored(db: &TestDatabase) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>("SELECT max(dlq_next_offset) FROM aggregator_progress")
        .fetch_one(&db.pool)
        .await
        .expect("progress")
        .unwrap_or(0)
}

/// The client id of the aggregator's dead-letter producer.
const DLQ_CLIENT_ID: &str = "tickpipe-aggregator-dlq";

/// A broker quota of 1 KiB/s on a client id's produce requests, removed when dropped.
struct ProduceQuota(&'static str);

impl ProduceQuota {
    fn set(client_id: &'static str) -> Self {
        config_command(client_id, &["--add-config", "producer_byte_rate=1024"]);
        Self(client_id)
    }
}

impl Drop for ProduceQuota {
    fn drop(&mut self) {
        config_command(self.0, &["--delete-config", "producer_byte_rate"]);
    }
}

/// Alters the broker's configuration of `client_id` with Kafka's own ConfigCommand.
fn config_command(client_id: &str, change: &[&str]) {
    let libs = std::env::var("TICKPIPE_KAFKA_LIBS")
        .expect("TICKPIPE_KAFKA_LIBS (from `scripts/services.sh env`)");
    let status = Command::new("java")
        .args([
            "-Xmx256m",
            "-cp",
            &format!("{libs}/*"),
            "kafka.admin.ConfigCommand",
        ])
        .args(["--bootstrap-server", &brokers(), "--alter"])
        .args(change)
        .args(["--entity-type", "clients", "--entity-name", client_id])
        .stdout(Stdio::null())
        .status()
        .expect("run ConfigCommand");
    assert!(status.success(), "ConfigCommand {change:?}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_it_while_dead_letters_wait_on_a_broker_that_throttles_them() {
    // The quota holds back every aggregator's dead letters: alone.
    let _exclusive = SERVICES.write().await;
    let topic = create_topic_with("sigterm_dlq", 2, &[]).await;
    let dlq = format!("{topic}.dlq");
    let db = TestDatabase::create().await;
    // 3 MB of letters at 1 KiB/s: librdkafka's 30 s delivery timeout passes first, and the
    // aggregator sends them again, for minutes. (A topic that refuses letters as too large has
    // them given up in milliseconds: a SIGTERM a few seconds later came after, not during.)
    let mut records: Vec<Raw> = (0..30)
        .map(|i| Raw::invalid(i % 2, T0 + i64::from(i), vec![b'x'; 100_000], "oversized"))
        .collect();
    produce_raw(&topic, &mut records, &[]).await;
    let _quota = ProduceQuota::set(DLQ_CLIENT_ID);
    let log = ("RUST_LOG", "warn,tickpipe_aggregator::dead_letters=debug");
    let mut child = Child::spawn(&topic, &db, &[log]);
    // Caught up, it stores the partitions' progress, which first waits for their letters.
    child.until_logged("settling dead letters").await;
    let took = child.terminate().await;
    eprintln!("SIGTERM while dead letters wait: exited in {took:?}");
    // Still waiting when SIGTERM came: none given up, not all delivered, no progress stored
    // for them.
    assert!(child.logged("dead letter given up").is_empty());
    assert_eq!(dead_letters_stored(&db).await, 0);
    assert!(consume_all(&dlq, records.len(), Duration::from_secs(3)).len() < records.len());
    assert!(
        took < Duration::from_secs(15),
        "exit waited for a delivery timeout: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_it_while_the_database_is_gone() {
    let _shared = SERVICES.read().await;
    let topic = create_topic_with("sigterm_db", 2, &[]).await;
    let db = TestDatabase::create().await;
    // Windows of 2 s, written 1 s after they end by the wall clock, so that one written after
    // the database is gone is due within seconds.
    let timing = [
        ("AGGREGATOR_WINDOW_SECS", "2"),
        ("AGGREGATOR_GRACE_MS", "500"),
        ("AGGREGATOR_IDLE_LAG_MS", "1000"),
    ];
    let mut child = Child::spawn(&topic, &db, &timing);
    let mut first = vec![Raw::valid(0, now_ms(), &[("AMZN", 1)])];
    produce_raw(&topic, &mut first, &[]).await;
    // Consuming and writing: its window is in the table.
    wait_for_samples(&db.pool, 1, Duration::from_secs(60)).await;
    db.pool.close().await;
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&tickpipe_testkit::admin_database_url())
            .await
            .expect("admin connection");
    sqlx::query(&format!("DROP DATABASE \"{}\" WITH (FORCE)", db.name))
        .execute(&mut admin)
        .await
        .expect("drop the database under the aggregator");
    let mut next = vec![Raw::valid(0, now_ms(), &[("AMZN", 2)])];
    produce_raw(&topic, &mut next, &[]).await;
    // A window waits to be written and the writes fail: it is in its retry loop.
    child.until_logged("writing windows").await;
    let took = child.terminate().await;
    eprintln!("SIGTERM while the database is gone: exited in {took:?}");
}
