//! Every open stream holds a socket, so `API_MAX_STREAMS` is only reachable when the process may
//! open that many files. Containers often start with a soft limit of 1024: past it, `accept` fails
//! ("too many open files") for every client, not only for streams. The API cannot raise the limit
//! itself without `unsafe` code, so it says so at start-up, where the operator looks.

/// Descriptors besides the streams: the database pool, the listening connection, the metrics
/// server, ordinary requests in flight, log files.
const HEADROOM: u64 = 256;

/// Logs a warning when the soft limit on open files is below `max_streams` plus [`HEADROOM`].
pub(crate) fn warn_if_too_low(max_streams: usize) {
    let Some(limit) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| soft_open_files(&limits))
    else {
        return;
    };
    let needed = max_streams as u64 + HEADROOM;
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            max_streams,
            "the open-file limit (ulimit -n) is below API_MAX_STREAMS plus headroom: past it, \
             connections are refused; raise it (compose: `ulimits: nofile`) or lower API_MAX_STREAMS"
        );
    }
}

/// The soft limit of the "Max open files" line of `/proc/self/limits` (`None`: unlimited or
/// unreadable).
fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files(limits), Some(1024));
        let unlimited = limits.replace("1024 ", "unlimited");
        assert_eq!(soft_open_files(&unlimited), None);
        assert_eq!(soft_open_files("nothing here"), None);
    }

    #[test]
    fn this_process_has_a_readable_limit() {
        let limits = std::fs::read_to_string("/proc/self/limits").expect("Linux");
        assert!(soft_open_files(&limits).is_some_and(|limit| limit > 0));
    }
}
