//! One client's stream: the log from its starting id read from the database, then the feed's
//! batches, without gap or duplicate.
//!
//! The subscriber keeps a cursor: every entry up to it has been sent (or filtered out). It reads the
//! database up to a target in ranges of [`CHUNK`] ids, so a long backlog costs bounded memory and
//! follows the client's own pace, and only subscribes to the feed once it is nearly caught up (so
//! that its queue does not fill while it reads). From then on a batch that starts beyond the cursor
//! (entries committed between its last read and its subscription, or a feed that started after it)
//! is preceded by a read of the gap, and entries at or below the cursor are skipped: exactly once,
//! in id order.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use chrono::Utc;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use tickpipe_common::otel::opentelemetry::trace::{Span as _, SpanContext, SpanKind, Tracer as _};
use tickpipe_common::otel::opentelemetry::KeyValue;
use tickpipe_common::otel::Tracing;

use crate::database::Database;
use crate::metrics::StreamMetrics;

use crate::changes::feed::{Batch, Feed, Subscription};
use crate::changes::frame;
use crate::changes::log::{self, Change, CHUNK};

/// Counts the stream as open for as long as it lives.
#[derive(Debug)]
struct Open {
    metrics: StreamMetrics,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.open.dec();
    }
}

/// What a subscriber needs from the application.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) db: Database,
    pub(crate) feed: Feed,
    pub(crate) metrics: StreamMetrics,
    pub(crate) shutdown: CancellationToken,
    /// A comment is written after this long without a frame.
    pub(crate) heartbeat: Duration,
    pub(crate) traces: Tracing,
}

#[derive(Debug)]
pub(crate) struct Subscriber {
    context: Context,
    /// Upper-cased and sorted; `None`: every ticker.
    tickers: Option<Vec<String>>,
    /// Every entry up to this id has been sent or filtered out.
    cursor: i64,
    /// Read the database up to this id before anything else.
    target: i64,
    /// The frame that sets the client's last event id to the starting point, written first.
    opening: Option<Bytes>,
    /// Changes to write, each from its own frame (read from the database, or a batch in part).
    pending: VecDeque<Arc<Change>>,
    /// A batch this subscriber takes whole: its shared frames are written as they are, uncopied.
    whole: Option<Arc<Batch>>,
    /// A batch that starts beyond the cursor, applied once the gap before it is read.
    deferred: Option<Arc<Batch>>,
    subscription: Option<Subscription>,
    span: Span,
    /// When the last frame was written; a heartbeat follows after [`Context::heartbeat`] without.
    last_write: Instant,
    _open: Open,
}

impl Subscriber {
    /// A stream of the log after `start`, read from the database up to `newest` (the newest id
    /// when the request arrived) and followed live from there.
    pub(crate) fn new(
        context: Context,
        permit: OwnedSemaphorePermit,
        tickers: Option<Vec<String>>,
        start: i64,
        newest: i64,
    ) -> Self {
        context.metrics.open.inc();
        let open = Open {
            metrics: context.metrics.clone(),
            _permit: permit,
        };
        Self {
            context,
            tickers,
            cursor: start,
            target: newest.max(start),
            opening: Some(frame::last_event_id(start)),
            pending: VecDeque::new(),
            whole: None,
            deferred: None,
            subscription: None,
            span: Span::current(),
            last_write: Instant::now(),
            _open: open,
        }
    }

    /// The subscriber as the body of an SSE response: its frames, each one write.
    pub(crate) fn into_stream(self) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
        futures_util::stream::unfold(self, |mut subscriber| async move {
            let span = subscriber.span.clone();
            let frame = subscriber.next().instrument(span).await?;
            subscriber.last_write = Instant::now();
            Some((Ok(frame), subscriber))
        })
    }

    /// The next frame to write (every event ready, or a heartbeat), or `None` when the stream ends:
    /// the server shuts down, the feed dropped this subscriber for falling behind, or the database
    /// failed (the client resumes from its last id).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(opening) = self.opening.take() {
                return Some(opening);
            }
            if let Some(batch) = self.whole.take() {
                self.count_sent(batch.changes.iter());
                return Some(batch.frames.clone());
            }
            if !self.pending.is_empty() {
                let frames = match self.pending.len() {
                    1 => self.pending[0].frame.clone(),
                    _ => frame::concat(self.pending.iter().map(|change| &change.frame)),
                };
                let pending = std::mem::take(&mut self.pending);
                self.count_sent(pending.iter());
                return Some(frames);
            }
            if self.context.shutdown.is_cancelled() {
                return None;
            }
            if self.cursor < self.target {
                self.read_chunk().await?;
                continue;
            }
            if let Some(batch) = self.deferred.take() {
                self.apply(&batch);
                continue;
            }
            let Some(subscription) = self.subscription.as_mut() else {
                self.subscribe();
                continue;
            };
            let shutdown = self.context.shutdown.clone();
            let quiet_until = self.last_write + self.context.heartbeat;
            let batch = tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep_until(quiet_until) => return Some(frame::HEARTBEAT),
                batch = subscription.receiver.recv() => batch,
            };
            let Some(batch) = batch else {
                tracing::debug!(
                    cursor = self.cursor,
                    "the feed dropped this stream (it fell behind, or the feed stopped)"
                );
                return None;
            };
            if batch.after > self.cursor {
                self.target = batch.after;
                self.deferred = Some(batch);
            } else {
                self.apply(&batch);
            }
        }
    }

    /// Subscribes to the feed, unless the feed is far ahead: then the database is read up to it
    /// first, so that the queue does not fill during a long read.
    fn subscribe(&mut self) {
        let feed = &self.context.feed;
        if let Some(published) = feed.published() {
            if published - self.cursor > CHUNK {
                self.target = published;
                return;
            }
        }
        let subscription = feed.subscribe();
        if let Some(published) = subscription.published {
            self.target = self.target.max(published);
        }
        self.subscription = Some(subscription);
    }

    /// Reads the next range of at most [`CHUNK`] ids up to the target. `None` ends the stream.
    async fn read_chunk(&mut self) -> Option<()> {
        let upto = self.target.min(self.cursor.saturating_add(CHUNK));
        let shutdown = self.context.shutdown.clone();
        // Boxed: the read's future is large, and inline it would be part of every stream's state
        // for the stream's whole life, though a live stream is almost never reading.
        let read = Box::pin(log::read(
            &self.context.db,
            self.cursor,
            upto,
            self.tickers.as_deref(),
        ));
        let read = tokio::select! {
            () = shutdown.cancelled() => return None,
            read = read => read,
        };
        let read = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%error, cursor = self.cursor, "cannot read the change log; ending the stream");
                return None;
            }
        };
        if !log::retains_after(read.oldest, self.cursor) {
            // Pruned under this stream: a reconnection with the same id is answered 410.
            tracing::warn!(
                cursor = self.cursor,
                oldest = read.oldest,
                "change log entries this stream still needed were pruned; ending it"
            );
            return None;
        }
        self.pending.extend(read.changes);
        self.cursor = upto;
        Some(())
    }

    /// Counts `changes` as written, with their lag from commit; with export on, each change
    /// whose commit was traced gets a delivery span in that trace.
    fn count_sent<'a>(&self, changes: impl ExactSizeIterator<Item = &'a Arc<Change>>) {
        let metrics = &self.context.metrics;
        metrics.events_sent.inc_by(changes.len() as u64);
        let now = Utc::now();
        let tracer = self.context.traces.tracer();
        for change in changes {
            let lag = (now - change.committed_at).num_microseconds();
            metrics
                .delivery_lag
                .observe(lag.unwrap_or(i64::MAX).max(0) as f64 / 1e6);
            if let (Some(tracer), Some(commit)) = (tracer, &change.trace) {
                deliver_span(tracer, commit, change);
            }
        }
    }

    /// Queues the entries of `batch` after the cursor that this subscriber wants: the whole batch,
    /// shared, when it wants every entry and the batch starts at its cursor (a stream without a
    /// ticker filter that is live), else entry by entry.
    fn apply(&mut self, batch: &Arc<Batch>) {
        if self.tickers.is_none() && batch.after == self.cursor {
            if !batch.changes.is_empty() {
                self.whole = Some(Arc::clone(batch));
            }
            self.cursor = self.cursor.max(batch.upto);
            return;
        }
        for change in &batch.changes {
            if change.id > self.cursor && self.wants(change) {
                self.pending.push_back(Arc::clone(change));
            }
        }
        self.cursor = self.cursor.max(batch.upto);
    }

    fn wants(&self, change: &Change) -> bool {
        match (&self.tickers, &change.ticker) {
            (Some(tickers), Some(ticker)) => tickers.binary_search(ticker).is_ok(),
            // Watermarks go to everyone; no filter takes every ticker.
            _ => true,
        }
    }
}

/// `api.stream.deliver`: `change` handed to a client's connection, a child of the span of the
/// commit that wrote it (`window_changes.trace_parent`). Ended at once: what follows is the
/// socket's write, which the server does after this returns.
fn deliver_span(tracer: &tickpipe_common::otel::Tracer, commit: &SpanContext, change: &Change) {
    let mut attributes = vec![KeyValue::new("tickpipe.change_id", change.id)];
    if let Some(ticker) = &change.ticker {
        attributes.push(KeyValue::new("tickpipe.ticker", ticker.clone()));
    }
    tracer
        .span_builder("api.stream.deliver")
        .with_kind(SpanKind::Producer)
        .with_attributes(attributes)
        .start_with_context(tracer, &tickpipe_common::otel::context_of(commit.clone()))
        .end();
}
