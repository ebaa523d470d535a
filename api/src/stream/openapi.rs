//! The OpenAPI description of `GET /v1/stream-prices` that utoipa cannot derive: its parameters
//! (one in a header) with their exact patterns, and the shape of its events.
//!
//! Apart from the handler because it is long and declarative; the patterns come from the same
//! grammars the request is parsed with ([`crate::params`]), so the document cannot drift.

use std::borrow::Cow;
use std::sync::LazyLock;

use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::changes::log::Watermark;
use crate::model::WindowPrice;
use crate::params::integer::{integer_range, Decimal};
use crate::params::tickers::{self, MAX_TICKERS};

/// The query parameters and the header, for the OpenAPI document: each one's exact form.
#[derive(Debug)]
pub(crate) struct StreamParams;

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
            .pattern(Some(tickers::PATTERN.as_str()))
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
pub(crate) static ID_PATTERN: LazyLock<String> =
    LazyLock::new(|| format!("^{}$", integer_range::<Decimal>(0, i64::MAX)));

/// One event of the stream, for the OpenAPI document: `event`, `id` and `data` as an SSE parser
/// (Schemathesis among them) reads them, `data` a JSON document of the event's schema.
#[derive(Debug)]
pub(crate) struct StreamEvent;

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
