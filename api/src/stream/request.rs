//! A `GET /v1/stream-prices` request as a validated [`StreamRequest`]: its parameters (`ticker`,
//! `since`) and the `Last-Event-ID` header, and which of the two resume points wins.
//!
//! Kept free of I/O, as `crate::query` is for the prices endpoint; the grammars themselves are the
//! shared ones of [`crate::params`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};

use crate::params::integer::parse_canonical;
use crate::params::{query_pairs, tickers};
use crate::problem::ApiError;

/// The query parameters the endpoint accepts.
pub(crate) const ACCEPTED_PARAMETERS: [&str; 2] = ["ticker", "since"];
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// A validated request: the tickers and where to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamRequest {
    /// Upper-cased, deduplicated, sorted; `None`: every ticker.
    pub(crate) tickers: Option<Vec<String>>,
    /// The id to resume after and where it came from (`Last-Event-ID` wins over `since`: a
    /// reconnecting EventSource sends the URL it was opened with and the last id it received).
    pub(crate) resume: Option<(i64, &'static str)>,
}

impl StreamRequest {
    /// Validates the query pairs and the `Last-Event-ID` values; every error names the parameter.
    pub(crate) fn parse(
        pairs: &[(String, String)],
        last_event_ids: &[&[u8]],
    ) -> Result<Self, String> {
        let mut tickers = None;
        let mut since = None;
        for (name, value) in pairs {
            let taken = match name.as_str() {
                "ticker" => tickers.replace(tickers::parse(value)?).is_some(),
                "since" => since.replace(parse_id("since", value)?).is_some(),
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?}; accepted parameters are {} (and the header Last-Event-ID)",
                        ACCEPTED_PARAMETERS.join(", ")
                    ))
                }
            };
            if taken {
                return Err(format!(
                    "query parameter {name:?} is given more than once; give it once"
                ));
            }
        }
        let last_event_id = match last_event_ids {
            [] => None,
            [value] => Some(parse_id(
                "Last-Event-ID",
                std::str::from_utf8(value).map_err(|_| id_error("Last-Event-ID", "(not UTF-8)"))?,
            )?),
            _ => {
                return Err("header Last-Event-ID is given more than once; give it once".to_owned())
            }
        };
        let resume = match (last_event_id, since) {
            (Some(id), _) => Some((id, "Last-Event-ID")),
            (None, Some(id)) => Some((id, "since")),
            (None, None) => None,
        };
        Ok(Self { tickers, resume })
    }
}

/// A change id: a canonical decimal integer from 0 to 2^63-1 (no sign, no leading zero), as the
/// stream writes them.
pub(crate) fn parse_id(name: &str, value: &str) -> Result<i64, String> {
    parse_canonical(value)
        .filter(|id| *id >= 0)
        .ok_or_else(|| id_error(name, &format!("{value:?}")))
}

fn id_error(name: &str, value: &str) -> String {
    format!(
        "{name} {value} is not a change id; use the id of the last event received, an integer from 0 to {}",
        i64::MAX
    )
}

impl<S: Send + Sync> FromRequestParts<S> for StreamRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let pairs = query_pairs(&parts.uri)?;
        let last_event_ids: Vec<&[u8]> = parts
            .headers
            .get_all(&LAST_EVENT_ID)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        Self::parse(&pairs, &last_event_ids).map_err(ApiError::BadRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::openapi::ID_PATTERN;

    #[test]
    fn ids_are_canonical_decimal_integers_up_to_i64_max_as_the_pattern_says() {
        let pattern = regex::Regex::new(&ID_PATTERN).expect("pattern");
        for good in ["0", "1", "42", "9223372036854775807"] {
            assert_eq!(parse_id("since", good).ok(), good.parse().ok(), "{good}");
            assert!(pattern.is_match(good), "{good}");
        }
        for bad in [
            "",
            "-1",
            "+1",
            "01",
            "1.0",
            " 1",
            "1e3",
            "9223372036854775808",
            "99999999999999999999",
            "x",
        ] {
            assert!(parse_id("since", bad).is_err(), "{bad}");
            assert!(!pattern.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn tickers_follow_the_prices_grammar_and_last_event_id_wins() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let request = StreamRequest::parse(
            &pairs(&[("ticker", "msft, amzn,AMZN"), ("since", "3")]),
            &[b"7"],
        )
        .expect("valid");
        assert_eq!(
            request,
            StreamRequest {
                tickers: Some(vec!["AMZN".to_owned(), "MSFT".to_owned()]),
                resume: Some((7, "Last-Event-ID")),
            }
        );
        for (value, error) in [("AM ZN", tickers::parse("AM ZN")), ("", tickers::parse(""))] {
            assert_eq!(
                StreamRequest::parse(&pairs(&[("ticker", value)]), &[]),
                Err(error.expect_err(value)),
                "{value:?}"
            );
        }
    }
}
