//! The change feed: the aggregator's change log (`window_changes`) as this instance follows it,
//! shared by both endpoints.
//!
//! `log` reads the log and turns its entries into events and rows (`frame` renders each event once,
//! as the bytes every stream writes), `feed` holds the one `LISTEN` connection of the instance (its
//! task in `listen`) and fans new entries out to every stream, and
//! `latest` is the latest prices the feed keeps in memory, which `GET /v1/get-prices` without
//! parameters serves while the feed is live; with trace export on, `commits` remembers which
//! traced commit wrote each recent window, for the spans of answers read from the database. Apart from the endpoints because both use it: the
//! stream subscribes to the feed and reads the log, the prices endpoint asks the feed for the
//! latest prices.

mod commits;
pub(crate) mod feed;
pub(crate) mod frame;
pub(crate) mod latest;
mod listen;
pub(crate) mod log;
