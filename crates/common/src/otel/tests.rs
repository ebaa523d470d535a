use rdkafka::message::{Header, Headers, OwnedHeaders};

use super::*;

fn settings(pairs: &[(&str, &str)]) -> OtelSettings {
    let layers = crate::config::Layers::from_vars(
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string())),
    )
    .expect("layers");
    layers.section().expect("OTEL settings")
}

#[test]
fn export_is_off_without_an_endpoint() {
    assert_eq!(settings(&[]).export("api").expect("valid"), None);
    let empty = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]);
    assert_eq!(empty.export("api").expect("valid"), None, "empty is unset");
    let disabled = settings(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_SDK_DISABLED", "true"),
    ]);
    assert_eq!(disabled.export("api").expect("valid"), None);
    let tracing = Tracing::start(&settings(&[]), "api").expect("off");
    assert!(!tracing.is_enabled() && tracing.tracer().is_none());
}

#[test]
fn the_standard_variables_choose_url_protocol_and_name() {
    let base = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
    assert_eq!(
        base.export("aggregator").expect("valid"),
        Some(Export {
            url: "http://collector:4318/v1/traces".to_owned(),
            protocol: Protocol::HttpProtobuf,
            service_name: "aggregator".to_owned(),
        })
    );
    let grpc = settings(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SERVICE_NAME", "aggregator-eu"),
    ])
    .export("aggregator")
    .expect("valid")
    .expect("on");
    assert_eq!(grpc.url, "http://collector:4317");
    assert_eq!(grpc.protocol, Protocol::Grpc);
    assert_eq!(grpc.service_name, "aggregator-eu");
    let traces = settings(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/custom",
        ),
    ]);
    let url = traces.export("api").expect("valid").expect("on").url;
    assert_eq!(url, "http://collector:4318/custom", "used as it is");
}

#[test]
fn a_bad_value_names_its_variable() {
    let error = settings(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ])
    .export("api")
    .expect_err("http/json is not built in");
    assert!(
        error.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
        "{error}"
    );
    let error = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")])
        .export("api")
        .expect_err("no scheme");
    assert!(
        error.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{error}"
    );
}

#[test]
fn traceparent_round_trips_and_rejects_malformed_values() {
    // The example of the W3C Trace Context specification.
    let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let context = parse_traceparent(text).expect("valid");
    assert!(context.is_remote() && context.is_sampled());
    assert_eq!(traceparent(&context), text);
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ] {
        assert!(parse_traceparent(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn kafka_headers_carry_the_context() {
    let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let context = parse_traceparent(text).expect("valid");
    let other = OwnedHeaders::new().insert(Header {
        key: "other",
        value: Some("x"),
    });
    let headers = with_traceparent(other, &context);
    assert_eq!(headers.count(), 2);
    assert_eq!(from_headers(&headers), Some(context));
    assert_eq!(from_headers(&OwnedHeaders::new()), None);
}

#[test]
fn a_request_span_continues_its_callers_trace_through_the_layer() {
    use tracing_subscriber::layer::SubscriberExt as _;
    // The binary's arrangement: the SDK's tracer in the subscriber through tracing-opentelemetry
    // (no exporter: ids are assigned all the same).
    let provider = SdkTracerProvider::builder().build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    let subscriber = tracing_subscriber::registry().with(layer);
    let caller = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .expect("valid");
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(current_span_context(), None, "outside any span");
        let span = tracing::info_span!("request");
        continue_trace(&span, caller.clone());
        let inside = span.in_scope(current_span_context).expect("a span context");
        assert_eq!(inside.trace_id(), caller.trace_id(), "the caller's trace");
        assert_ne!(inside.span_id(), caller.span_id(), "a span of its own");
        // A span without a caller starts a trace of its own.
        let alone = tracing::info_span!("request").in_scope(current_span_context);
        assert_ne!(alone.expect("a span context").trace_id(), caller.trace_id());
    });
    // Without the layer there is nothing to continue, and nothing fails.
    let span = tracing::info_span!("request");
    continue_trace(&span, caller);
    assert_eq!(span.in_scope(current_span_context), None);
}
