//! Errors as RFC 9457 `application/problem+json` documents that render themselves.
//!
//! One type for every failure of every endpoint, the stream's refusals (410, a 503 with
//! `Retry-After`) included, so each renders the same way and reaches the request log the same way.
//! The `detail` of a 400 names the parameter and the accepted form. A 500 never carries internals:
//! the client gets a generic sentence, and the error itself rides along in the response's
//! extensions, where [`crate::trace`]'s middleware logs the cause (rendering has no side effects).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The `Allow` header of a 405: every resource answers these methods and no others.
const ALLOWED_METHODS: &str = "GET, HEAD";
/// The `WWW-Authenticate` of a 401 (keys are also taken from `X-API-Key` and `api_key`).
const WWW_AUTHENTICATE: &str = "Bearer realm=\"tickpipe\"";
/// What a client that gets a 503 for the stream limit is told to wait, in seconds (`Retry-After`).
const RETRY_AFTER_SECS: u32 = 5;

/// The problem document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Problem {
    /// Always `about:blank`: the status code says what kind of problem it is.
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) title: String,
    pub(crate) status: u16,
    pub(crate) detail: String,
}

/// Everything a request can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no such resource: {0}")]
    NotFound(String),
    /// The id a stream should resume from is unknown to the change log (pruned, or never in it);
    /// the detail says which and what to do.
    #[error("{0}")]
    Gone(String),
    /// `API_MAX_STREAMS` streams are open: a 503 with `Retry-After`.
    #[error("API_MAX_STREAMS ({max_streams}) streams are open")]
    StreamsBusy { max_streams: usize },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `API_KEYS_FILE` is set and the request has no valid key: a 401 with `WWW-Authenticate`.
    /// The detail says which; it never contains the key.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// The client's bucket cannot pay the request's `cost` now: a 429 with `Retry-After`.
    #[error("rate limited: a request of cost {cost} fits in {retry_after} s")]
    RateLimited { retry_after: u64, cost: u32 },
    #[error("request body of {declared} bytes exceeds the limit of {limit}")]
    PayloadTooLarge { declared: u64, limit: usize },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(detail.into())
    }

    /// Classifies a database error: unreachable or timed out is 503, anything else 500.
    pub(crate) fn from_database(error: sqlx::Error) -> Self {
        if tickpipe_common::db::is_connection_error(&error) {
            Self::Unavailable(error.to_string())
        } else {
            Self::Internal(error.to_string())
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Gone(_) => StatusCode::GONE,
            Self::StreamsBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::BadRequest(detail) => detail.clone(),
            Self::NotFound(path) => format!("no resource at {path}; see /v1/openapi.json"),
            Self::Gone(detail) => detail.clone(),
            Self::StreamsBusy { max_streams } => format!(
                "{max_streams} streams are open, the most this server serves; retry after {RETRY_AFTER_SECS} seconds"
            ),
            Self::MethodNotAllowed => "this resource only answers GET (and HEAD)".to_owned(),
            Self::Unauthorized(detail) => (*detail).to_owned(),
            Self::RateLimited { retry_after, cost } => format!(
                "this request costs {cost} units and the client's rate limit has fewer left; retry after {retry_after} seconds (see the RateLimit and RateLimit-Policy fields)"
            ),
            Self::PayloadTooLarge { declared, limit } => format!(
                "the request body has {declared} bytes; at most {limit} are accepted, and no resource reads one"
            ),
            Self::Unavailable(_) => "the database is unavailable; retry shortly".to_owned(),
            Self::Internal(_) => "the request could not be completed".to_owned(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let problem = Problem {
            kind: "about:blank",
            title: title(status).to_owned(),
            status: status.as_u16(),
            detail: self.public_detail(),
        };
        let body = serde_json::to_vec(&problem)
            .expect("a Problem is strings and a number, which serde_json always serializes");
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        match &self {
            // RFC 9110 15.5.6: a 405 lists the methods the resource supports. Every route is GET,
            // which axum also answers for HEAD.
            Self::MethodNotAllowed => {
                response.headers_mut().insert(
                    header::ALLOW,
                    header::HeaderValue::from_static(ALLOWED_METHODS),
                );
            }
            Self::StreamsBusy { .. } => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from(RETRY_AFTER_SECS),
                );
            }
            Self::RateLimited { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(*retry_after));
            }
            // RFC 9110 11.6.1: a 401 names the scheme it takes.
            Self::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(WWW_AUTHENTICATE),
                );
            }
            _ => {}
        }
        // For the logging middleware: the cause of a 5xx is logged there, not here.
        response.extensions_mut().insert(self);
        response
    }
}

/// The problem's `title`: the reason phrase of one of the statuses [`ApiError::status`] returns.
fn title(status: StatusCode) -> &'static str {
    status
        .canonical_reason()
        .expect("every status an ApiError answers with is a standard one with a reason phrase")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_titled_problem_and_carries_itself_for_the_log() {
        let errors = [
            ApiError::bad_request("limit"),
            ApiError::NotFound("/x".to_owned()),
            ApiError::Gone("since 7 is older than the changes kept".to_owned()),
            ApiError::StreamsBusy { max_streams: 2 },
            ApiError::MethodNotAllowed,
            ApiError::Unauthorized("no key"),
            ApiError::RateLimited {
                retry_after: 3,
                cost: 11,
            },
            ApiError::PayloadTooLarge {
                declared: 2,
                limit: 1,
            },
            ApiError::Unavailable("refused".to_owned()),
            ApiError::Internal("boom".to_owned()),
        ];
        for error in errors {
            let status = error.status();
            assert!(!title(status).is_empty());
            let response = error.clone().into_response();
            assert_eq!(response.status(), status);
            let carried = response
                .extensions()
                .get::<ApiError>()
                .map(ToString::to_string);
            assert_eq!(carried, Some(error.to_string()));
        }
        let busy = ApiError::StreamsBusy { max_streams: 2 }.into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "5");
        let limited = ApiError::RateLimited {
            retry_after: 3,
            cost: 11,
        }
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "3");
        let unauthorized = ApiError::Unauthorized("no key").into_response();
        assert_eq!(
            unauthorized.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"tickpipe\""
        );
    }
}
