//! What the integration tests reach into (feature `testing`, which only they enable): the router
//! without the server, and the constants and patterns the OpenAPI document must publish.

use std::time::Duration;

use axum::Router;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

use crate::app::{AppOptions, DEFAULT_MAX_BODY_BYTES};

pub use crate::query::{patterns, ACCEPTED_PARAMETERS, MAX_TIME_SECS, MIN_TIME_SECS};

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
        },
        registry,
    )
}
