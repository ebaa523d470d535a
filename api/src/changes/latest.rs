//! The latest window of every ticker, in memory: what `GET /v1/get-prices` without parameters
//! returns, kept by the change feed instead of read from the database for every request.
//!
//! It holds what the database path reads, in the same terms: per ticker the row of its newest
//! window (`latest_windows` moves to the greatest window start, never back), and the topic-wide
//! boundary from which `complete` is computed (`windowEnd <= completeBefore`, nothing complete
//! without a boundary). It starts from one consistent read of the database together with the
//! newest change id ([`load`]), then applies every change of the log after that id, in id order
//! ([`Latest::apply`]). Each change carries its row as it stands after its commit and the boundary
//! of that commit, so applying them in order gives exactly the state the database had after the
//! last one.
//!
//! Whether the state may be served (the feed listening and caught up) is the feed's decision; this
//! module only keeps the state and renders it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use chrono::{DateTime, Utc};

use crate::database::Database;
use crate::model::{self, WindowPrice};
use crate::problem::ApiError;
use crate::query::PriceQuery;

use super::log::Change;
use tickpipe_common::otel::opentelemetry::trace::SpanContext;

/// The state after the change with id `position`.
#[derive(Debug)]
pub(crate) struct Latest {
    /// The newest window of each ticker; `complete` is recomputed from `boundary` on render.
    rows: BTreeMap<String, WindowPrice>,
    /// Every window starting before it is final on every partition (`None`: nothing is).
    boundary: Option<DateTime<Utc>>,
    /// The span of the commit that last wrote each ticker's row, when that commit was traced
    /// (unknown for rows read from the database at load).
    commits: BTreeMap<String, SpanContext>,
    /// Rendered once per change, shared by every request.
    snapshot: Arc<Snapshot>,
}

/// The answer to `GET /v1/get-prices` without parameters, as of one change.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The page of the default limit (tickers in byte order, as the database path sorts them with
    /// `COLLATE "C"`), serialized exactly as the database path's `Json` does.
    pub(crate) body: Bytes,
    /// The traced commits that wrote the rows shown, distinct, at most [`MAX_COMMIT_LINKS`]: what a
    /// request answered from this snapshot links to.
    pub(crate) commits: Vec<SpanContext>,
}

/// Most commits a snapshot names (the bound on the links of a `get-prices` span).
pub(crate) const MAX_COMMIT_LINKS: usize = 32;

impl Latest {
    /// The state read from the database: the rows of the latest form and the boundary.
    pub(crate) fn new(
        rows: Vec<WindowPrice>,
        boundary: Option<DateTime<Utc>>,
    ) -> Result<Self, ApiError> {
        let rows = rows
            .into_iter()
            .map(|row| (row.ticker.clone(), row))
            .collect();
        let commits = BTreeMap::new();
        let snapshot = Arc::new(render(&rows, boundary, &commits)?);
        Ok(Self {
            rows,
            boundary,
            commits,
            snapshot,
        })
    }

    /// Applies `changes` (in id order, every one after the last applied) and renders the result.
    pub(crate) fn apply(&mut self, changes: &[Arc<Change>]) -> Result<(), ApiError> {
        if changes.is_empty() {
            return Ok(());
        }
        for change in changes {
            // Every entry carries the boundary of its commit, price entries included.
            self.boundary = change.complete_before;
            let Some(price) = &change.price else {
                continue;
            };
            match self.rows.get_mut(&price.ticker) {
                // `latest_windows` keeps the greatest window start; the row of that window changes
                // in place when a later commit adds to it.
                Some(row) if row.window_start > price.window_start => continue,
                Some(row) => row.clone_from(price),
                None => {
                    self.rows.insert(price.ticker.clone(), price.clone());
                }
            }
            match &change.trace {
                Some(commit) => self.commits.insert(price.ticker.clone(), commit.clone()),
                None => self.commits.remove(&price.ticker),
            };
        }
        self.snapshot = Arc::new(render(&self.rows, self.boundary, &self.commits)?);
        Ok(())
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot)
    }
}

/// The rows with `complete` as of `boundary`, and the default page serialized.
fn render(
    rows: &BTreeMap<String, WindowPrice>,
    boundary: Option<DateTime<Utc>>,
    commits: &BTreeMap<String, SpanContext>,
) -> Result<Snapshot, ApiError> {
    let prices: Vec<WindowPrice> = rows
        .values()
        .map(|row| WindowPrice {
            complete: boundary.is_some_and(|boundary| row.window_end <= boundary),
            ..row.clone()
        })
        .collect();
    let page = model::page(&PriceQuery::latest(), prices);
    let body = serde_json::to_vec(&page).map_err(|error| {
        ApiError::Internal(format!("cannot serialize the latest prices: {error}"))
    })?;
    let mut distinct: Vec<SpanContext> = Vec::new();
    for commit in commits.values() {
        if distinct.len() < MAX_COMMIT_LINKS && !distinct.contains(commit) {
            distinct.push(commit.clone());
        }
    }
    Ok(Snapshot {
        body: Bytes::from(body),
        commits: distinct,
    })
}

/// Reads the state and the newest change id from one snapshot of the database (a repeatable-read
/// transaction, whose first statement fixes what every later one sees). Ids become visible in id
/// order, so that snapshot holds exactly the logged commits up to the id it returns.
#[tracing::instrument(name = "latest_load", skip_all, fields(rows = tracing::field::Empty))]
pub(crate) async fn load(db: &Database) -> Result<(i64, Latest), ApiError> {
    let every = PriceQuery {
        // One more than this is fetched; no table holds that many tickers.
        limit: i64::MAX - 1,
        ..PriceQuery::latest()
    };
    let (newest, boundary, rows) = db
        .run_in_snapshot("latest prices load", |mut tx| async move {
            let newest: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM window_changes")
                .fetch_one(&mut *tx)
                .await?;
            // The boundary as the change log records it and the database path's `complete` uses.
            let boundary = tickpipe_store::boundary::complete_before(&mut *tx).await?;
            let rows = every
                .to_sql()
                .build_query_as::<WindowPrice>()
                .fetch_all(&mut *tx)
                .await?;
            Ok((newest, boundary, rows))
        })
        .await?;
    tracing::Span::current().record("rows", rows.len());
    Ok((newest.unwrap_or(0), Latest::new(rows, boundary)?))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).single().expect("time")
    }

    fn row(ticker: &str, start: i64, samples: i64) -> WindowPrice {
        WindowPrice {
            ticker: ticker.to_owned(),
            window_start: at(start),
            window_end: at(start + 30),
            average_price: 10.5,
            samples,
            min_price: 1,
            max_price: 20,
            open_price: Some(2),
            close_price: None,
            complete: false,
        }
    }

    fn change(id: i64, price: Option<WindowPrice>, boundary: Option<i64>) -> Arc<Change> {
        Arc::new(Change {
            id,
            committed_at: at(0),
            ticker: price.as_ref().map(|p| p.ticker.clone()),
            frame: axum::body::Bytes::new(),
            price,
            complete_before: boundary.map(at),
            trace: None,
        })
    }

    fn shown(latest: &Latest) -> serde_json::Value {
        serde_json::from_slice(&latest.snapshot().body).expect("json")
    }

    #[test]
    fn a_ticker_moves_to_its_newest_window_and_never_back() {
        let mut latest = Latest::new(vec![row("MSFT", 60, 1)], None).expect("new");
        latest
            .apply(&[
                change(1, Some(row("MSFT", 30, 9)), None),
                change(2, Some(row("MSFT", 90, 2)), None),
                change(3, Some(row("MSFT", 90, 5)), None),
                change(4, Some(row("MSFT", 60, 7)), None),
            ])
            .expect("apply");
        let page = shown(&latest);
        assert_eq!(page["prices"][0]["windowStart"], "1970-01-01T00:01:30Z");
        assert_eq!(page["prices"][0]["samples"], 5);
        assert_eq!(page["nextCursor"], serde_json::Value::Null);
    }

    #[test]
    fn complete_follows_the_boundary_of_the_last_change() {
        let mut latest =
            Latest::new(vec![row("A", 0, 1), row("B", 30, 1)], Some(at(30))).expect("new");
        let complete = |latest: &Latest| {
            shown(latest)["prices"]
                .as_array()
                .expect("prices")
                .iter()
                .map(|p| p["complete"].as_bool().expect("bool"))
                .collect::<Vec<_>>()
        };
        assert_eq!(complete(&latest), [true, false]);
        latest.apply(&[change(1, None, Some(60))]).expect("apply");
        assert_eq!(complete(&latest), [true, true]);
        // A price entry carries its commit's boundary too (none: nothing is complete).
        latest
            .apply(&[change(2, Some(row("C", 0, 1)), None)])
            .expect("apply");
        assert_eq!(complete(&latest), [false, false, false]);
    }

    #[test]
    fn tickers_are_in_byte_order_as_the_sql_sorts_them() {
        let latest = Latest::new(
            vec![row("BRKA", 0, 1), row("BRK.B", 0, 1), row("BRK-A", 0, 1)],
            None,
        )
        .expect("new");
        let page = shown(&latest);
        let tickers: Vec<&str> = page["prices"]
            .as_array()
            .expect("prices")
            .iter()
            .map(|p| p["ticker"].as_str().expect("ticker"))
            .collect();
        assert_eq!(tickers, ["BRK-A", "BRK.B", "BRKA"]);
    }

    fn traced(id: i64, price: WindowPrice, commit: u64) -> Arc<Change> {
        let parent = format!("00-{:032x}-{:016x}-01", commit, commit);
        let mut change = Arc::into_inner(change(id, Some(price), None)).expect("unique");
        change.trace = tickpipe_common::otel::parse_traceparent(&parent);
        assert!(change.trace.is_some());
        Arc::new(change)
    }

    #[test]
    fn the_snapshot_names_the_traced_commits_of_its_rows_bounded() {
        let mut latest = Latest::new(vec![row("LOADED", 0, 1)], None).expect("new");
        assert!(latest.snapshot().commits.is_empty(), "unknown at load");
        latest
            .apply(&[traced(1, row("A", 0, 1), 1), traced(2, row("B", 0, 1), 1)])
            .expect("apply");
        assert_eq!(latest.snapshot().commits.len(), 1, "one commit wrote both");
        // A stale window changes nothing; an untraced commit of a row forgets its old one.
        latest
            .apply(&[traced(3, row("A", -30, 1), 2)])
            .expect("apply");
        assert_eq!(latest.snapshot().commits.len(), 1);
        latest
            .apply(&[change(4, Some(row("A", 30, 1)), None)])
            .expect("apply");
        latest
            .apply(&[change(5, Some(row("B", 30, 1)), None)])
            .expect("apply");
        assert!(latest.snapshot().commits.is_empty());
        let many: Vec<_> = (0..40)
            .map(|i| traced(10 + i, row(&format!("T{i:02}"), 0, 1), 100 + i as u64))
            .collect();
        latest.apply(&many).expect("apply");
        assert_eq!(latest.snapshot().commits.len(), MAX_COMMIT_LINKS);
    }
}
