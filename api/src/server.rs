//! The HTTP/1.1 server under the router: its own accept loop, a request-head timeout, a write
//! timeout and a graceful drain.

use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::write_timeout::WriteTimeout;

/// The HTTP/1.1 server: accepts connections until `shutdown` is cancelled, then lets in-flight
/// requests finish and returns once every connection is closed. A connection whose client has not
/// read anything for `write_timeout` while a response waits to be written is closed (see
/// [`WriteTimeout`]): a stream whose client stopped reading frees its place, and a response that
/// cannot be written holds the drain no longer than that.
///
/// Why not `axum::serve`: it has no timeout for reading a request head, so a client that opens a
/// connection and never finishes its request line holds the connection (and its memory) forever.
/// hyper's own HTTP/1 connection has one (`header_read_timeout`, which needs a timer). HTTP/2 is not
/// served: it would need its own protection against slow clients, and nothing here needs it.
pub(crate) async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
    write_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    while let Some((stream, peer)) = accept(&listener, &shutdown).await {
        // The peer's address, for the rate limit of clients without a key (`crate::access`).
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let connection = graceful.watch(http.serve_connection(
            TokioIo::new(WriteTimeout::new(stream, write_timeout)),
            service,
        ));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Includes a client that timed out sending its request head or reading the response:
                // its problem, not ours.
                tracing::debug!(%error, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting connections; draining in-flight requests");
    graceful.shutdown().await;
}

/// The next connection and its peer's address, or `None` once `shutdown` is cancelled.
async fn accept(
    listener: &tokio::net::TcpListener,
    shutdown: &CancellationToken,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(error) if is_per_connection_error(&error) => {}
                Err(error) => {
                    // Out of file descriptors and the like: give the system a moment rather than
                    // spin on the same error.
                    tracing::error!(%error, "cannot accept connections; retrying in 1 s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => return None,
                    }
                }
            },
            () = shutdown.cancelled() => return None,
        }
    }
}

/// Accept errors that concern one connection only (the client gave up before we accepted it).
fn is_per_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
