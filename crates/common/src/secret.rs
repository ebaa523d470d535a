//! Secrets: values that are never printed, and the `<VAR>_FILE` convention of Docker and Kubernetes
//! secrets, under which a secret comes from a mounted file instead of the environment (where it
//! would show in `docker inspect` and `/proc/<pid>/environ`).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::config::ConfigError;

/// Variables that may hold a secret and so can be read from the file named by `<VAR>_FILE`.
/// Every librdkafka passthrough (`KAFKA_LIBRDKAFKA_*`) may too: some of them are secrets
/// (`sasl.oauthbearer.client.secret`, `ssl.keystore.password`, ...).
pub const SECRET_VARS: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_DIRECT_URL",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_KEY_PASSWORD",
];

const PASSTHROUGH_PREFIX: &str = "KAFKA_LIBRDKAFKA_";

fn may_come_from_file(var: &str) -> bool {
    SECRET_VARS.contains(&var) || var.starts_with(PASSTHROUGH_PREFIX)
}

/// Replaces every `<VAR>_FILE` of a secret variable by `<VAR>` with the file's content, its trailing
/// line break dropped (editors and `echo` add one). Both set is an error: which one would win is a
/// guess the operator should not have to make. Messages name the variable and the path, never
/// the content.
pub fn resolve_files(vars: &mut HashMap<String, String>) -> Result<(), ConfigError> {
    let file_vars: Vec<String> = vars
        .keys()
        .filter(|name| name.strip_suffix("_FILE").is_some_and(may_come_from_file))
        .cloned()
        .collect();
    for file_var in file_vars {
        let base = file_var.trim_end_matches("_FILE").to_owned();
        let Some(path) = vars.remove(&file_var) else {
            continue;
        };
        if vars.contains_key(&base) {
            return Err(ConfigError::new(
                &file_var,
                format!("{base} is set too: set only one of them"),
            ));
        }
        let content = std::fs::read_to_string(&path).map_err(|error| {
            ConfigError::new(&file_var, format!("cannot read the file {path}: {error}"))
        })?;
        vars.insert(base, content.trim_end_matches(['\n', '\r']).to_owned());
    }
    Ok(())
}

/// A secret string whose `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: only for handing it to the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn secret_file(name: &str, content: &str) -> String {
        let dir = std::env::temp_dir().join(format!("tickpipe-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        path.to_string_lossy().to_string()
    }

    #[test]
    fn a_file_replaces_its_variable_without_the_trailing_newline() {
        let path = secret_file("password", "s3cret\n");
        let mut vars = vars(&[("KAFKA_SASL_PASSWORD_FILE", &path)]);
        resolve_files(&mut vars).expect("resolved");
        assert_eq!(
            vars.get("KAFKA_SASL_PASSWORD").map(String::as_str),
            Some("s3cret")
        );
        assert!(!vars.contains_key("KAFKA_SASL_PASSWORD_FILE"));
    }

    #[test]
    fn passthrough_properties_may_come_from_files_and_others_may_not() {
        let path = secret_file("client-secret", "abc\r\n");
        let mut vars = vars(&[
            (
                "KAFKA_LIBRDKAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE",
                &path,
            ),
            ("GENERATOR_RATE_FILE", &path),
        ]);
        resolve_files(&mut vars).expect("resolved");
        assert_eq!(
            vars.get("KAFKA_LIBRDKAFKA_SASL_OAUTHBEARER_CLIENT_SECRET")
                .map(String::as_str),
            Some("abc")
        );
        assert!(vars.contains_key("GENERATOR_RATE_FILE"));
    }

    #[test]
    fn both_set_or_an_unreadable_file_is_one_line_without_the_secret() {
        let path = secret_file("url", "postgres://u:hidden@db/x\n");
        let mut both = vars(&[
            ("DATABASE_URL_FILE", &path),
            ("DATABASE_URL", "postgres://u:other@db/x"),
        ]);
        let line = resolve_files(&mut both).expect_err("both").to_string();
        assert!(line.contains("DATABASE_URL_FILE"), "{line}");
        assert!(
            !line.contains("hidden") && !line.contains("other"),
            "{line}"
        );

        let mut missing = vars(&[("KAFKA_SSL_KEY_PASSWORD_FILE", "/nonexistent/key-password")]);
        let line = resolve_files(&mut missing)
            .expect_err("missing")
            .to_string();
        assert!(line.contains("KAFKA_SSL_KEY_PASSWORD_FILE"), "{line}");
        assert!(line.contains("/nonexistent/key-password"), "{line}");
    }

    #[test]
    fn a_secret_prints_as_stars() {
        let secret = Secret::new("s3cret");
        assert_eq!(secret.to_string(), "***");
        assert_eq!(format!("{secret:?}"), "\"***\"");
        assert_eq!(secret.expose(), "s3cret");
    }
}
