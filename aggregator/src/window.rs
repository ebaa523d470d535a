//! Tumbling event-time windows aligned to the Unix epoch, and the per-ticker sums kept in them.
//!
//! Sums and counts (not averages) are kept so that contributions from different partitions, or
//! different instances, merge by addition and the average stays exact: sum of all prices / count.

/// Start (Unix ms) of the window of width `width_ms` that holds `timestamp_ms`.
pub fn window_start(timestamp_ms: i64, width_ms: i64) -> i64 {
    timestamp_ms.div_euclid(width_ms) * width_ms
}

/// Sum, count, min and max of the prices of one ticker in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accumulator {
    pub sum: i64,
    pub count: i64,
    pub min: i64,
    pub max: i64,
}

impl Accumulator {
    pub fn new(price: i64) -> Self {
        Self {
            sum: price,
            count: 1,
            min: price,
            max: price,
        }
    }

    pub fn add(&mut self, price: i64) {
        self.sum += price;
        self.count += 1;
        self.min = self.min.min(price);
        self.max = self.max.max(price);
    }

    /// Combines two partial aggregates of the same (ticker, window); what the database's upsert does.
    pub fn merge(&mut self, other: &Accumulator) {
        self.sum += other.sum;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn average(&self) -> f64 {
        self.sum as f64 / self.count as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_epoch() {
        let w = 30_000;
        // 2026-11-27T10:00:29.999Z and 10:00:30.000Z fall in neighbouring windows.
        let t = 1_795_773_600_000; // 10:00:00Z
        assert_eq!(window_start(t, w), t);
        assert_eq!(window_start(t + 29_999, w), t);
        assert_eq!(window_start(t + 30_000, w), t + 30_000);
        assert_eq!(window_start(-1, w), -30_000);
    }

    #[test]
    fn merged_partials_equal_one_accumulator() {
        let prices = [1950, 1712, 2092, 1800, 1901];
        let mut whole = Accumulator::new(prices[0]);
        prices[1..].iter().for_each(|&p| whole.add(p));
        let mut left = Accumulator::new(prices[0]);
        left.add(prices[1]);
        let mut right = Accumulator::new(prices[2]);
        prices[3..].iter().for_each(|&p| right.add(p));
        left.merge(&right);
        assert_eq!(left, whole);
        assert_eq!(whole.average(), 9455.0 / 5.0);
        assert_eq!((whole.min, whole.max), (1712, 2092));
    }
}
