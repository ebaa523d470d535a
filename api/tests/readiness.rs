//! Readiness and 503s follow the database: stopped, then started again. In a test binary of its
//! own, because it stops the PostgreSQL server that other tests use.

use std::time::Duration;

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

    tickpipe_testkit::services("stop-postgres");
    let down = tickpipe_testkit::eventually("readiness 503", Duration::from_secs(30), || async {
        let (code, _) = status(&app, "/readyz").await;
        (code == StatusCode::SERVICE_UNAVAILABLE).then_some(code)
    })
    .await;
    assert_eq!(down, StatusCode::SERVICE_UNAVAILABLE);
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
    tickpipe_testkit::eventually("readiness 200 again", Duration::from_secs(30), || async {
        (status(&app, "/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(status(&app, "/v1/get-prices").await.0, StatusCode::OK);
}
