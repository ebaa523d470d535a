//! The API and the stored data agree on the window width, or the API does not run: refused at
//! startup when the database already says, stopped as soon as it does otherwise.

use std::net::SocketAddr;
use std::time::Duration;

use tickpipe_api::ApiServerError;
use tickpipe_common::config::Layers;
use tickpipe_common::service::ServiceSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::helpers::database;

type Served = tokio::task::JoinHandle<Result<(), ApiServerError>>;

/// The API over `db_url` with `AGGREGATOR_WINDOW_SECS=window_secs`, served on a free port.
async fn serve(db_url: &str, window_secs: &str) -> (SocketAddr, Served) {
    let free: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let layers = Layers::from_vars([
        ("DATABASE_URL".to_owned(), db_url.to_owned()),
        ("METRICS_ADDR".to_owned(), free.to_string()),
        ("AGGREGATOR_WINDOW_SECS".to_owned(), window_secs.to_owned()),
    ])
    .expect("layers");
    let settings = tickpipe_api::settings::Settings::load(&layers).expect("settings");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = tokio::spawn(tickpipe_api::serve(
        listener,
        settings,
        CancellationToken::new(),
    ));
    (addr, served)
}

/// Waits until the server at `addr` answers `GET /healthz`: it is past its startup check.
async fn wait_until_serving(addr: SocketAddr) {
    tickpipe_testkit::eventually(
        "the API answering",
        Duration::from_secs(20),
        || async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.ok()?;
            answer.starts_with(b"HTTP/1.1 200").then_some(())
        },
    )
    .await;
}

fn assert_names_both(error: &ApiServerError) {
    let message = error.to_string();
    assert!(
        message.contains("AGGREGATOR_WINDOW_SECS=60")
            && message.contains("AGGREGATOR_WINDOW_SECS=30")
            && !message.contains('\n'),
        "one line naming both widths: {message}"
    );
}

#[tokio::test]
async fn another_width_than_the_stored_one_is_refused_at_startup() {
    let db = database().await;
    tickpipe_store::shape::record_window_secs(&db.pool, "AGGREGATOR_WINDOW_SECS", 30)
        .await
        .expect("record");
    let (_, served) = serve(&db.url, "60").await;
    let served = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("refused at once")
        .expect("no panic");
    assert_names_both(&served.expect_err("refused"));
}

#[tokio::test]
async fn a_width_recorded_after_the_start_stops_an_api_that_disagrees() {
    let db = database().await;
    let (disagreeing, disagrees) = serve(&db.url, "60").await;
    let (agreeing, agrees) = serve(&db.url, "30").await;
    // Nothing recorded yet: both pass their startup check and serve.
    wait_until_serving(disagreeing).await;
    wait_until_serving(agreeing).await;
    tickpipe_store::shape::record_window_secs(&db.pool, "AGGREGATOR_WINDOW_SECS", 30)
        .await
        .expect("record");
    let stopped = tokio::time::timeout(Duration::from_secs(20), disagrees)
        .await
        .expect("stopped within a few retries")
        .expect("no panic");
    assert_names_both(&stopped.expect_err("stopped with the mismatch"));
    wait_until_serving(agreeing).await;
    assert!(!agrees.is_finished(), "the API that agrees keeps serving");
    agrees.abort();
}
