//! The write path against the real PostgreSQL: what every reader of the tables relies on.
//!
//! The aggregator's integration tests cover the path end to end from Kafka; these pin the contract
//! itself — fencing, the order-independent merge, the change log and its notification — so that a
//! change of the SQL is caught here first, next to it.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tickpipe_store::changes::CHANNEL;
use tickpipe_store::{boundary, claim, commit, Accumulator, Commit, Flush, PriceKey, WindowRow};
use tickpipe_testkit::TestDatabase;

const TOPIC: &str = "stocks";
/// 2026-11-20T10:00:00Z, a window start.
const T0: i64 = 1_795_168_800_000;
const WIDTH: i64 = 30_000;

fn key(timestamp_ms: i64, partition: i32, offset: i64) -> PriceKey {
    PriceKey {
        timestamp_ms,
        partition,
        offset,
    }
}

/// The window at `T0` of `ticker`, folded from `(price, timestamp, offset)` read on `partition`.
fn window(ticker: &str, partition: i32, prices: &[(i64, i64, i64)]) -> WindowRow {
    let mut totals: Option<Accumulator> = None;
    for &(price, timestamp_ms, offset) in prices {
        let at = key(timestamp_ms, partition, offset);
        match totals.as_mut() {
            Some(acc) => acc.add(price, at),
            None => totals = Some(Accumulator::new(price, at)),
        }
    }
    WindowRow {
        ticker: ticker.to_owned(),
        window_start_ms: T0,
        window_end_ms: T0 + WIDTH,
        totals: totals.expect("at least one price"),
    }
}

/// Claims `partition` and commits `rows` with every window before `closed_before_ms` closed.
async fn write(
    pool: &PgPool,
    partition: i32,
    rows: Vec<WindowRow>,
    closed_before_ms: i64,
) -> Commit {
    let mut progress = claim(pool, TOPIC, partition).await.expect("claim");
    progress.closed_before_ms = closed_before_ms;
    let flush = Flush {
        partition,
        rows,
        progress,
    };
    commit(pool, TOPIC, &flush).await.expect("commit")
}

type StoredRow = (i64, i64, i64, i64, Option<i64>, Option<i64>);
type Complete = Option<DateTime<Utc>>;
/// A change-log entry: id, ticker (none for a watermark entry), price sum, boundary.
type LogEntry = (i64, Option<String>, Option<i64>, Complete);

async fn stored(pool: &PgPool, ticker: &str) -> Option<StoredRow> {
    sqlx::query_as(
        "SELECT price_sum, sample_count, min_price, max_price, open_price, close_price
         FROM window_prices WHERE ticker = $1",
    )
    .bind(ticker)
    .fetch_optional(pool)
    .await
    .expect("read window_prices")
}

#[tokio::test]
async fn a_fenced_owner_writes_nothing() {
    let db = TestDatabase::create().await;
    let mut former = claim(&db.pool, TOPIC, 0).await.expect("first claim");
    claim(&db.pool, TOPIC, 0).await.expect("second claim");
    former.closed_before_ms = T0 + WIDTH;
    let flush = Flush {
        partition: 0,
        rows: vec![window("AMZN", 0, &[(1950, T0 + 1, 7)])],
        progress: former,
    };
    assert_eq!(
        commit(&db.pool, TOPIC, &flush).await.expect("commit"),
        Commit::Fenced
    );
    assert_eq!(stored(&db.pool, "AMZN").await, None);
    assert_eq!(
        boundary::complete_before(&db.pool).await.expect("boundary"),
        Some(epoch())
    );
}

fn epoch() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

#[tokio::test]
async fn partitions_merge_to_the_same_row_in_either_order() {
    let left = window("AAPL", 0, &[(210, T0 + 5, 3), (220, T0 + 900, 4)]);
    let right = window(
        "AAPL",
        1,
        &[(205, T0 + 5, 1), (230, T0 + 900, 9), (200, T0 + 20, 2)],
    );
    let mut folded = left.totals;
    folded.merge(&right.totals);
    for order in [[&left, &right], [&right, &left]] {
        let db = TestDatabase::create().await;
        for row in order {
            let partition = row.totals.open.key.partition;
            let commit = write(&db.pool, partition, vec![row.clone()], T0 + WIDTH).await;
            assert_eq!(commit, Commit::Written);
        }
        assert_eq!(
            stored(&db.pool, "AAPL").await,
            Some((
                folded.sum,
                folded.count,
                folded.min,
                folded.max,
                Some(folded.open.price),
                Some(folded.close.price)
            )),
        );
        // Open: the smallest (timestamp, partition, offset) — partition 0 beats 1 at T0 + 5.
        assert_eq!((folded.open.price, folded.close.price), (210, 230));
    }
}

#[tokio::test]
async fn every_commit_is_logged_and_notified_with_the_boundary() {
    let db = TestDatabase::create().await;
    let mut listener = PgListener::connect(&db.url).await.expect("listener");
    listener.listen(CHANNEL).await.expect("LISTEN");
    // Two partitions: the boundary is their minimum, so it moves only when both have closed.
    write(
        &db.pool,
        0,
        vec![window("MSFT", 0, &[(107, T0 + 1, 0)])],
        T0 + WIDTH,
    )
    .await;
    write(
        &db.pool,
        1,
        vec![window("MSFT", 1, &[(109, T0 + 2, 0)])],
        T0 + 2 * WIDTH,
    )
    .await;
    let entries: Vec<LogEntry> = sqlx::query_as(
        "SELECT id, ticker, price_sum, complete_before FROM window_changes ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("read the log");
    let at = |ms: i64| DateTime::from_timestamp_millis(ms);
    // Claim of 0 (boundary 0: moved from nothing), its commit (boundary T0 + 30 s), claim of 1
    // (a new partition lowers it back to 0), its commit (min of T0 + 30 s and T0 + 60 s).
    let summary: Vec<(Option<&str>, Option<i64>, Complete)> = entries
        .iter()
        .map(|(_, ticker, sum, complete)| (ticker.as_deref(), *sum, *complete))
        .collect();
    assert_eq!(
        summary,
        vec![
            (None, None, at(0)),
            (Some("MSFT"), Some(107), at(T0 + WIDTH)),
            (None, None, at(T0 + WIDTH)),
            (None, None, at(0)),
            (Some("MSFT"), Some(216), at(T0 + WIDTH)),
            (None, None, at(T0 + WIDTH)),
        ],
    );
    assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
    assert_eq!(
        boundary::complete_before(&db.pool).await.expect("boundary"),
        at(T0 + WIDTH)
    );
    // One notification per commit that logged something, carrying the newest id it logged.
    let newest = entries.last().expect("entries").0;
    let mut last_payload = 0;
    while last_payload < newest {
        let notification =
            tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
                .await
                .expect("a notification within 10 s")
                .expect("notification");
        last_payload = notification.payload().parse().expect("an id");
    }
    assert_eq!(last_payload, newest);
}
