//! Readiness and 503s follow the database: stopped, then started again. This test stops the
//! PostgreSQL server the other tests use, so it holds [`exclusive_postgres`] (the others wait for
//! it, and it for them) and keeps the stop window short (a few requests, then the server is started
//! again).

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;

use crate::helpers::{call, exclusive_postgres};

/// The status and content type of `GET uri`.
async fn status(app: &Router, uri: &str) -> (StatusCode, String) {
    let answer = call(app, "GET", uri).await;
    (answer.status, answer.content_type)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_queries_answer_503_while_the_database_is_down_and_recover() {
    let _alone = exclusive_postgres().await;
    let db = tickpipe_testkit::TestDatabase::create().await;
    let app = tickpipe_api::testing::app(db.pool.clone(), Duration::from_secs(2));
    assert_eq!(status(&app, "/readyz").await.0, StatusCode::OK);

    // An app that has never connected: with the database down its pool has nothing to reuse.
    let cold = tickpipe_api::testing::app(db.pool.clone(), Duration::from_secs(2));
    let fresh_pool = tickpipe_common::db::read_only_pool(&db.settings()).expect("pool");
    let never_connected = tickpipe_api::testing::app(fresh_pool, Duration::from_secs(2));
    assert_eq!(status(&cold, "/v1/get-prices").await.0, StatusCode::OK);

    tickpipe_testkit::services("stop-postgres");
    let down = tickpipe_testkit::eventually("readiness 503", Duration::from_secs(30), || async {
        let (code, _) = status(&app, "/readyz").await;
        (code == StatusCode::SERVICE_UNAVAILABLE).then_some(code)
    })
    .await;
    assert_eq!(down, StatusCode::SERVICE_UNAVAILABLE);

    let refused_at = [
        (&cold, "/readyz"),
        (&never_connected, "/v1/get-prices"),
        (&cold, "/v1/get-prices?ticker=AMZN"),
        (&never_connected, "/readyz"),
        (&app, "/v1/get-prices?startTime=0"),
    ];
    assert_503s_come_at_once(&refused_at).await;
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
    assert_every_app_recovers(&app, &[&cold, &never_connected]).await;
}

/// Issue 10: a refused connection is answered at once, not after the 2 s query timeout: the first
/// request of an app whose pooled connection just died, of one that never connected, and every
/// request after them (5 of each given request). Timings on a shared 2-core machine are noisy, so
/// the bound is loose (a quarter of the query timeout); the figures are printed.
async fn assert_503s_come_at_once(requests: &[(&Router, &str)]) {
    let mut timings = Vec::new();
    for &(app, uri) in requests {
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
}

/// After PostgreSQL is started again: `app` is ready (the time it took is printed) and answers
/// queries, and so does every one of `others`, including those that never saw the database up.
async fn assert_every_app_recovers(app: &Router, others: &[&Router]) {
    let started = Instant::now();
    tickpipe_testkit::eventually("readiness 200 again", Duration::from_secs(30), || async {
        (status(app, "/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    eprintln!(
        "readiness 200 again {:?} after start-postgres returned",
        started.elapsed()
    );
    assert_eq!(status(app, "/v1/get-prices").await.0, StatusCode::OK);
    // Every app recovers by itself, including the ones that never saw the database up.
    for &app in others {
        tickpipe_testkit::eventually("every app recovers", Duration::from_secs(30), || async {
            (status(app, "/readyz").await.0 == StatusCode::OK).then_some(())
        })
        .await;
        assert_eq!(status(app, "/v1/get-prices").await.0, StatusCode::OK);
    }
}
