//! A PostgreSQL pool's use as Prometheus gauges, read from the pool at each scrape:
//! `<prefix>_db_pool_connections{state="in_use"|"idle"}` and `<prefix>_db_pool_max_connections`
//! (`DATABASE_MAX_CONNECTIONS`). A pool whose connections are all in use makes requests wait for
//! one (the API's 503 after `API_QUERY_TIMEOUT_MS`, the aggregator's slower commits); the Grafana
//! dashboard `deploy/grafana/dashboards` shows the two against the maximum.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug)]
struct PoolCollector {
    pool: PgPool,
}

/// Registers `pool`'s gauges in `registry` under `prefix` (the service: `api`, `aggregator`).
pub fn register(registry: &mut Registry, prefix: &str, pool: PgPool) {
    registry
        .sub_registry_with_prefix(prefix)
        .register_collector(Box::new(PoolCollector { pool }));
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // size() counts the open connections, idle or lent out.
        let open = i64::from(self.pool.size());
        let idle = i64::try_from(self.pool.num_idle())
            .unwrap_or(i64::MAX)
            .min(open);
        let connections = ConstGauge::new(0_i64);
        let mut family = encoder.encode_descriptor(
            "db_pool_connections",
            "Open PostgreSQL connections of the pool, in use or idle",
            None,
            connections.metric_type(),
        )?;
        for (state, value) in [("in_use", open - idle), ("idle", idle)] {
            let labels = StateLabel { state };
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        let max = ConstGauge::new(i64::from(self.pool.options().get_max_connections()));
        max.encode(encoder.encode_descriptor(
            "db_pool_max_connections",
            "Most connections the pool opens (DATABASE_MAX_CONNECTIONS)",
            None,
            max.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::PgPoolOptions;

    #[tokio::test]
    async fn gauges_are_named_by_the_prefix_and_read_from_the_pool() {
        // A lazy pool never connects until asked: nothing open, the maximum as configured.
        let pool = PgPoolOptions::new()
            .max_connections(7)
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool of a valid URL");
        let mut registry = Registry::default();
        register(&mut registry, "api", pool);
        let text = crate::telemetry::render(&registry);
        assert!(
            text.contains("# TYPE api_db_pool_connections gauge"),
            "{text}"
        );
        assert!(
            text.contains("api_db_pool_connections{state=\"in_use\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("api_db_pool_connections{state=\"idle\"} 0"),
            "{text}"
        );
        assert!(text.contains("api_db_pool_max_connections 7"), "{text}");
    }
}
