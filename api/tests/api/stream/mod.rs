//! `GET /v1/stream-prices` over real sockets against a real PostgreSQL: the change log written by
//! the aggregator's own write path (`tickpipe_store`: its advisory lock, ids from the sequence,
//! NOTIFY on commit), read back as events exactly once, across reconnections, API restarts, several instances and a PostgreSQL
//! restart.

mod client;
mod encoding;
mod fan_out;
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Barrier;

use tickpipe_testkit::seed::LegacyWindow;

use crate::helpers::{database, exclusive_postgres, get, legacy_database};

use self::client::{Block, Client, Next};
use self::support::{assert_events, iso, price, Contribution, Entry, Log, Server, Written, T0};

const STREAM: &str = "/v1/stream-prices";

/// Every entry of `written` whose ticker `keep` accepts (watermarks always).
fn only<'a>(written: &'a [Written], keep: &[&str]) -> Vec<&'a Written> {
    written
        .iter()
        .filter(|w| w.ticker().is_none_or(|t| keep.contains(&t)))
        .collect()
}

#[tokio::test]
async fn a_subscriber_receives_exactly_the_changes_written_as_get_prices_returns_them() {
    // AMZN's first window was written before open and close were recorded: they stay unknown as
    // later contributions merge into it, and the stream says so.
    let db = legacy_database(&[LegacyWindow {
        ticker: "AMZN".to_owned(),
        start_ms: T0 * 1000,
        end_ms: (T0 + 30) * 1000,
        sum: 600,
        count: 2,
        min: 250,
        max: 350,
    }])
    .await;
    let server = Server::start(&db.url, &[]).await;
    let mut client = Client::get(server.addr, STREAM, &[]).await;
    assert_eq!(client.status, 200, "{}", client.head);
    assert_eq!(
        client.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(client.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(
        client.opening_id().await,
        0,
        "an empty log: the stream starts at 0"
    );

    // The claim's watermark (boundary 0); two rows; a row and the watermark it moved; a row.
    let (mut log, mut written) = Log::claim(&db.pool, 0).await;
    written.extend(
        log.commit(&[price("AMZN", T0, 1), price("MSFT", T0, 2)], 0)
            .await,
    );
    written.extend(log.commit(&[price("AMZN", T0, 4)], T0 + 30).await);
    written.extend(log.commit(&[price("AMZN", T0 + 30, 5)], T0 + 30).await);
    assert_eq!(written.len(), 6, "{written:?}");
    let events = client.events(6).await;
    assert_events(&events, &written.iter().collect::<Vec<_>>());
    assert_eq!(events[3].json()["complete"], true, "{:?}", events[3]);
    assert_eq!(events[4].json()["completeBefore"], iso(T0 + 30));
    assert_eq!(events[5].json()["complete"], false, "{:?}", events[5]);
    // The merged window: the legacy row plus both contributions, open and close unknown.
    let Entry::Price {
        sum,
        count,
        open,
        close,
        ..
    } = &written[3].entry
    else {
        panic!("a price entry: {:?}", written[3]);
    };
    assert_eq!((*sum, *count), (600 + 1007 + 1028, 2 + 4 + 3));
    assert_eq!((*open, *close), (None, None));
    let msft = written
        .iter()
        .find(|w| w.ticker() == Some("MSFT"))
        .expect("MSFT");
    assert!(
        matches!(
            msft.entry,
            Entry::Price {
                open: Some(202),
                close: Some(302),
                ..
            }
        ),
        "{msft:?}"
    );
    client.assert_no_event_for(Duration::from_millis(300)).await;

    // The same entry through GET /v1/get-prices: the commit that logged it wrote the window and
    // the boundary (every partition closed before T0 + 30).
    let (_, _, body) = get(
        &db.pool,
        &format!(
            "/v1/get-prices?ticker=AMZN&startTime={T0}&endTime={}",
            T0 + 1
        ),
    )
    .await;
    assert_eq!(body["prices"][0], events[3].json(), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_live_stream_starts_after_the_newest_change() {
    let db = database().await;
    let (mut log, _) = Log::claim(&db.pool, 0).await;
    let before = log.commit_prices(&["AMZN"], 3, 0).await;
    let server = Server::start(&db.url, &[]).await;
    let mut client = Client::get(server.addr, STREAM, &[]).await;
    assert_eq!(client.opening_id().await, before[2].id);
    let after = log.commit_prices(&["AMZN"], 2, 3).await;
    assert_events(&client.events(2).await, &after.iter().collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_loses_and_repeats_nothing() {
    let db = database().await;
    let (mut log, _) = Log::claim(&db.pool, 0).await;
    let server = Server::start(&db.url, &[]).await;
    let mut first = Client::get(server.addr, STREAM, &[]).await;
    first.opening_id().await;
    let mut written = log.commit_prices(&["AMZN", "MSFT"], 5, 0).await;
    let received = first.events(3).await;
    assert_events(&received, &written[..3].iter().collect::<Vec<_>>());
    drop(first);
    written.extend(log.commit_prices(&["AMZN", "MSFT"], 5, 5).await);

    // EventSource's reconnection: the same URL and the last id received.
    let last = received[2].id.clone().expect("id");
    let mut again = Client::get(server.addr, STREAM, &[("Last-Event-ID", &last)]).await;
    assert_eq!(again.opening_id().await, received[2].id());
    assert_events(
        &again.events(7).await,
        &written[3..].iter().collect::<Vec<_>>(),
    );
    // Then live, still exactly once.
    let more = log.commit_prices(&["AMZN"], 2, 10).await;
    assert_events(&again.events(2).await, &more.iter().collect::<Vec<_>>());
    again.assert_no_event_for(Duration::from_millis(300)).await;

    // `since` does the same; Last-Event-ID wins over it (an EventSource opened with ?since= sends
    // both when it reconnects).
    let mut since = Client::get(server.addr, &format!("{STREAM}?since={last}"), &[]).await;
    since.opening_id().await;
    assert_events(
        &since.events(9).await,
        &written[3..].iter().chain(&more).collect::<Vec<_>>(),
    );
    let newer = written[8].id.to_string();
    let mut both = Client::get(
        server.addr,
        &format!("{STREAM}?since=0"),
        &[("Last-Event-ID", &newer)],
    )
    .await;
    assert_eq!(both.opening_id().await, written[8].id);
    assert_events(
        &both.events(3).await,
        &written[9..].iter().chain(&more).collect::<Vec<_>>(),
    );
    server.stop().await;
}

#[tokio::test]
async fn the_ticker_filter_applies_to_the_backlog_and_the_live_stream() {
    let db = database().await;
    let server = Server::start(&db.url, &[]).await;
    // Each commit moves the boundary: three rows, then a watermark.
    let (mut log, mut written) = Log::claim(&db.pool, 0).await;
    for i in 0..4 {
        written.extend(
            log.commit(
                &[
                    price("AAPL", T0 + 30 * i, i),
                    price("AMZN", T0 + 30 * i, i + 1),
                    price("MSFT", T0 + 30 * i, i + 2),
                ],
                T0 + 30 * i,
            )
            .await,
        );
    }
    let mut filtered = Client::get(
        server.addr,
        &format!("{STREAM}?ticker=amzn,%20MSFT&since=0"),
        &[],
    )
    .await;
    assert_eq!(filtered.status, 200, "{}", filtered.head);
    filtered.opening_id().await;
    let backlog = only(&written, &["AMZN", "MSFT"]);
    assert_events(&filtered.events(backlog.len()).await, &backlog);
    let live = log
        .commit(
            &[price("AAPL", T0 + 300, 9), price("MSFT", T0 + 300, 9)],
            T0 + 300,
        )
        .await;
    assert!(matches!(
        live.last().map(|w| &w.entry),
        Some(Entry::Watermark)
    ));
    let expected = only(&live, &["AMZN", "MSFT"]);
    assert_events(&filtered.events(expected.len()).await, &expected);
    filtered
        .assert_no_event_for(Duration::from_millis(300))
        .await;

    // A ticker nobody writes: only the watermarks.
    let mut none = Client::get(server.addr, &format!("{STREAM}?ticker=ZZZZ&since=0"), &[]).await;
    none.opening_id().await;
    let watermarks = only(&written, &[]);
    let all: Vec<&Written> = watermarks.into_iter().chain(only(&live, &[])).collect();
    assert_events(&none.events(all.len()).await, &all);
    server.stop().await;
}

#[tokio::test]
async fn invalid_requests_are_400_and_unknown_ids_410() {
    let db = database().await;
    let (mut log, _) = Log::claim(&db.pool, 0).await;
    let mut written = log.commit_prices(&["AMZN"], 3, 0).await;
    // The last three a second after the first three (on the database's clock, which stamps
    // `committed_at`), so that a retention can tell them apart.
    let third: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(committed_at) FROM window_changes")
            .fetch_one(&db.pool)
            .await
            .expect("committed_at");
    tickpipe_testkit::eventually(
        "the database's clock a second past the third commit",
        Duration::from_secs(10),
        || async {
            sqlx::query_scalar::<_, bool>("SELECT clock_timestamp() > $1 + interval '1 second'")
                .bind(third)
                .fetch_one(&db.pool)
                .await
                .ok()
                .and_then(|past| past.then_some(()))
        },
    )
    .await;
    written.extend(log.commit_prices(&["AMZN"], 3, 3).await);
    let server = Server::start(&db.url, &[]).await;
    for (target, headers, needle) in [
        (format!("{STREAM}?since=-1"), vec![], "since"),
        (format!("{STREAM}?since=01"), vec![], "since"),
        (format!("{STREAM}?since=x"), vec![], "since"),
        (
            format!("{STREAM}?since=9223372036854775808"),
            vec![],
            "since",
        ),
        (
            format!("{STREAM}?since=1&since=2"),
            vec![],
            "more than once",
        ),
        (format!("{STREAM}?ticker=AM*ZN"), vec![], "ticker"),
        (
            format!("{STREAM}?limit=5"),
            vec![],
            "unknown query parameter",
        ),
        (
            STREAM.to_owned(),
            vec![("Last-Event-ID", "abc")],
            "Last-Event-ID",
        ),
        (
            STREAM.to_owned(),
            vec![("Last-Event-ID", "-3")],
            "Last-Event-ID",
        ),
    ] {
        let client = Client::get(server.addr, &target, &headers).await;
        assert_eq!(client.status, 400, "{target} {headers:?}: {}", client.head);
        assert_eq!(
            client.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        let detail = client.problem.as_ref().expect("problem")["detail"].to_string();
        assert!(detail.contains(needle), "{target}: {detail}");
    }

    // Pruned as the aggregator prunes, with a retention reaching half a second before the fourth
    // entry: the claim's watermark and the first three are gone (the newest is always kept).
    let oldest = written[3].id;
    let age: String = sqlx::query_scalar(
        "SELECT (now() - committed_at + interval '500 milliseconds')::text
         FROM window_changes WHERE id = $1",
    )
    .bind(oldest)
    .fetch_one(&db.pool)
    .await
    .expect("age");
    let pruned = tickpipe_store::changes::prune_older_than(&db.pool, &age)
        .await
        .expect("prune");
    assert_eq!(
        pruned, 4,
        "the claim's watermark and the first three entries"
    );
    for since in [0, oldest - 2] {
        let gone = Client::get(server.addr, &format!("{STREAM}?since={since}"), &[]).await;
        assert_eq!(gone.status, 410, "since={since}: {}", gone.head);
        let problem = gone.problem.expect("problem");
        assert_eq!(problem["status"], 410);
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("reload from /v1/get-prices"), "{detail}");
        assert!(detail.contains("older than"), "{detail}");
    }
    let header = (oldest - 2).to_string();
    let gone = Client::get(server.addr, STREAM, &[("Last-Event-ID", &header)]).await;
    assert_eq!(gone.status, 410);
    // From the entry just before the oldest on, nothing is missing.
    let mut resumed =
        Client::get(server.addr, &format!("{STREAM}?since={}", oldest - 1), &[]).await;
    assert_eq!(resumed.status, 200);
    resumed.opening_id().await;
    assert_events(
        &resumed.events(3).await,
        &written[3..].iter().collect::<Vec<_>>(),
    );
    // An id the log never had (newer than its newest) is not resumable either.
    let newest = written[5].id;
    let unknown = Client::get(server.addr, &format!("{STREAM}?since={}", newest + 1), &[]).await;
    assert_eq!(unknown.status, 410);
    let detail = unknown.problem.expect("problem")["detail"].to_string();
    assert!(detail.contains("newer than the newest"), "{detail}");
    server.stop().await;
}

#[tokio::test]
async fn streams_beyond_the_limit_are_503_with_retry_after() {
    let db = database().await;
    let server = Server::start(
        &db.url,
        &[("API_MAX_STREAMS", "2"), ("API_STREAM_HEARTBEAT_MS", "100")],
    )
    .await;
    let mut one = Client::get(server.addr, STREAM, &[]).await;
    let two = Client::get(server.addr, STREAM, &[]).await;
    assert_eq!((one.status, two.status), (200, 200));
    let three = Client::get(server.addr, STREAM, &[]).await;
    assert_eq!(three.status, 503, "{}", three.head);
    assert_eq!(three.header("retry-after").as_deref(), Some("5"));
    assert_eq!(
        three.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let detail = three.problem.expect("problem")["detail"].to_string();
    assert!(detail.contains("2 streams are open"), "{detail}");
    assert_eq!(server.metric("api_streams_refused_total").await, 1.0);
    assert_eq!(server.metric("api_streams_open").await, 2.0);
    // Other requests are not limited.
    let (status, _, _) = get(&db.pool, "/v1/get-prices").await;
    assert_eq!(status, 200);

    // A closed stream frees its place (noticed at its next write, a heartbeat at the latest).
    drop(two);
    let four =
        tickpipe_testkit::eventually("a place frees up", Duration::from_secs(10), || async {
            let client = Client::get(server.addr, STREAM, &[]).await;
            (client.status == 200).then_some(client)
        })
        .await;
    one.opening_id().await;
    drop(four);
    server.stop().await;
}

#[tokio::test]
async fn a_quiet_stream_gets_a_heartbeat_comment() {
    let db = database().await;
    let server = Server::start(&db.url, &[("API_STREAM_HEARTBEAT_MS", "200")]).await;
    let mut client = Client::get(server.addr, STREAM, &[]).await;
    client.opening_id().await;
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        match client.next_block(Duration::from_secs(2)).await {
            Next::Block(block) => assert_eq!(
                block,
                Block {
                    comments: vec!["heartbeat".to_owned()],
                    ..Block::default()
                }
            ),
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(550) && elapsed < Duration::from_secs(3),
        "three heartbeats 200 ms apart took {elapsed:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_disconnected_while_a_fast_one_keeps_receiving() {
    let db = database().await;
    let (mut log, _) = Log::claim(&db.pool, 0).await;
    let server = Server::start(&db.url, &[("API_STREAM_QUEUE", "2")]).await;
    let mut fast = Client::get(server.addr, STREAM, &[]).await;
    fast.opening_id().await;
    // A client that reads nothing, on a small receive buffer: the server's socket and hyper's own
    // buffer fill, then the subscriber's queue.
    let mut slow = Client::get_with_receive_buffer(server.addr, STREAM, &[], Some(4096)).await;
    // About 8 MB of events, in commits of 1000 entries, each written once the fast client has
    // received the previous one: it never falls behind, while the slow one falls ever further.
    let written = write_in_step_with(&mut log, &mut fast, 30).await;
    let all: Vec<&Written> = written.iter().collect();
    assert_eq!(
        server.metric("api_stream_slow_disconnects_total").await,
        1.0,
        "the slow subscriber was dropped, and only it"
    );
    // The slow client reads at last: what was buffered for it, in order, then the end of the
    // stream. It resumes from its last id and misses nothing.
    slow.opening_id().await;
    let got = slow.until_end(Duration::from_secs(20)).await;
    eprintln!(
        "slow subscriber: {} of {} events buffered before it was dropped",
        got.len(),
        all.len()
    );
    assert!(got.len() < all.len(), "the slow stream ended early");
    assert_events(&got, &all[..got.len()]);
    let last = got.last().map_or(0, Block::id).to_string();
    let mut resumed = Client::get(server.addr, STREAM, &[("Last-Event-ID", &last)]).await;
    resumed.opening_id().await;
    let rest = &all[got.len()..];
    assert_events(&resumed.events(rest.len()).await, rest);
    server.stop().await;
}

/// Commits `commits` times 1000 windows (the boundary unchanged: no watermark), each commit once
/// `client` has received the previous one; returns everything written.
async fn write_in_step_with(log: &mut Log, client: &mut Client, commits: i64) -> Vec<Written> {
    let tickers = ["AAPL", "AMZN", "MSFT", "NVDA"];
    let mut written = Vec::new();
    for c in 0..commits {
        let entries: Vec<Contribution> = (0..1000)
            .map(|i| {
                price(
                    tickers[i % 4],
                    T0 + 30 * (c * 250 + i as i64 / 4),
                    c + i as i64,
                )
            })
            .collect();
        let closed_before = log.closed_before();
        let batch = log.commit(&entries, closed_before).await;
        assert_events(
            &client.events(batch.len()).await,
            &batch.iter().collect::<Vec<_>>(),
        );
        written.extend(batch);
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_does_not_hold_up_the_shutdown() {
    let db = database().await;
    let (mut log, _) = Log::claim(&db.pool, 0).await;
    let server = Server::start(&db.url, &[("API_WRITE_TIMEOUT_MS", "4000")]).await;
    let mut watcher = Client::get(server.addr, STREAM, &[]).await;
    watcher.opening_id().await;
    let mut stalled = Client::get_with_receive_buffer(server.addr, STREAM, &[], Some(4096)).await;
    // About 5.6 MB at once: more than the stalled client's socket and hyper's buffer hold, less
    // than its queue.
    let tickers = ["AAPL", "AMZN", "MSFT", "NVDA"];
    let mut written = Vec::new();
    for c in 0..20 {
        let entries: Vec<Contribution> = (0..1000)
            .map(|i| {
                price(
                    tickers[i % 4],
                    T0 + 30 * (c * 250 + i as i64 / 4),
                    c + i as i64,
                )
            })
            .collect();
        written.extend(log.commit(&entries, 0).await);
    }
    let all: Vec<&Written> = written.iter().collect();
    // Shut down: the watcher's stream ends cleanly (with what it was sent so far); the stalled one
    // cannot be written to, and the drain waits for it no longer than the write timeout.
    let stopping = tokio::time::Instant::now();
    let stop = tokio::spawn(server.stop());
    let seen = watcher.until_end(Duration::from_secs(20)).await;
    assert_events(&seen, &all[..seen.len()]);
    stop.await.expect("stopped");
    let took = stopping.elapsed();
    eprintln!("serve() returned {took:?} after the shutdown began, a client still not reading");
    assert!(took < Duration::from_secs(8), "{took:?}");
    // What the kernel had buffered still arrives, in order, then the connection ends (an event cut
    // in the middle is not one): the client resumes from its last complete event.
    stalled.opening_id().await;
    let got = stalled.until_end(Duration::from_secs(20)).await;
    eprintln!(
        "the stalled client got {} of {} events",
        got.len(),
        all.len()
    );
    assert!(got.len() < all.len());
    assert_events(&got, &all[..got.len()]);
}

/// Reads events from `client` until `want` ids have arrived; asserts they arrive in increasing order
/// and each once.
async fn collect_ids(client: &mut Client, want: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(want);
    while ids.len() < want {
        match client.next_event(Duration::from_secs(30)).await {
            Some(event) => {
                let id = event.id();
                assert!(
                    ids.last().is_none_or(|last| id > *last),
                    "{id} after {ids:?}"
                );
                ids.push(id);
            }
            None => panic!("the stream ended after {} of {want} events", ids.len()),
        }
    }
    ids
}

/// Commits `commits` transactions of 1-3 windows of `ticker` through `log` (the boundary unchanged:
/// no watermark), waiting at `started` after the first third and at `opened` after the second;
/// returns the ids written.
async fn writer(
    mut log: Log,
    ticker: &'static str,
    commits: i64,
    (started, opened): (Arc<Barrier>, Arc<Barrier>),
) -> Vec<i64> {
    let mut ids = Vec::new();
    for c in 0..commits {
        if c == commits / 3 {
            started.wait().await;
        }
        if c == 2 * commits / 3 {
            opened.wait().await;
        }
        let entries: Vec<Contribution> = (0..=(c % 3))
            .map(|i| price(ticker, T0 + 30 * (c * 3 + i), c))
            .collect();
        ids.extend(log.commit(&entries, 0).await.into_iter().map(|w| w.id));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_committing_concurrently_are_streamed_exactly_once_in_order() {
    let db = database().await;
    let (a_log, mut claimed) = Log::claim(&db.pool, 0).await;
    let (b_log, b_claimed) = Log::claim(&db.pool, 1).await;
    claimed.extend(b_claimed);
    let server = Server::start(&db.url, &[]).await;
    let mut live = Client::get(server.addr, STREAM, &[]).await;
    live.opening_id().await;
    let (started, opened) = (Arc::new(Barrier::new(3)), Arc::new(Barrier::new(3)));
    let barriers = || (Arc::clone(&started), Arc::clone(&opened));
    let a = tokio::spawn(writer(a_log, "AMZN", 60, barriers()));
    let b = tokio::spawn(writer(b_log, "MSFT", 60, barriers()));
    // A subscriber that starts from the beginning while the writers are at it: its backlog and the
    // live feed meet without gap or duplicate. The writers have committed a third when it opens
    // (a backlog), go on while it opens, and commit the last third once it is open (a live part).
    started.wait().await;
    let mut resumed = Client::get(server.addr, &format!("{STREAM}?since=0"), &[]).await;
    resumed.opening_id().await;
    opened.wait().await;
    let mut expected: Vec<i64> = a.await.expect("writer a");
    expected.extend(b.await.expect("writer b"));
    expected.sort_unstable();
    assert_eq!(
        expected.iter().copied().collect::<BTreeSet<_>>().len(),
        expected.len()
    );
    assert_eq!(collect_ids(&mut live, expected.len()).await, expected);
    let mut from_start: Vec<i64> = claimed.iter().map(|w| w.id).collect();
    from_start.extend(&expected);
    assert_eq!(
        collect_ids(&mut resumed, from_start.len()).await,
        from_start
    );
    live.assert_no_event_for(Duration::from_millis(300)).await;
    resumed
        .assert_no_event_for(Duration::from_millis(100))
        .await;
    server.stop().await;
}

#[tokio::test]
async fn across_api_restarts_and_instances_nothing_is_lost_or_repeated() {
    let db = database().await;
    let first = Server::start(&db.url, &[]).await;
    let second = Server::start(&db.url, &[]).await;
    let (mut log, mut written) = Log::claim(&db.pool, 0).await;
    written.extend(log.commit_prices(&["AMZN", "MSFT"], 4, 0).await);
    let mut client = Client::get(first.addr, &format!("{STREAM}?since=0"), &[]).await;
    client.opening_id().await;
    let mut received = client.events(written.len()).await;
    written.extend(log.commit_prices(&["AMZN", "MSFT"], 3, 4).await);
    received.extend(client.events(2).await);

    // The first instance shuts down: the open stream ends cleanly and serve() returns.
    let stopping = tokio::spawn(first.stop());
    let rest = client.until_end(Duration::from_secs(10)).await;
    received.extend(rest);
    stopping.await.expect("stopped");
    written.extend(log.commit_prices(&["AMZN", "MSFT"], 3, 7).await);

    // The client resumes on the other instance.
    let last = |received: &[Block]| received.last().map_or(0, Block::id).to_string();
    let mut client = Client::get(second.addr, STREAM, &[("Last-Event-ID", &last(&received))]).await;
    client.opening_id().await;
    let missing = written.len() - received.len();
    received.extend(client.events(missing).await);
    drop(client);

    // And on a restarted first instance, with changes committed while it was down.
    written.extend(log.commit_prices(&["AMZN"], 2, 10).await);
    let restarted = Server::start(&db.url, &[]).await;
    let mut client = Client::get(
        restarted.addr,
        STREAM,
        &[("Last-Event-ID", &last(&received))],
    )
    .await;
    client.opening_id().await;
    received.extend(client.events(2).await);
    written.extend(log.commit_prices(&["MSFT"], 2, 12).await);
    received.extend(client.events(2).await);
    assert_events(&received, &written.iter().collect::<Vec<_>>());
    client.assert_no_event_for(Duration::from_millis(300)).await;
    second.stop().await;
    restarted.stop().await;
}

/// Commits once PostgreSQL accepts statements again after a restart.
async fn commit_when_up(pool: &PgPool, log: &mut Log, n: i64, first: i64) -> Vec<Written> {
    tickpipe_testkit::eventually(
        "PostgreSQL accepts the commit",
        Duration::from_secs(60),
        || async {
            let ping = sqlx::query("SELECT 1").execute(pool).await;
            match ping {
                Ok(_) => Some(()),
                Err(_) => None,
            }
        },
    )
    .await;
    log.commit_prices(&["AMZN", "MSFT"], n, first).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_listens_again_and_catches_up_after_a_postgres_restart() {
    let _alone = exclusive_postgres().await;
    let db = tickpipe_testkit::TestDatabase::create().await;
    let (mut log, _) = Log::claim(&db.pool, 0).await;
    let server = Server::start(&db.url, &[("API_STREAM_HEARTBEAT_MS", "500")]).await;
    let mut client = Client::get(server.addr, STREAM, &[]).await;
    client.opening_id().await;
    let mut written = log.commit_prices(&["AMZN", "MSFT"], 3, 0).await;
    let mut received = client.events(3).await;

    tickpipe_testkit::services("restart-postgres");
    // Committed as soon as the server is back, quite likely before the listener is: only the
    // catch-up after LISTEN can deliver these.
    written.extend(commit_when_up(&db.pool, &mut log, 3, 3).await);
    received.extend(client.events(3).await);
    written.extend(log.commit_prices(&["AMZN"], 2, 6).await);
    received.extend(client.events(2).await);
    assert_events(&received, &written.iter().collect::<Vec<_>>());
    client.assert_no_event_for(Duration::from_millis(300)).await;
    assert!(server.metric("api_stream_listener_reconnects_total").await >= 1.0);
    server.stop().await;
}

#[tokio::test]
async fn the_document_describes_the_stream() {
    let db = database().await;
    let (status, _, document) = get(&db.pool, "/v1/openapi.json").await;
    assert_eq!(status, 200);
    let operation = &document["paths"][STREAM]["get"];
    let content = &operation["responses"]["200"]["content"]["text/event-stream"];
    assert!(content.is_object(), "{operation}");
    for status in ["400", "410", "413", "503"] {
        assert!(
            operation["responses"][status]["content"]["application/problem+json"].is_object(),
            "{status}: {operation}"
        );
    }
    let names: Vec<&str> = operation["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    // `api_key`: the key an EventSource passes, taken by the access guard before the parameters.
    assert_eq!(names, ["ticker", "since", "Last-Event-ID", "api_key"]);
    assert!(document["components"]["schemas"]["Watermark"].is_object());
    assert_eq!(iso(T0), "2026-11-27T10:00:00Z");
}
