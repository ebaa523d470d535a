//! The sample stocks: the generator's default list, and what tests, benchmarks and examples quote.
//!
//! They live beside the wire schema so that the generator and every test reach them without one
//! depending on the other. A stock is quoted at integer prices in
//! `[ceil(0.9 × mean), floor(1.1 × mean)]` ([`price_range`]).

/// A stock and its mean price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleStock {
    pub name: &'static str,
    pub mean_price: i64,
}

impl SampleStock {
    /// Inclusive bounds of the prices this stock is quoted at; see [`price_range`].
    pub fn price_range(&self) -> (i64, i64) {
        price_range(self.mean_price)
    }
}

/// The generator's default stocks (`GENERATOR_STOCKS=AMZN=1902,MSFT=107,AAPL=215`).
pub const SAMPLE_STOCKS: [SampleStock; 3] = [
    SampleStock {
        name: "AMZN",
        mean_price: 1902,
    },
    SampleStock {
        name: "MSFT",
        mean_price: 107,
    },
    SampleStock {
        name: "AAPL",
        mean_price: 215,
    },
];

/// Inclusive price bounds for a stock whose mean is `mean_price`:
/// `[ceil(0.9 × mean), floor(1.1 × mean)]`, in integer arithmetic.
pub fn price_range(mean_price: i64) -> (i64, i64) {
    let low = (9 * mean_price + 9) / 10;
    let high = 11 * mean_price / 10;
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_bounds_round_inwards() {
        assert_eq!(price_range(1902), (1712, 2092)); // 1711.8 -> 1712, 2092.2 -> 2092
        assert_eq!(price_range(107), (97, 117)); // 96.3 -> 97, 117.7 -> 117
        assert_eq!(price_range(100), (90, 110));
    }

    #[test]
    fn the_sample_stocks_are_valid_tickers() {
        for stock in SAMPLE_STOCKS {
            crate::validate_ticker_name(stock.name).expect("a valid name");
            assert!(stock.mean_price > 0);
        }
    }
}
