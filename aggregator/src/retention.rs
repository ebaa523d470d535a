//! Retention settings: how long each stored table keeps its rows, one variable per table named by
//! the width of its rows — `TICKPIPE_RETENTION_30S` for the default 30-second windows, then
//! `TICKPIPE_RETENTION_1M`, `_5M`, `_1H` and `_1D` for the rollups (`tickpipe_store::history`).
//!
//! `TICKPIPE_RETENTION_WINDOWS` names the windows' table whatever its width (one of the two names, not
//! both). A value is a whole number of `s`, `m`, `h`, `d`, `w` or `y` (365 days), or `forever`. Wider
//! tables must keep at least as long as narrower ones: a bar is read from the widest table that
//! divides it, so a wide table that forgot sooner would answer "gone" for history a narrower one
//! still holds.
//!
//! Defaults: windows 7 days (the live week, and the raw material of every exact re-fold); 1-minute
//! bars 90 days (intraday charts of the last quarter); 5-minute bars a year; hourly bars 5 years;
//! daily bars forever (365 rows a ticker a year: 10,000 tickers hold 3.65M rows a year).

use std::time::Duration;

use tickpipe_common::config::{ConfigError, Layers};
use tickpipe_store::history::{self, Retention};

/// The variables' common prefix, as the configuration's lower-case keys.
const PREFIX: &str = "tickpipe_retention_";

/// The policy for windows of `window_secs`: one entry per stored table, narrowest first.
pub(crate) fn load(layers: &Layers, window_secs: u32) -> Result<Vec<Retention>, ConfigError> {
    let sources = history::sources(window_secs);
    let mut policy: Vec<Retention> = sources
        .iter()
        .map(|source| Retention {
            table: source.table,
            keep: default_keep(source.table),
        })
        .collect();
    let mut given = vec![false; sources.len()];
    for (key, value) in layers.with_prefix(PREFIX)? {
        let variable = key.to_uppercase();
        let name = &key[PREFIX.len()..];
        let index = if name == "windows" {
            Some(0)
        } else {
            sources
                .iter()
                .position(|s| history::width_name(s.width_secs) == name)
        };
        let Some(index) = index else {
            let names: Vec<String> = sources
                .iter()
                .map(|s| {
                    format!(
                        "TICKPIPE_RETENTION_{}",
                        history::width_name(s.width_secs).to_uppercase()
                    )
                })
                .collect();
            return Err(ConfigError::new(
                &variable,
                format!(
                    "no stored table has rows of that width (wider bars are folded from narrower \
                     ones at query time); the retention settings are {} (the first also as \
                     TICKPIPE_RETENTION_WINDOWS)",
                    names.join(", ")
                ),
            ));
        };
        if std::mem::replace(&mut given[index], true) {
            return Err(ConfigError::new(
                &variable,
                "the windows' retention is given twice (by width and as TICKPIPE_RETENTION_WINDOWS); give one",
            ));
        }
        policy[index].keep = parse_keep(&value).map_err(|m| ConfigError::new(&variable, m))?;
    }
    check_longer_when_wider(&policy, &sources)?;
    Ok(policy)
}

/// Each table keeps its rows at least as long as the narrower one before it.
fn check_longer_when_wider(
    policy: &[Retention],
    sources: &[history::Source],
) -> Result<(), ConfigError> {
    for pair in policy.windows(2) {
        let longer = match (pair[0].keep, pair[1].keep) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(narrow), Some(wide)) => wide >= narrow,
        };
        if !longer {
            let name = |r: &Retention| variable_of(sources, r.table);
            return Err(ConfigError::new(
                &name(&pair[1]),
                format!(
                    "expected at least {} ({}): a wider table must keep its rows at least as long \
                     as a narrower one",
                    name(&pair[0]),
                    describe(pair[0].keep)
                ),
            ));
        }
    }
    Ok(())
}

fn variable_of(sources: &[history::Source], table: &str) -> String {
    let width = sources
        .iter()
        .find(|s| s.table == table)
        .map_or(0, |s| s.width_secs);
    format!(
        "TICKPIPE_RETENTION_{}",
        history::width_name(width).to_uppercase()
    )
}

fn default_keep(table: &str) -> Option<Duration> {
    const DAY: u64 = 86_400;
    let days = match table {
        history::WINDOWS_TABLE => 7,
        "bars_1m" => 90,
        "bars_5m" => 365,
        "bars_1h" => 5 * 365,
        _ => return None,
    };
    Some(Duration::from_secs(days * DAY))
}

/// `forever`, or a positive whole number with a unit.
fn parse_keep(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("forever") {
        return Ok(None);
    }
    let expected = || {
        format!(
            "expected a whole number of s, m, h, d, w or y (365 days), such as 7d or 90d, or \
             `forever`; got {text:?}"
        )
    };
    let split = text.len().saturating_sub(1);
    let (number, unit) = (text.get(..split).ok_or_else(expected)?, &text[split..]);
    let count: u64 = number.parse().map_err(|_| expected())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(expected()),
    };
    if count == 0 {
        return Err(format!(
            "expected a positive duration or `forever`; {text:?} would drop rows as they are written"
        ));
    }
    count
        .checked_mul(unit_secs)
        .map(|secs| Some(Duration::from_secs(secs)))
        .ok_or_else(expected)
}

/// A retention as the logs and errors say it.
pub(crate) fn describe(keep: Option<Duration>) -> String {
    match keep {
        None => "forever".to_owned(),
        Some(keep) => history::width_name(u32::try_from(keep.as_secs()).unwrap_or(u32::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(vars: &[(&str, &str)], window_secs: u32) -> Result<Vec<Retention>, ConfigError> {
        let layers = Layers::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        load(&layers, window_secs)
    }

    fn days(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n * 86_400))
    }

    #[test]
    fn defaults_keep_wider_tables_longer() {
        let policy = load_with(&[], 30).expect("defaults");
        let keeps: Vec<_> = policy.iter().map(|r| (r.table, r.keep)).collect();
        assert_eq!(
            keeps,
            [
                ("window_prices", days(7)),
                ("bars_1m", days(90)),
                ("bars_5m", days(365)),
                ("bars_1h", days(1825)),
                ("bars_1d", None),
            ]
        );
    }

    #[test]
    fn variables_are_named_by_the_width_of_the_rows() {
        let policy = load_with(
            &[
                ("TICKPIPE_RETENTION_30S", "2d"),
                ("TICKPIPE_RETENTION_1D", "10y"),
            ],
            30,
        )
        .expect("valid");
        assert_eq!(policy[0].keep, days(2));
        assert_eq!(policy[4].keep, days(3650));
        // With 1-minute windows the windows' variable is _1M, and there is no 1m rollup.
        let policy = load_with(&[("TICKPIPE_RETENTION_1M", "3d")], 60).expect("valid");
        assert_eq!(
            (policy[0].table, policy[0].keep),
            ("window_prices", days(3))
        );
        assert_eq!(policy.len(), 4);
        // The windows' variable whatever their width.
        let policy = load_with(&[("TICKPIPE_RETENTION_WINDOWS", "12h")], 5).expect("valid");
        assert_eq!(policy[0].keep, Some(Duration::from_secs(43_200)));
    }

    #[test]
    fn bad_values_name_the_variable_and_the_form() {
        for (vars, variable, says) in [
            (
                vec![("TICKPIPE_RETENTION_30S", "7")],
                "TICKPIPE_RETENTION_30S",
                "whole number",
            ),
            (
                vec![("TICKPIPE_RETENTION_30S", "0d")],
                "TICKPIPE_RETENTION_30S",
                "positive",
            ),
            (
                vec![("TICKPIPE_RETENTION_30S", "1.5d")],
                "TICKPIPE_RETENTION_30S",
                "whole number",
            ),
            (
                vec![("TICKPIPE_RETENTION_15M", "1d")],
                "TICKPIPE_RETENTION_15M",
                "TICKPIPE_RETENTION_5M",
            ),
            (
                vec![("TICKPIPE_RETENTION_1H", "30d")],
                "TICKPIPE_RETENTION_1H",
                "TICKPIPE_RETENTION_5M",
            ),
            (
                vec![("TICKPIPE_RETENTION_30S", "forever")],
                "TICKPIPE_RETENTION_1M",
                "forever",
            ),
        ] {
            let error = load_with(&vars, 30).expect_err(variable).to_string();
            assert!(error.contains(variable), "{error}");
            assert!(error.contains(says), "{error}");
        }
    }
}
