//! The data API: `GET /v1/get-prices` over the aggregator's `window_prices` table.
//!
//! It only reads (use a login role in `tickpipe_reader`, and every session is read-only), answers
//! errors as `application/problem+json`, and serves `/healthz`, `/readyz`, `/metrics` and an OpenAPI
//! 3.1 document generated from the same route definitions, so the document cannot drift.
//!
//! [`prices`] is the endpoint, [`query`] the parameter rules and SQL, [`problem`] the error type.

pub mod metrics;
pub mod prices;
pub mod problem;
pub mod query;
pub mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, Uri};
use axum::response::IntoResponse;
use axum::Router;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::metrics::HttpMetrics;
use crate::problem::{ApiError, Problem};
use crate::settings::Settings;

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub query_timeout: Duration,
    pub registry: Arc<Registry>,
    pub openapi: Arc<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tickpipe API",
        description = "Average stock prices per ticker over 30-second windows."
    ),
    components(schemas(Problem))
)]
struct ApiDoc;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers a query.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Database reachable", body = String),
        (status = 503, description = "Database unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    let ping = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(state.query_timeout, ping).await {
        Ok(Ok(_)) => Ok("ready"),
        Ok(Err(error)) => Err(ApiError::Unavailable(error.to_string())),
        Err(_) => Err(ApiError::Unavailable(
            "readiness query timed out".to_owned(),
        )),
    }
}

/// Prometheus metrics: requests and latency by route and status.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "application/openmetrics-text")))]
async fn metrics_endpoint(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            tickpipe_common::telemetry::METRICS_CONTENT_TYPE,
        )],
        tickpipe_common::telemetry::render(&state.registry),
    )
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The application: routes, documentation, metrics and error fallbacks, over `pool`.
pub fn app(pool: PgPool, query_timeout: Duration) -> Router {
    let mut registry = Registry::default();
    let http_metrics = HttpMetrics::register(&mut registry);
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(prices::get_prices))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_endpoint))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let state = AppState {
        pool,
        query_timeout,
        registry: Arc::new(registry),
        openapi: Arc::new(document.to_pretty_json().unwrap_or_default()),
    };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            http_metrics,
            metrics::record,
        ))
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error(transparent)]
    Database(#[from] tickpipe_common::db::DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// Serves the API on `API_BIND` until `shutdown` is cancelled, then drains in-flight requests.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), ApiServerError> {
    let addr = settings.api.api_bind;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiServerError::Bind { addr, source })?;
    serve(listener, settings, shutdown).await
}

/// [`run`] on an already bound listener (tests bind port 0).
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), ApiServerError> {
    let pool = tickpipe_common::db::read_only_pool(&settings.database)?;
    let app = app(
        pool,
        Duration::from_millis(settings.api.api_query_timeout_ms),
    );
    tracing::info!(addr = ?listener.local_addr().ok(), "serving the API");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ApiServerError::Serve)
}
