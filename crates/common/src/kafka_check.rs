//! The startup check of the Kafka settings: librdkafka itself judges every property (it rejects an
//! unknown one only when a client is created, which would be minutes later behind a retry loop),
//! and the files the TLS settings name must be readable. Errors name the variable to fix and never
//! carry a secret's value (librdkafka's own message for a bad value quotes it).

use rdkafka::error::KafkaError;

use crate::config::ConfigError;
use crate::kafka::client_config;
use crate::kafka_settings::{is_secret_property, KafkaSettings};

/// Properties that name files librdkafka reads when a client is created.
const FILE_PROPERTIES: &[&str] = &[
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.crl.location",
    "ssl.keystore.location",
];

/// Checks every librdkafka property of `settings` without connecting anywhere.
pub fn check(settings: &KafkaSettings) -> Result<(), ConfigError> {
    let properties = settings.properties();
    for property in &properties {
        let is_file = FILE_PROPERTIES.contains(&property.name);
        // "probe" asks librdkafka to look in the system's usual places.
        if is_file && property.value != "probe" {
            if let Err(error) = std::fs::File::open(property.value) {
                return Err(ConfigError::new(
                    &property.variable,
                    format!("cannot read {}: {error}", property.value),
                ));
            }
        }
    }
    match client_config(settings, "tickpipe-check").create_native_config() {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(_, description, name, _value)) => {
            let variable = properties
                .iter()
                .find(|property| property.name == name)
                .map(|property| property.variable.clone())
                .unwrap_or_else(|| "KAFKA_BROKERS".to_owned());
            let message = if is_secret_property(&name) {
                format!("librdkafka refuses the value of {name}")
            } else {
                format!("librdkafka refuses {name}: {description}")
            };
            Err(ConfigError::new(&variable, message))
        }
        Err(other) => Err(ConfigError::new("KAFKA_BROKERS", other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Layers;
    use crate::kafka_settings::KafkaSettings;

    fn load(vars: &[(&str, &str)]) -> Result<KafkaSettings, crate::config::ConfigError> {
        let layers = Layers::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("layers");
        KafkaSettings::load(&layers)
    }

    #[test]
    fn an_unknown_property_names_its_variable() {
        let line = load(&[("KAFKA_LIBRDKAFKA_SOCKET_KEEPALIVE_ENABLED", "true")])
            .expect_err("unknown")
            .to_string();
        assert!(
            line.contains("KAFKA_LIBRDKAFKA_SOCKET_KEEPALIVE_ENABLED"),
            "{line}"
        );
        assert!(line.contains("socket.keepalive.enabled"), "{line}");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let line = load(&[("KAFKA_SECURITY_PROTOCOL", "SASL_TLS")])
            .expect_err("bad protocol")
            .to_string();
        assert!(line.contains("KAFKA_SECURITY_PROTOCOL"), "{line}");
    }

    #[test]
    fn a_missing_ca_file_names_its_variable() {
        let line = load(&[
            ("KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
        ])
        .expect_err("missing file")
        .to_string();
        assert!(line.contains("KAFKA_SSL_CA_LOCATION"), "{line}");
        assert!(line.contains("/nonexistent/ca.pem"), "{line}");
    }

    #[test]
    fn sasl_ssl_with_scram_is_accepted() {
        let settings = load(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "tickpipe"),
            ("KAFKA_SASL_PASSWORD", "hunter2"),
            ("KAFKA_LIBRDKAFKA_SOCKET_KEEPALIVE_ENABLE", "true"),
        ])
        .expect("valid");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("socket.keepalive.enable"), "{printed}");
    }

    #[test]
    fn the_toml_table_passes_through_and_the_environment_wins() {
        let dir = std::env::temp_dir().join(format!("tickpipe-kafka-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("tickpipe.toml");
        std::fs::write(
            &file,
            "[kafka.librdkafka_options]\n\"socket.keepalive.enable\" = true\n\
             \"statistics.interval.ms\" = 1000\n\"ssl.key.password\" = \"hunter2\"\n",
        )
        .expect("write");
        let path = file.to_string_lossy().to_string();
        let settings = load(&[
            ("TICKPIPE_CONFIG", &path),
            ("KAFKA_LIBRDKAFKA_STATISTICS_INTERVAL_MS", "2000"),
        ])
        .expect("valid");
        let options = &settings.librdkafka_options.0;
        assert_eq!(
            options.get("socket.keepalive.enable").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            options.get("statistics.interval.ms").map(String::as_str),
            Some("2000")
        );
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
