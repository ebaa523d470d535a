//! The stocks to quote and the random messages made from them.
//!
//! Each message holds 1 to `min(3, stocks)` entries (the count uniform), distinct names drawn
//! uniformly without replacement, and each price an integer uniform in
//! `[ceil(0.9 × mean), floor(1.1 × mean)]`. With a seed the sequence is reproducible.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Deserializer};
use tickpipe_common::message::stocks::{price_range, SAMPLE_STOCKS};
use tickpipe_common::message::{
    validate_ticker_name, Tick, TickerMessage, MAX_PRICE, MAX_TICKERS_PER_MESSAGE,
};

/// One stock and its mean price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stock {
    pub(crate) name: String,
    pub(crate) mean_price: i64,
}

impl Stock {
    /// Inclusive price bounds: `[ceil(0.9 × mean), floor(1.1 × mean)]`, in integer arithmetic.
    pub(crate) fn price_range(&self) -> (i64, i64) {
        price_range(self.mean_price)
    }
}

/// The configured stocks, parsed from `NAME=MEAN,NAME=MEAN,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockList(Vec<Stock>);

/// The sample stocks of the wire schema crate, which the tests quote too.
impl Default for StockList {
    fn default() -> Self {
        Self(
            SAMPLE_STOCKS
                .iter()
                .map(|s| Stock {
                    name: s.name.to_owned(),
                    mean_price: s.mean_price,
                })
                .collect(),
        )
    }
}

impl FromStr for StockList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut stocks: Vec<Stock> = Vec::new();
        for entry in text.split(',').map(str::trim) {
            let bad = |why: &str| {
                format!(
                    "entry {entry:?} {why}; expected NAME=MEAN pairs such as AMZN=1902,MSFT=107"
                )
            };
            let (name, mean) = entry.split_once('=').ok_or_else(|| bad("has no '='"))?;
            let (name, mean) = (name.trim(), mean.trim());
            validate_ticker_name(name).map_err(|e| bad(&e))?;
            let mean_price: i64 = mean
                .parse()
                .map_err(|_| bad("has a mean that is not an integer"))?;
            if !(1..=MAX_PRICE / 2).contains(&mean_price) {
                return Err(bad("has a mean outside 1..=500000000"));
            }
            if stocks.iter().any(|s| s.name == name) {
                return Err(bad("repeats a name"));
            }
            stocks.push(Stock {
                name: name.to_owned(),
                mean_price,
            });
        }
        Ok(Self(stocks))
    }
}

impl fmt::Display for StockList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = self
            .0
            .iter()
            .map(|s| format!("{}={}", s.name, s.mean_price))
            .collect();
        f.write_str(&pairs.join(","))
    }
}

impl<'de> Deserialize<'de> for StockList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Draws random messages from a stock list.
#[derive(Debug)]
pub struct MessageSource {
    stocks: Vec<Stock>,
    rng: ChaCha8Rng,
}

impl MessageSource {
    /// A source seeded with `seed`, or from the operating system's entropy.
    pub fn new(stocks: &StockList, seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_entropy(),
        };
        Self {
            stocks: stocks.0.clone(),
            rng,
        }
    }

    /// The next message.
    pub fn next_message(&mut self) -> TickerMessage<'_> {
        let most = self.stocks.len().min(MAX_TICKERS_PER_MESSAGE);
        let count = self.rng.gen_range(1..=most);
        let chosen = sample(&mut self.rng, self.stocks.len(), count);
        let mut tickers = Vec::with_capacity(count);
        for index in chosen.iter() {
            let stock = &self.stocks[index];
            let (low, high) = stock.price_range();
            tickers.push(Tick {
                name: Cow::Borrowed(stock.name.as_str()),
                price: self.rng.gen_range(low..=high),
            });
        }
        TickerMessage { tickers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn price_bounds_round_inwards() {
        let amzn = Stock {
            name: "AMZN".into(),
            mean_price: 1902,
        };
        assert_eq!(amzn.price_range(), (1712, 2092)); // 1711.8 -> 1712, 2092.2 -> 2092
        let msft = Stock {
            name: "MSFT".into(),
            mean_price: 107,
        };
        assert_eq!(msft.price_range(), (97, 117)); // 96.3 -> 97, 117.7 -> 117
        let exact = Stock {
            name: "X".into(),
            mean_price: 100,
        };
        assert_eq!(exact.price_range(), (90, 110));
    }

    #[test]
    fn parses_and_prints_the_default_list() {
        let list: StockList = "AMZN=1902, MSFT=107,AAPL=215".parse().expect("valid");
        assert_eq!(list, StockList::default());
        assert_eq!(list.to_string(), "AMZN=1902,MSFT=107,AAPL=215");
    }

    #[test]
    fn rejects_malformed_lists_naming_the_entry() {
        for (text, entry) in [
            ("AMZN=1902,MSFT", "MSFT"),
            ("AMZN=abc", "AMZN=abc"),
            ("amzn=10", "amzn=10"),
            ("AMZN=0", "AMZN=0"),
            ("AMZN=1,AMZN=2", "AMZN=2"),
            ("", "\"\""),
        ] {
            let error = text.parse::<StockList>().expect_err(text);
            assert!(error.contains(entry), "{text}: {error}");
        }
    }

    #[test]
    fn messages_follow_the_contract() {
        let list = StockList::default();
        let bounds: HashMap<String, (i64, i64)> = list
            .0
            .iter()
            .map(|s| (s.name.clone(), s.price_range()))
            .collect();
        let mut source = MessageSource::new(&list, Some(7));
        let mut sizes = [0usize; 4];
        for _ in 0..30_000 {
            let message = source.next_message();
            message.validate().expect("valid message");
            sizes[message.tickers.len()] += 1;
            for tick in &message.tickers {
                let (low, high) = bounds[tick.name.as_ref()];
                assert!((low..=high).contains(&tick.price), "{tick:?}");
            }
        }
        // Counts 1, 2, 3 are uniform: each near 10,000 (binomial sd ~82).
        for size in 1..=3 {
            assert!((9_500..=10_500).contains(&sizes[size]), "{sizes:?}");
        }
    }

    #[test]
    fn one_stock_gives_single_entry_messages() {
        let list: StockList = "ONLY=50".parse().expect("valid");
        let mut source = MessageSource::new(&list, Some(1));
        for _ in 0..100 {
            assert_eq!(source.next_message().tickers.len(), 1);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_messages() {
        let list = StockList::default();
        let run = |seed| {
            let mut source = MessageSource::new(&list, Some(seed));
            (0..100)
                .map(|_| source.next_message().encode())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }
}
