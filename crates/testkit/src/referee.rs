//! The referee: what `window_prices` must hold for the records of a topic, computed independently
//! of the aggregator (a plain group-by sharing no code with it), the table as stored, and the
//! comparison of the two. The integration tests and the fault drill (`drill_check`) both judge
//! the aggregator with it.
//!
//! The rule it applies is the contract's: every price of a valid record counts once in the window
//! of its record's timestamp; a window's open (close) is the price with the smallest (largest) key
//! (record timestamp, partition, offset). Records arriving after their window was written (late)
//! are not the referee's business: tests that produce them leave them out.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{PgPool, Row};
use tickpipe_common::message::TickerMessage;

/// A window: (ticker, window start in Unix ms).
pub type WindowId = (String, i64);
/// A window's prices: (sum, count, min, max, open, close).
pub type Totals = (i64, i64, i64, i64, i64, i64);
/// Windows and their prices, in order.
pub type Windows = BTreeMap<WindowId, Totals>;

/// (record timestamp ms, partition, offset): orders the prices of a window.
type Key = (i64, i32, i64);

/// Folds records into the windows the aggregator must write.
#[derive(Debug, Clone)]
pub struct Referee {
    width_ms: i64,
    windows: Windows,
    /// The keys of each window's open and close so far.
    keys: BTreeMap<WindowId, (Key, Key)>,
    records: u64,
    invalid: u64,
}

impl Referee {
    /// A referee for windows `width_ms` wide.
    pub fn new(width_ms: i64) -> Self {
        Self {
            width_ms,
            windows: Windows::new(),
            keys: BTreeMap::new(),
            records: 0,
            invalid: 0,
        }
    }

    /// Counts one record; one without a value or with an invalid one is counted as invalid.
    pub fn record(&mut self, partition: i32, offset: i64, timestamp_ms: i64, value: Option<&[u8]>) {
        self.records += 1;
        let Some(message) = value.and_then(|v| TickerMessage::decode(v).ok()) else {
            self.invalid += 1;
            return;
        };
        let start = timestamp_ms.div_euclid(self.width_ms) * self.width_ms;
        let key = (timestamp_ms, partition, offset);
        for tick in message.tickers {
            let id = (tick.name.into_owned(), start);
            let price = tick.price;
            let totals = self
                .windows
                .entry(id.clone())
                .or_insert((0, 0, price, price, price, price));
            let (open, close) = self.keys.entry(id).or_insert((key, key));
            totals.0 += price;
            totals.1 += 1;
            totals.2 = totals.2.min(price);
            totals.3 = totals.3.max(price);
            if key < *open {
                (*open, totals.4) = (key, price);
            }
            if key > *close {
                (*close, totals.5) = (key, price);
            }
        }
    }

    /// Records counted, valid or not.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records without a valid message.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// The expected windows.
    pub fn windows(&self) -> &Windows {
        &self.windows
    }

    pub fn into_windows(self) -> Windows {
        self.windows
    }
}

/// Prices in all the windows hold.
pub fn samples(windows: &Windows) -> i64 {
    windows.values().map(|totals| totals.1).sum()
}

/// The windows `window_prices` holds. An error if a row's average is not its sum over its count,
/// a row lacks its open or close (the aggregator writes both with every window), or a stored bar
/// of a rollup is not the fold of its windows ([`check_rollups`]).
pub async fn stored(pool: &PgPool) -> Result<Windows, sqlx::Error> {
    check_rollups(pool).await?;
    let rows = sqlx::query(
        "SELECT ticker, (extract(epoch FROM window_start) * 1000)::bigint AS start_ms,
                price_sum, sample_count, min_price, max_price, average_price, open_price, close_price
         FROM window_prices",
    )
    .fetch_all(pool)
    .await?;
    let mut windows = Windows::new();
    for row in rows {
        let id: WindowId = (row.try_get("ticker")?, row.try_get("start_ms")?);
        let (sum, count): (i64, i64) = (row.try_get("price_sum")?, row.try_get("sample_count")?);
        let average: f64 = row.try_get("average_price")?;
        let known = |column: &str| -> Result<i64, sqlx::Error> {
            row.try_get::<Option<i64>, _>(column)?
                .ok_or_else(|| broken(format!("{column} of {id:?} is NULL")))
        };
        let totals = (
            sum,
            count,
            row.try_get("min_price")?,
            row.try_get("max_price")?,
            known("open_price")?,
            known("close_price")?,
        );
        if average != sum as f64 / count as f64 {
            return Err(broken(format!(
                "average {average} of {id:?} is not {sum} / {count}"
            )));
        }
        windows.insert(id, totals);
    }
    Ok(windows)
}

/// Every bar of every kept rollup equals the fold of the windows it covers, and every window is
/// in its bars: the stored bars compared, in one snapshot each, with the migration's batch fold
/// (`tickpipe_fold_windows`) of the windows still kept. An error names the first bar that differs.
pub async fn check_rollups(pool: &PgPool) -> Result<(), sqlx::Error> {
    let Some(window_secs) = tickpipe_store::shape::window_secs(pool).await? else {
        return Ok(());
    };
    for rollup in tickpipe_store::history::rollups_for(window_secs) {
        let table = rollup.table;
        let differing: Option<String> = sqlx::query_scalar(&format!(
            "WITH since AS (
                 SELECT COALESCE((SELECT dropped_before FROM history_tables WHERE table_name = 'window_prices'),
                                 '-infinity') AS at
             ), stored AS (
                 SELECT ticker, window_start, window_end, price_sum, sample_count, min_price, max_price,
                        open_key, open_price, close_key, close_price
                 FROM {table} WHERE window_start >= (SELECT at FROM since)
             ), folded AS (
                 SELECT * FROM tickpipe_fold_windows('{table}', (SELECT at FROM since), 'infinity')
             )
             SELECT side || ': ' || row::text FROM (
                 (SELECT 'stored, not folded' AS side, s AS row FROM (SELECT * FROM stored EXCEPT ALL SELECT * FROM folded) s)
                 UNION ALL
                 (SELECT 'folded, not stored', f FROM (SELECT * FROM folded EXCEPT ALL SELECT * FROM stored) f)
             ) d LIMIT 1"
        ))
        .fetch_optional(pool)
        .await?;
        if let Some(row) = differing {
            return Err(sqlx::Error::Protocol(format!(
                "{table} is not the fold of window_prices: {row}"
            )));
        }
    }
    Ok(())
}

fn broken(what: String) -> sqlx::Error {
    sqlx::Error::Protocol(format!("window_prices breaks its contract: {what}"))
}

/// How the stored windows differ from the expected ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Windows in either.
    pub compared: usize,
    /// (window, expected, stored) of every window that differs; `None` where one side lacks it.
    pub differences: Vec<(WindowId, Option<Totals>, Option<Totals>)>,
    /// Prices expected but not stored.
    pub lost: i64,
    /// Prices stored beyond those expected.
    pub twice: i64,
}

/// Compares the windows one by one.
pub fn compare(expected: &Windows, stored: &Windows) -> Comparison {
    let ids: BTreeSet<&WindowId> = expected.keys().chain(stored.keys()).collect();
    let mut comparison = Comparison {
        compared: ids.len(),
        ..Comparison::default()
    };
    for id in ids {
        let (want, got) = (expected.get(id).copied(), stored.get(id).copied());
        if want != got {
            let (want_count, got_count) = (want.map_or(0, |w| w.1), got.map_or(0, |g| g.1));
            comparison.lost += (want_count - got_count).max(0);
            comparison.twice += (got_count - want_count).max(0);
            comparison.differences.push((id.clone(), want, got));
        }
    }
    comparison
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(ticks: &[(&str, i64)]) -> Vec<u8> {
        let body: Vec<String> = ticks
            .iter()
            .map(|(name, price)| format!(r#"{{"name":"{name}","price":{price}}}"#))
            .collect();
        format!(r#"{{"tickers":[{}]}}"#, body.join(",")).into_bytes()
    }

    #[test]
    fn folds_prices_into_windows_with_open_and_close_by_key() {
        let mut referee = Referee::new(1_000);
        referee.record(1, 5, 1_500, Some(&value(&[("AMZN", 30)])));
        referee.record(0, 9, 1_200, Some(&value(&[("AMZN", 10), ("MSFT", 7)])));
        referee.record(0, 10, 1_500, Some(&value(&[("AMZN", 20)])));
        referee.record(0, 11, 2_000, Some(&value(&[("AMZN", 1)])));
        referee.record(0, 12, 1_000, Some(b"{}"));
        referee.record(0, 13, 1_000, None);
        assert_eq!((referee.records(), referee.invalid()), (6, 2));
        let windows = referee.into_windows();
        // At 1_500 the key (1_500, 0, 10) is smaller than (1_500, 1, 5): the close is 30.
        assert_eq!(windows[&("AMZN".into(), 1_000)], (60, 3, 10, 30, 10, 30));
        assert_eq!(windows[&("MSFT".into(), 1_000)], (7, 1, 7, 7, 7, 7));
        assert_eq!(windows[&("AMZN".into(), 2_000)], (1, 1, 1, 1, 1, 1));
        assert_eq!(samples(&windows), 5);
    }

    #[test]
    fn a_comparison_counts_lost_and_doubled_prices() {
        let expected: Windows = [
            (("A".into(), 0), (3, 2, 1, 2, 1, 2)),
            (("B".into(), 0), (5, 1, 5, 5, 5, 5)),
        ]
        .into();
        let stored: Windows = [
            (("A".into(), 0), (6, 4, 1, 2, 1, 2)),
            (("C".into(), 0), (1, 1, 1, 1, 1, 1)),
        ]
        .into();
        let comparison = compare(&expected, &stored);
        assert_eq!(comparison.compared, 3);
        assert_eq!(comparison.differences.len(), 3);
        assert_eq!((comparison.lost, comparison.twice), (1, 3));
        assert!(compare(&expected, &expected).differences.is_empty());
    }
}
