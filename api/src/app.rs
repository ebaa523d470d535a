//! The router: the documented routes, the OpenAPI document generated from them, the error
//! fallbacks and the middleware around every route. It builds the [`AppState`] the handlers take
//! their parts of; only the crate root and `testing` build a router.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use prometheus_client::registry::Registry;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::{Access, AccessOptions};
use crate::cors::Origins;
use crate::database::Database;
use crate::metrics::{AccessMetrics, HttpMetrics, StreamMetrics};
use crate::params::interval::Window;
use crate::problem::{ApiError, Problem};
use crate::state::{AppState, OpenApiJson};
use crate::stream::{StreamOptions, Streams};
use crate::web::Dashboard;
use crate::{access, compression, http_cache, metrics, prices, stream, trace, web};

/// The application's limits (the README's configuration table has their defaults).
#[derive(Debug, Clone)]
pub(crate) struct AppOptions {
    /// A request's whole database work (waiting for a connection and the query) gets this long.
    pub(crate) query_timeout: Duration,
    /// Larger declared request bodies are refused with a 413.
    pub(crate) max_body_bytes: usize,
    /// The aggregator's window.
    pub(crate) window: Window,
    /// The live stream's limits, and the shutdown that ends every stream.
    pub(crate) stream: StreamOptions,
    /// The dashboard's files, served at `/` (outside the OpenAPI document: not JSON API).
    pub(crate) dashboard: Dashboard,
    /// The pool's URL is a transaction pooler (`DATABASE_DIRECT_URL` is set apart from it).
    pub(crate) pooled: bool,
    /// How the stream's `LISTEN` connects (a session of its own); `None`: as the pool does.
    pub(crate) listen: Option<PgConnectOptions>,
    /// `API_COMPRESSION_LEVEL`: 0 is off.
    pub(crate) compression_level: u32,
    /// `API_CORS_ORIGINS`.
    pub(crate) cors: Origins,
    /// `API_RATE_LIMIT_RPS`, `API_RATE_LIMIT_BURST` and `API_KEYS_FILE`.
    pub(crate) access: AccessOptions,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tickpipe API",
        description = "Stock prices per ticker over the aggregator's windows (30 seconds by default), \
            or over bars of several windows: average, count, minimum, maximum, open and close, and \
            whether each entry is complete.\n\n\
            Errors are RFC 9457 `application/problem+json` documents (the `Problem` schema). Besides the \
            responses listed per operation, any path not listed here answers 404 (`NotFound`) and any \
            method other than GET and HEAD answers 405 with `Allow: GET, HEAD` (`MethodNotAllowed`); \
            both are in `components.responses`. A request that declares a body larger than the limit \
            answers 413. The dashboard (`/` and its files under `/assets/`) is a page, not JSON \
            API, and is left out of this document.\n\n\
            **Compression.** JSON answers of 1 KiB or more are compressed with gzip, br or zstd as \
            `Accept-Encoding` prefers (`Content-Encoding`, `Vary: accept-encoding`); the event \
            stream never is.\n\n\
            **Caching.** Every successful JSON answer has a strong `ETag` (suffixed with the content \
            coding inside the quotes when compressed) and answers `If-None-Match` with a 304 \
            (weak comparison, as RFC 9110 prescribes). `Cache-Control` is \
            `public, max-age=86400, immutable` on a prices page that can never change (see \
            `GET /v1/get-prices`), `no-cache` on the other successful answers, and `no-store` on \
            errors, which have no `ETag`.\n\n\
            **CORS.** Off unless `API_CORS_ORIGINS` is set (a list of origins, or `*`): then an \
            allowed origin gets `Access-Control-Allow-Origin`, a preflight (`OPTIONS` with \
            `Access-Control-Request-Method`) is answered with methods GET, HEAD and OPTIONS and \
            request headers `If-None-Match`, `Last-Event-ID`, `X-Request-Id`, `Authorization` and \
            `X-API-Key`, and `ETag`, `Retry-After`, `X-Request-Id`, `RateLimit` and \
            `RateLimit-Policy` are exposed to scripts; an `EventSource` on an allowed origin can \
            open the stream. No credentials (cookies). While CORS is off, `OPTIONS` is a 405 like \
            any method but GET and HEAD.\n\n\
            **Rate limits.** Each client (its API key, or without one its address) has a token \
            bucket of `API_RATE_LIMIT_BURST` units (default 400) refilled at \
            `API_RATE_LIMIT_RPS` units a second (default 100; 0 turns limits off). A request \
            costs what it asks of the database: `GET /v1/get-prices` without parameters (the \
            latest prices, from memory) 1, with parameters 1 + ceil(limit/100) (11 at the \
            default limit, 101 for 10,000 rows), opening `GET /v1/stream-prices` 5; `/healthz`, \
            `/readyz`, this document and the dashboard's files are free. A request that does not \
            fit is a 429 with `Retry-After`; limited answers carry the `RateLimit` and \
            `RateLimit-Policy` fields of draft-ietf-httpapi-ratelimit-headers-11 \
            (`RateLimit-Policy: \"default\";q=400;w=4`, `RateLimit: \"default\";r=<left>;t=<seconds \
            until full>`), whose quota units are these costs.\n\n\
            **API keys.** Only when the server has `API_KEYS_FILE`: then every limited operation \
            needs a key, as `Authorization: Bearer <key>`, `X-API-Key: <key>` or, for an \
            `EventSource`, which cannot send headers, the query parameter `api_key` (which puts \
            the key in URLs: proxy logs and browser history may keep it); without a valid one it \
            is a 401. A key-holder is limited per key, anyone else per address."
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
async fn readyz(State(db): State<Database>) -> Result<&'static str, ApiError> {
    db.run("readiness query", |mut connection| async move {
        sqlx::query("SELECT 1").execute(&mut *connection).await
    })
    .await?;
    Ok("ready")
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
async fn openapi_json(State(OpenApiJson(openapi)): State<OpenApiJson>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi.as_str().to_owned(),
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

/// The application over `pool`: routes, documentation, error fallbacks, request metrics (registered
/// in `registry`, which the caller serves on `METRICS_ADDR`) and request logs.
pub(crate) fn router(pool: PgPool, options: AppOptions, registry: &mut Registry) -> Router {
    let http_metrics = HttpMetrics::register(registry);
    let stream_metrics = StreamMetrics::register(registry);
    let access = Access::new(options.access, AccessMetrics::register(registry));
    let (routes, mut document) = documented_routes();
    prices::document_window(&mut document, options.window);
    access::openapi::document(&mut document, access.needs_keys(), access.limits());
    let openapi = document.to_pretty_json().expect(
        "the OpenAPI document is plain data built from this crate's route definitions and schemas, \
         which serde_json always serializes",
    );
    let db = Database::new(pool.clone(), options.query_timeout, options.pooled);
    let connect = options
        .listen
        .unwrap_or_else(|| (*pool.connect_options()).clone());
    let state = AppState {
        streams: Streams::new(db.clone(), connect, options.stream, stream_metrics),
        db,
        window: options.window,
        openapi: OpenApiJson(Arc::new(openapi)),
    };
    let answers = routes
        .answers
        .merge(web::routes(options.dashboard))
        .fallback(not_found);
    let answers = compressed(
        inner_layers(answers, options.max_body_bytes, access.clone()),
        options.compression_level,
    );
    let routes = answers.merge(inner_layers(routes.stream, options.max_body_bytes, access));
    let routes = match options.cors.layer() {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    let routes = routes.layer(axum::middleware::from_fn_with_state(
        http_metrics,
        metrics::record,
    ));
    trace::layer(routes).with_state(state)
}

/// What every route has innermost: the `405` fallback, the body limits, the rate limit and keys
/// ([`access::guard`]: so the answers and the stream are guarded alike, a refusal is tagged
/// `no-store` like any error, and a `304` carries the `RateLimit` fields too), and the tag and
/// `304` on the uncompressed answer. Around it, from the inside out: the compression (not for the stream),
/// then CORS, then the metrics and the request logs (which so record a `304` or a preflight as
/// such); CORS is outermost of the HTTP layers so that a preflight is answered before any route
/// sees it and every answer, errors too, carries its headers.
fn inner_layers(
    routes: Router<AppState>,
    max_body_bytes: usize,
    access: Access,
) -> Router<AppState> {
    routes
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            max_body_bytes,
            limit_body,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(access, access::guard))
        .layer(axum::middleware::from_fn(http_cache::revalidate))
}

/// The compression and the tag's coding suffix around `routes`. Not around the stream: its events
/// are never compressed, and the layer's body would cost every open stream several kilobytes (it
/// holds room for each encoder's state) for nothing.
fn compressed(routes: Router<AppState>, level: u32) -> Router<AppState> {
    match compression::layer(level) {
        Some(compression) => routes
            .layer(compression)
            .layer(axum::middleware::from_fn(http_cache::tag_encoding)),
        None => routes,
    }
}

/// The documented routes: the answers, which may be compressed, and the stream, which is not.
struct Routes {
    answers: Router<AppState>,
    stream: Router<AppState>,
}

/// The routes and the OpenAPI document generated from their definitions, with the problem
/// responses every path shares (404, 405) in `components.responses`.
fn documented_routes() -> (Routes, Document) {
    let (answers, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(prices::get_prices))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let (stream, stream_document) = OpenApiRouter::new()
        .routes(routes!(stream::stream_prices))
        .split_for_parts();
    document.merge(stream_document);
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
    (Routes { answers, stream }, document)
}

/// A response that is a problem document, for `components.responses`.
fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    problem_response_with(description, &[])
}

/// [`problem_response`] with `headers` (name, description), strings.
pub(crate) fn problem_response_with(
    description: &str,
    headers: &[(&str, &str)],
) -> RefOr<utoipa::openapi::Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    for (name, description) in headers {
        response = response.header(
            *name,
            utoipa::openapi::header::HeaderBuilder::new()
                .description(Some(*description))
                .build(),
        );
    }
    RefOr::T(response.build())
}
