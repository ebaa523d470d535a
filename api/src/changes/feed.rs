//! The feed: one `PgListener` per API instance (`LISTEN window_changes`). On each notification it
//! reads the log after the last id it has published, once, and hands the new entries to every
//! subscriber as one shared [`Batch`], whatever the number of subscribers.
//!
//! Nothing is lost when the listening connection is: the aggregator's `NOTIFY` is delivered only to
//! sessions listening when it commits, so after every (re)connection the feed first issues `LISTEN`
//! and then reads the log after its last id. A commit before `LISTEN` took effect is visible to that
//! read; one after it is notified. sqlx re-establishes a lost connection by itself and reports it
//! (`try_recv` returns `None`), which triggers the same read; any other failure drops the listener
//! and builds a new one. A connection that dies silently (no reset ever arrives) is found by a query
//! on it after [`LIVENESS`] without notifications.
//!
//! The feed also keeps the latest prices in memory ([`super::latest`]): filled from one snapshot of
//! the database at its first read, then advanced by every batch before it is published. They may be
//! served only while the feed is *live*: listening, and having read everything announced so far.
//! It stops being live the moment a notification announces an id it has not read (until that read
//! is done), the connection is lost or fails its check, or a read fails; so a response from memory
//! is never older than a commit whose notification had reached this process. Losing the connection
//! is seen at once when the server closes it (`pg_terminate_backend`, a restart): sqlx's eager
//! reconnection is off, so `try_recv` reports the loss before anything reconnects, and the feed
//! listens again and catches up before it is live again.
//!
//! Each subscriber has a bounded queue of batches; one that is full when a batch is published is a
//! subscriber that cannot keep up: it is dropped (its stream ends once it has drained its queue, and
//! the client resumes from its last id) rather than slowing the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use crate::database::Database;
use crate::metrics::StreamMetrics;
use crate::problem::ApiError;

use super::latest::{self, Latest};
use super::log::{self, Change, CHUNK};

/// The channel the aggregator notifies on commit, with the newest id as payload.
pub const CHANNEL: &str = "window_changes";
/// `application_name` of the listening connection.
pub const LISTENER_NAME: &str = "tickpipe-listener";
/// Without notifications for this long, the listening connection is checked with a query.
const LIVENESS: Duration = Duration::from_secs(30);
/// The check's answer must come within this.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between failed attempts (to listen, or to read the log), doubling up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long the listener waits for a connection before an attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Every entry of the log with `after < id <= upto`, in id order (all of them: a subscriber that
/// filters by ticker does so itself). Batches follow each other without gap: the next one's `after`
/// is this one's `upto`, except after a reset, when every subscriber is dropped.
#[derive(Debug)]
pub struct Batch {
    pub after: i64,
    pub upto: i64,
    pub changes: Vec<Arc<Change>>,
}

/// The feed of one application. Cheap to clone; its task starts with the first subscriber and
/// stops when `stop` is cancelled.
#[derive(Debug, Clone)]
pub struct Feed {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    db: Database,
    connect: PgConnectOptions,
    queue: usize,
    metrics: StreamMetrics,
    stop: CancellationToken,
    started: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The `upto` of the last batch published; `None` until the first read.
    published: Option<i64>,
    /// The latest prices as of `published` (`None` until the first read).
    latest: Option<Latest>,
    /// Listening, and everything announced so far is published: `latest` may be served.
    live: bool,
    next_key: u64,
    subscribers: HashMap<u64, mpsc::Sender<Arc<Batch>>>,
}

/// A subscriber's end: every batch published after [`Subscription::published`], until the feed
/// drops it (too slow, or the feed stopped). Unsubscribes when dropped.
#[derive(Debug)]
pub struct Subscription {
    pub receiver: mpsc::Receiver<Arc<Batch>>,
    /// What the feed had published when this subscription started (`None`: nothing yet).
    pub published: Option<i64>,
    shared: Arc<Shared>,
    key: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.state().subscribers.remove(&self.key);
    }
}

impl Feed {
    /// `connect`: how to open the listening connection; `queue`: batches a subscriber may fall
    /// behind before it is dropped.
    pub fn new(
        db: Database,
        connect: PgConnectOptions,
        queue: usize,
        metrics: StreamMetrics,
        stop: CancellationToken,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                db,
                connect,
                queue: queue.max(1),
                metrics,
                stop,
                started: AtomicBool::new(false),
                state: Mutex::default(),
            }),
        }
    }

    /// The last id published (`None` before the first read).
    pub fn published(&self) -> Option<i64> {
        self.shared.state().published
    }

    /// The answer to `GET /v1/get-prices` without parameters from memory, while the feed is live;
    /// `None` (ask the database) otherwise. Starts the feed if it is not running.
    pub fn latest_body(&self) -> Option<axum::body::Bytes> {
        self.start();
        let body = {
            let state = self.shared.state();
            state
                .latest
                .as_ref()
                .filter(|_| state.live)
                .map(|latest| latest.snapshot().body.clone())
        };
        let counter = if body.is_some() {
            &self.shared.metrics.latest_from_memory
        } else {
            &self.shared.metrics.latest_from_database
        };
        counter.inc();
        body
    }

    /// Registers a subscriber, starting the feed if it is not running.
    pub fn subscribe(&self) -> Subscription {
        self.start();
        let (sender, receiver) = mpsc::channel(self.shared.queue);
        let mut state = self.shared.state();
        let key = state.next_key;
        state.next_key += 1;
        state.subscribers.insert(key, sender);
        Subscription {
            receiver,
            published: state.published,
            shared: Arc::clone(&self.shared),
            key,
        }
    }

    fn start(&self) {
        // A load first: every request without parameters passes here, and a read shares the cache
        // line where a swap would bounce it between cores.
        if self.shared.started.load(Ordering::Acquire) {
            return;
        }
        if !self.shared.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(Arc::clone(&self.shared)));
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn published(&self) -> Option<i64> {
        self.state().published
    }

    fn set_live(&self, live: bool) {
        self.state().live = live;
    }

    /// Advances the latest prices by `batch`, then hands it to every subscriber; one whose queue is
    /// full is dropped.
    fn publish(&self, batch: Batch) {
        let batch = Arc::new(batch);
        let mut state = self.state();
        if let Some(latest) = state.latest.as_mut() {
            if let Err(error) = latest.apply(&batch.changes) {
                // Cannot happen (plain data serializes); without the prices, the database answers.
                tracing::error!(%error, "cannot keep the latest prices in memory");
                state.latest = None;
            }
        }
        state.published = Some(batch.upto);
        state
            .subscribers
            .retain(|_, sender| match sender.try_send(Arc::clone(&batch)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.metrics.slow_disconnects.inc();
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            });
    }

    /// Reads the log after the last id published and publishes it, in batches of at most
    /// [`CHUNK`]. The first read loads the latest prices and publishes an empty batch at the newest
    /// id of the same snapshot: subscribers that started earlier read up to it themselves.
    async fn catch_up(&self) -> Result<(), ApiError> {
        loop {
            let Some(after) = self.published() else {
                let (newest, loaded) = latest::load(&self.db).await?;
                self.state().latest = Some(loaded);
                self.publish(Batch {
                    after: newest,
                    upto: newest,
                    changes: Vec::new(),
                });
                return Ok(());
            };
            let read = log::read(&self.db, after, i64::MAX, None).await?;
            if !log::retains_after(read.oldest, after) {
                // Only after a day without the database: the entries in between are gone.
                tracing::warn!(
                    after,
                    oldest = read.oldest,
                    "change log entries the feed had not read were pruned; ending every stream"
                );
                self.reset();
                continue;
            }
            let Some(upto) = read.last_row else {
                return Ok(());
            };
            self.publish(Batch {
                after,
                upto,
                changes: read.changes,
            });
            if read.rows < CHUNK as usize {
                return Ok(());
            }
        }
    }

    /// Drops every subscriber and forgets the position: the next read starts at the newest id.
    fn reset(&self) {
        let mut state = self.state();
        state.subscribers.clear();
        state.published = None;
        state.latest = None;
        state.live = false;
    }
}

/// The feed's task: listen, follow, and listen again whenever the connection fails, until stopped.
async fn run(shared: Arc<Shared>) {
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
        // Named apart from the pool's sessions, so an operator (or a test) can tell it.
        .connect_lazy_with(connect.clone().application_name(LISTENER_NAME));
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection is reported at once instead of after reconnecting: until the feed has
    // listened again and caught up, the latest prices must not be served from memory.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
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
        tokio::select! {
            () = shared.stop.cancelled() => return,
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => {
                    let mut due = is_news(shared, &notification);
                    while let Some(notification) = listener.next_buffered() {
                        due |= is_news(shared, &notification);
                    }
                    if due {
                        // Known to be behind: memory must not answer until the read is done.
                        shared.set_live(false);
                    }
                    behind |= due;
                }
                Ok(None) => {
                    // Lost, and not reconnected yet (eager reconnection is off): stop serving from
                    // memory, then connect and LISTEN again (sqlx does both on the next statement)
                    // and read what the lost connection would have announced.
                    shared.set_live(false);
                    tracing::warn!("the LISTEN connection was lost; listening again and catching up");
                    shared.metrics.listener_reconnects.inc();
                    let relisten = sqlx::query("SELECT 1").execute(&mut listener);
                    match tokio::time::timeout(CONNECT_TIMEOUT, relisten).await {
                        Ok(Ok(_)) => behind = true,
                        Ok(Err(error)) => {
                            tracing::warn!(%error, "cannot listen again on a new connection");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(timeout = ?CONNECT_TIMEOUT, "cannot listen again on a new connection");
                            return;
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "the LISTEN connection failed");
                    return;
                }
            },
            () = tokio::time::sleep(wait) => {
                if behind {
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
                let ping = sqlx::query("SELECT 1").execute(&mut listener);
                match tokio::time::timeout(PING_TIMEOUT, ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "the LISTEN connection does not answer");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(timeout = ?PING_TIMEOUT, "the LISTEN connection does not answer");
                        return;
                    }
                }
            }
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
