//! Every page, both ways: a descending walk is exactly the reverse of the ascending one, over
//! windows sharing their start across tickers and over bars of every interval.

use serde_json::{json, Value};
use sqlx::PgPool;
use tickpipe_testkit::seed::{self, Totals};

use super::both_ways;
use crate::bars::{entry, iso, reference, sample_rows, seeded, DAY0, INTERVALS};
use crate::helpers::{app, database};

/// 2026-11-27T10:00:00Z.
const T0: i64 = 1_795_773_600;
/// Tickers whose byte order is their order in every collation (upper-case letters only).
const TICKERS: [&str; 5] = ["AAPL", "AMZN", "GOOG", "MSFT", "TSLA"];
const WINDOWS: i64 = 30;

/// Whether ticker `t` has window `w`: every third window holds all five tickers, the others four
/// (a different one missing each time), so the ties on a window start vary and pages split them at
/// every place.
fn has_window(t: i64, w: i64) -> bool {
    w % 3 == 0 || (w * 7 + t * 3) % 5 != 0
}

/// The seeded windows as the API returns them, sorted by (start, ticker).
fn seeded_windows() -> Vec<(i64, &'static str, Value)> {
    let mut windows = Vec::new();
    for w in 0..WINDOWS {
        for (t, ticker) in (0_i64..).zip(TICKERS) {
            if !has_window(t, w) {
                continue;
            }
            let (sum, min, max) = (4000 + 37 * w + t, 900 + w, 1100 + t);
            let start = T0 + w * 30;
            windows.push((
                start,
                ticker,
                json!({
                    "ticker": ticker, "windowStart": iso(start), "windowEnd": iso(start + 30),
                    "averagePrice": sum as f64 / 4.0, "samples": 4, "minPrice": min, "maxPrice": max,
                    "openPrice": min + 1, "closePrice": max - 1, "complete": false,
                }),
            ));
        }
    }
    windows
}

async fn seed_windows(pool: &PgPool) {
    let rows = (0..WINDOWS).flat_map(|w| {
        (0_i64..).zip(TICKERS).filter_map(move |(t, ticker)| {
            let (sum, min, max) = (4000 + 37 * w + t, 900 + w, 1100 + t);
            let start_ms = (T0 + w * 30) * 1000;
            let totals = Totals::new(sum, 4, min, max).open_close(min + 1, max - 1);
            has_window(t, w).then(|| seed::window(ticker, (start_ms, start_ms + 30_000), totals))
        })
    });
    // By a partition that has closed nothing yet: no entry is complete.
    seed::write(pool, 0, 0, rows).await;
}

#[tokio::test]
async fn windows_with_ties_page_both_ways_exactly() {
    let db = database().await;
    seed_windows(&db.pool).await;
    let app = app(&db.pool);
    let windows = seeded_windows();
    let expect = |from: i64, to: i64, tickers: &[&str]| -> Vec<Value> {
        windows
            .iter()
            .filter(|(start, ticker, _)| (from..to).contains(start) && tickers.contains(ticker))
            .map(|(_, _, entry)| entry.clone())
            .collect()
    };
    let end = T0 + WINDOWS * 30;
    let cases: [(String, Vec<Value>, &[usize]); 6] = [
        (
            format!("startTime={T0}"),
            expect(T0, end, &TICKERS),
            &[1, 4, 5, 7, 1000],
        ),
        (
            format!("startTime={}&endTime={}", T0 + 90, T0 + 600),
            expect(T0 + 90, T0 + 600, &TICKERS),
            &[3, 5],
        ),
        (
            format!("endTime={}", iso(T0 + 450)),
            expect(T0, T0 + 450, &TICKERS),
            &[6],
        ),
        // One ticker: the primary key, read backwards.
        (
            format!("startTime={T0}&ticker=MSFT"),
            expect(T0, end, &["MSFT"]),
            &[4],
        ),
        (
            format!("startTime={T0}&ticker=tsla,AMZN"),
            expect(T0, end, &["AMZN", "TSLA"]),
            &[3],
        ),
        // Nothing there: one empty page either way.
        (format!("startTime={end}"), Vec::new(), &[5]),
    ];
    assert_eq!(cases[0].1.len(), 10 * 5 + 20 * 4);
    for (query, expected, limits) in &cases {
        for limit in *limits {
            both_ways(&app, &format!("/v1/get-prices?{query}"), *limit, expected).await;
        }
    }
}

/// An interval's name and width, the page size, the tickers asked for and the range's end.
type BarCase = (
    &'static str,
    i64,
    usize,
    &'static [&'static str],
    Option<i64>,
);

#[tokio::test]
async fn bars_of_every_interval_page_both_ways_exactly() {
    let rows = sample_rows();
    let db = seeded(&rows).await;
    let app = app(&db.pool);
    // From 2026-11-26T22:00:01Z: bars starting at or after it, that is from the next bar start.
    let from = DAY0 - 2 * 3600 + 1;
    let limits = [263, 151, 37, 13, 9, 5, 2, 1];
    let every: &'static [&'static str] = &["AAPL", "MSFT", "OLD"];
    let mut cases: Vec<BarCase> = INTERVALS
        .iter()
        .zip(limits)
        .map(|((name, width), limit)| (*name, *width, limit, every, None))
        .collect();
    cases.extend([
        // Computed from 5-minute bars, two tickers, a closed range.
        (
            "15m",
            900,
            4,
            &["AAPL", "OLD"][..],
            Some(DAY0 + 86_400 + 5 * 3600),
        ),
        // Computed from hourly bars, ending inside a bar.
        ("4h", 14_400, 3, every, Some(DAY0 + 86_400 + 1)),
        // Stored, one ticker.
        ("1h", 3600, 7, &["MSFT"][..], None),
        ("5m", 300, 11, &["OLD"][..], Some(DAY0 + 12 * 3600)),
    ]);
    for (name, width, limit, tickers, end) in cases {
        let end_bar = end.map(|end| (end + width - 1).div_euclid(width) * width);
        let expected: Vec<Value> = reference(&rows, width)
            .iter()
            .filter(|((bar, ticker), _)| {
                *bar >= from && tickers.contains(ticker) && end_bar.is_none_or(|e| *bar < e)
            })
            .map(|((bar, ticker), b)| entry(*bar, width, ticker, b, false))
            .collect();
        assert!(
            expected.len() > 2 * limit,
            "{name}: {} bars",
            expected.len()
        );
        let mut base = format!("/v1/get-prices?interval={name}&startTime={}", iso(from));
        if tickers.len() < every.len() {
            base.push_str(&format!("&ticker={}", tickers.join(",")));
        }
        if let Some(end) = end {
            base.push_str(&format!("&endTime={end}"));
        }
        both_ways(&app, &base, limit, &expected).await;
    }
}
