//! Which traced commit last wrote each recently changed window: what an answer read from the
//! database links to, so that a request span joins the traces of the commits behind its rows.
//!
//! Kept only while trace export is on. Bounded by entries, oldest first out, because the point is
//! recent history: a trace is looked at within minutes, and a window that changed long ago was
//! written by a commit whose trace the collector has likely dropped. Rows are matched by the
//! windows they span, so a bar (`[start, end)` over many windows) links the commits of the windows
//! inside it.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use tickpipe_common::otel::opentelemetry::trace::SpanContext;

use super::latest::MAX_COMMIT_LINKS;
use super::log::Change;

/// Windows remembered: about 3 MiB, a minute of changes at 10,000 tickers with 30-second windows.
pub(crate) const CAPACITY: usize = 20_000;

type Key = (String, DateTime<Utc>);

/// An entry of an answer: its ticker, start and end.
pub(crate) type Entry = (String, DateTime<Utc>, DateTime<Utc>);

/// The traced commit of each of the last [`CAPACITY`] (ticker, window) entries changed.
#[derive(Debug, Default)]
pub(crate) struct RecentCommits {
    /// Each window's commit, with the number of the write that recorded it.
    by_window: BTreeMap<Key, (u64, SpanContext)>,
    /// Keys in the order they were written, with that write's number (a key written again appears
    /// again; only its newest occurrence evicts it, see [`RecentCommits::evict`]).
    order: VecDeque<(Key, u64)>,
    writes: u64,
}

impl RecentCommits {
    /// Records the commit of every price change (an untraced commit forgets the window's old one).
    pub(crate) fn apply(&mut self, changes: &[std::sync::Arc<Change>]) {
        for change in changes {
            let Some(price) = &change.price else {
                continue;
            };
            let key = (price.ticker.clone(), price.window_start);
            match &change.trace {
                Some(commit) => {
                    self.writes += 1;
                    self.by_window
                        .insert(key.clone(), (self.writes, commit.clone()));
                    self.order.push_back((key, self.writes));
                }
                None => {
                    self.by_window.remove(&key);
                }
            }
        }
        self.evict();
    }

    /// Drops the oldest keys until at most [`CAPACITY`] are remembered.
    fn evict(&mut self) {
        while self.by_window.len() > CAPACITY || self.order.len() > 2 * CAPACITY {
            let Some((key, written)) = self.order.pop_front() else {
                return;
            };
            // Only the newest occurrence of a key removes it.
            if self.by_window.get(&key).map(|(write, _)| *write) == Some(written) {
                self.by_window.remove(&key);
            }
        }
    }

    /// The distinct commits that wrote the windows inside `rows` (each a ticker's entry from its
    /// start to its end: a window, or a bar), at most [`MAX_COMMIT_LINKS`].
    pub(crate) fn of(&self, rows: &[Entry]) -> Vec<SpanContext> {
        let mut commits: Vec<SpanContext> = Vec::new();
        for (ticker, start, end) in rows {
            let from = (ticker.clone(), *start);
            let until = (ticker.clone(), *end);
            for (_, commit) in self.by_window.range(from..until).map(|(_, entry)| entry) {
                if commits.len() == MAX_COMMIT_LINKS {
                    return commits;
                }
                if !commits.contains(commit) {
                    commits.push(commit.clone());
                }
            }
        }
        commits
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_window.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).single().expect("time")
    }

    fn row(ticker: &str, start: i64, width: i64) -> Entry {
        (ticker.to_owned(), at(start), at(start + width))
    }

    fn price(ticker: &str, start: i64) -> crate::model::WindowPrice {
        crate::model::WindowPrice {
            ticker: ticker.to_owned(),
            window_start: at(start),
            window_end: at(start + 30),
            average_price: 1.0,
            samples: 1,
            min_price: 1,
            max_price: 1,
            open_price: Some(1),
            close_price: Some(1),
            complete: false,
        }
    }

    fn change(ticker: &str, start: i64, commit: Option<u64>) -> Arc<Change> {
        Arc::new(Change {
            id: 0,
            committed_at: at(0),
            ticker: Some(ticker.to_owned()),
            frame: axum::body::Bytes::new(),
            price: Some(price(ticker, start)),
            complete_before: None,
            trace: commit.and_then(|c| {
                tickpipe_common::otel::parse_traceparent(&format!("00-{c:032x}-{c:016x}-01"))
            }),
        })
    }

    fn span(commit: u64) -> SpanContext {
        tickpipe_common::otel::parse_traceparent(&format!("00-{commit:032x}-{commit:016x}-01"))
            .expect("valid")
    }

    #[test]
    fn a_window_row_links_the_commit_that_last_wrote_it() {
        let mut recent = RecentCommits::default();
        recent.apply(&[change("A", 0, Some(1)), change("A", 0, Some(2))]);
        recent.apply(&[change("B", 0, Some(3)), change("A", 30, Some(4))]);
        assert_eq!(recent.of(&[row("A", 0, 30)]), [span(2)]);
        assert_eq!(recent.of(&[row("B", 0, 30)]), [span(3)]);
        assert!(recent.of(&[row("C", 0, 30)]).is_empty());
        // An untraced later commit forgets the window's trace.
        recent.apply(&[change("B", 0, None)]);
        assert!(recent.of(&[row("B", 0, 30)]).is_empty());
    }

    #[test]
    fn a_bar_links_the_commits_of_the_windows_inside_it_only() {
        let mut recent = RecentCommits::default();
        recent.apply(&[
            change("A", 0, Some(1)),
            change("A", 30, Some(2)),
            change("A", 60, Some(3)),
            change("AB", 30, Some(4)),
        ]);
        assert_eq!(recent.of(&[row("A", 0, 60)]), [span(1), span(2)]);
    }

    #[test]
    fn links_are_distinct_and_bounded() {
        let mut recent = RecentCommits::default();
        let changes: Vec<_> = (0..100)
            .map(|i| change("A", i * 30, Some(i as u64 % 50 + 1)))
            .collect();
        recent.apply(&changes);
        let links = recent.of(&[row("A", 0, 3000)]);
        assert_eq!(links.len(), MAX_COMMIT_LINKS);
        for (i, link) in links.iter().enumerate() {
            assert!(!links[..i].contains(link), "distinct");
        }
    }

    #[test]
    fn the_oldest_windows_are_forgotten_first() {
        let mut recent = RecentCommits::default();
        let total = CAPACITY as i64 + 10;
        for start in 0..total {
            // Window 0 is rewritten at the end: it must survive as the newest write.
            recent.apply(&[change("A", start * 30, Some(start as u64 + 1))]);
        }
        recent.apply(&[change("A", 0, Some(7))]);
        assert_eq!(recent.len(), CAPACITY);
        assert_eq!(recent.of(&[row("A", 0, 30)]), [span(7)]);
        assert!(recent.of(&[row("A", 30, 30)]).is_empty(), "evicted");
        let newest = (total - 1) * 30;
        assert_eq!(
            recent.of(&[row("A", newest, 30)]),
            [span(total as u64)],
            "kept"
        );
    }
}
