//! Traces (issue 24): the services' real OTLP export, received by a minimal OTLP/HTTP receiver in
//! the test. One record's trace must connect generator → aggregator commit → API stream delivery,
//! a `get-prices` answer from memory must link the commits that wrote it,
//! and with no endpoint set nothing may be exported while the pipeline still works.
//!
//! Each service starts its own tracer provider from its settings (none is global), so both cases
//! run in this one process, each with its own receiver.

mod pipeline;
mod receiver;

use std::collections::HashMap;

use receiver::{Received, Receiver};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn named<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|s| s.span.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_is_followed_from_the_generator_to_the_stream_delivery() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let receiver = Receiver::start(listener).await;
    let endpoint = receiver.endpoint();
    let run = pipeline::run(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ])
    .await;
    let spans = receiver.spans();
    let sends = named(&spans, "generator.send");
    let commits = named(&spans, "aggregator.commit");
    let deliveries = named(&spans, "api.stream.deliver");
    let counts = (sends.len(), commits.len(), deliveries.len());
    assert!(counts.0 > 0 && counts.1 > 0 && counts.2 > 0, "{counts:?}");
    for (spans, service) in [
        (&sends, "generator"),
        (&commits, "aggregator"),
        (&deliveries, "api"),
    ] {
        assert!(
            spans.iter().all(|s| s.service == service),
            "service.name {service}"
        );
    }
    // The generator's spans by (trace id, span id): what a commit's links must name.
    let sent: HashMap<(String, String), &Received> = sends
        .iter()
        .map(|s| ((hex(&s.span.trace_id), hex(&s.span.span_id)), *s))
        .collect();
    let linked: HashMap<String, &Received> = commits
        .iter()
        .filter(|commit| {
            assert!(commit.span.links.len() <= 32, "at most 32 links");
            commit
                .span
                .links
                .iter()
                .any(|link| sent.contains_key(&(hex(&link.trace_id), hex(&link.span_id))))
        })
        .map(|commit| (hex(&commit.span.span_id), *commit))
        .collect();
    assert!(!linked.is_empty(), "no commit links a generator span");
    // The latest prices answered from memory link the commits that wrote them.
    let all_commits: HashMap<(String, String), &Received> = commits
        .iter()
        .map(|c| ((hex(&c.span.trace_id), hex(&c.span.span_id)), *c))
        .collect();
    let answers = named(&spans, "api.get_prices");
    assert!(
        answers.iter().any(|answer| {
            answer.service == "api"
                && !answer.span.links.is_empty()
                && answer.span.links.iter().all(|link| {
                    all_commits.contains_key(&(hex(&link.trace_id), hex(&link.span_id)))
                })
        }),
        "no api.get_prices span linking commits: {answers:?}"
    );
    let connected = deliveries.iter().find(|delivery| {
        linked
            .get(&hex(&delivery.span.parent_span_id))
            .is_some_and(|commit| commit.span.trace_id == delivery.span.trace_id)
    });
    let delivery = connected.expect("a delivery whose parent is a commit linking a generator span");
    let commit = linked[&hex(&delivery.span.parent_span_id)];
    // The change log keeps the commit's context: that is how the API found the parent.
    let stored = format!(
        "00-{}-{}-01",
        hex(&commit.span.trace_id),
        hex(&commit.span.span_id)
    );
    assert!(
        run.trace_parents
            .iter()
            .any(|t| t.as_deref() == Some(stored.as_str())),
        "{stored} not in window_changes.trace_parent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_no_endpoint_nothing_is_exported() {
    // On the default OTLP/HTTP port when it is free: an exporter wrongly on by default would
    // send there.
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:4318").await {
        Ok(listener) => listener,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
    };
    let receiver = Receiver::start(listener).await;
    let run = pipeline::run(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SERVICE_NAME", "unused"),
    ])
    .await;
    assert!(run.prices > 0, "the pipeline stored prices");
    assert!(
        run.trace_parents.iter().all(Option::is_none),
        "{:?}",
        run.trace_parents
    );
    assert_eq!(receiver.requests(), 0, "{:?}", receiver.spans());
}
