//! Instants as parameters (`startTime`, `endTime`, and the instant inside a cursor): their grammar,
//! the accepted range and the pattern the OpenAPI document publishes for them.
//!
//! One range for every time input, so that nothing a client may send fails in PostgreSQL; one
//! parser by hand, because chrono's RFC 3339 parser is more lenient than the published pattern.

use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};

/// Earliest accepted time, in Unix seconds: 0000-01-01T00:00:00+23:59, the earliest instant RFC 3339
/// can write. Every time input (`startTime`, `endTime`, the instant in a cursor) must lie between
/// [`MIN_TIME_SECS`] and [`MAX_TIME_SECS`] (inclusive, with any fraction of that last second).
///
/// Why this range: PostgreSQL's `timestamptz` stores 4713 BC to 294276 AD, so any narrower range keeps
/// it from failing (a `-300000000000` used to be a 500), and this one is exactly what RFC 3339 text can
/// express with its four-digit years and offsets up to ±23:59. A narrower UTC range such as
/// 0001-01-01T00:00:00Z.. would reject well-formed RFC 3339 such as `0001-01-01T00:00:00+01:00`, which
/// the OpenAPI `date-time` format promises clients they may send.
pub const MIN_TIME_SECS: i64 = -62_167_305_540;
/// Latest accepted time, in Unix seconds: 9999-12-31T23:59:59-23:59, the latest instant RFC 3339 can
/// write (with any fraction of the second). See [`MIN_TIME_SECS`].
pub const MAX_TIME_SECS: i64 = 253_402_387_139;
/// The accepted range as the error messages and the documentation state it.
pub(crate) const TIME_RANGE_TEXT: &str =
    "from 0000-01-01T00:00:00+23:59 to 9999-12-31T23:59:59.999999999-23:59 \
     (Unix seconds -62167305540 to 253402387139)";
/// Most digits of a second's fraction accepted: nanoseconds, what the parser keeps (PostgreSQL then
/// keeps microseconds).
const MAX_FRACTION_DIGITS: usize = 9;

/// RFC 3339 `date-time` (section 5.6) with an upper-case `T` and `Z`, seconds 00-59 (no leap
/// second) and at most nine fraction digits. Every text it matches that names a real calendar
/// day lies inside the accepted time range.
pub static PATTERN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "^[0-9]{{4}}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\
         (?:\\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
    )
});

/// The instant `ms` milliseconds after the epoch, if it lies in the accepted time range.
pub(crate) fn from_millis(ms: i64) -> Option<DateTime<Utc>> {
    let seconds = ms.div_euclid(1000);
    if !(MIN_TIME_SECS..=MAX_TIME_SECS).contains(&seconds) {
        return None;
    }
    Utc.timestamp_millis_opt(ms).single()
}

/// The value of the time parameter `name`: RFC 3339 text of the published shape, or integer Unix
/// seconds, inside the accepted range. The error names the parameter and the accepted forms.
pub(crate) fn parse(name: &str, value: &str) -> Result<DateTime<Utc>, String> {
    let invalid = || {
        format!("{name} {value:?} is not a time; use RFC 3339 such as 2026-11-27T10:00:00Z (upper-case T and Z, seconds 00-59, at most {MAX_FRACTION_DIGITS} fraction digits), or integer Unix seconds")
    };
    let out_of_range =
        || format!("{name} {value:?} is outside the accepted range; use a time {TIME_RANGE_TEXT}");
    if let Ok(seconds) = value.parse::<i64>() {
        if !(MIN_TIME_SECS..=MAX_TIME_SECS).contains(&seconds) {
            return Err(out_of_range());
        }
        return Utc.timestamp_opt(seconds, 0).single().ok_or_else(invalid);
    }
    if !has_rfc3339_shape(value) {
        return Err(invalid());
    }
    // The shape is right; chrono checks the calendar (no 30 February). Four-digit years with
    // offsets up to ±23:59 cannot leave the accepted range, but the check stays as a guard.
    let time = DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid())?;
    if !(MIN_TIME_SECS..=MAX_TIME_SECS).contains(&time.timestamp()) {
        return Err(out_of_range());
    }
    Ok(time)
}

/// Whether `text` matches [`PATTERN`] (the tests hold the two together). By hand, because
/// chrono's RFC 3339 parser is more lenient (lower-case `t`, a space, leap seconds, any number of
/// fraction digits) than the pattern the document publishes.
fn has_rfc3339_shape(text: &str) -> bool {
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let is = |i: usize, c: u8| b.get(i) == Some(&c);
    let two = |i: usize, low: u8, high: u8| {
        digit(i) && digit(i + 1) && (low..=high).contains(&((b[i] - b'0') * 10 + (b[i + 1] - b'0')))
    };
    let date_time = (0..4).all(digit)
        && is(4, b'-')
        && two(5, 1, 12)
        && is(7, b'-')
        && two(8, 1, 31)
        && is(10, b'T')
        && two(11, 0, 23)
        && is(13, b':')
        && two(14, 0, 59)
        && is(16, b':')
        && two(17, 0, 59);
    if !date_time {
        return false;
    }
    let mut i = 19;
    if is(i, b'.') {
        let fraction = (i + 1..b.len()).take_while(|&j| digit(j)).count();
        if !(1..=MAX_FRACTION_DIGITS).contains(&fraction) {
            return false;
        }
        i += 1 + fraction;
    }
    match b.get(i) {
        Some(b'Z') => b.len() == i + 1,
        Some(b'+' | b'-') => {
            two(i + 1, 0, 23) && is(i + 3, b':') && two(i + 4, 0, 59) && b.len() == i + 6
        }
        _ => false,
    }
}
