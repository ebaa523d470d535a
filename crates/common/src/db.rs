//! The PostgreSQL pools, shared by the aggregator (writes) and the API (reads). The schema and its
//! migrations belong to the `tickpipe-store` crate.
//!
//! Pools are created lazily: a service starts even while the database is down and its queries fail
//! (and are retried, or answered 503) until it is back, instead of crash-looping at startup.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};

use crate::config::{DatabaseSettings, DatabaseUrl};

/// Errors from pool creation.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    Url(#[source] sqlx::Error),
}

/// A pool of sessions of their own on `DATABASE_DIRECT_URL` (else `DATABASE_URL`), connecting on
/// first use, with bounded size and acquire timeout. Each connection checks that it reached
/// PostgreSQL itself, not a pooler (see [`SESSION_MARK`]).
pub fn lazy_pool(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    let options = session_options(settings)?;
    Ok(pool_options(settings, true).connect_lazy_with(options))
}

/// The options of a session of its own (`DATABASE_DIRECT_URL`, else `DATABASE_URL`), carrying
/// [`SESSION_MARK`]; the API's `LISTEN` connects with them.
pub fn session_options(settings: &DatabaseSettings) -> Result<PgConnectOptions, DbError> {
    Ok(parse(settings.session_url())?
        .options([(SESSION_MARK, "on")])
        .application_name("tickpipe"))
}

/// A startup setting every session connection carries and checks. PgBouncer refuses the startup
/// parameter that carries it (`options`), or drops it when told to ignore it: either way a
/// connection that does not have it went through a pooler, where `LISTEN` and session locks
/// silently do nothing useful.
pub const SESSION_MARK: &str = "tickpipe.session";

/// Fails a new session connection that lost [`SESSION_MARK`] on the way (see [`setup_error`]).
pub async fn check_session(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    // The simple protocol: one message, whatever sits between here and the server.
    // (A query without arguments goes as one simple-protocol message.)
    let query = "SELECT current_setting('tickpipe.session', true)";
    let row = connection.fetch_one(query).await?;
    let mark: Option<String> = row.try_get(0)?;
    if mark.as_deref() == Some("on") {
        Ok(())
    } else {
        Err(sqlx::Error::Configuration(POOLER.into()))
    }
}

/// The message of a session connection that went through a pooler.
const POOLER: &str = "reaches a connection pooler, not PostgreSQL itself";

/// Like the pool of [`lazy_pool`], for the API's reads, every session read-only (a second guard
/// beside the read-only role) and without JIT. Behind a transaction pooler
/// ([`DatabaseSettings::behind_pooler`]) on `DATABASE_URL` and without session settings: the API
/// sets them per transaction there (PgBouncer refuses the startup parameter that carries them).
pub fn read_only_pool(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    let mut options = parse(&settings.url)?.application_name("tickpipe");
    if settings.behind_pooler() {
        // Named statements outlive the transaction on the server connection the pooler picked,
        // which the next transaction may not get: none are cached (the API deallocates them).
        options = options.statement_cache_capacity(0);
    } else {
        // No JIT: the API's bar queries have planner estimates above `jit_above_cost`, and
        // compiling them took about half a second per execution of a plan that runs in a
        // millisecond. Startup parameters cost no round trip per query.
        options = options.options([("default_transaction_read_only", "on"), ("jit", "off")]);
    }
    // sqlx pings every connection it hands out (`test_before_acquire`): one more round trip to
    // PostgreSQL per request, which under load cost as much as the API's whole query. Only a
    // connection idle long enough for the server to have gone away meanwhile is checked; one
    // that breaks in use fails its query, which the API answers as a 503 and sqlx replaces.
    let pool = pool_options(settings, false)
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IDLE_AFTER {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options);
    Ok(pool)
}

/// A read-only pool's connection idle at least this long is pinged before it is handed out.
pub const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

fn parse(url: &DatabaseUrl) -> Result<PgConnectOptions, DbError> {
    url.expose().parse().map_err(DbError::Url)
}

/// The pool options both pools share; `session`: each new connection is checked with
/// [`check_session`].
fn pool_options(settings: &DatabaseSettings, session: bool) -> PgPoolOptions {
    let url = if session {
        settings.session_url()
    } else {
        &settings.url
    };
    let report = crate::db_tls::TlsReport::new(url);
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .after_connect(move |connection, _meta| {
            let report = report.clone();
            Box::pin(async move {
                if session {
                    check_session(connection).await?;
                }
                report.once(connection).await
            })
        })
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

/// A database error that waiting will not heal, as one line naming `variable` (the URL setting
/// the connection came from) and what to change; `None` for every other error. Never quotes the
/// URL: it holds the password.
pub fn setup_error(error: &sqlx::Error, variable: &str) -> Option<String> {
    let pooler = || {
        format!(
            "{variable} {POOLER}: migrations, LISTEN and the aggregator's writes need a direct \
             connection; set DATABASE_DIRECT_URL to one (and keep the pooled URL in DATABASE_URL)"
        )
    };
    match error {
        sqlx::Error::Configuration(message) if message.to_string() == POOLER => Some(pooler()),
        sqlx::Error::Tls(tls) => Some(format!(
            "{variable}: the TLS connection to PostgreSQL failed ({tls}): check sslmode and \
             sslrootcert (the server's CA file) in it"
        )),
        sqlx::Error::Database(db) => {
            let message = db.message();
            match db.code().as_deref() {
                _ if message.contains("unsupported startup parameter") => Some(pooler()),
                Some("28000") if message.contains("no encryption") => Some(format!(
                    "{variable}: PostgreSQL accepts only TLS connections: set sslmode=verify-full \
                     (with sslrootcert=<CA file>) or sslmode=require in it"
                )),
                Some("28P01") => Some(format!(
                    "{variable}: PostgreSQL refused the password of its user"
                )),
                _ => None,
            }
        }
        _ => None,
    }
}
