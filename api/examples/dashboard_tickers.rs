//! Seeds a database with many tickers for the dashboard's 10,000-ticker browser test
//! (`web/tests/dashboard-10k.spec.mjs`, run by `scripts/browser-test.sh`).
//!
//! ```sh
//! DATABASE_URL=... cargo run -p tickpipe-api --example dashboard_tickers            # seed
//! DATABASE_URL=... cargo run -p tickpipe-api --example dashboard_tickers -- advance # next window
//! ```
//!
//! `seed` migrates the (empty) database of `DATABASE_URL`, records the window width as an
//! aggregator does, and writes `SEED_WINDOWS` windows of each of `SEED_TICKERS` tickers, the last
//! one ending at the start of the current window. `advance` writes the window after the newest
//! one of every ticker, as an aggregator closing it: what the test's live step streams to the page.
//! Every row goes through the aggregator's write path, [`tickpipe_store::commit`] (one commit per
//! window, all tickers in it, by partition 0 of `KAFKA_TOPIC`, which has closed every window it
//! wrote, so every entry is complete).
//!
//! Tickers: AAPL, AMZN and MSFT, then distinct four-letter names (never those three). Each window
//! holds four prices around the ticker's own mean, from `SEED` (a fixed default, so runs are alike).
//!
//! Environment: `DATABASE_URL`, `KAFKA_TOPIC` (`stocks`), `AGGREGATOR_WINDOW_SECS` (60),
//! `SEED_TICKERS` (10000), `SEED_WINDOWS` (10), `SEED`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use sqlx::PgPool;
use tickpipe_common::config::DatabaseSettings;
use tickpipe_store::{Commit, Flush, WindowRow};
use tickpipe_testkit::env_or;
use tickpipe_testkit::rng::Rng;
use tickpipe_testkit::seed;

const KNOWN: [&str; 3] = ["AAPL", "AMZN", "MSFT"];
/// Four-letter names: 26^4 of them.
const NAMES: u64 = 26 * 26 * 26 * 26;
/// Coprime with `NAMES`, so stepping by it visits every name once, spread over the alphabet.
const STEP: u64 = 7919;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let topic = env_or("KAFKA_TOPIC", "stocks");
    let window_secs: u32 = env_or("AGGREGATOR_WINDOW_SECS", "60").parse()?;
    let count: usize = env_or("SEED_TICKERS", "10000").parse()?;
    let windows: i64 = env_or("SEED_WINDOWS", "10").parse()?;
    let rng_seed: u64 = env_or("SEED", "20261204").parse()?;
    let pool = tickpipe_common::db::lazy_pool(&DatabaseSettings::direct(url, 2))?;
    let window_ms = i64::from(window_secs) * 1000;
    let tickers = ticker_names(count)?;
    let started = Instant::now();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let (first_ms, windows) = match args.first().map(String::as_str) {
        None | Some("seed") => {
            tickpipe_store::schema::MIGRATOR.run(&pool).await?;
            tickpipe_store::shape::record_window_secs(&pool, "AGGREGATOR_WINDOW_SECS", window_secs)
                .await?;
            let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
            let current_ms = now_ms / window_ms * window_ms;
            // The last window ends a window ago, so that `advance` writes one that has ended.
            (current_ms - (windows + 1) * window_ms, windows)
        }
        Some("advance") => (newest_start_ms(&pool).await? + window_ms, 1),
        Some(other) => bail!("unknown command {other:?}: use `seed` or `advance`"),
    };

    let windows_ms = (first_ms, first_ms + windows * window_ms, window_ms);
    write(&pool, &topic, &tickers, windows_ms, rng_seed).await?;
    pool.close().await;
    println!(
        "dashboard_tickers: {windows} window(s) of {} tickers from {first_ms} ms ({window_secs} s windows) in {:.1} s",
        tickers.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes every window from `first_ms` up to `end_ms` of every ticker, one commit per window, by
/// partition 0 of `topic`, each commit closing the windows it writes.
async fn write(
    pool: &PgPool,
    topic: &str,
    tickers: &[String],
    windows_ms: (i64, i64, i64),
    rng_seed: u64,
) -> anyhow::Result<()> {
    let (first_ms, end_ms, window_ms) = windows_ms;
    let mut progress = tickpipe_store::claim(pool, topic, 0).await?;
    for start_ms in (first_ms..end_ms).step_by(usize::try_from(window_ms)?) {
        let mut rng = Rng::new(rng_seed ^ u64::try_from(start_ms)?);
        let rows = tickers
            .iter()
            .enumerate()
            .map(|(i, ticker)| {
                window(
                    ticker,
                    mean(rng_seed, i),
                    (start_ms, start_ms + window_ms),
                    &mut rng,
                )
            })
            .collect();
        progress.closed_before_ms = start_ms + window_ms;
        progress.watermark_ms = progress.watermark_ms.max(progress.closed_before_ms);
        let flush = Flush {
            partition: 0,
            rows,
            progress,
        };
        let outcome = tickpipe_store::commit(pool, topic, &flush).await?;
        ensure!(
            outcome == Commit::Written,
            "partition 0 was claimed by another writer"
        );
        progress = flush.progress;
    }
    Ok(())
}

/// `count` distinct names: the generator's three, then four-letter ones.
fn ticker_names(count: usize) -> anyhow::Result<Vec<String>> {
    ensure!(
        u64::try_from(count)? <= NAMES,
        "at most {NAMES} tickers ({count} asked)"
    );
    let mut names: Vec<String> = KNOWN
        .iter()
        .take(count)
        .map(|&name| name.to_owned())
        .collect();
    let mut n = 0_u64;
    while names.len() < count {
        let mut code = n * STEP % NAMES;
        n += 1;
        let mut name = String::with_capacity(4);
        for _ in 0..4 {
            // Below 26: a letter.
            name.push(char::from(b'A' + u8::try_from(code % 26)?));
            code /= 26;
        }
        if !KNOWN.contains(&name.as_str()) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The mean price of the `i`th ticker: 10 to 5,009, the same in every run with the same seed.
fn mean(rng_seed: u64, i: usize) -> i64 {
    let mut rng = Rng::new(rng_seed.wrapping_add(i as u64));
    rng.between(10, 5009)
}

/// A window of four prices within ±5 % of `mean`, folded as the aggregator folds them.
fn window(ticker: &str, mean: i64, bounds: (i64, i64), rng: &mut Rng) -> WindowRow {
    let spread = (mean / 20).max(1);
    let prices: Vec<i64> = (0..4)
        .map(|_| rng.between(mean - spread, mean + spread))
        .collect();
    seed::from_prices(ticker, bounds, &prices)
}

/// The start of the newest window written, in Unix milliseconds.
async fn newest_start_ms(pool: &PgPool) -> anyhow::Result<i64> {
    let newest: Option<i64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM max(window_start)) * 1000)::bigint FROM latest_windows",
    )
    .fetch_one(pool)
    .await?;
    newest.context("the database holds no window: run `dashboard_tickers seed` first")
}
