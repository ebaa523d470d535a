//! The three services in this process against the plain services of `scripts/services.sh`, with
//! one-second windows so that a run takes seconds, and a client on the live stream.

use std::time::Duration;

use prometheus_client::registry::Registry;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use tickpipe_common::config::Layers;
use tickpipe_common::service::ServiceSettings;
use tickpipe_testkit::{brokers, create_topic, eventually, TestDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub type Vars = Vec<(String, String)>;

/// The callers' traces of the two requests answered from the database (windows, then bars): each
/// answer's span must continue its caller's trace.
pub const CALLER_WINDOWS: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
pub const CALLER_BARS: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What a run left behind for the test to check.
pub struct Run {
    /// The `trace_parent` of every entry of the change log (prices and boundary moves).
    pub trace_parents: Vec<Option<String>>,
    /// How many of those entries are prices.
    pub prices: i64,
}

fn load<S: ServiceSettings>(vars: &Vars) -> S {
    let layers = Layers::from_vars(vars.clone()).expect("layers");
    S::load(&layers).expect("settings")
}

/// Generator → Kafka → aggregator → PostgreSQL → API stream, with `otel` added to every service's
/// variables; returns once a client received a price over the stream and every service stopped
/// (so that each flushed its spans).
pub async fn run(otel: &[(&str, &str)]) -> Run {
    let topic = create_topic("traces", 1).await;
    let db = TestDatabase::create().await;
    let vars: Vars = [
        ("KAFKA_BROKERS", brokers().as_str()),
        ("KAFKA_TOPIC", &topic),
        ("DATABASE_URL", &db.url),
        ("AGGREGATOR_WINDOW_SECS", "1"),
        ("AGGREGATOR_GRACE_MS", "100"),
        ("AGGREGATOR_IDLE_LAG_MS", "300"),
        ("AGGREGATOR_GROUP_ID", &format!("{topic}-group")),
        ("AGGREGATOR_DLQ_TOPIC", &format!("{topic}.dlq")),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("RUST_LOG", "warn"),
        ("GENERATOR_MAX_MESSAGES", "300"),
        ("GENERATOR_RATE", "100"),
        ("GENERATOR_SEED", "24"),
    ]
    .iter()
    .chain(otel)
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    let aggregator = {
        let (settings, stop) = (load(&vars), stop.clone());
        let metrics =
            tickpipe_aggregator::metrics::AggregatorMetrics::register(&mut Registry::default());
        tokio::spawn(tickpipe_aggregator::run_with_metrics(
            settings, metrics, stop,
        ))
    };
    // The API reads the schema the aggregator migrates (TestDatabase did already).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let api = tokio::spawn(tickpipe_api::serve(listener, load(&vars), stop.clone()));
    let stream = tokio::spawn(first_price(port));
    let generator = {
        let settings = load(&vars);
        let metrics =
            tickpipe_generator::metrics::GeneratorMetrics::register(&mut Registry::default());
        tickpipe_generator::run_with_metrics(settings, metrics, CancellationToken::new())
    };
    let summary = generator.await.expect("generator");
    assert_eq!(summary.acknowledged, 300, "{summary:?}");
    let price = tokio::time::timeout(Duration::from_secs(60), stream)
        .await
        .expect("a price over the stream within 60 s")
        .expect("stream task");
    assert!(price.contains("\"ticker\""), "{price}");
    // The latest prices, from memory now that the stream keeps the feed live.
    let latest = get(port, "/v1/get-prices", None).await;
    assert!(latest.starts_with("HTTP/1.1 200"), "{latest}");
    // The same prices and bars of the last hour through the database, each from a traced caller.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let hour_ago = now.expect("after 1970").as_secs() - 3600;
    for (path, caller) in [
        ("/v1/get-prices?limit=1000".to_owned(), CALLER_WINDOWS),
        (
            format!("/v1/get-prices?interval=1m&startTime={hour_ago}"),
            CALLER_BARS,
        ),
    ] {
        let answer = get(port, &path, Some(caller)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"ticker\""), "{answer}");
    }
    stop.cancel();
    aggregator
        .await
        .expect("aggregator task")
        .expect("aggregator");
    api.await.expect("API task").expect("API");
    delete_topics(&[&topic, &format!("{topic}.dlq")]).await;
    let trace_parents = sqlx::query_scalar("SELECT trace_parent FROM window_changes ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .expect("window_changes");
    let prices = sqlx::query_scalar("SELECT count(*) FROM window_changes WHERE ticker IS NOT NULL")
        .fetch_one(&db.pool)
        .await
        .expect("window_changes");
    Run {
        trace_parents,
        prices,
    }
}

/// Opens `/v1/stream-prices` (retrying until the API listens) and returns the first frame that
/// carries a price: by then the API has handed that change to the connection.
async fn first_price(port: u16) -> String {
    let mut connection = eventually("the API listening", Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
    let request = "GET /v1/stream-prices HTTP/1.1\r\nHost: localhost\r\n\r\n";
    connection
        .write_all(request.as_bytes())
        .await
        .expect("send");
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        let read = connection.read(&mut buffer).await.expect("read the stream");
        assert!(
            read > 0,
            "the stream ended: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&received);
        if let Some(frame) = text
            .split("\n\n")
            .find(|frame| frame.contains("\"ticker\""))
        {
            return frame.to_owned();
        }
    }
}

/// One HTTP/1.1 GET, with a `traceparent` header if given; the whole response.
async fn get(port: u16, path: &str, traceparent: Option<&str>) -> String {
    let mut connection = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let trace = traceparent.map_or_else(String::new, |t| format!("traceparent: {t}\r\n"));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{trace}Connection: close\r\n\r\n");
    connection
        .write_all(request.as_bytes())
        .await
        .expect("send");
    let mut response = String::new();
    connection
        .read_to_string(&mut response)
        .await
        .expect("read");
    response
}

/// Scratch topics are deleted: the broker is shared.
async fn delete_topics(topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("broker.address.family", "v4")
        .create()
        .expect("admin client");
    // The dead-letter topic exists only if a record was invalid; its absence is fine.
    let _ = admin.delete_topics(topics, &AdminOptions::new()).await;
}
