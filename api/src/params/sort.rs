//! `sort`: the direction of a page's order, `asc` (the default, oldest first) or `desc` (newest
//! first), and the SQL words that follow from it.
//!
//! What is ordered is the form's own key, reversed as a whole for `desc`: (window start, ticker)
//! for ranges and bars, the ticker for the latest prices. Reversing the whole key, rather than only
//! the time, is what makes a `desc` page exactly the reverse of the `asc` one and lets the same
//! btree indexes serve both, scanned backwards.
//!
//! Only the two lower-case words are accepted, as the OpenAPI document's enum lists them: a
//! client generated from it sends nothing else, and anything else is a 400.

/// The order of a page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Sort {
    /// Oldest first (ranges, bars), or tickers in byte order (latest): the order before `sort`
    /// existed.
    #[default]
    Asc,
    /// Newest first, each window start's tickers in reverse order; the next page continues to
    /// older entries.
    Desc,
}

/// The values `sort` accepts, the default first.
pub(crate) const VALUES: [&str; 2] = ["asc", "desc"];

impl Sort {
    /// Reads the parameter's value; the error names it and the accepted values.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        match value {
            "asc" => Ok(Self::Asc),
            "desc" => Ok(Self::Desc),
            _ => Err(format!(
                "sort {value:?} is not valid; use asc (oldest first, the default) or desc (newest first)"
            )),
        }
    }

    /// The parameter value that asks for this order.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }

    /// The comparison that keeps what comes after a key in this order (keyset pagination).
    pub(crate) fn after(self) -> &'static str {
        match self {
            Self::Asc => ">",
            Self::Desc => "<",
        }
    }

    /// What follows each `ORDER BY` term.
    pub(crate) fn direction(self) -> &'static str {
        match self {
            Self::Asc => "",
            Self::Desc => " DESC",
        }
    }

    /// The aggregate that finds the first key in this order: `min` ascending, `max` descending.
    pub(crate) fn first(self) -> &'static str {
        match self {
            Self::Asc => "min",
            Self::Desc => "max",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_lower_case_words_are_accepted() {
        for value in VALUES {
            assert_eq!(Sort::parse(value).map(Sort::name), Ok(value));
        }
        assert_eq!(VALUES[0], Sort::default().name(), "asc is the default");
        for value in ["", "up", "ASC", "Desc", " asc", "asc ", "descending", "-1"] {
            let error = Sort::parse(value).expect_err(value);
            assert!(error.starts_with(&format!("sort {value:?}")), "{error}");
            assert!(error.contains("asc") && error.contains("desc"), "{error}");
        }
    }
}
