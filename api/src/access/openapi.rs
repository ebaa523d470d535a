//! The rate limits and keys in the OpenAPI document: the `api_key` parameter, the `401` and `429`
//! responses and the `RateLimit` fields of the limited operations, and, when a keys file is
//! configured, the security schemes they require (so the served document says what this instance
//! does, as it does for `interval`).

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr, Required};

use super::keys::QUERY_PARAMETER;

/// The operations that are limited and need a key (every other one is free).
const LIMITED: [&str; 2] = ["/v1/get-prices", "/v1/stream-prices"];
/// The security schemes, by name.
const SCHEMES: [&str; 3] = ["bearerKey", "headerKey", "queryKey"];

/// Adds the limits and keys to `document`; `keys`: a keys file is configured; `limits`: requests
/// are limited.
pub(crate) fn document(document: &mut Document, keys: bool, limits: bool) {
    let components = document.components.get_or_insert_with(Default::default);
    components.responses.insert(
        "TooManyRequests".to_owned(),
        crate::app::problem_response_with(
            "The client's rate limit is spent: this request costs more units than its bucket holds \
             now. Wait `Retry-After` seconds (the `RateLimit` field's `t` says the same).",
            &[
                ("Retry-After", "Seconds until the request would fit in the bucket"),
                ("RateLimit", "`\"default\";r=0;t=<the Retry-After>`"),
                ("RateLimit-Policy", "As on every limited answer: `\"default\";q=<burst>;w=<seconds>`"),
            ],
        ),
    );
    components.responses.insert(
        "Unauthorized".to_owned(),
        crate::app::problem_response_with(
            "Only when the server has API keys configured: no key, or one that is not valid. \
             `WWW-Authenticate: Bearer` names the scheme.",
            &[("WWW-Authenticate", "`Bearer realm=\"tickpipe\"`")],
        ),
    );
    if keys {
        components.security_schemes.extend(security_schemes());
    }
    for path in LIMITED {
        let Some(operation) = document
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.get.as_mut())
        else {
            continue;
        };
        document_operation(operation, keys, limits);
    }
}

/// One limited operation: the parameter, the refusals, the fields on its answers.
fn document_operation(operation: &mut Operation, keys: bool, limits: bool) {
    let parameter = ParameterBuilder::new()
        .name(QUERY_PARAMETER)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(
            "An API key, for clients that cannot send headers (an `EventSource`); otherwise send \
             it as `Authorization: Bearer <key>` or `X-API-Key: <key>`. URLs end up in proxy logs \
             and browser history, so prefer a header. Removed before the other parameters are \
             checked, and redacted in the API's own log; ignored when the server has no keys.",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build();
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(parameter);
    let responses = &mut operation.responses.responses;
    for (status, name) in [("401", "Unauthorized"), ("429", "TooManyRequests")] {
        responses.insert(status.to_owned(), RefOr::Ref(Ref::from_response_name(name)));
    }
    if limits {
        for (status, response) in responses.iter_mut() {
            if let (true, RefOr::T(response)) =
                (status.starts_with('2') || status == "304", response)
            {
                response.headers.extend(ratelimit_headers());
            }
        }
    }
    if keys {
        operation.security = Some(
            SCHEMES
                .iter()
                .map(|name| SecurityRequirement::new(*name, Vec::<String>::new()))
                .collect(),
        );
    }
}

/// `RateLimit` and `RateLimit-Policy` on the answers of a limited operation.
pub(crate) fn ratelimit_headers() -> Vec<(String, utoipa::openapi::header::Header)> {
    let header = |description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
            .build()
    };
    vec![
        (
            "RateLimit".to_owned(),
            header(
                "draft-ietf-httpapi-ratelimit-headers-11: `\"default\";r=<units left>;t=<seconds \
                 until the bucket is full again>` (on a 429, `r=0` and `t` the `Retry-After`)",
            ),
        ),
        (
            "RateLimit-Policy".to_owned(),
            header(
                "draft-ietf-httpapi-ratelimit-headers-11: `\"default\";q=<API_RATE_LIMIT_BURST>;w=<seconds \
                 to refill it at API_RATE_LIMIT_RPS>`; quota units are request costs (see the \
                 description)",
            ),
        ),
    ]
}

fn security_schemes() -> Vec<(String, SecurityScheme)> {
    vec![
        (
            SCHEMES[0].to_owned(),
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        ),
        (
            SCHEMES[1].to_owned(),
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        ),
        (
            SCHEMES[2].to_owned(),
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new(QUERY_PARAMETER))),
        ),
    ]
}
