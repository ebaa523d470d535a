//! Telling a misconfigured connection from an unreachable broker. librdkafka retries both the same
//! way, forever, and reports why only through its error callback: a wrong password, an untrusted
//! certificate, a host name the certificate does not name or a plaintext client at a TLS listener
//! would otherwise look like a broker that is down. a probe connection's context keeps the last such
//! report, and [`diagnose`] turns it into one line naming the setting to fix (never its value when
//! that is a secret). librdkafka delivers those reports only to a client whose main queue is
//! polled, which an admin client's is not: [`probe`] connects with a producer that polls it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, Producer};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::kafka::client_config;
use crate::kafka_settings::KafkaSettings;

/// Connects with `kafka`'s settings (asking for the cluster's metadata) and returns the diagnosis
/// of the configuration error that keeps the client out, if it finds one within about twice
/// `timeout`. Blocking.
pub fn probe(kafka: &KafkaSettings, timeout: Duration) -> Option<String> {
    let (answered, report) = connect_once(kafka, timeout);
    match report {
        // librdkafka says the same for an unknown CA and for a certificate that does not name the
        // host: the same connection without the host check tells them apart.
        Some((RDKafkaErrorCode::SSL, reason)) if reason.contains("verif") => {
            let mut relaxed = kafka.clone();
            relaxed.librdkafka_options.0.insert(
                "ssl.endpoint.identification.algorithm".to_owned(),
                "none".to_owned(),
            );
            match connect_once(&relaxed, timeout) {
                (_, Some((RDKafkaErrorCode::SSL, _))) => {
                    Some(diagnose(kafka, RDKafkaErrorCode::SSL, &reason))
                }
                _ => Some(host_mismatch(kafka)),
            }
        }
        Some((code, reason)) => Some(diagnose(kafka, code, &reason)),
        None if !answered && !uses_tls(kafka) && is_tls_listener(&kafka.brokers, timeout) => {
            Some(format!(
                "the broker at KAFKA_BROKERS={} speaks TLS, and this client plaintext: set \
                 KAFKA_SECURITY_PROTOCOL=SSL (or SASL_SSL with the KAFKA_SASL_* settings)",
                kafka.brokers
            ))
        }
        None => None,
    }
}

/// One connection attempt: whether the cluster answered, and the configuration error reported.
fn connect_once(
    kafka: &KafkaSettings,
    timeout: Duration,
) -> (bool, Option<(RDKafkaErrorCode, String)>) {
    let context = DiagnosingContext::default();
    let Ok(producer) = client_config(kafka, "tickpipe-probe")
        .create_with_context::<_, BaseProducer<DiagnosingContext>>(context.clone())
    else {
        return (false, None);
    };
    let deadline = Instant::now() + timeout;
    let answered = producer.client().fetch_metadata(None, timeout).is_ok();
    loop {
        // Serves the reports queued meanwhile to the context.
        producer.poll(Duration::from_millis(100));
        let last = context.last.lock().ok().and_then(|last| last.clone());
        if last.is_some() || answered || Instant::now() >= deadline {
            return (answered, last);
        }
    }
}

fn uses_tls(kafka: &KafkaSettings) -> bool {
    let protocol = kafka.security_protocol.as_deref().unwrap_or("PLAINTEXT");
    protocol.eq_ignore_ascii_case("SSL") || protocol.eq_ignore_ascii_case("SASL_SSL")
}

fn host_mismatch(kafka: &KafkaSettings) -> String {
    format!(
        "the broker's TLS certificate does not name the host in KAFKA_BROKERS={}: use the host \
         name the certificate was issued for",
        kafka.brokers
    )
}

/// Whether the first bootstrap broker answers a plaintext Kafka request (ApiVersions v0) by
/// closing the connection or with a TLS alert, as a TLS listener does; a plaintext listener always
/// answers it. `false` when it cannot be told (unreachable, silent).
fn is_tls_listener(brokers: &str, timeout: Duration) -> bool {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    let Some(address) = brokers
        .split(',')
        .next()
        .and_then(|broker| broker.trim().to_socket_addrs().ok())
        .and_then(|mut addresses| addresses.next())
    else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    // size, api key 18 (ApiVersions), version 0, correlation id 7, client id "probe".
    let request: [u8; 19] = [
        0, 0, 0, 15, 0, 18, 0, 0, 0, 0, 0, 7, 0, 5, b'p', b'r', b'o', b'b', b'e',
    ];
    if stream.set_read_timeout(Some(timeout)).is_err() || stream.write_all(&request).is_err() {
        return false;
    }
    let mut answer = [0u8; 8];
    match stream.read(&mut answer) {
        Ok(0) => true,
        Ok(_) => answer[0] == 0x15,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// A client context that logs librdkafka's errors as the default one does, and remembers the last
/// one that is about the connection's configuration.
#[derive(Debug, Clone, Default)]
struct DiagnosingContext {
    last: Arc<Mutex<Option<(RDKafkaErrorCode, String)>>>,
}

impl ClientContext for DiagnosingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, %reason, "librdkafka");
        let Some(code) = error.rdkafka_error_code() else {
            return;
        };
        if is_configuration(code, reason) {
            if let Ok(mut last) = self.last.lock() {
                *last = Some((code, reason.to_owned()));
            }
        }
    }
}

/// Delivery reports are not its business: the probe produces nothing.
impl rdkafka::producer::ProducerContext for DiagnosingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Whether an error reported by librdkafka is one that waiting will not heal.
fn is_configuration(code: RDKafkaErrorCode, reason: &str) -> bool {
    match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => true,
        RDKafkaErrorCode::SSL => true,
        // A TLS listener closes a plaintext client's connection at its first request; librdkafka
        // says so in this hint.
        RDKafkaErrorCode::BrokerTransportFailure => reason.contains("security.protocol"),
        _ => false,
    }
}

/// One line naming the settings to fix for a configuration error librdkafka reported.
pub fn diagnose(kafka: &KafkaSettings, code: RDKafkaErrorCode, reason: &str) -> String {
    let protocol = kafka.security_protocol.as_deref().unwrap_or("PLAINTEXT");
    match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => format!(
            "Kafka refused the SASL login of KAFKA_SASL_USERNAME={} with KAFKA_SASL_MECHANISM={}: \
             check KAFKA_SASL_PASSWORD and the mechanism the cluster enables",
            kafka.sasl_username.as_deref().unwrap_or("(unset)"),
            kafka.sasl_mechanism.as_deref().unwrap_or("GSSAPI"),
        ),
        RDKafkaErrorCode::SSL if is_host_mismatch(reason) => format!(
            "the broker's TLS certificate does not name the host in KAFKA_BROKERS={}: use the \
             host name the certificate was issued for",
            kafka.brokers
        ),
        RDKafkaErrorCode::SSL if reason.contains("verif") => format!(
            "the broker's TLS certificate is not signed by a CA this client trusts: set \
             KAFKA_SSL_CA_LOCATION to the cluster's CA file (now {})",
            kafka
                .ssl_ca_location
                .as_deref()
                .unwrap_or("the system's CA store")
        ),
        RDKafkaErrorCode::SSL => format!(
            "the TLS handshake with the broker failed (KAFKA_SECURITY_PROTOCOL={protocol}, \
             KAFKA_SSL_* settings): {reason}"
        ),
        _ => format!(
            "the broker closed the connection at once: KAFKA_SECURITY_PROTOCOL={protocol} does not \
             match its listener (SSL or SASL_SSL for a TLS listener)"
        ),
    }
}

fn is_host_mismatch(reason: &str) -> bool {
    let reason = reason.to_lowercase();
    [
        "hostname mismatch",
        "host name mismatch",
        "ip address mismatch",
    ]
    .iter()
    .any(|mismatch| reason.contains(mismatch))
}
