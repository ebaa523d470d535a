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
        self.api.api_bind
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
    /// `API_BIND`: address of the HTTP server (API, health, metrics, OpenAPI).
    #[serde(default = "default_bind")]
    pub api_bind: SocketAddr,
    /// `API_QUERY_TIMEOUT_MS`: a query slower than this is abandoned with a 503.
    #[serde(default = "default_query_timeout_ms")]
    pub api_query_timeout_ms: u64,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

fn default_query_timeout_ms() -> u64 {
    2_000
}
