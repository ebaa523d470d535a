//! The generator's configuration (see the README's configuration table).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use tickpipe_common::config::{ConfigError, KafkaSettings, Layers, TelemetrySettings};
use tickpipe_common::service::ServiceSettings;

use crate::stocks::StockList;

/// Everything the generator reads from its configuration layers.
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) telemetry: TelemetrySettings,
    pub(crate) kafka: KafkaSettings,
    pub(crate) generator: GeneratorSettings,
}

impl ServiceSettings for Settings {
    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }

    fn health_addr(&self) -> SocketAddr {
        self.generator.metrics_addr
    }

    fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let settings = Self {
            telemetry: layers.section()?,
            kafka: KafkaSettings::load(layers)?,
            generator: layers.section()?,
        };
        settings.generator.check()?;
        Ok(settings)
    }
}

/// The generator's own variables.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct GeneratorSettings {
    /// `GENERATOR_RATE`: messages per second; 0 means as fast as the broker accepts.
    #[serde(rename = "generator_rate", default = "default_rate")]
    pub(crate) rate: f64,
    /// `GENERATOR_STOCKS`: `NAME=MEAN` pairs, comma-separated.
    #[serde(rename = "generator_stocks", default)]
    pub(crate) stocks: StockList,
    /// `GENERATOR_MAX_MESSAGES`: stop after this many messages (all acknowledged), exit 0.
    #[serde(rename = "generator_max_messages", default)]
    pub(crate) max_messages: Option<u64>,
    /// `GENERATOR_SEED`: makes the sequence of messages reproducible.
    #[serde(rename = "generator_seed", default)]
    pub(crate) seed: Option<u64>,
    /// `GENERATOR_PARTITIONS`: partitions of the topic when the generator creates it.
    #[serde(rename = "generator_partitions", default = "default_partitions")]
    pub(crate) partitions: i32,
    /// `KAFKA_REPLICATION_FACTOR`: replication factor of the topic when the generator creates it.
    #[serde(
        rename = "kafka_replication_factor",
        default = "default_replication_factor"
    )]
    pub(crate) replication_factor: i32,
    /// `GENERATOR_COMPRESSION`: the producer's `compression.type`.
    #[serde(rename = "generator_compression", default)]
    pub(crate) compression: Compression,
    /// `GENERATOR_FLUSH_TIMEOUT_SECS`: how long stopping waits for in-flight messages to be
    /// acknowledged (e.g. through a broker restart) before it reports them as not delivered.
    #[serde(
        rename = "generator_flush_timeout_secs",
        default = "default_flush_timeout_secs"
    )]
    pub(crate) flush_timeout_secs: u64,
    /// `METRICS_ADDR`: where `/metrics` is served.
    #[serde(default = "default_metrics_addr")]
    pub(crate) metrics_addr: SocketAddr,
}

/// `GENERATOR_COMPRESSION`: how the producer compresses record batches (librdkafka's
/// `compression.type`). The consumers need no setting: librdkafka decompresses every codec.
///
/// Default `none`, what the producer did before the setting existed: at the default 10 msgs/s a
/// batch holds one message of about 70 bytes, which no codec shrinks. Anything but these five names
/// stops the generator at startup, so a typo cannot silently fall back to no compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Every codec, in the order the configuration error lists them.
    pub const ALL: [Compression; 5] = [Self::None, Self::Gzip, Self::Snappy, Self::Lz4, Self::Zstd];

    /// The value of `GENERATOR_COMPRESSION` and of librdkafka's `compression.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|codec| codec.as_str() == value)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|codec| codec.as_str()).collect();
                format!("expected one of {}, got {value:?}", names.join(", "))
            })
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl GeneratorSettings {
    fn check(&self) -> Result<(), ConfigError> {
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(ConfigError::new(
                "GENERATOR_RATE",
                format!(
                    "expected messages per second, a number >= 0 (0 = unthrottled), got {}",
                    self.rate
                ),
            ));
        }
        if self.partitions < 1 {
            return Err(ConfigError::new(
                "GENERATOR_PARTITIONS",
                "expected an integer >= 1",
            ));
        }
        if self.replication_factor < 1 {
            return Err(ConfigError::new(
                "KAFKA_REPLICATION_FACTOR",
                "expected an integer >= 1",
            ));
        }
        Ok(())
    }
}

fn default_rate() -> f64 {
    10.0
}

fn default_partitions() -> i32 {
    3
}

fn default_replication_factor() -> i32 {
    1
}

fn default_flush_timeout_secs() -> u64 {
    30
}

fn default_metrics_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9101))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let layers = Layers::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        Settings::load(&layers)
    }

    #[test]
    fn defaults_follow_the_contract() {
        let settings = load(&[]).expect("defaults");
        assert_eq!(settings.generator.rate, 10.0);
        assert_eq!(settings.generator.partitions, 3);
        assert_eq!(
            settings.generator.stocks.to_string(),
            "AMZN=1902,MSFT=107,AAPL=215"
        );
        assert_eq!(settings.generator.max_messages, None);
        assert_eq!(
            settings.generator.compression,
            Compression::None,
            "the producer's behaviour before GENERATOR_COMPRESSION existed"
        );
    }

    #[test]
    fn every_codec_is_accepted_by_name() {
        for codec in Compression::ALL {
            let settings = load(&[("GENERATOR_COMPRESSION", codec.as_str())]).expect("valid");
            assert_eq!(settings.generator.compression, codec);
        }
    }

    #[test]
    fn an_unknown_codec_is_a_configuration_error_listing_the_choices() {
        for value in ["brotli", "ZSTD", "", "lz4 "] {
            let error = load(&[("GENERATOR_COMPRESSION", value)])
                .expect_err(value)
                .to_string();
            assert!(
                error.starts_with("invalid configuration: GENERATOR_COMPRESSION: "),
                "{value:?}: {error}"
            );
            assert!(
                error.contains("none, gzip, snappy, lz4, zstd"),
                "{value:?}: {error}"
            );
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn invalid_values_name_the_variable_and_the_form() {
        for (name, value) in [
            ("GENERATOR_RATE", "abc"),
            ("GENERATOR_RATE", "-1"),
            ("GENERATOR_STOCKS", "AMZN=1902,MSFT"),
            ("GENERATOR_MAX_MESSAGES", "ten"),
            ("GENERATOR_PARTITIONS", "0"),
            ("GENERATOR_COMPRESSION", "brotli"),
            ("METRICS_ADDR", "nowhere"),
        ] {
            let error = load(&[(name, value)]).expect_err(value).to_string();
            assert!(error.contains(name), "{name}={value}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn a_bad_stock_entry_is_named() {
        let error = load(&[("GENERATOR_STOCKS", "AMZN=1902,MSFT=cheap")])
            .expect_err("invalid")
            .to_string();
        assert!(error.contains("MSFT=cheap"), "{error}");
    }
}
