//! The application state and the parts of it each handler takes.
//!
//! The router holds one [`AppState`]; a handler or extractor names only what it uses
//! (`State<Database>`, `State<Feed>`, `State<Streams>`, `State<OpenApiJson>`, and the prices
//! extractor the `Window`), each a `FromRef` substate of it. So no handler depends on the state as a whole, and the state depends on the
//! parts, never on the handlers or the router: imports go one way.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::changes::feed::Feed;
use crate::database::Database;
use crate::params::interval::Window;
use crate::stream::Streams;

/// Shared by every handler, through the substates below.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) db: Database,
    /// The aggregator's window (`AGGREGATOR_WINDOW_SECS`): the default and base of `interval`.
    pub(crate) window: Window,
    /// The OpenAPI document, serialized once.
    pub(crate) openapi: OpenApiJson,
    /// The live stream's feed and limits; the feed also answers the latest prices from memory.
    pub(crate) streams: Streams,
}

/// The OpenAPI document as served, serialized once.
#[derive(Debug, Clone)]
pub(crate) struct OpenApiJson(pub(crate) Arc<String>);

impl FromRef<AppState> for Database {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

impl FromRef<AppState> for Window {
    fn from_ref(state: &AppState) -> Self {
        state.window
    }
}

impl FromRef<AppState> for OpenApiJson {
    fn from_ref(state: &AppState) -> Self {
        state.openapi.clone()
    }
}

impl FromRef<AppState> for Streams {
    fn from_ref(state: &AppState) -> Self {
        state.streams.clone()
    }
}

impl FromRef<AppState> for tickpipe_common::otel::Tracing {
    fn from_ref(state: &AppState) -> Self {
        state.streams.traces().clone()
    }
}

impl FromRef<AppState> for Feed {
    fn from_ref(state: &AppState) -> Self {
        state.streams.feed().clone()
    }
}
