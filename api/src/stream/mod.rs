//! `GET /v1/stream-prices`: the change log as server-sent events.
//!
//! Every committed change of a (ticker, window) row is a `price` event whose data is the entry as
//! `GET /v1/get-prices` returns it after that commit; every advance of the topic-wide boundary is a
//! `watermark` event. Each event's `id` is the change id, so a client that reconnects with
//! `Last-Event-ID` (or `?since=`) gets exactly what it has not seen.
//!
//! The change log itself, its feed and the latest prices are [`crate::changes`], shared with
//! `GET /v1/get-prices`. Here: `request` is the validated request, `subscriber` one client's stream
//! (its backlog from the database, then the feed, deduplicated by id), `openapi` the parameters and
//! events as the document states them, and this module the endpoint, its limits and the streams'
//! shared state (the feed, the permits, the heartbeat).

mod fd_limit;
mod openapi;
mod request;
mod subscriber;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Semaphore;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::changes::feed::Feed;
use crate::changes::log;
use crate::database::Database;
use crate::metrics::StreamMetrics;
use crate::problem::{ApiError, Problem};

use self::openapi::{StreamEvent, StreamParams};
use self::request::StreamRequest;
use self::subscriber::{Context, Subscriber};

/// Default of `API_MAX_STREAMS`.
pub(crate) const DEFAULT_MAX_STREAMS: usize = 1000;
/// Default of `API_STREAM_HEARTBEAT_MS`.
pub(crate) const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
/// Default of `API_STREAM_QUEUE`.
pub(crate) const DEFAULT_QUEUE: usize = 256;

/// The stream's limits (the README's configuration table has their defaults).
#[derive(Debug, Clone)]
pub(crate) struct StreamOptions {
    /// More concurrent streams than this are refused with a 503.
    pub(crate) max_streams: usize,
    /// A comment is sent after this long without an event.
    pub(crate) heartbeat: Duration,
    /// Batches of changes a subscriber may fall behind before it is disconnected.
    pub(crate) queue: usize,
    /// Ends every stream (and the feed) when cancelled: the server's graceful shutdown.
    pub(crate) shutdown: CancellationToken,
    /// Each delivery of a change whose commit was traced is a span in that commit's trace.
    pub(crate) traces: tickpipe_common::otel::Tracing,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            max_streams: DEFAULT_MAX_STREAMS,
            heartbeat: Duration::from_millis(DEFAULT_HEARTBEAT_MS),
            queue: DEFAULT_QUEUE,
            shutdown: CancellationToken::new(),
            traces: tickpipe_common::otel::Tracing::disabled(),
        }
    }
}

/// The application's streams: the feed, the limit and the heartbeat. Cheap to clone; the feed
/// stops when the last clone is dropped or on shutdown.
#[derive(Debug, Clone)]
pub(crate) struct Streams {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    context: Context,
    permits: Arc<Semaphore>,
    max_streams: usize,
    _stop_feed: DropGuard,
}

impl Streams {
    /// `connect`: how the feed opens its listening connection (the pool's options).
    pub(crate) fn new(
        db: Database,
        connect: PgConnectOptions,
        options: StreamOptions,
        metrics: StreamMetrics,
    ) -> Self {
        let stop = options.shutdown.child_token();
        let feed = Feed::new(
            db.clone(),
            connect,
            options.queue,
            metrics.clone(),
            stop.clone(),
            options.traces.is_enabled(),
        );
        let max_streams = options.max_streams.min(Semaphore::MAX_PERMITS);
        fd_limit::warn_if_too_low(max_streams);
        Self {
            inner: Arc::new(Inner {
                context: Context {
                    db,
                    feed,
                    metrics,
                    shutdown: options.shutdown,
                    heartbeat: options.heartbeat,
                    traces: options.traces,
                },
                permits: Arc::new(Semaphore::new(max_streams)),
                max_streams,
                _stop_feed: stop.drop_guard(),
            }),
        }
    }
}

impl Streams {
    /// The instance's change feed, which `GET /v1/get-prices` asks for the latest prices.
    pub(crate) fn feed(&self) -> &Feed {
        &self.inner.context.feed
    }

    /// The instance's tracer, which `GET /v1/get-prices` links its answers from memory with.
    pub(crate) fn traces(&self) -> &tickpipe_common::otel::Tracing {
        &self.inner.context.traces
    }
}

/// Live prices as server-sent events.
///
/// A `price` event for every committed change of a (ticker, window) entry, its data the entry as
/// `GET /v1/get-prices` returns it after that change; a `watermark` event whenever the boundary
/// before which every window is final advances. Every event's `id` is the change id. Without
/// `since` or `Last-Event-ID` the stream starts live, after the newest change when the request
/// arrives; with one, it first sends every change after that id, then continues live, without gap
/// or duplicate. The stream opens with an `id:` line without data (not an event) giving its
/// starting id, so a client that reconnects before any event still resumes from there, and sends a
/// comment line (`: heartbeat`) after 15 seconds without an event. It does not end by itself.
#[utoipa::path(
    get,
    path = "/v1/stream-prices",
    params(StreamParams),
    responses(
        (status = 200, description = "The stream: `text/event-stream` whose events each match this schema (`event`, `id`, and `data`, a JSON document)", body = StreamEvent, content_type = "text/event-stream"),
        (status = 400, description = "A parameter or the `Last-Event-ID` header is invalid; `detail` names it and the form it accepts", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The id to resume from is unknown: older than the changes kept (24 hours), or newer than the newest change (it comes from another log). Reload from `GET /v1/get-prices` and open the stream without it", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The request has a body larger than the limit (no operation reads a body)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "As many streams are open as the server serves (with `Retry-After`), or the database is unreachable; retry shortly", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying (only when the stream limit is reached)"))),
    )
)]
pub(crate) async fn stream_prices(
    State(streams): State<Streams>,
    request: StreamRequest,
) -> Result<Response, ApiError> {
    let inner = &streams.inner;
    let permit = Arc::clone(&inner.permits)
        .try_acquire_owned()
        .map_err(|_| {
            inner.context.metrics.refused.inc();
            ApiError::StreamsBusy {
                max_streams: inner.max_streams,
            }
        })?;
    let bounds = log::bounds(&inner.context.db).await?;
    let newest = bounds.newest.unwrap_or(0);
    let start = match request.resume {
        None => newest,
        Some((id, name)) if id > newest => {
            return Err(ApiError::Gone(format!(
                "{name} {id} is newer than the newest change, {newest}: it does not come from this \
                 change log; reload from /v1/get-prices and open the stream without it"
            )))
        }
        Some((id, name)) if !log::retains_after(bounds.oldest, id) => {
            return Err(ApiError::Gone(format!(
                "{name} {id} is older than the changes kept (24 hours; the oldest is {}); reload \
                 from /v1/get-prices and open the stream without it",
                bounds.oldest.unwrap_or_default()
            )))
        }
        Some((id, _)) => id,
    };
    tracing::debug!(start, newest, tickers = ?request.tickers, "opening a stream");
    let subscriber = Subscriber::new(
        inner.context.clone(),
        permit,
        request.tickers,
        start,
        newest,
    );
    // The body is the subscriber's frames as they are (rendered once per event, shared by every
    // stream), not axum's `Sse`, which serializes and copies each event for each stream.
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        // Proxies that buffer responses (nginx) would hold events back.
        (
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        ),
    ];
    Ok((headers, Body::from_stream(subscriber.into_stream())).into_response())
}
