//! The one small deterministic random generator of the tests, benchmarks and examples: SplitMix64,
//! so that a failure replays from its seed and no test needs a random-number crate. (The generator
//! service draws its messages with `rand`'s ChaCha8; this is not that.)
//!
//! [`Rng::sample_message`] makes messages as the generator does from the sample stocks of
//! `tickpipe_message::stocks`: 1 to 3 distinct stocks, the count uniform, each price uniform in
//! the stock's range.

use std::borrow::Cow;

use tickpipe_common::message::stocks::SAMPLE_STOCKS;
use tickpipe_common::message::{Tick, TickerMessage};

/// SplitMix64: every seed, zero included, gives a full-period sequence.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (the modulo bias is below 2^-40 for the bounds tests use). `n` must not be 0.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no value");
        self.next_u64() % n
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        assert!(low <= high, "between({low}, {high}) is empty");
        let span = high.abs_diff(low).saturating_add(1);
        low.wrapping_add_unsigned(self.below(span))
    }

    /// A uniform index into a slice of `len` items.
    pub fn index(&mut self, len: usize) -> usize {
        // usize fits in u64 on every supported target, and the result is below `len`.
        self.below(len as u64) as usize
    }

    /// One of `items`, uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// A message as the generator makes them from the sample stocks.
    pub fn sample_message(&mut self) -> TickerMessage<'static> {
        let mut order: Vec<usize> = (0..SAMPLE_STOCKS.len()).collect();
        let count = self.between(1, SAMPLE_STOCKS.len() as i64) as usize;
        // A partial Fisher-Yates shuffle: the first `count` are distinct, uniformly chosen.
        for i in 0..count {
            let j = i + self.index(order.len() - i);
            order.swap(i, j);
        }
        let tickers = order[..count]
            .iter()
            .map(|&i| {
                let stock = SAMPLE_STOCKS[i];
                let (low, high) = stock.price_range();
                Tick {
                    name: Cow::Borrowed(stock.name),
                    price: self.between(low, high),
                }
            })
            .collect();
        TickerMessage { tickers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..50).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(draw(0).iter().any(|&x| x != 0), "a zero seed is fine");
    }

    #[test]
    fn draws_stay_in_their_bounds_and_reach_both_ends() {
        let mut rng = Rng::new(1);
        let draws: Vec<i64> = (0..2_000).map(|_| rng.between(-3, 3)).collect();
        assert!(draws.iter().all(|d| (-3..=3).contains(d)));
        assert!(draws.contains(&-3) && draws.contains(&3));
        assert_eq!(rng.between(i64::MIN, i64::MIN), i64::MIN);
        let _ = rng.between(i64::MIN, i64::MAX);
        assert!((0..1_000).all(|_| rng.below(10) < 10));
        assert_eq!(*rng.pick(&["only"]), "only");
    }

    #[test]
    fn sample_messages_follow_the_contract() {
        let mut rng = Rng::new(3);
        let mut sizes = [0usize; 4];
        for _ in 0..3_000 {
            let message = rng.sample_message();
            message.validate().expect("a valid message");
            sizes[message.tickers.len()] += 1;
            for tick in &message.tickers {
                let stock = SAMPLE_STOCKS
                    .iter()
                    .find(|s| s.name == tick.name)
                    .expect("a sample stock");
                let (low, high) = stock.price_range();
                assert!((low..=high).contains(&tick.price), "{tick:?}");
            }
        }
        assert!(sizes[1..].iter().all(|&n| n > 800), "{sizes:?}");
    }
}
