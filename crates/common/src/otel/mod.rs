//! OpenTelemetry traces over OTLP, off unless an endpoint is configured.
//!
//! The standard variables are read through the same configuration layers as every other setting
//! (so tests can run three services in one process, each with its own): `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (the collector's base URL; `/v1/traces` is appended for `http/protobuf`),
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL, used as it is), `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (`http/protobuf`, the default, or `grpc`), `OTEL_SERVICE_NAME` (default: the service's own name)
//! and `OTEL_SDK_DISABLED=true`. With neither endpoint set, [`Tracing`] is disabled: no exporter,
//! no thread, no span is ever created, and the services skip every tracing step after one branch.
//!
//! Spans are created with the OpenTelemetry API directly where a trace crosses a service (the
//! generator's send, the aggregator's commit, the API's stream delivery), because those spans need
//! explicit parents and links read from Kafka headers and database rows. A binary also installs
//! its provider in the `tracing` subscriber ([`crate::telemetry::init_tracing`], through
//! `tracing-opentelemetry`), so that its `info` spans (the API's `request` span) are exported too.

mod propagation;

use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::Deserialize;

use crate::config::ConfigError;

pub use propagation::{
    context_of, continue_trace, current_span_context, from_headers, parse_traceparent, traceparent,
    with_traceparent, TRACEPARENT,
};

/// Re-exported so that services build spans with the same version of the API.
pub use opentelemetry;
/// The span [`Tracing::tracer`] starts.
pub type Span = opentelemetry_sdk::trace::Span;
/// What [`Tracing::tracer`] returns.
pub type Tracer = SdkTracer;

/// The `OTEL_*` variables this project honours, as read from the configuration layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OtelSettings {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL, e.g. `http://collector:4318`.
    #[serde(default, rename = "otel_exporter_otlp_endpoint")]
    pub endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the traces URL itself; wins over the base URL.
    #[serde(default, rename = "otel_exporter_otlp_traces_endpoint")]
    pub traces_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` (default) or `grpc`.
    #[serde(default, rename = "otel_exporter_otlp_protocol")]
    pub protocol: Option<String>,
    /// `OTEL_SERVICE_NAME`: the `service.name` of every span; the service's own name by default.
    #[serde(default, rename = "otel_service_name")]
    pub service_name: Option<String>,
    /// `OTEL_SDK_DISABLED`: `true` turns export off even with an endpoint set.
    #[serde(default, rename = "otel_sdk_disabled")]
    pub sdk_disabled: Option<String>,
}

/// How traces leave the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    Grpc,
}

/// Where and how to export, once the settings were checked; `None` from [`OtelSettings::export`]
/// means export is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub url: String,
    pub protocol: Protocol,
    pub service_name: String,
}

fn set(value: &Option<String>) -> Option<&str> {
    // The specification reads an empty variable as an unset one.
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl OtelSettings {
    /// The export these settings ask for, `None` when off; a bad value names its variable.
    pub fn export(&self, default_service_name: &str) -> Result<Option<Export>, ConfigError> {
        if set(&self.sdk_disabled).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let protocol = match set(&self.protocol) {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(ConfigError::new(
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                    format!("expected `http/protobuf` or `grpc`, got `{other}`"),
                ))
            }
        };
        let url = match (set(&self.traces_endpoint), set(&self.endpoint)) {
            (Some(url), _) => url.to_owned(),
            (None, Some(base)) if protocol == Protocol::HttpProtobuf => {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            (None, Some(base)) => base.to_owned(),
            (None, None) => return Ok(None),
        };
        // TLS to the collector is not compiled in (it would add a second TLS stack to every
        // binary): the usual deployment is a collector or agent beside the service.
        if !url.starts_with("http://") {
            let variable = match set(&self.traces_endpoint) {
                Some(_) => "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                None => "OTEL_EXPORTER_OTLP_ENDPOINT",
            };
            return Err(ConfigError::new(
                variable,
                format!(
                    "expected an http:// URL such as http://collector:4318 (TLS to the collector \
                     is not built in; run a collector beside the service), got `{url}`"
                ),
            ));
        }
        let service_name = set(&self.service_name)
            .unwrap_or(default_service_name)
            .to_owned();
        Ok(Some(Export {
            url,
            protocol,
            service_name,
        }))
    }
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(String),
}

/// A service's tracer: either off (the default, free) or a provider exporting over OTLP.
/// Cheap to clone; every clone shares one provider.
#[derive(Debug, Clone, Default)]
pub struct Tracing {
    enabled: Option<Arc<Enabled>>,
}

#[derive(Debug)]
struct Enabled {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// The provider a binary installed in its `tracing` subscriber; the service's `run` reuses it.
static INSTALLED: OnceLock<Tracing> = OnceLock::new();

impl Tracing {
    /// Export off.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Starts exporting as `settings` ask (or stays off). Needs a Tokio runtime for `grpc`.
    pub fn start(settings: &OtelSettings, default_service_name: &str) -> Result<Self, OtelError> {
        let Some(export) = settings.export(default_service_name)? else {
            return Ok(Self::disabled());
        };
        let exporter = match export.protocol {
            Protocol::HttpProtobuf => SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(&export.url)
                .build(),
            Protocol::Grpc => SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&export.url)
                .build(),
        }
        .map_err(|error| OtelError::Exporter(error.to_string()))?;
        let resource = Resource::builder()
            .with_service_name(export.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("tickpipe");
        tracing::info!(url = %export.url, protocol = ?export.protocol, service = %export.service_name, "exporting traces over OTLP");
        Ok(Self {
            enabled: Some(Arc::new(Enabled { provider, tracer })),
        })
    }

    /// What a service's `run` uses: the provider its binary installed, or (in tests, which run
    /// services in process without the shared `main`) one of its own from `settings`.
    pub fn for_service(
        settings: &OtelSettings,
        default_service_name: &str,
    ) -> Result<Self, OtelError> {
        match INSTALLED.get() {
            Some(installed) => Ok(installed.clone()),
            None => Self::start(settings, default_service_name),
        }
    }

    /// Starts as [`Tracing::start`] and makes the result the one [`Tracing::for_service`] returns
    /// in this process. Called once, by the shared `main`.
    pub fn install(settings: &OtelSettings, default_service_name: &str) -> Result<Self, OtelError> {
        let tracing = Self::start(settings, default_service_name)?;
        Ok(INSTALLED.get_or_init(|| tracing).clone())
    }

    /// The tracer, `None` when export is off: callers branch on it once and skip all tracing work.
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.enabled.as_ref().map(|enabled| &enabled.tracer)
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.is_some()
    }

    /// Exports what is buffered and stops the exporter (at service shutdown). The SDK blocks while
    /// it exports, so it runs on a blocking thread; a collector that is down costs at most the
    /// exporter's timeout. Later spans are dropped.
    pub async fn shutdown(&self) {
        let Some(enabled) = self.enabled.clone() else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || enabled.provider.shutdown()).await;
        match flushed {
            Ok(Ok(())) => tracing::debug!("trace export flushed and stopped"),
            // A second shutdown (the binary's, after the service's own) is expected and harmless.
            Ok(Err(opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "trace export did not flush at shutdown"),
            Err(error) => tracing::warn!(%error, "trace export did not flush at shutdown"),
        }
    }
}

#[cfg(test)]
mod tests;
