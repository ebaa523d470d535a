//! Rate limits and API keys (`crate::access`) through the real router on a real PostgreSQL: a
//! burst then 429 with `Retry-After` and the `RateLimit` fields, costs by what a request asks,
//! buckets per address and per key, recovery, the stream guarded too, `0` = off, the OpenAPI
//! document and CORS; `keys` has the keys file. Small buckets and slow refills keep the timing
//! loose: nothing here waits for a precise moment.

mod keys;
mod socket;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use prometheus_client::registry::Registry;
use serde_json::Value;
use sqlx::PgPool;
use tickpipe_common::config::Layers;
use tickpipe_common::service::ServiceSettings;
use tower::ServiceExt;

use crate::helpers::{database, header, logs, Raw};

/// The application as the binary builds it with `vars`, and its metrics registry.
pub fn app_with(pool: &PgPool, vars: &[(&str, &str)]) -> (Router, Registry) {
    logs();
    let layers = Layers::from_vars(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
        .expect("layers");
    let settings = tickpipe_api::settings::Settings::load(&layers).expect("settings");
    let mut registry = Registry::default();
    let app = tickpipe_api::testing::app_with_settings_and_metrics(
        pool.clone(),
        &settings.api,
        &mut registry,
    )
    .expect("app");
    (app, registry)
}

/// `GET uri` from the peer `from` (as the server would tell it) with `headers`, read whole.
pub async fn get_from(app: &Router, from: [u8; 4], uri: &str, headers: &[(&str, &str)]) -> Raw {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::empty()).expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((from, 40_000))));
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    // A stream's body never ends: only its head is read.
    let body = if header(&headers, "content-type") == Some("text/event-stream") {
        Vec::new()
    } else {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec()
    };
    Raw {
        status,
        headers,
        body,
    }
}

/// The `r` (units left) of an answer's `RateLimit` field.
pub fn remaining(answer: &Raw) -> u64 {
    let field = answer.header("ratelimit").expect("a RateLimit field");
    let r = field
        .split(';')
        .find_map(|part| part.strip_prefix("r="))
        .unwrap_or_else(|| panic!("no r in {field}"));
    r.parse().expect("r is an integer")
}

/// The value of the metric sample `name` in `registry`.
pub fn metric(registry: &Registry, name: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no metric {name} in {text}"))
}

const A: [u8; 4] = [192, 0, 2, 1];
const B: [u8; 4] = [192, 0, 2, 2];
const LATEST: &str = "/v1/get-prices";

#[tokio::test]
async fn a_burst_then_429_with_retry_after_and_the_ratelimit_fields() {
    let db = database().await;
    // 5 units, refilled at one a second: the sixth request in a row finds the bucket empty.
    let (app, registry) = app_with(
        &db.pool,
        &[("API_RATE_LIMIT_RPS", "1"), ("API_RATE_LIMIT_BURST", "5")],
    );
    let mut left = Vec::new();
    for _ in 0..5 {
        let answer = get_from(&app, A, LATEST, &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.header("ratelimit-policy"),
            Some("\"default\";q=5;w=5")
        );
        left.push(remaining(&answer));
    }
    // Each request takes 1 unit; a second of refill may give one back along the way.
    assert!(left.windows(2).all(|pair| pair[1] <= pair[0]), "{left:?}");
    assert!(left[0] == 4 && left[4] <= 1, "{left:?}");
    let mut refused = get_from(&app, A, LATEST, &[]).await;
    if refused.status == StatusCode::OK {
        // The refill gave one unit back meanwhile: the next one is refused.
        refused = get_from(&app, A, LATEST, &[]).await;
    }
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(refused.header("cache-control"), Some("no-store"));
    let retry: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        refused.header("ratelimit"),
        Some(&*format!("\"default\";r=0;t={retry}"))
    );
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"default\";q=5;w=5")
    );
    let problem: Value = serde_json::from_slice(&refused.body).expect("problem");
    assert_eq!(problem["status"], 429);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("retry after")),
        "{problem}"
    );
    assert!(metric(&registry, "api_rate_limited_total") >= 1.0);
    // Probes, the document and the dashboard's files are free: never refused, no fields.
    for free in ["/healthz", "/readyz", "/v1/openapi.json"] {
        let answer = get_from(&app, A, free, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{free}");
        assert_eq!(answer.header("ratelimit"), None, "{free}");
    }
}

#[tokio::test]
async fn a_large_page_costs_more_than_the_latest_prices() {
    let db = database().await;
    let (app, _) = app_with(
        &db.pool,
        &[("API_RATE_LIMIT_RPS", "1"), ("API_RATE_LIMIT_BURST", "30")],
    );
    // The default limit, 1000 rows: 1 + 10 units.
    let page = get_from(&app, A, "/v1/get-prices?ticker=AMZN", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(remaining(&page), 19);
    let latest = get_from(&app, A, LATEST, &[]).await;
    assert!(
        (18..=19).contains(&remaining(&latest)),
        "1 unit (and maybe one refilled)"
    );
    // 2,000 rows cost 21: more than is left, while the latest prices still fit.
    let big = get_from(&app, A, "/v1/get-prices?startTime=0&limit=2000", &[]).await;
    assert_eq!(big.status, StatusCode::TOO_MANY_REQUESTS);
    let latest = get_from(&app, A, LATEST, &[]).await;
    assert_eq!(latest.status, StatusCode::OK);
    // A page above the burst (10,000 rows: 101 units) takes the whole bucket when it is full.
    let (app, _) = app_with(
        &db.pool,
        &[("API_RATE_LIMIT_RPS", "1"), ("API_RATE_LIMIT_BURST", "30")],
    );
    let huge = get_from(&app, A, "/v1/get-prices?startTime=0&limit=10000", &[]).await;
    assert_eq!(huge.status, StatusCode::OK);
    assert_eq!(remaining(&huge), 0);
}

#[tokio::test]
async fn each_address_has_its_own_bucket_and_a_bucket_refills() {
    let db = database().await;
    // 2 units, refilled at 5 a second.
    let (app, _) = app_with(
        &db.pool,
        &[("API_RATE_LIMIT_RPS", "5"), ("API_RATE_LIMIT_BURST", "2")],
    );
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get_from(&app, A, LATEST, &[]).await.status);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let other = get_from(&app, B, LATEST, &[]).await;
    assert_eq!(other.status, StatusCode::OK, "B's bucket is its own");
    assert_eq!(remaining(&other), 1);
    // A's bucket refills: within a few seconds (one would do) it is served again.
    tickpipe_testkit::eventually("A served again", Duration::from_secs(10), || {
        let app = app.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            (get_from(&app, A, LATEST, &[]).await.status == StatusCode::OK).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn the_stream_is_guarded_too() {
    let db = database().await;
    // Opening a stream costs 5: one fits in a bucket of 7, a second does not.
    let (app, _) = app_with(
        &db.pool,
        &[("API_RATE_LIMIT_RPS", "1"), ("API_RATE_LIMIT_BURST", "7")],
    );
    let first = get_from(&app, A, "/v1/stream-prices", &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(remaining(&first), 2);
    let second = get_from(&app, A, "/v1/stream-prices", &[]).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(second.header("retry-after").is_some());
}

#[tokio::test]
async fn zero_turns_the_limits_off() {
    let db = database().await;
    let (app, registry) = app_with(
        &db.pool,
        &[("API_RATE_LIMIT_RPS", "0"), ("API_RATE_LIMIT_BURST", "1")],
    );
    for _ in 0..20 {
        let answer = get_from(&app, A, "/v1/get-prices?startTime=0&limit=10000", &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("ratelimit"), None);
        assert_eq!(answer.header("ratelimit-policy"), None);
    }
    assert_eq!(metric(&registry, "api_rate_limited_total"), 0.0);
    // The document does not promise the fields then; the refusals are still described.
    let document = get_from(&app, A, "/v1/openapi.json", &[]).await;
    let document: Value = serde_json::from_slice(&document.body).expect("json");
    let ok = &document["paths"]["/v1/get-prices"]["get"]["responses"]["200"];
    assert!(ok["headers"]["RateLimit"].is_null(), "{ok}");
}

#[tokio::test]
async fn the_document_describes_429_401_the_fields_and_the_key_parameter() {
    let db = database().await;
    let (app, _) = app_with(&db.pool, &[]);
    let document = get_from(&app, A, "/v1/openapi.json", &[]).await;
    let document: Value = serde_json::from_slice(&document.body).expect("json");
    let components = &document["components"]["responses"];
    for header in ["Retry-After", "RateLimit", "RateLimit-Policy"] {
        assert!(
            !components["TooManyRequests"]["headers"][header].is_null(),
            "{header}"
        );
    }
    assert!(!components["Unauthorized"]["headers"]["WWW-Authenticate"].is_null());
    for path in ["/v1/get-prices", "/v1/stream-prices"] {
        let operation = &document["paths"][path]["get"];
        let responses = &operation["responses"];
        assert_eq!(
            responses["429"]["$ref"], "#/components/responses/TooManyRequests",
            "{path}"
        );
        assert_eq!(
            responses["401"]["$ref"], "#/components/responses/Unauthorized",
            "{path}"
        );
        for header in ["RateLimit", "RateLimit-Policy"] {
            assert!(
                !responses["200"]["headers"][header].is_null(),
                "{path} {header}"
            );
        }
        let parameters = operation["parameters"].as_array().expect("parameters");
        assert!(
            parameters
                .iter()
                .any(|p| p["name"] == "api_key" && p["in"] == "query"),
            "{path}"
        );
        assert!(
            operation["security"].is_null(),
            "{path}: no keys configured, none required"
        );
    }
    let description = document["info"]["description"]
        .as_str()
        .expect("description");
    assert!(description.contains("draft-ietf-httpapi-ratelimit-headers-11"));
    assert!(
        document["paths"]["/healthz"]["get"]["responses"]["429"].is_null(),
        "free"
    );
}

#[tokio::test]
async fn cors_allows_the_key_headers_and_exposes_the_fields() {
    let db = database().await;
    let (app, _) = app_with(&db.pool, &[("API_CORS_ORIGINS", "*")]);
    let request = Request::builder()
        .method("OPTIONS")
        .uri(LATEST)
        .header("origin", "http://127.0.0.1:5001")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization,x-api-key")
        .body(Body::empty())
        .expect("request");
    let preflight = app.clone().oneshot(request).await.expect("response");
    let allowed = header(preflight.headers(), "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-api-key"),
        "{allowed}"
    );
    let answer = get_from(&app, A, LATEST, &[("origin", "http://127.0.0.1:5001")]).await;
    let exposed = answer
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let exposed: Vec<&str> = exposed.split(',').map(str::trim).collect();
    for name in ["ratelimit", "ratelimit-policy", "retry-after"] {
        assert!(exposed.contains(&name), "{name}: {exposed:?}");
    }
}
