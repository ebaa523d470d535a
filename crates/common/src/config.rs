//! Layered configuration: built-in defaults, then an optional file, then the environment.
//!
//! Every service reads the same variable names (`KAFKA_BROKERS`, `DATABASE_URL`, ...), so one flat
//! namespace is used: a variable `GENERATOR_RATE` is the key `rate`, in the environment and
//! in the optional TOML file named by `TICKPIPE_CONFIG`. A service's settings are a few small
//! structs ("sections"), each deserialized from that namespace, with serde defaults as the first layer.
//!
//! A bad value stops the service with one line that names the variable and the expected form.

use std::collections::HashMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

pub use crate::kafka_settings::KafkaSettings;

/// Environment variable naming an optional TOML file with the same keys in lower case.
pub const CONFIG_FILE_VAR: &str = "TICKPIPE_CONFIG";

/// A configuration error, rendered as one line: `invalid configuration: GENERATOR_RATE: ...`.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}{message}", variable.as_ref().map(|v| format!("{v}: ")).unwrap_or_default())]
pub struct ConfigError {
    /// The environment variable at fault, when known.
    pub variable: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: &str, message: impl Into<String>) -> Self {
        Self {
            variable: Some(variable.to_owned()),
            message: message.into(),
        }
    }

    fn from_config(error: config::ConfigError) -> Self {
        match error {
            config::ConfigError::Type {
                key,
                unexpected,
                expected,
                ..
            } => Self {
                variable: key.map(|k| k.to_uppercase()),
                message: format!("expected {expected}, got {unexpected}"),
            },
            config::ConfigError::At { error, key, .. } => {
                let mut inner = Self::from_config(*error);
                if inner.variable.is_none() {
                    inner.variable = key.map(|k| k.to_uppercase());
                }
                inner
            }
            config::ConfigError::NotFound(key) => Self {
                variable: Some(key.to_uppercase()),
                message: "is required".to_owned(),
            },
            other => Self {
                variable: None,
                message: other.to_string(),
            },
        }
    }
}

/// The merged layers, from which each section is read.
#[derive(Debug, Clone)]
pub struct Layers {
    merged: config::Config,
}

impl Layers {
    /// Reads the process environment (and the file named by `TICKPIPE_CONFIG`, if set).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the given variables instead of the process environment; tests use this to stay isolated.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut vars: HashMap<String, String> = vars.into_iter().collect();
        crate::secret::resolve_files(&mut vars)?;
        let mut builder = config::Config::builder();
        if let Some(path) = vars.get(CONFIG_FILE_VAR) {
            builder = builder
                .add_source(config::File::new(path, config::FileFormat::Toml).required(true));
        }
        let environment: config::Map<String, String> = vars
            .into_iter()
            .filter(|(name, _)| name != CONFIG_FILE_VAR)
            .collect();
        builder = builder.add_source(config::Environment::default().source(Some(environment)));
        let merged = builder.build().map_err(ConfigError::from_config)?;
        Ok(Self { merged })
    }

    /// Every key starting with `prefix` (lower case, as the keys are) and its value as text, for
    /// settings whose names are not fixed (such as one per stored table). Sorted by key.
    pub fn with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, ConfigError> {
        let all: HashMap<String, config::Value> = self
            .merged
            .clone()
            .try_deserialize()
            .map_err(ConfigError::from_config)?;
        let mut found = Vec::new();
        for (key, value) in all {
            if key.starts_with(prefix) {
                let text = value.into_string().map_err(|_| {
                    ConfigError::new(&key.to_uppercase(), "expected a single value")
                })?;
                found.push((key, text));
            }
        }
        found.sort();
        Ok(found)
    }

    /// Deserializes one section; fields missing from every layer take their serde default.
    pub fn section<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.merged
            .clone()
            .try_deserialize()
            .map_err(ConfigError::from_config)
    }
}

/// Settings every service has: how it logs, and where its traces go.
#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// The standard `OTEL_*` variables; export is off unless an endpoint is set.
    #[serde(flatten)]
    pub otel: crate::otel::OtelSettings,
    /// `RUST_LOG`: a tracing filter such as `info` or `tickpipe_aggregator=debug,info`.
    #[serde(default = "default_rust_log")]
    pub rust_log: String,
    /// `LOG_FORMAT`: `text` for people, `json` for log shippers.
    #[serde(default)]
    pub log_format: LogFormat,
}

fn default_rust_log() -> String {
    "info".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Settings of services that talk to PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: a `postgres://` URL; its password is masked whenever it is printed.
    #[serde(rename = "database_url", default = "default_database_url")]
    pub url: DatabaseUrl,
    /// `DATABASE_DIRECT_URL`: a direct connection to PostgreSQL for what needs a session of its
    /// own (the migrations' advisory lock, the API's `LISTEN`, the aggregator's writes). Unset, it
    /// is `DATABASE_URL`; set to another URL, `DATABASE_URL` is taken for a transaction pooler.
    #[serde(rename = "database_direct_url", default)]
    pub direct_url: Option<DatabaseUrl>,
    /// `DATABASE_MAX_CONNECTIONS`: size of the connection pool.
    #[serde(
        rename = "database_max_connections",
        default = "default_max_connections"
    )]
    pub max_connections: u32,
}

impl DatabaseSettings {
    /// The settings of a direct connection at `url`, with the default pool size.
    pub fn direct(url: impl Into<String>, max_connections: u32) -> Self {
        Self {
            url: DatabaseUrl::new(url),
            direct_url: None,
            max_connections,
        }
    }

    /// The URL of sessions of their own: `DATABASE_DIRECT_URL`, else `DATABASE_URL`.
    pub fn session_url(&self) -> &DatabaseUrl {
        self.direct_url.as_ref().unwrap_or(&self.url)
    }

    /// The variable that sets [`Self::session_url`], for messages that say what to fix.
    pub fn session_variable(&self) -> &'static str {
        if self.direct_url.is_some() {
            "DATABASE_DIRECT_URL"
        } else {
            "DATABASE_URL"
        }
    }

    /// Whether `DATABASE_URL` goes through a transaction pooler: a different direct URL is set.
    pub fn behind_pooler(&self) -> bool {
        self.direct_url
            .as_ref()
            .is_some_and(|direct| *direct != self.url)
    }
}

fn default_database_url() -> DatabaseUrl {
    DatabaseUrl("postgres://postgres:postgres@localhost:5432/stocks".to_owned())
}

fn default_max_connections() -> u32 {
    8
}

/// A database URL whose `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn masked(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let Some((credentials, host)) = rest.rsplit_once('@') else {
            return self.0.clone();
        };
        match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let url = String::deserialize(deserializer)?;
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self(url))
        } else {
            Err(serde::de::Error::custom(
                "expected a URL of the form postgres://user:password@host:port/database",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(vars: &[(&str, &str)]) -> Layers {
        Layers::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).expect("layers")
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let kafka: KafkaSettings = layers(&[]).section().expect("kafka");
        assert_eq!(kafka.brokers, "localhost:9092");
        assert_eq!(kafka.topic, "stocks");
        let telemetry: TelemetrySettings = layers(&[]).section().expect("telemetry");
        assert_eq!(telemetry.log_format, LogFormat::Text);
    }

    #[test]
    fn environment_overrides_defaults() {
        let layers = layers(&[("KAFKA_TOPIC", "ticks"), ("LOG_FORMAT", "json")]);
        let kafka: KafkaSettings = layers.section().expect("kafka");
        assert_eq!(kafka.topic, "ticks");
        let telemetry: TelemetrySettings = layers.section().expect("telemetry");
        assert_eq!(telemetry.log_format, LogFormat::Json);
    }

    #[test]
    fn file_layer_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("tickpipe-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("tickpipe.toml");
        std::fs::write(
            &file,
            "kafka_topic = \"from-file\"\nkafka_brokers = \"file:1\"\n",
        )
        .expect("write");
        let path = file.to_string_lossy().to_string();
        let layers = layers(&[(CONFIG_FILE_VAR, &path), ("KAFKA_BROKERS", "env:2")]);
        let kafka: KafkaSettings = layers.section().expect("kafka");
        assert_eq!(kafka.topic, "from-file");
        assert_eq!(kafka.brokers, "env:2");
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let error = layers(&[("DATABASE_MAX_CONNECTIONS", "many")])
            .section::<DatabaseSettings>()
            .expect_err("invalid");
        let line = error.to_string();
        assert!(line.contains("DATABASE_MAX_CONNECTIONS"), "{line}");
        assert!(!line.contains('\n'), "{line}");

        let error = layers(&[("LOG_FORMAT", "xml")])
            .section::<TelemetrySettings>()
            .expect_err("invalid");
        assert!(error.to_string().contains("LOG_FORMAT"), "{error}");

        let error = layers(&[("DATABASE_URL", "mysql://x")])
            .section::<DatabaseSettings>()
            .expect_err("invalid");
        assert!(error.to_string().contains("DATABASE_URL"), "{error}");
        assert!(error.to_string().contains("postgres://"), "{error}");
    }

    #[test]
    fn passwords_are_masked_when_printed() {
        let url = DatabaseUrl::new("postgres://api:s3cret@db:5432/stocks");
        assert_eq!(url.to_string(), "postgres://api:***@db:5432/stocks");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.expose(), "postgres://api:s3cret@db:5432/stocks");
    }
}
