//! The feed's task: the one listening connection of the instance, kept alive, and the reads of the
//! log it triggers.
//!
//! Nothing is lost when the listening connection is: the aggregator's `NOTIFY` is delivered only to
//! sessions listening when it commits, so after every (re)connection the feed first issues `LISTEN`
//! and then reads the log after its last id. A commit before `LISTEN` took effect is visible to that
//! read; one after it is notified. sqlx re-establishes a lost connection by itself and reports it
//! (`try_recv` returns `None`), which triggers the same read; any other failure drops the listener
//! and builds a new one. A connection that dies silently (no reset ever arrives) is found by a query
//! on it after [`LIVENESS`] without notifications.
//!
//! Apart from [`super::feed`] so that the connection's life (when to listen again, when to ping,
//! when the memory stops being live) reads in one place, without the subscribers' bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions};

use super::feed::Shared;

// The channel the aggregator notifies on commit, with the newest id as payload.
use tickpipe_store::changes::CHANNEL;
/// `application_name` of the listening connection.
const LISTENER_NAME: &str = "tickpipe-listener";
/// Without notifications for this long, the listening connection is checked with a query.
const LIVENESS: Duration = Duration::from_secs(30);
/// The check's answer must come within this.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between failed attempts (to listen, or to read the log), doubling up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long the listener waits for a connection before an attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The feed's task: listen, follow, and listen again whenever the connection fails, until stopped.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut retry = RETRY_MIN;
    loop {
        let listener = tokio::select! {
            () = shared.stop.cancelled() => break,
            listener = listen(&shared.connect) => listener,
        };
        match listener {
            Ok(listener) => {
                retry = RETRY_MIN;
                tracing::info!(channel = CHANNEL, "listening for change log notifications");
                follow(&shared, listener).await;
                shared.set_live(false);
                if shared.stop.is_cancelled() {
                    break;
                }
                shared.metrics.listener_reconnects.inc();
            }
            Err(error) => {
                tracing::warn!(%error, retry_ms = retry.as_millis(), "cannot listen for change log notifications");
            }
        }
        tokio::select! {
            () = shared.stop.cancelled() => break,
            () = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
    // Every stream ends; the handlers' own shutdown check usually got there first.
    let mut state = shared.state();
    state.subscribers.clear();
    state.live = false;
    drop(state);
    tracing::debug!("change log feed stopped");
}

/// A listener on a connection of its own (a pool of one, which sqlx uses to reconnect it).
async fn listen(connect: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(CONNECT_TIMEOUT)
        // LISTEN through a transaction pooler would wait for notifications that never come.
        .after_connect(|connection, _meta| Box::pin(tickpipe_common::db::check_session(connection)))
        // Named apart from the pool's sessions, so an operator (or a test) can tell it.
        .connect_lazy_with(connect.clone().application_name(LISTENER_NAME));
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection is reported at once instead of after reconnecting: until the feed has
    // listened again and caught up, the latest prices must not be served from memory.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// What to do after a wait on the listener.
enum Next {
    /// Keep following; `true`: read the log first.
    Follow { behind: bool },
    /// The connection is unusable: build a new listener.
    Relisten,
}

/// Reads the log now (`LISTEN` is in effect) and again on every notification, until the listener
/// fails or the feed stops.
async fn follow(shared: &Shared, mut listener: PgListener) {
    let mut behind = true;
    let mut retry = RETRY_MIN;
    loop {
        if behind {
            match shared.catch_up().await {
                Ok(()) => {
                    behind = false;
                    retry = RETRY_MIN;
                    shared.set_live(true);
                }
                Err(error) => {
                    shared.set_live(false);
                    tracing::warn!(%error, retry_ms = retry.as_millis(), "cannot read the change log");
                }
            }
        }
        let wait = if behind { retry } else { LIVENESS };
        let next = tokio::select! {
            () = shared.stop.cancelled() => return,
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => Next::Follow {
                    behind: behind | on_notification(shared, &mut listener, &notification),
                },
                Ok(None) => on_lost(shared, &mut listener).await,
                Err(error) => {
                    tracing::warn!(%error, "the LISTEN connection failed");
                    Next::Relisten
                }
            },
            () = tokio::time::sleep(wait) => {
                if behind {
                    retry = (retry * 2).min(RETRY_MAX);
                    Next::Follow { behind }
                } else {
                    ping(&mut listener).await
                }
            }
        };
        match next {
            Next::Follow { behind: now } => behind = now,
            Next::Relisten => return,
        }
    }
}

/// Whether `notification`, or one buffered behind it, announces an id not yet read; if so, memory
/// stops being live until the read is done.
fn on_notification(
    shared: &Shared,
    listener: &mut PgListener,
    notification: &PgNotification,
) -> bool {
    let mut due = is_news(shared, notification);
    while let Some(notification) = listener.next_buffered() {
        due |= is_news(shared, &notification);
    }
    if due {
        // Known to be behind: memory must not answer until the read is done.
        shared.set_live(false);
    }
    due
}

/// The connection was lost, and not reconnected yet (eager reconnection is off): stop serving from
/// memory, then connect and LISTEN again (sqlx does both on the next statement) and read what the
/// lost connection would have announced.
async fn on_lost(shared: &Shared, listener: &mut PgListener) -> Next {
    shared.set_live(false);
    tracing::warn!("the LISTEN connection was lost; listening again and catching up");
    shared.metrics.listener_reconnects.inc();
    if answers(
        listener,
        CONNECT_TIMEOUT,
        "cannot listen again on a new connection",
    )
    .await
    {
        Next::Follow { behind: true }
    } else {
        Next::Relisten
    }
}

/// After [`LIVENESS`] without notifications: whether the connection still answers a query.
async fn ping(listener: &mut PgListener) -> Next {
    if answers(
        listener,
        PING_TIMEOUT,
        "the LISTEN connection does not answer",
    )
    .await
    {
        Next::Follow { behind: false }
    } else {
        Next::Relisten
    }
}

/// Whether the listening connection answers a query within `timeout` (a lost one is connected and
/// listening again first: sqlx does both on the next statement); if not, `failure` is logged.
async fn answers(listener: &mut PgListener, timeout: Duration, failure: &str) -> bool {
    let query = sqlx::query("SELECT 1").execute(&mut *listener);
    match tokio::time::timeout(timeout, query).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "{failure}");
            false
        }
        Err(_) => {
            tracing::warn!(?timeout, "{failure}");
            false
        }
    }
}

/// Whether `notification` announces an id the feed has not published (an unreadable payload is
/// taken as news).
fn is_news(shared: &Shared, notification: &PgNotification) -> bool {
    match notification.payload().parse::<i64>() {
        Ok(id) => shared.published().is_none_or(|published| id > published),
        Err(_) => true,
    }
}
