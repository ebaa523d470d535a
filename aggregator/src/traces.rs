//! The aggregator's part of a record's trace: each commit is a span, `aggregator.commit`, linked to
//! the traces of the records folded into the partition since its previous commit.
//!
//! Links, not parents: a commit folds thousands of records from as many traces. The links are
//! bounded ([`MAX_LINKS`] per commit, the first distinct ones) so that a backfill's commit costs the
//! same as a live one. The commit's own context is stored with the change log's entries
//! (`window_changes.trace_parent`), which is how the API's deliveries join its trace. With export
//! off, nothing here reads a header or keeps anything.

use std::collections::HashMap;

use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tickpipe_common::otel::opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, Tracer as _,
};
use tickpipe_common::otel::opentelemetry::KeyValue;
use tickpipe_common::otel::{from_headers, traceparent, Span, Tracing};

/// Most links one commit span carries.
pub(crate) const MAX_LINKS: usize = 32;

/// The span contexts of the records each partition folded since it last committed.
#[derive(Debug, Default)]
pub(crate) struct CommitTraces {
    traces: Tracing,
    folded: HashMap<i32, Vec<SpanContext>>,
}

/// A commit's span and its `traceparent`, for the change log.
#[derive(Debug)]
pub(crate) struct CommitSpan {
    span: Span,
    pub(crate) traceparent: String,
}

impl CommitTraces {
    pub(crate) fn new(traces: Tracing) -> Self {
        Self {
            traces,
            folded: HashMap::new(),
        }
    }

    /// `message` was folded into `partition`'s windows: keep its producer's context, if it sent
    /// one, while the commit has room for it.
    pub(crate) fn folded(&mut self, partition: i32, message: &BorrowedMessage<'_>) {
        if !self.traces.is_enabled() {
            return;
        }
        let kept = self.folded.entry(partition).or_default();
        if kept.len() >= MAX_LINKS {
            return;
        }
        if let Some(context) = message.headers().and_then(from_headers) {
            if !kept.contains(&context) {
                kept.push(context);
            }
        }
    }

    /// A partition revoked: its records are someone else's to commit.
    pub(crate) fn forget(&mut self, partition: i32) {
        self.folded.remove(&partition);
    }

    /// Opens the span of `partition`'s commit of `windows` windows, linked to the records it
    /// folded; `None` with export off.
    pub(crate) fn start_commit(&mut self, partition: i32, windows: usize) -> Option<CommitSpan> {
        let tracer = self.traces.tracer()?;
        let links = self
            .folded
            .remove(&partition)
            .unwrap_or_default()
            .into_iter()
            .map(Link::with_context)
            .collect();
        let span = tracer
            .span_builder("aggregator.commit")
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new("tickpipe.partition", i64::from(partition)),
                KeyValue::new("tickpipe.windows", windows as i64),
            ])
            .with_links(links)
            .start(tracer);
        let traceparent = traceparent(span.span_context());
        Some(CommitSpan { span, traceparent })
    }
}

impl CommitSpan {
    /// Ends the span: `written` false when another instance fenced the partition off.
    pub(crate) fn end(mut self, written: bool) {
        if !written {
            self.span.set_status(Status::error("fenced"));
        }
        self.span.end();
    }
}
