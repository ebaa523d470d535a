//! A throwaway database for `scripts/schemathesis.sh`: created and migrated on the PostgreSQL of
//! `DATABASE_URL` (as the integration tests do), seeded with a few windows through the aggregator's
//! write path (`tickpipe_testkit::seed`), then dropped again.
//!
//! ```sh
//! cargo run -p tickpipe-api --example schemathesis_db -- create   # prints the database URL
//! cargo run -p tickpipe-api --example schemathesis_db -- drop NAME
//! ```

use anyhow::{bail, Context};
use sqlx::{Connection, PgConnection};
use tickpipe_store::{PriceKey, WindowRow};
use tickpipe_testkit::seed::{self, LegacyWindow, Partition, Totals};

/// 2026-11-27T10:00:00Z, the README's example day.
const T0: i64 = 1_795_773_600;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["create"] => create().await,
        ["drop", name] => drop_database(name).await,
        _ => bail!("usage: schemathesis_db create | schemathesis_db drop NAME"),
    }
}

/// Two hours of 30-second windows for three tickers, enough for every query form and for several
/// pages, written as an upgraded aggregator leaves them: the first ten minutes before open and
/// close were recorded (so entries come with and without them), the rest through the write path
/// by three partitions that have all closed the first hour (entries complete and not). Prints the
/// database URL, and only that, on standard output.
async fn create() -> anyhow::Result<()> {
    let legacy: Vec<LegacyWindow> = windows(0..LEGACY)
        .map(|(ticker, t, w)| {
            let start_ms = (T0 + w * 30) * 1000;
            LegacyWindow {
                ticker: ticker.to_owned(),
                start_ms,
                end_ms: start_ms + 30_000,
                sum: 1000 * t * 4 + w,
                count: 4,
                min: 900 * t,
                max: 1100 * t,
            }
        })
        .collect();
    let db = seed::legacy_database(&legacy).await;
    let mut partitions = Vec::new();
    for partition in 0..3 {
        partitions.push(Partition::claim(&db.pool, partition).await);
    }
    // Ten windows a commit, the partitions in turn, each moving its boundary to the end of its
    // windows (up to the first hour): `GET /v1/stream-prices?since=` with a small id streams a
    // backlog of both kinds of event.
    let first_hour_ms = (T0 + 3600) * 1000;
    for first in (LEGACY..WINDOWS).step_by(10) {
        let partition = &mut partitions[usize::try_from(first / 10 % 3)?];
        let closed_before_ms = ((T0 + (first + 10) * 30) * 1000).min(first_hour_ms);
        let rows = windows(first..first + 10).map(|(ticker, t, w)| window(ticker, t, w));
        partition.commit(closed_before_ms, rows.collect()).await;
    }
    for partition in &mut partitions {
        partition.close_before(first_hour_ms).await;
    }
    db.pool.close().await;
    println!("{}", db.url);
    Ok(())
}

/// Windows before this one have no open and close.
const LEGACY: i64 = 20;
/// Windows per ticker.
const WINDOWS: i64 = 240;

/// (ticker, its number from 1, window number) for the windows `range` of every ticker.
fn windows(range: std::ops::Range<i64>) -> impl Iterator<Item = (&'static str, i64, i64)> {
    range.flat_map(|w| {
        ["AAPL", "AMZN", "MSFT"]
            .into_iter()
            .zip(1..)
            .map(move |(ticker, t)| (ticker, t, w))
    })
}

/// Window `w` of ticker number `t`, its open and close keyed as the aggregator keys them.
fn window(ticker: &str, t: i64, w: i64) -> WindowRow {
    let start_ms = (T0 + w * 30) * 1000;
    let partition = i32::try_from(w % 3).expect("0..3");
    let key = |timestamp_ms, offset| PriceKey {
        timestamp_ms,
        partition,
        offset,
    };
    let totals = Totals::new(1000 * t * 4 + w, 4, 900 * t, 1100 * t);
    seed::keyed(
        ticker,
        (start_ms, start_ms + 30_000),
        totals,
        (key(start_ms + 1, w), key(start_ms + 29_999, w + 1)),
    )
}

async fn drop_database(name: &str) -> anyhow::Result<()> {
    if !name.starts_with("test_") || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("refusing to drop {name:?}: not a database this program created");
    }
    let admin_url = tickpipe_testkit::admin_database_url();
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .with_context(|| format!("connect to {admin_url}"))?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .with_context(|| format!("drop database {name}"))?;
    Ok(())
}
