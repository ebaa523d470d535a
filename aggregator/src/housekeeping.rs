//! The stored history's upkeep, every [`EVERY`] while the aggregator runs: partitions created
//! ahead of the clock (so live commits find theirs made; a commit still creates any it lacks), and
//! retention, which drops whole partitions past their table's age. Every instance does it: both
//! steps are idempotent and serialized in PostgreSQL.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use tickpipe_store::history::{self, Retention};

/// How often the upkeep runs. Partitions span a day or more, so a minute is early enough to
/// create the next one and late enough to cost nothing.
const EVERY: Duration = Duration::from_secs(60);

/// Runs the upkeep now and then every [`EVERY`] until `shutdown`.
pub(crate) async fn run(pool: PgPool, policy: Vec<Retention>, shutdown: CancellationToken) {
    for retention in &policy {
        tracing::info!(
            table = retention.table,
            keep = %crate::retention::describe(retention.keep),
            "retention"
        );
    }
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => upkeep(&pool, &policy).await,
        }
    }
}

async fn upkeep(pool: &PgPool, policy: &[Retention]) {
    match history::create_ahead(pool).await {
        Ok(pass) => {
            for (table, created) in pass.done {
                tracing::info!(table, created, "created partitions ahead of the clock");
            }
            report_deferred(&pass.deferred, "creating its next partition");
        }
        Err(error) => {
            tracing::warn!(%error, "could not create partitions ahead (commits create their own)")
        }
    }
    match history::apply_retention(pool, policy).await {
        Ok(pass) => {
            for (table, partitions) in pass.done {
                tracing::info!(table, partitions, "dropped partitions past their retention");
            }
            report_deferred(&pass.deferred, "dropping partitions past their retention");
        }
        Err(error) => tracing::warn!(%error, "retention failed; retrying at the next upkeep"),
    }
}

/// A table whose lock a long query held: its DDL waits for the next upkeep rather than stall
/// every query queued behind it.
fn report_deferred(tables: &[String], what: &str) {
    for table in tables {
        tracing::info!(
            table,
            "a long query holds the table: {what} waits for the next upkeep"
        );
    }
}
