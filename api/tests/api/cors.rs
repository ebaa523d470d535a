//! `API_CORS_ORIGINS` through the real router against a real PostgreSQL: off by default, an
//! allowed origin, a refused one, `*`, and the preflight. (The stream from an allowed origin is in
//! `stream/encoding.rs`; a real browser on a second origin in `web/tests/cors.spec.mjs`.)

use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use sqlx::PgPool;
use tickpipe_common::config::Layers;
use tickpipe_common::service::ServiceSettings;

use crate::helpers::{database, fetch, header, logs};

const ALLOWED: &str = "http://127.0.0.1:5001";
const OTHER: &str = "http://127.0.0.1:5002";

fn app_with(pool: &PgPool, vars: &[(&str, &str)]) -> Router {
    logs();
    // Without rate limits (these tests send many requests from one client), unless `vars` say.
    let vars = [("API_RATE_LIMIT_RPS", "0")].iter().chain(vars);
    let layers =
        Layers::from_vars(vars.map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).expect("layers");
    let settings = tickpipe_api::settings::Settings::load(&layers).expect("settings");
    tickpipe_api::testing::app_with_settings(pool.clone(), &settings.api).expect("app")
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap) {
    let answer = fetch(app, method, uri, headers).await;
    (answer.status, answer.headers)
}

/// Every value of `name`, comma lists split, lower-cased.
fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|item| item.trim().to_ascii_lowercase())
        .collect()
}

fn preflight(origin: &str) -> [(&str, &str); 3] {
    [
        ("origin", origin),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "if-none-match"),
    ]
}

#[tokio::test]
async fn off_by_default_no_cors_header_and_no_preflight() {
    let db = database().await;
    let app = app_with(&db.pool, &[]);
    let (status, headers) = send(&app, "GET", "/v1/get-prices", &[("origin", ALLOWED)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers
            .keys()
            .all(|name| !name.as_str().starts_with("access-control-")),
        "{headers:?}"
    );
    let (status, headers) = send(&app, "OPTIONS", "/v1/get-prices", &preflight(ALLOWED)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn an_allowed_origin_may_read_prices_and_their_tag_and_another_may_not() {
    let db = database().await;
    let setting = format!("https://app.example.com, {ALLOWED}");
    let app = app_with(&db.pool, &[("API_CORS_ORIGINS", &setting)]);
    let (status, headers) = send(&app, "GET", "/v1/get-prices", &[("origin", ALLOWED)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(ALLOWED)
    );
    let exposed = list(&headers, "access-control-expose-headers");
    for name in ["etag", "retry-after", "x-request-id"] {
        assert!(exposed.contains(&name.to_owned()), "{name}: {exposed:?}");
    }
    assert_eq!(header(&headers, "access-control-allow-credentials"), None);
    let vary = list(&headers, "vary");
    assert!(vary.contains(&"origin".to_owned()), "{vary:?}");

    // Refused: the answer is the same, but without the header that lets a page read it.
    let (status, headers) = send(&app, "GET", "/v1/get-prices", &[("origin", OTHER)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    // Errors carry the header too, so that a page can read the problem.
    let (status, headers) = send(
        &app,
        "GET",
        "/v1/get-prices?limit=0",
        &[("origin", ALLOWED)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(ALLOWED)
    );
}

#[tokio::test]
async fn the_preflight_allows_the_methods_and_headers_the_api_has() {
    let db = database().await;
    let app = app_with(&db.pool, &[("API_CORS_ORIGINS", ALLOWED)]);
    for uri in ["/v1/get-prices", "/v1/stream-prices"] {
        let (status, headers) = send(&app, "OPTIONS", uri, &preflight(ALLOWED)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some(ALLOWED)
        );
        let methods = list(&headers, "access-control-allow-methods");
        assert_eq!(methods, ["get", "head", "options"], "{uri}");
        let allowed = list(&headers, "access-control-allow-headers");
        for name in ["if-none-match", "last-event-id", "x-request-id"] {
            assert!(allowed.contains(&name.to_owned()), "{name}: {allowed:?}");
        }
        assert_eq!(header(&headers, "access-control-max-age"), Some("600"));
    }
    let (status, headers) = send(&app, "OPTIONS", "/v1/get-prices", &preflight(OTHER)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn a_star_allows_any_origin() {
    let db = database().await;
    let app = app_with(&db.pool, &[("API_CORS_ORIGINS", "*")]);
    let (_, headers) = send(&app, "GET", "/v1/get-prices", &[("origin", OTHER)]).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    let (status, headers) = send(&app, "OPTIONS", "/v1/get-prices", &preflight(OTHER)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn an_invalid_origin_is_a_startup_error_naming_the_variable() {
    for bad in [
        "https://app.example.com/",
        "app.example.com",
        "https://a.example,,",
    ] {
        let layers =
            Layers::from_vars([("API_CORS_ORIGINS".to_owned(), bad.to_owned())]).expect("layers");
        let error = tickpipe_api::settings::Settings::load(&layers)
            .expect_err(bad)
            .to_string();
        assert!(error.contains("API_CORS_ORIGINS"), "{bad}: {error}");
    }
}
