//! Logging and Prometheus metrics, set up the same way in every service.
//!
//! Metrics use an explicit [`Registry`] per service instance rather than a process-global recorder,
//! so that tests can run several services in one process and read each one's figures apart.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogFormat, TelemetrySettings};

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Installs the global tracing subscriber. Call once, from the binary. With `traces` enabled, the
/// `info` spans (those the filter lets through) are exported too, through `tracing-opentelemetry`.
pub fn init_tracing(
    settings: &TelemetrySettings,
    traces: &crate::otel::Tracing,
) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(&settings.rust_log).map_err(|e| {
        ConfigError::new(
            "RUST_LOG",
            format!("expected a tracing filter such as `info`: {e}"),
        )
    })?;
    let otel = traces
        .tracer()
        .map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer.clone()));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match settings.log_format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true))
            .try_init(),
    };
    // A second initialisation (tests) keeps the first subscriber, which is what we want.
    drop(result);
    Ok(())
}

/// Renders a registry in the text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut body = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut body, registry);
    body
}

/// `GET /metrics` (and `GET /healthz` for container health checks) over the given registry.
pub fn metrics_router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(registry)
}

async fn metrics_handler(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    ([(CONTENT_TYPE, METRICS_CONTENT_TYPE)], render(&registry))
}

/// Error starting the metrics endpoint.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr}: {source}")]
pub struct MetricsServerError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Serves the metrics router on `addr` until `shutdown` is cancelled. Returns the bound address
/// (useful with port 0 in tests) once listening.
pub async fn serve_metrics(
    addr: SocketAddr,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<SocketAddr, MetricsServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsServerError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsServerError { addr, source })?;
    tokio::spawn(async move {
        let server = axum::serve(listener, metrics_router(registry))
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(error) = server.await {
            tracing::error!(%error, "metrics server failed");
        }
    });
    tracing::info!(addr = %bound, "serving Prometheus metrics at /metrics");
    Ok(bound)
}
