//! The feed: one `PgListener` per API instance (`LISTEN window_changes`, kept by its task in
//! [`super::listen`]). On each notification it reads the log after the last id it has published,
//! once, and hands the new entries to every subscriber as one shared [`Batch`], whatever the number
//! of subscribers. This module owns what the task and the endpoints share: the position, the
//! subscribers and the latest prices, behind one lock.
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

use axum::body::Bytes;
use sqlx::postgres::PgConnectOptions;
use tickpipe_common::otel::opentelemetry::trace::SpanContext;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use crate::database::Database;
use crate::metrics::StreamMetrics;
use crate::problem::ApiError;

use super::commits::{Entry, RecentCommits};
use super::frame;
use super::latest::{self, Latest};
use super::listen;
use super::log::{self, Change, CHUNK};

/// Every entry of the log with `after < id <= upto`, in id order (all of them: a subscriber that
/// filters by ticker does so itself). Batches follow each other without gap: the next one's `after`
/// is this one's `upto`, except after a reset, when every subscriber is dropped.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) after: i64,
    pub(crate) upto: i64,
    pub(crate) changes: Vec<Arc<Change>>,
    /// Every change's frame, in order, as one buffer: what a subscriber that takes the whole batch
    /// writes, shared by all of them.
    pub(crate) frames: Bytes,
}

impl Batch {
    fn new(after: i64, upto: i64, changes: Vec<Arc<Change>>) -> Self {
        let frames = frame::concat(changes.iter().map(|change| &change.frame));
        Self {
            after,
            upto,
            changes,
            frames,
        }
    }
}

/// The feed of one application. Cheap to clone; its task starts with the first subscriber and
/// stops when `stop` is cancelled.
#[derive(Debug, Clone)]
pub(crate) struct Feed {
    shared: Arc<Shared>,
}

/// What the feed's handles, its task and its subscriptions share.
#[derive(Debug)]
pub(super) struct Shared {
    db: Database,
    /// How the task opens its listening connection.
    pub(super) connect: PgConnectOptions,
    queue: usize,
    pub(super) metrics: StreamMetrics,
    /// Ends the task (and with it every subscription).
    pub(super) stop: CancellationToken,
    started: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// The `upto` of the last batch published; `None` until the first read.
    published: Option<i64>,
    /// The latest prices as of `published` (`None` until the first read).
    latest: Option<Latest>,
    /// Listening, and everything announced so far is published: `latest` may be served.
    pub(super) live: bool,
    /// The traced commits of recent changes, kept only while trace export is on.
    commits: Option<RecentCommits>,
    next_key: u64,
    pub(super) subscribers: HashMap<u64, mpsc::Sender<Arc<Batch>>>,
}

/// A subscriber's end: every batch published after [`Subscription::published`], until the feed
/// drops it (too slow, or the feed stopped). Unsubscribes when dropped.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) receiver: mpsc::Receiver<Arc<Batch>>,
    /// What the feed had published when this subscription started (`None`: nothing yet).
    pub(crate) published: Option<i64>,
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
    /// behind before it is dropped; `remember_commits`: whether to keep [`Feed::commits_of`]
    /// (trace export is on).
    pub(crate) fn new(
        db: Database,
        connect: PgConnectOptions,
        queue: usize,
        metrics: StreamMetrics,
        stop: CancellationToken,
        remember_commits: bool,
    ) -> Self {
        let state = State {
            commits: remember_commits.then(RecentCommits::default),
            ..State::default()
        };
        Self {
            shared: Arc::new(Shared {
                db,
                connect,
                queue: queue.max(1),
                metrics,
                stop,
                started: AtomicBool::new(false),
                state: Mutex::new(state),
            }),
        }
    }

    /// The last id published (`None` before the first read).
    pub(crate) fn published(&self) -> Option<i64> {
        self.shared.state().published
    }

    /// The answer to `GET /v1/get-prices` without parameters from memory, while the feed is live;
    /// `None` (ask the database) otherwise. Starts the feed if it is not running.
    pub(crate) fn latest(&self) -> Option<Arc<latest::Snapshot>> {
        self.start();
        let body = {
            let state = self.shared.state();
            state
                .latest
                .as_ref()
                .filter(|_| state.live)
                .map(|latest| latest.snapshot())
        };
        let counter = if body.is_some() {
            &self.shared.metrics.latest_from_memory
        } else {
            &self.shared.metrics.latest_from_database
        };
        counter.inc();
        body
    }

    /// The traced commits that wrote the recent windows inside `rows` (see [`RecentCommits`]):
    /// what an answer read from the database links to. Empty unless trace export is on; starts
    /// the feed then, so that it follows the commits from the first traced request on.
    pub(crate) fn commits_of(&self, rows: &[Entry]) -> Vec<SpanContext> {
        let links = match &self.shared.state().commits {
            Some(commits) => commits.of(rows),
            None => return Vec::new(),
        };
        self.start();
        links
    }

    /// Registers a subscriber, starting the feed if it is not running.
    pub(crate) fn subscribe(&self) -> Subscription {
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
            tokio::spawn(listen::run(Arc::clone(&self.shared)));
        }
    }
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn published(&self) -> Option<i64> {
        self.state().published
    }

    pub(super) fn set_live(&self, live: bool) {
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
        if let Some(commits) = state.commits.as_mut() {
            commits.apply(&batch.changes);
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
    pub(super) async fn catch_up(&self) -> Result<(), ApiError> {
        loop {
            let Some(after) = self.published() else {
                let (newest, loaded) = latest::load(&self.db).await?;
                self.state().latest = Some(loaded);
                self.publish(Batch::new(newest, newest, Vec::new()));
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
            self.publish(Batch::new(after, upto, read.changes));
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
