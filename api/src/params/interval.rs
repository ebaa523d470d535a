//! The `interval` parameter: bar widths, their names and the epoch alignment of bars.
//!
//! The aggregator writes one row per (ticker, window) of `AGGREGATOR_WINDOW_SECS`; the API can roll
//! those windows up into bars of a larger width. A bar is a union of whole windows, so its width
//! must be a multiple of the window; it must also divide a day, so that bars aligned to the Unix
//! epoch are aligned to every UTC midnight. The accepted widths are the window itself (the default)
//! and those of [`CANDIDATES`] that are multiples of it.

use chrono::{DateTime, Utc};

/// Seconds in a day: every window and bar width divides it.
pub(crate) const DAY_SECS: u32 = 86_400;

/// The bar widths offered besides the window itself, in seconds, ascending. Each divides a day.
pub(crate) const CANDIDATES: [u32; 8] = [30, 60, 300, 900, 1800, 3600, 14_400, 86_400];

/// Default of `AGGREGATOR_WINDOW_SECS`, as in the aggregator.
pub(crate) const DEFAULT_WINDOW_SECS: u32 = 30;

/// The aggregator's window width: whole seconds that divide a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window(Interval);

impl Default for Window {
    fn default() -> Self {
        Self(Interval(DEFAULT_WINDOW_SECS))
    }
}

impl Window {
    /// `None` unless `secs` is positive and divides a day.
    pub(crate) fn new(secs: u32) -> Option<Self> {
        (secs > 0 && DAY_SECS % secs == 0).then_some(Self(Interval(secs)))
    }

    /// The window as an interval: one entry per stored row.
    pub(crate) fn interval(self) -> Interval {
        self.0
    }

    /// Every accepted `interval`, ascending; the first is the window itself (the default).
    pub(crate) fn intervals(self) -> Vec<Interval> {
        let window = self.0 .0;
        let mut intervals: Vec<Interval> = std::iter::once(window)
            .chain(CANDIDATES.into_iter().filter(|c| c % window == 0))
            .map(Interval)
            .collect();
        intervals.sort();
        intervals.dedup();
        intervals
    }

    /// The accepted names, ascending, comma-separated: what a 400 lists.
    pub(crate) fn names(self) -> String {
        self.intervals()
            .iter()
            .map(|interval| interval.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads an `interval` value: exactly one of the names [`Window::intervals`] yields.
    pub(crate) fn parse(self, text: &str) -> Result<Interval, String> {
        self.intervals()
            .into_iter()
            .find(|interval| interval.name() == text)
            .ok_or_else(|| {
                format!(
                    "interval {text:?} is not accepted; use one of {} (the {}-second window of the \
                     aggregator, or a multiple of it that divides a day; bars are aligned to the Unix epoch, UTC)",
                    self.names(),
                    self.0 .0,
                )
            })
    }
}

/// A bar width in seconds: a divisor of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Interval(u32);

impl Interval {
    pub(crate) fn secs(self) -> u32 {
        self.0
    }

    /// `30s`, `1m`, `4h`, `1d`: the largest unit that divides the width evenly.
    pub(crate) fn name(self) -> String {
        let secs = self.0;
        if secs % DAY_SECS == 0 {
            format!("{}d", secs / DAY_SECS)
        } else if secs % 3600 == 0 {
            format!("{}h", secs / 3600)
        } else if secs % 60 == 0 {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        }
    }

    /// The width as a PostgreSQL interval literal, in seconds only (`interval '3600 seconds'` is
    /// `01:00:00`): an interval with a day field would add calendar days in the session's time zone.
    pub(crate) fn sql(self) -> String {
        format!("interval '{} seconds'", self.0)
    }

    /// The start of the bar containing `time`: the latest multiple of the width since the epoch at
    /// or before it. `None` only outside chrono's range (years beyond ±262,000).
    pub(crate) fn floor(self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let secs = time.timestamp();
        DateTime::from_timestamp(secs - secs.rem_euclid(i64::from(self.0)), 0)
    }

    /// The first bar start at or after `time`. `None` only outside chrono's range.
    pub(crate) fn ceil(self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let floor = self.floor(time)?;
        if floor == time {
            Some(floor)
        } else {
            DateTime::from_timestamp(floor.timestamp().checked_add(i64::from(self.0))?, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(secs: u32) -> Window {
        Window::new(secs).expect("a window that divides a day")
    }

    fn names(w: Window) -> Vec<String> {
        w.intervals().into_iter().map(Interval::name).collect()
    }

    #[test]
    fn the_default_window_accepts_the_listed_intervals() {
        assert_eq!(Window::default(), window(30));
        assert_eq!(
            names(Window::default()),
            ["30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d"]
        );
        for (text, secs) in [
            ("30s", 30),
            ("1m", 60),
            ("5m", 300),
            ("15m", 900),
            ("30m", 1800),
            ("1h", 3600),
            ("4h", 14_400),
            ("1d", 86_400),
        ] {
            assert_eq!(Window::default().parse(text).map(Interval::secs), Ok(secs));
        }
    }

    #[test]
    fn other_windows_accept_themselves_and_the_multiples_among_the_listed() {
        assert_eq!(
            names(window(60)),
            ["1m", "5m", "15m", "30m", "1h", "4h", "1d"]
        );
        assert_eq!(
            names(window(20)),
            ["20s", "1m", "5m", "15m", "30m", "1h", "4h", "1d"]
        );
        assert_eq!(names(window(45)), ["45s", "15m", "30m", "1h", "4h", "1d"]);
        assert_eq!(names(window(7200)), ["2h", "4h", "1d"]);
        assert_eq!(names(window(86_400)), ["1d"]);
        assert_eq!(
            window(1).intervals().first().map(|i| i.name()),
            Some("1s".to_owned())
        );
        for secs in [0, 7, 86_401, 172_800] {
            assert_eq!(Window::new(secs), None, "{secs}");
        }
    }

    #[test]
    fn anything_but_an_accepted_name_is_refused_with_the_list() {
        let w = Window::default();
        for text in [
            "0s", "7m", "1w", "30S", "", "60s", "01m", "1H", " 1h", "1h ", "2m", "3600", "1 h",
            "+1h", "-1h", "1.5h", "90s", "24h", "60m",
        ] {
            let error = w.parse(text).expect_err(text);
            assert!(
                error.contains("interval") && error.contains("30s, 1m, 5m, 15m, 30m, 1h, 4h, 1d"),
                "{text:?}: {error}"
            );
        }
        let error = window(60).parse("30s").expect_err("not a multiple of 60 s");
        assert!(error.contains("1m, 5m, 15m, 30m, 1h, 4h, 1d"), "{error}");
        assert!(!error.contains("30s,"), "{error}");
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn bars_are_aligned_to_the_epoch() {
        let hour = Interval(3600);
        let day = Interval(86_400);
        let five = Interval(300);
        for (interval, time, floor, ceil) in [
            (
                hour,
                "2026-11-27T10:00:00Z",
                "2026-11-27T10:00:00Z",
                "2026-11-27T10:00:00Z",
            ),
            (
                hour,
                "2026-11-27T10:00:00.000000001Z",
                "2026-11-27T10:00:00Z",
                "2026-11-27T11:00:00Z",
            ),
            (
                hour,
                "2026-11-27T10:59:59.999Z",
                "2026-11-27T10:00:00Z",
                "2026-11-27T11:00:00Z",
            ),
            (
                hour,
                "2026-11-27T10:30:00+05:30",
                "2026-11-27T05:00:00Z",
                "2026-11-27T05:00:00Z",
            ),
            (
                hour,
                "2026-11-27T10:00:00+05:45",
                "2026-11-27T04:00:00Z",
                "2026-11-27T05:00:00Z",
            ),
            (
                day,
                "2026-11-27T10:00:00Z",
                "2026-11-27T00:00:00Z",
                "2026-11-28T00:00:00Z",
            ),
            (
                day,
                "2026-11-28T00:00:00Z",
                "2026-11-28T00:00:00Z",
                "2026-11-28T00:00:00Z",
            ),
            (
                five,
                "1970-01-01T00:00:00Z",
                "1970-01-01T00:00:00Z",
                "1970-01-01T00:00:00Z",
            ),
            // Before the epoch the alignment continues backwards (no rounding towards zero).
            (
                five,
                "1969-12-31T23:59:59Z",
                "1969-12-31T23:55:00Z",
                "1970-01-01T00:00:00Z",
            ),
            (
                five,
                "1969-12-31T23:55:00Z",
                "1969-12-31T23:55:00Z",
                "1969-12-31T23:55:00Z",
            ),
            (
                day,
                "1969-12-31T12:00:00Z",
                "1969-12-31T00:00:00Z",
                "1970-01-01T00:00:00Z",
            ),
            (
                day,
                "0000-01-01T00:00:00+23:59",
                "-0001-12-31T00:00:00Z",
                "0000-01-01T00:00:00Z",
            ),
            (
                day,
                "9999-12-31T23:59:59.999999999-23:59",
                "10000-01-01T00:00:00Z",
                "10000-01-02T00:00:00Z",
            ),
        ] {
            let t = at(time);
            let expected = |text: &str| -> DateTime<Utc> {
                // chrono's RFC 3339 parser takes four-digit years only: build the edges by hand.
                match text {
                    "-0001-12-31T00:00:00Z" => DateTime::from_timestamp(-62_167_305_600, 0),
                    "10000-01-01T00:00:00Z" => DateTime::from_timestamp(253_402_300_800, 0),
                    "10000-01-02T00:00:00Z" => DateTime::from_timestamp(253_402_387_200, 0),
                    _ => Some(at(text)),
                }
                .expect("in range")
            };
            assert_eq!(
                interval.floor(t),
                Some(expected(floor)),
                "floor {time} to {interval:?}"
            );
            assert_eq!(
                interval.ceil(t),
                Some(expected(ceil)),
                "ceil {time} to {interval:?}"
            );
        }
    }

    #[test]
    fn every_aligned_instant_is_its_own_floor_and_ceil_and_others_fall_between() {
        for secs in CANDIDATES {
            let interval = Interval(secs);
            for n in [-3_i64, -1, 0, 1, 20_000] {
                let bar = DateTime::from_timestamp(n * i64::from(secs), 0).expect("in range");
                assert_eq!(interval.floor(bar), Some(bar));
                assert_eq!(interval.ceil(bar), Some(bar));
                for offset_ms in [1_i64, 999, i64::from(secs) * 1000 - 1] {
                    let inside = bar + chrono::TimeDelta::milliseconds(offset_ms);
                    assert_eq!(interval.floor(inside), Some(bar), "{secs} {n} {offset_ms}");
                    assert_eq!(
                        interval.ceil(inside),
                        Some(bar + chrono::TimeDelta::seconds(i64::from(secs))),
                        "{secs} {n} {offset_ms}"
                    );
                }
            }
        }
    }

    #[test]
    fn sql_intervals_are_in_seconds() {
        assert_eq!(Interval(86_400).sql(), "interval '86400 seconds'");
    }
}
