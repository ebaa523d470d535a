//! The aggregator against a real Kafka broker and PostgreSQL: windows, lateness, bad input.

use std::time::Duration;

use crate::helpers::*;
use tickpipe_aggregator::dead_letters::headers;
use tickpipe_testkit::{consume_all, create_topic, header, produce, TestDatabase, TestRecord};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_the_exact_rows_for_explicit_timestamps() {
    let _shared = SERVICES.read().await;
    let topic = create_topic("windows", 1).await;
    let db = TestDatabase::create().await;
    let records = vec![
        TestRecord::new(0, T0 + 1_000, value(&[("AMZN", 1900), ("MSFT", 100)])),
        TestRecord::new(0, T0 + 29_000, value(&[("AMZN", 2000)])),
        TestRecord::new(0, T0 + 31_000, value(&[("AMZN", 1950), ("AAPL", 210)])),
        // Out of order within grace (watermark T0+29s): applied to the first window.
        TestRecord::new(0, T0 + 5_000, value(&[("AMZN", 1800)])),
        // Closes [T0, T0+30s): watermark T0+40s.
        TestRecord::new(0, T0 + 42_000, value(&[("MSFT", 110)])),
        // Late beyond grace: its window is written already.
        TestRecord::new(0, T0 + 10_000, value(&[("AMZN", 1)])),
        // Nothing between T0+60s and T0+150s: those windows stay empty.
        TestRecord::new(0, T0 + 155_000, value(&[("AAPL", 220)])),
    ];
    produce(&topic, &records).await;
    let aggregator = start(settings(&topic, &db, &[]));

    let rows = wait_for_samples(&db.pool, 8, Duration::from_secs(60)).await;
    let expected: Windows = [
        (
            ("AMZN".to_string(), T0),
            // Open: the earliest timestamp (T0+1s); close: the latest (T0+29s), not the last read.
            (1900 + 2000 + 1800, 3, 1800, 2000, 1900, 2000),
        ),
        (("MSFT".to_string(), T0), (100, 1, 100, 100, 100, 100)),
        (
            ("AMZN".to_string(), T0 + 30_000),
            (1950, 1, 1950, 1950, 1950, 1950),
        ),
        (
            ("AAPL".to_string(), T0 + 30_000),
            (210, 1, 210, 210, 210, 210),
        ),
        (
            ("MSFT".to_string(), T0 + 30_000),
            (110, 1, 110, 110, 110, 110),
        ),
        // The last window is closed by the wall clock once the partition is caught up.
        (
            ("AAPL".to_string(), T0 + 150_000),
            (220, 1, 220, 220, 220, 220),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(rows, expected);
    assert_eq!(aggregator.metrics.late.get(), 1);
    assert_eq!(aggregator.metrics.consumed.get(), 7);

    let latest: Vec<(String, i64)> = sqlx::query_as(
        "SELECT ticker, (extract(epoch FROM window_start) * 1000)::bigint FROM latest_windows ORDER BY ticker",
    )
    .fetch_all(&db.pool)
    .await
    .expect("latest");
    assert_eq!(
        latest,
        vec![
            ("AAPL".into(), T0 + 150_000),
            ("AMZN".into(), T0 + 30_000),
            ("MSFT".into(), T0 + 30_000)
        ]
    );
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_closes_its_last_window_by_the_wall_clock() {
    let _shared = SERVICES.read().await;
    let topic = create_topic("idle", 1).await;
    let db = TestDatabase::create().await;
    let aggregator = start(settings(
        &topic,
        &db,
        &[
            ("AGGREGATOR_WINDOW_SECS", "2"),
            ("AGGREGATOR_GRACE_MS", "500"),
            ("AGGREGATOR_IDLE_LAG_MS", "1000"),
        ],
    ));
    // Recent timestamps: only the wall clock can close this window, since nothing follows it.
    let now = tickpipe_common::clock::now_ms();
    produce(&topic, &[TestRecord::new(0, now, value(&[("MSFT", 107)]))]).await;
    let rows = wait_for_samples(&db.pool, 1, Duration::from_secs(30)).await;
    let start = now.div_euclid(2_000) * 2_000;
    assert_eq!(
        rows.get(&("MSFT".to_string(), start)),
        Some(&(107, 1, 107, 107, 107, 107))
    );
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_goes_to_the_dead_letter_topic_and_valid_neighbours_are_applied() {
    let _shared = SERVICES.read().await;
    let topic = create_topic("bad", 1).await;
    let dlq = format!("{topic}.dlq");
    let db = TestDatabase::create().await;
    let future = tickpipe_common::clock::now_ms() + 1_800_000;
    let bad: Vec<(&str, Vec<u8>, i64)> = vec![
        ("invalid_json", b"{not json".to_vec(), T0 + 1_000),
        (
            "wrong_shape",
            br#"{"tickers":[{"name":"AMZN","price":"1"}]}"#.to_vec(),
            T0 + 1_000,
        ),
        (
            "wrong_shape",
            br#"{"tickers":[{"price":1}]}"#.to_vec(),
            T0 + 1_000,
        ),
        ("empty_tickers", br#"{"tickers":[]}"#.to_vec(), T0 + 1_000),
        (
            "invalid_name",
            br#"{"tickers":[{"name":"","price":1}]}"#.to_vec(),
            T0 + 1_000,
        ),
        (
            "non_positive_price",
            br#"{"tickers":[{"name":"AMZN","price":0}]}"#.to_vec(),
            T0 + 1_000,
        ),
        (
            "absurd_price",
            br#"{"tickers":[{"name":"AMZN","price":99999999999}]}"#.to_vec(),
            T0 + 1_000,
        ),
        (
            "duplicate_name",
            br#"{"tickers":[{"name":"AMZN","price":1},{"name":"AMZN","price":2}]}"#.to_vec(),
            T0 + 1_000,
        ),
        ("oversized", vec![b' '; 20_000], T0 + 1_000),
        ("not_utf8", vec![0xff, 0xfe, 0xfd], T0 + 1_000),
        ("future_timestamp", value(&[("AMZN", 10)]), future),
    ];
    let mut records = Vec::new();
    for (i, (_, bytes, ts)) in bad.iter().enumerate() {
        records.push(TestRecord::new(
            0,
            T0 + i as i64,
            value(&[("AAPL", 200 + i as i64)]),
        ));
        records.push(TestRecord::new(0, *ts, bytes.clone()));
    }
    produce(&topic, &records).await;
    let aggregator = start(settings(&topic, &db, &[]));

    let rows = wait_for_samples(&db.pool, bad.len() as i64, Duration::from_secs(60)).await;
    let n = bad.len() as i64;
    let sum: i64 = (0..n).map(|i| 200 + i).sum();
    assert_eq!(
        rows.get(&("AAPL".to_string(), T0)),
        Some(&(sum, n, 200, 200 + n - 1, 200, 200 + n - 1))
    );
    assert_eq!(rows.len(), 1, "no bad record contributed: {rows:?}");

    let letters = consume_all(&dlq, bad.len(), Duration::from_secs(30));
    assert_eq!(letters.len(), bad.len());
    for (letter, (reason, bytes, _)) in letters.iter().zip(&bad) {
        use rdkafka::Message;
        assert_eq!(header(letter, headers::REASON).as_deref(), Some(*reason));
        assert_eq!(
            letter.payload(),
            Some(bytes.as_slice()),
            "original bytes kept"
        );
        assert_eq!(header(letter, headers::SOURCE_TOPIC), Some(topic.clone()));
        assert_eq!(
            header(letter, headers::SOURCE_PARTITION).as_deref(),
            Some("0")
        );
        let offset: i64 = header(letter, headers::SOURCE_OFFSET)
            .expect("offset")
            .parse()
            .expect("number");
        assert_eq!(offset % 2, 1, "bad records sit at odd offsets");
        let counted = aggregator
            .metrics
            .invalid
            .get_or_create(&tickpipe_aggregator::metrics::ReasonLabel { reason })
            .get();
        assert!(counted >= 1, "{reason} counted");
    }
    aggregator.stop().await;
}
