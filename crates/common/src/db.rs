//! The PostgreSQL pools, shared by the aggregator (writes) and the API (reads). The schema and its
//! migrations belong to the `tickpipe-store` crate.
//!
//! Pools are created lazily: a service starts even while the database is down and its queries fail
//! (and are retried, or answered 503) until it is back, instead of crash-looping at startup.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use crate::config::DatabaseSettings;

/// Errors from pool creation.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    Url(#[source] sqlx::Error),
}

/// A pool that connects on first use, with bounded size and acquire timeout.
pub fn lazy_pool(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    Ok(pool_with(settings, connect_options(settings)?))
}

/// Like [`lazy_pool`], with every session read-only: a second guard beside the read-only role.
pub fn read_only_pool(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    // Read-only sessions, and no JIT: the API's bar queries have planner estimates above
    // `jit_above_cost`, and compiling them took about half a second per execution of a plan that
    // runs in a millisecond. Nothing the API runs profits from JIT. Startup parameters cost no
    // round trip per query.
    let options = connect_options(settings)?
        .options([("default_transaction_read_only", "on"), ("jit", "off")]);
    // sqlx pings every connection it hands out (`test_before_acquire`): one more round trip to
    // PostgreSQL per request, which under load cost as much as the API's whole query. Only a
    // connection idle long enough for the server to have gone away meanwhile is checked; one
    // that breaks in use fails its query, which the API answers as a 503 and sqlx replaces.
    let pool = pool_options(settings)
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IDLE_AFTER {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options.application_name("tickpipe"));
    Ok(pool)
}

/// A read-only pool's connection idle at least this long is pinged before it is handed out.
pub const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

fn connect_options(settings: &DatabaseSettings) -> Result<PgConnectOptions, DbError> {
    settings.url.expose().parse().map_err(DbError::Url)
}

fn pool_with(settings: &DatabaseSettings, options: PgConnectOptions) -> PgPool {
    pool_options(settings).connect_lazy_with(options.application_name("tickpipe"))
}

fn pool_options(settings: &DatabaseSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(3))
}

/// Whether an error means "the database is not reachable right now" rather than "the query is wrong".
pub fn is_connection_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // 57P01..57P03: admin shutdown, crash shutdown, cannot connect now (starting up);
        // 08xxx: connection exceptions.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("57P") || code.starts_with("08")),
        _ => false,
    }
}
