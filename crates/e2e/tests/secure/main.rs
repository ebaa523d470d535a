//! The services against Kafka and PostgreSQL set up as managed services are: Kafka's only client
//! listener is SASL_SSL with SCRAM users, PostgreSQL accepts only TLS, PgBouncer pools in
//! transaction mode in front of it (`TICKPIPE_SECURE=1 scripts/services.sh up`, which the test
//! command runs). The whole pipeline over them must be exact, and each mistake users make must end
//! in one line naming the setting to fix, within seconds, without printing a secret.

mod kafka;
mod pipeline;
mod postgres;
mod support;
