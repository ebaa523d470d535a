//! The aggregator: exact per-ticker prices (sum, count, min, max, open, close) over tumbling
//! event-time windows, in PostgreSQL.
//!
//! One message's path, one file a step:
//! - `consumer` configures the Kafka client and polls; `ownership` claims each assigned
//!   partition in PostgreSQL (fencing a former owner) and seeks it to the stored resume offset.
//! - `processor` takes one record: `record` validates it, invalid ones go to the
//!   [`dead_letters`] topic, valid ones go to `partition`, which adds their prices to the open
//!   window (`window`) and decides when windows are final.
//! - the `tickpipe-store` crate adds final windows to `window_prices` in the same transaction as
//!   the partition's progress and the change log (which notifies the API). That shared
//!   transaction is what makes the table exact across crashes, restarts and rebalances;
//!   `docs/design.md` ("Exactly once") explains why.
//!
//! Around them: `housekeeping` (partitions created ahead of the clock, retention by `retention`),
//! [`settings`], [`metrics`], `throttle` (log lines per interval) and
//! `cancellable` (waits that end at shutdown).
//!
//! It does not serve the data (the API does) and does not trust offsets committed to Kafka.

mod cancellable;
mod consumer;
pub mod dead_letters;
mod group_commit;
mod housekeeping;
pub mod metrics;
mod ownership;
mod partition;
mod processor;
mod record;
mod retention;
pub mod settings;
mod throttle;
mod topic_watch;
mod traces;
mod window;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::metrics::AggregatorMetrics;
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    #[error(transparent)]
    Metrics(#[from] tickpipe_common::telemetry::MetricsServerError),
    #[error(transparent)]
    Database(#[from] tickpipe_common::db::DbError),
    #[error(transparent)]
    Migrate(#[from] tickpipe_store::schema::MigrateError),
    #[error(transparent)]
    Shape(#[from] tickpipe_store::shape::ShapeError),
    #[error(transparent)]
    Topic(#[from] tickpipe_common::topics::TopicError),
    #[error("Kafka client error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("the consume loop panicked")]
    Panicked,
    #[error(transparent)]
    Traces(#[from] tickpipe_common::otel::OtelError),
}

/// Runs the aggregator until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), AggregatorError> {
    let mut registry = Registry::default();
    let metrics = AggregatorMetrics::register(&mut registry);
    let endpoint = Some((settings.aggregator.metrics_addr, registry));
    aggregate(settings, metrics, endpoint, shutdown).await
}

/// [`run`] without the metrics endpoint, for tests and benchmarks that read the metrics directly.
pub async fn run_with_metrics(
    settings: Settings,
    metrics: AggregatorMetrics,
    shutdown: CancellationToken,
) -> Result<(), AggregatorError> {
    aggregate(settings, metrics, None, shutdown).await
}

async fn aggregate(
    settings: Settings,
    metrics: AggregatorMetrics,
    endpoint: Option<(SocketAddr, Registry)>,
    shutdown: CancellationToken,
) -> Result<(), AggregatorError> {
    metrics.record_settings(
        settings.aggregator.window_secs,
        settings.aggregator.grace_ms,
    );
    // Sessions of their own: the migrations' advisory lock, and commits whose prepared statements
    // a transaction pooler would lose. Behind one, DATABASE_URL serves only the API.
    let pool = tickpipe_common::db::lazy_pool(&settings.database)?;
    if settings.database.behind_pooler() {
        tracing::info!(
            "writing through DATABASE_DIRECT_URL; DATABASE_URL (a pooler) serves the API"
        );
    }
    // The consumer joins the group meanwhile; it polls once everything below is ready.
    let (ready, consumer_ready) = tokio::sync::oneshot::channel();
    let consuming = tokio::spawn(consume_traced(
        settings.clone(),
        pool.clone(),
        metrics,
        consumer_ready,
        shutdown.clone(),
    ));
    let prepared = tokio::try_join!(
        prepare_schema(&settings, &pool, &shutdown),
        topics_ready(&settings, &shutdown)
    );
    let prepared = match prepared {
        Ok((schema, topics)) => schema && topics,
        Err(error) => {
            drop(ready);
            let _ = consuming.await;
            return Err(error);
        }
    };
    if prepared {
        // Served only now, so that "healthy" means "migrated and about to consume": the API's
        // container waits for it.
        if let Some((addr, mut registry)) = endpoint {
            tickpipe_common::pool_metrics::register(&mut registry, "aggregator", pool.clone());
            tickpipe_common::telemetry::serve_metrics(addr, Arc::new(registry), shutdown.clone())
                .await?;
        }
        // The consumer ended already if it could not start (its error is returned below).
        let _ = ready.send(());
    } else {
        drop(ready);
    }
    consuming.await.map_err(|_| AggregatorError::Panicked)?
}

/// Migrates the schema, checks the stored rows' shape against the settings and starts the
/// housekeeping; `Ok(false)` if stopped first.
async fn prepare_schema(
    settings: &Settings,
    pool: &sqlx::PgPool,
    shutdown: &CancellationToken,
) -> Result<bool, AggregatorError> {
    let variable = settings.database.session_variable();
    match tickpipe_store::schema::migrate(pool, variable, shutdown).await {
        Ok(()) => {}
        Err(tickpipe_store::schema::MigrateError::Cancelled) => return Ok(false),
        Err(error) => return Err(error.into()),
    }
    // Before anything is read or written: settings that shape the stored rows must match them.
    tickpipe_store::shape::record_window_secs(
        pool,
        "AGGREGATOR_WINDOW_SECS",
        settings.aggregator.window_secs,
    )
    .await?;
    tickpipe_store::shape::record_topic(pool, "KAFKA_TOPIC", &settings.kafka.topic).await?;
    tokio::spawn(housekeeping::run(
        pool.clone(),
        settings.retention.clone(),
        shutdown.clone(),
    ));
    Ok(true)
}

/// The consume loop on a blocking thread, with the service's traces exported (when on) until it
/// ends, so that the last commits' spans are flushed before `run` returns.
async fn consume_traced(
    settings: Settings,
    pool: sqlx::PgPool,
    metrics: AggregatorMetrics,
    ready: tokio::sync::oneshot::Receiver<()>,
    shutdown: CancellationToken,
) -> Result<(), AggregatorError> {
    let traces =
        tickpipe_common::otel::Tracing::for_service(&settings.telemetry.otel, "aggregator")?;
    let runtime = tokio::runtime::Handle::current();
    let loop_traces = traces.clone();
    let consumed = tokio::task::spawn_blocking(move || {
        consumer::consume(
            &settings,
            pool,
            metrics,
            loop_traces,
            runtime,
            ready,
            shutdown,
        )
    })
    .await;
    traces.shutdown().await;
    consumed.map_err(|_| AggregatorError::Panicked)??;
    Ok(())
}

/// Makes sure the topics exist: the dead-letter topic (created unless `KAFKA_CREATE_TOPICS` is
/// false), and with `KAFKA_CREATE_TOPICS=false` the ticker topic too (otherwise the generator's to
/// create). `Ok(false)` if stopped first.
async fn topics_ready(
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Result<bool, AggregatorError> {
    use tickpipe_common::topics::ensure_topic_with_retry;
    let kafka = &settings.kafka;
    if !kafka.create_topics
        && !ensure_topic_with_retry(kafka, &kafka.topic, -1, -1, shutdown).await?
    {
        return Ok(false);
    }
    // The broker's default.replication.factor: 3 on a cluster, 1 on a single node.
    let dlq = &settings.aggregator.dlq_topic;
    Ok(ensure_topic_with_retry(kafka, dlq, 1, -1, shutdown).await?)
}
