//! Issue 25: the database path writes its pages straight from the rows (`page_json`), and the
//! bytes must be exactly those of the serde path it replaced (which the answers from memory and the
//! stream still use): every form, every interval, both orders, small pages followed by their
//! cursors, ticker filters, unknown opens and closes, and a boundary that makes some entries
//! complete. The reference is `tickpipe_api::testing::reference_page`, over the same database.

use axum::http::StatusCode;
use serde_json::Value;

use crate::bars::{sample_rows, seeded, DAY0, INTERVALS};
use crate::helpers::{app, fetch};

/// Follows up to `pages` pages of `first` (the same parameters and the previous page's cursor)
/// from the router and compares each with the reference.
async fn compare(app: &axum::Router, pool: &sqlx::PgPool, first: &str, pages: usize) -> usize {
    let mut uri = first.to_owned();
    let mut compared = 0;
    for _ in 0..pages {
        let answer = fetch(app, "GET", &uri, &[]).await;
        let text = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {text}");
        let reference = tickpipe_api::testing::reference_page(pool, &uri).await;
        assert_eq!(text, String::from_utf8_lossy(&reference), "{uri}");
        compared += 1;
        let page: Value = serde_json::from_slice(&answer.body).expect("json");
        let Some(cursor) = page["nextCursor"].as_str() else {
            break;
        };
        uri = format!("{first}&cursor={cursor}");
    }
    compared
}

#[tokio::test]
async fn pages_from_the_database_are_the_bytes_serde_writes() {
    let db = seeded(&sample_rows()).await;
    // Partition 0 (the only one) has closed everything before DAY0: earlier entries are complete.
    tickpipe_testkit::seed::close_before(&db.pool, 0, DAY0 * 1000).await;
    let app = app(&db.pool);
    let start = DAY0 - 3 * 3600;
    let mut uris = vec![
        "/v1/get-prices?limit=1000".to_owned(),
        "/v1/get-prices?limit=1".to_owned(),
        "/v1/get-prices?ticker=msft,OLD&sort=desc&limit=1".to_owned(),
        format!("/v1/get-prices?startTime={start}&limit=10000"),
        format!("/v1/get-prices?startTime={start}&endTime={DAY0}&limit=7&sort=desc"),
        format!("/v1/get-prices?ticker=OLD&startTime={start}&limit=13"),
        // Nothing in range: an empty page.
        "/v1/get-prices?startTime=2000-01-01T00:00:00Z&endTime=2000-01-02T00:00:00Z".to_owned(),
    ];
    for (interval, _) in INTERVALS {
        uris.push(format!("/v1/get-prices?interval={interval}"));
        uris.push(format!(
            "/v1/get-prices?interval={interval}&limit=1&sort=desc"
        ));
        for sort in ["asc", "desc"] {
            uris.push(format!(
                "/v1/get-prices?interval={interval}&startTime={start}&limit=5&sort={sort}"
            ));
        }
        uris.push(format!(
            "/v1/get-prices?interval={interval}&ticker=AAPL,OLD&startTime={start}&endTime={DAY0}&limit=1000"
        ));
    }
    let mut compared = 0;
    for uri in &uris {
        compared += compare(&app, &db.pool, uri, 4).await;
    }
    assert!(
        compared > uris.len(),
        "cursors were followed: {compared} pages"
    );
}
