//! The Kafka settings every Kafka client of tickpipe shares: where the brokers are, how to reach them
//! securely, any other librdkafka property, and whether tickpipe may create topics.
//!
//! The security settings carry librdkafka's own names (`KAFKA_SASL_MECHANISM` is `sasl.mechanism`),
//! so what a managed service's console shows maps one to one. Any other property passes through:
//! `KAFKA_LIBRDKAFKA_<NAME>` in the environment (upper case, dots as underscores) or the
//! `[kafka.librdkafka_options]` table of the TOML file (Vector's name), the environment winning.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;

use crate::config::{ConfigError, Layers};
use crate::secret::Secret;

/// Settings of services that talk to Kafka.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    /// `KAFKA_BROKERS`: comma-separated `host:port` bootstrap list.
    #[serde(rename = "kafka_brokers", default = "default_brokers")]
    pub brokers: String,
    /// `KAFKA_TOPIC`: the topic of ticker messages.
    #[serde(rename = "kafka_topic", default = "default_topic")]
    pub topic: String,
    /// `KAFKA_CREATE_TOPICS`: whether a missing topic is created; false on clusters whose ACLs
    /// forbid it or whose topics are managed elsewhere (then a missing topic stops the service).
    #[serde(rename = "kafka_create_topics", default = "default_create_topics")]
    pub create_topics: bool,
    #[serde(rename = "kafka_security_protocol", default)]
    pub security_protocol: Option<String>,
    #[serde(rename = "kafka_sasl_mechanism", default)]
    pub sasl_mechanism: Option<String>,
    #[serde(rename = "kafka_sasl_username", default)]
    pub sasl_username: Option<String>,
    #[serde(rename = "kafka_sasl_password", default)]
    pub sasl_password: Option<Secret>,
    #[serde(rename = "kafka_ssl_ca_location", default)]
    pub ssl_ca_location: Option<String>,
    #[serde(rename = "kafka_ssl_certificate_location", default)]
    pub ssl_certificate_location: Option<String>,
    #[serde(rename = "kafka_ssl_key_location", default)]
    pub ssl_key_location: Option<String>,
    #[serde(rename = "kafka_ssl_key_password", default)]
    pub ssl_key_password: Option<Secret>,
    /// Every other librdkafka property, by its librdkafka name; filled by [`KafkaSettings::load`].
    #[serde(skip)]
    pub librdkafka_options: LibrdkafkaOptions,
}

fn default_brokers() -> String {
    "localhost:9092".to_owned()
}

fn default_topic() -> String {
    "stocks".to_owned()
}

fn default_create_topics() -> bool {
    true
}

/// The environment's prefix of librdkafka passthrough properties (as the config layer keys it).
const ENV_PREFIX: &str = "kafka_librdkafka_";

impl KafkaSettings {
    /// The settings of a plaintext cluster at `brokers`, everything else at its default: for
    /// tests, benchmarks and tools that talk to the local broker.
    pub fn plaintext(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            topic: default_topic(),
            create_topics: true,
            security_protocol: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            librdkafka_options: LibrdkafkaOptions::default(),
        }
    }

    /// Reads the section and its passthrough properties, and has librdkafka check every property
    /// now, so that a misspelt one stops the service at startup with its name.
    pub fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let mut settings: Self = layers.section()?;
        settings.librdkafka_options = passthrough(layers)?;
        crate::kafka_check::check(&settings)?;
        Ok(settings)
    }

    /// The named settings: (librdkafka property, variable, value if set).
    fn named<'a>(&'a self) -> [(&'static str, &'static str, Option<&'a str>); 8] {
        let secret = |value: &'a Option<Secret>| value.as_ref().map(Secret::expose);
        [
            (
                "security.protocol",
                "KAFKA_SECURITY_PROTOCOL",
                self.security_protocol.as_deref(),
            ),
            (
                "sasl.mechanism",
                "KAFKA_SASL_MECHANISM",
                self.sasl_mechanism.as_deref(),
            ),
            (
                "sasl.username",
                "KAFKA_SASL_USERNAME",
                self.sasl_username.as_deref(),
            ),
            (
                "sasl.password",
                "KAFKA_SASL_PASSWORD",
                secret(&self.sasl_password),
            ),
            (
                "ssl.ca.location",
                "KAFKA_SSL_CA_LOCATION",
                self.ssl_ca_location.as_deref(),
            ),
            (
                "ssl.certificate.location",
                "KAFKA_SSL_CERTIFICATE_LOCATION",
                self.ssl_certificate_location.as_deref(),
            ),
            (
                "ssl.key.location",
                "KAFKA_SSL_KEY_LOCATION",
                self.ssl_key_location.as_deref(),
            ),
            (
                "ssl.key.password",
                "KAFKA_SSL_KEY_PASSWORD",
                secret(&self.ssl_key_password),
            ),
        ]
    }

    /// The librdkafka properties these settings set, the named ones first, each with the variable
    /// that sets it (for error messages).
    pub fn properties<'a>(&'a self) -> Vec<Property<'a>> {
        let named = self.named();
        let named = named.into_iter().filter_map(|(name, variable, value)| {
            value.map(|value| Property {
                name,
                variable: variable.to_owned(),
                value,
            })
        });
        let passthrough = self
            .librdkafka_options
            .0
            .iter()
            .map(|(name, value)| Property {
                name,
                variable: passthrough_variable(name),
                value,
            });
        named.chain(passthrough).collect()
    }
}

/// One librdkafka property and the variable it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property<'a> {
    pub name: &'a str,
    pub variable: String,
    pub value: &'a str,
}

/// The variable that sets a passthrough property: `socket.keepalive.enable` ->
/// `KAFKA_LIBRDKAFKA_SOCKET_KEEPALIVE_ENABLE`.
fn passthrough_variable(name: &str) -> String {
    format!("KAFKA_LIBRDKAFKA_{}", name.replace('.', "_").to_uppercase())
}

/// librdkafka properties by name; `Debug` masks the values of those that hold secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LibrdkafkaOptions(pub BTreeMap<String, String>);

impl fmt::Debug for LibrdkafkaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, value)| {
                let shown = if is_secret_property(name) {
                    "***"
                } else {
                    value
                };
                (name, shown)
            }))
            .finish()
    }
}

/// Whether a librdkafka property holds a secret (passwords, OAuth client secrets, inline keys,
/// JAAS-style configs with credentials): its value is never printed.
pub fn is_secret_property(name: &str) -> bool {
    [
        "password",
        "secret",
        "key.pem",
        "oauthbearer.config",
        "jaas",
        "token",
    ]
    .iter()
    .any(|part| name.contains(part))
}

/// The passthrough properties: the TOML table `[kafka.librdkafka_options]` (nested tables of
/// unquoted dotted keys flattened back to dotted names), then `KAFKA_LIBRDKAFKA_*` over it.
fn passthrough(layers: &Layers) -> Result<LibrdkafkaOptions, ConfigError> {
    let all: HashMap<String, config::Value> = layers.section()?;
    let mut options = BTreeMap::new();
    if let Some(table) = all
        .get("kafka")
        .and_then(|kafka| kafka.clone().into_table().ok())
        .and_then(|kafka| kafka.get("librdkafka_options").cloned())
    {
        flatten_into(&mut options, "", table)?;
    }
    for (key, value) in all {
        if let Some(rest) = key.to_lowercase().strip_prefix(ENV_PREFIX) {
            let name = rest.replace('_', ".");
            let variable = passthrough_variable(&name);
            let value = value
                .into_string()
                .map_err(|_| ConfigError::new(&variable, "expected a string"))?;
            options.insert(name, value);
        }
    }
    Ok(LibrdkafkaOptions(options))
}

fn flatten_into(
    options: &mut BTreeMap<String, String>,
    prefix: &str,
    value: config::Value,
) -> Result<(), ConfigError> {
    match value.clone().into_table() {
        Ok(table) => {
            for (key, value) in table {
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(options, &name, value)?;
            }
            Ok(())
        }
        Err(_) => {
            let text = value.into_string().map_err(|_| {
                ConfigError::new(
                    "kafka.librdkafka_options",
                    format!("{prefix}: expected a string, number or boolean"),
                )
            })?;
            options.insert(prefix.to_owned(), text);
            Ok(())
        }
    }
}
