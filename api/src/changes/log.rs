//! Reading the aggregator's change log, `window_changes`, and turning its entries into events.
//!
//! Ids become visible in id order (the aggregator takes them under an advisory lock held to commit),
//! so once an id is visible every smaller id is visible or never will be: a read of `(after, upto]`
//! with `upto` at most an id already seen is complete, and "everything after N" resumes exactly.
//! Entries older than 24 h are pruned (the newest is always kept); every read also returns the
//! oldest id retained, from the same snapshot, so a reader can tell whether entries it still needed
//! were pruned under it.

use std::sync::Arc;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, Postgres, QueryBuilder};
use tickpipe_common::otel::opentelemetry::trace::SpanContext;
use utoipa::ToSchema;

use crate::database::Database;
use crate::model::WindowPrice;
use crate::problem::ApiError;

use super::frame;

/// Most entries one read returns, and the widest id range a subscriber reads at once.
pub(crate) const CHUNK: i64 = 1000;

/// The `data` of a `watermark` event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Watermark {
    /// Every window starting before this instant is final on every Kafka partition: entries with
    /// `windowEnd` at or before it are `complete`.
    pub(crate) complete_before: DateTime<Utc>,
}

/// One entry of the log as an event, built once and shared by every subscriber.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) id: i64,
    pub(crate) committed_at: DateTime<Utc>,
    /// `None` for a watermark entry, which every subscriber receives.
    pub(crate) ticker: Option<String>,
    /// The event as it goes on the wire, rendered once (see [`super::frame`]).
    pub(crate) frame: Bytes,
    /// A price entry's row as `GET /v1/get-prices` returns it after this commit (for the latest
    /// prices in memory); `None` for a watermark.
    pub(crate) price: Option<WindowPrice>,
    /// The boundary of this commit: every window starting before it is final on every partition.
    pub(crate) complete_before: Option<DateTime<Utc>>,
    /// The span of the aggregator's commit that wrote it, when that commit was traced.
    pub(crate) trace: Option<SpanContext>,
}

/// The oldest and the newest id of the log (`None` while it is empty), from one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) oldest: Option<i64>,
    pub(crate) newest: Option<i64>,
}

/// Whether "every entry after `after`" can still be read from a log whose oldest retained id is
/// `oldest`: nothing after it has been pruned (an empty log has pruned nothing; the newest entry is
/// never pruned).
pub(crate) fn retains_after(oldest: Option<i64>, after: i64) -> bool {
    oldest.is_none_or(|oldest| after >= oldest.saturating_sub(1))
}

/// What one read returned.
#[derive(Debug)]
pub(crate) struct Read {
    /// In id order.
    pub(crate) changes: Vec<Arc<Change>>,
    /// The log's oldest retained id in the same snapshot (`None`: the log is empty).
    pub(crate) oldest: Option<i64>,
    /// How many rows the read returned (malformed entries, skipped, included).
    pub(crate) rows: usize,
    /// The id of the last row returned.
    pub(crate) last_row: Option<i64>,
}

pub(crate) async fn bounds(db: &Database) -> Result<Bounds, ApiError> {
    let (oldest, newest): (Option<i64>, Option<i64>) = db
        .run("change log bounds", |mut connection| async move {
            sqlx::query_as("SELECT min(id), max(id) FROM window_changes")
                .fetch_one(&mut *connection)
                .await
        })
        .await?;
    Ok(Bounds { oldest, newest })
}

/// The entries with `after < id <= upto`, at most [`CHUNK`], in id order; with `tickers`, only
/// theirs and the watermarks. One statement, so the oldest retained id comes from the same snapshot.
pub(crate) async fn read(
    db: &Database,
    after: i64,
    upto: i64,
    tickers: Option<&[String]>,
) -> Result<Read, ApiError> {
    let mut sql = QueryBuilder::<Postgres>::new(
        "SELECT o.oldest, c.id, c.committed_at, c.ticker, c.window_start, c.window_end, c.price_sum, \
         c.sample_count, c.min_price, c.max_price, c.open_price, c.close_price, c.complete_before, c.trace_parent \
         FROM (SELECT min(id) AS oldest FROM window_changes) o \
         LEFT JOIN LATERAL (SELECT * FROM window_changes w WHERE w.id > ",
    );
    sql.push_bind(after).push(" AND w.id <= ").push_bind(upto);
    if let Some(tickers) = tickers {
        sql.push(" AND (w.ticker IS NULL OR w.ticker = ANY(")
            .push_bind(tickers.to_vec())
            .push("))");
    }
    sql.push(" ORDER BY w.id LIMIT ")
        .push_bind(CHUNK)
        .push(") c ON TRUE ORDER BY c.id");
    let rows: Vec<LogRow> = db
        .run("change log read", |mut connection| async move {
            sql.build_query_as::<LogRow>()
                .fetch_all(&mut *connection)
                .await
        })
        .await?;
    let oldest = rows.first().and_then(|row| row.oldest);
    let entries: Vec<&LogRow> = rows.iter().filter(|row| row.id.is_some()).collect();
    Ok(Read {
        rows: entries.len(),
        last_row: entries.last().and_then(|row| row.id),
        changes: entries.into_iter().filter_map(LogRow::change).collect(),
        oldest,
    })
}

/// A row of [`read`]: the oldest id, then one entry of the log (all `NULL` when none matched).
#[derive(Debug, FromRow)]
struct LogRow {
    oldest: Option<i64>,
    id: Option<i64>,
    committed_at: Option<DateTime<Utc>>,
    ticker: Option<String>,
    window_start: Option<DateTime<Utc>>,
    window_end: Option<DateTime<Utc>>,
    price_sum: Option<i64>,
    sample_count: Option<i64>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    open_price: Option<i64>,
    close_price: Option<i64>,
    complete_before: Option<DateTime<Utc>>,
    trace_parent: Option<String>,
}

impl LogRow {
    /// The entry as an event: a price entry exactly as `GET /v1/get-prices` returns the window
    /// after that commit, or a watermark. An entry missing what its kind needs (the aggregator never
    /// writes one) is logged and skipped.
    fn change(&self) -> Option<Arc<Change>> {
        let (Some(id), Some(committed_at)) = (self.id, self.committed_at) else {
            return None;
        };
        let price = self.ticker.as_deref().and_then(|ticker| self.price(ticker));
        let (kind, data) = match (&self.ticker, &price) {
            (Some(_), price) => ("price", price.as_ref().map(serde_json::to_string)),
            (None, _) => (
                "watermark",
                self.complete_before
                    .map(|complete_before| serde_json::to_string(&Watermark { complete_before })),
            ),
        };
        let data = match data {
            Some(Ok(data)) => data,
            Some(Err(error)) => {
                tracing::error!(id, %error, "cannot serialize a change log entry; skipping it");
                return None;
            }
            None => {
                tracing::warn!(
                    id,
                    kind,
                    "change log entry lacks the columns of its kind; skipping it"
                );
                return None;
            }
        };
        Some(Arc::new(Change {
            id,
            committed_at,
            ticker: self.ticker.clone(),
            frame: frame::event(kind, id, &data),
            price,
            complete_before: self.complete_before,
            trace: self
                .trace_parent
                .as_deref()
                .and_then(tickpipe_common::otel::parse_traceparent),
        }))
    }

    fn price(&self, ticker: &str) -> Option<WindowPrice> {
        let (window_start, window_end) = (self.window_start?, self.window_end?);
        let (price_sum, sample_count) = (self.price_sum?, self.sample_count?);
        if sample_count <= 0 {
            return None;
        }
        Some(WindowPrice {
            ticker: ticker.to_owned(),
            window_start,
            window_end,
            // As `window_prices.average_price` is generated: price_sum::float8 / sample_count.
            average_price: price_sum as f64 / sample_count as f64,
            samples: sample_count,
            min_price: self.min_price?,
            max_price: self.max_price?,
            open_price: self.open_price,
            close_price: self.close_price,
            // As `GET /v1/get-prices` decides it: every window before the boundary is final.
            complete: self
                .complete_before
                .is_some_and(|boundary| window_end <= boundary),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_retained_unless_something_after_it_was_pruned() {
        assert!(retains_after(None, 0));
        assert!(retains_after(None, 7));
        assert!(retains_after(Some(1), 0));
        assert!(retains_after(Some(100), 99));
        assert!(retains_after(Some(100), 150));
        assert!(!retains_after(Some(100), 98));
        assert!(!retains_after(Some(100), 0));
    }
}
