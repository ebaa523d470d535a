//! `GET /v1/get-prices`: reads `window_prices` through the validated [`PriceQuery`], which is the
//! handler's extractor (an invalid query string is a 400 problem before the handler runs).
//!
//! The OpenAPI parameters are generated for the default window; [`document_window`] restates the
//! `interval` parameter for the configured one, so the served document lists exactly the values the
//! handler accepts.

use axum::extract::{FromRequestParts, Query, RawQuery, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use tickpipe_common::message::MAX_TICKER_LEN;
use tracing::field::Empty;
use tracing::Span;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{
    AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{OpenApi as Document, RefOr, Required};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::database::Database;
use crate::interval::Window;
use crate::problem::{ApiError, Problem};
use crate::query::{
    patterns, Cursor, Form, PriceQuery, DEFAULT_LIMIT, MAX_LIMIT, MAX_TICKERS, MAX_TIME_SECS,
    MIN_TIME_SECS, TIME_RANGE_TEXT,
};

/// The prices of one ticker over one window, or over one bar of several windows (`interval`).
#[derive(Debug, Clone, PartialEq, Serialize, FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowPrice {
    #[schema(example = "AMZN")]
    pub ticker: String,
    /// Start of the window, or of the bar (aligned to the Unix epoch, UTC) with `interval`.
    #[serde(serialize_with = "rfc3339")]
    pub window_start: DateTime<Utc>,
    /// End of the window or bar (exclusive): `windowStart` plus the interval.
    #[serde(serialize_with = "rfc3339")]
    pub window_end: DateTime<Utc>,
    /// Sum of every price in the window or bar divided by their count (never an average of averages).
    #[schema(example = 1903.25)]
    pub average_price: f64,
    /// Number of prices.
    #[sqlx(rename = "sample_count")]
    pub samples: i64,
    pub min_price: i64,
    pub max_price: i64,
    /// The first price: the one with the earliest (record timestamp, partition, offset). `null`
    /// when unknown (windows written before open and close were recorded).
    #[schema(example = 1890)]
    pub open_price: Option<i64>,
    /// The last price: the one with the latest (record timestamp, partition, offset). `null` when
    /// unknown, as `openPrice`.
    #[schema(example = 1911)]
    pub close_price: Option<i64>,
    /// `true` once every Kafka partition has closed every window up to `windowEnd`: the values
    /// will not change again. `false` while a partition may still add to them.
    pub complete: bool,
}

/// `time` as chrono's own `Serialize` writes it (RFC 3339, `Z`, as many fraction digits as needed),
/// handed to the serializer as one string: chrono's impl goes through `collect_str`, which
/// serde_json escapes character by character — with two instants per row, the largest single cost
/// of a 1000-row page in the profile (README, Benchmarks).
fn rfc3339<S: serde::Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PricesPage {
    pub prices: Vec<WindowPrice>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Query parameters, for the OpenAPI document: every constraint the handler enforces on one
/// parameter alone is stated here (the patterns are the ones [`crate::query`] is tested against), so
/// a client generated from the document sends only values the API accepts. The two rules that span
/// parameters, which JSON Schema cannot express, are in the descriptions.
#[derive(Debug)]
pub struct PricesParams;

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
pub fn document_window(document: &mut Document, window: Window) {
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
        .pattern(Some(patterns::TICKERS.as_str()))
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
        .pattern(Some(patterns::RFC3339.as_str()))
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

fn cursor_parameter() -> ParameterParts {
    let example = Cursor::Latest {
        bar_secs: None,
        ticker: "AMZN".to_owned(),
    }
    .encode();
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(patterns::CURSOR.as_str()))
        .examples([example])
        .build();
    (
        "cursor",
        "The `nextCursor` of the previous page, unchanged. A cursor from a query with \
         `startTime` or `endTime` continues only such a query, and one from a query with \
         neither only such a query, each with the same `interval`; repeat the other parameters of \
         that request."
            .to_owned(),
        Schema::Object(schema),
    )
}

/// The query string as a validated [`PriceQuery`]; anything invalid is a 400 naming the parameter.
impl FromRequestParts<AppState> for PriceQuery {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let pairs = query_pairs(parts, state).await?;
        PriceQuery::parse(&pairs, state.window).map_err(ApiError::BadRequest)
    }
}

/// The query string as (name, value) pairs in order, repeats kept (so a repeated parameter can be
/// refused); a malformed one is a 400. Shared by every endpoint's extractor.
pub(crate) async fn query_pairs(
    parts: &mut Parts,
    state: &AppState,
) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
        .await
        .map_err(|rejection| {
            ApiError::bad_request(format!(
                "query string is malformed: {}",
                rejection.body_text()
            ))
        })?;
    Ok(pairs)
}

/// Prices per ticker and window, or per bar of several windows.
///
/// Without `startTime`/`endTime`: the latest written window of each ticker (with `interval`, the bar
/// holding it), sorted by ticker. With either: every window (bar) whose start lies in
/// [startTime, endTime), sorted by start, then ticker. Every entry says whether it is `complete`.
#[utoipa::path(
    get,
    path = "/v1/get-prices",
    params(PricesParams),
    responses(
        (status = 200, description = "A page of window or bar prices", body = PricesPage),
        (status = 400, description = "A parameter is invalid; `detail` names it and the form it accepts", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The request has a body larger than the limit (no operation reads a body)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unreachable or did not answer within the query timeout; retry shortly", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_prices(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    query: PriceQuery,
) -> Result<Response, ApiError> {
    // Without parameters (what dashboards poll): from memory while the change feed is live. The
    // same query spelled with parameters (`?limit=1000`) always reads the database.
    if raw.is_none_or(|raw| raw.is_empty()) {
        if let Some(body) = state.stream.latest_body() {
            return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
        }
    }
    let rows = fetch_rows(&state.db, &query).await?;
    Ok(Json(page(&query, rows)).into_response())
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
async fn fetch_rows(db: &Database, query: &PriceQuery) -> Result<Vec<WindowPrice>, ApiError> {
    let mut sql = query.to_sql();
    let rows = db
        .run("prices query", |mut connection| async move {
            // No JIT on these connections: see `tickpipe_common::db::read_only_pool`.
            sql.build_query_as::<WindowPrice>()
                .fetch_all(&mut *connection)
                .await
        })
        .await?;
    Span::current().record("rows", rows.len());
    Ok(rows)
}

/// Trims the extra row fetched past the limit into a `nextCursor`.
pub(crate) fn page(query: &PriceQuery, mut rows: Vec<WindowPrice>) -> PricesPage {
    let limit = usize::try_from(query.limit)
        .expect("limit is validated to lie in 1..=MAX_LIMIT, which fits a usize");
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|last| {
            let bar_secs = query.bars.map(|bars| bars.secs());
            match query.form {
                Form::Latest => Cursor::Latest {
                    bar_secs,
                    ticker: last.ticker.clone(),
                },
                Form::Range { .. } => Cursor::Range {
                    bar_secs,
                    window_start: last.window_start,
                    ticker: last.ticker.clone(),
                },
            }
            .encode()
        })
    } else {
        None
    };
    PricesPage {
        prices: rows,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn instants_serialize_exactly_as_chrono_serializes_them() {
        #[derive(Serialize)]
        struct Fast(#[serde(serialize_with = "rfc3339")] DateTime<Utc>);
        for (seconds, nanos) in [
            (1_795_773_600, 0),
            (1_795_773_600, 500_000_000),
            (1_795_773_600, 123_456_000),
            (1_795_773_600, 1),
            (0, 0),
            (-62_167_219_200, 0),
            (253_402_300_799, 999_999_999),
        ] {
            let time = Utc.timestamp_opt(seconds, nanos).single().expect("time");
            assert_eq!(
                serde_json::to_string(&Fast(time)).expect("fast"),
                serde_json::to_string(&time).expect("chrono"),
            );
        }
    }
}
