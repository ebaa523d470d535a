//! The API's configuration (see the README's configuration table).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use tickpipe_common::config::{ConfigError, DatabaseSettings, Layers, TelemetrySettings};
use tickpipe_common::service::ServiceSettings;

use crate::access::AccessOptions;
use crate::cors::Origins;
use crate::params::interval::{Window, DEFAULT_WINDOW_SECS};
use crate::stream::StreamOptions;

/// Default of `API_MAX_BODY_BYTES`: no resource reads a body, so a small one is plenty.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 1024;

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
        let settings = Self {
            telemetry: layers.section()?,
            database: layers.section()?,
            api: layers.section()?,
        };
        settings.api.window()?;
        settings.api.check_limits()?;
        Ok(settings)
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
    /// `API_WRITE_TIMEOUT_MS`: a connection whose client has read nothing this long while a
    /// response (a stream's events, say) waits to be written is closed.
    #[serde(rename = "api_write_timeout_ms", default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// `API_MAX_BODY_BYTES`: a request declaring a larger body is refused with a 413. No resource
    /// reads a body; the limit only keeps a client from making the server receive one.
    #[serde(rename = "api_max_body_bytes", default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// `METRICS_ADDR`: where Prometheus `/metrics` (and a `/healthz`) is served, apart from the API.
    #[serde(default = "default_metrics_addr")]
    pub metrics_addr: SocketAddr,
    /// `AGGREGATOR_WINDOW_SECS`: the aggregator's window width (the same variable as the
    /// aggregator's, so one setting serves both): the default `interval`, and what every wider one
    /// must be a multiple of.
    #[serde(rename = "aggregator_window_secs", default = "default_window_secs")]
    pub window_secs: u32,
    /// `API_MAX_STREAMS`: concurrent `GET /v1/stream-prices` streams served; more are a 503.
    #[serde(rename = "api_max_streams", default = "default_max_streams")]
    pub max_streams: usize,
    /// `API_STREAM_HEARTBEAT_MS`: a stream without an event this long gets a comment line, so that
    /// clients and proxies see it alive.
    #[serde(
        rename = "api_stream_heartbeat_ms",
        default = "default_stream_heartbeat_ms"
    )]
    pub stream_heartbeat_ms: u64,
    /// `API_STREAM_QUEUE`: notifications a stream may fall behind (its client not reading fast
    /// enough) before it is disconnected, so that it cannot slow the others.
    #[serde(rename = "api_stream_queue", default = "default_stream_queue")]
    pub stream_queue: usize,
    /// `API_WEB_DIR`: the dashboard's build (`scripts/build-web.sh` writes `web/dist`), read once
    /// at startup and served at `/`. A directory rather than files compiled into the binary, so
    /// that building the API never needs Node.js and the container image copies the build in.
    #[serde(rename = "api_web_dir", default = "default_web_dir")]
    pub web_dir: PathBuf,
    /// `API_COMPRESSION_LEVEL`: the gzip, br and zstd level of JSON answers of a kilobyte or more,
    /// 1 (the cheapest; see `crate::compression` for why) to 9; `0` turns compression off.
    #[serde(
        rename = "api_compression_level",
        default = "default_compression_level"
    )]
    pub compression_level: u32,
    /// `API_CORS_ORIGINS`: the origins whose pages may call the API from a browser, comma-separated
    /// (`https://app.example.com,http://localhost:5173`), or `*` for any; empty (the default): no
    /// CORS headers at all.
    #[serde(rename = "api_cors_origins", default)]
    pub cors_origins: String,
    /// `API_RATE_LIMIT_RPS`: units of request cost each client (API key, or address) may spend a
    /// second, sustained; `0` turns rate limits off. See `crate::access` and the API doc for the
    /// costs and why 100.
    #[serde(rename = "api_rate_limit_rps", default = "default_rate_limit_rps")]
    pub rate_limit_rps: u32,
    /// `API_RATE_LIMIT_BURST`: units a client may spend at once (its bucket's size); at least 1.
    #[serde(rename = "api_rate_limit_burst", default = "default_rate_limit_burst")]
    pub rate_limit_burst: u32,
    /// `API_KEYS_FILE`: a file of the SHA-256 hashes of the valid API keys, re-read when it
    /// changes; when set, every limited request needs a key. Unset (the default): no keys. Only
    /// the path is kept here (and printed); the keys are read by `crate::access`.
    #[serde(rename = "api_keys_file", default)]
    pub keys_file: Option<PathBuf>,
}

impl ApiSettings {
    /// The stream's options, with `shutdown` ending every stream.
    pub(crate) fn stream_options(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
        traces: tickpipe_common::otel::Tracing,
    ) -> Result<StreamOptions, ConfigError> {
        self.check_limits()?;
        Ok(StreamOptions {
            max_streams: self.max_streams,
            heartbeat: std::time::Duration::from_millis(self.stream_heartbeat_ms),
            queue: self.stream_queue,
            shutdown,
            traces,
        })
    }

    fn check_limits(&self) -> Result<(), ConfigError> {
        if self.stream_heartbeat_ms == 0 {
            return Err(ConfigError::new(
                "API_STREAM_HEARTBEAT_MS",
                "expected a positive number of milliseconds",
            ));
        }
        if self.write_timeout_ms == 0 {
            return Err(ConfigError::new(
                "API_WRITE_TIMEOUT_MS",
                "expected a positive number of milliseconds",
            ));
        }
        if self.compression_level > crate::compression::MAX_LEVEL {
            return Err(ConfigError::new(
                "API_COMPRESSION_LEVEL",
                "expected a level from 0 (off) to 9",
            ));
        }
        self.cors()?;
        if self.rate_limit_rps > 0 && self.rate_limit_burst == 0 {
            return Err(ConfigError::new(
                "API_RATE_LIMIT_BURST",
                "expected a positive number of units (the most a client may spend at once)",
            ));
        }
        if self.stream_queue == 0 {
            return Err(ConfigError::new(
                "API_STREAM_QUEUE",
                "expected a positive number of notifications",
            ));
        }
        Ok(())
    }

    /// The rate limits, and the keys file read now: a missing, unreadable or invalid file is an
    /// error (only at startup: a later bad version keeps the keys read before).
    pub(crate) fn access(&self) -> Result<AccessOptions, ConfigError> {
        let keys_file = self
            .keys_file
            .as_deref()
            .filter(|path| !path.as_os_str().is_empty());
        AccessOptions::new(self.rate_limit_rps, self.rate_limit_burst, keys_file)
            .map_err(|error| ConfigError::new("API_KEYS_FILE", error.to_string()))
    }

    /// The origins `API_CORS_ORIGINS` allows.
    pub(crate) fn cors(&self) -> Result<Origins, ConfigError> {
        Origins::parse(&self.cors_origins).map_err(|why| ConfigError::new("API_CORS_ORIGINS", why))
    }

    /// The window, if `AGGREGATOR_WINDOW_SECS` divides a day (as the aggregator requires).
    pub(crate) fn window(&self) -> Result<Window, ConfigError> {
        Window::new(self.window_secs).ok_or_else(|| {
            ConfigError::new(
                "AGGREGATOR_WINDOW_SECS",
                "expected whole seconds that divide a day evenly (e.g. 30, 60, 300)",
            )
        })
    }
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

fn default_write_timeout_ms() -> u64 {
    30_000
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

fn default_metrics_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9103))
}

fn default_window_secs() -> u32 {
    DEFAULT_WINDOW_SECS
}

fn default_max_streams() -> usize {
    crate::stream::DEFAULT_MAX_STREAMS
}

fn default_stream_heartbeat_ms() -> u64 {
    crate::stream::DEFAULT_HEARTBEAT_MS
}

fn default_stream_queue() -> usize {
    crate::stream::DEFAULT_QUEUE
}

fn default_compression_level() -> u32 {
    crate::compression::DEFAULT_LEVEL
}

fn default_rate_limit_rps() -> u32 {
    crate::access::DEFAULT_RPS
}

fn default_rate_limit_burst() -> u32 {
    crate::access::DEFAULT_BURST
}

fn default_web_dir() -> PathBuf {
    PathBuf::from("web/dist")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load(&Layers::from_vars(
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )?)
    }

    #[test]
    fn the_window_is_the_aggregators_setting_with_its_default() {
        let defaults = load(&[]).expect("defaults");
        assert_eq!(defaults.api.window_secs, 30);
        assert_eq!(defaults.api.window().ok(), Window::new(30));
        let minute = load(&[("AGGREGATOR_WINDOW_SECS", "60")]).expect("60 s");
        assert_eq!(minute.api.window().ok(), Window::new(60));
        for bad in ["0", "7", "-30", "x", "86401"] {
            let error = load(&[("AGGREGATOR_WINDOW_SECS", bad)])
                .expect_err(bad)
                .to_string();
            assert!(error.contains("AGGREGATOR_WINDOW_SECS"), "{bad}: {error}");
        }
    }

    #[test]
    fn stream_settings_have_defaults_and_refuse_zero_intervals() {
        let defaults = load(&[]).expect("defaults");
        assert_eq!(defaults.api.max_streams, 1000);
        assert_eq!(defaults.api.stream_heartbeat_ms, 15_000);
        assert_eq!(defaults.api.stream_queue, 256);
        assert_eq!(defaults.api.web_dir, PathBuf::from("web/dist"));
        let web = load(&[("API_WEB_DIR", "/usr/local/share/tickpipe/web")]).expect("web dir");
        assert_eq!(
            web.api.web_dir,
            PathBuf::from("/usr/local/share/tickpipe/web")
        );
        let set = load(&[
            ("API_MAX_STREAMS", "3"),
            ("API_STREAM_HEARTBEAT_MS", "200"),
            ("API_STREAM_QUEUE", "8"),
        ])
        .expect("set");
        let options = set
            .api
            .stream_options(
                tokio_util::sync::CancellationToken::new(),
                Default::default(),
            )
            .expect("options");
        assert_eq!(
            (
                options.max_streams,
                options.heartbeat.as_millis(),
                options.queue
            ),
            (3, 200, 8)
        );
        for (name, bad) in [
            ("API_STREAM_HEARTBEAT_MS", "0"),
            ("API_STREAM_QUEUE", "0"),
            ("API_WRITE_TIMEOUT_MS", "0"),
            ("API_MAX_STREAMS", "-1"),
            ("API_COMPRESSION_LEVEL", "10"),
            ("API_COMPRESSION_LEVEL", "-1"),
            ("API_CORS_ORIGINS", "https://app.example.com/"),
            ("API_CORS_ORIGINS", "app.example.com"),
            ("API_RATE_LIMIT_BURST", "0"),
            ("API_RATE_LIMIT_RPS", "-1"),
        ] {
            let error = load(&[(name, bad)]).expect_err(name).to_string();
            assert!(error.contains(name), "{name}={bad}: {error}");
        }
    }

    #[test]
    fn compression_and_cors_have_defaults() {
        let defaults = load(&[]).expect("defaults");
        assert_eq!(defaults.api.compression_level, 1);
        assert_eq!(defaults.api.cors().ok(), Some(Origins::Off));
        let set = load(&[("API_COMPRESSION_LEVEL", "0"), ("API_CORS_ORIGINS", "*")]).expect("set");
        assert_eq!(set.api.compression_level, 0);
        assert_eq!(set.api.cors().ok(), Some(Origins::Any));
    }

    #[test]
    fn rate_limits_have_defaults_and_zero_turns_them_off() {
        let defaults = load(&[]).expect("defaults");
        assert_eq!(
            (defaults.api.rate_limit_rps, defaults.api.rate_limit_burst),
            (100, 400)
        );
        assert!(defaults.api.access().expect("access").rate.is_some());
        assert!(defaults.api.keys_file.is_none());
        let off = load(&[("API_RATE_LIMIT_RPS", "0"), ("API_RATE_LIMIT_BURST", "0")]).expect("off");
        let access = off.api.access().expect("access");
        assert!(access.rate.is_none() && access.keys.is_none());
        let missing = load(&[("API_KEYS_FILE", "/nonexistent/tickpipe-keys")]).expect("loads");
        let error = missing.api.access().expect_err("missing file").to_string();
        assert!(error.contains("API_KEYS_FILE"), "{error}");
    }
}
