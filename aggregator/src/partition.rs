//! What one Kafka partition contributes to the windows, and when its windows are final.
//!
//! This is the heart of exactly-once, kept free of I/O so it can be tested exhaustively:
//!
//! - The watermark is the highest record timestamp seen minus the grace period, or the wall clock
//!   minus the idle lag while the consumer is caught up with the partition
//!   ([`PartitionState::advance_idle`]). A record's timestamp counts only up to the wall clock: a
//!   producer whose clock runs ahead lands its records in their own (future) windows, but cannot
//!   push the watermark past the present and so make other producers' on-time records late.
//! - A window is final once the watermark passes its end. Every window starting before
//!   `floor(watermark / width) * width` is final ("the boundary"); a record for such a window is late.
//! - [`PartitionState::take_closed`] removes the final windows and returns them with the progress to
//!   store in the same transaction: the offset to resume from (the lowest offset still inside an
//!   open window), the watermark and the boundary.
//!
//! After a crash the state is rebuilt from that stored progress by replaying from the resume offset:
//! records of windows before the stored boundary are skipped (they are in the table already, or were
//! late), the others rebuild the open windows. So the table never counts a record twice or drops one.
//!
//! One check depends on the wall clock rather than on the record: "stamped too far in the future".
//! Replayed later (or by an instance whose clock differs), the same record could pass it and be
//! counted after having been dead-lettered, or fail it and be dropped from a window still open. So
//! the offsets rejected that way are stored with the progress ([`Progress::future_offsets`]) and a
//! replay takes the stored verdict instead of asking the clock again
//! ([`PartitionState::stored_future_verdict`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tickpipe_common::message::TickerMessage;

use tickpipe_store::{Accumulator, Flush, PriceKey, Progress, WindowRow};

use crate::window::window_start;

/// What became of one valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Added to an open window.
    Applied,
    /// Its window was already final: counted as late, not applied.
    Late,
    /// Read again after a restart and already accounted for.
    Replayed,
}

/// When a partition's windows become final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// Width of the tumbling windows, aligned to the Unix epoch.
    pub(crate) width_ms: i64,
    /// How far behind the newest record timestamp the watermark stays: a record at most this much
    /// out of order is still on time.
    pub(crate) grace_ms: i64,
    /// How far behind the wall clock the watermark of a caught-up partition stays. "Caught up"
    /// only means that nothing more is readable *yet*: during a leader failover the new leader
    /// cannot expose records it already holds until the dead replica leaves the in-sync set, and
    /// producers hold theirs for the dead leader's partitions; no error tells the consumer either.
    /// Such records arrive up to a failover late (about 12 s measured), so the wall clock must stay
    /// further behind than that, or their windows would be written as final without them.
    pub(crate) idle_lag_ms: i64,
}

#[derive(Debug, Default)]
struct OpenWindow {
    first_offset: i64,
    tickers: HashMap<Box<str>, Accumulator>,
}

/// In-memory state of one assigned partition.
#[derive(Debug)]
pub(crate) struct PartitionState {
    partition: i32,
    timing: Timing,
    epoch: i64,
    watermark_ms: i64,
    stored_closed_before_ms: i64,
    next_offset: i64,
    /// Offsets below this were processed before the restart that loaded this state.
    replay_until: i64,
    dlq_next_offset: i64,
    /// Offsets rejected as future-stamped, kept until `resume_offset` passes them (see module doc).
    future_offsets: BTreeSet<i64>,
    open: BTreeMap<i64, OpenWindow>,
    /// The consumer is at the end of the partition.
    caught_up: bool,
    /// The wall clock may not advance the watermark before this instant, unless a record arrives
    /// first (see `mark_uncertain`).
    wall_clock_resumes_ms: i64,
}

impl PartitionState {
    pub(crate) fn new(partition: i32, progress: Progress, timing: Timing) -> Self {
        Self {
            partition,
            timing,
            epoch: progress.epoch,
            watermark_ms: progress.watermark_ms,
            stored_closed_before_ms: progress.closed_before_ms,
            next_offset: progress.next_offset,
            replay_until: progress.next_offset,
            dlq_next_offset: progress.dlq_next_offset,
            future_offsets: progress.future_offsets.into_iter().collect(),
            open: BTreeMap::new(),
            caught_up: false,
            wall_clock_resumes_ms: i64::MIN,
        }
    }

    /// Every window starting before this instant is final.
    pub(crate) fn boundary_ms(&self) -> i64 {
        window_start(self.watermark_ms, self.timing.width_ms).max(self.stored_closed_before_ms)
    }

    /// Applies one valid record whose offset is `offset` and timestamp `timestamp_ms`, when the
    /// wall clock reads `now_ms`.
    pub(crate) fn apply(
        &mut self,
        offset: i64,
        timestamp_ms: i64,
        message: &TickerMessage<'_>,
        now_ms: i64,
    ) -> Outcome {
        self.caught_up = false;
        self.wall_clock_resumes_ms = i64::MIN;
        self.next_offset = self.next_offset.max(offset + 1);
        let start = window_start(timestamp_ms, self.timing.width_ms);
        let outcome = if start < self.boundary_ms() {
            if offset < self.replay_until {
                Outcome::Replayed
            } else {
                Outcome::Late
            }
        } else {
            let window = self.open.entry(start).or_insert_with(|| OpenWindow {
                first_offset: offset,
                tickers: HashMap::new(),
            });
            window.first_offset = window.first_offset.min(offset);
            let key = PriceKey {
                timestamp_ms,
                partition: self.partition,
                offset,
            };
            for tick in &message.tickers {
                match window.tickers.get_mut(tick.name.as_ref()) {
                    Some(totals) => totals.add(tick.price, key),
                    None => {
                        window
                            .tickers
                            .insert(tick.name.as_ref().into(), Accumulator::new(tick.price, key));
                    }
                }
            }
            Outcome::Applied
        };
        self.watermark_ms = self
            .watermark_ms
            .max(timestamp_ms.min(now_ms) - self.timing.grace_ms);
        outcome
    }

    /// For a record read again after a restart, whether it was rejected as future-stamped the
    /// first time; `None` for a record never seen before, which the wall clock decides.
    pub(crate) fn stored_future_verdict(&self, offset: i64) -> Option<bool> {
        (offset < self.replay_until).then(|| self.future_offsets.contains(&offset))
    }

    /// Accounts for a record that carries no prices (invalid); `future` when it was rejected for a
    /// timestamp too far ahead of the wall clock. Returns whether it still has to be sent to the
    /// dead-letter topic, which is false when it was sent before a restart.
    pub(crate) fn skip_invalid(&mut self, offset: i64, future: bool) -> bool {
        if future {
            self.future_offsets.insert(offset);
        }
        self.caught_up = false;
        self.wall_clock_resumes_ms = i64::MIN;
        self.next_offset = self.next_offset.max(offset + 1);
        if offset >= self.dlq_next_offset {
            self.dlq_next_offset = offset + 1;
            true
        } else {
            false
        }
    }

    /// The consumer reached the end of the partition.
    pub(crate) fn mark_caught_up(&mut self) {
        self.caught_up = true;
    }

    /// The consumer lost sight of a broker at `now_ms`. Producers may have been cut off too, and
    /// what they buffered arrives with older timestamps once the broker is back, so the wall clock
    /// stops advancing the watermark until the next record arrives (a producer delivers in order,
    /// so by then its buffered records have arrived before it), or until one idle lag has passed
    /// without another such error: buffered records are delivered within seconds of the broker's
    /// return, and a partition that receives nothing more (its producers stopped) must still close
    /// its last window. Each error during an outage pushes that instant further.
    pub(crate) fn mark_uncertain(&mut self, now_ms: i64) {
        self.wall_clock_resumes_ms = now_ms.saturating_add(self.timing.idle_lag_ms);
    }

    /// While caught up, the watermark follows the wall clock one idle lag behind (see
    /// [`Timing::idle_lag_ms`]), so the last window is written about one idle lag after its end
    /// even when no more records come. While records flow they drive the watermark, which is
    /// then ahead of this.
    pub(crate) fn advance_idle(&mut self, now_ms: i64) {
        if self.caught_up && now_ms >= self.wall_clock_resumes_ms {
            self.watermark_ms = self.watermark_ms.max(now_ms - self.timing.idle_lag_ms);
        }
    }

    /// Whether [`take_closed`](Self::take_closed) has anything to write: final windows, or a boundary
    /// that moved past what is stored (so that late records stay late after a restart).
    pub(crate) fn has_closed(&self) -> bool {
        let boundary = self.boundary_ms();
        boundary > self.stored_closed_before_ms
            || self
                .open
                .keys()
                .next()
                .is_some_and(|&start| start < boundary)
    }

    /// Removes the final windows and returns them with the progress to store alongside.
    pub(crate) fn take_closed(&mut self) -> Option<Flush> {
        if !self.has_closed() {
            return None;
        }
        let boundary = self.boundary_ms();
        let still_open = self.open.split_off(&boundary);
        let closed = std::mem::replace(&mut self.open, still_open);
        let mut rows = Vec::new();
        for (start, window) in closed {
            let mut tickers: Vec<_> = window.tickers.into_iter().collect();
            tickers.sort_by(|a, b| a.0.cmp(&b.0));
            rows.extend(tickers.into_iter().map(|(ticker, totals)| WindowRow {
                ticker: ticker.into(),
                window_start_ms: start,
                window_end_ms: start + self.timing.width_ms,
                totals,
            }));
        }
        self.stored_closed_before_ms = boundary;
        let progress = self.progress();
        // A replay starts at the resume offset: verdicts below it are never asked for again.
        self.future_offsets = self
            .future_offsets
            .split_off(&progress.resume_offset.max(0));
        Some(Flush {
            partition: self.partition,
            rows,
            progress,
        })
    }

    /// The progress as of now: what a restart would resume from.
    pub(crate) fn progress(&self) -> Progress {
        let resume_offset = self
            .open
            .values()
            .map(|w| w.first_offset)
            .min()
            .unwrap_or(self.next_offset);
        Progress {
            future_offsets: self
                .future_offsets
                .range(resume_offset..)
                .copied()
                .collect(),
            resume_offset,
            next_offset: self.next_offset,
            watermark_ms: self.watermark_ms,
            closed_before_ms: self.stored_closed_before_ms,
            dlq_next_offset: self.dlq_next_offset,
            epoch: self.epoch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::collections::BTreeMap;
    use tickpipe_common::message::Tick;

    /// (offset, timestamp ms, ticks) of one test record.
    type Record = (i64, i64, &'static [(&'static str, i64)]);

    const W: i64 = 30_000;
    const GRACE: i64 = 2_000;
    const IDLE_LAG: i64 = 15_000;
    const TIMING: Timing = Timing {
        width_ms: W,
        grace_ms: GRACE,
        idle_lag_ms: IDLE_LAG,
    };
    const T0: i64 = 1_795_773_600_000; // a window start
    /// A wall clock far ahead of every test record, so that it never holds the watermark back.
    const LATER: i64 = T0 + 1_000_000_000;

    fn message(ticks: &[(&'static str, i64)]) -> TickerMessage<'static> {
        TickerMessage {
            tickers: ticks
                .iter()
                .map(|&(name, price)| Tick {
                    name: Cow::Borrowed(name),
                    price,
                })
                .collect(),
        }
    }

    fn state() -> PartitionState {
        PartitionState::new(0, Progress::fresh(), TIMING)
    }

    /// Feeds (offset, timestamp, ticks) records and collects every flush along the way.
    fn feed(state: &mut PartitionState, records: &[Record]) -> Vec<Flush> {
        let mut flushes = Vec::new();
        for &(offset, ts, ticks) in records {
            state.apply(offset, ts, &message(ticks), LATER);
            flushes.extend(state.take_closed());
        }
        flushes
    }

    /// The accumulator of `(offset, timestamp, price)` prices of partition 0, in any order.
    fn totals(prices: &[(i64, i64, i64)]) -> Accumulator {
        let key = |offset, timestamp_ms| PriceKey {
            timestamp_ms,
            partition: 0,
            offset,
        };
        let (offset, ts, price) = prices[0];
        let mut acc = Accumulator::new(price, key(offset, ts));
        for &(offset, ts, price) in &prices[1..] {
            acc.add(price, key(offset, ts));
        }
        acc
    }

    fn rows(flushes: &[Flush]) -> Vec<(String, i64, Accumulator)> {
        flushes
            .iter()
            .flat_map(|f| {
                f.rows
                    .iter()
                    .map(|r| (r.ticker.clone(), r.window_start_ms, r.totals))
            })
            .collect()
    }

    #[test]
    fn a_window_closes_when_the_watermark_passes_its_end() {
        let mut s = state();
        let flushes = feed(
            &mut s,
            &[
                (0, T0 + 1_000, &[("AMZN", 100), ("MSFT", 10)]),
                (1, T0 + 20_000, &[("AMZN", 200)]),
                // Watermark T0+30_000 exactly: the window [T0, T0+30s) is final.
                (2, T0 + 32_000, &[("AMZN", 400)]),
            ],
        );
        let amzn = totals(&[(0, T0 + 1_000, 100), (1, T0 + 20_000, 200)]);
        assert_eq!((amzn.open.price, amzn.close.price), (100, 200));
        assert_eq!(
            rows(&flushes),
            vec![
                ("AMZN".into(), T0, amzn),
                ("MSFT".into(), T0, totals(&[(0, T0 + 1_000, 10)]))
            ]
        );
        let progress = &flushes.last().expect("flush").progress;
        assert_eq!(
            progress.resume_offset, 2,
            "offset 2 is still in an open window"
        );
        assert_eq!(progress.closed_before_ms, T0 + W);
    }

    #[test]
    fn does_not_close_before_the_grace_period() {
        let mut s = state();
        let flushes = feed(
            &mut s,
            &[
                (0, T0 + 1_000, &[("AMZN", 1)]),
                (1, T0 + 31_999, &[("AMZN", 1)]),
            ],
        );
        assert!(rows(&flushes).is_empty());
    }

    #[test]
    fn out_of_order_within_grace_is_applied() {
        let mut s = state();
        let flushes = feed(
            &mut s,
            &[
                (0, T0 + 29_000, &[("AAPL", 10)]),
                (1, T0 + 31_000, &[("AAPL", 50)]),
                (2, T0 + 5_000, &[("AAPL", 20)]), // older window, but watermark is T0+29s
                (3, T0 + 40_000, &[("AAPL", 1)]),
            ],
        );
        // Offset 2 arrived last but carries the earlier timestamp: it is the open.
        let first = totals(&[(0, T0 + 29_000, 10), (2, T0 + 5_000, 20)]);
        assert_eq!((first.open.price, first.close.price), (20, 10));
        assert_eq!(rows(&flushes), vec![("AAPL".into(), T0, first)]);
    }

    #[test]
    fn late_beyond_grace_is_not_applied() {
        let mut s = state();
        s.apply(0, T0 + 1_000, &message(&[("AAPL", 10)]), LATER);
        s.apply(1, T0 + 40_000, &message(&[("AAPL", 10)]), LATER);
        assert!(s.take_closed().is_some());
        assert_eq!(
            s.apply(2, T0 + 2_000, &message(&[("AAPL", 99)]), LATER),
            Outcome::Late
        );
        assert!(s.take_closed().is_none());
    }

    #[test]
    fn empty_windows_write_nothing() {
        let mut s = state();
        let flushes = feed(
            &mut s,
            &[
                (0, T0 + 1_000, &[("AMZN", 1)]),
                (1, T0 + 10 * W + 5_000, &[("AMZN", 2)]),
            ],
        );
        assert_eq!(
            rows(&flushes),
            vec![("AMZN".into(), T0, totals(&[(0, T0 + 1_000, 1)]))]
        );
    }

    #[test]
    fn an_idle_partition_closes_by_the_wall_clock() {
        let closed_rows =
            |s: &mut PartitionState| s.take_closed().map(|f| f.rows).unwrap_or_default();
        let mut s = state();
        s.apply(0, T0 + 1_000, &message(&[("MSFT", 7)]), LATER);
        s.advance_idle(T0 + 60_000);
        assert!(
            closed_rows(&mut s).is_empty(),
            "not caught up yet: the wall clock does not count"
        );
        s.mark_caught_up();
        s.advance_idle(T0 + W + IDLE_LAG - 1);
        assert!(closed_rows(&mut s).is_empty(), "still within the idle lag");
        s.advance_idle(T0 + W + IDLE_LAG);
        let flush = s.take_closed().expect("closed by the wall clock");
        assert_eq!(flush.rows.len(), 1);
        assert_eq!(flush.progress.resume_offset, 1);
    }

    #[test]
    fn records_held_back_by_a_leader_failover_are_on_time() {
        // Records flow until the partition's leader dies at `kill`; the consumer then sees the
        // end of what is readable (caught up) and no error, while the records stamped just before
        // the kill, and those produced during the failover, become readable only when a new leader
        // is elected, up to about 12 s later.
        let kill = T0 + W - 500;
        let mut s = state();
        let mut offset = 0;
        for ts in (T0..kill).step_by(1_000) {
            assert_eq!(
                s.apply(offset, ts, &message(&[("AAPL", 1)]), ts),
                Outcome::Applied
            );
            offset += 1;
        }
        s.mark_caught_up();
        let elected = kill + 12_000;
        for now in (kill..=elected).step_by(100) {
            s.advance_idle(now);
            assert!(
                s.take_closed().is_none_or(|f| f.rows.is_empty()),
                "the window ending during the failover closed at {now}"
            );
        }
        for ts in [kill - 300, kill + 200, elected - 1_000] {
            assert_eq!(
                s.apply(offset, ts, &message(&[("AAPL", 2)]), elected),
                Outcome::Applied,
                "held-back record stamped {ts}"
            );
            offset += 1;
        }
        s.mark_caught_up();
        s.advance_idle(T0 + W + IDLE_LAG);
        let flush = s.take_closed().expect("closed one idle lag after its end");
        assert_eq!(flush.rows[0].totals.count, (kill - T0 + 999) / 1_000 + 2);
    }

    #[test]
    fn after_a_consumer_error_the_wall_clock_waits_for_the_next_record() {
        let mut s = state();
        s.apply(0, T0 + 1_000, &message(&[("MSFT", 7)]), LATER);
        s.mark_caught_up();
        s.mark_uncertain(T0 + 50_000);
        s.advance_idle(T0 + 60_000);
        assert!(
            s.take_closed().is_none_or(|f| f.rows.is_empty()),
            "suspended"
        );
        // A record buffered by a producer during the outage is still on time.
        assert_eq!(
            s.apply(1, T0 + 2_000, &message(&[("MSFT", 9)]), LATER),
            Outcome::Applied
        );
        s.mark_caught_up();
        s.advance_idle(T0 + 60_000);
        let flush = s.take_closed().expect("closed once records flow again");
        assert_eq!(flush.rows[0].totals.count, 2);
    }

    #[test]
    fn after_a_consumer_error_and_no_more_records_the_wall_clock_resumes_one_idle_lag_later() {
        // The drill found it: the producers had stopped, the consumer then lost a dead node, and
        // the partition's last window was never written because no record came to resume it.
        let mut s = state();
        s.apply(0, T0 + 1_000, &message(&[("MSFT", 7)]), LATER);
        s.mark_caught_up();
        s.mark_uncertain(T0 + 50_000);
        s.mark_uncertain(T0 + 55_000);
        s.advance_idle(T0 + 55_000 + IDLE_LAG - 1);
        assert!(
            s.take_closed().is_none_or(|f| f.rows.is_empty()),
            "each error pushes the wall clock's return"
        );
        s.advance_idle(T0 + 55_000 + IDLE_LAG);
        let flush = s
            .take_closed()
            .expect("closed one idle lag after the last error");
        assert_eq!(flush.rows[0].totals.count, 1);
    }

    #[test]
    fn a_fast_clock_cannot_make_other_records_late() {
        let now = T0 + 10_000;
        let mut s = state();
        // 55 s ahead of the wall clock: valid, and kept in its own window.
        assert_eq!(
            s.apply(0, now + 55_000, &message(&[("AMZN", 1)]), now),
            Outcome::Applied
        );
        assert!(s.take_closed().is_none_or(|f| f.rows.is_empty()));
        // On-time records from other producers stay on time.
        for (offset, ts) in [(1, now - 1_000), (2, T0 + 1), (3, now)] {
            assert_eq!(
                s.apply(offset, ts, &message(&[("AMZN", 2)]), now),
                Outcome::Applied,
                "record at {ts}"
            );
        }
        assert!(s.progress().watermark_ms <= now - GRACE);
    }

    #[test]
    fn a_future_window_closes_when_the_wall_clock_reaches_it() {
        let now = T0 + 10_000;
        let mut s = state();
        s.apply(0, T0 + 45_000, &message(&[("AMZN", 1)]), now);
        s.apply(1, T0 + 5_000, &message(&[("AMZN", 2)]), now);
        s.mark_caught_up();
        s.advance_idle(T0 + W + IDLE_LAG);
        let first = s.take_closed().expect("the present window closes");
        assert_eq!(first.rows.len(), 1);
        assert_eq!(first.rows[0].window_start_ms, T0);
        assert_eq!(
            first.progress.resume_offset, 0,
            "the future record is still open"
        );
        s.advance_idle(T0 + 2 * W + IDLE_LAG);
        let second = s.take_closed().expect("the future window closes");
        assert_eq!(second.rows[0].window_start_ms, T0 + W);
        assert_eq!(second.rows[0].totals.count, 1);
    }

    #[test]
    fn replay_from_stored_progress_rebuilds_exactly_the_same_rows() {
        // A reference run over all records, and runs that "crash" after every possible flush and
        // resume from the stored progress: the union of rows written must be identical.
        let records: Vec<Record> = vec![
            (0, T0 + 1_000, &[("AMZN", 100)]),
            (1, T0 + 25_000, &[("AMZN", 110), ("MSFT", 5)]),
            (2, T0 + 31_000, &[("AMZN", 120)]),
            (3, T0 + 29_500, &[("MSFT", 6)]),   // within grace
            (4, T0 + 33_000, &[("AMZN", 130)]), // closes the first window
            (5, T0 + 10_000, &[("AMZN", 999)]), // late
            (6, T0 + 61_000, &[("AMZN", 140)]),
            (7, T0 + 45_000, &[("MSFT", 7)]),
            (8, T0 + 95_000, &[("AMZN", 150)]),
            (9, T0 + 121_000, &[("AMZN", 160)]),
        ];
        let reference = rows(&feed(&mut state(), &records));
        for crash_after in 0..records.len() {
            let mut first = state();
            let mut written = Vec::new();
            let mut stored = Progress::fresh();
            for &(offset, ts, ticks) in &records[..=crash_after] {
                first.apply(offset, ts, &message(ticks), LATER);
                if let Some(flush) = first.take_closed() {
                    written.extend(rows(std::slice::from_ref(&flush)));
                    stored = flush.progress;
                }
            }
            // Restart: resume from the stored progress and replay.
            let mut second = PartitionState::new(0, stored.clone(), TIMING);
            let resume = usize::try_from(stored.resume_offset.max(0)).expect("offset");
            written.extend(rows(&feed(&mut second, &records[resume..])));
            assert_eq!(written, reference, "crash after offset {crash_after}");
        }
    }

    #[test]
    fn a_replay_repeats_the_stored_future_verdict_whatever_the_clock() {
        let now = T0 + 10_000;
        let mut s = state();
        s.apply(0, T0 + 1_000, &message(&[("AMZN", 1)]), now);
        // Offset 1 was stamped beyond the future limit: rejected and dead-lettered.
        assert_eq!(
            s.stored_future_verdict(1),
            None,
            "never seen: the clock decides"
        );
        assert!(s.skip_invalid(1, true));
        s.apply(2, T0 + 2_000, &message(&[("AMZN", 2)]), now);
        s.apply(3, T0 + 40_000, &message(&[("MSFT", 3)]), now + 40_000);
        let flush = s.take_closed().expect("first window closed");
        assert_eq!(flush.progress.resume_offset, 3);
        assert!(
            flush.progress.future_offsets.is_empty(),
            "pruned below the resume offset"
        );

        let mut open = state();
        open.apply(0, T0 + 1_000, &message(&[("AMZN", 1)]), now);
        open.skip_invalid(1, true);
        let progress = open.progress();
        assert_eq!(progress.resume_offset, 0);
        assert_eq!(progress.future_offsets, vec![1]);
        let restarted = PartitionState::new(0, progress, TIMING);
        assert_eq!(restarted.stored_future_verdict(0), Some(false));
        assert_eq!(restarted.stored_future_verdict(1), Some(true));
        assert_eq!(restarted.stored_future_verdict(2), None);
    }

    #[test]
    fn any_partition_interleaving_writes_the_same_table() {
        const NAMES: [&str; 3] = ["AMZN", "MSFT", "AAPL"];
        let mut rng = tickpipe_testkit::rng::Rng::new(7);
        // Per partition: (offset, timestamp, prices); out of order only within the grace period.
        type Generated = (i64, i64, Vec<(&'static str, i64)>);
        let partitions: Vec<Vec<Generated>> = (0..3)
            .map(|_| {
                (0..150)
                    .map(|offset| {
                        let ts = T0 + offset * 700 - rng.below(1_500) as i64;
                        let n = 1 + rng.below(3) as usize;
                        let prices = NAMES[..n]
                            .iter()
                            .map(|&name| (name, 1 + rng.below(3_000) as i64))
                            .collect();
                        (offset, ts, prices)
                    })
                    .collect()
            })
            .collect();
        // The reference: a plain group-by over every record, keys as the contract defines them.
        let mut reference: BTreeMap<(String, i64), Accumulator> = BTreeMap::new();
        for (partition, records) in partitions.iter().enumerate() {
            for (offset, ts, prices) in records {
                let key = PriceKey {
                    timestamp_ms: *ts,
                    partition: partition as i32,
                    offset: *offset,
                };
                for &(name, price) in prices {
                    reference
                        .entry((name.to_owned(), window_start(*ts, W)))
                        .and_modify(|acc| acc.add(price, key))
                        .or_insert_with(|| Accumulator::new(price, key));
                }
            }
        }
        for trial in 0..25 {
            let mut states: Vec<PartitionState> = (0..3)
                .map(|p| PartitionState::new(p, Progress::fresh(), TIMING))
                .collect();
            let mut next = [0_usize; 3];
            // The table, merging flushes as the upsert does, in whatever order they come.
            let mut table: BTreeMap<(String, i64), Accumulator> = BTreeMap::new();
            let mut write = |flush: Flush| {
                for row in flush.rows {
                    table
                        .entry((row.ticker, row.window_start_ms))
                        .and_modify(|acc| acc.merge(&row.totals))
                        .or_insert(row.totals);
                }
            };
            while next.iter().zip(&partitions).any(|(n, p)| *n < p.len()) {
                let p = rng.below(3) as usize;
                let Some((offset, ts, prices)) = partitions[p].get(next[p]) else {
                    continue;
                };
                next[p] += 1;
                let ticks: Vec<Tick<'static>> = prices
                    .iter()
                    .map(|&(name, price)| Tick {
                        name: Cow::Borrowed(name),
                        price,
                    })
                    .collect();
                let outcome =
                    states[p].apply(*offset, *ts, &TickerMessage { tickers: ticks }, LATER);
                assert_eq!(outcome, Outcome::Applied, "trial {trial}: never late");
                states[p].take_closed().into_iter().for_each(&mut write);
            }
            for state in &mut states {
                state.mark_caught_up();
                state.advance_idle(LATER);
                state.take_closed().into_iter().for_each(&mut write);
            }
            assert_eq!(table, reference, "trial {trial}");
        }
    }

    #[test]
    fn invalid_records_go_to_the_dead_letter_topic_once() {
        let mut s = state();
        assert!(s.skip_invalid(3, false));
        let mut stored = s.progress();
        assert_eq!(stored.dlq_next_offset, 4);
        stored.next_offset = 4;
        let mut restarted = PartitionState::new(0, stored, TIMING);
        assert!(
            !restarted.skip_invalid(3, false),
            "already delivered before the restart"
        );
        assert!(restarted.skip_invalid(5, false));
    }
}
