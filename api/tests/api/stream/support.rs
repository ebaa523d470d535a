//! What the stream tests share: an API server over real sockets, and a writer that commits through
//! the aggregator's own write path (`tickpipe_store`: its log lock, ids from the sequence, NOTIFY on
//! commit) and reads back what each commit appended to the change log.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use tickpipe_common::config::Layers;
use tickpipe_common::service::ServiceSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use tickpipe_store::WindowRow;
use tickpipe_testkit::seed::{self, Partition, Totals};

use super::client::Block;

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
            // Hundreds of streams from one address: without rate limits, unless `vars` say.
            ("API_RATE_LIMIT_RPS".to_owned(), "0".to_owned()),
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

/// One entry of the change log (what the stream sends as an event).
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

/// One contribution to a 30-second window: what a commit adds to the row.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub ticker: String,
    /// Window start, Unix seconds.
    pub start: i64,
    pub totals: Totals,
}

impl Contribution {
    fn row(&self) -> WindowRow {
        seed::window(
            &self.ticker,
            (self.start * 1000, (self.start + 30) * 1000),
            self.totals,
        )
    }
}

/// A contribution with values derived from `n`.
pub fn price(ticker: &str, start: i64, n: i64) -> Contribution {
    Contribution {
        ticker: ticker.to_owned(),
        start,
        totals: Totals::new(1000 + 7 * n, 3 + n % 4, 100 + n, 400 + n).open_close(200 + n, 300 + n),
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

/// A partition claimed through the store, committing as the aggregator does (`tickpipe_store`'s
/// write path: windows, `latest_windows`, progress and the change log with its lock and NOTIFY in
/// one transaction), and reading back what each commit appended to the log.
#[derive(Debug)]
pub struct Log {
    pool: PgPool,
    partition: Partition,
    /// The newest id read back.
    seen: i64,
}

impl Log {
    /// Claims `partition`; returns the entries the claim appended (a watermark when it moved the
    /// boundary: the first claim of a database moves it to 0).
    pub async fn claim(pool: &PgPool, partition: i32) -> (Self, Vec<Written>) {
        let seen = newest_id(pool).await;
        let mut log = Self {
            pool: pool.clone(),
            partition: Partition::claim(pool, partition).await,
            seen,
        };
        let written = log.read_back(&[]).await;
        (log, written)
    }

    /// The partition's boundary, Unix seconds.
    pub fn closed_before(&self) -> i64 {
        self.partition.progress().closed_before_ms / 1000
    }

    /// One aggregator commit of `contributions` storing the boundary `closed_before` (Unix
    /// seconds); returns what it appended to the log, in id order: each row as it now stands, then
    /// a watermark if the boundary moved.
    pub async fn commit(
        &mut self,
        contributions: &[Contribution],
        closed_before: i64,
    ) -> Vec<Written> {
        let rows = contributions.iter().map(Contribution::row).collect();
        self.partition.commit(closed_before * 1000, rows).await;
        let tickers: Vec<&str> = contributions.iter().map(|c| c.ticker.as_str()).collect();
        let written = self.read_back(&tickers).await;
        let prices = written.iter().filter(|w| w.ticker().is_some()).count();
        assert_eq!(
            prices,
            contributions.len(),
            "one entry per row: {written:?}"
        );
        written
    }

    /// `n` commits of one contribution each (tickers in turn, window `i` for `i` from `first`),
    /// the boundary left where it is (no watermark entries); returns everything written.
    pub async fn commit_prices(&mut self, tickers: &[&str], n: i64, first: i64) -> Vec<Written> {
        let mut written = Vec::new();
        for i in first..first + n {
            let ticker = tickers[(i as usize) % tickers.len()];
            let closed_before = self.closed_before();
            written.extend(
                self.commit(&[price(ticker, T0 + 30 * i, i)], closed_before)
                    .await,
            );
        }
        written
    }

    /// The log's entries after the last one read back: those of `tickers` and the watermarks
    /// (another writer's entries of other tickers may lie between).
    async fn read_back(&mut self, tickers: &[&str]) -> Vec<Written> {
        let rows: Vec<LogRow> = sqlx::query_as(
            "SELECT id, ticker, extract(epoch FROM window_start)::bigint AS start, price_sum, sample_count,
                    min_price, max_price, open_price, close_price,
                    extract(epoch FROM complete_before)::bigint AS complete_before
             FROM window_changes WHERE id > $1 AND (ticker IS NULL OR ticker = ANY($2)) ORDER BY id",
        )
        .bind(self.seen)
        .bind(tickers)
        .fetch_all(&self.pool)
        .await
        .expect("read back the log");
        self.seen = rows.last().map_or(self.seen, |row| row.id);
        rows.into_iter().map(LogRow::written).collect()
    }
}

/// The newest id of the log, 0 when it is empty.
async fn newest_id(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM window_changes")
        .fetch_one(pool)
        .await
        .expect("newest id")
}

/// A row of `window_changes`, times in Unix seconds.
#[derive(Debug, sqlx::FromRow)]
struct LogRow {
    id: i64,
    ticker: Option<String>,
    start: Option<i64>,
    price_sum: Option<i64>,
    sample_count: Option<i64>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    open_price: Option<i64>,
    close_price: Option<i64>,
    complete_before: Option<i64>,
}

impl LogRow {
    fn written(self) -> Written {
        let entry = match self.ticker {
            Some(ticker) => Entry::Price {
                ticker,
                start: self.start.expect("a price entry has a window"),
                sum: self.price_sum.expect("sum"),
                count: self.sample_count.expect("count"),
                min: self.min_price.expect("min"),
                max: self.max_price.expect("max"),
                open: self.open_price,
                close: self.close_price,
            },
            None => Entry::Watermark,
        };
        Written {
            id: self.id,
            entry,
            complete_before: self.complete_before,
        }
    }
}
