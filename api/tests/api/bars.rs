//! Issue 12, market bars: `interval` rolls windows up into bars, every entry has an open, a close
//! and a `complete` flag. Checked against an independent reference that folds the rows the test
//! seeds (through the aggregator's write path, or in the schema before open and close for windows
//! without them) on the real PostgreSQL.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};
use sqlx::PgPool;
use tickpipe_common::config::Layers;
use tickpipe_common::service::ServiceSettings;

use tickpipe_store::PriceKey;
use tickpipe_testkit::rng::Rng;
use tickpipe_testkit::seed::{self, LegacyWindow, Totals};

use crate::helpers::{app, call, database, get, legacy_database, TestDb};

/// 2026-11-27T00:00:00Z.
pub(crate) const DAY0: i64 = 1_795_737_600;
const WINDOW: i64 = 30;
/// Every interval the default window accepts, in seconds.
pub(crate) const INTERVALS: [(&str, i64); 8] = [
    ("30s", 30),
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("30m", 1800),
    ("1h", 3600),
    ("4h", 14_400),
    ("1d", 86_400),
];

/// (record timestamp ms, partition, offset): what orders prices inside a window.
type Key = [i64; 3];

/// One `window_prices` row: what the aggregator merged from every partition for one window.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    ticker: &'static str,
    /// Window start, Unix seconds.
    start: i64,
    sum: i64,
    count: i64,
    min: i64,
    max: i64,
    /// `None`: written before open and close were recorded (NULL columns).
    open: Option<(Key, i64)>,
    close: Option<(Key, i64)>,
}

/// A window of `ticker` starting at `start` holding `count` prices from up to three partitions,
/// each price with its own key: the open and close are those of the smallest and largest key.
fn window_row(rng: &mut Rng, ticker: &'static str, start: i64, known: bool) -> Row {
    let count = 1 + rng.between(0, 5);
    let mut prices: Vec<(Key, i64)> = (0..count)
        .map(|_| {
            let key = [
                start * 1000 + rng.between(0, WINDOW * 1000 - 1),
                rng.between(0, 2),
                rng.between(0, 999_999),
            ];
            (key, 100 + rng.between(0, 99_999))
        })
        .collect();
    prices.sort();
    let values = prices.iter().map(|(_, price)| *price);
    Row {
        ticker,
        start,
        sum: values.clone().sum(),
        count,
        min: values.clone().min().expect("a price"),
        max: values.max().expect("a price"),
        open: known.then(|| prices[0]),
        close: known.then(|| prices[prices.len() - 1]),
    }
}

/// Two and a half days of sparse windows for three tickers: clusters of windows with gaps inside
/// bars and whole empty bars. `OLD` has some windows from before open and close were recorded.
pub(crate) fn sample_rows() -> Vec<Row> {
    let mut rng = Rng::new(0x0ba2_5eed_1234_5678);
    let mut rows = Vec::new();
    let first = DAY0 - 3 * 3600;
    for ticker in ["AAPL", "MSFT", "OLD"] {
        // 5-minute blocks: about a third hold windows, each window of such a block half the time.
        for block in 0..(60 * 24 * 5 / 2 / 5) {
            if rng.between(0, 2) != 0 {
                continue;
            }
            for w in 0..10 {
                if rng.between(0, 1) == 0 {
                    continue;
                }
                let start = first + block * 300 + w * WINDOW;
                let known = ticker != "OLD" || rng.between(0, 3) != 0;
                rows.push(window_row(&mut rng, ticker, start, known));
            }
        }
    }
    rows
}

/// A database holding `rows` as the aggregator leaves them: the windows with unknown open and
/// close written before migration 4 recorded them (in the schema of that time), the others through
/// the store's write path by partition 0, which has closed nothing yet (nothing is complete).
pub(crate) async fn seeded(rows: &[Row]) -> TestDb {
    let legacy: Vec<LegacyWindow> = rows
        .iter()
        .filter(|r| r.open.is_none())
        .map(|r| {
            assert!(r.close.is_none(), "open and close are unknown together");
            LegacyWindow {
                ticker: r.ticker.to_owned(),
                start_ms: r.start * 1000,
                end_ms: (r.start + WINDOW) * 1000,
                sum: r.sum,
                count: r.count,
                min: r.min,
                max: r.max,
            }
        })
        .collect();
    let db = if legacy.is_empty() {
        database().await
    } else {
        legacy_database(&legacy).await
    };
    let key = |[timestamp_ms, partition, offset]: Key| PriceKey {
        timestamp_ms,
        partition: partition as i32,
        offset,
    };
    let known = rows.iter().filter_map(|r| {
        let (open, close) = (r.open?, r.close?);
        let totals = Totals::new(r.sum, r.count, r.min, r.max).open_close(open.1, close.1);
        Some(seed::keyed(
            r.ticker,
            (r.start * 1000, (r.start + WINDOW) * 1000),
            totals,
            (key(open.0), key(close.0)),
        ))
    });
    seed::write(&db.pool, 0, 0, known).await;
    db
}

/// Sets a partition's boundary: every window starting before `closed_before` (Unix seconds) is
/// final for that partition. Through the store, as the aggregator stores progress: in one
/// transaction with the change log, which tells the API's stream and in-memory latest prices.
async fn close_before(pool: &PgPool, partition: i32, closed_before: i64) {
    seed::close_before(pool, partition, closed_before * 1000).await;
}

/// One bar of the reference: the rows folded as the contract says.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    sum: i64,
    count: i64,
    min: i64,
    max: i64,
    /// `None` once a window with an unknown open (close) is in the bar.
    open: Option<(Key, i64)>,
    close: Option<(Key, i64)>,
}

/// The bar of `row` for bars of `width` seconds, aligned to the epoch.
fn bar_of(start: i64, width: i64) -> i64 {
    start.div_euclid(width) * width
}

/// Folds `rows` into bars of `width` seconds, keyed and sorted by (bar start, ticker).
pub(crate) fn reference(rows: &[Row], width: i64) -> BTreeMap<(i64, &'static str), Bar> {
    let mut bars: BTreeMap<(i64, &'static str), (Bar, bool, bool)> = BTreeMap::new();
    for row in rows {
        let entry = bars
            .entry((bar_of(row.start, width), row.ticker))
            .or_insert_with(|| {
                (
                    Bar {
                        sum: 0,
                        count: 0,
                        min: i64::MAX,
                        max: i64::MIN,
                        open: None,
                        close: None,
                    },
                    true,
                    true,
                )
            });
        let (bar, open_known, close_known) = entry;
        bar.sum += row.sum;
        bar.count += row.count;
        bar.min = bar.min.min(row.min);
        bar.max = bar.max.max(row.max);
        *open_known &= row.open.is_some();
        *close_known &= row.close.is_some();
        bar.open = match (bar.open, row.open) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        bar.close = match (bar.close, row.close) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    bars.into_iter()
        .map(|(key, (mut bar, open_known, close_known))| {
            if !open_known {
                bar.open = None;
            }
            if !close_known {
                bar.close = None;
            }
            (key, bar)
        })
        .collect()
}

pub(crate) fn iso(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The entry the API must return for a reference bar.
pub(crate) fn entry(start: i64, width: i64, ticker: &str, bar: &Bar, complete: bool) -> Value {
    json!({
        "ticker": ticker,
        "windowStart": iso(start),
        "windowEnd": iso(start + width),
        "averagePrice": bar.sum as f64 / bar.count as f64,
        "samples": bar.count,
        "minPrice": bar.min,
        "maxPrice": bar.max,
        "openPrice": bar.open.map(|(_, price)| price),
        "closePrice": bar.close.map(|(_, price)| price),
        "complete": complete,
    })
}

/// `GET uri` through `app`, which must answer 200: the page's entries and next cursor.
pub(crate) async fn page(app: &Router, uri: &str) -> (Vec<Value>, Option<String>) {
    let answer = call(app, "GET", uri).await;
    assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.body);
    let prices = answer.body["prices"].as_array().expect("prices").clone();
    let next = answer.body["nextCursor"].as_str().map(str::to_owned);
    (prices, next)
}

/// Every page of `uri` (which has a `?`), following the cursors.
async fn all_pages(app: &Router, uri: &str) -> (Vec<Value>, usize) {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut request = uri.to_owned();
        if let Some(c) = &cursor {
            request.push_str(&format!("&cursor={c}"));
        }
        let (prices, next) = page(app, &request).await;
        pages += 1;
        assert!(pages < 10_000, "{uri}: endless pagination");
        entries.extend(prices);
        match next {
            Some(next) => cursor = Some(next),
            None => return (entries, pages),
        }
    }
}

#[tokio::test]
async fn bars_of_every_interval_match_the_reference() {
    let rows = sample_rows();
    let db = seeded(&rows).await;
    let app = app(&db.pool);
    let (lowest, highest) = (
        rows.iter().map(|r| r.start).min().expect("rows"),
        rows.iter().map(|r| r.start).max().expect("rows"),
    );
    for (name, width) in INTERVALS {
        let bars = reference(&rows, width);
        // A bar has several windows, and some bars have empty windows between theirs.
        if width >= 300 {
            let windows_in = |start: i64, ticker: &str| {
                rows.iter()
                    .filter(|r| r.ticker == ticker && bar_of(r.start, width) == start)
                    .count()
            };
            assert!(bars
                .keys()
                .any(|(start, ticker)| windows_in(*start, ticker) > 1));
            assert!(bars
                .keys()
                .any(|(start, ticker)| (windows_in(*start, ticker) as i64) < width / WINDOW));
        }
        let everything: Vec<Value> = bars
            .iter()
            .map(|((start, ticker), bar)| entry(*start, width, ticker, bar, false))
            .collect();
        let uri = format!(
            "/v1/get-prices?interval={name}&startTime={}&endTime={}&limit=10000",
            bar_of(lowest, width),
            highest + 1
        );
        let (prices, next) = page(&app, &uri).await;
        assert_eq!(next, None, "{uri}");
        assert_eq!(prices.len(), everything.len(), "{uri}");
        for (got, want) in prices.iter().zip(&everything) {
            assert_eq!(got, want, "{uri}");
        }

        // Bounds that are not aligned: the bars starting inside them, whatever windows they hold.
        let (start, end) = (DAY0 + 1234, DAY0 + 86_400 + 777);
        let inside: Vec<Value> = bars
            .iter()
            .filter(|((bar, _), _)| (start..end).contains(bar))
            .map(|((bar, ticker), b)| entry(*bar, width, ticker, b, false))
            .collect();
        let uri =
            format!("/v1/get-prices?interval={name}&startTime={start}&endTime={end}&limit=10000");
        assert_eq!(page(&app, &uri).await.0, inside, "{uri}");
        let uri = format!(
            "/v1/get-prices?interval={name}&ticker=msft,OLD&endTime={}&limit=10000",
            iso(end)
        );
        let before: Vec<Value> = bars
            .iter()
            .filter(|((bar, ticker), _)| *bar < end && *ticker != "AAPL")
            .map(|((bar, ticker), b)| entry(*bar, width, ticker, b, false))
            .collect();
        assert_eq!(page(&app, &uri).await.0, before, "{uri}");

        // Without times: the bar holding each ticker's latest window.
        let latest: Vec<Value> = ["AAPL", "MSFT", "OLD"]
            .iter()
            .map(|ticker| {
                let last = rows
                    .iter()
                    .filter(|r| r.ticker == *ticker)
                    .map(|r| r.start)
                    .max()
                    .expect("rows");
                let bar = bar_of(last, width);
                entry(bar, width, ticker, &bars[&(bar, *ticker)], false)
            })
            .collect();
        let uri = format!("/v1/get-prices?interval={name}");
        assert_eq!(page(&app, &uri).await.0, latest, "{uri}");
    }
    // The window's own interval is the default: the same entries as without `interval`.
    for uri in ["/v1/get-prices?startTime=0&limit=300", "/v1/get-prices"] {
        assert_eq!(
            page(&app, uri).await,
            page(
                &app,
                &format!(
                    "{uri}{}interval=30s",
                    if uri.contains('?') { "&" } else { "?" }
                )
            )
            .await,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn pagination_visits_every_bar_exactly_once() {
    let rows = sample_rows();
    let db = seeded(&rows).await;
    let app = app(&db.pool);
    // From 2026-11-26T22:00:01Z: bars starting at or after it, that is from the next bar start.
    let from = DAY0 - 2 * 3600 + 1;
    for (name, width, limit, tickers, end) in [
        ("5m", 300, 7, &["AAPL", "MSFT", "OLD"][..], None),
        ("1h", 3600, 3, &["AAPL"][..], None),
        ("1h", 3600, 5, &["AAPL", "OLD"][..], None),
        (
            "4h",
            14_400,
            2,
            &["AAPL", "MSFT", "OLD"][..],
            Some(DAY0 + 86_400 + 5 * 3600),
        ),
        ("1d", 86_400, 1, &["AAPL", "MSFT", "OLD"][..], None),
        ("30s", 30, 97, &["MSFT"][..], None),
    ] {
        let expected: Vec<Value> = reference(&rows, width)
            .iter()
            .filter(|((bar, ticker), _)| {
                *bar >= from && tickers.contains(ticker) && end.is_none_or(|end| *bar < end)
            })
            .map(|((bar, ticker), b)| entry(*bar, width, ticker, b, false))
            .collect();
        assert!(
            expected.len() > 2 * limit,
            "{name}: {} bars",
            expected.len()
        );
        let mut base = format!("/v1/get-prices?interval={name}&startTime={}", iso(from));
        if tickers.len() < 3 {
            base.push_str(&format!("&ticker={}", tickers.join(",")));
        }
        if let Some(end) = end {
            base.push_str(&format!("&endTime={end}"));
        }
        let (paged, pages) = all_pages(&app, &format!("{base}&limit={limit}")).await;
        assert_eq!(pages, expected.len().div_ceil(limit), "{base} by {limit}");
        assert_eq!(paged.len(), expected.len(), "{base} by {limit}");
        for (got, want) in paged.iter().zip(&expected) {
            assert_eq!(got, want, "{base} by {limit}: every bar once, in order");
        }
    }
    // The latest bars, one ticker a page.
    let (latest, pages) = all_pages(&app, "/v1/get-prices?interval=1h&limit=1").await;
    assert_eq!(pages, 3);
    assert_eq!(latest, page(&app, "/v1/get-prices?interval=1h").await.0);
}

#[tokio::test]
async fn complete_flips_once_every_partition_has_closed_the_bar() {
    let hour = DAY0 + 10 * 3600;
    let mut rng = Rng::new(7);
    let rows: Vec<Row> = (0..240)
        .map(|w| window_row(&mut rng, "AMZN", hour + w * WINDOW, true))
        .collect();
    let db = seeded(&rows).await;
    let app = app(&db.pool);
    let flags = |prices: &[Value]| -> Vec<bool> {
        prices
            .iter()
            .map(|e| e["complete"].as_bool().expect("complete is a boolean"))
            .collect()
    };
    let bars_uri = format!("/v1/get-prices?interval=1h&startTime={hour}");
    let windows_uri = format!(
        "/v1/get-prices?startTime={}&endTime={}",
        hour + 3600 - 90,
        hour + 3600 + 60
    );
    // The one partition that has written has closed nothing yet: nothing is complete.
    assert_eq!(flags(&page(&app, &bars_uri).await.0), [false, false]);

    // Two partitions past the first bar's end, the third one window short of it.
    close_before(&db.pool, 0, hour + 3600).await;
    close_before(&db.pool, 1, hour + 2 * 3600).await;
    close_before(&db.pool, 2, hour + 3600 - 30).await;
    assert_eq!(flags(&page(&app, &bars_uri).await.0), [false, false]);
    // Window by window: complete up to the third partition's boundary.
    assert_eq!(
        flags(&page(&app, &windows_uri).await.0),
        [true, true, false, false, false]
    );
    assert_eq!(
        flags(&page(&app, "/v1/get-prices?interval=5m&startTime=2026-11-27T10:50:00Z&endTime=2026-11-27T11:05:00Z").await.0),
        [true, false, false]
    );

    // The last partition closes the bar: now it is final, the next bar is not.
    close_before(&db.pool, 2, hour + 3600).await;
    let (bars, _) = page(&app, &bars_uri).await;
    assert_eq!(flags(&bars), [true, false]);
    assert_eq!(
        flags(&page(&app, &windows_uri).await.0),
        [true, true, true, false, false]
    );
    // The values a complete bar reports are those of the reference.
    let reference = reference(&rows, 3600);
    assert_eq!(
        bars[0],
        entry(hour, 3600, "AMZN", &reference[&(hour, "AMZN")], true)
    );
    assert_eq!(
        bars[1],
        entry(
            hour + 3600,
            3600,
            "AMZN",
            &reference[&(hour + 3600, "AMZN")],
            false
        )
    );

    // The latest form says the same of the bar it returns.
    assert_eq!(
        flags(&page(&app, "/v1/get-prices?interval=1h").await.0),
        [false]
    );
    assert_eq!(
        flags(&page(&app, "/v1/get-prices?interval=1d").await.0),
        [false]
    );
    for partition in 0..3 {
        close_before(&db.pool, partition, DAY0 + 86_400).await;
    }
    assert_eq!(
        flags(&page(&app, "/v1/get-prices?interval=1h").await.0),
        [true]
    );
    assert_eq!(
        flags(&page(&app, "/v1/get-prices?interval=1d").await.0),
        [true]
    );
    assert_eq!(flags(&page(&app, "/v1/get-prices").await.0), [true]);
    // A fourth partition that has closed nothing yet holds everything back again.
    close_before(&db.pool, 3, 0).await;
    assert_eq!(
        flags(&page(&app, "/v1/get-prices?interval=1d").await.0),
        [false]
    );
    assert_eq!(flags(&page(&app, "/v1/get-prices").await.0), [false]);
}

#[tokio::test]
async fn unknown_open_and_close_are_null_in_windows_and_in_their_bars() {
    let mut rng = Rng::new(99);
    let start = DAY0 + 3600;
    let mut rows = Vec::new();
    // First hour: one window of three without open and close. Second hour: all known.
    for (w, known) in [(0, true), (1, false), (2, true), (120, true), (121, true)] {
        rows.push(window_row(&mut rng, "AMZN", start + w * WINDOW, known));
    }
    let db = seeded(&rows).await;
    let app = app(&db.pool);
    let (windows, _) = page(&app, &format!("/v1/get-prices?startTime={start}")).await;
    let opens: Vec<Value> = windows.iter().map(|e| e["openPrice"].clone()).collect();
    let closes: Vec<Value> = windows.iter().map(|e| e["closePrice"].clone()).collect();
    let known = |r: &Row, pick: fn(&Row) -> Option<(Key, i64)>| json!(pick(r).map(|(_, p)| p));
    assert_eq!(
        opens,
        rows.iter()
            .map(|r| known(r, |r| r.open))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        closes,
        rows.iter()
            .map(|r| known(r, |r| r.close))
            .collect::<Vec<_>>()
    );
    assert_eq!(opens[1], Value::Null);

    let (bars, _) = page(
        &app,
        &format!("/v1/get-prices?interval=1h&startTime={start}"),
    )
    .await;
    assert_eq!(bars.len(), 2);
    assert_eq!(
        (&bars[0]["openPrice"], &bars[0]["closePrice"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(bars[1]["openPrice"], json!(rows[3].open.map(|(_, p)| p)));
    assert_eq!(bars[1]["closePrice"], json!(rows[4].close.map(|(_, p)| p)));
    // Everything else of the bar is known.
    assert_eq!(
        bars[0]["samples"],
        json!(rows[..3].iter().map(|r| r.count).sum::<i64>())
    );
    let reference = reference(&rows, 3600);
    for (bar, got) in [start, start + 3600].into_iter().zip(&bars) {
        assert_eq!(
            got,
            &entry(bar, 3600, "AMZN", &reference[&(bar, "AMZN")], false)
        );
    }
    // Through the latest form: the minute of the last two windows, known, then forgotten.
    let (latest, _) = page(&app, "/v1/get-prices?interval=1m&ticker=AMZN").await;
    assert_eq!(latest[0]["openPrice"], json!(rows[3].open.map(|(_, p)| p)));
    assert_eq!(
        latest[0]["closePrice"],
        json!(rows[4].close.map(|(_, p)| p))
    );
    // The same windows with the last two written before open and close were recorded.
    let mut forgotten = rows.clone();
    for row in &mut forgotten[3..] {
        (row.open, row.close) = (None, None);
    }
    let db = seeded(&forgotten).await;
    let (latest, _) = page(
        &crate::helpers::app(&db.pool),
        "/v1/get-prices?interval=1m&ticker=AMZN",
    )
    .await;
    assert_eq!(
        (&latest[0]["openPrice"], &latest[0]["closePrice"]),
        (&Value::Null, &Value::Null)
    );
}

/// The application as the binary builds it with `AGGREGATOR_WINDOW_SECS=secs`.
fn app_with_window(pool: &PgPool, secs: &str) -> Router {
    crate::helpers::logs();
    let layers = Layers::from_vars([
        ("AGGREGATOR_WINDOW_SECS".to_owned(), secs.to_owned()),
        // Many requests from one client: without rate limits.
        ("API_RATE_LIMIT_RPS".to_owned(), "0".to_owned()),
    ])
    .expect("layers");
    let settings = tickpipe_api::settings::Settings::load(&layers).expect("settings");
    tickpipe_api::testing::app_with_settings(pool.clone(), &settings.api).expect("app")
}

#[tokio::test]
async fn every_bad_interval_is_a_400_listing_the_accepted_values() {
    let db = seeded(&sample_rows()).await;
    let app = app(&db.pool);
    let accepted = "30s, 1m, 5m, 15m, 30m, 1h, 4h, 1d";
    for value in [
        "0s", "7m", "1w", "30S", "", "60s", "1H", "%201h", "2h", "1d%00", "-1h",
    ] {
        for rest in ["", "&startTime=0"] {
            let uri = format!("/v1/get-prices?interval={value}{rest}");
            let answer = call(&app, "GET", &uri).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{uri}: {}",
                answer.body
            );
            assert_eq!(answer.content_type, "application/problem+json", "{uri}");
            let detail = answer.body["detail"].as_str().expect("detail");
            assert!(
                detail.contains("interval") && detail.contains(accepted),
                "{uri}: {detail}"
            );
        }
    }
    let answer = call(&app, "GET", "/v1/get-prices?interval=1h&interval=1h").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body["detail"]
        .as_str()
        .expect("detail")
        .contains("\"interval\" is given more than once"));

    // A cursor continues only a query of its own form and interval.
    let cursor = |uri: &str| {
        let app = app.clone();
        let uri = uri.to_owned();
        async move {
            page(&app, &uri)
                .await
                .1
                .unwrap_or_else(|| panic!("{uri}: a next page"))
        }
    };
    let hourly_range = cursor("/v1/get-prices?interval=1h&startTime=0&limit=1").await;
    let hourly_latest = cursor("/v1/get-prices?interval=1h&limit=1").await;
    let windows_range = cursor("/v1/get-prices?startTime=0&limit=1").await;
    let windows_latest = cursor("/v1/get-prices?limit=1").await;
    for (cursor, uri) in [
        (&hourly_range, "/v1/get-prices?interval=5m&startTime=0"),
        (&hourly_range, "/v1/get-prices?interval=1d&startTime=0"),
        (&hourly_range, "/v1/get-prices?startTime=0"),
        (&hourly_range, "/v1/get-prices?interval=30s&startTime=0"),
        (&hourly_range, "/v1/get-prices?interval=1h"),
        (&hourly_latest, "/v1/get-prices?interval=5m"),
        (&hourly_latest, "/v1/get-prices"),
        (&hourly_latest, "/v1/get-prices?interval=1h&startTime=0"),
        (&windows_range, "/v1/get-prices?interval=1h&startTime=0"),
        (&windows_latest, "/v1/get-prices?interval=1h"),
    ] {
        let uri = format!("{uri}&cursor={cursor}").replacen("prices&", "prices?", 1);
        let answer = call(&app, "GET", &uri).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            answer.body
        );
        assert_eq!(
            answer.body["detail"],
            "cursor belongs to a different kind of query; repeat the parameters of the request that returned it",
            "{uri}"
        );
    }
    for (cursor, uri) in [
        (&hourly_range, "/v1/get-prices?interval=1h&startTime=0"),
        (&hourly_latest, "/v1/get-prices?interval=1h"),
        (&windows_range, "/v1/get-prices?interval=30s&startTime=0"),
        (&windows_latest, "/v1/get-prices?interval=30s"),
    ] {
        page(&app, &format!("{uri}&cursor={cursor}")).await;
    }

    // With a 60-second window, 30 seconds is no multiple of it, and one minute is the default.
    let minute = app_with_window(&db.pool, "60");
    let answer = call(&minute, "GET", "/v1/get-prices?interval=30s").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let detail = answer.body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("1m, 5m, 15m, 30m, 1h, 4h, 1d") && !detail.contains("30s,"),
        "{detail}"
    );
    let (one_minute, _) = page(
        &minute,
        "/v1/get-prices?interval=1m&startTime=0&limit=10000",
    )
    .await;
    let (default, _) = page(&minute, "/v1/get-prices?startTime=0&limit=10000").await;
    assert_eq!(
        one_minute, default,
        "with a 60 s window, 1m is the stored windows themselves"
    );
    let (five, _) = page(&minute, "/v1/get-prices?interval=5m&startTime=0&limit=1").await;
    assert_eq!(five.len(), 1);
}

#[tokio::test]
async fn the_openapi_document_lists_the_intervals_of_the_configured_window() {
    let db = database().await;
    let interval = |doc: &Value| -> Value {
        doc["paths"]["/v1/get-prices"]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "interval")
            .expect("interval documented")
            .clone()
    };
    let (status, _, doc) = get(&db.pool, "/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let param = interval(&doc);
    assert_eq!(param["schema"]["type"], "string");
    assert_eq!(
        param["schema"]["enum"],
        json!(["30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d"])
    );
    assert_eq!(param["schema"]["default"], "30s");
    let entry = &doc["components"]["schemas"]["WindowPrice"];
    for field in ["openPrice", "closePrice", "complete"] {
        assert!(entry["properties"][field].is_object(), "{field}: {entry}");
    }
    assert!(entry["required"]
        .as_array()
        .expect("required")
        .contains(&json!("complete")));

    let minute = app_with_window(&db.pool, "60");
    let answer = call(&minute, "GET", "/v1/openapi.json").await;
    let param = interval(&answer.body);
    assert_eq!(
        param["schema"]["enum"],
        json!(["1m", "5m", "15m", "30m", "1h", "4h", "1d"])
    );
    assert_eq!(param["schema"]["default"], "1m");
}

/// The API's read-only role may read the partitions' boundaries (a column grant), so `complete`
/// and bars work for it.
#[tokio::test]
async fn the_reader_role_sees_bars_and_complete() {
    let mut rng = Rng::new(5);
    let rows: Vec<Row> = (0..4)
        .map(|w| window_row(&mut rng, "AMZN", DAY0 + w * WINDOW, true))
        .collect();
    let db = seeded(&rows).await;
    close_before(&db.pool, 0, DAY0 + 60).await;
    let role = tickpipe_testkit::unique_name("api");
    sqlx::query(&format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD 'reader' IN ROLE tickpipe_reader"
    ))
    .execute(&db.pool)
    .await
    .expect("create role");
    let url = db
        .url
        .replacen("postgres:postgres@", &format!("{role}:reader@"), 1);
    let settings = tickpipe_common::config::DatabaseSettings::direct(url, 2);
    let reader = tickpipe_common::db::read_only_pool(&settings).expect("pool");
    let app = app(&reader);
    let (windows, _) = page(&app, "/v1/get-prices?startTime=0").await;
    let flags: Vec<&Value> = windows.iter().map(|e| &e["complete"]).collect();
    assert_eq!(
        flags,
        [&json!(true), &json!(true), &json!(false), &json!(false)]
    );
    let (bars, _) = page(&app, "/v1/get-prices?interval=1m&startTime=0").await;
    let reference = reference(&rows, 60);
    assert_eq!(
        bars[0],
        entry(DAY0, 60, "AMZN", &reference[&(DAY0, "AMZN")], true)
    );
    assert_eq!(
        bars[1],
        entry(
            DAY0 + 60,
            60,
            "AMZN",
            &reference[&(DAY0 + 60, "AMZN")],
            false
        )
    );
    let (latest, _) = page(&app, "/v1/get-prices?interval=1h").await;
    assert_eq!(latest.len(), 1);
}
