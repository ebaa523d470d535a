//! Windows committed between page requests, in either order: the rest of the walk shows every
//! entry still ahead of its cursor (a new one in its place, a changed one with its new values), none
//! behind it, and nothing twice — for windows and for bars computed at query time.

use std::collections::BTreeSet;

use serde_json::Value;
use sqlx::PgPool;
use tickpipe_store::WindowRow;
use tickpipe_testkit::seed::{self, Totals};

use super::{key, page};
use crate::bars::iso;
use crate::helpers::{app, database};

/// 2026-11-27T10:00:00Z.
const T0: i64 = 1_795_773_600;
const TICKERS: [&str; 3] = ["AMZN", "MSFT", "NVDA"];
const WINDOWS: i64 = 10;
const LIMIT: usize = 4;

/// A window of four prices starting at `start` (Unix seconds).
fn window(ticker: &str, start: i64) -> WindowRow {
    let totals = Totals::new(4000 + start % 1000, 4, 990, 1010).open_close(995, 1005);
    seed::window(ticker, (start * 1000, (start + 30) * 1000), totals)
}

/// The walk under test: windows `spacing` seconds apart read as entries `width` seconds wide.
#[derive(Debug, Clone, Copy)]
struct Shape {
    spacing: i64,
    width: i64,
    /// The `interval` parameter, with its `&`, or nothing for windows.
    interval: &'static str,
}

const SHAPES: [Shape; 2] = [
    Shape {
        spacing: 30,
        width: 30,
        interval: "",
    },
    // 15-minute bars are computed from the stored 5-minute ones at query time.
    Shape {
        spacing: 300,
        width: 900,
        interval: "&interval=15m",
    },
];

impl Shape {
    fn start(&self, w: i64) -> i64 {
        T0 + w * self.spacing
    }

    fn bar(&self, start: i64) -> i64 {
        start.div_euclid(self.width) * self.width
    }

    /// The key of the entry holding the window `ticker` starts at `start`.
    fn key(&self, start: i64, ticker: &str) -> (String, String) {
        (iso(self.bar(start)), ticker.to_owned())
    }

    /// The samples of `ticker`'s entry holding `start` as seeded: four per window.
    fn seeded_samples(&self, start: i64) -> i64 {
        4 * (0..WINDOWS)
            .filter(|w| self.bar(self.start(*w)) == self.bar(start))
            .count() as i64
    }
}

/// Seeds every ticker's windows; returns the seeding partition and the entries' keys.
async fn seed_shape(pool: &PgPool, shape: Shape) -> (seed::Partition, BTreeSet<(String, String)>) {
    let starts = (0..WINDOWS).map(|w| shape.start(w));
    let rows = starts
        .clone()
        .flat_map(|start| TICKERS.map(|ticker| window(ticker, start)));
    let partition = seed::write(pool, 0, 0, rows).await;
    let keys = starts
        .flat_map(|start| TICKERS.map(|ticker| shape.key(start, ticker)))
        .collect();
    (partition, keys)
}

/// The instant of an entry key, in Unix seconds.
fn secs(key: &(String, String)) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&key.0)
        .expect("windowStart")
        .timestamp()
}

/// `first`, the first page of `base`, and every page after it, following the cursors alone.
async fn rest(app: &axum::Router, base: &str, first: Vec<Value>, cursor: String) -> Vec<Value> {
    let mut entries = first;
    let mut cursor = Some(cursor);
    while let Some(next) = cursor {
        let (more, after) = page(app, &format!("{base}&limit={LIMIT}&cursor={next}")).await;
        assert!(
            after.is_none() || more.len() == LIMIT,
            "{base}: a full page"
        );
        entries.extend(more);
        assert!(entries.len() < 1000, "{base}: endless pagination");
        cursor = after;
    }
    entries
}

#[tokio::test]
async fn a_desc_walk_shows_what_commits_ahead_of_its_cursor_once_and_nothing_behind() {
    for shape in SHAPES {
        let db = database().await;
        let (mut partition, mut expected) = seed_shape(&db.pool, shape).await;
        let app = app(&db.pool);
        let base = format!("/v1/get-prices?startTime={T0}{}", shape.interval);
        let (first, cursor) = page(&app, &format!("{base}&limit={LIMIT}&sort=desc")).await;
        let cursor = cursor.expect("more pages");
        let (cursor_start, cursor_ticker) = key(first.last().expect("entries"));
        assert_eq!(cursor_ticker, "NVDA", "{shape:?}: the last page entry");
        let at = secs(&(cursor_start, cursor_ticker));
        let updated = shape.start(1);
        partition
            .commit(
                0,
                vec![
                    // Newer than anything the walk began with: behind a descending cursor.
                    window("AMZN", shape.start(WINDOWS + 2)),
                    // In the cursor's own entry start: before its ticker (ahead), after it (behind).
                    window("AAAA", at),
                    window("ZZZZ", at),
                    // An entry ahead changes; one already shown changes too.
                    window("MSFT", updated),
                    window("NVDA", shape.start(WINDOWS - 1)),
                ],
            )
            .await;
        expected.insert(shape.key(at, "AAAA"));
        let entries = rest(&app, &base, first, cursor).await;
        let keys: Vec<(String, String)> = entries.iter().map(key).collect();
        assert!(
            keys.windows(2).all(|pair| pair[0] > pair[1]),
            "{shape:?}: strictly descending, nothing twice: {keys:?}"
        );
        assert_eq!(
            keys.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{shape:?}"
        );
        let changed = entries
            .iter()
            .find(|entry| key(entry) == shape.key(updated, "MSFT"))
            .expect("the changed entry");
        assert_eq!(
            changed["samples"],
            shape.seeded_samples(updated) + 4,
            "{shape:?}"
        );
    }
}

#[tokio::test]
async fn an_asc_walk_shows_what_commits_ahead_of_its_cursor_once_and_nothing_behind() {
    for shape in SHAPES {
        let db = database().await;
        let (mut partition, mut expected) = seed_shape(&db.pool, shape).await;
        let app = app(&db.pool);
        let base = format!("/v1/get-prices?startTime={}{}", T0 - 3600, shape.interval);
        let (first, cursor) = page(&app, &format!("{base}&limit={LIMIT}&sort=asc")).await;
        let cursor = cursor.expect("more pages");
        let (cursor_start, cursor_ticker) = key(first.last().expect("entries"));
        assert_eq!(cursor_ticker, "AMZN", "{shape:?}: the last page entry");
        let at = secs(&(cursor_start, cursor_ticker));
        let updated = shape.start(WINDOWS - 2);
        let newest = shape.start(WINDOWS + 2);
        partition
            .commit(
                0,
                vec![
                    // Older than anything the walk began with: behind an ascending cursor.
                    window("MSFT", T0 - shape.width),
                    // In the cursor's own entry start: before its ticker (behind), after it (ahead).
                    window("AAAA", at),
                    window("ZZZZ", at),
                    // New entries at the end, and a change ahead.
                    window("AMZN", newest),
                    window("NVDA", newest),
                    window("MSFT", updated),
                ],
            )
            .await;
        expected.extend([
            shape.key(at, "ZZZZ"),
            shape.key(newest, "AMZN"),
            shape.key(newest, "NVDA"),
        ]);
        let entries = rest(&app, &base, first, cursor).await;
        let keys: Vec<(String, String)> = entries.iter().map(key).collect();
        assert!(
            keys.windows(2).all(|pair| pair[0] < pair[1]),
            "{shape:?}: strictly ascending, nothing twice: {keys:?}"
        );
        assert_eq!(
            keys.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{shape:?}"
        );
        let changed = entries
            .iter()
            .find(|entry| key(entry) == shape.key(updated, "MSFT"))
            .expect("the changed entry");
        assert_eq!(
            changed["samples"],
            shape.seeded_samples(updated) + 4,
            "{shape:?}"
        );
    }
}
