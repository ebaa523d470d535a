//! Readiness and 503s follow the database: stopped, then started again. In a test binary of its
//! own, because it stops the PostgreSQL server that other tests use; the one test keeps the stop
//! window short (a few requests, then the server is started again).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tickpipe_testkit::TestDatabase;
use tower::ServiceExt;

async fn status(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status(), content_type)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_queries_answer_503_while_the_database_is_down_and_recover() {
    let db = TestDatabase::create().await;
    let app = tickpipe_api::app(db.pool.clone(), Duration::from_secs(2));
    assert_eq!(status(&app, "/readyz").await.0, StatusCode::OK);

    // An app that has never connected: with the database down its pool has nothing to reuse.
    let cold = tickpipe_api::app(db.pool.clone(), Duration::from_secs(2));
    let fresh_pool = tickpipe_common::db::read_only_pool(&db.settings()).expect("pool");
    let never_connected = tickpipe_api::app(fresh_pool, Duration::from_secs(2));
    assert_eq!(status(&cold, "/v1/get-prices").await.0, StatusCode::OK);

    tickpipe_testkit::services("stop-postgres");
    let down = tickpipe_testkit::eventually("readiness 503", Duration::from_secs(30), || async {
        let (code, _) = status(&app, "/readyz").await;
        (code == StatusCode::SERVICE_UNAVAILABLE).then_some(code)
    })
    .await;
    assert_eq!(down, StatusCode::SERVICE_UNAVAILABLE);

    // Issue 10: a refused connection is answered at once, not after the 2 s query timeout: the
    // first request of an app whose pooled connection just died, of one that never connected, and
    // every request after them. Timings on a shared 2-core machine are noisy, so the bound is loose
    // (a quarter of the query timeout); the figures are printed.
    let mut timings = Vec::new();
    for (app, uri) in [
        (&cold, "/readyz"),
        (&never_connected, "/v1/get-prices"),
        (&cold, "/v1/get-prices?ticker=AMZN"),
        (&never_connected, "/readyz"),
        (&app, "/v1/get-prices?startTime=0"),
    ] {
        for _ in 0..5 {
            let started = Instant::now();
            let (code, content_type) = status(app, uri).await;
            let elapsed = started.elapsed();
            assert_eq!(
                (code, content_type.as_str()),
                (StatusCode::SERVICE_UNAVAILABLE, "application/problem+json"),
                "{uri}"
            );
            timings.push(elapsed);
        }
    }
    let slowest = timings.iter().max().copied().unwrap_or_default();
    eprintln!(
        "503 latency with PostgreSQL down: first {:?}, slowest {slowest:?}, all {timings:?}",
        timings[0]
    );
    assert!(
        slowest < Duration::from_millis(500),
        "a 503 took {slowest:?} with the database refusing connections: {timings:?}"
    );
    assert_eq!(
        status(&app, "/v1/get-prices").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "application/problem+json".to_owned()
        )
    );
    assert_eq!(
        status(&app, "/healthz").await.0,
        StatusCode::OK,
        "liveness does not depend on the database"
    );

    tickpipe_testkit::services("start-postgres");
    let started = Instant::now();
    tickpipe_testkit::eventually("readiness 200 again", Duration::from_secs(30), || async {
        (status(&app, "/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    eprintln!(
        "readiness 200 again {:?} after start-postgres returned",
        started.elapsed()
    );
    assert_eq!(status(&app, "/v1/get-prices").await.0, StatusCode::OK);
    // Every app recovers by itself, including the ones that never saw the database up.
    for app in [&cold, &never_connected] {
        tickpipe_testkit::eventually("every app recovers", Duration::from_secs(30), || async {
            (status(app, "/readyz").await.0 == StatusCode::OK).then_some(())
        })
        .await;
        assert_eq!(status(app, "/v1/get-prices").await.0, StatusCode::OK);
    }
}
