//! What operators change between restarts, and partitions added to a live topic: each either keeps
//! the table exact or is refused with one line (docs/operations.md, "Settings that shape the stored
//! data").

use std::time::Duration;

use crate::helpers::*;
use tickpipe_aggregator::dead_letters::headers;
use tickpipe_aggregator::metrics::AggregatorMetrics;
use tickpipe_aggregator::AggregatorError;
use tickpipe_common::message::TickerMessage;
use tickpipe_testkit::referee::{self, Referee};
use tickpipe_testkit::{consume_all, create_named_topic, create_topic, produce, TestDatabase};
use tokio_util::sync::CancellationToken;

/// Runs an aggregator that is expected to refuse to start, and returns its error.
async fn refused(settings: tickpipe_aggregator::settings::Settings) -> AggregatorError {
    let metrics = AggregatorMetrics::register(&mut Default::default());
    tokio::time::timeout(
        Duration::from_secs(30),
        tickpipe_aggregator::run_with_metrics(settings, metrics, CancellationToken::new()),
    )
    .await
    .expect("refused at once, not running")
    .expect_err("refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_grace_and_idle_lag_changed_between_restarts_keep_counting_exactly() {
    let _shared = SERVICES.read().await;
    let topic = create_topic("operators", 2).await;
    let db = TestDatabase::create().await;
    // An hour ago: inside the 10-day idle lag of the first run, whatever the calendar says, and
    // past the default idle lag of the second.
    let an_hour_ago =
        (chrono::Utc::now().timestamp_millis() - 3_600_000).div_euclid(30_000) * 30_000;
    let records = generated_records_from(an_hour_ago, 400, 2, 250, 21);
    let (first, second) = records.split_at(200);
    let mut offsets = produce(&topic, first).await;

    // First run: the wall clock never closes a window, so the newest windows stay open at the stop.
    let held = [
        ("AGGREGATOR_GROUP_ID", "operators-first"),
        ("AGGREGATOR_IDLE_LAG_MS", "864000000"),
    ];
    let run = start(settings(&topic, &db, &held));
    let closed_by_records = samples_closed_by_records(first, &offsets, 2_000);
    tickpipe_testkit::eventually(
        "the windows the records closed",
        Duration::from_secs(60),
        || async { (stored_samples(&db.pool).await == closed_by_records).then_some(()) },
    )
    .await;
    run.stop().await;
    let all = prices(&records);
    assert!(
        closed_by_records < all,
        "windows were still open at the stop"
    );

    // Second run: another group, a wider grace period, the default idle lag.
    offsets.extend(produce(&topic, second).await);
    let changed = [
        ("AGGREGATOR_GROUP_ID", "operators-second"),
        ("AGGREGATOR_GRACE_MS", "5000"),
    ];
    let run = start(settings(&topic, &db, &changed));
    let rows = wait_for_samples(&db.pool, all, Duration::from_secs(90)).await;
    run.stop().await;
    assert_eq!(
        rows,
        reference(&records, &offsets, 30_000),
        "every price once"
    );
}

/// The prices the records carry.
fn prices(records: &[tickpipe_testkit::TestRecord]) -> i64 {
    records
        .iter()
        .filter_map(|r| TickerMessage::decode(&r.value).ok())
        .map(|message| message.tickers.len() as i64)
        .sum()
}

/// The prices in windows a partition's own records closed (watermark: newest timestamp - grace).
fn samples_closed_by_records(
    records: &[tickpipe_testkit::TestRecord],
    offsets: &[i64],
    grace_ms: i64,
) -> i64 {
    let mut referee = Referee::new(30_000);
    for partition in [0, 1] {
        let newest = records
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(i64::MIN);
        let boundary = (newest - grace_ms).div_euclid(30_000) * 30_000;
        for (record, &offset) in records.iter().zip(offsets) {
            if record.partition == partition && record.timestamp_ms < boundary {
                referee.record(partition, offset, record.timestamp_ms, Some(&record.value));
            }
        }
    }
    referee::samples(referee.windows())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_topic_on_the_same_database_is_refused() {
    let _shared = SERVICES.read().await;
    let (old, new) = (
        create_topic("renamed", 1).await,
        create_topic("renamed", 1).await,
    );
    let db = TestDatabase::create().await;
    produce(&old, &generated_records(20, 1, 100, 3)).await;
    let run = start(settings(&old, &db, &[]));
    tickpipe_testkit::eventually("windows written", Duration::from_secs(60), || async {
        (stored_samples(&db.pool).await > 0).then_some(())
    })
    .await;
    run.stop().await;
    let before = stored_rows(&db.pool).await;

    let message = refused(settings(&new, &db, &[])).await.to_string();
    assert!(
        message.contains(&format!("KAFKA_TOPIC={new}"))
            && message.contains(&format!("KAFKA_TOPIC={old}"))
            && !message.contains('\n'),
        "one line naming both topics: {message}"
    );
    assert_eq!(stored_rows(&db.pool).await, before, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aggregators_started_with_different_widths_at_once_one_refuses() {
    let _shared = SERVICES.read().await;
    let topic = create_topic("widths", 1).await;
    let db = TestDatabase::create().await;
    let shutdown = CancellationToken::new();
    let mut runs = tokio::task::JoinSet::new();
    for width in ["30", "60"] {
        let settings = settings(&topic, &db, &[("AGGREGATOR_WINDOW_SECS", width)]);
        let (shutdown, metrics) = (
            shutdown.clone(),
            AggregatorMetrics::register(&mut Default::default()),
        );
        runs.spawn(async move {
            let result = tickpipe_aggregator::run_with_metrics(settings, metrics, shutdown).await;
            (width, result)
        });
    }
    let (loser, result) = tokio::time::timeout(Duration::from_secs(30), runs.join_next())
        .await
        .expect("one of them refuses at once")
        .expect("a run")
        .expect("no panic");
    let message = result
        .expect_err("the first to end is the refused one")
        .to_string();
    let winner = if loser == "30" { "60" } else { "30" };
    assert!(
        message.contains(&format!("AGGREGATOR_WINDOW_SECS={loser}"))
            && message.contains(&format!("AGGREGATOR_WINDOW_SECS={winner}")),
        "{message}"
    );
    assert_eq!(
        tickpipe_store::shape::window_secs(&db.pool)
            .await
            .expect("read"),
        Some(winner.parse().expect("a number")),
        "the width of the one that runs is recorded"
    );
    shutdown.cancel();
    let (_, result) = runs
        .join_next()
        .await
        .expect("the other run")
        .expect("no panic");
    result.expect("the other one ran until shut down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_dead_letter_topic_takes_the_invalid_records_from_then_on() {
    let _shared = SERVICES.read().await;
    let topic = create_topic("dlq-change", 1).await;
    let (old_dlq, new_dlq) = (format!("{topic}.dlq"), format!("{topic}.dlq-new"));
    for dlq in [&old_dlq, &new_dlq] {
        create_named_topic(dlq, 1, &[("retention.ms", "-1")]).await;
    }
    let db = TestDatabase::create().await;
    let invalid = |at: i64| tickpipe_testkit::TestRecord::new(0, at, b"not json".to_vec());
    // Four invalid records among valid ones, all accounted for (the wall clock closes every
    // window once the partition is caught up) before the stop.
    let first: Vec<_> = (0..10)
        .map(|i| match i % 3 {
            0 => invalid(T0 + i * 1_000),
            _ => tickpipe_testkit::TestRecord::new(0, T0 + i * 1_000, value(&[("AMZN", 1900 + i)])),
        })
        .collect();
    let first_offsets = produce(&topic, &first).await;
    let run = start(settings(&topic, &db, &[]));
    let rows = wait_for_samples(&db.pool, 6, Duration::from_secs(60)).await;
    run.stop().await;

    let second: Vec<_> = (0..3).map(|i| invalid(T0 + 100_000 + i)).collect();
    let second_offsets = produce(&topic, &second).await;
    let run = start(settings(&topic, &db, &[("AGGREGATOR_DLQ_TOPIC", &new_dlq)]));
    let ends = [((topic.clone(), 0), second_offsets[2] + 1)]
        .into_iter()
        .collect();
    wait_until_accounted(&db.pool, &ends, Duration::from_secs(60)).await;
    run.stop().await;
    assert_eq!(stored_rows(&db.pool).await, rows, "no price changed");

    // One more than expected is asked for: a duplicate would show.
    let letters = |dlq: &str, expected: usize| -> Vec<String> {
        consume_all(dlq, expected + 1, Duration::from_secs(10))
            .iter()
            .map(|m| tickpipe_testkit::header(m, headers::SOURCE_OFFSET).unwrap_or_default())
            .collect()
    };
    let offsets = |offsets: &[i64], step: usize| -> Vec<String> {
        offsets.iter().step_by(step).map(i64::to_string).collect()
    };
    assert_eq!(
        letters(&old_dlq, 4),
        offsets(&first_offsets, 3),
        "the first run's, once each"
    );
    assert_eq!(
        letters(&new_dlq, 3),
        offsets(&second_offsets, 1),
        "the second run's, once each"
    );
}

/// The windows seen complete so far with their prices then, and any that changed afterwards.
#[derive(Debug, Default)]
struct CompleteWatch {
    seen: Windows,
    changed: Vec<String>,
}

impl CompleteWatch {
    /// Reads the boundary, then the rows: a window complete at the boundary read can no longer
    /// change, so the rows read after it must show its final prices.
    async fn sample(&mut self, pool: &sqlx::PgPool, width_ms: i64) {
        let Ok(Some(boundary)) = tickpipe_store::boundary::complete_before(pool).await else {
            return;
        };
        let Ok(rows) = referee::stored(pool).await else {
            return;
        };
        for (id, totals) in rows {
            if id.1 + width_ms > boundary.timestamp_millis() {
                continue;
            }
            match self.seen.get(&id) {
                Some(before) if *before != totals => self.changed.push(format!(
                    "{id:?} was complete as {before:?}, later {totals:?}"
                )),
                Some(_) => {}
                None => {
                    self.seen.insert(id, totals);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_added_to_a_live_topic_are_counted_once_and_hold_complete_back() {
    let _shared = SERVICES.read().await;
    let topic = create_topic("alter", 2).await;
    let db = TestDatabase::create().await;
    // Narrow windows that close fast, and partitions checked only every 10 s: a window holding
    // the new partitions' first records is closed by the old partitions long before the group
    // rebalances the new ones onto an instance, so only the partition watch can hold it back.
    const WIDTH_MS: i64 = 1_000;
    let fast = [
        ("AGGREGATOR_WINDOW_SECS", "1"),
        ("AGGREGATOR_GRACE_MS", "500"),
        ("AGGREGATOR_IDLE_LAG_MS", "2000"),
        ("AGGREGATOR_METADATA_REFRESH_MS", "10000"),
    ];
    let (a, b) = (
        start(settings(&topic, &db, &fast)),
        start(settings(&topic, &db, &fast)),
    );
    let mut watch = CompleteWatch::default();
    let mut rng = tickpipe_testkit::rng::Rng::new(7);
    let (mut records, mut offsets) = (Vec::new(), Vec::new());
    // A producer standing in for the generator: messages stamped now, spread over the partitions
    // that exist, about 100 a second; after 12 s the topic gets two more partitions, for real.
    let started = std::time::Instant::now();
    let mut partitions = 2;
    while started.elapsed() < Duration::from_secs(26) {
        if partitions == 2 && started.elapsed() >= Duration::from_secs(12) {
            let altered = tickpipe_testkit::kafka_tool(
                "TopicCommand",
                &[
                    "--bootstrap-server",
                    &tickpipe_testkit::brokers(),
                    "--alter",
                    "--topic",
                    &topic,
                    "--partitions",
                    "4",
                ],
            )
            .expect("kafka-topics --alter");
            partitions = 4;
            eprintln!("altered to 4 partitions: {altered}");
        }
        let now = tickpipe_common::clock::now_ms();
        let batch: Vec<_> = (0..20)
            .map(|i| {
                tickpipe_testkit::TestRecord::new(
                    i % partitions,
                    now,
                    rng.sample_message().encode(),
                )
            })
            .collect();
        offsets.extend(produce(&topic, &batch).await);
        records.extend(batch);
        watch.sample(&db.pool, WIDTH_MS).await;
        // Paces the producer (about 100 messages a second); it waits for no state.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(partitions, 4, "the topic was altered");
    let total = prices(&records);
    tokio::time::timeout(Duration::from_secs(90), async {
        while stored_samples(&db.pool).await < total {
            watch.sample(&db.pool, WIDTH_MS).await;
            tokio::time::sleep(Duration::from_millis(100)).await; // the poll interval
        }
    })
    .await
    .expect("every price written within 90 s");
    let rows = wait_for_samples(&db.pool, total, Duration::from_secs(60)).await;
    watch.sample(&db.pool, WIDTH_MS).await;
    a.stop().await;
    b.stop().await;

    assert_eq!(
        rows,
        reference(&records, &offsets, WIDTH_MS),
        "every price once"
    );
    assert!(
        watch.changed.is_empty(),
        "complete windows changed: {:?}",
        watch.changed
    );
    let added: Vec<_> = records.iter().filter(|r| r.partition >= 2).collect();
    assert!(
        !added.is_empty(),
        "records were written to the new partitions"
    );
    let first_added = added
        .iter()
        .map(|r| r.timestamp_ms)
        .min()
        .unwrap_or_default();
    assert!(
        watch
            .seen
            .keys()
            .any(|(_, start)| *start + WIDTH_MS <= first_added),
        "windows were complete before the alter (the watch is not vacuous)"
    );
    let known = tickpipe_store::partitions::known_since(&db.pool, &topic)
        .await
        .expect("known partitions");
    assert_eq!(known.len(), 4, "{known:?}");
    assert!(
        known
            .iter()
            .all(|&(p, since)| (p < 2) == (since == 0) && since <= first_added),
        "the new partitions are known since a check before their first record: {known:?}"
    );
}
