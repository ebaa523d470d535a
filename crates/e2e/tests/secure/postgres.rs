//! What a user who gets a PostgreSQL URL wrong sees: one line naming the setting, within seconds,
//! without the URL's password.

use tickpipe_testkit::{replace_database, unique_name, TestDatabase};

use crate::support::{aggregator_failure, api_failure, with, Secure, Vars};

/// The aggregator's and the API's settings over `database_url` (Kafka is never reached).
fn settings(secure: &Secure, database_url: &str) -> Vars {
    with(
        &secure.kafka(&unique_name("secure")),
        &[("DATABASE_URL", database_url)],
    )
}

/// `url` with its `sslmode` and `sslrootcert` replaced by `query`.
fn with_tls(url: &str, query: &str) -> String {
    let base = url.split_once('?').map_or(url, |(base, _)| base);
    format!("{base}?{query}")
}

fn assert_line(line: &str, setting: &str, detail: &str) {
    assert!(line.contains(setting), "expected {setting} in: {line}");
    assert!(line.contains(detail), "expected {detail:?} in: {line}");
    assert!(
        !line.contains(":postgres@"),
        "the URL's password in: {line}"
    );
}

#[tokio::test]
async fn plaintext_to_a_tls_only_server_names_sslmode() {
    let secure = Secure::from_env();
    let db = TestDatabase::create_at(&secure.database_url).await;
    let plaintext = with_tls(&db.url, "sslmode=disable");
    let vars = settings(&secure, &plaintext);
    let line = aggregator_failure("aggregator, sslmode=disable", &vars).await;
    assert_line(&line, "DATABASE_URL", "sslmode");
    let line = api_failure("API, sslmode=disable", &vars).await;
    assert_line(&line, "DATABASE_URL", "sslmode");
}

#[tokio::test]
async fn an_unknown_ca_names_sslrootcert() {
    let secure = Secure::from_env();
    let db = TestDatabase::create_at(&secure.database_url).await;
    let untrusted = with_tls(
        &db.url,
        &format!("sslmode=verify-full&sslrootcert={}", secure.other_ca),
    );
    let vars = settings(&secure, &untrusted);
    let line = aggregator_failure("aggregator, unknown CA", &vars).await;
    assert_line(&line, "DATABASE_URL", "sslrootcert");
    let line = api_failure("API, unknown CA", &vars).await;
    assert_line(&line, "DATABASE_URL", "sslrootcert");
}

#[tokio::test]
async fn a_wrong_password_is_named_without_it() {
    let secure = Secure::from_env();
    let db = TestDatabase::create_at(&secure.database_url).await;
    let wrong = db.url.replacen(":postgres@", ":not-the-password-7@", 1);
    let vars = settings(&secure, &wrong);
    let line = aggregator_failure("aggregator, wrong password", &vars).await;
    assert_line(&line, "DATABASE_URL", "password");
    assert!(!line.contains("not-the-password-7"), "{line}");
}

#[tokio::test]
async fn the_pooled_url_without_a_direct_one_names_database_direct_url() {
    let secure = Secure::from_env();
    let db = TestDatabase::create_at(&secure.database_url).await;
    let pooled = replace_database(&secure.pooled_url, &db.name);
    let vars = settings(&secure, &pooled);
    let line = aggregator_failure("aggregator, pooled URL only", &vars).await;
    assert_line(&line, "DATABASE_DIRECT_URL", "pooler");
    let line = api_failure("API, pooled URL only", &vars).await;
    assert_line(&line, "DATABASE_DIRECT_URL", "pooler");

    // A direct URL that is the pooler too is named as such.
    let both = with(&vars, &[("DATABASE_DIRECT_URL", &pooled)]);
    let line = aggregator_failure("aggregator, direct URL at the pooler", &both).await;
    assert_line(&line, "DATABASE_DIRECT_URL", "pooler");
}
