//! What the test modules share: a database the readiness test cannot stop under a running test,
//! requests through the real router, and the log lines the requests wrote.

use std::io::Write;
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use sqlx::PgPool;
use tickpipe_testkit::seed::LegacyWindow;
use tickpipe_testkit::TestDatabase;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tower::ServiceExt;

/// The readiness test stops the PostgreSQL server every other test uses: it holds this lock
/// exclusively, every other test shares it for as long as it uses the server.
static POSTGRES: LazyLock<RwLock<()>> = LazyLock::new(|| RwLock::new(()));

/// A database of the test's own, on a server that stays up while the test holds it.
#[derive(Debug)]
pub struct TestDb {
    db: TestDatabase,
    _server_up: RwLockReadGuard<'static, ()>,
}

impl Deref for TestDb {
    type Target = TestDatabase;

    fn deref(&self) -> &TestDatabase {
        &self.db
    }
}

/// A fresh migrated database; PostgreSQL is not stopped until the returned value is dropped.
pub async fn database() -> TestDb {
    logs();
    let server_up = POSTGRES.read().await;
    TestDb {
        db: TestDatabase::create().await,
        _server_up: server_up,
    }
}

/// [`database`] holding `legacy` windows written before open and close were recorded
/// ([`tickpipe_testkit::seed::legacy_database`]).
pub async fn legacy_database(legacy: &[LegacyWindow]) -> TestDb {
    logs();
    let server_up = POSTGRES.read().await;
    TestDb {
        db: tickpipe_testkit::seed::legacy_database(legacy).await,
        _server_up: server_up,
    }
}

/// Waits until no other test uses PostgreSQL, and keeps them off it while the guard lives.
pub async fn exclusive_postgres() -> RwLockWriteGuard<'static, ()> {
    logs();
    POSTGRES.write().await
}

/// Every test's log output, at debug, in the text format the services use (without colours).
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The lines that mention `needle` (a request id, say).
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| line.contains(needle))
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log lines of every test in this binary. The subscriber is the global one, installed before
/// any test does anything (every helper that starts a test calls this first): a per-test
/// `set_default` would miss events whose callsite another thread registered first, since tracing
/// caches a callsite's interest process-wide (tokio-rs/tracing#3611).
pub fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        logs
    })
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// The `content-type` header, empty if there is none.
    pub content_type: String,
    pub headers: HeaderMap,
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub body: Value,
}

/// Sends `request` through `app`.
pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        content_type,
        headers,
        body,
    }
}

/// `method uri` without a body through `app`.
pub async fn call(app: &Router, method: &str, uri: &str) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    send(app, request).await
}

/// The application over `pool` with a 2 s query timeout.
pub fn app(pool: &PgPool) -> Router {
    logs();
    tickpipe_api::testing::app(pool.clone(), Duration::from_secs(2))
}

/// `GET uri` through a fresh application over `pool`: status, content type and body.
pub async fn get(pool: &PgPool, uri: &str) -> (StatusCode, String, Value) {
    request(pool, "GET", uri).await
}

/// `method uri` through a fresh application over `pool`: status, content type and body.
pub async fn request(pool: &PgPool, method: &str, uri: &str) -> (StatusCode, String, Value) {
    let answer = call(&app(pool), method, uri).await;
    (answer.status, answer.content_type, answer.body)
}

/// A response read whole, body as bytes.
#[derive(Debug)]
pub struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Sends `method uri` with `headers` through the router and reads the answer whole.
pub async fn fetch(app: &Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> Raw {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Raw {
        status,
        headers,
        body,
    }
}

/// A header's value as text, if present and visible ASCII.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}
