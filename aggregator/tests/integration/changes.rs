//! The change log on the real services: two instances committing concurrently on 3 partitions, a
//! reader that resumes "after the last id it saw" misses nothing, entries replay to the table, the
//! boundary only grows, and each commit is signalled.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::FromRow;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_become_visible_in_id_order_and_replay_to_the_table() {
    let _shared = SERVICES.read().await;
    let topic = create_topic("changes", 3).await;
    let db = TestDatabase::create().await;
    let records = generated_records(6_000, 3, 50, 5);
    let offsets = produce(&topic, &records).await;
    let expected = reference(&records, &offsets, 30_000);

    let mut listener = PgListener::connect(&db.url).await.expect("listener");
    listener
        .listen("window_changes")
        .await
        .expect("LISTEN window_changes");
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

    // Two instances of one group share the partitions and commit concurrently.
    let first = start(settings(&topic, &db, &[]));
    let second = start(settings(&topic, &db, &[]));

    // A reader that only ever asks for ids after the last one it saw, as a resuming client does.
    let mut seen: Vec<Entry> = Vec::new();
    let samples: i64 = expected.values().map(|v| v.1).sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let last = seen.last().map_or(0, |e| e.id);
        let batch: Vec<Entry> = sqlx::query_as(SELECT_AFTER)
            .bind(last)
            .fetch_all(&db.pool)
            .await
            .expect("read the log");
        seen.extend(batch);
        let done = stored_samples(&db.pool).await >= samples
            && seen
                .last()
                .and_then(|e| e.complete_before)
                .is_some_and(|b| {
                    b.timestamp_millis() > expected.keys().map(|k| k.1).max().unwrap_or(0)
                });
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tail: Vec<Entry> = sqlx::query_as(SELECT_AFTER)
        .bind(seen.last().map_or(0, |e| e.id))
        .fetch_all(&db.pool)
        .await
        .expect("read the rest");
    seen.extend(tail);
    first.stop().await;
    second.stop().await;

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
    let mut replayed = Rows::new();
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
