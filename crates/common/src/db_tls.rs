//! Says once per pool whether its connections to PostgreSQL are encrypted. libpq's default
//! `sslmode=prefer` falls back to plaintext without a word; an operator who meant TLS learns it
//! from this line (and a warning names the setting that refuses plaintext).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sqlx::{Executor, PgConnection, Row};

use crate::config::DatabaseUrl;

/// Reports the TLS state of the first connection a pool opens, then stays silent.
#[derive(Debug, Clone)]
pub(crate) struct TlsReport {
    done: Arc<AtomicBool>,
    sslmode: String,
}

impl TlsReport {
    pub(crate) fn new(url: &DatabaseUrl) -> Self {
        Self {
            done: Arc::new(AtomicBool::new(false)),
            sslmode: sslmode(url.expose()).unwrap_or("prefer").to_owned(),
        }
    }

    /// Logs the state of `connection` if no connection of this pool has been reported yet. A
    /// failing query is not the connection's fault (e.g. a pooler that hides `pg_stat_ssl`): the
    /// connection is kept and the next one tries again.
    pub(crate) async fn once(&self, connection: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.done.load(Ordering::Relaxed) {
            return Ok(());
        }
        // A query without arguments goes as one simple-protocol message, whatever sits between
        // here and the server.
        let query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        let Ok(row) = connection.fetch_optional(query).await else {
            return Ok(());
        };
        let ssl: Option<bool> = row.and_then(|row| row.try_get(0).ok());
        if self.done.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let sslmode = &self.sslmode;
        match ssl {
            Some(true) => tracing::info!(%sslmode, "connected to PostgreSQL over TLS"),
            _ if sslmode == "disable" => {
                tracing::info!(%sslmode, "connected to PostgreSQL without TLS")
            }
            _ => tracing::warn!(
                %sslmode,
                "connected to PostgreSQL WITHOUT TLS: the server offered none; set sslmode=require \
                 (or verify-full with sslrootcert=<CA file>) in DATABASE_URL to refuse plaintext"
            ),
        }
        Ok(())
    }
}

/// The `sslmode` query parameter of a `postgres://` URL, if any.
fn sslmode(url: &str) -> Option<&str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("sslmode="))
}

#[cfg(test)]
mod tests {
    use super::sslmode;

    #[test]
    fn sslmode_is_read_from_the_query() {
        assert_eq!(
            sslmode("postgres://u:p@h/db?sslmode=require"),
            Some("require")
        );
        assert_eq!(
            sslmode("postgres://u:p@h/db?application_name=x&sslmode=verify-full&sslrootcert=/ca"),
            Some("verify-full")
        );
        assert_eq!(sslmode("postgres://u:p@h/db"), None);
    }
}
