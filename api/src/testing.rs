//! What the integration tests reach into (feature `testing`, which only they enable): the router
//! without the server, and the constants and patterns the OpenAPI document must publish.

use std::time::Duration;

use axum::Router;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::app::AppOptions;
use crate::params::interval::Window;
use crate::settings::{ApiSettings, DEFAULT_MAX_BODY_BYTES};
use crate::stream::StreamOptions;
use crate::web::Dashboard;

pub use crate::params::time::{MAX_TIME_SECS, MIN_TIME_SECS};
pub use crate::query::ACCEPTED_PARAMETERS;

/// The patterns the OpenAPI document publishes for the parameters.
pub mod patterns {
    pub use crate::params::cursor::PATTERN as CURSOR;
    pub use crate::params::tickers::PATTERN as TICKERS;
    pub use crate::params::time::PATTERN as RFC3339;
}

/// The application over `pool` with the default body limit; its metrics go to a registry of its own.
pub fn app(pool: PgPool, query_timeout: Duration) -> Router {
    app_with_metrics(pool, query_timeout, &mut Registry::default())
}

/// [`app`] with its metrics registered in `registry`.
pub fn app_with_metrics(pool: PgPool, query_timeout: Duration, registry: &mut Registry) -> Router {
    crate::app::router(
        pool,
        AppOptions {
            query_timeout,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            window: Window::default(),
            stream: StreamOptions::default(),
            dashboard: Dashboard::missing(),
            pooled: false,
            listen: None,
            compression_level: crate::compression::DEFAULT_LEVEL,
            cors: Default::default(),
            // No limits and no keys: the suites send many requests quickly; the rate limit tests
            // turn them on through `app_with_settings`.
            access: Default::default(),
        },
        registry,
    )
}

/// The application over `pool` as the binary builds it from `settings` (its query timeout, body
/// limit, `AGGREGATOR_WINDOW_SECS`, stream settings, rate limits and keys), without the server;
/// its streams end when the application is dropped. Requests that do not come with a
/// `ConnectInfo<SocketAddr>` extension share one rate-limit bucket.
pub fn app_with_settings(pool: PgPool, settings: &ApiSettings) -> Result<Router, String> {
    app_with_settings_and_metrics(pool, settings, &mut Registry::default())
}

/// [`app_with_settings`] with its metrics registered in `registry`.
pub fn app_with_settings_and_metrics(
    pool: PgPool,
    settings: &ApiSettings,
    registry: &mut Registry,
) -> Result<Router, String> {
    let window = settings.window().map_err(|error| error.to_string())?;
    let stream = settings
        .stream_options(CancellationToken::new(), Default::default())
        .map_err(|error| error.to_string())?;
    Ok(crate::app::router(
        pool,
        AppOptions {
            query_timeout: Duration::from_millis(settings.query_timeout_ms),
            max_body_bytes: settings.max_body_bytes,
            window,
            stream,
            dashboard: Dashboard::load(&settings.web_dir),
            pooled: false,
            listen: None,
            compression_level: settings.compression_level,
            cors: settings.cors().map_err(|error| error.to_string())?,
            access: settings.access().map_err(|error| error.to_string())?,
        },
        registry,
    ))
}

/// The body of the page `GET uri` asks for, written the other way: its rows decoded into
/// [`crate::model::WindowPrice`] and the page serialized by serde, as the answers from memory and
/// the stream's events are. The reference the database path's own writer (`page_json`) must equal
/// byte for byte. `uri` must be a valid prices query.
pub async fn reference_page(pool: &PgPool, uri: &str) -> Vec<u8> {
    let uri: axum::http::Uri = uri.parse().expect("a URI");
    let pairs = crate::params::query_pairs(&uri).expect("a well-formed query");
    let query = crate::query::PriceQuery::parse(&pairs, Window::default()).expect("a valid query");
    let rows = query
        .to_sql()
        .build_query_as::<crate::model::WindowPrice>()
        .fetch_all(pool)
        .await
        .expect("the rows");
    serde_json::to_vec(&crate::model::page(&query, rows)).expect("a page")
}
