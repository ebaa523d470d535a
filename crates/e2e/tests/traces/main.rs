//! Traces (issue 24): the services' real OTLP export, received by a minimal OTLP receiver in the
//! test, over HTTP and over gRPC. One record's trace must connect generator → aggregator commit →
//! API stream delivery; a `get-prices` answer from memory or from the database must link the
//! commits that wrote it (and continue its caller's `traceparent`); and with no endpoint set
//! nothing may be exported while the pipeline still works.
//!
//! Each service starts its own tracer provider from its settings (none is global), so every case
//! runs in this one process, each with its own receiver.

mod pipeline;
mod receiver;

use std::collections::HashMap;

use receiver::{Received, Receiver};

type Ids = (String, String);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ids(received: &Received) -> Ids {
    (hex(&received.span.trace_id), hex(&received.span.span_id))
}

fn attribute(received: &Received, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    received
        .span
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(text) => Some(text.clone()),
            _ => None,
        })
}

fn named<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|s| s.span.name == name).collect()
}

/// Whether every link of `span` names one of `spans`.
fn links_only(span: &Received, spans: &HashMap<Ids, &Received>) -> bool {
    span.span
        .links
        .iter()
        .all(|link| spans.contains_key(&(hex(&link.trace_id), hex(&link.span_id))))
}

async fn exported_over(protocol: &str) -> (pipeline::Run, Vec<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let receiver = match protocol {
        "grpc" => Receiver::start_grpc(listener).await,
        _ => Receiver::start(listener).await,
    };
    let endpoint = receiver.endpoint();
    let run = pipeline::run(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
    ])
    .await;
    (run, receiver.spans())
}

/// The record → commit → delivery chain, and the commit's context in the change log.
fn assert_followed(run: &pipeline::Run, spans: &[Received]) {
    let sends = named(spans, "generator.send");
    let commits = named(spans, "aggregator.commit");
    let deliveries = named(spans, "api.stream.deliver");
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
    // The generator's spans by ids: what a commit's links must name.
    let sent: HashMap<Ids, &Received> = sends.iter().map(|s| (ids(s), *s)).collect();
    let linked: HashMap<String, &Received> = commits
        .iter()
        .filter(|commit| {
            assert!(commit.span.links.len() <= 32, "at most 32 links");
            !commit.span.links.is_empty() && links_only(commit, &sent)
        })
        .map(|commit| (hex(&commit.span.span_id), *commit))
        .collect();
    assert!(!linked.is_empty(), "no commit links generator spans only");
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

/// The `get-prices` answers: from memory linking commits, and from the database continuing their
/// callers' traces and linking commits too.
fn assert_answers_linked(spans: &[Received]) {
    let commits: HashMap<Ids, &Received> = named(spans, "aggregator.commit")
        .into_iter()
        .map(|c| (ids(c), c))
        .collect();
    let answers = named(spans, "api.get_prices");
    assert!(
        answers.iter().any(|answer| {
            answer.service == "api"
                && attribute(answer, "tickpipe.answered_from").as_deref() == Some("memory")
                && !answer.span.links.is_empty()
                && links_only(answer, &commits)
        }),
        "no api.get_prices span from memory linking commits: {answers:?}"
    );
    for (caller, form) in [
        (pipeline::CALLER_WINDOWS, "windows"),
        (pipeline::CALLER_BARS, "bars"),
    ] {
        let (trace, parent) = (&caller[3..35], &caller[36..52]);
        let answer = answers
            .iter()
            .find(|answer| hex(&answer.span.trace_id) == trace)
            .unwrap_or_else(|| panic!("no api.get_prices span in the caller's trace ({form})"));
        assert_eq!(hex(&answer.span.parent_span_id), parent, "{form}");
        assert_eq!(
            attribute(answer, "tickpipe.answered_from").as_deref(),
            Some("database"),
            "{form}"
        );
        assert!(!answer.span.links.is_empty(), "{form}: no commit linked");
        assert!(
            links_only(answer, &commits),
            "{form}: a link names no commit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_is_followed_from_the_generator_to_the_stream_delivery() {
    let (run, spans) = exported_over("http/protobuf").await;
    assert_followed(&run, &spans);
    assert_answers_linked(&spans);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_trace_is_exported_over_grpc() {
    let (run, spans) = exported_over("grpc").await;
    assert_followed(&run, &spans);
    assert_answers_linked(&spans);
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
