//! A throwaway database for `scripts/schemathesis.sh`: created and migrated on the PostgreSQL of
//! `DATABASE_URL` (as the integration tests do), seeded with a few windows, then dropped again.
//!
//! ```sh
//! cargo run -p tickpipe-api --example schemathesis_db -- create   # prints the database URL
//! cargo run -p tickpipe-api --example schemathesis_db -- drop NAME
//! ```

use anyhow::{bail, Context};
use sqlx::{Connection, PgConnection};
use tickpipe_testkit::TestDatabase;

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

async fn create() -> anyhow::Result<()> {
    let db = TestDatabase::create().await;
    // Two hours of 30-second windows for three tickers, and the latest-window rows the aggregator
    // keeps beside them: enough for every query form and for several pages. The first ten minutes
    // have no open and close (as rows written before they were recorded), and every partition has
    // closed the first hour, so entries come both with and without them, complete and not.
    for (t, ticker) in ["AAPL", "AMZN", "MSFT"].iter().enumerate() {
        sqlx::query(
            "INSERT INTO window_prices (ticker, window_start, window_end, price_sum, sample_count, min_price, max_price,
                                        open_key, open_price, close_key, close_price)
             SELECT $1, to_timestamp($2 + w * 30), to_timestamp($2 + w * 30 + 30), 1000 * ($3 + 1) * 4 + w, 4, 900 * ($3 + 1), 1100 * ($3 + 1),
                    CASE WHEN w >= 20 THEN ARRAY[($2::bigint + w * 30) * 1000 + 1, w % 3, w] END,
                    CASE WHEN w >= 20 THEN 900 * ($3 + 1) END,
                    CASE WHEN w >= 20 THEN ARRAY[($2::bigint + w * 30) * 1000 + 29999, w % 3, w + 1] END,
                    CASE WHEN w >= 20 THEN 1100 * ($3 + 1) END
             FROM generate_series(0, 239) AS w",
        )
        .bind(ticker)
        .bind(T0 as f64)
        .bind(t as i64)
        .execute(&db.pool)
        .await
        .context("seed window_prices")?;
    }
    sqlx::query(
        "INSERT INTO latest_windows (ticker, window_start) SELECT ticker, max(window_start) FROM window_prices GROUP BY ticker",
    )
    .execute(&db.pool)
    .await
    .context("seed latest_windows")?;
    sqlx::query(
        "INSERT INTO aggregator_progress (topic, kafka_partition, resume_offset, next_offset, watermark_ms,
                                          closed_before_ms, dlq_next_offset)
         SELECT 'stocks', p, 0, 0, ($1::bigint + 3600) * 1000, ($1::bigint + 3600) * 1000, 0 FROM generate_series(0, 2) AS p",
    )
    .bind(T0)
    .execute(&db.pool)
    .await
    .context("seed aggregator_progress")?;
    // The change log of the last 20 windows, as the aggregator appends it: each window's three
    // entries, then a watermark past it. `GET /v1/stream-prices?since=` with a small id streams a
    // backlog of both kinds of event.
    sqlx::query(
        "INSERT INTO window_changes (id, ticker, window_start, window_end, price_sum, sample_count, min_price,
                                     max_price, open_price, close_price, complete_before)
         SELECT nextval('window_changes_id'), e.ticker, e.window_start, e.window_end, e.price_sum, e.sample_count,
                e.min_price, e.max_price, e.open_price, e.close_price, e.complete_before
         FROM (SELECT p.ticker, p.window_start, p.window_end, p.price_sum, p.sample_count, p.min_price, p.max_price,
                      p.open_price, p.close_price, p.window_start AS complete_before, p.window_start AS k, 0 AS kind
               FROM window_prices p WHERE p.window_start >= to_timestamp($1)
               UNION ALL
               SELECT DISTINCT NULL, NULL::timestamptz, NULL::timestamptz, NULL::bigint, NULL::bigint, NULL::bigint,
                      NULL::bigint, NULL::bigint, NULL::bigint, p.window_end, p.window_start, 1
               FROM window_prices p WHERE p.window_start >= to_timestamp($1)
               ORDER BY k, kind, ticker) e",
    )
    .bind((T0 + 220 * 30) as f64)
    .execute(&db.pool)
    .await
    .context("seed window_changes")?;
    db.pool.close().await;
    println!("{}", db.url);
    Ok(())
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
