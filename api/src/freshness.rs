//! How fresh the served data is, as Prometheus gauges: the `complete` boundary (every window
//! starting before it is final on every partition) and the window width.
//!
//! Why the API exports them rather than the aggregator: the staleness alert
//! (`deploy/prometheus/rules/tickpipe.yml`) must keep working when the aggregator is the thing that
//! stopped, and the API is what clients read. The boundary is read from the database every
//! [`REFRESH`] by a task of its own rather than taken from the change feed, which only runs while
//! someone reads the latest prices or a stream. When a read fails the gauge keeps its last value:
//! data the API cannot read is as stale as data nobody writes, and the alert should say so.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::database::Database;

/// How often the boundary is read. Small against any window width worth alerting on, and one
/// short query of three small tables.
const REFRESH: Duration = Duration::from_secs(1);

/// Registers `api_window_seconds` and `api_complete_boundary_timestamp_seconds` in `registry`
/// and keeps the boundary current until `shutdown` is cancelled. The boundary is 0 until the
/// first read, and while nothing is complete (no partition has progress).
pub(crate) fn spawn(
    registry: &mut Registry,
    db: Database,
    window_secs: u32,
    shutdown: CancellationToken,
) {
    let window: Gauge = Gauge::default();
    let boundary: Gauge<f64, AtomicU64> = Gauge::default();
    let r = registry.sub_registry_with_prefix("api");
    r.register(
        "window_seconds",
        "Width of the aggregator's windows (AGGREGATOR_WINDOW_SECS) as this API serves them",
        window.clone(),
    );
    r.register(
        "complete_boundary_timestamp_seconds",
        "Unix time before which every window is complete on every partition (0: none yet)",
        boundary.clone(),
    );
    window.set(i64::from(window_secs));
    tokio::spawn(follow(db, boundary, shutdown));
}

async fn follow(db: Database, boundary: Gauge<f64, AtomicU64>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(REFRESH);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let read = db
            .run("complete boundary", |mut session| async move {
                tickpipe_store::boundary::complete_before(&mut *session).await
            })
            .await;
        match read {
            // Milliseconds to seconds: exact enough for an f64 for the next few million years.
            Ok(Some(at)) => {
                boundary.set(at.timestamp_millis() as f64 / 1000.0);
            }
            Ok(None) => {
                boundary.set(0.0);
            }
            // Kept: see the module's comment. The API's request path reports the outage.
            Err(error) => tracing::debug!(%error, "cannot read the complete boundary"),
        }
    }
}
