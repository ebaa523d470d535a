//! The row types of the contract: a window's totals and their merge, a partition's progress, and a
//! batch of final windows to commit.
//!
//! [`Accumulator::merge`] is the merge the upsert in [`crate::write`] performs in SQL: sums and
//! counts add, min and max, open at the smallest key and close at the largest. Kept side by side so
//! that the in-memory fold and the stored rows cannot disagree about what "merged" means.

/// Where a price came from, ordered the way "first" and "last" are meant: by record timestamp,
/// then partition, then offset. Unique for a ticker, because a message holds a ticker at most once,
/// so the open and close of a window do not depend on which partition was read first, on replays,
/// or on how many instances share the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PriceKey {
    pub timestamp_ms: i64,
    pub partition: i32,
    pub offset: i64,
}

/// A price with the key that orders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedPrice {
    pub key: PriceKey,
    pub price: i64,
}

/// Sum, count, min and max of the prices of one ticker in one window, and its open (the price with
/// the smallest key) and close (the largest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accumulator {
    pub sum: i64,
    pub count: i64,
    pub min: i64,
    pub max: i64,
    pub open: KeyedPrice,
    pub close: KeyedPrice,
}

impl Accumulator {
    pub fn new(price: i64, key: PriceKey) -> Self {
        let keyed = KeyedPrice { key, price };
        Self {
            sum: price,
            count: 1,
            min: price,
            max: price,
            open: keyed,
            close: keyed,
        }
    }

    pub fn add(&mut self, price: i64, key: PriceKey) {
        self.merge(&Self::new(price, key));
    }

    /// Combines two partial aggregates of the same (ticker, window); what the database's upsert does.
    pub fn merge(&mut self, other: &Accumulator) {
        self.sum += other.sum;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.open.key < self.open.key {
            self.open = other.open;
        }
        if other.close.key > self.close.key {
            self.close = other.close;
        }
    }

    /// What the table's generated `average_price` column computes; only tests need it here.
    #[cfg(test)]
    pub fn average(&self) -> f64 {
        self.sum as f64 / self.count as f64
    }
}

/// A partition's durable progress: one row of `aggregator_progress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Offset to seek to on assignment; -1 means the beginning of the partition.
    pub resume_offset: i64,
    /// Offset after the last record accounted for; -1 when none was.
    pub next_offset: i64,
    pub watermark_ms: i64,
    pub closed_before_ms: i64,
    /// Invalid records below this offset are already in the dead-letter topic.
    pub dlq_next_offset: i64,
    /// Ownership epoch; a write with an older epoch is refused (fencing).
    pub epoch: i64,
    /// Offsets at or after `resume_offset` that were rejected as stamped too far in the future,
    /// ascending: the verdict a replay must repeat.
    pub future_offsets: Vec<i64>,
}

impl Progress {
    /// The progress of a partition never processed before.
    pub fn fresh() -> Self {
        Self {
            resume_offset: -1,
            next_offset: -1,
            watermark_ms: 0,
            closed_before_ms: 0,
            dlq_next_offset: 0,
            epoch: 0,
            future_offsets: Vec::new(),
        }
    }
}

/// One (ticker, window) contribution of this partition, ready to be added to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRow {
    pub ticker: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub totals: Accumulator,
}

/// Final windows and the progress that accounts for them, to be written in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    pub partition: i32,
    pub rows: Vec<WindowRow>,
    pub progress: Progress,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(timestamp_ms: i64, partition: i32, offset: i64) -> PriceKey {
        PriceKey {
            timestamp_ms,
            partition,
            offset,
        }
    }

    #[test]
    fn merged_partials_equal_one_accumulator() {
        let prices = [1950, 1712, 2092, 1800, 1901];
        let keys: Vec<PriceKey> = (0..5).map(|i| key(1_000 + i, 0, i)).collect();
        let mut whole = Accumulator::new(prices[0], keys[0]);
        (1..5).for_each(|i| whole.add(prices[i], keys[i]));
        let mut left = Accumulator::new(prices[0], keys[0]);
        left.add(prices[1], keys[1]);
        let mut right = Accumulator::new(prices[2], keys[2]);
        (3..5).for_each(|i| right.add(prices[i], keys[i]));
        // Merged either way round, as partitions may write the same window in any order.
        let mut right_first = right;
        right_first.merge(&left);
        left.merge(&right);
        assert_eq!(left, whole);
        assert_eq!(right_first, whole);
        assert_eq!(whole.average(), 9455.0 / 5.0);
        assert_eq!((whole.min, whole.max), (1712, 2092));
        assert_eq!((whole.open.price, whole.close.price), (1950, 1901));
    }

    #[test]
    fn open_and_close_go_by_timestamp_then_partition_then_offset() {
        let mut acc = Accumulator::new(10, key(2_000, 1, 5));
        acc.add(20, key(1_000, 2, 9)); // earlier timestamp: the open
        acc.add(30, key(3_000, 0, 1)); // later timestamp: the close
        acc.add(40, key(1_000, 1, 7)); // same timestamp, lower partition: the open now
        acc.add(50, key(3_000, 0, 2)); // same timestamp and partition, higher offset: the close
        assert_eq!((acc.open.price, acc.close.price), (40, 50));
        // Arrival order does not matter.
        let mut reversed = Accumulator::new(50, key(3_000, 0, 2));
        for (price, k) in [
            (40, key(1_000, 1, 7)),
            (30, key(3_000, 0, 1)),
            (20, key(1_000, 2, 9)),
            (10, key(2_000, 1, 5)),
        ] {
            reversed.add(price, k);
        }
        assert_eq!(reversed, acc);
    }
}
