//! One span and one log line per request, a request id, and the causes of server errors.
//!
//! The URI is logged with any `api_key` parameter's value as `REDACTED`; no header is logged, so
//! no API key reaches a log line.
//!
//! Every request gets an `x-request-id` (the client's, if it sent one, else a new UUID), returned
//! in the response. Its span, `request`, carries the method, the matched route, the URI, the id and,
//! once answered, the status and the latency in milliseconds; the line `answered` is logged at info
//! inside it. Anything logged while the request runs (the database calls at debug, see
//! [`crate::database`]) is inside the same span, so a slow request can be followed by its id.
//!
//! With trace export on, the `request` span continues the trace of a client's W3C `traceparent`
//! header, and [`answer_span`] records what a prices answer was built from, linked to the
//! aggregator's commits behind it.
//!
//! [`ApiError`] renders without side effects and leaves itself in the response's extensions;
//! [`log_errors`] logs the cause of a 503 (warn) or a 500 (error) from there.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tickpipe_common::otel::opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Tracer as _,
};
use tickpipe_common::otel::opentelemetry::{Context, KeyValue};
use tickpipe_common::otel::Tracing;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::field::{display, Empty};
use tracing::Span;

use crate::problem::ApiError;

/// The request id header, set on every request and copied to its response.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps every route of `router` (and its fallbacks) in the request id, the request span and the
/// error log. Apply after the routes and the other middleware, so that these are outermost.
pub(crate) fn layer<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    // The last layer added runs first: the id is set, then the span opens with it, then the
    // response gets the id back, and errors are logged inside the span.
    router
        .layer(axum::middleware::from_fn(log_errors))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_request(())
                .on_response(on_response)
                .on_eos(())
                // 5xx causes are logged by `log_errors`, which knows them.
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

fn make_span(request: &Request) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| display(path.as_str().to_owned()));
    // Set by `SetRequestIdLayer` before this runs; a client's id that is not visible ASCII is
    // kept in the response but left out of the log.
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .map(|id| display(id.to_owned()));
    // An API key in the query (`api_key`, for an EventSource) never reaches the log.
    let uri = request.uri();
    let uri = match uri.query() {
        Some(query) => format!("{}?{}", uri.path(), crate::access::redact_query(query)),
        None => uri.to_string(),
    };
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        uri = %uri,
        request_id,
        status = Empty,
        latency_ms = Empty,
    );
    if let Some(parent) = client_trace(request.headers()) {
        tickpipe_common::otel::continue_trace(&span, parent);
    }
    span
}

/// The span a client's valid `traceparent` header names (one header; a malformed one is ignored,
/// as the W3C specification asks).
fn client_trace(headers: &HeaderMap) -> Option<SpanContext> {
    let value = headers.get(tickpipe_common::otel::TRACEPARENT)?;
    tickpipe_common::otel::parse_traceparent(value.to_str().ok()?)
}

/// With export on, the `api.get_prices` span of one answer: a child of the request's span (or,
/// when no exporter is in the subscriber, of the client's `traceparent`), linked to the commits
/// that wrote the rows it shows. Links rather than a parent, since one answer shows the work of
/// many commits. `commits` is called only with export on.
pub(crate) fn answer_span(
    traces: &Tracing,
    headers: &HeaderMap,
    answered_from: &'static str,
    commits: impl FnOnce() -> Vec<SpanContext>,
) {
    let Some(tracer) = traces.tracer() else {
        return;
    };
    let parent = tickpipe_common::otel::current_span_context().or_else(|| client_trace(headers));
    let context = parent.map_or_else(Context::new, tickpipe_common::otel::context_of);
    tracer
        .span_builder("api.get_prices")
        .with_kind(SpanKind::Server)
        .with_attributes([KeyValue::new("tickpipe.answered_from", answered_from)])
        .with_links(commits().into_iter().map(Link::with_context).collect())
        .start_with_context(tracer, &context)
        .end();
}

fn on_response(response: &Response, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    // Microsecond resolution, in milliseconds.
    span.record("latency_ms", (latency.as_secs_f64() * 1e6).round() / 1e3);
    tracing::info!("answered");
}

/// Logs what [`ApiError`] left in the response: the cause of a 5xx, and a client error's detail at
/// debug. A 5xx without one (none is expected) is logged as such.
pub(crate) async fn log_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status().as_u16();
    match response.extensions().get::<ApiError>() {
        Some(ApiError::Unavailable(cause)) => tracing::warn!(status, %cause, "answering 503"),
        Some(cause @ ApiError::StreamsBusy { .. }) => {
            tracing::warn!(status, %cause, "answering 503");
        }
        Some(ApiError::Internal(cause)) => tracing::error!(status, %cause, "answering 500"),
        Some(error @ ApiError::RateLimited { .. }) => {
            tracing::info!(status, %error, "answering 429");
        }
        Some(error) => tracing::debug!(status, %error, "answering a client error"),
        None if response.status().is_server_error() => {
            tracing::error!(status, "answering a server error without a recorded cause");
        }
        None => {}
    }
    response
}
