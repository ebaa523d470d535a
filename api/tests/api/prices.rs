//! The API against a real PostgreSQL, through the real router (no network needed).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use sqlx::PgPool;

use tickpipe_testkit::seed::{self, Totals};

use crate::helpers::{app, call, database, get, request, send};

/// 2026-11-27T10:00:00Z.
const T0: i64 = 1_795_773_600;

/// Seeds `windows` consecutive 30-second windows for each ticker, with deterministic prices,
/// through the aggregator's write path (which keeps the latest-window table beside them).
async fn seed(pool: &PgPool, tickers: &[&str], windows: i64) {
    let rows = tickers.iter().zip(1..).flat_map(|(ticker, t)| {
        (0..windows).map(move |w| {
            let start_ms = (T0 + w * 30) * 1000;
            let totals = Totals::new(100 * t * 4 + w, 4, 90 * t, 110 * t);
            seed::window(ticker, (start_ms, start_ms + 30_000), totals)
        })
    });
    // By a partition that has closed nothing yet: no entry is complete.
    seed::write(pool, 0, 0, rows).await;
}

fn window(ticker: &str, start: i64, average: f64, min: i64, max: i64) -> Value {
    let iso = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .expect("time")
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    // Seeded opening at the minimum and closing at the maximum, by a partition that has closed
    // nothing: nothing complete.
    json!({
        "ticker": ticker, "windowStart": iso(start), "windowEnd": iso(start + 30),
        "averagePrice": average, "samples": 4, "minPrice": min, "maxPrice": max,
        "openPrice": min, "closePrice": max, "complete": false
    })
}

#[tokio::test]
async fn no_parameters_gives_the_latest_window_of_every_ticker() {
    let db = database().await;
    seed(&db.pool, &["MSFT", "AMZN", "AAPL"], 3).await;
    let (status, content_type, body) = get(&db.pool, "/v1/get-prices").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    let last = T0 + 60;
    // price_sum = 400 * (t + 1) + 2 over 4 samples, t = index in the seed list.
    assert_eq!(
        body,
        json!({"prices": [
            window("AAPL", last, (1200.0 + 2.0) / 4.0, 270, 330),
            window("AMZN", last, (800.0 + 2.0) / 4.0, 180, 220),
            window("MSFT", last, (400.0 + 2.0) / 4.0, 90, 110),
        ], "nextCursor": null})
    );
}

#[tokio::test]
async fn ticker_filter_is_case_insensitive() {
    let db = database().await;
    seed(&db.pool, &["MSFT", "AMZN", "AAPL"], 2).await;
    let (status, _, body) = get(&db.pool, "/v1/get-prices?ticker=amzn,Msft").await;
    assert_eq!(status, StatusCode::OK);
    let tickers: Vec<&str> = body["prices"]
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["ticker"].as_str().expect("ticker"))
        .collect();
    assert_eq!(tickers, ["AMZN", "MSFT"]);
}

#[tokio::test]
async fn a_time_range_gives_every_window_starting_inside_it() {
    let db = database().await;
    seed(&db.pool, &["MSFT", "AMZN"], 10).await;
    let uri = format!(
        "/v1/get-prices?startTime={}&endTime=2026-11-27T10:01:30Z",
        T0 + 30
    );
    let (status, _, body) = get(&db.pool, &uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"prices": [
            window("AMZN", T0 + 30, (800.0 + 1.0) / 4.0, 180, 220),
            window("MSFT", T0 + 30, (400.0 + 1.0) / 4.0, 90, 110),
            window("AMZN", T0 + 60, (800.0 + 2.0) / 4.0, 180, 220),
            window("MSFT", T0 + 60, (400.0 + 2.0) / 4.0, 90, 110),
        ], "nextCursor": null})
    );
    let (_, _, only_msft) = get(&db.pool, &format!("{uri}&ticker=MSFT")).await;
    assert_eq!(only_msft["prices"].as_array().expect("array").len(), 2);
    let (_, _, open_end) = get(&db.pool, &format!("/v1/get-prices?startTime={}", T0 + 270)).await;
    assert_eq!(
        open_end["prices"].as_array().expect("array").len(),
        2,
        "{open_end}"
    );
}

#[tokio::test]
async fn pagination_visits_every_row_exactly_once() {
    let db = database().await;
    seed(&db.pool, &["AAPL", "AMZN", "MSFT"], 25).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut uri = "/v1/get-prices?startTime=0&limit=7".to_owned();
        if let Some(c) = &cursor {
            uri.push_str(&format!("&cursor={c}"));
        }
        let (status, _, body) = get(&db.pool, &uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        for price in body["prices"].as_array().expect("array") {
            seen.push((
                price["windowStart"].as_str().expect("start").to_owned(),
                price["ticker"].as_str().expect("ticker").to_owned(),
            ));
        }
        match body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 11, "75 rows at 7 a page");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 75);
    assert_eq!(seen, sorted, "in order, no repeats");

    let (_, _, first) = get(&db.pool, "/v1/get-prices?limit=2").await;
    let next = first["nextCursor"].as_str().expect("more latest rows");
    let (_, _, second) = get(&db.pool, &format!("/v1/get-prices?limit=2&cursor={next}")).await;
    assert_eq!(second["prices"][0]["ticker"], "MSFT");
    assert_eq!(second["nextCursor"], Value::Null);
}

#[tokio::test]
async fn every_error_is_problem_json_naming_the_parameter() {
    let db = database().await;
    let cases = [
        (
            "/v1/get-prices?startTime=soon",
            StatusCode::BAD_REQUEST,
            "startTime",
        ),
        (
            "/v1/get-prices?startTime=1795773600&endTime=1795773600",
            StatusCode::BAD_REQUEST,
            "endTime",
        ),
        ("/v1/get-prices?limit=0", StatusCode::BAD_REQUEST, "limit"),
        (
            "/v1/get-prices?limit=10001",
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "/v1/get-prices?ticker=AM%20ZN",
            StatusCode::BAD_REQUEST,
            "ticker",
        ),
        (
            "/v1/get-prices?cursor=nonsense",
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        (
            "/v1/get-prices?since=1",
            StatusCode::BAD_REQUEST,
            "ticker, startTime, endTime, limit, cursor",
        ),
        (
            "/v1/nothing-here",
            StatusCode::NOT_FOUND,
            "/v1/nothing-here",
        ),
    ];
    for (uri, expected_status, needle) in cases {
        let (status, content_type, body) = get(&db.pool, uri).await;
        assert_eq!(status, expected_status, "{uri}: {body}");
        assert_eq!(content_type, "application/problem+json", "{uri}");
        assert_eq!(body["status"], expected_status.as_u16(), "{uri}");
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.contains(needle), "{uri}: {detail}");
    }
    let (status, content_type, _) = request(&db.pool, "POST", "/v1/get-prices").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(content_type, "application/problem+json");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let db = database().await;
    let (status, _, doc) = get(&db.pool, "/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().expect("version").starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths: Vec<&String> = doc["paths"].as_object().expect("paths").keys().collect();
    for route in ["/v1/get-prices", "/healthz", "/readyz", "/v1/openapi.json"] {
        assert!(
            paths.iter().any(|p| p.as_str() == route),
            "{route} missing from {paths:?}"
        );
        let (status, _, _) = get(&db.pool, route).await;
        assert_eq!(status, StatusCode::OK, "{route} is documented and served");
    }
    // Metrics are served on METRICS_ADDR (see the server tests), not here.
    assert!(!paths.iter().any(|p| p.as_str() == "/metrics"), "{paths:?}");
    let (status, content_type, _) = get(&db.pool, "/metrics").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
    let params: Vec<&str> = doc["paths"]["/v1/get-prices"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    // And `api_key`, which the access guard takes (and removes) before the parameters are checked.
    let mut documented = tickpipe_api::testing::ACCEPTED_PARAMETERS.to_vec();
    documented.push("api_key");
    assert_eq!(params, documented);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let db = database().await;
    let mut registry = Registry::default();
    let app = tickpipe_api::testing::app_with_metrics(
        db.pool.clone(),
        Duration::from_secs(2),
        &mut registry,
    );
    for uri in ["/v1/get-prices", "/v1/get-prices?limit=0", "/metrics"] {
        call(&app, "GET", uri).await;
    }
    let text = tickpipe_common::telemetry::render(&registry);
    assert!(
        text.contains(r#"api_http_requests_total{route="/v1/get-prices",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"api_http_requests_total{route="/v1/get-prices",status="400"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"api_http_requests_total{route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("api_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn the_reader_role_can_read_but_not_write() {
    let db = database().await;
    seed(&db.pool, &["AMZN"], 1).await;
    let role = tickpipe_testkit::unique_name("api");
    sqlx::query(&format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD 'reader' IN ROLE tickpipe_reader"
    ))
    .execute(&db.pool)
    .await
    .expect("create role");
    let url = db
        .url
        .replacen("postgres:postgres@", &format!("{role}:reader@"), 1);
    let settings = tickpipe_common::config::DatabaseSettings::direct(url, 2);
    let reader = tickpipe_common::db::read_only_pool(&settings).expect("pool");
    let (status, _, body) = get(&reader, "/v1/get-prices").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["prices"].as_array().expect("array").len(), 1);
    // A write on purpose, the one outside the store: the API's read-only session must refuse it.
    let write = sqlx::query("DELETE FROM window_prices")
        .execute(&reader)
        .await;
    assert!(write.is_err(), "the API's role must not write");
}

/// Issue 10: times PostgreSQL cannot store, typed or inside an edited cursor, are a 400 naming the
/// accepted range, never a 500; the edges of that range are stored and queried without error.
#[tokio::test]
async fn times_out_of_range_are_a_400_and_the_edges_of_the_range_work() {
    let db = database().await;
    seed(&db.pool, &["AMZN"], 3).await;
    let hex = |plain: &str| -> String { plain.bytes().map(|b| format!("{b:02x}")).collect() };
    let edited_cursor = hex("R|-300000000000000|AMZN");
    let cases = [
        "/v1/get-prices?startTime=-300000000000".to_owned(),
        "/v1/get-prices?endTime=-300000000000".to_owned(),
        "/v1/get-prices?startTime=-210866803201".to_owned(),
        "/v1/get-prices?endTime=300000000000".to_owned(),
        format!("/v1/get-prices?startTime=0&cursor={edited_cursor}"),
    ];
    for uri in &cases {
        let (status, content_type, body) = get(&db.pool, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(content_type, "application/problem+json", "{uri}");
        let detail = body["detail"].as_str().expect("detail");
        assert!(
            detail.contains("0000-01-01T00:00:00+23:59")
                && detail.contains("9999-12-31T23:59:59.999999999-23:59"),
            "{uri}: {detail}"
        );
    }
    // The edges reach PostgreSQL as parameters and come back as an ordinary result.
    let edge_cursor = hex("R|-62167305540000|AMZN");
    for uri in [
        "/v1/get-prices?startTime=-62167305540&endTime=253402387139".to_owned(),
        "/v1/get-prices?startTime=0000-01-01T00:00:00%2B23:59&endTime=9999-12-31T23:59:59.999999999-23:59"
            .to_owned(),
        format!("/v1/get-prices?startTime=-62167305540&cursor={edge_cursor}"),
        format!(
            "/v1/get-prices?endTime=253402387139&cursor={}",
            hex("R|253402387139999|ZZZZ")
        ),
    ] {
        let (status, _, body) = get(&db.pool, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    }
    let (_, _, all) = get(
        &db.pool,
        "/v1/get-prices?startTime=-62167305540&endTime=253402387139",
    )
    .await;
    assert_eq!(all["prices"].as_array().expect("array").len(), 3);
}

#[tokio::test]
async fn a_405_lists_the_allowed_methods_and_a_large_body_is_a_413() {
    let db = database().await;
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let answer = call(&app(&db.pool), method, "/v1/get-prices").await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(
            answer.headers.get("allow").and_then(|v| v.to_str().ok()),
            Some("GET, HEAD"),
            "{method}"
        );
    }
    let answer = send(
        &app(&db.pool),
        Request::get("/healthz")
            .header("content-length", "4096")
            .body(Body::from(vec![b'x'; 4096]))
            .expect("request"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.content_type, "application/problem+json");
}

/// Issue 10: the document states every parameter's constraints, with the patterns the handler is
/// tested against.
#[tokio::test]
async fn the_openapi_document_states_every_parameter_constraint() {
    let db = database().await;
    let (_, _, doc) = get(&db.pool, "/v1/openapi.json").await;
    let operation = &doc["paths"]["/v1/get-prices"]["get"];
    let param = |name: &str| -> Value {
        operation["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} documented"))
            .clone()
    };
    let limit = param("limit");
    assert_eq!(limit["schema"]["type"], "integer");
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 10_000);
    assert_eq!(limit["schema"]["default"], 1000);
    let ticker = param("ticker");
    assert_eq!(
        ticker["schema"]["pattern"].as_str(),
        Some(tickpipe_api::testing::patterns::TICKERS.as_str())
    );
    let cursor = param("cursor");
    assert_eq!(
        cursor["schema"]["pattern"].as_str(),
        Some(tickpipe_api::testing::patterns::CURSOR.as_str())
    );
    for name in ["startTime", "endTime"] {
        assert_time_forms(name, &param(name)["schema"]["anyOf"]);
    }
    // Every pattern compiles as a regular expression (JSON Schema patterns are not anchored, so
    // each one carries its own anchors).
    for name in ["ticker", "cursor"] {
        let pattern = param(name)["schema"]["pattern"]
            .as_str()
            .expect("pattern")
            .to_owned();
        assert!(
            pattern.starts_with('^') && pattern.ends_with('$'),
            "{pattern}"
        );
        regex::Regex::new(&pattern).expect("compiles");
    }
}

/// A time parameter is RFC 3339 with the published pattern, or Unix seconds in the accepted range.
fn assert_time_forms(name: &str, forms: &Value) {
    assert_eq!(forms[0]["type"], "string", "{name}");
    assert_eq!(forms[0]["format"], "date-time", "{name}");
    assert_eq!(
        forms[0]["pattern"].as_str(),
        Some(tickpipe_api::testing::patterns::RFC3339.as_str())
    );
    assert_eq!(forms[1]["type"], "integer", "{name}");
    assert_eq!(forms[1]["minimum"], tickpipe_api::testing::MIN_TIME_SECS);
    assert_eq!(forms[1]["maximum"], tickpipe_api::testing::MAX_TIME_SECS);
}

/// Issue 10: the problem responses are documented, per operation and for every path.
#[tokio::test]
async fn the_openapi_document_documents_the_problem_responses() {
    let db = database().await;
    let (_, _, doc) = get(&db.pool, "/v1/openapi.json").await;
    let operation = &doc["paths"]["/v1/get-prices"]["get"];
    for status in ["400", "503"] {
        assert!(
            operation["responses"][status]["content"]["application/problem+json"].is_object(),
            "{status}: {}",
            operation["responses"]
        );
    }
    assert!(
        doc["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/problem+json"]
            .is_object()
    );
    for name in ["NotFound", "MethodNotAllowed"] {
        assert!(
            doc["components"]["responses"][name]["content"]["application/problem+json"].is_object(),
            "{name}"
        );
    }
}
