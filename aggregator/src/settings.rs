//! The aggregator's configuration (see the README's configuration table).

use std::net::SocketAddr;

use crate::partition::Timing;
use serde::Deserialize;
use tickpipe_common::config::{
    ConfigError, DatabaseSettings, KafkaSettings, Layers, TelemetrySettings,
};
use tickpipe_common::service::ServiceSettings;
use tickpipe_store::history::Retention;

#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) telemetry: TelemetrySettings,
    pub(crate) kafka: KafkaSettings,
    pub(crate) database: DatabaseSettings,
    pub(crate) aggregator: AggregatorSettings,
    /// `TICKPIPE_RETENTION_*`: how long each stored table keeps its rows ([`crate::retention`]).
    pub(crate) retention: Vec<Retention>,
}

impl ServiceSettings for Settings {
    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }

    fn health_addr(&self) -> SocketAddr {
        self.aggregator.metrics_addr
    }

    fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let aggregator: AggregatorSettings = layers.section()?;
        aggregator.check()?;
        Ok(Self {
            telemetry: layers.section()?,
            kafka: KafkaSettings::load(layers)?,
            database: layers.section()?,
            retention: crate::retention::load(layers, aggregator.window_secs)?,
            aggregator,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AggregatorSettings {
    /// `AGGREGATOR_GROUP_ID`: the Kafka consumer group shared by all instances.
    #[serde(rename = "aggregator_group_id", default = "default_group_id")]
    pub(crate) group_id: String,
    /// `AGGREGATOR_WINDOW_SECS`: width of the tumbling windows.
    #[serde(rename = "aggregator_window_secs", default = "default_window_secs")]
    pub(crate) window_secs: u32,
    /// `AGGREGATOR_GRACE_MS`: how far behind the newest timestamp a window stays open.
    #[serde(rename = "aggregator_grace_ms", default = "default_grace_ms")]
    pub(crate) grace_ms: u32,
    /// `AGGREGATOR_IDLE_LAG_MS`: how far behind the wall clock a caught-up partition's windows
    /// stay open, for records held back by a leader failover (see [`Timing::idle_lag_ms`]).
    #[serde(rename = "aggregator_idle_lag_ms", default = "default_idle_lag_ms")]
    pub(crate) idle_lag_ms: u32,
    /// `AGGREGATOR_METADATA_REFRESH_MS`: how often the topic's partitions are checked, by
    /// librdkafka (to rebalance new ones onto the group) and by the partition watch (so that they
    /// hold `complete` back until claimed). Records of an added partition are consumed within about
    /// this long plus a rebalance.
    #[serde(
        rename = "aggregator_metadata_refresh_ms",
        default = "default_metadata_refresh_ms"
    )]
    pub(crate) metadata_refresh_ms: u32,
    /// `AGGREGATOR_DLQ_TOPIC`: where invalid records go, with the reason in headers.
    #[serde(rename = "aggregator_dlq_topic", default = "default_dlq_topic")]
    pub(crate) dlq_topic: String,
    /// `METRICS_ADDR`: where `/metrics` is served.
    #[serde(default = "default_metrics_addr")]
    pub(crate) metrics_addr: SocketAddr,
}

impl AggregatorSettings {
    fn check(&self) -> Result<(), ConfigError> {
        if self.window_secs == 0 || 86_400 % self.window_secs != 0 {
            return Err(ConfigError::new(
                "AGGREGATOR_WINDOW_SECS",
                "expected whole seconds that divide a day evenly (e.g. 30, 60, 300)",
            ));
        }
        if self.idle_lag_ms < self.grace_ms {
            return Err(ConfigError::new(
                "AGGREGATOR_IDLE_LAG_MS",
                "expected at least AGGREGATOR_GRACE_MS: a quiet partition cannot close windows \
                 sooner than a busy one",
            ));
        }
        if !(100..=3_600_000).contains(&self.metadata_refresh_ms) {
            return Err(ConfigError::new(
                "AGGREGATOR_METADATA_REFRESH_MS",
                "expected milliseconds from 100 to 3600000",
            ));
        }
        if self.group_id.is_empty() {
            return Err(ConfigError::new(
                "AGGREGATOR_GROUP_ID",
                "expected a non-empty group id",
            ));
        }
        Ok(())
    }

    pub(crate) fn metadata_refresh(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.metadata_refresh_ms))
    }

    pub(crate) fn timing(&self) -> Timing {
        Timing {
            width_ms: i64::from(self.window_secs) * 1000,
            grace_ms: i64::from(self.grace_ms),
            idle_lag_ms: i64::from(self.idle_lag_ms),
        }
    }
}

fn default_group_id() -> String {
    "stocks-aggregator".to_owned()
}

fn default_window_secs() -> u32 {
    30
}

fn default_grace_ms() -> u32 {
    2000
}

/// More than twice the ~12 s a leader failover held records back in the cluster drill.
fn default_idle_lag_ms() -> u32 {
    30_000
}

fn default_metadata_refresh_ms() -> u32 {
    5_000
}

fn default_dlq_topic() -> String {
    "stocks.dlq".to_owned()
}

fn default_metrics_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9102))
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
    fn defaults_follow_the_contract() {
        let s = load(&[]).expect("defaults");
        assert_eq!(s.aggregator.group_id, "stocks-aggregator");
        assert_eq!(
            s.aggregator.timing(),
            Timing {
                width_ms: 30_000,
                grace_ms: 2_000,
                idle_lag_ms: 30_000
            }
        );
        assert_eq!(s.aggregator.dlq_topic, "stocks.dlq");
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (name, value) in [
            ("AGGREGATOR_WINDOW_SECS", "7"),
            ("AGGREGATOR_WINDOW_SECS", "x"),
            ("AGGREGATOR_GRACE_MS", "-1"),
            ("AGGREGATOR_IDLE_LAG_MS", "1999"),
        ] {
            let error = load(&[(name, value)]).expect_err(value).to_string();
            assert!(error.contains(name), "{error}");
        }
    }
}
