//! `GET /v1/get-prices` without parameters from memory: exactly the database's answer, never older
//! than a commit by more than the signal's delivery time, under concurrent writes made through the
//! aggregator's own write path (`tickpipe_store`), and the database as the fallback while the signal is lost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use prometheus_client::registry::Registry;
use serde_json::Value;
use sqlx::PgPool;
use tokio::time::Instant;
use tower::ServiceExt;

use tickpipe_store::{boundary, PriceKey};
use tickpipe_testkit::rng::Rng;
use tickpipe_testkit::seed::{self, Partition, Totals};

use crate::helpers::{database, logs};

/// 2026-11-27T10:00:00Z, in milliseconds.
const T0_MS: i64 = 1_795_773_600_000;
const WINDOW_MS: i64 = 30_000;
/// The longest a commit may go unseen by a request sent after it finished: the signal's delivery
/// (NOTIFY to this process, one read of the log) on this shared 2-core machine, where the stream's
/// p99 delivery was measured at 80–410 ms. A lost signal would show as seconds (until the next
/// commit, or forever after the last one).
const DELIVERY_BOUND: Duration = Duration::from_millis(750);
/// Tickers whose byte order differs from a linguistic collation's (`.` and `-` sort before
/// letters in bytes).
const TICKERS: [&str; 5] = ["AAPL", "AMZN", "BRK-A", "BRK.B", "MSFT"];
/// Commits made while the readers poll.
const COMMITS: usize = 200;

/// One window's contribution, as the aggregator flushes it.
#[derive(Debug, Clone)]
struct Contribution {
    ticker: &'static str,
    start_ms: i64,
    sum: i64,
    count: i64,
    min: i64,
    max: i64,
    /// (timestamp ms, partition, offset) and price of the first and last price.
    open: (i64, i64, i64, i64),
    close: (i64, i64, i64, i64),
}

/// What the database holds after a commit, as far as the latest answer shows it: per ticker its
/// newest window start and that window's count, and the boundary (ms).
#[derive(Debug, Clone, Default)]
struct State {
    latest: BTreeMap<String, (i64, i64)>,
    boundary_ms: i64,
}

/// A committed state and when its commit returned.
#[derive(Debug, Clone)]
struct Committed {
    finished: Instant,
    state: State,
}

/// Claims `partitions` as the aggregator does on assignment (boundary 0: nothing final yet).
async fn claim(pool: &PgPool, partitions: i32) -> Vec<Partition> {
    let mut claimed = Vec::new();
    for partition in 0..partitions {
        claimed.push(Partition::claim(pool, partition).await);
    }
    claimed
}

/// One aggregator commit through `partition`, by the store's write path: its boundary, the
/// windows added, `latest_windows` and the change log (with its NOTIFY). Returns the boundary
/// (ms) after it.
async fn commit(
    pool: &PgPool,
    partition: &mut Partition,
    closed_before_ms: i64,
    rows: &[Contribution],
) -> i64 {
    let key = |(timestamp_ms, partition, offset, _): (i64, i64, i64, i64)| PriceKey {
        timestamp_ms,
        partition: partition as i32,
        offset,
    };
    let rows = rows
        .iter()
        .map(|r| {
            let totals = Totals::new(r.sum, r.count, r.min, r.max).open_close(r.open.3, r.close.3);
            seed::keyed(
                r.ticker,
                (r.start_ms, r.start_ms + WINDOW_MS),
                totals,
                (key(r.open), key(r.close)),
            )
        })
        .collect();
    partition.commit(closed_before_ms, rows).await;
    boundary::complete_before(pool)
        .await
        .expect("boundary")
        .map_or(0, |b| b.timestamp_millis())
}

/// A writer as an aggregator with two partitions: random contributions to each ticker's newest
/// windows (and the next one), and boundaries that move forward, one commit at a time.
struct Writer {
    rng: Rng,
    offset: i64,
    state: State,
    closed: [i64; 2],
    partitions: Vec<Partition>,
}

impl Writer {
    /// A writer through the two `partitions` claimed.
    fn new(seed: u64, partitions: Vec<Partition>) -> Self {
        assert_eq!(partitions.len(), 2);
        Self {
            rng: Rng::new(seed),
            offset: 0,
            state: State::default(),
            closed: [0; 2],
            partitions,
        }
    }

    /// Commits one random change and returns the state after it.
    async fn step(&mut self, pool: &PgPool) -> State {
        let partition = self.rng.below(2) as usize;
        let mut rows = Vec::new();
        for _ in 0..self.rng.below(3) + 1 {
            let ticker = TICKERS[self.rng.below(TICKERS.len() as u64) as usize];
            let newest = self
                .state
                .latest
                .get(ticker)
                .map_or(T0_MS, |(start, _)| *start);
            // Older windows too (a lagging partition), which must not move the latest.
            let start_ms = newest + WINDOW_MS * (self.rng.below(4) as i64 - 2);
            if rows
                .iter()
                .any(|r: &Contribution| r.ticker == ticker && r.start_ms == start_ms)
            {
                continue;
            }
            let count = self.rng.below(5) as i64 + 1;
            let price = 100 + self.rng.below(900) as i64;
            self.offset += 2;
            rows.push(Contribution {
                ticker,
                start_ms,
                sum: price * count + self.rng.below(7) as i64,
                count,
                min: price - 3,
                max: price + 3,
                open: (start_ms + 1, partition as i64, self.offset, price - 1),
                close: (
                    start_ms + 29_000,
                    partition as i64,
                    self.offset + 1,
                    price + 1,
                ),
            });
        }
        // The boundary moves now and then, up to the newest window of the slowest ticker or of
        // the fastest one, so that some latest entries are complete and others are not.
        if self.rng.below(3) == 0 {
            let starts = self.state.latest.values().map(|(start, _)| *start);
            let target = if self.rng.below(2) == 0 {
                starts.min()
            } else {
                starts.max()
            };
            self.closed[partition] = self.closed[partition].max(target.unwrap_or(T0_MS));
        }
        let boundary = commit(
            pool,
            &mut self.partitions[partition],
            self.closed[partition],
            &rows,
        )
        .await;
        self.state.boundary_ms = boundary;
        // Read back what the latest answer must now show (the rows' counts after the upsert).
        let latest: Vec<(String, DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT l.ticker, l.window_start, w.sample_count FROM latest_windows l
             JOIN window_prices w USING (ticker, window_start)",
        )
        .fetch_all(pool)
        .await
        .expect("read back");
        self.state.latest = latest
            .into_iter()
            .map(|(ticker, start, count)| (ticker, (start.timestamp_millis(), count)))
            .collect();
        self.state.clone()
    }
}

/// The body of `GET uri` through `app`, as bytes.
async fn body(app: &Router, uri: &str) -> Vec<u8> {
    let request = Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec()
}

/// The application with its metrics readable.
fn app(pool: &PgPool) -> (Router, Arc<Registry>) {
    logs();
    let mut registry = Registry::default();
    let app = tickpipe_api::testing::app_with_metrics(
        pool.clone(),
        Duration::from_secs(2),
        &mut registry,
    );
    (app, Arc::new(registry))
}

fn counter(registry: &Registry, name: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Waits until the latest answer comes from memory.
async fn until_from_memory(app: &Router, registry: &Registry) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = counter(registry, "api_latest_from_memory_total");
        body(app, "/v1/get-prices").await;
        if counter(registry, "api_latest_from_memory_total") > before {
            return;
        }
        assert!(Instant::now() < deadline, "memory never answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The commit of `history` furthest back that `answer` does not show yet, if any, among those
/// finished before `sent`: a ticker's newest window older (or the same with fewer prices) than
/// that commit left it, or an entry that commit made complete not shown complete.
fn first_unseen<'a>(
    history: &'a [Committed],
    answer: &Value,
    sent: Instant,
) -> Option<&'a Committed> {
    let prices = answer["prices"].as_array().expect("prices");
    let shown: BTreeMap<&str, (i64, i64, i64, bool)> = prices
        .iter()
        .map(|p| {
            let ms = |key: &str| {
                DateTime::parse_from_rfc3339(p[key].as_str().expect("time"))
                    .expect("rfc3339")
                    .timestamp_millis()
            };
            (
                p["ticker"].as_str().expect("ticker"),
                (
                    ms("windowStart"),
                    p["samples"].as_i64().expect("samples"),
                    ms("windowEnd"),
                    p["complete"].as_bool().expect("complete"),
                ),
            )
        })
        .collect();
    history
        .iter()
        .filter(|committed| committed.finished <= sent)
        .find(|committed| {
            let rows_behind = committed.state.latest.iter().any(|(ticker, wanted)| {
                shown
                    .get(ticker.as_str())
                    .is_none_or(|(start, count, _, _)| (*start, *count) < *wanted)
            });
            let completion_behind = shown
                .values()
                .any(|(_, _, end, complete)| !complete && *end <= committed.state.boundary_ms);
            rows_behind || completion_behind
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_answers_as_the_database_does_and_is_never_older_than_the_delivery_time() {
    let db = database().await;
    let mut writer = Writer::new(0x5eed_1234_abcd, claim(&db.pool, 2).await);
    for _ in 0..20 {
        writer.step(&db.pool).await;
    }
    let (app, registry) = app(&db.pool);
    until_from_memory(&app, &registry).await;

    let history: Arc<Mutex<Vec<Committed>>> = Arc::default();
    // Set once the writer is done: the instant the readers must have sent a request after.
    let until: Arc<OnceLock<Instant>> = Arc::default();
    let writing = {
        let (pool, history) = (db.pool.clone(), Arc::clone(&history));
        tokio::spawn(async move {
            for i in 0..COMMITS {
                let state = writer.step(&pool).await;
                history.lock().expect("history").push(Committed {
                    finished: Instant::now(),
                    state,
                });
                // Bursts and pauses: a commit after a quiet moment is announced by itself.
                if i % 25 == 24 {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                }
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (app, history, until) = (app.clone(), Arc::clone(&history), Arc::clone(&until));
        readers.push(tokio::spawn(async move {
            let mut lags = Vec::new();
            let mut answers = 0;
            loop {
                let sent = Instant::now();
                let answer: Value =
                    serde_json::from_slice(&body(&app, "/v1/get-prices").await).expect("json");
                answers += 1;
                {
                    let history = history.lock().expect("history");
                    if let Some(unseen) = first_unseen(&history, &answer, sent) {
                        lags.push(sent - unseen.finished);
                    }
                }
                if until.get().is_some_and(|until| sent >= *until) {
                    return (answers, lags);
                }
                // Leave the writer some of the 2 cores.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    writing.await.expect("writer");
    // The readers go on until each has sent a request later than the bound after the last commit
    // (and checked its answer): a lost last signal would show there.
    let last = history
        .lock()
        .expect("history")
        .last()
        .expect("commits")
        .finished;
    until
        .set(last + DELIVERY_BOUND + Duration::from_millis(250))
        .expect("set once");
    let mut answers = 0;
    let mut lags = Vec::new();
    for reader in readers {
        let (n, l) = reader.await.expect("reader");
        answers += n;
        lags.extend(l);
    }
    lags.sort();
    let worst = lags.last().copied().unwrap_or_default();
    eprintln!(
        "{answers} answers during {COMMITS} commits; {} saw a commit finished before they were sent, \
         worst by {worst:?}; from memory {}, from the database {}",
        lags.len(),
        counter(&registry, "api_latest_from_memory_total"),
        counter(&registry, "api_latest_from_database_total"),
    );
    assert!(
        worst <= DELIVERY_BOUND,
        "an answer missed a commit finished {worst:?} before it was sent"
    );
    assert!(
        counter(&registry, "api_latest_from_memory_total") > answers as f64 / 2.0,
        "memory answered most requests"
    );

    // Quiet now: memory and the database give the same bytes (`?limit=1000` is the same query,
    // always read from the database).
    until_from_memory(&app, &registry).await;
    let from_memory = body(&app, "/v1/get-prices").await;
    let from_database = body(&app, "/v1/get-prices?limit=1000").await;
    assert_eq!(
        String::from_utf8_lossy(&from_memory),
        String::from_utf8_lossy(&from_database)
    );
    let answer: Value = serde_json::from_slice(&from_memory).expect("json");
    let prices = answer["prices"].as_array().expect("prices");
    let tickers: Vec<&str> = prices
        .iter()
        .map(|p| p["ticker"].as_str().expect("t"))
        .collect();
    assert_eq!(tickers, TICKERS, "every ticker, in byte order");
    assert!(
        prices.iter().any(|p| p["complete"] == true)
            && prices.iter().any(|p| p["complete"] == false),
        "both kinds of entries compared: {answer}"
    );
    assert!(prices.iter().any(|p| p["openPrice"].is_i64()));
}

/// Terminates the API's listening connection.
async fn kill_listener(pool: &PgPool) {
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'tickpipe-listener'",
    )
    .fetch_all(pool)
    .await
    .expect("terminate");
    assert_eq!(killed, [true], "one listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_answers_while_the_signal_is_lost_and_memory_again_once_caught_up() {
    let db = database().await;
    let mut writer = Writer::new(0xfeed_5678, claim(&db.pool, 2).await);
    for _ in 0..5 {
        writer.step(&db.pool).await;
    }
    let (app, registry) = app(&db.pool);
    until_from_memory(&app, &registry).await;

    // A commit right after the connection dies is announced to nobody: the feed must find it by
    // reading the log once it listens again.
    kill_listener(&db.pool).await;
    let state = writer.step(&db.pool).await;
    let finished = Instant::now();
    let history = [Committed { finished, state }];
    loop {
        let sent = Instant::now();
        let answer: Value =
            serde_json::from_slice(&body(&app, "/v1/get-prices").await).expect("json");
        if first_unseen(&history, &answer, sent).is_none() {
            break;
        }
        assert!(
            sent - finished <= DELIVERY_BOUND,
            "the commit after the lost connection is still unseen after {:?}",
            sent - finished
        );
    }

    // (The commit may have been seen through the database before the feed listened again.)
    until_from_memory(&app, &registry).await;

    // Keep the feed from catching up after the next loss (its read of the log waits on a lock):
    // meanwhile the database answers, and answers what memory would.
    let mut blocker = db.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE window_changes IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let from_database_before = counter(&registry, "api_latest_from_database_total");
    kill_listener(&db.pool).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&registry, "api_latest_from_database_total") <= from_database_before {
        assert!(Instant::now() < deadline, "the database never answered");
        let during = body(&app, "/v1/get-prices").await;
        assert_eq!(during, body(&app, "/v1/get-prices?limit=1000").await);
    }
    // Still not live while the read waits.
    let from_memory = counter(&registry, "api_latest_from_memory_total");
    for _ in 0..20 {
        body(&app, "/v1/get-prices").await;
    }
    assert_eq!(
        counter(&registry, "api_latest_from_memory_total"),
        from_memory,
        "memory answered while the feed could not catch up"
    );
    blocker.rollback().await.expect("rollback");

    until_from_memory(&app, &registry).await;
    assert!(counter(&registry, "api_stream_listener_reconnects_total") >= 2.0);
    let state = writer.step(&db.pool).await;
    let finished = Instant::now();
    let history = [Committed { finished, state }];
    loop {
        let sent = Instant::now();
        let answer: Value =
            serde_json::from_slice(&body(&app, "/v1/get-prices").await).expect("json");
        if first_unseen(&history, &answer, sent).is_none() {
            break;
        }
        assert!(
            sent - finished <= DELIVERY_BOUND,
            "a commit after recovery unseen"
        );
    }
    assert_eq!(
        body(&app, "/v1/get-prices").await,
        body(&app, "/v1/get-prices?limit=1000").await
    );
}
