//! Cross-origin requests: `API_CORS_ORIGINS`, the origins whose pages may call the API from a
//! browser (a comma-separated list, or `*` for any), answered with tower-http's `CorsLayer`. Off by
//! default: without the setting no CORS header is sent and a preflight is a 405, as before.
//!
//! Only what the API has is allowed: the methods GET and HEAD (OPTIONS for the preflight), the
//! request headers a client of it sends (`If-None-Match` to revalidate, `Last-Event-ID` to resume a
//! stream, `X-Request-Id` to trace a request, `Authorization` or `X-API-Key` to send an API key),
//! and exposed the response headers a script needs to read (`ETag`, `Retry-After` of a 503 or 429,
//! `X-Request-Id`, `RateLimit`, `RateLimit-Policy`). No credentials mode (cookies): an API key is
//! an explicit header the page's script sets, which CORS allows without it, so `*` stays safe. Preflights are cached by the browser for 10 minutes.
//!
//! An origin is compared byte for byte with the browser's `Origin` header, which is
//! `scheme://host[:port]` in lower case without a default port or path, so a setting that could
//! never match one (a path, a trailing `/`, a default port, upper case) is refused at startup
//! rather than silently matching nothing.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method, Uri};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The origins allowed to call the API from a browser.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Origins {
    /// No CORS headers at all (the default).
    #[default]
    Off,
    /// `*`: any origin.
    Any,
    /// These origins, as browsers write them.
    List(Vec<HeaderValue>),
}

impl Origins {
    /// Parses the value of `API_CORS_ORIGINS`; the error says what is wrong with which origin.
    pub(crate) fn parse(setting: &str) -> Result<Self, String> {
        let setting = setting.trim();
        if setting.is_empty() {
            return Ok(Self::Off);
        }
        if setting == "*" {
            return Ok(Self::Any);
        }
        setting
            .split(',')
            .map(|origin| parse_origin(origin.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self::List)
    }

    /// The layer answering preflights and adding CORS headers; `None` when off.
    pub(crate) fn layer(&self) -> Option<CorsLayer> {
        let allow = match self {
            Self::Off => return None,
            Self::Any => AllowOrigin::any(),
            Self::List(origins) => AllowOrigin::list(origins.iter().cloned()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
                .allow_headers([
                    header::IF_NONE_MATCH,
                    HeaderName::from_static("last-event-id"),
                    crate::trace::REQUEST_ID,
                    header::AUTHORIZATION,
                    crate::access::keys::KEY_HEADER,
                ])
                .expose_headers([
                    header::ETAG,
                    header::RETRY_AFTER,
                    crate::trace::REQUEST_ID,
                    crate::access::RATELIMIT,
                    crate::access::RATELIMIT_POLICY,
                ])
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

/// One origin of the list, exactly as a browser would send it in `Origin`.
fn parse_origin(origin: &str) -> Result<HeaderValue, String> {
    let refuse = |why: &str| Err(format!("origin {origin:?} {why}"));
    if origin.is_empty() {
        return refuse("is empty (a stray comma?)");
    }
    if origin == "*" {
        return refuse("is `*`, which must be the whole setting");
    }
    let Ok(uri) = origin.parse::<Uri>() else {
        return refuse("is not a URL origin like https://app.example.com");
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return refuse("lacks a scheme or host; write it like https://app.example.com");
    };
    if scheme != "http" && scheme != "https" {
        return refuse("is not http or https");
    }
    if origin.len() != scheme.len() + 3 + authority.as_str().len() {
        return refuse("has a path or a trailing '/'; an origin is scheme://host[:port] only");
    }
    if authority.as_str().contains('@') {
        return refuse("has user information, which no origin has");
    }
    if origin.bytes().any(|byte| byte.is_ascii_uppercase()) {
        return refuse("has upper-case letters; browsers send origins in lower case");
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    if authority.port_u16() == Some(default_port) {
        return refuse("names its scheme's default port, which browsers leave out");
    }
    HeaderValue::from_str(origin).or_else(|_| refuse("is not a valid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_as_browsers_send_them() {
        assert_eq!(Origins::parse(""), Ok(Origins::Off));
        assert_eq!(Origins::parse("  "), Ok(Origins::Off));
        assert_eq!(Origins::parse("*"), Ok(Origins::Any));
        assert_eq!(
            Origins::parse("https://app.example.com, http://127.0.0.1:5173"),
            Ok(Origins::List(vec![
                HeaderValue::from_static("https://app.example.com"),
                HeaderValue::from_static("http://127.0.0.1:5173"),
            ]))
        );
        assert!(Origins::parse("http://[::1]:8000").is_ok());
    }

    #[test]
    fn origins_that_could_never_match_are_refused() {
        for bad in [
            "https://app.example.com/",
            "https://app.example.com/path",
            "app.example.com",
            "ftp://app.example.com",
            "https://App.example.com",
            "https://app.example.com:443",
            "http://app.example.com:80",
            "https://user@app.example.com",
            "https://a.example, *",
            "https://a.example,,https://b.example",
            "https://a.example?x=1",
            "null",
        ] {
            let error = Origins::parse(bad).expect_err(bad);
            assert!(error.contains("origin"), "{bad}: {error}");
        }
    }

    #[test]
    fn off_has_no_layer() {
        assert!(Origins::Off.layer().is_none());
        assert!(Origins::Any.layer().is_some());
    }
}
