//! `GET /v1/stream-prices`: the change log as server-sent events.
//!
//! Every committed change of a (ticker, window) row is a `price` event whose data is the entry as
//! `GET /v1/get-prices` returns it after that commit; every advance of the topic-wide boundary is a
//! `watermark` event. Each event's `id` is the change id, so a client that reconnects with
//! `Last-Event-ID` (or `?since=`) gets exactly what it has not seen.
//!
//! `log` reads the aggregator's `window_changes` table, `feed` holds the one `LISTEN` connection of
//! the instance and fans new entries out, `subscriber` is one client's stream (its backlog from the
//! database, then the feed, deduplicated by id), `latest` the latest prices the feed keeps in memory
//! for `GET /v1/get-prices`, and this module the endpoint, its limits and its documentation.

mod feed;
mod latest;
mod log;
mod subscriber;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Semaphore;
use tokio_util::sync::{CancellationToken, DropGuard};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::app::AppState;
use crate::database::Database;
use crate::metrics::StreamMetrics;
use crate::pattern::{integer_range, Spelling};
use crate::prices::WindowPrice;
use crate::problem::{ApiError, Problem};
use crate::query::{patterns, PriceQuery, MAX_TICKERS};

use self::feed::Feed;
use self::log::Watermark;
use self::subscriber::{Context, Subscriber};

/// Default of `API_MAX_STREAMS`.
pub const DEFAULT_MAX_STREAMS: usize = 1000;
/// Default of `API_STREAM_HEARTBEAT_MS`.
pub const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
/// Default of `API_STREAM_QUEUE`.
pub const DEFAULT_QUEUE: usize = 256;
/// The query parameters the endpoint accepts.
pub const ACCEPTED_PARAMETERS: [&str; 2] = ["ticker", "since"];
/// What a client that gets a 503 for the stream limit is told to wait, in seconds.
const RETRY_AFTER_SECS: u32 = 5;
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The stream's limits (the README's configuration table has their defaults).
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// More concurrent streams than this are refused with a 503.
    pub max_streams: usize,
    /// A comment is sent after this long without an event.
    pub heartbeat: Duration,
    /// Batches of changes a subscriber may fall behind before it is disconnected.
    pub queue: usize,
    /// Ends every stream (and the feed) when cancelled: the server's graceful shutdown.
    pub shutdown: CancellationToken,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            max_streams: DEFAULT_MAX_STREAMS,
            heartbeat: Duration::from_millis(DEFAULT_HEARTBEAT_MS),
            queue: DEFAULT_QUEUE,
            shutdown: CancellationToken::new(),
        }
    }
}

/// The application's streams: the feed, the limit and the heartbeat. Cheap to clone; the feed
/// stops when the last clone is dropped or on shutdown.
#[derive(Debug, Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    context: Context,
    permits: Arc<Semaphore>,
    max_streams: usize,
    heartbeat: Duration,
    _stop_feed: DropGuard,
}

impl Streams {
    /// `connect`: how the feed opens its listening connection (the pool's options).
    pub fn new(
        db: Database,
        connect: PgConnectOptions,
        options: StreamOptions,
        metrics: StreamMetrics,
    ) -> Self {
        let stop = options.shutdown.child_token();
        let feed = Feed::new(
            db.clone(),
            connect,
            options.queue,
            metrics.clone(),
            stop.clone(),
        );
        let max_streams = options.max_streams.min(Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                context: Context {
                    db,
                    feed,
                    metrics,
                    shutdown: options.shutdown,
                },
                permits: Arc::new(Semaphore::new(max_streams)),
                max_streams,
                heartbeat: options.heartbeat,
                _stop_feed: stop.drop_guard(),
            }),
        }
    }
}

impl Streams {
    /// `GET /v1/get-prices` without parameters, serialized, from the feed's memory while it is
    /// live; `None`: ask the database (see `feed`).
    pub fn latest_body(&self) -> Option<axum::body::Bytes> {
        self.inner.context.feed.latest_body()
    }
}

/// A validated request: the tickers and where to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// Upper-cased, deduplicated, sorted; `None`: every ticker.
    pub tickers: Option<Vec<String>>,
    /// The id to resume after and where it came from (`Last-Event-ID` wins over `since`: a
    /// reconnecting EventSource sends the URL it was opened with and the last id it received).
    pub resume: Option<(i64, &'static str)>,
}

impl StreamRequest {
    /// Validates the query pairs and the `Last-Event-ID` values; every error names the parameter.
    pub fn parse(
        pairs: &[(String, String)],
        last_event_ids: &[&[u8]],
        state: &AppState,
    ) -> Result<Self, String> {
        let mut tickers = None;
        let mut since = None;
        for (name, value) in pairs {
            let taken = match name.as_str() {
                "ticker" => {
                    let pair = [("ticker".to_owned(), value.clone())];
                    let parsed = PriceQuery::parse(&pair, state.window)?;
                    tickers.replace(parsed.tickers).is_some()
                }
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
        Ok(Self {
            tickers: tickers.flatten(),
            resume,
        })
    }
}

/// A change id: a canonical decimal integer from 0 to 2^63-1 (no sign, no leading zero), as the
/// stream writes them.
fn parse_id(name: &str, value: &str) -> Result<i64, String> {
    let canonical = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    canonical
        .then(|| value.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| id_error(name, &format!("{value:?}")))
}

fn id_error(name: &str, value: &str) -> String {
    format!(
        "{name} {value} is not a change id; use the id of the last event received, an integer from 0 to {}",
        i64::MAX
    )
}

impl FromRequestParts<AppState> for StreamRequest {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let pairs = crate::prices::query_pairs(parts, state).await?;
        let last_event_ids: Vec<&[u8]> = parts
            .headers
            .get_all(&LAST_EVENT_ID)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        Self::parse(&pairs, &last_event_ids, state).map_err(ApiError::BadRequest)
    }
}

/// Why a stream was not opened.
#[derive(Debug)]
enum Refusal {
    Api(ApiError),
    /// The id to resume from is unknown to the log (pruned, or never in it).
    Gone(String),
    /// `API_MAX_STREAMS` streams are open.
    Busy {
        max_streams: usize,
    },
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Api(error) => error.into_response(),
            Self::Gone(detail) => problem(StatusCode::GONE, detail),
            Self::Busy { max_streams } => {
                let mut response = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{max_streams} streams are open, the most this server serves; retry after {RETRY_AFTER_SECS} seconds"
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                // For the request log (`trace::log_errors` logs the cause of a 503).
                response
                    .extensions_mut()
                    .insert(ApiError::Unavailable(format!(
                        "API_MAX_STREAMS ({max_streams}) streams are open"
                    )));
                response
            }
        }
    }
}

/// A problem document with this status and detail.
fn problem(status: StatusCode, detail: String) -> Response {
    let problem = Problem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or_default().to_owned(),
        status: status.as_u16(),
        detail,
    };
    match serde_json::to_vec(&problem) {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response(),
        Err(error) => ApiError::Internal(error.to_string()).into_response(),
    }
}

/// Live prices as server-sent events.
///
/// A `price` event for every committed change of a (ticker, window) entry, its data the entry as
/// `GET /v1/get-prices` returns it after that change; a `watermark` event whenever the boundary
/// before which every window is final advances. Every event's `id` is the change id. Without
/// `since` or `Last-Event-ID` the stream starts live, after the newest change when the request
/// arrives; with one, it first sends every change after that id, then continues live, without gap
/// or duplicate. The stream opens with an `id:` line without data (not an event) giving its
/// starting id, so a client that reconnects before any event still resumes from there, and sends a
/// comment line (`: heartbeat`) after 15 seconds without an event. It does not end by itself.
#[utoipa::path(
    get,
    path = "/v1/stream-prices",
    params(StreamParams),
    responses(
        (status = 200, description = "The stream: `text/event-stream` whose events each match this schema (`event`, `id`, and `data`, a JSON document)", body = StreamEvent, content_type = "text/event-stream"),
        (status = 400, description = "A parameter or the `Last-Event-ID` header is invalid; `detail` names it and the form it accepts", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The id to resume from is unknown: older than the changes kept (24 hours), or newer than the newest change (it comes from another log). Reload from `GET /v1/get-prices` and open the stream without it", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The request has a body larger than the limit (no operation reads a body)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "As many streams are open as the server serves (with `Retry-After`), or the database is unreachable; retry shortly", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying (only when the stream limit is reached)"))),
    )
)]
pub async fn stream_prices(State(state): State<AppState>, request: StreamRequest) -> Response {
    match open(&state.stream, request).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn open(streams: &Streams, request: StreamRequest) -> Result<Response, Refusal> {
    let inner = &streams.inner;
    let permit = Arc::clone(&inner.permits)
        .try_acquire_owned()
        .map_err(|_| {
            inner.context.metrics.refused.inc();
            Refusal::Busy {
                max_streams: inner.max_streams,
            }
        })?;
    let bounds = log::bounds(&inner.context.db).await?;
    let newest = bounds.newest.unwrap_or(0);
    let start = match request.resume {
        None => newest,
        Some((id, name)) if id > newest => {
            return Err(Refusal::Gone(format!(
                "{name} {id} is newer than the newest change, {newest}: it does not come from this \
                 change log; reload from /v1/get-prices and open the stream without it"
            )))
        }
        Some((id, name)) if !log::retains_after(bounds.oldest, id) => {
            return Err(Refusal::Gone(format!(
                "{name} {id} is older than the changes kept (24 hours; the oldest is {}); reload \
                 from /v1/get-prices and open the stream without it",
                bounds.oldest.unwrap_or_default()
            )))
        }
        Some((id, _)) => id,
    };
    tracing::debug!(start, newest, tickers = ?request.tickers, "opening a stream");
    let subscriber = Subscriber::new(
        inner.context.clone(),
        permit,
        request.tickers,
        start,
        newest,
    );
    let mut response = Sse::new(subscriber.into_stream())
        .keep_alive(KeepAlive::new().interval(inner.heartbeat).text("heartbeat"))
        .into_response();
    // Proxies that buffer responses (nginx) would hold events back.
    response.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// The query parameters and the header, for the OpenAPI document: each one's exact form.
#[derive(Debug)]
pub struct StreamParams;

impl IntoParams for StreamParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let parameter = |name: &str, location: ParameterIn, description: String, schema| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(location)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        let tickers = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(patterns::TICKERS.as_str()))
            .examples(["AMZN", "AMZN,MSFT"])
            .build();
        let since = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(i64::MAX))
            .examples([0])
            .build();
        let last_event_id = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(ID_PATTERN.as_str()))
            .examples(["42"])
            .build();
        vec![
            parameter(
                "ticker",
                ParameterIn::Query,
                format!(
                    "Only the `price` events of these tickers (`watermark` events always come): \
                     comma-separated, case-insensitive, each 1-16 of `A-Z a-z 0-9 . -`, optionally \
                     padded with spaces; at most {MAX_TICKERS} names."
                ),
                Schema::Object(tickers),
            ),
            parameter(
                "since",
                ParameterIn::Query,
                "Start after this change id: every change committed after it is sent, then the \
                 stream continues live. `Last-Event-ID` wins when both are given. An id older than \
                 the changes kept (24 hours) or newer than the newest change is a 410."
                    .to_owned(),
                Schema::Object(since),
            ),
            parameter(
                "Last-Event-ID",
                ParameterIn::Header,
                "As `since`: what an EventSource sends when it reconnects, the `id` of the last \
                 event it received."
                    .to_owned(),
                Schema::Object(last_event_id),
            ),
        ]
    }
}

/// A change id as the stream writes it: the canonical decimal integers from 0 to 2^63-1.
static ID_PATTERN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("^{}$", integer_range::<Decimal>(0, i64::MAX)));

/// Decimal digits spelled as themselves (for [`integer_range`]).
#[derive(Debug)]
struct Decimal;

impl Spelling for Decimal {
    fn digit(low: u8, high: u8) -> String {
        if low == high {
            low.to_string()
        } else {
            format!("[{low}-{high}]")
        }
    }

    fn minus() -> String {
        "-".to_owned()
    }
}

/// One event of the stream, for the OpenAPI document: `event`, `id` and `data` as an SSE parser
/// (Schemathesis among them) reads them, `data` a JSON document of the event's schema.
#[derive(Debug)]
pub struct StreamEvent;

impl PartialSchema for StreamEvent {
    fn schema() -> RefOr<Schema> {
        let event = |name: &str, data: &str, description: &str| {
            let data = ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .extensions(Some(Extensions::from_iter([(
                    "contentSchema",
                    serde_json::json!({ "$ref": Ref::from_schema_name(data).ref_location }),
                )])))
                .description(Some(format!("A `{data}`, as JSON")));
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .title(Some(format!("{name} event")))
                .description(Some(description))
                .property(
                    "event",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([name])),
                )
                .property(
                    "id",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(ID_PATTERN.as_str()))
                        .description(Some("The change id: pass it as `since` or `Last-Event-ID` to resume after it")),
                )
                .property("data", data)
                .required("event")
                .required("id")
                .required("data")
        };
        RefOr::T(Schema::OneOf(
            OneOfBuilder::new()
                .item(event(
                    "price",
                    "WindowPrice",
                    "A (ticker, window) entry as it stands after the change, as GET /v1/get-prices returns it",
                ))
                .item(event(
                    "watermark",
                    "Watermark",
                    "Every window starting before `completeBefore` is final",
                ))
                .build(),
        ))
    }
}

impl ToSchema for StreamEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("StreamEvent")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((WindowPrice::name().into_owned(), WindowPrice::schema()));
        WindowPrice::schemas(schemas);
        schemas.push((Watermark::name().into_owned(), Watermark::schema()));
        Watermark::schemas(schemas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
