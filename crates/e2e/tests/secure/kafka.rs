//! What a user who gets a Kafka setting wrong sees: one line naming the setting, within seconds,
//! without the password.

use tickpipe_testkit::{unique_name, TestDatabase};

use crate::support::{aggregator_failure, generator_failure, run_generator, vars, with, Secure};

fn assert_names(line: &str, setting: &str, secure: &Secure) {
    assert!(line.contains(setting), "expected {setting} in: {line}");
    assert!(!line.contains(&secure.password()), "a secret in: {line}");
}

#[tokio::test]
async fn a_wrong_password_names_the_password_setting() {
    let secure = Secure::from_env();
    let kafka = secure.kafka(&unique_name("secure"));
    let wrong = with(
        &kafka,
        &[
            ("KAFKA_SASL_PASSWORD_FILE", ""),
            ("KAFKA_SASL_PASSWORD", "not-the-password-42"),
        ],
    );
    let line = generator_failure("wrong password", &wrong).await;
    assert_names(&line, "KAFKA_SASL_PASSWORD", &secure);
    assert!(!line.contains("not-the-password-42"), "{line}");

    // The aggregator likewise (its first Kafka client is the dead-letter topic's admin).
    let db = TestDatabase::create_at(&secure.database_url).await;
    let mut aggregator = with(&wrong, &[("DATABASE_URL", &db.url)]);
    aggregator.extend(vars(&[("AGGREGATOR_GROUP_ID", "secure-group")]));
    let line = aggregator_failure("aggregator, wrong password", &aggregator).await;
    assert_names(&line, "KAFKA_SASL_PASSWORD", &secure);
    assert!(!line.contains("not-the-password-42"), "{line}");
}

#[tokio::test]
async fn an_unknown_ca_names_the_ca_setting() {
    let secure = Secure::from_env();
    let kafka = secure.kafka(&unique_name("secure"));
    let unknown = with(&kafka, &[("KAFKA_SSL_CA_LOCATION", &secure.other_ca)]);
    let line = generator_failure("unknown CA", &unknown).await;
    assert_names(&line, "KAFKA_SSL_CA_LOCATION", &secure);
}

#[tokio::test]
async fn a_host_the_certificate_does_not_name_is_a_host_name_mismatch() {
    let secure = Secure::from_env();
    let kafka = secure.kafka(&unique_name("secure"));
    // The certificate names "localhost" only.
    let port = secure.brokers.rsplit(':').next().expect("port");
    let by_address = with(&kafka, &[("KAFKA_BROKERS", &format!("127.0.0.1:{port}"))]);
    let line = generator_failure("host name mismatch", &by_address).await;
    assert_names(&line, "KAFKA_BROKERS", &secure);
    assert!(line.contains("certificate"), "{line}");
}

#[tokio::test]
async fn a_plaintext_client_at_the_tls_listener_names_the_protocol_setting() {
    let secure = Secure::from_env();
    let kafka = secure.kafka(&unique_name("secure"));
    let plaintext = with(
        &kafka,
        &[
            ("KAFKA_SECURITY_PROTOCOL", ""),
            ("KAFKA_SASL_MECHANISM", ""),
            ("KAFKA_SASL_USERNAME", ""),
            ("KAFKA_SASL_PASSWORD_FILE", ""),
            ("KAFKA_SSL_CA_LOCATION", ""),
        ],
    );
    let line = generator_failure("plaintext client", &plaintext).await;
    assert_names(&line, "KAFKA_SECURITY_PROTOCOL", &secure);
}

#[tokio::test]
async fn a_topic_the_user_may_not_create_or_see_is_one_line() {
    let secure = Secure::from_env();
    let topic = unique_name("secure");
    let limited = with(
        &secure.kafka(&topic),
        &[
            ("KAFKA_SASL_USERNAME", "limited"),
            ("KAFKA_SASL_PASSWORD_FILE", &secure.limited_password_file),
        ],
    );
    let line = generator_failure("may not create", &limited).await;
    assert!(line.contains("create"), "{line}");
    assert_names(&line, "KAFKA_CREATE_TOPICS", &secure);

    // Once the topic exists, the same user may not even see it.
    run_generator(&secure.kafka(&topic), 1)
        .await
        .expect("the tickpipe user creates the topic");
    let look_only = with(&limited, &[("KAFKA_CREATE_TOPICS", "false")]);
    let line = generator_failure("may not describe", &look_only).await;
    assert!(line.contains("describe"), "{line}");
    assert_names(&line, "KAFKA_SASL_USERNAME", &secure);
}

#[tokio::test]
async fn a_missing_topic_is_never_created_when_creation_is_off() {
    let secure = Secure::from_env();
    let kafka = secure.kafka(&unique_name("secure"));
    let no_create = with(&kafka, &[("KAFKA_CREATE_TOPICS", "false")]);
    let line = generator_failure("missing topic, generator", &no_create).await;
    assert_names(&line, "KAFKA_CREATE_TOPICS", &secure);
    assert!(line.contains("does not exist"), "{line}");

    let db = TestDatabase::create_at(&secure.database_url).await;
    let aggregator = with(&no_create, &[("DATABASE_URL", &db.url)]);
    let line = aggregator_failure("missing topic, aggregator", &aggregator).await;
    assert_names(&line, "KAFKA_CREATE_TOPICS", &secure);
    // And nothing created it meanwhile.
    let line = generator_failure("still missing", &no_create).await;
    assert!(line.contains("does not exist"), "{line}");
}
