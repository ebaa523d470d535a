//! The schema: the migrations in `migrations/`, embedded at compile time, and how they are applied.
//!
//! The aggregator, the only writer, applies them at startup; tests apply them to a fresh database
//! of their own. sqlx takes a session-level advisory lock while it migrates, so several instances
//! starting together apply each migration exactly once.

use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use tickpipe_common::backoff::{retry, Backoff, RetryError};
use tickpipe_common::db::{is_connection_error, setup_error};

/// The migrations in `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migrations failed: {0}")]
    Failed(#[from] sqlx::migrate::MigrateError),
    /// A connection that no wait will let through (TLS, a pooler, a password), as one line.
    #[error("{0}")]
    Setup(String),
    #[error("stopped before the database was reachable")]
    Cancelled,
}

/// Applies pending migrations on `pool` (a pool of sessions of their own, which the URL setting
/// `variable` names in errors), waiting for the database with backoff.
pub async fn migrate(
    pool: &PgPool,
    variable: &str,
    shutdown: &CancellationToken,
) -> Result<(), MigrateError> {
    // Retried only while the database is unreachable (it may start after us); a failing migration
    // is a bug, and a refused setup a setting, that waiting will not fix.
    let setup = |error: &sqlx::migrate::MigrateError| match error {
        sqlx::migrate::MigrateError::Execute(error) => setup_error(error, variable),
        _ => None,
    };
    let unreachable = |error: &sqlx::migrate::MigrateError| {
        matches!(error, sqlx::migrate::MigrateError::Execute(error) if is_connection_error(error))
            && setup(error).is_none()
    };
    retry(
        "applying migrations",
        Backoff::default(),
        shutdown,
        unreachable,
        || MIGRATOR.run(pool),
    )
    .await
    .map_err(|error| match error {
        RetryError::Cancelled => MigrateError::Cancelled,
        RetryError::Permanent(error) => match setup(&error) {
            Some(line) => MigrateError::Setup(line),
            None => error.into(),
        },
    })
}
