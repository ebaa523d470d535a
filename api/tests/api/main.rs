//! The API's integration tests, one binary: against a real PostgreSQL (`scripts/services.sh up`),
//! through the real router or over real sockets.

mod access;
mod bars;
mod cors;
mod helpers;
mod history;
mod http_cache;
mod latest;
mod logs;
mod page_bytes;
mod prices;
mod readiness;
mod server;
mod sort;
mod stream;
mod window_width;
