//! The HTTP server itself, over real sockets: the request-head timeout, the body limit, the
//! graceful shutdown and the metrics endpoint, configured through the same variables as the binary.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tickpipe_common::config::Layers;
use tickpipe_common::service::ServiceSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::helpers::{database, TestDb};

const HEADER_TIMEOUT_MS: u64 = 300;

struct Server {
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), tickpipe_api::ApiServerError>>,
    db: TestDb,
}

/// A port nothing listens on (bound and released; nothing else on the machine races for it in
/// practice).
fn free_local_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

async fn start() -> Server {
    let db = database().await;
    let metrics_addr = free_local_addr();
    let layers = Layers::from_vars([
        ("DATABASE_URL".to_owned(), db.url.clone()),
        ("METRICS_ADDR".to_owned(), metrics_addr.to_string()),
        (
            "API_HEADER_READ_TIMEOUT_MS".to_owned(),
            HEADER_TIMEOUT_MS.to_string(),
        ),
        ("API_MAX_BODY_BYTES".to_owned(), "100".to_owned()),
        ("API_QUERY_TIMEOUT_MS".to_owned(), "20000".to_owned()),
    ])
    .expect("layers");
    let settings = tickpipe_api::settings::Settings::load(&layers).expect("settings");
    assert_eq!(settings.api.header_read_timeout_ms, HEADER_TIMEOUT_MS);
    assert_eq!(settings.api.metrics_addr, metrics_addr);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(tickpipe_api::serve(listener, settings, shutdown.clone()));
    Server {
        addr,
        metrics_addr,
        shutdown,
        task,
        db,
    }
}

/// Sends `request` and reads until the server closes the connection (or 10 s pass).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the server answers and closes")
        .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

/// Reads until end of stream or a reset; returns how long that took and what arrived.
async fn wait_for_close(stream: &mut TcpStream) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the server closes the connection within 10 s");
        match read {
            Ok(0) | Err(_) => return (started.elapsed(), received),
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_request_head_that_never_completes_is_disconnected_after_the_timeout() {
    let server = start().await;
    // A partial request line, then silence.
    let mut partial = TcpStream::connect(server.addr).await.expect("connect");
    partial.write_all(b"GET /v1/get-pri").await.expect("write");
    // Headers started but never finished.
    let mut headers = TcpStream::connect(server.addr).await.expect("connect");
    headers
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    // Nothing at all.
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");

    for (what, stream) in [
        ("partial request line", &mut partial),
        ("unfinished headers", &mut headers),
        ("silent connection", &mut silent),
    ] {
        let (elapsed, received) = wait_for_close(stream).await;
        eprintln!("{what}: closed after {elapsed:?}");
        // Only a lower bound: the close cannot come before the timeout (less the time the other
        // streams took to be checked, hence measured loosely from the shared start).
        let text = String::from_utf8_lossy(&received);
        assert!(
            received.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{what}: no regular response, got {text:?}"
        );
    }
    // Meanwhile the server answers complete requests.
    let response = exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server.shutdown.cancel();
    server.task.await.expect("join").expect("serve");
}

#[tokio::test]
async fn the_timeout_does_not_fire_early() {
    let server = start().await;
    let mut partial = TcpStream::connect(server.addr).await.expect("connect");
    let started = Instant::now();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("write");
    let (_, received) = wait_for_close(&mut partial).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(HEADER_TIMEOUT_MS - 50),
        "closed after {elapsed:?}, before the {HEADER_TIMEOUT_MS} ms timeout"
    );
    let text = String::from_utf8_lossy(&received);
    assert!(
        received.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );
    server.shutdown.cancel();
    server.task.await.expect("join").expect("serve");
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_a_413_problem() {
    let server = start().await;
    let mut request =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 101\r\n\r\n"
            .to_vec();
    request.extend_from_slice(&[b'x'; 101]);
    let response = exchange(server.addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
    let mut small =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100\r\n\r\n"
            .to_vec();
    small.extend_from_slice(&[b'x'; 100]);
    let response = exchange(server.addr, &small).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server.shutdown.cancel();
    server.task.await.expect("join").expect("serve");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_closes_idle_connections() {
    let server = start().await;
    // An idle keep-alive connection that has completed one request.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // A request in flight when the shutdown starts: its query waits for a table lock.
    let mut lock = server.db.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE window_prices IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let mut in_flight = TcpStream::connect(server.addr).await.expect("connect");
    in_flight
        .write_all(b"GET /v1/get-prices?startTime=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    // In flight for sure: its query is waiting for the lock.
    tickpipe_testkit::eventually(
        "the request's query waits for the table lock",
        Duration::from_secs(10),
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE '%window_prices%'",
            )
            .fetch_one(&server.db.pool)
            .await
            .ok()?;
            (waiting > 0).then_some(())
        },
    )
    .await;

    server.shutdown.cancel();
    // The shutdown is under way once it has closed the idle connection (without a response);
    // serve must still be waiting for the request in flight then.
    let (_, rest) = wait_for_close(&mut idle).await;
    assert!(
        rest.is_empty(),
        "the idle connection is closed without a response"
    );
    assert!(
        !server.task.is_finished(),
        "serve waits for the request in flight"
    );
    lock.rollback().await.expect("unlock");
    let (_, answer) = wait_for_close(&mut in_flight).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("serve returns once every connection is closed")
        .expect("join")
        .expect("serve");
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn metrics_are_served_on_metrics_addr_and_not_on_the_api_port() {
    let server = start().await;
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let response = exchange(server.addr, &get("/v1/get-prices")).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let response = exchange(server.addr, &get("/metrics")).await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");

    let metrics = exchange(server.metrics_addr, &get("/metrics")).await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains(r#"api_http_requests_total{route="/v1/get-prices",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"api_http_requests_total{route="unmatched",status="404"} 1"#),
        "{metrics}"
    );
    // The read pool's use (crates/common/src/pool_metrics.rs): the request above held a connection.
    assert!(
        metrics.contains(r#"api_db_pool_connections{state="idle"} "#)
            && metrics.contains(r#"api_db_pool_connections{state="in_use"} "#)
            && metrics.contains("\napi_db_pool_max_connections "),
        "{metrics}"
    );
    let health = exchange(server.metrics_addr, &get("/healthz")).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    server.shutdown.cancel();
    server.task.await.expect("join").expect("serve");
    // The metrics endpoint stops with the API (its graceful shutdown may take a moment).
    tickpipe_testkit::eventually(
        "the metrics listener closes",
        Duration::from_secs(10),
        || async {
            TcpStream::connect(server.metrics_addr)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}

/// The gauges the staleness alert reads (`deploy/prometheus/rules/tickpipe.yml`): the window
/// width, and the `complete` boundary, 0 while nothing is complete, then following the database
/// without any request to the API.
#[tokio::test]
async fn the_complete_boundary_and_the_window_are_exported_for_the_staleness_alert() {
    let server = start().await;
    let scrape = || async {
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        exchange(server.metrics_addr, request).await
    };
    // The value of the line `name value`, if the response has one.
    let value = |body: &str, name: &str| -> Option<f64> {
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    // The metrics endpoint starts beside the API, in a task of its own.
    tickpipe_testkit::eventually("the metrics listener", Duration::from_secs(10), || async {
        TcpStream::connect(server.metrics_addr).await.ok()
    })
    .await;
    let body = scrape().await;
    assert_eq!(value(&body, "api_window_seconds"), Some(30.0), "{body}");
    assert_eq!(
        value(&body, "api_complete_boundary_timestamp_seconds"),
        Some(0.0),
        "nothing is complete in an empty database: {body}"
    );

    // 2026-11-27T10:00:30Z, with milliseconds, as a partition's progress.
    let closed_before_ms = 1_795_773_630_250;
    tickpipe_testkit::seed::close_before(&server.db.pool, 0, closed_before_ms).await;
    let stored = tickpipe_store::boundary::complete_before(&server.db.pool)
        .await
        .expect("boundary");
    assert_eq!(
        stored.map(|at| at.timestamp_millis()),
        Some(closed_before_ms)
    );
    tickpipe_testkit::eventually(
        "the exported boundary to follow the database",
        Duration::from_secs(10),
        || async {
            let body = scrape().await;
            (value(&body, "api_complete_boundary_timestamp_seconds") == Some(1_795_773_630.25))
                .then_some(())
        },
    )
    .await;
    server.shutdown.cancel();
    server.task.await.expect("join").expect("serve");
}
