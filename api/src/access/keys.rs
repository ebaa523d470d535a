//! Optional API keys (`API_KEYS_FILE`): the file of their hashes, re-read while the API runs, and
//! where a request carries its key.
//!
//! **The file** has one key per line as the lowercase or uppercase hex SHA-256 of the key
//! (`printf %s "$KEY" | sha256sum`), optionally followed by a name for the operators (`… alice`);
//! blank lines and `#` comments are ignored. Only hashes are stored, so the file (or a backup of
//! it) does not give the keys away.
//!
//! **Rotation without restart**: [`KeyStore::refresh`] (every second, from the housekeeping task)
//! compares the file's modification time and size with the last read and re-reads it when either
//! changed. A file that cannot be read or has an invalid line keeps the last good set and is
//! warned about once per change; a file missing or invalid at startup stops the API instead.
//!
//! **A request's key**, in this order: `Authorization: Bearer <key>`, `X-API-Key: <key>`, or the
//! query parameter `api_key=<key>` for `EventSource`, which cannot send headers. A key in a URL
//! can be kept by proxies' logs and browser history: the API removes the parameter before any
//! handler sees it and its own request log shows it as `api_key=REDACTED` ([`redact_query`]); no
//! log line of the API contains a key.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use axum::http::{header, HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

/// The query parameter that carries a key.
pub(crate) const QUERY_PARAMETER: &str = "api_key";
/// The header that carries a key (besides `Authorization: Bearer`).
pub(crate) const KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// The valid keys: hex SHA-256 to the key's name (empty if none).
pub(crate) type KeySet = HashMap<String, Arc<str>>;

/// Why a keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeysError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: expected the hex SHA-256 of a key (64 hex digits), optionally followed by a name")]
    Invalid { path: PathBuf, line: usize },
}

/// The parsed lines of a keys file.
pub(crate) fn parse(path: &Path, text: &str) -> Result<KeySet, KeysError> {
    let mut keys = KeySet::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let (hash, name) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if hash.len() != 64 || !hash.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(KeysError::Invalid {
                path: path.to_owned(),
                line: index + 1,
            });
        }
        keys.insert(hash.to_ascii_lowercase(), Arc::from(name.trim()));
    }
    Ok(keys)
}

/// The hex SHA-256 of a presented key, as the file stores it.
pub(crate) fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What identifies a version of the file without reading it.
type Stamp = (Option<SystemTime>, u64);

/// The keys file and the last good set read from it.
#[derive(Debug)]
pub(crate) struct KeyStore {
    path: PathBuf,
    keys: RwLock<Arc<KeySet>>,
    /// The stamp of the last version read (good or not), so each change is read and warned about once.
    seen: Mutex<Option<Stamp>>,
}

impl KeyStore {
    /// Reads `path`; a missing, unreadable or invalid file is an error.
    pub(crate) fn open(path: &Path) -> Result<Self, KeysError> {
        let stamp = stamp(path).ok();
        let keys = read(path)?;
        if keys.is_empty() {
            tracing::warn!(path = %path.display(), "API_KEYS_FILE has no key: every request that needs one is refused");
        }
        Ok(Self {
            path: path.to_owned(),
            keys: RwLock::new(Arc::new(keys)),
            seen: Mutex::new(stamp),
        })
    }

    /// The name of the key whose hash is `hash`, if it is valid.
    pub(crate) fn name(&self, hash: &str) -> Option<Arc<str>> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.get(hash).cloned()
    }

    /// Re-reads the file if it changed since the last look (blocking: run it off the async
    /// threads). Keeps the last good set when the new version cannot be used.
    pub(crate) fn refresh(&self) {
        let stamp = stamp(&self.path).ok();
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == stamp {
                return;
            }
            *seen = stamp;
        }
        match read(&self.path) {
            Ok(keys) => {
                tracing::info!(path = %self.path.display(), keys = keys.len(), "API keys re-read");
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
            }
            Err(error) => {
                tracing::warn!(%error, "API_KEYS_FILE changed but cannot be used; keeping the keys read before");
            }
        }
    }
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.modified().ok(), metadata.len()))
}

fn read(path: &Path) -> Result<KeySet, KeysError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// The key a request presents: `Authorization: Bearer`, `X-API-Key`, then `api_key` in `query`.
pub(crate) fn presented(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let header = || {
        headers
            .get(&KEY_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.trim().to_owned())
    };
    let parameter = || {
        form_urlencoded::parse(query?.as_bytes())
            .find(|(name, _)| name == QUERY_PARAMETER)
            .map(|(_, value)| value.into_owned())
    };
    bearer
        .or_else(header)
        .or_else(parameter)
        .filter(|key| !key.is_empty())
}

/// `query` with every `api_key` pair rewritten by `replace` (`None`: removed). The pairs are
/// matched by their decoded name, as the parameter parsers decode them.
fn rewrite_query<'a>(query: &'a str, replace: Option<&str>) -> Cow<'a, str> {
    let is_key = |pair: &str| {
        form_urlencoded::parse(pair.as_bytes())
            .next()
            .is_some_and(|(name, _)| name == QUERY_PARAMETER)
    };
    if !query.split('&').any(is_key) {
        return Cow::Borrowed(query);
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter_map(|pair| match (is_key(pair), replace) {
            (false, _) => Some(pair),
            (true, Some(replacement)) => Some(replacement),
            (true, None) => None,
        })
        .collect();
    Cow::Owned(kept.join("&"))
}

/// `query` without its `api_key` pairs, for the handlers (whose parameter checks do not know it).
pub(crate) fn strip_query(query: &str) -> Cow<'_, str> {
    rewrite_query(query, None)
}

/// `query` with every `api_key` value replaced by `REDACTED`, for the request log.
pub(crate) fn redact_query(query: &str) -> Cow<'_, str> {
    rewrite_query(query, Some("api_key=REDACTED"))
}

#[cfg(test)]
mod tests;
