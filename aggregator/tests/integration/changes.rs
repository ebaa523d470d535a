//! The change log on the real services: two instances committing concurrently on 3 partitions, a
//! reader that resumes "after the last id it saw" misses nothing, entries replay to the table, the
//! boundary only grows, and each commit is signalled.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use sqlx::postgres::PgListener;
use sqlx::FromRow;
use tickpipe_testkit::referee::samples;
use tickpipe_testkit::{create_topic, produce, TestDatabase};

use crate::helpers::*;

#[derive(Debug, Clone, FromRow)]
struct Entry {
    id: i64,
    ticker: Option<String>,
    start_ms: Option<i64>,
    price_sum: Option<i64>,
    sample_count: Option<i64>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    open_price: Option<i64>,
    close_price: Option<i64>,
    complete_before: Option<DateTime<Utc>>,
}

const SELECT_AFTER: &str =
    "SELECT id, ticker, (extract(epoch FROM window_start) * 1000)::bigint AS start_ms,
        price_sum, sample_count, min_price, max_price, open_price, close_price, complete_before
 FROM window_changes WHERE id > $1 ORDER BY id";

/// Reads the log entries after the last one in `seen` into it.
async fn read_after_last(pool: &sqlx::PgPool, seen: &mut Vec<Entry>) {
    let batch: Vec<Entry> = sqlx::query_as(SELECT_AFTER)
        .bind(seen.last().map_or(0, |e| e.id))
        .fetch_all(pool)
        .await
        .expect("read the log");
    seen.extend(batch);
}

/// Waits until the consumer group `group` is stable with `members` members, each assigned
/// partitions.
async fn wait_for_members(group: &str, members: usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", tickpipe_testkit::brokers())
        .set("broker.address.family", "v4")
        .create()
        .expect("Kafka client");
    tickpipe_testkit::eventually(
        "every member of the group assigned partitions",
        Duration::from_secs(60),
        || {
            let assigned = consumer
                .fetch_group_list(Some(group), Duration::from_secs(5))
                .ok()
                .and_then(|list| {
                    let info = list.groups().first()?;
                    let counts: Vec<usize> = info
                        .members()
                        .iter()
                        .map(|m| m.assignment().map_or(0, assigned_partitions))
                        .collect();
                    Some(
                        info.state() == "Stable" && counts.len() == members && !counts.contains(&0),
                    )
                });
            async move { (assigned == Some(true)).then_some(()) }
        },
    )
    .await;
}

/// Partitions in a consumer-protocol assignment: version (i16), then topics (i32 count), each a
/// name (i16 length, bytes) and its partitions (i32 count, i32 each).
fn assigned_partitions(bytes: &[u8]) -> usize {
    let i16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
    };
    let i32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut at = 2;
    let Some(topics) = i32_at(at) else { return 0 };
    at += 4;
    let mut partitions = 0;
    for _ in 0..topics.max(0) {
        let Some(name) = i16_at(at) else {
            return partitions;
        };
        at += 2 + name.max(0) as usize;
        let Some(count) = i32_at(at) else {
            return partitions;
        };
        at += 4 + 4 * count.max(0) as usize;
        partitions += count.max(0) as usize;
    }
    partitions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_become_visible_in_id_order_and_replay_to_the_table() {
    let _shared = SERVICES.read().await;
    let topic = create_topic("changes", 3).await;
    let db = TestDatabase::create().await;
    let mut listener = PgListener::connect(&db.url).await.expect("listener");
    listener
        .listen(tickpipe_store::changes::CHANNEL)
        .await
        .expect("LISTEN to the change log's channel");
    let notified = tokio::spawn(async move {
        let mut ids = Vec::new();
        while let Ok(Ok(notification)) =
            tokio::time::timeout(Duration::from_secs(20), listener.recv()).await
        {
            ids.push(
                notification
                    .payload()
                    .parse::<i64>()
                    .expect("payload is an id"),
            );
        }
        ids
    });

    // Two instances of one group share the partitions, each with some before the first record
    // arrives, so that they commit concurrently. Having caught up with an empty topic, they
    // follow the wall clock, so the records are recent: 12 s of them from now, in 2 s windows.
    let timing = [
        ("AGGREGATOR_WINDOW_SECS", "2"),
        ("AGGREGATOR_IDLE_LAG_MS", "2000"),
    ];
    let first = start(settings(&topic, &db, &timing));
    let second = start(settings(&topic, &db, &timing));
    wait_for_members(&format!("{topic}-group"), 2).await;
    let now = tickpipe_common::clock::now_ms();
    let records = generated_records_from(now, 6_000, 3, 2, 5);
    let offsets = produce(&topic, &records).await;
    let expected = reference(&records, &offsets, 2_000);

    // A reader that only ever asks for ids after the last one it saw, as a resuming client does.
    let mut seen: Vec<Entry> = Vec::new();
    let total = samples(&expected);
    let last_start = expected.keys().map(|k| k.1).max().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        read_after_last(&db.pool, &mut seen).await;
        let done = stored_samples(&db.pool).await >= total
            && seen
                .last()
                .and_then(|e| e.complete_before)
                .is_some_and(|b| b.timestamp_millis() > last_start);
        if done || Instant::now() > deadline {
            break;
        }
        // The reader's pace, not a wait for a state: it polls as a client would.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let written = [&first, &second].map(|a| a.metrics.windows_written.get());
    first.stop().await;
    second.stop().await;
    // Both stopped: nothing commits any more, so this read finds the rest of the log.
    read_after_last(&db.pool, &mut seen).await;
    assert!(
        written.iter().all(|&w| w > 0),
        "both instances committed windows: {written:?}"
    );

    // Nothing became visible behind the reader's back: it saw every id the log holds.
    let all: Vec<i64> = sqlx::query_scalar("SELECT id FROM window_changes ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .expect("all ids");
    let seen_ids: Vec<i64> = seen.iter().map(|e| e.id).collect();
    assert_eq!(
        seen_ids, all,
        "a reader resuming after its last id missed none"
    );

    // Replaying the price entries in id order gives the table, row for row.
    let mut replayed = Windows::new();
    let mut boundary: Option<DateTime<Utc>> = None;
    let mut watermarks: Vec<Option<DateTime<Utc>>> = Vec::new();
    for entry in &seen {
        assert!(
            entry.complete_before >= boundary,
            "the boundary never goes back: {entry:?}"
        );
        match &entry.ticker {
            Some(ticker) => {
                let start = entry.start_ms.expect("a price entry has a window");
                let value = (
                    entry.price_sum.expect("sum"),
                    entry.sample_count.expect("count"),
                    entry.min_price.expect("min"),
                    entry.max_price.expect("max"),
                    entry.open_price.expect("open"),
                    entry.close_price.expect("close"),
                );
                if let Some(before) = replayed.insert((ticker.clone(), start), value) {
                    assert!(value.1 > before.1, "a later entry of a window adds samples");
                }
            }
            None => {
                let previous = watermarks.last().copied().flatten();
                assert!(
                    entry.complete_before > previous,
                    "each watermark entry advances the last one: {entry:?}"
                );
                watermarks.push(entry.complete_before);
            }
        }
        boundary = entry.complete_before;
    }
    assert_eq!(replayed, expected, "the log replays to the table");
    assert_eq!(replayed, stored_rows(&db.pool).await);
    assert!(!watermarks.is_empty());

    let notified = notified.await.expect("listener task");
    let newest = *all.last().expect("entries");
    assert!(!notified.is_empty(), "commits are signalled");
    assert!(
        notified.windows(2).all(|w| w[0] < w[1]),
        "signalled in order: {notified:?}"
    );
    assert_eq!(
        notified.last(),
        Some(&newest),
        "the last signal names the newest id"
    );
}
