//! A connection whose writes may not stall forever: a client that stops reading while the server
//! has something to send is disconnected after `API_WRITE_TIMEOUT_MS`.
//!
//! Without it, a client that never reads holds its connection as long as it likes once the socket
//! buffers are full: a stream's slot under `API_MAX_STREAMS` and hyper's write buffer (some
//! hundreds of KiB) stay taken, and a graceful shutdown waits for a response that can never be
//! written. hyper has a timeout for reading a request head but none for writing, so it is here, in
//! the I/O under hyper: the clock starts when a write cannot proceed and stops at the next one that
//! does, so a client that reads slowly but steadily is never cut off.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `io` whose writes fail once one has waited `timeout` without progress.
#[derive(Debug)]
pub(crate) struct WriteTimeout<IO> {
    io: IO,
    timeout: Duration,
    /// Running while writes are blocked; cleared by any write that proceeds.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> WriteTimeout<IO> {
    pub(crate) fn new(io: IO, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stalled: None,
        }
    }

    /// After the inner write returned `Pending`: still `Pending`, or an error once the stall has
    /// lasted the timeout. The timer wakes the task when it expires.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client has not read for {timeout:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(&mut self, result: io::Result<T>) -> Poll<io::Result<T>> {
        self.stalled = None;
        Poll::Ready(result)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteTimeout<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.stall(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.stall(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.stall(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(result) => self.progress(result),
            Poll::Pending => self.stall(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_write_to_a_reader_that_stopped_fails_after_the_timeout() {
        // A pipe with a 64-byte buffer nobody reads from.
        let (client, server) = tokio::io::duplex(64);
        let mut server = WriteTimeout::new(server, Duration::from_millis(200));
        let started = tokio::time::Instant::now();
        let error = loop {
            if let Err(error) = server.write_all(&[0u8; 64]).await {
                break error;
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
        drop(client);
    }

    #[tokio::test]
    async fn a_slow_but_steady_reader_is_not_cut_off() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = WriteTimeout::new(server, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0u8; 16];
            while total < 64 * 20 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                total += client.read(&mut buf).await.expect("read");
            }
            total
        });
        // 1280 bytes through a 64-byte pipe read 16 bytes per 20 ms: about 1.6 s in all, far
        // longer than the timeout, but never 200 ms without progress.
        for _ in 0..20 {
            server.write_all(&[1u8; 64]).await.expect("write");
        }
        assert_eq!(reader.await.expect("reader"), 64 * 20);
    }
}
