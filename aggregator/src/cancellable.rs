//! Waiting on the consume thread without ever outliving a shutdown.
//!
//! The consume loop runs on a blocking thread and drives async database and producer calls with
//! `Handle::block_on`. A plain `block_on` or `thread::sleep` there would hold SIGTERM up for as
//! long as the database stays down or a delivery takes; these return as soon as the service's
//! shutdown token is cancelled, so the loop stops within one poll interval whatever it waits on.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Runs `future` to completion, or abandons it (dropping it) once `shutdown` is cancelled.
pub(crate) fn block_on_unless_cancelled<F: Future>(
    runtime: &Handle,
    shutdown: &CancellationToken,
    future: F,
) -> Option<F::Output> {
    runtime.block_on(async {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            output = future => Some(output),
        }
    })
}

/// Sleeps for `delay` unless `shutdown` is cancelled first. Returns whether it slept the whole time.
pub(crate) fn sleep_unless_cancelled(
    runtime: &Handle,
    shutdown: &CancellationToken,
    delay: Duration,
) -> bool {
    block_on_unless_cancelled(runtime, shutdown, tokio::time::sleep(delay)).is_some()
}
