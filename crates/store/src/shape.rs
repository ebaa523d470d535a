//! What shapes the stored rows, recorded in the database by the first writer (`stored_shape`).
//!
//! A window row carries neither its width nor its topic in its key: an aggregator restarted with
//! another `AGGREGATOR_WINDOW_SECS` would write rows of the new width beside the old ones and skip
//! the records of the window open at the restart as already written, and one restarted on another
//! `KAFKA_TOPIC` would add that topic's prices to the first one's windows (twice, if it is a copy)
//! while the old topic's progress held `complete` back forever. So both are part of the data: the
//! first writer records them, every later writer must agree, and readers take them from here.
//!
//! The other settings were checked and do not shape rows: the grace period and the idle lag decide
//! *when* a window closes (a record later than that is late whichever they are, and a replay
//! takes the stored boundary), the consumer group is informational (progress lives here, not in
//! Kafka's group offsets), and the dead-letter topic only says where invalid records go.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

/// The window width in whole seconds.
pub const WINDOW_SECS: &str = "window_secs";
/// The Kafka topic the windows are aggregated from.
pub const TOPIC: &str = "topic";

/// Why a writer may not use this database as configured.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error(
        "{setting}={configured}, but this database holds windows written with {setting}={stored} \
         (recorded {recorded_at}): start with {setting}={stored}, or point DATABASE_URL at a new \
         database to start over (docs/operations.md#settings-that-shape-the-stored-data)"
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
    record_or_check(pool, WINDOW_SECS, setting, window_secs.to_string()).await
}

/// Records `topic` as the topic the stored windows come from, or fails when another one is.
pub async fn record_topic(
    pool: &PgPool,
    setting: &'static str,
    topic: &str,
) -> Result<(), ShapeError> {
    record_or_check(pool, TOPIC, setting, topic.to_owned()).await
}

async fn record_or_check(
    pool: &PgPool,
    name: &str,
    setting: &'static str,
    configured: String,
) -> Result<(), ShapeError> {
    // Insert-or-keep, then read back: of two first writers starting together, one records its
    // value and the other compares with it.
    sqlx::query(
        "INSERT INTO stored_shape (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(&configured)
    .execute(pool)
    .await?;
    let (stored, recorded_at): (String, DateTime<Utc>) =
        sqlx::query_as("SELECT value, recorded_at FROM stored_shape WHERE name = $1")
            .bind(name)
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
