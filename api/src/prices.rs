//! `GET /v1/get-prices`: reads `window_prices` through the validated [`PriceQuery`].

use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use utoipa::{IntoParams, ToSchema};

use crate::problem::{ApiError, Problem};
use crate::query::{Cursor, Form, PriceQuery};
use crate::AppState;

/// The average price of one ticker over one window.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowPrice {
    #[schema(example = "AMZN")]
    pub ticker: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// Sum of every price in the window divided by their count.
    #[schema(example = 1903.25)]
    pub average_price: f64,
    #[sqlx(rename = "sample_count")]
    pub samples: i64,
    pub min_price: i64,
    pub max_price: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PricesPage {
    pub prices: Vec<WindowPrice>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Query parameters, for the OpenAPI document; the handler validates them itself so that every
/// error names its parameter.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(non_snake_case, dead_code)]
pub struct PricesParams {
    /// One or more tickers, comma-separated, case-insensitive: `AMZN` or `AMZN,MSFT`.
    ticker: Option<String>,
    /// Inclusive lower bound of window start: RFC 3339 or integer Unix seconds.
    startTime: Option<String>,
    /// Exclusive upper bound of window start: RFC 3339 or integer Unix seconds.
    endTime: Option<String>,
    /// Page size, 1 to 10000 (default 1000).
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// Average prices per ticker and window.
///
/// Without `startTime`/`endTime`: the latest written window of each ticker, sorted by ticker.
/// With either: every window whose start lies in [startTime, endTime), sorted by window start, then ticker.
#[utoipa::path(
    get,
    path = "/v1/get-prices",
    params(PricesParams),
    responses(
        (status = 200, description = "A page of window prices", body = PricesPage),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_prices(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PricesPage>, ApiError> {
    let Query(pairs) = query.map_err(|e| {
        ApiError::bad_request(format!("query string is malformed: {}", e.body_text()))
    })?;
    let query = PriceQuery::parse(&pairs).map_err(ApiError::BadRequest)?;
    let rows = fetch(&state.pool, &query, state.query_timeout).await?;
    Ok(Json(page(&query, rows)))
}

async fn fetch(
    pool: &PgPool,
    query: &PriceQuery,
    timeout: Duration,
) -> Result<Vec<WindowPrice>, ApiError> {
    let mut sql = query.to_sql();
    let rows = tokio::time::timeout(timeout, sql.build_query_as::<WindowPrice>().fetch_all(pool))
        .await
        .map_err(|_| ApiError::Unavailable(format!("query exceeded {timeout:?}")))?;
    rows.map_err(ApiError::from_database)
}

/// Trims the extra row fetched past the limit into a `nextCursor`.
fn page(query: &PriceQuery, mut rows: Vec<WindowPrice>) -> PricesPage {
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|last| {
            match query.form {
                Form::Latest => Cursor::Latest {
                    ticker: last.ticker.clone(),
                },
                Form::Range { .. } => Cursor::Range {
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
