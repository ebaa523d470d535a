//! Compression of the JSON answers: gzip, br or zstd as the client's `Accept-Encoding` prefers
//! (tower-http's `CompressionLayer`), on JSON answers of at least [`MIN_SIZE`] bytes only.
//!
//! - **Level 1 by default** (`API_COMPRESSION_LEVEL`): measured on a 1000-entry page of 217 KB
//!   (`api/examples/bench_compression.rs`, docs/benchmarks.md), level 1 costs 0.2–1 ms of CPU per
//!   page and already shrinks it about tenfold; higher levels cost several times more for a few
//!   percent. `0` turns compression off.
//! - **Small answers are sent as is**: below a kilobyte (the latest prices of a few tickers, a
//!   problem) the framing and the CPU cost more than the bytes saved.
//! - **Never the stream**: `text/event-stream` is not JSON, and it is excluded by name as well, so
//!   that no change of the JSON test can make the encoder buffer events (a compressor holds bytes
//!   until it has a block's worth; an event must reach the client as it is written).
//! - **Nor the dashboard**: its files are gzipped at build time and served with their own tags
//!   (`crate::web`).

use axum::http::Response;
use tower_http::compression::predicate::{And, NotForContentType, Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};

/// Answers smaller than this are not compressed.
pub(crate) const MIN_SIZE: u16 = 1024;
/// The default of `API_COMPRESSION_LEVEL`.
pub(crate) const DEFAULT_LEVEL: u32 = 1;
/// The highest `API_COMPRESSION_LEVEL`: gzip's highest (br and zstd go further, for little gain).
pub(crate) const MAX_LEVEL: u32 = 9;

/// Only JSON documents (the API's answers and problems).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Json;

impl Predicate for Json {
    fn should_compress<B>(&self, response: &Response<B>) -> bool
    where
        B: axum::body::HttpBody,
    {
        crate::http_cache::is_json(response.headers())
    }
}

/// What the layer compresses: JSON of at least [`MIN_SIZE`] bytes, never an event stream.
pub(crate) type Compressible = And<And<SizeAbove, NotForContentType>, Json>;

/// The compression layer at `level` (1 to [`MAX_LEVEL`]); `None` when `level` is 0 (off).
pub(crate) fn layer(level: u32) -> Option<CompressionLayer<Compressible>> {
    let level = i32::try_from(level.min(MAX_LEVEL)).ok()?;
    if level == 0 {
        return None;
    }
    let predicate = SizeAbove::new(MIN_SIZE)
        .and(NotForContentType::const_new("text/event-stream"))
        .and(Json);
    Some(
        CompressionLayer::new()
            .quality(CompressionLevel::Precise(level))
            .compress_when(predicate),
    )
}
