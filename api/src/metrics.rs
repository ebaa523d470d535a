//! Request counts and latency histograms by route and status, and the live stream's figures, served
//! on `METRICS_ADDR`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) route: String,
    pub(crate) status: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct HttpMetrics {
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
}

impl HttpMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
            }),
        };
        let r = registry.sub_registry_with_prefix("api");
        r.register(
            "http_requests",
            "HTTP requests by route and status",
            metrics.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status",
            metrics.latency.clone(),
        );
        metrics
    }
}

/// Middleware recording every request. Unmatched paths share one label so that scanners cannot
/// create unbounded label values.
pub(crate) async fn record(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RouteLabels {
        route,
        status: response.status().as_u16(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The live stream (`GET /v1/stream-prices`): open streams, events sent, subscribers disconnected
/// for falling behind, refused streams, listener reconnections, and the delivery lag.
#[derive(Debug, Clone)]
pub(crate) struct StreamMetrics {
    pub(crate) open: Gauge,
    pub(crate) events_sent: Counter,
    pub(crate) slow_disconnects: Counter,
    pub(crate) refused: Counter,
    pub(crate) listener_reconnects: Counter,
    /// Seconds from the change's `committed_at` to the moment its event is handed to the connection.
    pub(crate) delivery_lag: Histogram,
    /// `GET /v1/get-prices` without parameters answered from the feed's memory.
    pub(crate) latest_from_memory: Counter,
    /// The same answered by the database because the feed was not live (starting, reconnecting,
    /// catching up).
    pub(crate) latest_from_database: Counter,
}

impl StreamMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            open: Gauge::default(),
            events_sent: Counter::default(),
            slow_disconnects: Counter::default(),
            refused: Counter::default(),
            listener_reconnects: Counter::default(),
            // 1 ms to about 65 s.
            delivery_lag: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            latest_from_memory: Counter::default(),
            latest_from_database: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("api");
        r.register(
            "streams_open",
            "Open GET /v1/stream-prices streams",
            metrics.open.clone(),
        );
        r.register(
            "stream_events_sent",
            "Events handed to stream connections (price and watermark)",
            metrics.events_sent.clone(),
        );
        r.register(
            "stream_slow_disconnects",
            "Streams ended because their subscriber fell more than API_STREAM_QUEUE notifications behind",
            metrics.slow_disconnects.clone(),
        );
        r.register(
            "streams_refused",
            "Streams refused with a 503 because API_MAX_STREAMS were open",
            metrics.refused.clone(),
        );
        r.register(
            "stream_listener_reconnects",
            "Times the LISTEN connection was lost and re-established (each followed by a catch-up read)",
            metrics.listener_reconnects.clone(),
        );
        r.register(
            "stream_delivery_lag_seconds",
            "From a change's committed_at to its event being handed to the connection",
            metrics.delivery_lag.clone(),
        );
        r.register(
            "latest_from_memory",
            "GET /v1/get-prices without parameters answered from memory (the change feed live)",
            metrics.latest_from_memory.clone(),
        );
        r.register(
            "latest_from_database",
            "GET /v1/get-prices without parameters answered by the database (the change feed not live)",
            metrics.latest_from_database.clone(),
        );
        metrics
    }
}

/// The rate limits and keys (`crate::access`): requests refused, and the clients the limiter holds.
#[derive(Debug, Clone)]
pub(crate) struct AccessMetrics {
    /// Requests answered 429.
    pub(crate) rate_limited: Counter,
    /// Requests answered 401 (no key, or an invalid one).
    pub(crate) unauthorized: Counter,
    /// Clients whose bucket is not full, as of the last cleaning (every minute).
    pub(crate) clients: Gauge,
}

impl AccessMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            rate_limited: Counter::default(),
            unauthorized: Counter::default(),
            clients: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("api");
        r.register(
            "rate_limited",
            "Requests refused with a 429 because the client's rate limit was spent",
            metrics.rate_limited.clone(),
        );
        r.register(
            "unauthorized",
            "Requests refused with a 401: API_KEYS_FILE is set and the request had no valid key",
            metrics.unauthorized.clone(),
        );
        r.register(
            "rate_limit_clients",
            "Clients (keys or addresses) the rate limiter holds a bucket for, as of its last cleaning",
            metrics.clients.clone(),
        );
        metrics
    }
}
