//! What `sort` answers besides pages: the 400s (a bad value, a cursor of the other order), the
//! latest form in both orders, the caching headers of descending pages, the OpenAPI document.

use axum::http::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use tickpipe_testkit::seed::{self, Totals};

use super::{page, walk, Next};
use crate::helpers::{app, call, database, fetch};

/// 2026-11-27T10:00:00Z.
const T0: i64 = 1_795_773_600;
const TICKERS: [&str; 3] = ["AAPL", "AMZN", "MSFT"];
/// The seeding partition has closed every window starting before this: the first 20 are final.
const BOUNDARY: i64 = T0 + 20 * 30;

/// 30 windows per ticker from [`T0`], by a partition that has closed those before [`BOUNDARY`].
async fn seed(pool: &PgPool) {
    let rows = TICKERS.iter().zip(0_i64..).flat_map(|(ticker, t)| {
        (0..30).map(move |w| {
            let start_ms = (T0 + w * 30) * 1000;
            let totals = Totals::new(1000 + w + 100 * t, 4, 200, 300).open_close(210, 290);
            seed::window(ticker, (start_ms, start_ms + 30_000), totals)
        })
    });
    seed::write(pool, 0, BOUNDARY * 1000, rows).await;
}

#[tokio::test]
async fn a_bad_sort_or_a_cursor_of_the_other_order_is_a_400_saying_so() {
    let db = database().await;
    seed(&db.pool).await;
    let app = app(&db.pool);
    let range = format!("/v1/get-prices?startTime={T0}&limit=2");
    let invalid = |value: &str| {
        format!("sort {value:?} is not valid; use asc (oldest first, the default) or desc (newest first)")
    };
    let (_, desc_cursor) = page(&app, &format!("{range}&sort=desc")).await;
    let (_, asc_cursor) = page(&app, &range).await;
    let (desc_cursor, asc_cursor) = (desc_cursor.expect("more"), asc_cursor.expect("more"));
    let cases = [
        (format!("{range}&sort=up"), invalid("up")),
        (format!("{range}&sort="), invalid("")),
        (format!("{range}&sort=DESC"), invalid("DESC")),
        (
            "/v1/get-prices?sort=descending".to_owned(),
            invalid("descending"),
        ),
        (
            format!("{range}&sort=asc&sort=desc"),
            "query parameter \"sort\" is given more than once; give it once".to_owned(),
        ),
        (
            format!("{range}&sort=asc&cursor={desc_cursor}"),
            "cursor continues a sort=desc query, not sort=asc; give sort=desc or leave sort out"
                .to_owned(),
        ),
        (
            format!("{range}&sort=desc&cursor={asc_cursor}"),
            "cursor continues a sort=asc query, not sort=desc; give sort=asc or leave sort out"
                .to_owned(),
        ),
    ];
    for (uri, detail) in cases {
        let answer = call(&app, "GET", &uri).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(answer.content_type, "application/problem+json", "{uri}");
        assert_eq!(answer.body["status"], 400, "{uri}");
        assert_eq!(answer.body["detail"], detail, "{uri}");
    }
    // The same cursors continue their own order, with `sort` repeated or not.
    for uri in [
        format!("{range}&cursor={desc_cursor}"),
        format!("{range}&sort=desc&cursor={desc_cursor}"),
    ] {
        let (entries, _) = page(&app, &uri).await;
        assert_eq!(entries[0]["windowStart"], "2026-11-27T10:14:30Z", "{uri}");
        assert_eq!(entries[0]["ticker"], "AAPL", "{uri}");
    }
}

#[tokio::test]
async fn the_latest_prices_take_sort_as_the_order_of_their_tickers() {
    let db = database().await;
    seed(&db.pool).await;
    let app = app(&db.pool);
    for (query, width) in [("", 30), ("interval=1h", 3600)] {
        let base = format!("/v1/get-prices?{query}");
        let (asc, _) = page(&app, &base).await;
        let tickers: Vec<&str> = asc
            .iter()
            .map(|e| e["ticker"].as_str().expect("ticker"))
            .collect();
        assert_eq!(tickers, TICKERS, "{base}");
        assert_eq!(asc[0]["windowEnd"].as_str().map(str::len), Some(20));
        let bar_start = (T0 + 29 * 30) / width * width;
        let start = chrono::DateTime::from_timestamp(bar_start, 0).expect("time");
        assert_eq!(
            asc[0]["windowStart"],
            start.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        );
        assert_eq!(
            page(&app, &format!("{base}&sort=asc")).await.0,
            asc,
            "{base}"
        );
        let reversed: Vec<Value> = asc.iter().rev().cloned().collect();
        assert_eq!(
            page(&app, &format!("{base}&sort=desc")).await.0,
            reversed,
            "{base}"
        );
        // One ticker a page, both ways.
        for (sort, expected) in [("asc", &asc), ("desc", &reversed)] {
            for next in [Next::CursorAlone, Next::WithSort] {
                let (entries, pages) = walk(&app, &base, sort, 1, next).await;
                assert_eq!((&entries, pages), (expected, 3), "{base} {sort} {next:?}");
            }
        }
    }
    // A latest cursor continues only the latest form, whatever its order.
    let (_, cursor) = page(&app, "/v1/get-prices?sort=desc&limit=1").await;
    let uri = format!(
        "/v1/get-prices?startTime={T0}&cursor={}",
        cursor.expect("more")
    );
    let answer = call(&app, "GET", &uri).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.body["detail"],
        "cursor belongs to a different kind of query; repeat the parameters of the request that returned it"
    );
}

#[tokio::test]
async fn a_desc_page_of_a_closed_range_is_as_final_as_an_asc_one() {
    let db = database().await;
    seed(&db.pool).await;
    let app = app(&db.pool);
    let immutable = "public, max-age=86400, immutable";
    let closed = format!("/v1/get-prices?startTime={T0}&endTime={BOUNDARY}&limit=7");
    let asc = fetch(&app, "GET", &closed, &[]).await;
    let desc = fetch(&app, "GET", &format!("{closed}&sort=desc"), &[]).await;
    for answer in [&asc, &desc] {
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("cache-control"), Some(immutable));
    }
    let (asc_tag, desc_tag) = (
        asc.header("etag").expect("tag"),
        desc.header("etag").expect("tag"),
    );
    assert_ne!(asc_tag, desc_tag, "different bytes, different tags");
    // The descending page revalidates by its own tag, and its next page is final too.
    let again = fetch(
        &app,
        "GET",
        &format!("{closed}&sort=desc"),
        &[("if-none-match", desc_tag)],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.header("cache-control"), Some(immutable));
    let stale = fetch(
        &app,
        "GET",
        &format!("{closed}&sort=desc"),
        &[("if-none-match", asc_tag)],
    )
    .await;
    assert_eq!(
        stale.status,
        StatusCode::OK,
        "the ascending page's tag is not the descending one's"
    );
    let body: Value = serde_json::from_slice(&desc.body).expect("json");
    assert_eq!(body["prices"][0]["windowStart"], "2026-11-27T10:09:30Z");
    let cursor = body["nextCursor"].as_str().expect("more");
    let next = fetch(&app, "GET", &format!("{closed}&cursor={cursor}"), &[]).await;
    assert_eq!(next.status, StatusCode::OK);
    assert_eq!(next.header("cache-control"), Some(immutable));
    // Reaching past the boundary, or with an open end, descending pages revalidate as ascending ones.
    for uri in [
        format!(
            "/v1/get-prices?startTime={T0}&endTime={}&sort=desc",
            BOUNDARY + 30
        ),
        format!("/v1/get-prices?startTime={T0}&sort=desc&limit=3"),
        "/v1/get-prices?sort=desc".to_owned(),
    ] {
        let answer = fetch(&app, "GET", &uri, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        assert_eq!(answer.header("cache-control"), Some("no-cache"), "{uri}");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_sort_and_its_cursors_match_the_pattern() {
    let db = database().await;
    seed(&db.pool).await;
    let app = app(&db.pool);
    let (doc, _) = (call(&app, "GET", "/v1/openapi.json").await.body, ());
    let parameters = doc["paths"]["/v1/get-prices"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .clone();
    let param = |name: &str| -> Value {
        parameters
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} documented"))
            .clone()
    };
    let sort = param("sort");
    assert_eq!(sort["in"], "query");
    assert_eq!(sort["required"], false);
    assert_eq!(sort["schema"]["type"], "string");
    assert_eq!(sort["schema"]["enum"], serde_json::json!(["asc", "desc"]));
    assert_eq!(sort["schema"]["default"], "asc");
    let described = sort["description"].as_str().expect("description");
    assert!(
        described.contains("newest first") && described.contains("cursor"),
        "{described}"
    );
    let pattern = param("cursor")["schema"]["pattern"]
        .as_str()
        .expect("pattern")
        .to_owned();
    let pattern = regex::Regex::new(&pattern).expect("compiles");
    for uri in [
        format!("/v1/get-prices?startTime={T0}&limit=1&sort=desc"),
        format!("/v1/get-prices?startTime={T0}&limit=1&sort=desc&interval=1m"),
        format!("/v1/get-prices?startTime={T0}&limit=1&sort=desc&interval=15m"),
        "/v1/get-prices?limit=1&sort=desc".to_owned(),
        "/v1/get-prices?limit=1&sort=desc&interval=1h".to_owned(),
    ] {
        let cursor = page(&app, &uri).await.1.expect("more");
        assert!(pattern.is_match(&cursor), "{uri}: {cursor}");
    }
}
