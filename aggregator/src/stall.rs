//! A watchdog for partitions whose fetch stalled: records are readable on the broker, yet the
//! consumer has delivered none of them for a while.
//!
//! The cluster drill found it: an aggregator (re)started while one Kafka node was dead was assigned
//! a partition led by a live node, read up to the end readable at that moment, and then received
//! nothing more for minutes although the partition's readable end (librdkafka's own statistics)
//! moved on. Its last windows were never written. librdkafka has had bugs of this shape (fetchers
//! stuck after a broker restart); whatever the cause, a seek to the next offset to deliver starts
//! a new fetch, and losing nothing is then the job of the exactly-once machinery as for any seek.
//!
//! Kept free of I/O: the processor feeds it deliveries and the readable ends from the statistics
//! callback, and performs the seek it asks for.

use std::collections::HashMap;

/// How long records may stay readable but undelivered before the fetch is restarted. Longer than
/// a fetch round trip under load, shorter than the idle lag (so a restarted fetch still delivers
/// held-back records on time).
pub const STALL_AFTER_MS: i64 = 15_000;

/// Where a restarted fetch resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The partition's first offset (nothing delivered since it was assigned from the beginning).
    Beginning,
    Offset(i64),
}

/// The offsets of a partition that a read-committed consumer can read, from librdkafka's
/// statistics (`lo_offset`, `ls_offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readable {
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Clone, Copy)]
struct Watched {
    /// The next offset the consumer should deliver; `None` before the first delivery of a
    /// partition assigned from its beginning.
    next: Option<i64>,
    /// When a record was last delivered (or the partition assigned, or its fetch restarted).
    progressed_ms: i64,
}

/// Delivery progress of every assigned partition.
#[derive(Debug, Default)]
pub struct FetchWatch {
    partitions: HashMap<i32, Watched>,
}

impl FetchWatch {
    /// A partition was assigned to start at `start` (negative: from the beginning).
    pub fn assigned(&mut self, partition: i32, start: i64, now_ms: i64) {
        let next = (start >= 0).then_some(start);
        self.partitions.insert(
            partition,
            Watched {
                next,
                progressed_ms: now_ms,
            },
        );
    }

    pub fn revoked(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// The record at `offset` was delivered.
    pub fn delivered(&mut self, partition: i32, offset: i64, now_ms: i64) {
        if let Some(watched) = self.partitions.get_mut(&partition) {
            watched.next = Some(offset + 1);
            watched.progressed_ms = now_ms;
        }
    }

    /// Whether the fetch of `partition` has stalled, given what is readable on the broker (from
    /// the first offset `readable.start` to the offset after the last readable record,
    /// `readable.end`), and if so where to restart it. A restart counts as progress, so a fetch
    /// that stays stuck is restarted once per [`STALL_AFTER_MS`], not on every check.
    pub fn stalled(&mut self, partition: i32, readable: Readable, now_ms: i64) -> Option<Resume> {
        let watched = self.partitions.get_mut(&partition)?;
        let behind = readable.end > watched.next.unwrap_or(readable.start);
        if !behind || now_ms - watched.progressed_ms < STALL_AFTER_MS {
            return None;
        }
        watched.progressed_ms = now_ms;
        Some(watched.next.map_or(Resume::Beginning, Resume::Offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_000_000;

    fn upto(end: i64) -> Readable {
        Readable { start: 0, end }
    }

    #[test]
    fn a_partition_at_its_readable_end_is_idle_not_stalled() {
        let mut watch = FetchWatch::default();
        watch.assigned(0, 10, T);
        watch.delivered(0, 19, T + 1);
        assert_eq!(watch.stalled(0, upto(20), T + 10 * STALL_AFTER_MS), None);
    }

    #[test]
    fn readable_records_undelivered_for_too_long_restart_the_fetch_where_delivery_stopped() {
        let mut watch = FetchWatch::default();
        watch.assigned(2, 18_000, T);
        watch.delivered(2, 18_700, T + 100);
        assert_eq!(
            watch.stalled(2, upto(19_900), T + STALL_AFTER_MS),
            None,
            "not yet"
        );
        assert_eq!(
            watch.stalled(2, upto(19_900), T + 100 + STALL_AFTER_MS),
            Some(Resume::Offset(18_701))
        );
        assert_eq!(
            watch.stalled(2, upto(19_900), T + 200 + STALL_AFTER_MS),
            None,
            "a restart counts as progress"
        );
        assert_eq!(
            watch.stalled(2, upto(19_900), T + 100 + 2 * STALL_AFTER_MS),
            Some(Resume::Offset(18_701)),
            "still stuck: restarted again"
        );
    }

    #[test]
    fn deliveries_keep_a_lagging_partition_from_counting_as_stalled() {
        let mut watch = FetchWatch::default();
        watch.assigned(1, -1, T);
        for i in 0..100 {
            watch.delivered(1, i, T + i * 1_000);
            assert_eq!(watch.stalled(1, upto(1_000_000), T + i * 1_000), None);
        }
    }

    #[test]
    fn a_partition_assigned_from_the_beginning_restarts_there_until_something_arrives() {
        let mut watch = FetchWatch::default();
        watch.assigned(1, -1, T);
        assert_eq!(
            watch.stalled(1, upto(5), T + STALL_AFTER_MS),
            Some(Resume::Beginning)
        );
        let mut empty = FetchWatch::default();
        empty.assigned(1, -1, T);
        let trimmed = Readable { start: 5, end: 5 };
        assert_eq!(
            empty.stalled(1, trimmed, T + STALL_AFTER_MS),
            None,
            "nothing to read"
        );
    }

    #[test]
    fn partitions_not_assigned_are_never_stalled() {
        let mut watch = FetchWatch::default();
        watch.assigned(0, 0, T);
        watch.revoked(0);
        assert_eq!(watch.stalled(0, upto(100), T + 10 * STALL_AFTER_MS), None);
        assert_eq!(watch.stalled(7, upto(100), T + 10 * STALL_AFTER_MS), None);
    }
}
