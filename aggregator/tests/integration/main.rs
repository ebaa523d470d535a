//! The aggregator against the real Kafka broker and PostgreSQL, as one test binary: windows and
//! lateness, crashes and restarts, hostile input. `helpers` holds what they share.

mod adversarial;
mod changes;
mod crash;
mod exported;
mod helpers;
mod operators;
mod shape;
mod windows;
