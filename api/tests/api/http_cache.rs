//! Compression, `ETag`/`304` and `Cache-Control` of `/v1/get-prices`, through the real router
//! against a real PostgreSQL.

use std::io::Read;

use axum::http::StatusCode;
use axum::Router;
use sqlx::PgPool;
use tickpipe_common::config::Layers;
use tickpipe_common::service::ServiceSettings;
use tickpipe_testkit::seed::{self, Totals};

use crate::helpers::{app, database, fetch, logs};

/// 2026-11-27T10:00:00Z.
const T0: i64 = 1_795_773_600;
/// Windows seeded per ticker.
const WINDOWS: i64 = 30;
/// The `complete` boundary the seeding partition stores: the first 20 windows are final.
const BOUNDARY: i64 = T0 + 20 * 30;
const TICKERS: [&str; 3] = ["AAPL", "AMZN", "MSFT"];

fn row(ticker: &str, start: i64, n: i64) -> tickpipe_store::WindowRow {
    let totals = Totals::new(1000 + n, 4, 200 + n, 300 + n).open_close(210 + n, 290 + n);
    seed::window(ticker, (start * 1000, (start + 30) * 1000), totals)
}

/// Seeds [`WINDOWS`] windows per ticker from [`T0`], by a partition that has closed every window
/// ending at or before [`BOUNDARY`]; returns the partition, to write more through it.
async fn seed(pool: &PgPool) -> seed::Partition {
    let rows = TICKERS.iter().enumerate().flat_map(|(t, ticker)| {
        (0..WINDOWS).map(move |w| row(ticker, T0 + w * 30, w + 100 * t as i64))
    });
    seed::write(pool, 0, BOUNDARY * 1000, rows).await
}

/// The application as the binary builds it with `vars` set.
fn app_with(pool: &PgPool, vars: &[(&str, &str)]) -> Router {
    logs();
    // Without rate limits (these tests send many requests from one client), unless `vars` say.
    let vars = [("API_RATE_LIMIT_RPS", "0")].iter().chain(vars);
    let layers =
        Layers::from_vars(vars.map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).expect("layers");
    let settings = tickpipe_api::settings::Settings::load(&layers).expect("settings");
    tickpipe_api::testing::app_with_settings(pool.clone(), &settings.api).expect("app")
}

fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        "zstd" => out = zstd::stream::decode_all(bytes).expect("zstd"),
        other => panic!("unexpected coding {other}"),
    }
    out
}

/// Every window of the 30 seeded: 90 entries, about 20 KB.
fn whole_range() -> String {
    format!(
        "/v1/get-prices?startTime={T0}&endTime={}",
        T0 + WINDOWS * 30
    )
}

#[tokio::test]
async fn each_encoding_is_negotiated_and_decodes_to_the_identity_body_byte_for_byte() {
    let db = database().await;
    seed(&db.pool).await;
    let app = app(&db.pool);
    let uri = whole_range();
    let identity = fetch(&app, "GET", &uri, &[]).await;
    assert_eq!(identity.status, StatusCode::OK);
    assert_eq!(identity.header("content-encoding"), None);
    assert!(identity.body.len() > 10_000, "{}", identity.body.len());
    let base = identity.header("etag").expect("etag").to_owned();
    assert!(
        regex::Regex::new("^\"[0-9a-f]{32}\"$")
            .expect("regex")
            .is_match(&base),
        "{base}"
    );
    assert_eq!(identity.header("vary"), Some("accept-encoding"));
    for coding in ["gzip", "br", "zstd"] {
        let encoded = fetch(&app, "GET", &uri, &[("accept-encoding", coding)]).await;
        assert_eq!(encoded.status, StatusCode::OK);
        assert_eq!(encoded.header("content-encoding"), Some(coding));
        assert_eq!(encoded.header("vary"), Some("accept-encoding"));
        assert!(encoded.body.len() * 4 < identity.body.len(), "{coding}");
        assert_eq!(decode(coding, &encoded.body), identity.body, "{coding}");
        let tag = format!("\"{}-{coding}\"", base.trim_matches('"'));
        assert_eq!(encoded.header("etag"), Some(tag.as_str()));
    }
    // The client's preference decides among those it accepts.
    let preferred = fetch(
        &app,
        "GET",
        &uri,
        &[("accept-encoding", "gzip;q=0.5, zstd;q=0.9, br;q=0.1")],
    )
    .await;
    assert_eq!(preferred.header("content-encoding"), Some("zstd"));
    let refused = fetch(&app, "GET", &uri, &[("accept-encoding", "deflate")]).await;
    assert_eq!(refused.header("content-encoding"), None);
    assert_eq!(refused.body, identity.body);
}

#[tokio::test]
async fn small_answers_problems_and_a_level_of_zero_are_not_compressed() {
    let db = database().await;
    seed(&db.pool).await;
    let gzip = [("accept-encoding", "gzip, br, zstd")];
    let app = app(&db.pool);
    let small = fetch(&app, "GET", "/v1/get-prices?ticker=AMZN", &gzip).await;
    assert_eq!(small.status, StatusCode::OK);
    assert!(small.body.len() < 1024, "{}", small.body.len());
    assert_eq!(small.header("content-encoding"), None);
    assert!(small.header("etag").is_some());
    assert_eq!(small.header("vary"), Some("accept-encoding"));
    let problem = fetch(&app, "GET", "/v1/get-prices?limit=0", &gzip).await;
    assert_eq!(problem.status, StatusCode::BAD_REQUEST);
    assert_eq!(problem.header("content-encoding"), None);
    let off = app_with(&db.pool, &[("API_COMPRESSION_LEVEL", "0")]);
    let large = fetch(&off, "GET", &whole_range(), &gzip).await;
    assert_eq!(large.status, StatusCode::OK);
    assert_eq!(large.header("content-encoding"), None);
    assert_eq!(large.header("vary"), None);
    let tag = large.header("etag").expect("etag");
    assert!(!tag.contains('-'), "{tag}");
    let best = app_with(&db.pool, &[("API_COMPRESSION_LEVEL", "9")]);
    let encoded = fetch(&best, "GET", &whole_range(), &[("accept-encoding", "gzip")]).await;
    assert_eq!(encoded.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &encoded.body), large.body);
}

#[tokio::test]
async fn the_tag_is_stable_changes_with_the_data_and_if_none_match_answers_304() {
    let db = database().await;
    let mut partition = seed(&db.pool).await;
    let app = app(&db.pool);
    let uri = whole_range();
    let first = fetch(&app, "GET", &uri, &[]).await;
    let again = fetch(&app, "GET", &uri, &[]).await;
    let tag = first.header("etag").expect("etag").to_owned();
    assert_eq!(again.header("etag"), Some(tag.as_str()));
    assert_eq!(again.body, first.body);
    let head = fetch(&app, "HEAD", &uri, &[]).await;
    assert_eq!(head.header("etag"), Some(tag.as_str()), "HEAD tags as GET");
    assert!(head.body.is_empty());

    let opaque = tag.trim_matches('"');
    for (sent, echoed) in [
        (tag.clone(), tag.clone()),
        (format!("W/{tag}"), tag.clone()),
        (format!("\"nope\", W/\"x\", {tag}"), tag.clone()),
        ("*".to_owned(), tag.clone()),
        (format!("\"{opaque}-gzip\""), format!("\"{opaque}-gzip\"")),
        (format!("W/\"{opaque}-zstd\""), format!("\"{opaque}-zstd\"")),
    ] {
        for accept in ["identity", "gzip", "br"] {
            let headers = [
                ("if-none-match", sent.as_str()),
                ("accept-encoding", accept),
            ];
            let answer = fetch(&app, "GET", &uri, &headers).await;
            assert_eq!(answer.status, StatusCode::NOT_MODIFIED, "{sent} {accept}");
            assert!(answer.body.is_empty(), "{sent}");
            assert_eq!(answer.header("etag"), Some(echoed.as_str()), "{sent}");
            assert_eq!(answer.header("cache-control"), Some("no-cache"));
            assert_eq!(answer.header("vary"), Some("accept-encoding"));
            assert_eq!(answer.header("content-encoding"), None);
        }
    }
    for stale in ["\"0123456789abcdef0123456789abcdef\"", "W/\"x\", \"y\""] {
        let answer = fetch(&app, "GET", &uri, &[("if-none-match", stale)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{stale}");
        assert_eq!(answer.body, first.body);
    }

    // A window of the range changes: a new tag, and the old one no longer matches.
    partition
        .commit(BOUNDARY * 1000, vec![row("AMZN", T0 + 870, 7)])
        .await;
    let changed = fetch(&app, "GET", &uri, &[("if-none-match", tag.as_str())]).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_ne!(changed.header("etag"), Some(tag.as_str()));
    assert_ne!(changed.body, first.body);
}

/// `Cache-Control` of `uri`.
async fn cache_control(app: &Router, uri: &str) -> String {
    let answer = fetch(app, "GET", uri, &[]).await;
    assert!(answer.status.is_success() || answer.status.is_client_error());
    answer
        .header("cache-control")
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn only_a_range_every_partition_has_closed_is_immutable() {
    let db = database().await;
    seed(&db.pool).await;
    let app = app(&db.pool);
    let immutable = "public, max-age=86400, immutable";
    let range = |start: i64, end: i64| format!("/v1/get-prices?startTime={start}&endTime={end}");
    // Complete and closed: the windows starting before the boundary, and the 5-minute bars.
    assert_eq!(cache_control(&app, &range(T0, BOUNDARY)).await, immutable);
    assert_eq!(
        cache_control(&app, &range(T0 + 60, BOUNDARY - 1)).await,
        immutable
    );
    let bars = format!("{}&interval=5m", range(T0, BOUNDARY));
    assert_eq!(cache_control(&app, &bars).await, immutable);
    // A cursor into such a range is as final.
    let first = fetch(
        &app,
        "GET",
        &format!("{}&limit=5", range(T0, BOUNDARY)),
        &[],
    )
    .await;
    let body: serde_json::Value = serde_json::from_slice(&first.body).expect("json");
    let cursor = body["nextCursor"].as_str().expect("a next page");
    let next = format!("{}&limit=5&cursor={cursor}", range(T0, BOUNDARY));
    assert_eq!(cache_control(&app, &next).await, immutable);
    // An empty range long before the data is final too: nothing can be added to it.
    assert_eq!(cache_control(&app, &range(T0 - 3600, T0)).await, immutable);

    // A window reaching past the boundary (though none has entries there yet), the whole range,
    // ranges without an end, bars reaching past it, the latest prices: revalidate.
    for uri in [
        range(T0, BOUNDARY + 1),
        whole_range(),
        range(BOUNDARY + 3600, BOUNDARY + 7200),
        format!("/v1/get-prices?startTime={T0}"),
        format!("/v1/get-prices?endTime={BOUNDARY}"),
        format!("{}&interval=1h", range(T0, BOUNDARY)),
        "/v1/get-prices".to_owned(),
        "/v1/get-prices?ticker=AMZN".to_owned(),
        "/v1/get-prices?interval=1h".to_owned(),
    ] {
        assert_eq!(cache_control(&app, &uri).await, "no-cache", "{uri}");
    }
    // Errors are not stored and carry no tag.
    let problem = fetch(&app, "GET", "/v1/get-prices?limit=0", &[]).await;
    assert_eq!(problem.header("cache-control"), Some("no-store"));
    assert_eq!(problem.header("etag"), None);
    let missing = fetch(&app, "GET", "/nowhere", &[("if-none-match", "*")]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn the_openapi_document_describes_the_headers_and_the_304() {
    let db = database().await;
    let app = app(&db.pool);
    let answer = fetch(&app, "GET", "/v1/openapi.json", &[]).await;
    assert!(answer.header("etag").is_some());
    let document: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    let operation = &document["paths"]["/v1/get-prices"]["get"];
    let headers = &operation["responses"]["200"]["headers"];
    for name in ["ETag", "Cache-Control", "Content-Encoding", "Vary"] {
        assert!(headers[name].is_object(), "{name}: {headers}");
    }
    assert!(operation["responses"]["304"]["headers"]["ETag"].is_object());
    let parameters = operation["parameters"].as_array().expect("parameters");
    assert!(parameters
        .iter()
        .any(|p| p["name"] == "If-None-Match" && p["in"] == "header"));
    let description = document["info"]["description"].as_str().expect("text");
    assert!(description.contains("API_CORS_ORIGINS"), "{description}");
}
