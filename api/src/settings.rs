//! The API's configuration (see the README's configuration table).

use std::net::SocketAddr;

use serde::Deserialize;
use tickpipe_common::config::{ConfigError, DatabaseSettings, Layers, TelemetrySettings};
use tickpipe_common::service::ServiceSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    pub api: ApiSettings,
}

impl ServiceSettings for Settings {
    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }

    fn health_addr(&self) -> SocketAddr {
        self.api.bind
    }

    fn load(layers: &Layers) -> Result<Self, ConfigError> {
        Ok(Self {
            telemetry: layers.section()?,
            database: layers.section()?,
            api: layers.section()?,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    /// `API_BIND`: address of the HTTP server (API, health, OpenAPI).
    #[serde(rename = "api_bind", default = "default_bind")]
    pub bind: SocketAddr,
    /// `API_QUERY_TIMEOUT_MS`: a query slower than this is abandoned with a 503.
    #[serde(rename = "api_query_timeout_ms", default = "default_query_timeout_ms")]
    pub query_timeout_ms: u64,
    /// `API_HEADER_READ_TIMEOUT_MS`: a connection that has not sent a complete request head this
    /// long after it started one (or after it connected) is closed, so idle or trickling clients
    /// cannot hold connections open.
    #[serde(
        rename = "api_header_read_timeout_ms",
        default = "default_header_read_timeout_ms"
    )]
    pub header_read_timeout_ms: u64,
    /// `API_MAX_BODY_BYTES`: a request declaring a larger body is refused with a 413. No resource
    /// reads a body; the limit only keeps a client from making the server receive one.
    #[serde(rename = "api_max_body_bytes", default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// `METRICS_ADDR`: where Prometheus `/metrics` (and a `/healthz`) is served, apart from the API.
    #[serde(default = "default_metrics_addr")]
    pub metrics_addr: SocketAddr,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

fn default_query_timeout_ms() -> u64 {
    2_000
}

fn default_header_read_timeout_ms() -> u64 {
    10_000
}

fn default_max_body_bytes() -> usize {
    crate::app::DEFAULT_MAX_BODY_BYTES
}

fn default_metrics_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9103))
}
