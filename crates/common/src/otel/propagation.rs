//! The W3C trace context (`traceparent`) as text, and in Kafka record headers.
//!
//! Written by hand rather than through a global propagator: the format is one line of the
//! specification, and a global would be shared by every service a test runs in one process.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// The header (and column) name the W3C Trace Context specification gives.
pub const TRACEPARENT: &str = "traceparent";

/// `00-<trace id>-<span id>-<flags>`, the version-00 `traceparent` of `span`.
pub fn traceparent(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

/// The remote span context a `traceparent` names; `None` for anything malformed or invalid
/// (all-zero ids), which the specification says to ignore.
pub fn parse_traceparent(text: &str) -> Option<SpanContext> {
    let mut parts = text.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four fields; later versions may append more, which we ignore.
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !(hex(version) && hex(trace) && hex(span) && hex(flags)) {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// A context whose parent is the remote span `span` (for `start_with_context`).
pub fn context_of(span: SpanContext) -> Context {
    Context::new().with_remote_span_context(span)
}

/// `headers` with the `traceparent` of `span` added.
pub fn with_traceparent(headers: OwnedHeaders, span: &SpanContext) -> OwnedHeaders {
    let value = traceparent(span);
    headers.insert(Header {
        key: TRACEPARENT,
        value: Some(value.as_bytes()),
    })
}

/// The span context a record's `traceparent` header carries, if it has a valid one.
pub fn from_headers<H: Headers>(headers: &H) -> Option<SpanContext> {
    let header = headers.iter().find(|header| header.key == TRACEPARENT)?;
    parse_traceparent(std::str::from_utf8(header.value?).ok()?)
}

/// The span context of the current `tracing` span as the exporter sees it; `None` when no
/// exporter is installed in the subscriber (export off, or a test running services in process).
pub fn current_span_context() -> Option<SpanContext> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let context = tracing::Span::current().context();
    let span = context.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// Makes the not yet entered `span` a child of `parent` (a client's `traceparent`), so that a
/// caller's trace continues through the request. Nothing happens without an installed exporter.
pub fn continue_trace(span: &tracing::Span, parent: SpanContext) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    // Fails only without the exporter's layer, or once the span was entered: nothing to continue.
    let _ = span.set_parent(context_of(parent));
}
