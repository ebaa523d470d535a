//! The API serves windows at the width it is configured with (`AGGREGATOR_WINDOW_SECS`), which
//! must be the width the stored windows were written with: at another width it would label
//! 30-second rows as minutes. The aggregator records its width in the database when it first
//! writes (`tickpipe_store::shape`), so the API compares its own with it and refuses to run when
//! they differ, with one line naming both.
//!
//! The API starts while the database is down (it answers 503 until it is back) and before any
//! aggregator has written, so the comparison cannot always happen at startup: until it can, it is
//! retried in the background, and a mismatch found then stops the server with the same error.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often the comparison is retried while the database is unreachable or holds no width yet.
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// The configured and the stored width differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "AGGREGATOR_WINDOW_SECS={configured}, but the database holds windows written with \
     AGGREGATOR_WINDOW_SECS={stored}: set AGGREGATOR_WINDOW_SECS={stored} for the API (the same as \
     the aggregator's), or point DATABASE_URL at the database written with {configured}"
)]
pub struct WidthMismatch {
    pub configured: u32,
    pub stored: u32,
}

/// Why the API may not serve: the widths differ, or the database refuses a connection in a way
/// no wait will change (a pooler where a direct connection is needed, TLS, a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupRefusal {
    #[error(transparent)]
    Width(#[from] WidthMismatch),
    #[error("{0}")]
    Setup(String),
}

/// What one comparison found.
enum Compared {
    Same,
    Refused(StartupRefusal),
    /// The database is unreachable, or no aggregator has recorded a width yet.
    NotYet,
}

/// The database the comparison reads: a pool of sessions of their own (whose first connection
/// also tells a pooler from PostgreSQL), and the variable naming its URL in messages.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) pool: PgPool,
    pub(crate) variable: &'static str,
}

async fn compare(stored: &Stored, configured: u32) -> Compared {
    match tickpipe_store::shape::window_secs(&stored.pool).await {
        Ok(Some(width)) if width == configured => Compared::Same,
        Ok(Some(width)) => Compared::Refused(
            WidthMismatch {
                configured,
                stored: width,
            }
            .into(),
        ),
        Ok(None) => Compared::NotYet,
        Err(error) => match tickpipe_common::db::setup_error(&error, stored.variable) {
            Some(line) => Compared::Refused(StartupRefusal::Setup(line)),
            None => {
                tracing::debug!(%error, "the stored window width cannot be read yet");
                Compared::NotYet
            }
        },
    }
}

/// Compares once now: `Err` on a mismatch, `Ok(true)` when the widths agree, `Ok(false)` when the
/// comparison has to wait (see [`watch`]).
pub(crate) async fn check(stored: &Stored, configured: u32) -> Result<bool, StartupRefusal> {
    match compare(stored, configured).await {
        Compared::Same => Ok(true),
        Compared::Refused(refusal) => Err(refusal),
        Compared::NotYet => Ok(false),
    }
}

/// Retries the comparison until it can be made; on a mismatch, logs it, stops the server through
/// `shutdown` and returns it. Ends with `None` when the widths agree or the server stops first.
pub(crate) async fn watch(
    stored: Stored,
    configured: u32,
    shutdown: CancellationToken,
) -> Option<StartupRefusal> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(RETRY_EVERY) => {}
        }
        match compare(&stored, configured).await {
            Compared::Same => return None,
            Compared::Refused(refusal) => {
                tracing::error!(%refusal, "stopping");
                shutdown.cancel();
                return Some(refusal);
            }
            Compared::NotYet => {}
        }
    }
}
