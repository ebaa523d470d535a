//! Exactly once through SIGKILL, several instances and a database restart, against the real
//! services. The aggregator runs as a child process (the real binary) so it can be killed for real.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;
use tickpipe_testkit::referee::samples;
use tickpipe_testkit::{create_topic, produce, TestDatabase};

/// A child aggregator process, SIGKILLed when dropped so that a failing test leaves none behind.
struct Aggregator(Child);

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_aggregator(topic: &str, db: &TestDatabase) -> Aggregator {
    spawn_aggregator_with(topic, db, &[])
}

/// [`spawn_aggregator`] with `extra` variables set.
fn spawn_aggregator_with(topic: &str, db: &TestDatabase, extra: &[(&str, &str)]) -> Aggregator {
    let child = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .env_clear()
        .envs(env_vars(topic, db))
        .envs(keep_everything(&[]))
        .envs(extra.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn aggregator");
    Aggregator(child)
}

fn kill_hard(aggregator: &mut Aggregator) {
    // Child::kill sends SIGKILL: no shutdown code runs.
    aggregator.0.kill().expect("SIGKILL");
    aggregator.0.wait().expect("reaped");
}

async fn windows_written(db: &TestDatabase) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM window_prices")
        .fetch_one(&db.pool)
        .await
        .unwrap_or(0)
}

/// Enough records that a run takes a while: 60,000 messages over 3 partitions, 50 minutes of event time.
async fn prefilled_topic(prefix: &str) -> (String, Windows) {
    let topic = create_topic(prefix, 3).await;
    let records = generated_records(60_000, 3, 50, 11);
    let offsets = produce(&topic, &records).await;
    (topic, reference(&records, &offsets, 30_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_and_restarted_equals_an_uninterrupted_run() {
    // Restarts a shared service or loads the machine: alone.
    let _exclusive = SERVICES.write().await;
    let topic = create_topic("crash", 3).await;
    // The stream arrives in four parts, the next one while the killed instance is down: every
    // kill lands mid-stream however fast the aggregator reads (a pre-filled topic can be read
    // whole before the first kill), with open windows and, often, held ones in memory. Until the
    // last part, the wall clock must not close windows (the next part's records would be late):
    // the records are two hours old and the idle lag is ten days, so only records close windows.
    // The last instance runs with the default idle lag, which closes the rest.
    let two_hours_ago =
        (chrono::Utc::now().timestamp_millis() - 7_200_000).div_euclid(30_000) * 30_000;
    let records = generated_records_from(two_hours_ago, 60_000, 3, 50, 11);
    let mut parts = records.chunks(15_000);
    let mut offsets = produce(&topic, parts.next().expect("four parts")).await;
    let db = TestDatabase::create().await;
    let records_only = [("AGGREGATOR_IDLE_LAG_MS", "864000000")];

    // Kill it three times, each after it has written something new.
    let mut child = spawn_aggregator_with(&topic, &db, &records_only);
    for (round, part) in (1..=3).zip(parts) {
        let before = windows_written(&db).await;
        tickpipe_testkit::eventually(
            "progress before the kill",
            Duration::from_secs(60),
            || async { (windows_written(&db).await > before).then_some(()) },
        )
        .await;
        kill_hard(&mut child);
        eprintln!(
            "round {round}: killed after {} rows",
            windows_written(&db).await
        );
        offsets.extend(produce(&topic, part).await);
        child = match round {
            3 => spawn_aggregator(&topic, &db),
            _ => spawn_aggregator_with(&topic, &db, &records_only),
        };
    }
    let expected = reference(&records, &offsets, 30_000);
    let rows = wait_for_samples(&db.pool, samples(&expected), Duration::from_secs(120)).await;
    kill_hard(&mut child);
    assert_eq!(rows, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_partitions_one_killed_equals_an_uninterrupted_run() {
    // Restarts a shared service or loads the machine: alone.
    let _exclusive = SERVICES.write().await;
    let (topic, expected) = prefilled_topic("pair").await;
    let db = TestDatabase::create().await;

    let mut first = spawn_aggregator(&topic, &db);
    let mut second = spawn_aggregator(&topic, &db);
    tickpipe_testkit::eventually(
        "both instances writing",
        Duration::from_secs(60),
        || async { (windows_written(&db).await > 10).then_some(()) },
    )
    .await;
    kill_hard(&mut first);
    let rows = wait_for_samples(&db.pool, samples(&expected), Duration::from_secs(120)).await;
    kill_hard(&mut second);
    assert_eq!(rows, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_stream_loses_and_doubles_nothing() {
    // Restarts a shared service or loads the machine: alone.
    let _exclusive = SERVICES.write().await;
    let (topic, expected) = prefilled_topic("pgrestart").await;
    let db = TestDatabase::create().await;

    let mut child = spawn_aggregator(&topic, &db);
    tickpipe_testkit::eventually(
        "progress before the restart",
        Duration::from_secs(60),
        || async { (windows_written(&db).await > 5).then_some(()) },
    )
    .await;
    tickpipe_testkit::services("restart-postgres");
    let rows = wait_for_samples(&db.pool, samples(&expected), Duration::from_secs(180)).await;
    kill_hard(&mut child);
    assert_eq!(rows, expected);
}
