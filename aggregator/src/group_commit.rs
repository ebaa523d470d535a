//! Group commit: how often one partition's closed windows are written.
//!
//! A backfill (or any burst) closes a window every few records. Writing each as it closes costs a
//! transaction per window and, with the rollups, re-upserts the same minute, hour and day bars once
//! per window: at 1,000 tickers that halved the throughput. Holding a partition's closed windows
//! until [`MIN_INTERVAL`] has passed since its last write folds many windows into one transaction
//! and their bars into one upsert per bar. Live traffic closes a window every window width, long
//! after the interval, so it is written at once: the delay only exists while windows close faster
//! than four times a second. Held windows are still open in the partition's state, so its stored
//! progress never passes them and a crash replays them (exactness does not depend on the timing).

use std::collections::HashMap;

/// The shortest time between two writes of one partition, in milliseconds.
pub(crate) const MIN_INTERVAL_MS: i64 = 250;

/// When each partition last wrote, in Unix ms. The processor asks with its coarse clock first
/// (refreshed every few hundred polls: reading the clock per record cost more than handling it) and
/// reads the real one before holding windows back, since on a slow stream the coarse one can be
/// seconds old.
#[derive(Debug, Default)]
pub(crate) struct WriteSchedule {
    last_write_ms: HashMap<i32, i64>,
}

impl WriteSchedule {
    /// Whether `partition` may write at `now_ms`: it never wrote, or did [`MIN_INTERVAL_MS`] ago.
    pub(crate) fn due(&self, partition: i32, now_ms: i64) -> bool {
        self.last_write_ms
            .get(&partition)
            .is_none_or(|&last| now_ms.saturating_sub(last) >= MIN_INTERVAL_MS)
    }

    pub(crate) fn wrote(&mut self, partition: i32, now_ms: i64) {
        self.last_write_ms.insert(partition, now_ms);
    }

    /// A revoked partition: whoever owns it next starts with a clean slate.
    pub(crate) fn forget(&mut self, partition: i32) {
        self.last_write_ms.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_writes_at_once_then_once_per_interval() {
        let mut schedule = WriteSchedule::default();
        assert!(schedule.due(0, 1_000), "never wrote");
        schedule.wrote(0, 1_000);
        assert!(!schedule.due(0, 1_000));
        assert!(!schedule.due(0, 1_000 + MIN_INTERVAL_MS - 1));
        assert!(schedule.due(0, 1_000 + MIN_INTERVAL_MS));
        assert!(schedule.due(1, 1_000), "partitions are independent");
        // A clock stepped back never holds a partition for longer than it stepped.
        assert!(!schedule.due(0, 900));
        schedule.forget(0);
        assert!(schedule.due(0, 900), "forgotten");
    }
}
