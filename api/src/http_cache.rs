//! HTTP caching of the JSON answers: a strong `ETag` on every successful JSON answer, `304 Not
//! Modified` on a matching `If-None-Match`, and a `Cache-Control` that says whether the answer can
//! ever change.
//!
//! - **The tag** is the first 128 bits of the SHA-256 of the uncompressed body, in hex and quoted:
//!   computed from the bytes themselves, so two instances of the API (or one restarted) give the
//!   same tag for the same answer, with nothing to keep in memory.
//! - **One tag per encoding.** A strong tag names exact bytes, and the compression layer outside
//!   this one changes them, so [`tag_encoding`] suffixes the tag with the coding
//!   (`"…-gzip"`, `"…-br"`, `"…-zstd"`). Revalidation goes through the encoding: a suffixed tag in
//!   `If-None-Match` matches its base, and the `304` carries back the tag the client sent (the one
//!   naming the bytes it holds).
//! - **Comparison** is the weak one RFC 9110 (13.1.2) prescribes for `If-None-Match`: `W/"x"`
//!   matches `"x"`, `*` matches any answer, and a list matches if one of its tags does.
//! - **`Cache-Control`**: `public, max-age=86400, immutable` when the handler marked the answer
//!   [`Immutable`] (a page of a past range that every partition has closed: it can never change),
//!   `no-cache` for every other successful answer (a cache may keep it but must revalidate, which
//!   the tag makes cheap), and `no-store` for errors, which carry no tag: RFC 9110 (13.2.1) has a
//!   server ignore preconditions when the answer would not be a 2xx, and a stored error would
//!   outlive its cause. A day rather than a year: retention drops windows after 7 days, and a cached
//!   page should not outlive by much the data it shows.

use std::fmt::Write as _;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Marks a successful answer that can never change (see the module's documentation); set by the
/// handler in the response's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Immutable;

/// `Cache-Control` of an answer that can never change.
pub(crate) const IMMUTABLE: &str = "public, max-age=86400, immutable";
/// `Cache-Control` of every other successful JSON answer.
pub(crate) const NO_CACHE: &str = "no-cache";
/// `Cache-Control` of an error.
pub(crate) const NO_STORE: &str = "no-store";
/// The content codings the compression layer may apply, each suffixing the tag.
const CODINGS: [&str; 3] = ["gzip", "br", "zstd"];
/// Bodies larger than this are not buffered to be tagged (none is: a 10,000-row page is ~2 MB).
const MAX_TAGGED_BYTES: usize = 64 << 20;

/// The strong tag of `body`: the first 128 bits of its SHA-256, hex, quoted.
pub(crate) fn entity_tag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in &digest[..16] {
        // Writing to a String cannot fail.
        let _ = write!(tag, "{byte:02x}");
    }
    tag.push('"');
    tag
}

/// What `If-None-Match` (every field line of it, `values`) says about the answer tagged `base`
/// (unsuffixed): `None` if nothing matches, else the tag the `304` carries back — the one the
/// client sent (strong form), which names the representation it holds, or `base` for `*`.
pub(crate) fn matching_tag<'a>(
    values: impl IntoIterator<Item = &'a str>,
    base: &str,
) -> Option<String> {
    let base_opaque = base.trim_matches('"');
    for value in values {
        let mut rest = value;
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                break;
            }
            if rest.starts_with('*') {
                return Some(base.to_owned());
            }
            let quoted = rest.strip_prefix("W/").unwrap_or(rest);
            let Some(inner) = quoted.strip_prefix('"') else {
                // Not a list of entity tags: nothing in it can match.
                break;
            };
            let Some(end) = inner.find('"') else { break };
            let opaque = &inner[..end];
            if same_content(opaque, base_opaque) {
                return Some(format!("\"{opaque}\""));
            }
            rest = &inner[end + 1..];
        }
    }
    None
}

/// Whether the opaque tag `opaque` names the content `base` names, in any content coding.
fn same_content(opaque: &str, base: &str) -> bool {
    match opaque.strip_prefix(base) {
        Some("") => true,
        Some(suffix) => suffix
            .strip_prefix('-')
            .is_some_and(|coding| CODINGS.contains(&coding)),
        None => false,
    }
}

/// Whether `headers` describe a JSON document (the API's answers and its problems).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json")
                || essence.eq_ignore_ascii_case("application/problem+json")
        })
}

/// The middleware inside the compression layer: tags successful JSON answers to GET and HEAD,
/// answers `304` on a matching `If-None-Match`, and sets `Cache-Control` on JSON answers.
pub(crate) async fn revalidate(request: Request, next: Next) -> Response {
    let conditional = matches!(*request.method(), Method::GET | Method::HEAD);
    let if_none_match: Vec<String> = request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_owned))
        .collect();
    let response = next.run(request).await;
    if !is_json(response.headers()) {
        return response;
    }
    if !response.status().is_success() {
        let mut response = response;
        response
            .headers_mut()
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static(NO_STORE));
        return response;
    }
    if !conditional || response.status() != StatusCode::OK {
        return response;
    }
    tag(response, &if_none_match).await
}

/// Tags a `200` JSON answer, or turns it into a `304` if `if_none_match` matches its tag.
async fn tag(response: Response, if_none_match: &[String]) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_TAGGED_BYTES).await {
        Ok(bytes) => bytes,
        // The body failed while being read: answer what a failed body would have, a server error.
        Err(error) => {
            return crate::problem::ApiError::Internal(format!(
                "reading an answer to tag it: {error}"
            ))
            .into_response()
        }
    };
    let base = entity_tag(&bytes);
    let cache_control = match parts.extensions.get::<Immutable>() {
        Some(Immutable) => IMMUTABLE,
        None => NO_CACHE,
    };
    parts.headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    let matched = matching_tag(if_none_match.iter().map(String::as_str), &base);
    let etag = matched.as_deref().unwrap_or(&base);
    if let Ok(value) = HeaderValue::from_str(etag) {
        parts.headers.insert(header::ETAG, value);
    }
    if matched.is_some() {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The middleware outside the compression layer (only when compression is on): suffixes the tag
/// of an encoded answer with its coding, and adds `Vary: Accept-Encoding` to every tagged answer
/// (a small answer, sent as is, may be compressed once it grows; a `304` carries what its `200`
/// would).
pub(crate) async fn tag_encoding(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let Some(etag) = headers.get(header::ETAG).and_then(|tag| tag.to_str().ok()) else {
        return response;
    };
    let coding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|coding| coding.to_str().ok())
        .filter(|coding| CODINGS.contains(coding));
    if let Some(coding) = coding {
        let suffixed = format!("\"{}-{coding}\"", etag.trim_matches('"'));
        if let Ok(value) = HeaderValue::from_str(&suffixed) {
            headers.insert(header::ETAG, value);
        }
    }
    let varies = headers.get_all(header::VARY).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|value| value.to_ascii_lowercase().contains("accept-encoding"))
    });
    if !varies {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

#[cfg(test)]
mod tests;
