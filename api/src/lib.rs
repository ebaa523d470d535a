//! The data API: `GET /v1/get-prices` over the aggregator's `window_prices` table, and
//! `GET /v1/stream-prices`, its changes as server-sent events.
//!
//! It only reads (use a login role in `tickpipe_reader`, and every session is read-only), answers
//! errors as `application/problem+json`, and serves `/healthz`, `/readyz` and an OpenAPI 3.1
//! document generated from the same route definitions, so the document cannot drift. Prometheus
//! `/metrics` is served apart, on `METRICS_ADDR`, like the other services'.
//!
//! The library's public surface is [`run`] and [`serve`] with their [`settings`]; the feature
//! `testing` adds what the integration tests reach into.
//!
//! # Layout
//! Imports go one way, from the router down to the parts:
//! - `app`: the router (routes, OpenAPI document, fallbacks, middleware); builds the state.
//! - `state`: the application state and the `FromRef` substates handlers take from it.
//! - `prices`: `GET /v1/get-prices`, its extractor and its OpenAPI parameters.
//! - `stream`: `GET /v1/stream-prices`: its request, one client's stream, its limits and document.
//! - `query`: a prices request as a validated `PriceQuery` and the SQL it becomes.
//! - `params`: the parameter grammars both endpoints share: time, tickers, cursor, interval,
//!   integer.
//! - `model`: the row both endpoints serve (`WindowPrice`) and the page of them.
//! - `changes`: the change feed both endpoints use: the change log, the one `LISTEN` connection
//!   that follows it, and the latest prices kept in memory.
//! - `problem`: the error type, rendered as `application/problem+json`.
//! - `database`: the fail-fast gate in front of PostgreSQL.
//! - `metrics`, `trace`: request metrics and request logs; `freshness`: the `complete` boundary
//!   and the window width as gauges, for the staleness alert.
//! - `http_cache`, `compression`, `cors`: `ETag`/`304`/`Cache-Control`, gzip/br/zstd, and
//!   cross-origin requests, as layers around every route.
//! - `access`: rate limits per client and optional API keys, a layer inside them.
//! - `web`: the dashboard at `/`.
//! - `server`, `write_timeout`: the HTTP server and its slow-client protection.
//! - `settings`: configuration; `testing`: what the integration tests reach into.

mod access;
mod app;
mod changes;
mod compression;
mod cors;
mod database;
mod freshness;
mod http_cache;
mod metrics;
mod model;
mod page_json;
mod params;
mod prices;
mod problem;
mod query;
mod server;
pub mod settings;
mod state;
mod stored_width;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;
mod trace;
mod web;
mod write_timeout;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::app::AppOptions;
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error(transparent)]
    Config(#[from] tickpipe_common::config::ConfigError),
    #[error(transparent)]
    Database(#[from] tickpipe_common::db::DbError),
    #[error(transparent)]
    Metrics(#[from] tickpipe_common::telemetry::MetricsServerError),
    #[error(transparent)]
    Refused(#[from] stored_width::StartupRefusal),
    #[error(transparent)]
    Traces(#[from] tickpipe_common::otel::OtelError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Serves the API on `API_BIND` and its metrics on `METRICS_ADDR` until `shutdown` is cancelled,
/// then drains in-flight requests.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), ApiServerError> {
    let addr = settings.api.bind;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiServerError::Bind { addr, source })?;
    serve(listener, settings, shutdown).await
}

/// Compares the configured window width with the stored data's on a session of its own: refused
/// now when the database can tell already, otherwise watched until it can (see [`stored_width`]).
async fn check_width(
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<Option<stored_width::StartupRefusal>>>, ApiServerError> {
    let database = &settings.database;
    let sessions = tickpipe_common::config::DatabaseSettings {
        max_connections: 1,
        ..database.clone()
    };
    let stored = stored_width::Stored {
        pool: tickpipe_common::db::lazy_pool(&sessions)?,
        variable: database.session_variable(),
    };
    let window_secs = settings.api.window_secs;
    // Refused before serving when the database can tell already; otherwise checked until it can.
    let watch = match stored_width::check(&stored, window_secs).await? {
        true => None,
        false => Some(tokio::spawn(stored_width::watch(
            stored,
            window_secs,
            shutdown.clone(),
        ))),
    };
    Ok(watch)
}

/// [`run`] on an already bound listener (tests bind port 0). The metrics endpoint still binds
/// `METRICS_ADDR`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), ApiServerError> {
    let database = &settings.database;
    let traces = tickpipe_common::otel::Tracing::for_service(&settings.telemetry.otel, "api")?;
    let pool = tickpipe_common::db::read_only_pool(database)?;
    let width_watch = check_width(&settings, &shutdown).await?;
    let mut registry = Registry::default();
    tickpipe_common::pool_metrics::register(&mut registry, "api", pool.clone());
    let query_timeout = Duration::from_millis(settings.api.query_timeout_ms);
    freshness::spawn(
        &mut registry,
        database::Database::new(pool.clone(), query_timeout, database.behind_pooler()),
        settings.api.window_secs,
        shutdown.clone(),
    );
    let app = app::router(
        pool,
        AppOptions {
            query_timeout,
            max_body_bytes: settings.api.max_body_bytes,
            window: settings.api.window()?,
            stream: settings
                .api
                .stream_options(shutdown.clone(), traces.clone())?,
            dashboard: web::Dashboard::load(&settings.api.web_dir),
            pooled: database.behind_pooler(),
            listen: Some(tickpipe_common::db::session_options(database)?),
            compression_level: settings.api.compression_level,
            cors: settings.api.cors()?,
            access: settings.api.access()?,
        },
        &mut registry,
    );
    tickpipe_common::telemetry::serve_metrics(
        settings.api.metrics_addr,
        Arc::new(registry),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(addr = ?listener.local_addr().ok(), "serving the API");
    server::serve_app(
        listener,
        app,
        Duration::from_millis(settings.api.header_read_timeout_ms),
        Duration::from_millis(settings.api.write_timeout_ms),
        shutdown,
    )
    .await;
    traces.shutdown().await;
    width_verdict(width_watch).await
}

/// What the width watch found once the server has stopped: the refusal that stopped it, if any.
async fn width_verdict(
    watch: Option<tokio::task::JoinHandle<Option<stored_width::StartupRefusal>>>,
) -> Result<(), ApiServerError> {
    if let Some(watch) = watch {
        // Finished already if it stopped the server; otherwise it has nothing more to say.
        watch.abort();
        if let Ok(Some(mismatch)) = watch.await {
            return Err(mismatch.into());
        }
    }
    Ok(())
}
