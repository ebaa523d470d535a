//! Many streams at once, of every kind the fan-out serves differently: live without a filter
//! (written whole batches, shared), from the start of the log without a filter (its own frames
//! for the backlog, then shared batches once live), and filtered, live or from the start (its own
//! frames throughout). Every one must get exactly its events, in order, once, while commits go on
//! during and after the streams open.

use super::client::Client;
use super::support::{assert_events, price, Log, Server, Written, T0};
use super::{only, STREAM};
use crate::helpers::database;

/// How a stream is opened: from the start of the log or live, and for which tickers.
struct Kind {
    since_start: bool,
    tickers: Option<&'static [&'static str]>,
}

const KINDS: [Kind; 4] = [
    Kind {
        since_start: false,
        tickers: None,
    },
    Kind {
        since_start: true,
        tickers: None,
    },
    Kind {
        since_start: false,
        tickers: Some(&["AMZN"]),
    },
    Kind {
        since_start: true,
        tickers: Some(&["MSFT", "AAPL"]),
    },
];

/// Streams per kind.
const EACH: usize = 15;

/// One commit of window `i` of every ticker that moves the boundary to its start: three rows and
/// a watermark, published as one batch of four events.
async fn commit_window(log: &mut Log, i: i64) -> Vec<Written> {
    let rows = ["AAPL", "AMZN", "MSFT"].map(|ticker| price(ticker, T0 + 30 * i, i));
    log.commit(&rows, T0 + 30 * i).await
}

#[tokio::test]
async fn many_streams_of_every_kind_each_get_exactly_their_events() {
    let db = database().await;
    // No heartbeat within the test: the client waits 20 s for each event, and a comment every
    // 15 s would restart that wait, so that a missing event would hang the test, not fail it.
    let server = Server::start(
        &db.url,
        &[
            ("API_MAX_STREAMS", "100"),
            ("API_STREAM_HEARTBEAT_MS", "600000"),
        ],
    )
    .await;
    let (mut log, mut written) = Log::claim(&db.pool, 0).await;
    for i in 0..3 {
        written.extend(commit_window(&mut log, i).await);
    }

    // Streams open while commits go on: each records where it started.
    let mut streams: Vec<(&Kind, i64, Client)> = Vec::new();
    for round in 0..EACH {
        for kind in &KINDS {
            let mut query = Vec::new();
            if kind.since_start {
                query.push("since=0".to_owned());
            }
            if let Some(tickers) = kind.tickers {
                query.push(format!("ticker={}", tickers.join(",")));
            }
            let target = format!("{STREAM}?{}", query.join("&"));
            let mut client = Client::get(server.addr, &target, &[]).await;
            assert_eq!(client.status, 200, "{target}: {}", client.head);
            let start = client.opening_id().await;
            streams.push((kind, start, client));
        }
        written.extend(commit_window(&mut log, 3 + round as i64).await);
    }
    for i in 0..5 {
        written.extend(commit_window(&mut log, 3 + EACH as i64 + i).await);
    }

    for (kind, start, client) in &mut streams {
        let after: Vec<Written> = written.iter().filter(|w| w.id > *start).cloned().collect();
        let expected = match kind.tickers {
            Some(tickers) => only(&after, tickers),
            None => after.iter().collect(),
        };
        assert_events(&client.events(expected.len()).await, &expected);
    }
    for (_, _, client) in &mut streams {
        client
            .assert_no_event_for(std::time::Duration::from_millis(50))
            .await;
    }
    server.stop().await;
}
