//! The secure services' addresses and credentials, and the services started over them.

use std::time::Duration;

use prometheus_client::registry::Registry;
use tickpipe_common::config::Layers;
use tickpipe_common::service::ServiceSettings;
use tokio_util::sync::CancellationToken;

/// How long a misconfigured service may take to stop with its one line.
pub const FAILS_WITHIN: Duration = Duration::from_secs(30);

/// What `TICKPIPE_SECURE=1 scripts/services.sh env` exports.
#[derive(Debug, Clone)]
pub struct Secure {
    pub brokers: String,
    pub ca: String,
    pub other_ca: String,
    pub password_file: String,
    pub limited_password_file: String,
    /// verify-full to PostgreSQL itself, on its `stocks` database.
    pub database_url: String,
    /// verify-full to PgBouncer (transaction mode), on the same database.
    pub pooled_url: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the secure services with \
             `TICKPIPE_SECURE=1 scripts/services.sh up` and evaluate \
             `TICKPIPE_SECURE=1 scripts/services.sh env` (scripts/test.sh does both)"
        )
    })
}

pub type Vars = Vec<(String, String)>;

impl Secure {
    pub fn from_env() -> Self {
        Self {
            brokers: var("TICKPIPE_SECURE_KAFKA_BROKERS"),
            ca: var("TICKPIPE_SECURE_CA"),
            other_ca: var("TICKPIPE_SECURE_OTHER_CA"),
            password_file: var("TICKPIPE_SECURE_KAFKA_PASSWORD_FILE"),
            limited_password_file: var("TICKPIPE_SECURE_KAFKA_LIMITED_PASSWORD_FILE"),
            database_url: var("TICKPIPE_SECURE_DATABASE_URL"),
            pooled_url: var("TICKPIPE_SECURE_POOLED_URL"),
        }
    }

    /// The Kafka settings of the `tickpipe` user, as a user would write them.
    pub fn kafka(&self, topic: &str) -> Vars {
        vars(&[
            ("KAFKA_BROKERS", &self.brokers),
            ("KAFKA_TOPIC", topic),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "tickpipe"),
            ("KAFKA_SASL_PASSWORD_FILE", &self.password_file),
            ("KAFKA_SSL_CA_LOCATION", &self.ca),
            ("METRICS_ADDR", "127.0.0.1:0"),
            ("RUST_LOG", "info"),
        ])
    }

    /// The secret every line is checked for.
    pub fn password(&self) -> String {
        std::fs::read_to_string(&self.password_file)
            .expect("password file")
            .trim()
            .to_owned()
    }
}

pub fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// `base` with `changes` applied: each replaces its variable, an empty value removes it.
pub fn with(base: &Vars, changes: &[(&str, &str)]) -> Vars {
    let mut vars: Vars = base
        .iter()
        .filter(|(name, _)| !changes.iter().any(|(changed, _)| changed == name))
        .cloned()
        .collect();
    vars.extend(
        changes
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.to_string(), value.to_string())),
    );
    vars
}

fn load<S: ServiceSettings>(vars: &Vars) -> Result<S, String> {
    let layers = Layers::from_vars(vars.clone()).map_err(|error| error.to_string())?;
    S::load(&layers).map_err(|error| error.to_string())
}

/// Runs `service` and returns the line it stopped with, which must come within [`FAILS_WITHIN`].
async fn failure<T, F>(what: &str, service: F) -> String
where
    F: std::future::Future<Output = Result<T, String>>,
{
    match tokio::time::timeout(FAILS_WITHIN, service).await {
        Ok(Err(line)) => {
            assert!(!line.contains('\n'), "{what}: one line, got {line:?}");
            line
        }
        Ok(Ok(_)) => panic!("{what}: expected a failure, the service ran"),
        Err(_) => panic!("{what}: still running after {FAILS_WITHIN:?}, expected one line"),
    }
}

/// The generator with `vars`, producing `messages` messages as fast as it can.
pub async fn run_generator(
    vars: &Vars,
    messages: u64,
) -> Result<tickpipe_generator::RunSummary, String> {
    let mut vars = vars.clone();
    vars.extend(self::vars(&[
        ("GENERATOR_MAX_MESSAGES", &messages.to_string()),
        ("GENERATOR_RATE", "5000"),
        ("GENERATOR_SEED", "22"),
    ]));
    let settings = load::<tickpipe_generator::settings::Settings>(&vars)?;
    let metrics = tickpipe_generator::metrics::GeneratorMetrics::register(&mut Registry::default());
    tickpipe_generator::run_with_metrics(settings, metrics, CancellationToken::new())
        .await
        .map_err(|error| error.to_string())
}

pub async fn generator_failure(what: &str, vars: &Vars) -> String {
    failure(what, run_generator(vars, 10)).await
}

/// The aggregator with `vars` until `shutdown`.
pub async fn run_aggregator(vars: &Vars, shutdown: CancellationToken) -> Result<(), String> {
    let settings = load::<tickpipe_aggregator::settings::Settings>(vars)?;
    let metrics =
        tickpipe_aggregator::metrics::AggregatorMetrics::register(&mut Registry::default());
    tickpipe_aggregator::run_with_metrics(settings, metrics, shutdown)
        .await
        .map_err(|error| error.to_string())
}

pub async fn aggregator_failure(what: &str, vars: &Vars) -> String {
    failure(what, run_aggregator(vars, CancellationToken::new())).await
}

/// The API with `vars` on `listener` until `shutdown`.
pub async fn run_api(
    vars: &Vars,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let settings = load::<tickpipe_api::settings::Settings>(vars)?;
    tickpipe_api::serve(listener, settings, shutdown)
        .await
        .map_err(|error| error.to_string())
}

pub async fn api_failure(what: &str, vars: &Vars) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    failure(what, run_api(vars, listener, CancellationToken::new())).await
}
