//! What the stream tests share: an API server over real sockets, and a writer that appends to the
//! change log as the aggregator does (its advisory lock, ids from the sequence, NOTIFY on commit).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use tickpipe_common::config::Layers;
use tickpipe_common::service::ServiceSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::client::Block;

/// The aggregator's log lock (`LOG_LOCK` in aggregator/src/changes.rs, which is not a dependency of
/// this crate; a test below reads that file to keep the two equal).
pub const LOG_LOCK: i64 = 0x7469_636b_7069_7065;

/// 2026-11-27T10:00:00Z.
pub const T0: i64 = 1_795_773_600;

/// An API server (`tickpipe_api::serve`) on a port of its own.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), tickpipe_api::ApiServerError>>,
}

/// A port nothing listens on (bound and released).
fn free_local_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

impl Server {
    /// Serves the database at `url` with the defaults and `vars` (e.g. `API_MAX_STREAMS`).
    pub async fn start(url: &str, vars: &[(&str, &str)]) -> Self {
        let metrics_addr = free_local_addr();
        let mut all = vec![
            ("DATABASE_URL".to_owned(), url.to_owned()),
            ("METRICS_ADDR".to_owned(), metrics_addr.to_string()),
        ];
        all.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let layers = Layers::from_vars(all).expect("layers");
        let settings = tickpipe_api::settings::Settings::load(&layers).expect("settings");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tickpipe_api::serve(listener, settings, shutdown.clone()));
        Self {
            addr,
            metrics_addr,
            shutdown,
            task,
        }
    }

    /// Shuts down gracefully and waits for `serve` to return (open streams must end for it to).
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns promptly although streams were open")
            .expect("join")
            .expect("serve");
    }

    /// The value of one metric sample line, e.g. `api_stream_slow_disconnects_total`.
    pub async fn metric(&self, name: &str) -> f64 {
        let mut stream = TcpStream::connect(self.metrics_addr)
            .await
            .expect("metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("read");
        text.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no metric {name} in {text}"))
    }
}

/// One entry of a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// The (ticker, window starting at `start`) row as it stands after the commit.
    Price {
        ticker: String,
        start: i64,
        sum: i64,
        count: i64,
        min: i64,
        max: i64,
        open: Option<i64>,
        close: Option<i64>,
    },
    Watermark,
}

/// A price entry with values derived from `n` (open and close unknown when `n` is odd).
pub fn price(ticker: &str, start: i64, n: i64) -> Entry {
    let known = n % 2 == 0;
    Entry::Price {
        ticker: ticker.to_owned(),
        start,
        sum: 1000 + 7 * n,
        count: 3 + n % 4,
        min: 100 + n,
        max: 400 + n,
        open: known.then_some(200 + n),
        close: known.then_some(300 + n),
    }
}

/// An entry as committed: its id and the boundary of its commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub id: i64,
    pub entry: Entry,
    /// Unix seconds.
    pub complete_before: Option<i64>,
}

impl Written {
    pub fn ticker(&self) -> Option<&str> {
        match &self.entry {
            Entry::Price { ticker, .. } => Some(ticker),
            Entry::Watermark => None,
        }
    }

    /// The event this entry must become: its name and data.
    pub fn expected(&self) -> (&'static str, Value) {
        match &self.entry {
            Entry::Price {
                ticker,
                start,
                sum,
                count,
                min,
                max,
                open,
                close,
            } => (
                "price",
                json!({
                    "ticker": ticker, "windowStart": iso(*start), "windowEnd": iso(start + 30),
                    "averagePrice": *sum as f64 / *count as f64, "samples": count,
                    "minPrice": min, "maxPrice": max, "openPrice": open, "closePrice": close,
                    "complete": self.complete_before.is_some_and(|boundary| start + 30 <= boundary),
                }),
            ),
            Entry::Watermark => (
                "watermark",
                json!({ "completeBefore": iso(self.complete_before.expect("a watermark has a boundary")) }),
            ),
        }
    }

    /// Asserts that `block` is this entry's event.
    pub fn assert_sent_as(&self, block: &Block) {
        let (event, data) = self.expected();
        assert_eq!(block.id(), self.id, "{block:?}");
        assert_eq!(block.event.as_deref(), Some(event), "{block:?}");
        assert_eq!(block.json(), data, "id {}", self.id);
    }
}

pub fn iso(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Asserts that `blocks` are exactly `written`, in order.
pub fn assert_events(blocks: &[Block], written: &[&Written]) {
    let ids = |blocks: &[Block]| blocks.iter().map(Block::id).collect::<Vec<_>>();
    assert_eq!(
        ids(blocks),
        written.iter().map(|w| w.id).collect::<Vec<_>>(),
        "event ids"
    );
    for (block, written) in blocks.iter().zip(written) {
        written.assert_sent_as(block);
    }
}

/// Commits `entries` as one aggregator transaction does: the log lock, ids from the sequence in
/// order, `complete_before` (Unix seconds) on every entry, then NOTIFY with the newest id.
pub async fn commit(
    pool: &PgPool,
    entries: &[Entry],
    complete_before: Option<i64>,
) -> Vec<Written> {
    let boundary = complete_before.map(|s| chrono::DateTime::from_timestamp(s, 0).expect("time"));
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOG_LOCK)
        .execute(&mut *tx)
        .await
        .expect("log lock");
    let mut written = Vec::new();
    for entry in entries {
        let id: i64 = match entry {
            Entry::Price {
                ticker,
                start,
                sum,
                count,
                min,
                max,
                open,
                close,
            } => sqlx::query_scalar(
                "INSERT INTO window_changes (id, ticker, window_start, window_end, price_sum, sample_count,
                                             min_price, max_price, open_price, close_price, complete_before)
                 VALUES (nextval('window_changes_id'), $1, to_timestamp($2), to_timestamp($2 + 30), $3, $4, $5, $6, $7, $8, $9)
                 RETURNING id",
            )
            .bind(ticker)
            .bind(*start as f64)
            .bind(sum)
            .bind(count)
            .bind(min)
            .bind(max)
            .bind(open)
            .bind(close)
            .bind(boundary),
            Entry::Watermark => sqlx::query_scalar(
                "INSERT INTO window_changes (id, complete_before) VALUES (nextval('window_changes_id'), $1)
                 RETURNING id",
            )
            .bind(boundary),
        }
        .fetch_one(&mut *tx)
        .await
        .expect("append");
        written.push(Written {
            id,
            entry: entry.clone(),
            complete_before,
        });
    }
    if let Some(newest) = written.last() {
        sqlx::query("SELECT pg_notify('window_changes', $1)")
            .bind(newest.id.to_string())
            .execute(&mut *tx)
            .await
            .expect("notify");
    }
    tx.commit().await.expect("commit");
    written
}

/// Commits many price entries in one statement, as the aggregator appends a commit's rows (UNNEST,
/// ids from the sequence in row order), with NOTIFY.
pub async fn commit_many(pool: &PgPool, entries: &[Entry]) -> Vec<Written> {
    let mut tickers = Vec::new();
    let mut starts = Vec::new();
    let mut numbers: [Vec<i64>; 4] = Default::default();
    let mut opens = Vec::new();
    let mut closes = Vec::new();
    for entry in entries {
        let Entry::Price {
            ticker,
            start,
            sum,
            count,
            min,
            max,
            open,
            close,
        } = entry
        else {
            panic!("price entries only");
        };
        tickers.push(ticker.clone());
        starts.push(*start as f64);
        for (column, value) in numbers.iter_mut().zip([sum, count, min, max]) {
            column.push(*value);
        }
        opens.push(*open);
        closes.push(*close);
    }
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOG_LOCK)
        .execute(&mut *tx)
        .await
        .expect("log lock");
    let ids: Vec<(i64, i64)> = sqlx::query_as(
        "WITH rows AS (SELECT * FROM UNNEST($1::text[], $2::float8[], $3::bigint[], $4::bigint[], $5::bigint[],
                                            $6::bigint[], $7::bigint[], $8::bigint[]) WITH ORDINALITY
                                     AS t (ticker, start, s, c, lo, hi, op, cl, n)),
              numbered AS (SELECT nextval('window_changes_id') AS id, rows.* FROM (SELECT * FROM rows ORDER BY n) rows),
              inserted AS (INSERT INTO window_changes (id, ticker, window_start, window_end, price_sum, sample_count,
                                                       min_price, max_price, open_price, close_price)
                           SELECT id, ticker, to_timestamp(start), to_timestamp(start + 30), s, c, lo, hi, op, cl
                           FROM numbered RETURNING id)
         SELECT id, n FROM numbered ORDER BY n",
    )
    .bind(&tickers)
    .bind(&starts)
    .bind(&numbers[0])
    .bind(&numbers[1])
    .bind(&numbers[2])
    .bind(&numbers[3])
    .bind(&opens)
    .bind(&closes)
    .fetch_all(&mut *tx)
    .await
    .expect("append");
    let newest = ids.iter().map(|(id, _)| *id).max().expect("rows");
    sqlx::query("SELECT pg_notify('window_changes', $1)")
        .bind(newest.to_string())
        .execute(&mut *tx)
        .await
        .expect("notify");
    tx.commit().await.expect("commit");
    ids.into_iter()
        .zip(entries)
        .map(|((id, _), entry)| Written {
            id,
            entry: entry.clone(),
            complete_before: None,
        })
        .collect()
}

/// `n` commits of one price entry each (tickers in turn), returning everything written.
pub async fn commit_prices(pool: &PgPool, tickers: &[&str], n: i64, first: i64) -> Vec<Written> {
    let mut written = Vec::new();
    for i in first..first + n {
        let ticker = tickers[(i as usize) % tickers.len()];
        written.extend(commit(pool, &[price(ticker, T0 + 30 * i, i)], Some(T0 + 30 * i)).await);
    }
    written
}
