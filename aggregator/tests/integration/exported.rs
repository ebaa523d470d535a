//! What the aggregator's `/metrics` endpoint exports, read over HTTP from the real service as
//! Prometheus scrapes it: the settings the alert rules derive their thresholds from, and the
//! database pool's use.

use std::time::Duration;

use tickpipe_testkit::{create_topic, TestDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// `GET /metrics` on `addr`, the whole response; `None` while nothing listens there yet.
async fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    Some(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_width_and_grace_are_exported_for_the_alert_rules() {
    let _shared = SERVICES.read().await;
    let topic = create_topic("exported", 1).await;
    let db = TestDatabase::create().await;
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let settings = settings(
        &topic,
        &db,
        &[
            ("AGGREGATOR_WINDOW_SECS", "10"),
            ("AGGREGATOR_GRACE_MS", "1500"),
            ("METRICS_ADDR", &addr.to_string()),
        ],
    );
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let task = tokio::spawn(tickpipe_aggregator::run(settings, shutdown.clone()));
    // Served once the database is migrated and the topics exist.
    let body =
        tickpipe_testkit::eventually("the aggregator's /metrics", Duration::from_secs(60), || {
            scrape(addr)
        })
        .await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let lines: Vec<&str> = body.lines().collect();
    for expected in [
        "aggregator_window_seconds 10",
        "aggregator_grace_seconds 1.5",
    ] {
        assert!(
            lines.contains(&expected),
            "no line {expected:?} in:\n{body}"
        );
    }
    // The pool's use (crates/common/src/pool_metrics.rs), for the Grafana dashboard.
    for expected in [
        "aggregator_db_pool_connections{state=\"in_use\"} ",
        "aggregator_db_pool_connections{state=\"idle\"} ",
        "aggregator_db_pool_max_connections ",
    ] {
        assert!(
            lines.iter().any(|line| line.starts_with(expected)),
            "no line starting {expected:?} in:\n{body}"
        );
    }
    shutdown.cancel();
    task.await.expect("join").expect("aggregator run");
}
