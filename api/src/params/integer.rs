//! Canonical decimal integers (`-?[1-9][0-9]*` or `0`): the one parser every integer inside a
//! parameter goes through (the instant and width in a cursor, a stream's change id), and regular
//! expressions for ranges of them, so that the OpenAPI document can state a parameter's exact shape
//! even where a bound is buried inside an opaque token (the instant in a cursor).
//!
//! The patterns use only the syntax that ECMA-262 (JSON Schema's dialect), Python's `re` (which
//! Schemathesis generates from) and Rust's `regex` (which the tests check against) read alike:
//! groups, alternation, character classes and counted repetition.

/// `-?[1-9][0-9]*` or `0`, as the API writes integers; `+1`, `01`, `-0` and anything outside `i64`
/// are refused. What [`integer_range`] matches, within its bounds.
pub(crate) fn parse_canonical(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    canonical.then(|| text.parse().ok()).flatten()
}

/// A run of digit positions: `count` digits, each between `low` and `high` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Digits {
    low: u8,
    high: u8,
    count: usize,
}

/// One alternative: a sequence of digit runs.
type Alternative = Vec<Digits>;

/// The canonical decimal forms (no sign, no leading zero except `0` itself) of `low..=high`, as
/// alternatives of digit runs.
fn unsigned_range(low: u64, high: u64) -> Vec<Alternative> {
    let mut alternatives = Vec::new();
    if low > high {
        return alternatives;
    }
    let (low_len, high_len) = (decimal_len(low), decimal_len(high));
    for len in low_len..=high_len {
        // Numbers of exactly `len` digits: the first digit is not zero unless the number is 0.
        let smallest = if len == 1 {
            0
        } else {
            10u64.pow(len as u32 - 1)
        };
        let largest = 10u64
            .checked_pow(len as u32)
            .map_or(u64::MAX, |p| p.saturating_sub(1));
        let (from, to) = (low.max(smallest), high.min(largest));
        if from <= to {
            alternatives.extend(fixed_width(&digits_of(from, len), &digits_of(to, len)));
        }
    }
    alternatives
}

/// Every digit string of the same width between `low` and `high` (both that width).
fn fixed_width(low: &[u8], high: &[u8]) -> Vec<Alternative> {
    let (Some((&first_low, rest_low)), Some((&first_high, rest_high))) =
        (low.split_first(), high.split_first())
    else {
        return vec![Vec::new()];
    };
    let prefixed = |digit: u8, tails: Vec<Alternative>| -> Vec<Alternative> {
        tails
            .into_iter()
            .map(|tail| prepend(digit, digit, tail))
            .collect()
    };
    if first_low == first_high {
        return prefixed(first_low, fixed_width(rest_low, rest_high));
    }
    let mut alternatives = Vec::new();
    let zeros = vec![0; rest_low.len()];
    let nines = vec![9; rest_high.len()];
    let mut full_from = first_low;
    if rest_low != zeros.as_slice() {
        alternatives.extend(prefixed(first_low, fixed_width(rest_low, &nines)));
        full_from += 1;
    }
    let full_to = if rest_high == nines.as_slice() {
        first_high
    } else {
        first_high - 1
    };
    if full_from <= full_to {
        let tail = if rest_low.is_empty() {
            Vec::new()
        } else {
            vec![Digits {
                low: 0,
                high: 9,
                count: rest_low.len(),
            }]
        };
        alternatives.push(prepend(full_from, full_to, tail));
    }
    if rest_high != nines.as_slice() {
        alternatives.extend(prefixed(first_high, fixed_width(&zeros, rest_high)));
    }
    alternatives
}

/// Puts one digit position in front, merging it into the first run when it is the same class.
fn prepend(low: u8, high: u8, mut tail: Alternative) -> Alternative {
    match tail.first_mut() {
        Some(first) if first.low == low && first.high == high => first.count += 1,
        _ => tail.insert(
            0,
            Digits {
                low,
                high,
                count: 1,
            },
        ),
    }
    tail
}

fn decimal_len(value: u64) -> usize {
    value.checked_ilog10().map_or(1, |log| log as usize + 1)
}

fn digits_of(value: u64, len: usize) -> Vec<u8> {
    let text = format!("{value:0len$}");
    text.bytes().map(|b| b - b'0').collect()
}

/// How one character of a decimal integer is spelled in the pattern.
pub(crate) trait Spelling {
    /// A digit between `low` and `high`.
    fn digit(low: u8, high: u8) -> String;
    /// The minus sign.
    fn minus() -> String;
}

/// The decimal text itself: digits spelled as themselves.
#[derive(Debug)]
pub(crate) struct Decimal;

impl Spelling for Decimal {
    fn digit(low: u8, high: u8) -> String {
        if low == high {
            low.to_string()
        } else {
            format!("[{low}-{high}]")
        }
    }

    fn minus() -> String {
        "-".to_owned()
    }
}

/// The decimal text hex-encoded byte by byte, lower case (`"-12"` is `2d3132`).
#[derive(Debug)]
pub(crate) struct Hex;

impl Spelling for Hex {
    fn digit(low: u8, high: u8) -> String {
        if low == high {
            format!("3{low}")
        } else {
            format!("3[{low}-{high}]")
        }
    }

    fn minus() -> String {
        "2d".to_owned()
    }
}

/// A group matching exactly the canonical decimal integers in `low..=high` (a `-` sign for
/// negatives, no `+`, no leading zeros, no `-0`), spelled by `S`. Not anchored.
pub(crate) fn integer_range<S: Spelling>(low: i64, high: i64) -> String {
    let render = |alternative: &Alternative| -> String {
        alternative
            .iter()
            .map(|run| {
                let digit = S::digit(run.low, run.high);
                let atom = if digit.len() > 1 && run.count > 1 {
                    format!("(?:{digit})")
                } else {
                    digit
                };
                if run.count == 1 {
                    atom
                } else {
                    format!("{atom}{{{}}}", run.count)
                }
            })
            .collect()
    };
    let mut alternatives = Vec::new();
    if low < 0 {
        let magnitude_low = if high < 0 { high.unsigned_abs() } else { 1 };
        for alternative in unsigned_range(magnitude_low, low.unsigned_abs()) {
            alternatives.push(format!("{}{}", S::minus(), render(&alternative)));
        }
    }
    if high >= 0 {
        for alternative in unsigned_range(low.max(0).unsigned_abs(), high.unsigned_abs()) {
            alternatives.push(render(&alternative));
        }
    }
    format!("(?:{})", alternatives.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(low: i64, high: i64) -> regex::Regex {
        regex::Regex::new(&format!("^{}$", integer_range::<Decimal>(low, high))).expect("regex")
    }

    #[test]
    fn small_ranges_match_exactly_their_members() {
        let ranges = [
            (0, 0),
            (0, 9),
            (3, 7),
            (0, 10),
            (7, 123),
            (10, 99),
            (19, 91),
            (100, 999),
            (-1, 1),
            (-123, -7),
            (-250, 300),
            (-1000, 0),
            (1, 10_000),
        ];
        for (low, high) in ranges {
            let re = matcher(low, high);
            for n in -1_200..=12_000 {
                assert_eq!(
                    re.is_match(&n.to_string()),
                    (low..=high).contains(&n),
                    "{n} in {low}..={high}: {re}"
                );
            }
            for text in ["", "-", "-0", "+1", "01", "00", " 1", "1 "] {
                assert!(!re.is_match(text), "{text:?} in {low}..={high}");
            }
        }
    }

    #[test]
    fn the_parser_takes_exactly_the_canonical_integers_the_patterns_match() {
        let re = matcher(i64::MIN + 1, i64::MAX);
        for text in [
            "0",
            "7",
            "-7",
            "10",
            "-9223372036854775807",
            "9223372036854775807",
        ] {
            assert_eq!(parse_canonical(text), text.parse().ok(), "{text}");
            assert!(re.is_match(text), "{text}");
        }
        for text in [
            "",
            "-",
            "-0",
            "+1",
            "01",
            "-01",
            "00",
            " 1",
            "1 ",
            "1.0",
            "1e3",
            "x",
            "9223372036854775808",
            "99999999999999999999",
        ] {
            assert_eq!(parse_canonical(text), None, "{text}");
            assert!(!re.is_match(text), "{text}");
        }
    }

    #[test]
    fn large_ranges_hold_at_their_edges() {
        let (low, high) = (-62_167_305_540_000_i64, 253_402_387_139_999_i64);
        let re = matcher(low, high);
        for edge in [low, high, 0, -1, 1] {
            for n in [edge - 1, edge, edge + 1] {
                assert_eq!(
                    re.is_match(&n.to_string()),
                    (low..=high).contains(&n),
                    "{n}"
                );
            }
        }
        for n in [i64::MIN, i64::MAX, 999_999_999_999_999, -99_999_999_999_999] {
            assert!(!re.is_match(&n.to_string()), "{n}");
        }
    }

    #[test]
    fn hex_spelling_matches_the_hex_of_the_decimal_text() {
        let re = regex::Regex::new(&format!("^{}$", integer_range::<Hex>(-250, 300))).expect("re");
        let hex =
            |n: i64| -> String { n.to_string().bytes().map(|b| format!("{b:02x}")).collect() };
        for n in -400..=400 {
            assert_eq!(re.is_match(&hex(n)), (-250..=300).contains(&n), "{n}");
        }
    }
}
