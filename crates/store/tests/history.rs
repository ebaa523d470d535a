//! Rollups, partitions and retention against the real PostgreSQL: every stored bar is the fold of
//! its windows whatever the interleaving of partitions, fencing and replays; partitions appear for
//! any write (across a day boundary, long after the last one); retention drops exactly the
//! partitions past their age while commits go on; and a database of the unpartitioned schema is
//! upgraded with every window and bar intact.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tickpipe_store::history::{self, Retention, UpkeepPass};
use tickpipe_store::{claim, commit, Accumulator, Commit, Flush, PriceKey, WindowRow};
use tickpipe_testkit::rng::Rng;
use tickpipe_testkit::{referee, seed, TestDatabase};

const TOPIC: &str = "stocks";
const WIDTH_MS: i64 = 30_000;
const DAY_MS: i64 = 86_400_000;
/// The migration that partitions the tables and adds the rollups.
const HISTORY_MIGRATION: i64 = 20_261_204_000_001;

async fn database() -> TestDatabase {
    let db = TestDatabase::create().await;
    tickpipe_store::shape::record_window_secs(&db.pool, "AGGREGATOR_WINDOW_SECS", 30)
        .await
        .expect("record the window width");
    db
}

fn window(ticker: &str, start_ms: i64, totals: Accumulator) -> WindowRow {
    WindowRow {
        ticker: ticker.to_owned(),
        window_start_ms: start_ms,
        window_end_ms: start_ms + WIDTH_MS,
        totals,
    }
}

/// Commits `rows` as `partition`'s owner of `epoch`-claim, all windows before the last closed.
async fn commit_rows(pool: &PgPool, partition: i32, rows: Vec<WindowRow>) -> Commit {
    let mut progress = claim(pool, TOPIC, partition).await.expect("claim");
    progress.closed_before_ms = 0;
    let flush = Flush {
        partition,
        rows,
        progress,
    };
    commit(pool, TOPIC, &flush).await.expect("commit")
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The partitions of `parent`, by name.
async fn partitions(pool: &PgPool, parent: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = $1::regclass ORDER BY 1",
    )
    .bind(parent)
    .fetch_all(pool)
    .await
    .expect("partitions")
}

fn partition_name(parent: &str, span_ms: i64, at_ms: i64) -> String {
    let start = at_ms.div_euclid(span_ms) * span_ms;
    let date = DateTime::from_timestamp_millis(start).expect("in range");
    format!("{parent}_p{}", date.format("%Y%m%d"))
}

/// One partition's contributions, flush by flush: random windows over three days (so partitions
/// and day boundaries are crossed), random prices with keys unique to the partition.
fn contributions(rng: &mut Rng, partition: i32, base_ms: i64) -> Vec<Vec<WindowRow>> {
    let tickers = ["AMZN", "MSFT", "AAPL", "T.X", "Z-1"];
    let mut offset = 0;
    let mut seen = std::collections::BTreeSet::new();
    let mut flushes = Vec::new();
    for _ in 0..rng.between(4, 10) {
        let mut rows = Vec::new();
        for _ in 0..rng.between(1, 25) {
            let ticker = *rng.pick(&tickers);
            // Windows spread over 3 days, clustered so that bars get several windows.
            let slot = rng.between(0, 3 * 2880 / 40) * 40 + rng.between(0, 6);
            if !seen.insert((ticker, slot)) {
                continue; // a partition writes a (ticker, window) once
            }
            let start_ms = base_ms + slot * WIDTH_MS;
            let mut totals: Option<Accumulator> = None;
            for _ in 0..rng.between(1, 4) {
                offset += 1;
                let key = PriceKey {
                    timestamp_ms: start_ms + rng.between(0, WIDTH_MS - 1),
                    partition,
                    offset,
                };
                let price = rng.between(1, 5000);
                match totals.as_mut() {
                    Some(acc) => acc.add(price, key),
                    None => totals = Some(Accumulator::new(price, key)),
                }
            }
            rows.push(window(ticker, start_ms, totals.expect("one price")));
        }
        rows.sort_by(|a, b| (a.window_start_ms, &a.ticker).cmp(&(b.window_start_ms, &b.ticker)));
        flushes.push(rows);
    }
    flushes
}

type BarValues = (i64, i64, i64, i64, Option<i64>, Option<i64>);

async fn stored_bars(pool: &PgPool, table: &str) -> BTreeMap<(String, i64), BarValues> {
    type Stored = (String, i64, i64, i64, i64, i64, Option<i64>, Option<i64>);
    let rows: Vec<Stored> = sqlx::query_as(&format!(
        "SELECT ticker, (extract(epoch FROM window_start) * 1000)::bigint, price_sum, sample_count,
                    min_price, max_price, open_price, close_price FROM {table}"
    ))
    .fetch_all(pool)
    .await
    .expect("bars");
    rows.into_iter()
        .map(|(t, s, sum, n, lo, hi, o, c)| ((t, s), (sum, n, lo, hi, o, c)))
        .collect()
}

#[tokio::test]
async fn every_bar_is_the_fold_of_its_windows_under_any_interleaving() {
    for seed in [1_u64, 7, 42] {
        let db = database().await;
        let mut rng = Rng::new(seed);
        // A day boundary inside the range: base at 23:00 UTC.
        let base_ms = (now_ms() / DAY_MS - 3) * DAY_MS + 23 * 3_600_000;
        let plans: Vec<Vec<Vec<WindowRow>>> = (0..3)
            .map(|p| contributions(&mut rng, p, base_ms))
            .collect();
        // What the bars must be: every contribution folded in memory.
        let mut expected: BTreeMap<(String, i64), Accumulator> = BTreeMap::new();
        for row in plans.iter().flatten().flatten() {
            let bar = row.window_start_ms.div_euclid(3_600_000) * 3_600_000;
            expected
                .entry((row.ticker.clone(), bar))
                .and_modify(|acc| acc.merge(&row.totals))
                .or_insert(row.totals);
        }
        // The partitions commit concurrently; some flushes are first attempted by a fenced former
        // owner (nothing written) and then replayed by the new one.
        let mut tasks = Vec::new();
        for (partition, flushes) in plans.into_iter().enumerate() {
            let pool = db.pool.clone();
            let fence_every = rng.between(2, 4) as usize;
            let pause_seed = rng.next_u64();
            tasks.push(tokio::spawn(async move {
                let partition = i32::try_from(partition).expect("small");
                let mut pauses = Rng::new(pause_seed);
                for (i, rows) in flushes.into_iter().enumerate() {
                    if i % fence_every == 1 {
                        let mut stale = claim(&pool, TOPIC, partition).await.expect("claim");
                        claim(&pool, TOPIC, partition).await.expect("a new owner");
                        stale.closed_before_ms = 0;
                        let fenced = Flush {
                            partition,
                            rows: rows.clone(),
                            progress: stale,
                        };
                        let outcome = commit(&pool, TOPIC, &fenced).await.expect("commit");
                        assert_eq!(outcome, Commit::Fenced);
                    }
                    let pause = pauses.below(3);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    assert_eq!(commit_rows(&pool, partition, rows).await, Commit::Written);
                }
            }));
        }
        for task in tasks {
            task.await.expect("a partition's commits");
        }
        referee::check_rollups(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let bars = stored_bars(&db.pool, "bars_1h").await;
        let wanted: BTreeMap<(String, i64), BarValues> = expected
            .into_iter()
            .map(|(id, a)| {
                (
                    id,
                    (
                        a.sum,
                        a.count,
                        a.min,
                        a.max,
                        Some(a.open.price),
                        Some(a.close.price),
                    ),
                )
            })
            .collect();
        assert_eq!(bars, wanted, "seed {seed}");
        // The windows crossed a day boundary: more than one partition of windows and of minutes.
        assert!(partitions(&db.pool, "window_prices").await.len() >= 2);
    }
}

#[tokio::test]
async fn partitions_appear_for_any_write() {
    let db = database().await;
    // Across a day boundary: the last window of one day and the first of the next.
    let midnight = (now_ms() / DAY_MS) * DAY_MS;
    let key = |t| PriceKey {
        timestamp_ms: t,
        partition: 0,
        offset: t,
    };
    let rows = vec![
        window(
            "AMZN",
            midnight - WIDTH_MS,
            Accumulator::new(10, key(midnight - 1)),
        ),
        window("AMZN", midnight, Accumulator::new(20, key(midnight))),
    ];
    assert_eq!(commit_rows(&db.pool, 0, rows).await, Commit::Written);
    let windows = partitions(&db.pool, "window_prices").await;
    for at in [midnight - 1, midnight] {
        assert!(
            windows.contains(&partition_name("window_prices", DAY_MS, at)),
            "{windows:?}"
        );
    }
    // After a long stop (or a replay of old records): 400 days back, in every table.
    let old = midnight - 400 * DAY_MS;
    let rows = vec![window("MSFT", old, Accumulator::new(30, key(old)))];
    assert_eq!(commit_rows(&db.pool, 0, rows).await, Commit::Written);
    for (table, span_days) in [
        ("window_prices", 1),
        ("bars_1m", 7),
        ("bars_5m", 28),
        ("bars_1h", 364),
        ("bars_1d", 3640),
    ] {
        let names = partitions(&db.pool, table).await;
        assert!(
            names.contains(&partition_name(table, span_days * DAY_MS, old)),
            "{table}: {names:?}"
        );
    }
    let (sum, count): (i64, i64) =
        sqlx::query_as("SELECT price_sum, sample_count FROM bars_1d WHERE ticker = 'MSFT'")
            .fetch_one(&db.pool)
            .await
            .expect("the old bar");
    assert_eq!((sum, count), (30, 1));
    // Ahead of the clock: the current and the next partition of every table.
    history::create_ahead(&db.pool).await.expect("create ahead");
    let now = now_ms();
    for (table, span_days) in [("window_prices", 1), ("bars_1m", 7), ("bars_1d", 3640)] {
        let names = partitions(&db.pool, table).await;
        for at in [now, now + span_days * DAY_MS] {
            assert!(
                names.contains(&partition_name(table, span_days * DAY_MS, at)),
                "{table}: {names:?}"
            );
        }
    }
    assert_eq!(
        history::create_ahead(&db.pool).await.expect("again"),
        UpkeepPass::default(),
        "idempotent"
    );
    referee::check_rollups(&db.pool)
        .await
        .expect("bars fold their windows");
}

#[tokio::test]
async fn retention_drops_exactly_the_partitions_past_their_age_while_commits_go_on() {
    let db = database().await;
    let today = (now_ms() / DAY_MS) * DAY_MS;
    let key = |t: i64, o: i64| PriceKey {
        timestamp_ms: t,
        partition: 0,
        offset: o,
    };
    let days_ago = [10, 8, 7, 6, 1, 0];
    let rows: Vec<WindowRow> = days_ago
        .iter()
        .map(|d| {
            let start = today - d * DAY_MS + 3_600_000;
            window("AMZN", start, Accumulator::new(100 + d, key(start, *d)))
        })
        .collect();
    assert_eq!(commit_rows(&db.pool, 0, rows).await, Commit::Written);
    // Live commits on another partition while retention runs.
    let writer = {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let start = (now_ms() / WIDTH_MS) * WIDTH_MS;
                let rows = vec![window(
                    "MSFT",
                    start,
                    Accumulator::new(7, key(start, 1000 + i)),
                )];
                assert_eq!(commit_rows(&pool, 1, rows).await, Commit::Written);
            }
        })
    };
    let policy = [
        Retention {
            table: "window_prices",
            keep: Some(Duration::from_secs(7 * 86_400)),
        },
        Retention {
            table: "bars_1m",
            keep: None,
        },
    ];
    let pass = history::apply_retention(&db.pool, &policy)
        .await
        .expect("retention");
    writer.await.expect("the live commits");
    // Partitions end at the next midnight: those of 10 and 8 days ago end before now - 7 days;
    // the one of 7 days ago ends 6 days ago, inside the retention.
    assert_eq!(pass.done, vec![("window_prices".to_owned(), 2)]);
    assert!(pass.deferred.is_empty(), "{pass:?}");
    let names = partitions(&db.pool, "window_prices").await;
    for d in [10, 8] {
        assert!(
            !names.contains(&partition_name("window_prices", DAY_MS, today - d * DAY_MS)),
            "{names:?}"
        );
    }
    for d in [7, 6, 1, 0] {
        assert!(
            names.contains(&partition_name("window_prices", DAY_MS, today - d * DAY_MS)),
            "{names:?}"
        );
    }
    let gone = history::dropped_before(&db.pool)
        .await
        .expect("dropped before");
    let expected_gone = DateTime::from_timestamp_millis(today - 7 * DAY_MS).expect("in range");
    assert_eq!(gone.get("window_prices"), Some(&expected_gone));
    assert_eq!(gone.get("bars_1m"), None);
    // The rollups kept their bars of the dropped days, and the rest still folds its windows.
    let minutes: i64 = sqlx::query_scalar("SELECT count(*) FROM bars_1m WHERE ticker = 'AMZN'")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(minutes, 6);
    referee::check_rollups(&db.pool)
        .await
        .expect("bars fold their kept windows");
    // Dropping again drops nothing.
    assert_eq!(
        history::apply_retention(&db.pool, &policy)
            .await
            .expect("again"),
        UpkeepPass::default()
    );
}

#[tokio::test]
async fn retention_defers_a_table_a_long_read_holds_and_drops_it_later() {
    let db = database().await;
    let today = (now_ms() / DAY_MS) * DAY_MS;
    let old = today - 10 * DAY_MS + 3_600_000;
    let key = PriceKey {
        timestamp_ms: old,
        partition: 0,
        offset: 0,
    };
    let rows = vec![window("AMZN", old, Accumulator::new(100, key))];
    assert_eq!(commit_rows(&db.pool, 0, rows).await, Commit::Written);
    let policy = [Retention {
        table: "window_prices",
        keep: Some(Duration::from_secs(7 * 86_400)),
    }];
    // A long read: its transaction holds the table's ACCESS SHARE lock until it ends.
    let mut reader = db.pool.begin().await.expect("reader");
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM window_prices")
        .fetch_one(&mut *reader)
        .await
        .expect("read");
    assert_eq!(seen, 1);
    let pass = history::apply_retention(&db.pool, &policy)
        .await
        .expect("retention gives up, not fails");
    assert_eq!(pass.done, vec![]);
    assert_eq!(pass.deferred, vec!["window_prices".to_owned()]);
    // The pass gave up rather than wait for the read (which would queue every later query of the
    // table behind its lock request), and dropped nothing.
    let others: i64 = sqlx::query_scalar("SELECT count(*) FROM window_prices")
        .fetch_one(&db.pool)
        .await
        .expect("another session reads");
    assert_eq!(others, 1, "nothing dropped while the read held the table");
    reader.rollback().await.expect("the read ends");
    let pass = history::apply_retention(&db.pool, &policy)
        .await
        .expect("retention");
    assert_eq!(pass.done, vec![("window_prices".to_owned(), 1)]);
    assert!(pass.deferred.is_empty(), "{pass:?}");
    let names = partitions(&db.pool, "window_prices").await;
    assert!(
        !names.contains(&partition_name("window_prices", DAY_MS, old)),
        "{names:?}"
    );
}

#[tokio::test]
async fn the_unpartitioned_schema_is_upgraded_with_every_window_and_bar() {
    assert!(
        tickpipe_store::schema::MIGRATOR
            .iter()
            .any(|m| m.version == HISTORY_MIGRATION && m.description.contains("history")),
        "migration {HISTORY_MIGRATION} is no longer the history one"
    );
    let db = seed::database_before(HISTORY_MIGRATION).await;
    // Windows as the previous release wrote them: two days of three tickers with open and close
    // keys, and a few from before keys were recorded (NULL), in the unpartitioned table.
    let mut rng = Rng::new(99);
    let base = (now_ms() / DAY_MS - 2) * DAY_MS;
    sqlx::query("INSERT INTO stored_shape (name, value) VALUES ('window_secs', '30')")
        .execute(&db.pool)
        .await
        .expect("shape");
    for i in 0..2000_i64 {
        let ticker = ["AMZN", "MSFT", "AAPL"][usize::try_from(i % 3).expect("small")];
        let start = base + (i / 3) * 5 * WIDTH_MS + rng.between(0, 4) * WIDTH_MS;
        let (lo, hi) = (rng.between(1, 100), rng.between(100, 200));
        let keyed = i >= 30;
        sqlx::query(
            "INSERT INTO window_prices (ticker, window_start, window_end, price_sum, sample_count, min_price,
                                        max_price, open_key, open_price, close_key, close_price)
             VALUES ($1, to_timestamp($2 / 1000.0), to_timestamp(($2 + 30000) / 1000.0), $3, 2, $4, $5,
                     CASE WHEN $6 THEN ARRAY[$2, 0, $7] END, CASE WHEN $6 THEN $4 END,
                     CASE WHEN $6 THEN ARRAY[$2 + 1, 0, $7 + 1] END, CASE WHEN $6 THEN $5 END)
             ON CONFLICT DO NOTHING",
        )
        .bind(ticker)
        .bind(start)
        .bind(lo + hi)
        .bind(lo)
        .bind(hi)
        .bind(keyed)
        .bind(i * 2)
        .execute(&db.pool)
        .await
        .expect("an old window");
    }
    type Row = (
        String,
        DateTime<Utc>,
        DateTime<Utc>,
        i64,
        i64,
        i64,
        i64,
        f64,
        Option<Vec<i64>>,
        Option<i64>,
        Option<Vec<i64>>,
        Option<i64>,
    );
    let all_windows =
        "SELECT ticker, window_start, window_end, price_sum, sample_count, min_price, max_price,
                              average_price, open_key, open_price, close_key, close_price
                       FROM window_prices ORDER BY ticker, window_start";
    let before: Vec<Row> = sqlx::query_as(all_windows)
        .fetch_all(&db.pool)
        .await
        .expect("before");
    // Hourly bars as the previous release's API computed them: open of the first window, close of
    // the last, unknown if any window's is.
    type Bar = (
        String,
        DateTime<Utc>,
        i64,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
    );
    let hourly = "SELECT ticker, b, sum(price_sum)::bigint, sum(sample_count)::bigint, min(min_price), max(max_price),
                         CASE WHEN count(open_key) = count(*) THEN (array_agg(open_price ORDER BY window_start))[1] END,
                         CASE WHEN count(close_key) = count(*) THEN (array_agg(close_price ORDER BY window_start DESC))[1] END
                  FROM (SELECT *, date_bin(INTERVAL '1 hour', window_start, TIMESTAMPTZ 'epoch') AS b FROM window_prices) w
                  GROUP BY ticker, b ORDER BY ticker, b";
    let bars_before: Vec<Bar> = sqlx::query_as(hourly)
        .fetch_all(&db.pool)
        .await
        .expect("bars before");
    tickpipe_store::schema::MIGRATOR
        .run(&db.pool)
        .await
        .expect("upgrade");
    let after: Vec<Row> = sqlx::query_as(all_windows)
        .fetch_all(&db.pool)
        .await
        .expect("after");
    assert_eq!(after, before, "every window is kept as it was");
    let stored: Vec<Bar> = sqlx::query_as(
        "SELECT ticker, window_start, price_sum, sample_count, min_price, max_price, open_price, close_price
         FROM bars_1h ORDER BY ticker, window_start",
    )
    .fetch_all(&db.pool)
    .await
    .expect("stored bars");
    assert_eq!(
        stored, bars_before,
        "every hourly bar is stored as it was computed"
    );
    assert!(partitions(&db.pool, "window_prices").await.len() >= 2);
    referee::check_rollups(&db.pool)
        .await
        .expect("every rollup folds the windows");
    // And the upgraded database takes new commits into the same bars.
    let start = base + WIDTH_MS * 4;
    let key = PriceKey {
        timestamp_ms: start,
        partition: 0,
        offset: 1,
    };
    assert_eq!(
        commit_rows(
            &db.pool,
            0,
            vec![window("NEW", start, Accumulator::new(5, key))]
        )
        .await,
        Commit::Written
    );
    referee::check_rollups(&db.pool)
        .await
        .expect("after a new commit");
}

/// `history::ROLLUPS` (what commits write and the API reads) and the migration's `history_tables`
/// (what partitions and retention act on) name the same tables with the same widths.
#[tokio::test]
async fn the_rollups_in_code_are_the_rollups_in_the_schema() {
    let db = database().await;
    let in_schema: Vec<(String, Option<i32>)> = sqlx::query_as(
        "SELECT table_name, width_secs FROM history_tables ORDER BY width_secs NULLS FIRST",
    )
    .fetch_all(&db.pool)
    .await
    .expect("history tables");
    let in_code: Vec<(String, Option<i32>)> =
        std::iter::once((history::WINDOWS_TABLE.to_owned(), None))
            .chain(history::ROLLUPS.iter().map(|rollup| {
                let width = i32::try_from(rollup.width_secs).expect("small");
                (rollup.table.to_owned(), Some(width))
            }))
            .collect();
    assert_eq!(in_schema, in_code);
}
