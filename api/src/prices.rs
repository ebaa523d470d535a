//! `GET /v1/get-prices`: the handler, its extractor and its OpenAPI parameters. It reads
//! `window_prices` through the validated [`PriceQuery`], which is the handler's extractor (an
//! invalid query string is a 400 problem before the handler runs), or answers a request without
//! parameters from the change feed's memory while the feed is live.
//!
//! It takes only what it uses from the application state (the database, the feed and, for the
//! extractor, the window) through axum's `FromRef` substates.
//!
//! The OpenAPI parameters are generated for the default window; [`document_window`] restates the
//! `interval` parameter for the configured one, so the served document lists exactly the values the
//! handler accepts.

use axum::extract::{FromRef, FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use tickpipe_common::message::MAX_TICKER_LEN;
use tracing::{field::Empty, Span};
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{
    AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{OpenApi as Document, RefOr, Required};
use utoipa::IntoParams;

use crate::changes::feed::Feed;
use crate::database::Database;
use crate::model::{never_changes, PricesPage};
use crate::page_json;
use crate::params::cursor::{self, Cursor};
use crate::params::interval::Window;
use crate::params::query_pairs;
use crate::params::sort::{self, Sort};
use crate::params::tickers::{self, MAX_TICKERS};
use crate::params::time::{self, MAX_TIME_SECS, MIN_TIME_SECS, TIME_RANGE_TEXT};
use crate::problem::{ApiError, Problem};
use crate::query::{range_meta_sql, Form, PriceQuery, DEFAULT_LIMIT, MAX_LIMIT};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row as _;

/// Query parameters, for the OpenAPI document: every constraint the handler enforces on one
/// parameter alone is stated here (the patterns are the ones [`crate::params`] is tested against), so
/// a client generated from the document sends only values the API accepts. The two rules that span
/// parameters, which JSON Schema cannot express, are in the descriptions.
#[derive(Debug)]
pub(crate) struct PricesParams;

impl IntoParams for PricesParams {
    fn into_params(
        parameter_in_provider: impl Fn() -> Option<ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        let location = parameter_in_provider().unwrap_or(ParameterIn::Query);
        let parameter = |(name, description, schema): (&str, String, Schema)| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(location.clone())
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        [
            ticker_parameter(),
            time_parameter(
                "startTime",
                "Inclusive lower bound of window start",
                "Must be earlier than `endTime` when both are given.",
                ("2026-11-27T10:00:00Z", 1_795_773_600),
            ),
            time_parameter(
                "endTime",
                "Exclusive upper bound of window start",
                "Must be later than `startTime` when both are given.",
                ("2026-11-27T11:00:00Z", 1_795_777_200),
            ),
            limit_parameter(),
            cursor_parameter(),
            interval_parameter(Window::default()),
            sort_parameter(),
        ]
        .into_iter()
        .map(parameter)
        .collect()
    }
}

/// `interval`: the accepted bar widths of `window`, the first (the window itself) the default.
fn interval_parameter(window: Window) -> ParameterParts {
    let names: Vec<String> = window
        .intervals()
        .into_iter()
        .map(|interval| interval.name())
        .collect();
    let description = format!(
        "Width of each entry: one of {}. The default, `{default}`, is the aggregator's window: one \
         entry per stored window. A wider interval rolls the windows up into bars aligned to the Unix \
         epoch (UTC), one per ticker and bar that has prices: `samples` and `averagePrice` over every \
         price of the bar, `minPrice`/`maxPrice`, `openPrice` of its first price and `closePrice` of \
         its last; `windowStart` and `windowEnd` are the bar's bounds. With `startTime`/`endTime`, \
         the bars whose start lies in [startTime, endTime); without, the bar holding each ticker's \
         latest window.",
        window.names(),
        default = window.interval().name(),
    );
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .default(Some(serde_json::json!(window.interval().name())))
        .examples(["1h"])
        .build();
    ("interval", description, Schema::Object(schema))
}

/// Restates the `interval` parameter of `GET /v1/get-prices` in `document` for `window`, the
/// configured `AGGREGATOR_WINDOW_SECS` (the generated one is for the default window).
pub(crate) fn document_window(document: &mut Document, window: Window) {
    let operation = document
        .paths
        .paths
        .get_mut("/v1/get-prices")
        .and_then(|item| item.get.as_mut());
    let parameters = operation.and_then(|operation| operation.parameters.as_mut());
    for parameter in parameters.into_iter().flatten() {
        if parameter.name == "interval" {
            let (_, description, schema) = interval_parameter(window);
            parameter.description = Some(description);
            parameter.schema = Some(RefOr::T(schema));
        }
    }
}

/// A parameter's name, description and schema.
type ParameterParts = (&'static str, String, Schema);

fn ticker_parameter() -> ParameterParts {
    let description = format!(
        "One or more tickers, comma-separated, case-insensitive: `AMZN` or `amzn,MSFT`. \
         Each is 1-{MAX_TICKER_LEN} of `A-Z a-z 0-9 . -`, optionally padded with spaces; \
         at most {MAX_TICKERS} names."
    );
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(tickers::PATTERN.as_str()))
        .examples(["AMZN", "AMZN,MSFT"])
        .build();
    ("ticker", description, Schema::Object(schema))
}

/// `startTime` or `endTime`: RFC 3339 text or Unix seconds, both inside the accepted range.
fn time_parameter(
    name: &'static str,
    bound: &str,
    rule: &str,
    (text_example, seconds_example): (&str, i64),
) -> ParameterParts {
    let description = format!(
        "{bound}: RFC 3339 (upper-case `T` and `Z`, seconds 00-59, at most 9 fraction digits, any \
         offset) or integer Unix seconds; every time {TIME_RANGE_TEXT} is accepted. {rule}"
    );
    let rfc3339 = ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .pattern(Some(time::PATTERN.as_str()))
        .description(Some("RFC 3339"));
    let unix = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(MIN_TIME_SECS))
        .maximum(Some(MAX_TIME_SECS))
        .description(Some("Unix seconds"));
    let schema = AnyOfBuilder::new()
        .item(rfc3339)
        .item(unix)
        .examples([
            serde_json::json!(text_example),
            serde_json::json!(seconds_example),
        ])
        .build();
    (name, description, Schema::AnyOf(schema))
}

fn limit_parameter() -> ParameterParts {
    let schema = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT))
        .default(Some(serde_json::json!(DEFAULT_LIMIT)))
        .examples([100])
        .build();
    (
        "limit",
        format!("Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."),
        Schema::Object(schema),
    )
}

/// `sort`: the two orders, ascending the default.
fn sort_parameter() -> ParameterParts {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(sort::VALUES))
        .default(Some(serde_json::json!(Sort::default().name())))
        .examples(["desc"])
        .build();
    (
        "sort",
        "Order of the entries: `asc` (the default) by window (bar) start, oldest first, then \
         ticker; `desc` the exact reverse, newest first, each start's tickers in reverse order, \
         and the next page continues to older entries. Without `startTime`/`endTime`, the order of \
         the tickers. `nextCursor` carries the order, so a page asked for with a `cursor` continues \
         in it without `sort`; a `sort` given beside a `cursor` must be the cursor's."
            .to_owned(),
        Schema::Object(schema),
    )
}

fn cursor_parameter() -> ParameterParts {
    let example = Cursor::Latest {
        sort: Sort::Asc,
        bar_secs: None,
        ticker: "AMZN".to_owned(),
    }
    .encode();
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(cursor::PATTERN.as_str()))
        .examples([example])
        .build();
    (
        "cursor",
        "The `nextCursor` of the previous page, unchanged. A cursor from a query with \
         `startTime` or `endTime` continues only such a query, and one from a query with \
         neither only such a query, each with the same `interval`; repeat the other parameters of \
         that request. It continues in the order (`sort`) of the page that returned it; `sort`, \
         if given too, must be that order."
            .to_owned(),
        Schema::Object(schema),
    )
}

/// The query string as a validated [`PriceQuery`]; anything invalid is a 400 naming the parameter.
impl<S> FromRequestParts<S> for PriceQuery
where
    Window: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let pairs = query_pairs(&parts.uri)?;
        PriceQuery::parse(&pairs, Window::from_ref(state)).map_err(ApiError::BadRequest)
    }
}

/// Prices per ticker and window, or per bar of several windows.
///
/// Without `startTime`/`endTime`: the latest written window of each ticker (with `interval`, the bar
/// holding it), sorted by ticker. With either: every window (bar) whose start lies in
/// [startTime, endTime), sorted by start, then ticker. `sort=desc` reverses the order (newest
/// first). Every entry says whether it is `complete`.
#[utoipa::path(
    get,
    path = "/v1/get-prices",
    params(
        PricesParams,
        ("If-None-Match" = Option<String>, Header, description = "Entity tags of pages the client holds (`\"…\"`, `W/\"…\"`, a comma-separated list, or `*`), compared weakly (RFC 9110): if one matches the answer, it is a 304 without a body"),
    ),
    responses(
        (status = 200, description = "A page of window or bar prices", body = PricesPage, headers(
            ("ETag" = String, description = "Strong tag of this answer: the first 128 bits of the SHA-256 of the uncompressed body, hex, quoted; with a content coding, suffixed with it inside the quotes (`\"…-gzip\"`, `-br`, `-zstd`), since a strong tag names exact bytes. Send it back in `If-None-Match`"),
            ("Cache-Control" = String, description = "`public, max-age=86400, immutable` for a page that can never change: a range with `endTime` whose every window (bar) ends at or before the `complete` boundary, every entry `complete`. `no-cache` (store, but revalidate with the `ETag`) for every other page"),
            ("Content-Encoding" = String, description = "`gzip`, `br` or `zstd` as `Accept-Encoding` prefers, on answers of 1 KiB or more (unless `API_COMPRESSION_LEVEL` is 0); absent otherwise"),
            ("Vary" = String, description = "`accept-encoding` (and `origin` when CORS is on with a list of origins)"),
        )),
        (status = 304, description = "Not modified: `If-None-Match` matches the answer's tag (a tag suffixed with a content coding matches too). No body; `ETag` is the matching tag the request sent (`*`: the answer's own), with the `Cache-Control` and `Vary` of the 200", headers(
            ("ETag" = String, description = "The request's matching tag, in strong form"),
            ("Cache-Control" = String, description = "As the 200 would have"),
        )),
        (status = 400, description = "A parameter is invalid; `detail` names it and the form it accepts", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The range asks for history older than the retention of its interval keeps (`TICKPIPE_RETENTION_*`): `detail` says from when entries of that interval are kept; ask from then on, or for a wider interval, which is kept longer. A range without `startTime` is answered from the oldest kept entry on (410 only when all of it is older).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The request has a body larger than the limit (no operation reads a body)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unreachable or did not answer within the query timeout; retry shortly", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_prices(
    State(db): State<Database>,
    State(feed): State<Feed>,
    State(window): State<Window>,
    State(traces): State<tickpipe_common::otel::Tracing>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    query: PriceQuery,
) -> Result<Response, ApiError> {
    // Without parameters (what dashboards poll): from memory while the change feed is live. The
    // same query spelled with parameters (`?limit=1000`) always reads the database.
    if raw.is_none_or(|raw| raw.is_empty()) {
        if let Some(latest) = feed.latest() {
            crate::trace::answer_span(&traces, &headers, "memory", || latest.commits.clone());
            let body = latest.body.clone();
            return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
        }
    }
    let (rows, boundary) = fetch_rows(&db, &query).await?;
    crate::trace::answer_span(&traces, &headers, "database", || {
        feed.commits_of(&page_json::keys(&query, &rows))
    });
    let page = page_json::write(&query, &rows)?;
    let immutable = never_changes(&query, window, boundary, page.all_complete);
    Ok(page.into_response(immutable))
}

/// The rows of one page, plus one more if there is a next page.
#[tracing::instrument(
    name = "fetch_prices",
    skip_all,
    fields(
        form = %query.form.name(),
        interval = query.bars.map(|bars| bars.name()),
        tickers = query.tickers.as_ref().map(Vec::len),
        limit = query.limit,
        rows = Empty,
    )
)]
async fn fetch_rows(
    db: &Database,
    query: &PriceQuery,
) -> Result<(Vec<PgRow>, Option<i64>), ApiError> {
    let mut sql = query.to_sql();
    let table = query.table;
    let range = match query.form {
        Form::Range { start, end } => Some((start, end)),
        Form::Latest => None,
    };
    let (gone_before, boundary, rows) = db
        .run("prices query", |mut connection| async move {
            // No JIT on these connections: see `tickpipe_common::db::read_only_pool`. Rows as
            // PostgreSQL sent them: `page_json` writes them out by column position.
            let rows = sql.build().fetch_all(&mut *connection).await?;
            // A range's rows carry how far retention has dropped its table and the `complete`
            // boundary (read with them, in their snapshot); an empty page asks for both alone.
            let (gone_before, boundary): (Option<DateTime<Utc>>, Option<i64>) =
                match (range, rows.first()) {
                    (None, _) => (None, None),
                    (Some(_), Some(first)) => (
                        first.try_get(page_json::COLUMNS.len())?,
                        first.try_get(page_json::COLUMNS.len() + 1)?,
                    ),
                    (Some(_), None) => {
                        sqlx::query_as(&range_meta_sql(table))
                            .fetch_one(&mut *connection)
                            .await?
                    }
                };
            Ok((gone_before, boundary, rows))
        })
        .await?;
    // A range reaching into dropped history is refused, not answered with a shorter page.
    if let (Some(gone_before), Some(range)) = (gone_before, range) {
        if reaches_before(range, gone_before) {
            return Err(ApiError::Gone(history_gone(query, gone_before)));
        }
    }
    Span::current().record("rows", rows.len());
    Ok((rows, boundary))
}

/// Whether a range `[start, end)` of window (bar) starts reaches before `gone_before`, where the
/// table's history has been dropped. A range without a start asks from the oldest kept entry on,
/// which is no loss unless all of it lies before.
fn reaches_before(
    (start, end): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    gone_before: DateTime<Utc>,
) -> bool {
    match start {
        Some(start) => start < gone_before,
        None => end.is_some_and(|end| end <= gone_before),
    }
}

/// The 410's detail: what is gone, since when, and how to ask instead.
fn history_gone(query: &PriceQuery, gone_before: DateTime<Utc>) -> String {
    let what = match query.bars {
        Some(bars) => format!("{} bars", bars.name()),
        None => "windows".to_owned(),
    };
    format!(
        "{what} starting before {} are no longer kept (retention dropped them, and the range asks \
         for some); ask for startTime at or after {}, or for a wider interval, which is kept longer",
        gone_before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        gone_before.timestamp(),
    )
}
