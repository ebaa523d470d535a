//! Settings that shape the stored rows: the window width is recorded by the first writer, and an
//! aggregator configured with another one refuses to start, naming both, before it reads a record.

use std::time::Duration;

use crate::helpers::*;
use tickpipe_testkit::{create_topic, produce, TestDatabase, TestRecord};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_another_window_width_is_refused_and_changes_nothing() {
    let _shared = SERVICES.read().await;
    let topic = create_topic("shape", 1).await;
    let db = TestDatabase::create().await;
    let records = vec![
        TestRecord::new(0, T0 + 1_000, value(&[("AMZN", 1900)])),
        TestRecord::new(0, T0 + 31_000, value(&[("AMZN", 2000)])),
    ];
    produce(&topic, &records).await;
    let first = start(settings(&topic, &db, &[]));
    // Both windows close: by the records, then by the wall clock once the partition is caught up.
    let written = wait_for_samples(&db.pool, 2, Duration::from_secs(60)).await;
    assert_eq!(written.len(), 2, "two 30-second windows: {written:?}");
    first.stop().await;
    assert_eq!(
        tickpipe_store::shape::window_secs(&db.pool)
            .await
            .expect("read"),
        Some(30),
        "the first writer records its width"
    );

    let wider = settings(&topic, &db, &[("AGGREGATOR_WINDOW_SECS", "60")]);
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        tickpipe_aggregator::run_with_metrics(
            wider,
            tickpipe_aggregator::metrics::AggregatorMetrics::register(&mut Default::default()),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("refused at once, not running")
    .expect_err("a width other than the stored one is refused");
    let message = refused.to_string();
    assert!(
        message.contains("AGGREGATOR_WINDOW_SECS=60")
            && message.contains("AGGREGATOR_WINDOW_SECS=30")
            && message.contains("new database"),
        "the error names both widths and what to do: {message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    assert_eq!(stored_rows(&db.pool).await, written, "nothing written");
}
