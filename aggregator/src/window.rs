//! Tumbling event-time windows aligned to the Unix epoch. What is kept in a window, and how two
//! partial windows merge, is the stored row's contract: [`tickpipe_store::Accumulator`].

/// Start (Unix ms) of the window of width `width_ms` that holds `timestamp_ms`.
pub(crate) fn window_start(timestamp_ms: i64, width_ms: i64) -> i64 {
    timestamp_ms.div_euclid(width_ms) * width_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_epoch() {
        let w = 30_000;
        // 2026-11-27T10:00:29.999Z and 10:00:30.000Z fall in neighbouring windows.
        let t = 1_795_773_600_000; // 10:00:00Z
        assert_eq!(window_start(t, w), t);
        assert_eq!(window_start(t + 29_999, w), t);
        assert_eq!(window_start(t + 30_000, w), t + 30_000);
        assert_eq!(window_start(-1, w), -30_000);
    }
}
