//! What shapes the stored rows, recorded in the database by the first writer (`stored_shape`).
//!
//! A window row does not carry its width in its key: an aggregator restarted with another
//! `AGGREGATOR_WINDOW_SECS` would write rows of the new width beside the old ones and skip the
//! records of the window open at the restart as already written, and an API configured with another
//! width would label the stored windows wrongly. So the width is part of the data: the first writer
//! records it, every later writer must agree, and readers take it from here.
//!
//! Only the width shapes rows. The other settings were checked and do not: the grace period and
//! the idle lag decide *when* a window closes (a record later than that is counted as late either
//! way, and a replay repeats the stored verdict), the topic and group say where records come from,
//! and the dead-letter topic where invalid ones go.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

/// The window width in whole seconds.
pub const WINDOW_SECS: &str = "window_secs";

/// Why a writer may not use this database as configured.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error(
        "{setting}={configured}, but this database holds windows written with {setting}={stored} \
         (recorded {recorded_at}): start with {setting}={stored}, or point DATABASE_URL at a new \
         database to aggregate at the new width (docs/operations.md#changing-the-window-width)"
    )]
    Mismatch {
        setting: &'static str,
        configured: String,
        stored: String,
        recorded_at: DateTime<Utc>,
    },
    #[error("cannot read or record the stored shape: {0}")]
    Database(#[from] sqlx::Error),
}

/// Records `window_secs` as the width of the stored windows if none is recorded yet, and fails
/// when another one is. `setting` names the configuration variable in the error.
pub async fn record_window_secs(
    pool: &PgPool,
    setting: &'static str,
    window_secs: u32,
) -> Result<(), ShapeError> {
    let configured = window_secs.to_string();
    // Insert-or-keep, then read back: of two first writers starting together, one records its
    // width and the other compares with it.
    sqlx::query(
        "INSERT INTO stored_shape (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(WINDOW_SECS)
    .bind(&configured)
    .execute(pool)
    .await?;
    let (stored, recorded_at): (String, DateTime<Utc>) =
        sqlx::query_as("SELECT value, recorded_at FROM stored_shape WHERE name = $1")
            .bind(WINDOW_SECS)
            .fetch_one(pool)
            .await?;
    if stored == configured {
        return Ok(());
    }
    Err(ShapeError::Mismatch {
        setting,
        configured,
        stored,
        recorded_at,
    })
}

/// The recorded window width in seconds, `None` while nothing has been written.
pub async fn window_secs<'e>(executor: impl PgExecutor<'e>) -> Result<Option<u32>, sqlx::Error> {
    let value: Option<String> =
        sqlx::query_scalar("SELECT value FROM stored_shape WHERE name = $1")
            .bind(WINDOW_SECS)
            .fetch_optional(executor)
            .await?;
    Ok(value.and_then(|value| value.parse().ok()))
}
