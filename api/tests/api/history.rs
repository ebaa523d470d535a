//! Issue 20, history at any size: bars read from the stored rollups equal the windows' fold (the
//! bars tests check every interval against a reference), and a range of history that retention
//! dropped is refused with a 410 that says from when the interval is kept, not answered empty.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::Utc;
use tickpipe_store::history::{self, Retention};
use tickpipe_testkit::seed::{self, Totals};

use crate::helpers::{database, get};

const DAY: i64 = 86_400;

#[tokio::test]
async fn a_range_older_than_the_retention_of_its_interval_is_a_410_saying_so() {
    let db = database().await;
    let today = Utc::now().timestamp() / DAY * DAY;
    // One window an hour after midnight, 10 days ago and today.
    let rows = [10, 0].map(|days_ago| {
        let start_ms = (today - days_ago * DAY + 3600) * 1000;
        seed::window("AMZN", (start_ms, start_ms + 30_000), Totals::flat(2, 100))
    });
    seed::write(&db.pool, 0, (today + DAY) * 1000, rows).await;
    let policy = [Retention {
        table: "window_prices",
        keep: Some(Duration::from_secs(7 * DAY as u64)),
    }];
    history::apply_retention(&db.pool, &policy)
        .await
        .expect("retention");
    // Retention drops whole days: the one holding the old window goes, and history is gone up to
    // its end (the days after it held nothing).
    let gone_before = today - 9 * DAY;

    // Windows from before the boundary: refused, naming the boundary.
    let old = today - 10 * DAY;
    let (status, content_type, body) =
        get(&db.pool, &format!("/v1/get-prices?startTime={old}")).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(content_type, "application/problem+json");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains(&gone_before.to_string()), "{detail}");
    assert!(detail.contains("windows starting before"), "{detail}");
    assert!(detail.contains("the range asks for some"), "{detail}");
    // Wholly before it without a start: refused too. Descending, the same.
    let (status, _, _) = get(&db.pool, &format!("/v1/get-prices?endTime={}", gone_before)).await;
    assert_eq!(status, StatusCode::GONE);
    for uri in [
        format!("/v1/get-prices?startTime={old}&sort=desc"),
        format!("/v1/get-prices?endTime={gone_before}&sort=desc"),
    ] {
        let (status, _, body) = get(&db.pool, &uri).await;
        assert_eq!(status, StatusCode::GONE, "{uri}: {body}");
    }

    // From the boundary on, or open-ended, or ending after it: served, today's window only.
    for uri in [
        format!("/v1/get-prices?startTime={gone_before}"),
        format!("/v1/get-prices?endTime={}", today + DAY),
        format!("/v1/get-prices?endTime={}&sort=desc", today + DAY),
    ] {
        let (status, _, body) = get(&db.pool, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        let entries = body["prices"].as_array().expect("prices");
        assert_eq!(entries.len(), 1, "{uri}: {body}");
    }

    // The 1-minute bars are kept longer: the old one is still served, exact.
    let (status, _, body) = get(
        &db.pool,
        &format!("/v1/get-prices?interval=1m&startTime={old}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entries = body["prices"].as_array().expect("prices");
    assert_eq!(entries.len(), 2, "{body}");
    assert_eq!(entries[0]["samples"], 2);
    assert_eq!(entries[0]["averagePrice"], 100.0);
}
