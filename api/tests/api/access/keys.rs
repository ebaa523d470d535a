//! `API_KEYS_FILE`: a request without a valid key is a 401; a key works in each of its three
//! places; key-holders have a bucket per key; a rotated file takes effect without a restart; no
//! key reaches a log line.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{app_with, get_from, metric, remaining, A, B, LATEST};
use crate::helpers::{database, logs};

/// A key unlikely to appear in any log by chance.
const ALICE: &str = "tp-alice-Zq7xK2mW9vR4";
const BOB: &str = "tp-bob-Lp3sN8cV1bX6";
const CAROL: &str = "tp-carol-Hf5gT0jY2kU9";

fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A keys file of the test's own with `keys` (key, name).
fn keys_file(test: &str, keys: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickpipe-keys-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("keys");
    write_keys(&path, keys);
    path
}

fn write_keys(path: &PathBuf, keys: &[(&str, &str)]) {
    let mut text = "# tickpipe API keys: sha256 hex, then a name\n".to_owned();
    for (key, name) in keys {
        text.push_str(&format!("{} {name}\n", hash(key)));
    }
    // Written aside and renamed, as an operator's tooling would: never half a file.
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).expect("write");
    std::fs::rename(&aside, path).expect("rename");
}

#[tokio::test]
async fn without_a_valid_key_it_is_a_401_and_each_way_of_passing_one_works() {
    let db = database().await;
    let file = keys_file("ways", &[(ALICE, "alice")]);
    let file = file.to_string_lossy().into_owned();
    let (app, registry) = app_with(&db.pool, &[("API_KEYS_FILE", &file)]);
    for headers in [
        vec![],
        vec![("x-api-key", "wrong")],
        vec![("authorization", "Bearer wrong")],
    ] {
        let refused = get_from(&app, A, LATEST, &headers).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(
            refused.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Bearer realm=\"tickpipe\"")
        );
        let problem: Value = serde_json::from_slice(&refused.body).expect("problem");
        assert_eq!(problem["status"], 401);
    }
    assert_eq!(metric(&registry, "api_unauthorized_total"), 3.0);
    let bearer = format!("Bearer {ALICE}");
    for (uri, headers) in [
        (LATEST.to_owned(), vec![("authorization", bearer.as_str())]),
        (LATEST.to_owned(), vec![("x-api-key", ALICE)]),
        (format!("{LATEST}?api_key={ALICE}"), vec![]),
        // The parameter is removed before the strict parameter checks, which still refuse others.
        (
            format!("{LATEST}?ticker=AMZN&api_key={ALICE}&limit=5"),
            vec![],
        ),
        (format!("/v1/stream-prices?api_key={ALICE}"), vec![]),
    ] {
        let answer = get_from(&app, A, &uri, &headers).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri} {headers:?}");
        assert!(answer.header("ratelimit").is_some(), "{uri}");
    }
    let unknown = get_from(&app, A, &format!("{LATEST}?api_key={ALICE}&bogus=1"), &[]).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    // Probes and the document need no key.
    for free in ["/healthz", "/v1/openapi.json"] {
        assert_eq!(
            get_from(&app, A, free, &[]).await.status,
            StatusCode::OK,
            "{free}"
        );
    }
    // The document says a key is required, and how.
    let document = get_from(&app, A, "/v1/openapi.json", &[]).await;
    let document: Value = serde_json::from_slice(&document.body).expect("json");
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearerKey"]["scheme"], "bearer");
    assert_eq!(schemes["headerKey"]["name"], "X-API-Key");
    assert_eq!(schemes["queryKey"]["in"], "query");
    let security = &document["paths"]["/v1/get-prices"]["get"]["security"];
    assert_eq!(security.as_array().map(Vec::len), Some(3), "{security}");
}

#[tokio::test]
async fn key_holders_are_limited_per_key_wherever_they_come_from() {
    let db = database().await;
    let file = keys_file("buckets", &[(ALICE, "alice"), (BOB, "bob")]);
    let file = file.to_string_lossy().into_owned();
    let (app, _) = app_with(
        &db.pool,
        &[
            ("API_KEYS_FILE", &file),
            ("API_RATE_LIMIT_RPS", "1"),
            ("API_RATE_LIMIT_BURST", "3"),
        ],
    );
    let alice = [("x-api-key", ALICE)];
    // Alice's bucket, from two addresses: one bucket.
    let first = get_from(&app, A, LATEST, &alice).await;
    assert_eq!(remaining(&first), 2);
    let second = get_from(&app, B, LATEST, &alice).await;
    assert!(remaining(&second) <= 2, "the same bucket from B");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get_from(&app, A, LATEST, &alice).await.status);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Bob, from the same address: a full bucket of his own.
    let bob = get_from(&app, A, LATEST, &[("x-api-key", BOB)]).await;
    assert_eq!(bob.status, StatusCode::OK);
    assert_eq!(remaining(&bob), 2);
}

#[tokio::test]
async fn a_rotated_file_takes_effect_without_a_restart_and_a_broken_one_keeps_the_keys() {
    let db = database().await;
    let path = keys_file("rotation", &[(ALICE, "alice")]);
    let file = path.to_string_lossy().into_owned();
    let (app, _) = app_with(&db.pool, &[("API_KEYS_FILE", &file)]);
    let status = |key: &'static str| {
        let app = app.clone();
        async move {
            get_from(&app, A, LATEST, &[("x-api-key", key)])
                .await
                .status
        }
    };
    assert_eq!(status(ALICE).await, StatusCode::OK);
    assert_eq!(status(CAROL).await, StatusCode::UNAUTHORIZED);
    // Carol replaces Alice: re-read within a few seconds (checked every second).
    write_keys(&path, &[(CAROL, "carol")]);
    tickpipe_testkit::eventually("carol's key accepted", Duration::from_secs(15), || async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        (status(CAROL).await == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(
        status(ALICE).await,
        StatusCode::UNAUTHORIZED,
        "alice's key is revoked"
    );
    // A broken file is warned about and ignored: Carol's key still works.
    std::fs::write(&path, "this is not a hash\n").expect("write");
    tickpipe_testkit::eventually(
        "the broken file warned about",
        Duration::from_secs(15),
        || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let warned = logs().lines().iter().any(|line| {
                line.contains("API_KEYS_FILE changed but cannot be used") && line.contains(&file)
            });
            warned.then_some(())
        },
    )
    .await;
    assert_eq!(status(CAROL).await, StatusCode::OK);
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[tokio::test]
async fn no_key_reaches_a_log_line() {
    let db = database().await;
    let file = keys_file("logs", &[(BOB, "bob")]);
    let file = file.to_string_lossy().into_owned();
    let (app, _) = app_with(&db.pool, &[("API_KEYS_FILE", &file)]);
    let bearer = format!("Bearer {BOB}");
    let wrong = "tp-wrong-Qa8dE3rT6yU1";
    for (uri, headers) in [
        (format!("{LATEST}?api_key={BOB}&ticker=AMZN"), vec![]),
        (format!("{LATEST}?api_key={wrong}"), vec![]),
        (LATEST.to_owned(), vec![("authorization", bearer.as_str())]),
        (LATEST.to_owned(), vec![("x-api-key", wrong)]),
        (format!("/v1/stream-prices?api_key={BOB}"), vec![]),
    ] {
        get_from(&app, A, &uri, &headers).await;
    }
    let lines = logs().lines();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("api_key=REDACTED&ticker=AMZN")),
        "the request log shows the parameter redacted"
    );
    for key in [BOB, wrong] {
        let leaked: Vec<&String> = lines.iter().filter(|line| line.contains(key)).collect();
        assert!(leaked.is_empty(), "{key} in the log: {leaked:?}");
    }
}

#[tokio::test]
async fn a_missing_keys_file_stops_the_api_at_startup() {
    let layers = tickpipe_common::config::Layers::from_vars([(
        "API_KEYS_FILE".to_owned(),
        "/nonexistent/tickpipe-keys".to_owned(),
    )])
    .expect("layers");
    let settings =
        <tickpipe_api::settings::Settings as tickpipe_common::service::ServiceSettings>::load(
            &layers,
        )
        .expect("settings");
    let db = database().await;
    let error = tickpipe_api::testing::app_with_settings(db.pool.clone(), &settings.api)
        .expect_err("no app without its keys");
    assert!(
        error.contains("API_KEYS_FILE") && error.contains("/nonexistent/tickpipe-keys"),
        "{error}"
    );
}
