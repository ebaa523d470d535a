//! The database contract of tickpipe, owned in one place: what the aggregator writes to PostgreSQL
//! and what the API may rely on when it reads.
//!
//! # Layout
//! - [`schema`]: the migrations in `migrations/` (embedded) and how to apply them.
//! - [`rows`]: the row types — a window's totals and how two of them merge (the same merge the
//!   upsert does), a partition's progress, and a batch of final windows to commit.
//! - [`write`]: the aggregator's write path — claim a partition (fencing a former owner), commit
//!   final windows together with the partition's progress and the change log in one transaction.
//! - [`changes`]: the change log (`window_changes`) — its append, its notification channel, its pruning.
//! - [`history`]: the rollups kept beside the windows, the time partitions of every table, and
//!   retention.
//! - [`partitions`]: the partitions of each topic as last seen in Kafka's metadata, so that an
//!   unclaimed partition holds the boundary back.
//! - [`shape`]: what shapes the stored rows (the window width), recorded by the first writer.
//! - [`boundary`]: the `complete` boundary (every window starting before it is final on every
//!   partition), as SQL for the API's queries and as a query of its own.
//!
//! What it does not own: the API's read queries. Those are built from request parameters (ranges,
//! bars, cursors, ticker patterns), so they live with the parameter grammar in the API crate; they
//! take the boundary from here. Everything that writes `window_prices`, its rollups, `latest_windows`,
//! `aggregator_progress` or `window_changes` goes through this crate — the aggregator, and every
//! test, benchmark and example that seeds them — so a change of the write path is made once.

pub mod boundary;
pub mod changes;
pub mod history;
pub mod partitions;
pub mod rows;
pub mod schema;
pub mod shape;
pub mod write;

pub use rows::{Accumulator, Flush, KeyedPrice, PriceKey, Progress, WindowRow};
pub use write::{claim, commit, commit_traced, Commit};
