//! The data API: `GET /v1/get-prices` over the aggregator's `window_prices` table.
//!
//! It only reads (use a login role in `tickpipe_reader`, and every session is read-only), answers
//! errors as `application/problem+json`, and serves `/healthz`, `/readyz`, `/metrics` and an OpenAPI
//! 3.1 document generated from the same route definitions, so the document cannot drift.
//!
//! [`prices`] is the endpoint, [`query`] the parameter rules and SQL, [`problem`] the error type,
//! [`database`] the fail-fast gate in front of PostgreSQL, [`serve_app`] the HTTP server.

pub mod database;
pub mod metrics;
pub mod pattern;
pub mod prices;
pub mod problem;
pub mod query;
pub mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::database::Database;
use crate::metrics::HttpMetrics;
use crate::problem::{ApiError, Problem};
use crate::settings::Settings;

/// Default of `API_MAX_BODY_BYTES`: no resource reads a body, so a small one is plenty.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024;

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Database,
    pub registry: Arc<Registry>,
    pub openapi: Arc<String>,
}

/// The application's limits (the README's configuration table has their defaults).
#[derive(Debug, Clone, Copy)]
pub struct AppOptions {
    /// A request's whole database work (waiting for a connection and the query) gets this long.
    pub query_timeout: Duration,
    /// Larger declared request bodies are refused with a 413.
    pub max_body_bytes: usize,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tickpipe API",
        description = "Average stock prices per ticker over 30-second windows.\n\n\
            Errors are RFC 9457 `application/problem+json` documents (the `Problem` schema). Besides the \
            responses listed per operation, any path not listed here answers 404 (`NotFound`) and any \
            method other than GET and HEAD answers 405 with `Allow: GET, HEAD` (`MethodNotAllowed`); \
            both are in `components.responses`. A request that declares a body larger than the limit \
            answers 413."
    ),
    components(schemas(Problem))
)]
struct ApiDoc;

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    responses(
        (status = 200, description = "Alive", body = String),
        (status = 413, description = "The request has a body larger than the limit", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers a query.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Database reachable", body = String),
        (status = 413, description = "The request has a body larger than the limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unreachable, refusing connections or too slow", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state
        .db
        .run("readiness query", |mut connection| async move {
            sqlx::query("SELECT 1").execute(&mut *connection).await
        })
        .await?;
    Ok("ready")
}

/// Prometheus metrics: requests and latency by route and status.
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "application/openmetrics-text"),
        (status = 413, description = "The request has a body larger than the limit", body = Problem, content_type = "application/problem+json"),
    )
)]
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
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    responses(
        (status = 200, description = "OpenAPI 3.1 document", body = Object),
        (status = 413, description = "The request has a body larger than the limit", body = Problem, content_type = "application/problem+json"),
    )
)]
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

/// Refuses a declared body over the limit before any handler runs. (A chunked body is never read:
/// no handler reads one, and [`DefaultBodyLimit`] bounds any extractor that would.)
async fn limit_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match declared {
        Some(declared) if declared > limit as u64 => {
            ApiError::PayloadTooLarge { declared, limit }.into_response()
        }
        _ => next.run(request).await,
    }
}

/// A response that is a problem document, for `components.responses`.
fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

/// The application with the default limits: routes, documentation, metrics and error fallbacks.
pub fn app(pool: PgPool, query_timeout: Duration) -> Router {
    app_with(
        pool,
        AppOptions {
            query_timeout,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        },
    )
}

/// The application over `pool` with the given limits.
pub fn app_with(pool: PgPool, options: AppOptions) -> Router {
    let mut registry = Registry::default();
    let http_metrics = HttpMetrics::register(&mut registry);
    let (router, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(prices::get_prices))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_endpoint))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let components = document.components.get_or_insert_with(Default::default);
    components.responses.insert(
        "NotFound".to_owned(),
        problem_response("No resource at this path (any path not listed in this document)"),
    );
    components.responses.insert(
        "MethodNotAllowed".to_owned(),
        problem_response(
            "Every resource answers only GET and HEAD; other methods get this, with `Allow: GET, HEAD`",
        ),
    );
    let state = AppState {
        db: Database::new(pool, options.query_timeout),
        registry: Arc::new(registry),
        openapi: Arc::new(document.to_pretty_json().unwrap_or_default()),
    };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            options.max_body_bytes,
            limit_body,
        ))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
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
    let app = app_with(
        pool,
        AppOptions {
            query_timeout: Duration::from_millis(settings.api.api_query_timeout_ms),
            max_body_bytes: settings.api.api_max_body_bytes,
        },
    );
    tracing::info!(addr = ?listener.local_addr().ok(), "serving the API");
    serve_app(
        listener,
        app,
        Duration::from_millis(settings.api.api_header_read_timeout_ms),
        shutdown,
    )
    .await;
    Ok(())
}

/// The HTTP/1.1 server: accepts connections until `shutdown` is cancelled, then lets in-flight
/// requests finish and returns once every connection is closed.
///
/// Why not `axum::serve`: it has no timeout for reading a request head, so a client that opens a
/// connection and never finishes its request line holds the connection (and its memory) forever.
/// hyper's own HTTP/1 connection has one (`header_read_timeout`, which needs a timer). HTTP/2 is not
/// served: it would need its own protection against slow clients, and nothing here needs it.
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    if !is_per_connection_error(&error) {
                        // Out of file descriptors and the like: give the system a moment rather
                        // than spin on the same error.
                        tracing::error!(%error, "cannot accept connections; retrying in 1 s");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = shutdown.cancelled() => break,
                        }
                    }
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Includes a client that timed out sending its request head: its problem, not ours.
                tracing::debug!(%error, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting connections; draining in-flight requests");
    graceful.shutdown().await;
}

/// Accept errors that concern one connection only (the client gave up before we accepted it).
fn is_per_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
