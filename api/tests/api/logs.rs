//! Request ids and request logs: every response carries an `x-request-id`, every request is one
//! info line inside a span naming it, and a 5xx's cause is logged inside that span.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use sqlx::postgres::PgPoolOptions;

use crate::helpers::{app, call, database, logs, send, Answer};

async fn get_with_id(app: &Router, uri: &str, request_id: &str) -> Answer {
    let request = Request::get(uri)
        .header("x-request-id", request_id)
        .body(Body::empty())
        .expect("request");
    send(app, request).await
}

fn request_id(answer: &Answer) -> Option<&str> {
    answer
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let db = database().await;
    let app = app(&db.pool);
    let mut generated = Vec::new();
    for uri in [
        "/healthz",
        "/v1/get-prices",
        "/v1/get-prices?limit=0",
        "/nowhere",
    ] {
        let answer = call(&app, "GET", uri).await;
        let id = request_id(&answer).unwrap_or_else(|| panic!("{uri}: no x-request-id"));
        assert_eq!(id.len(), 36, "{uri}: a UUID, got {id:?}");
        generated.push(id.to_owned());
    }
    generated.sort();
    generated.dedup();
    assert_eq!(generated.len(), 4, "a new id per request: {generated:?}");
    let answer = call(&app, "POST", "/v1/get-prices").await;
    assert!(request_id(&answer).is_some(), "a 405 has one too");

    // A client's own id (from a proxy, say) is kept and returned.
    let answer = get_with_id(&app, "/v1/get-prices?limit=0", "client-42").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(request_id(&answer), Some("client-42"));
}

#[tokio::test]
async fn each_request_is_one_info_line_in_a_span_with_its_database_calls() {
    let db = database().await;
    let app = app(&db.pool);
    let logs = logs();
    let ok = get_with_id(&app, "/v1/get-prices?ticker=AMZN", "req-ok").await;
    assert_eq!(ok.status, StatusCode::OK);
    let bad = get_with_id(&app, "/v1/get-prices?limit=0", "req-400").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let info: Vec<String> = logs
        .lines_with("req-ok")
        .into_iter()
        .filter(|line| line.contains(" INFO "))
        .collect();
    assert_eq!(
        info.len(),
        1,
        "one info line per request: {:#?}",
        logs.lines()
    );
    for field in [
        "method=GET",
        "route=/v1/get-prices",
        "status=200",
        "latency_ms=",
        "answered",
    ] {
        assert!(info[0].contains(field), "{field} in {}", info[0]);
    }
    // The database call is inside the request's span, with its timings.
    let database = logs.lines_with("database call");
    assert!(
        database.iter().any(|line| line.contains("req-ok")
            && line.contains("prices query")
            && line.contains("acquire_ms=")
            && line.contains("query_ms=")),
        "{:#?}",
        logs.lines()
    );
    let rejected: Vec<String> = logs
        .lines_with("req-400")
        .into_iter()
        .filter(|line| line.contains(" INFO "))
        .collect();
    assert_eq!(rejected.len(), 1, "{:#?}", logs.lines());
    assert!(rejected[0].contains("status=400"), "{}", rejected[0]);
}

#[tokio::test]
async fn the_cause_of_a_503_is_logged_in_the_request_span_and_not_sent() {
    // A pool on a port nothing listens on: the server "refuses connections".
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let pool = PgPoolOptions::new()
        .connect_lazy(&format!("postgres://nobody:secret@127.0.0.1:{port}/none"))
        .expect("lazy pool");
    let app = app(&pool);
    let logs = logs();
    let answer = get_with_id(&app, "/readyz", "req-503").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.body["detail"],
        "the database is unavailable; retry shortly"
    );

    let lines = logs.lines_with("req-503");
    let cause = lines
        .iter()
        .find(|line| line.contains("answering 503") && line.contains("cause="))
        .unwrap_or_else(|| panic!("no cause logged: {:#?}", logs.lines()));
    assert!(cause.contains(" WARN "), "{cause}");
    assert!(cause.contains("refuses connections"), "{cause}");
    assert!(cause.contains("route=/readyz"), "{cause}");
    assert_eq!(
        lines.iter().filter(|line| line.contains(" INFO ")).count(),
        1,
        "{lines:#?}"
    );
}
