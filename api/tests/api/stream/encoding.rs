//! The stream through the compression and CORS layers: never compressed (an encoder would hold
//! events until it had a block's worth), each event arriving as it is committed, and readable by a
//! page on an allowed origin.

use std::time::Duration;

use tokio::time::Instant;

use crate::helpers::database;

use super::client::Client;
use super::support::{assert_events, price, Log, Server, T0};
use super::STREAM;

#[tokio::test]
async fn the_stream_is_not_compressed_and_each_event_arrives_as_it_is_committed() {
    let db = database().await;
    let allowed = "http://127.0.0.1:5001";
    let server = Server::start(
        &db.url,
        &[
            ("API_CORS_ORIGINS", allowed),
            ("API_COMPRESSION_LEVEL", "1"),
        ],
    )
    .await;
    let (mut log, _) = Log::claim(&db.pool, 0).await;
    let headers = [("accept-encoding", "gzip, br, zstd"), ("origin", allowed)];
    let mut client = Client::get(server.addr, STREAM, &headers).await;
    assert_eq!(client.status, 200, "{}", client.head);
    assert_eq!(client.header("content-encoding"), None, "{}", client.head);
    assert_eq!(client.header("etag"), None, "{}", client.head);
    assert_eq!(
        client.header("access-control-allow-origin").as_deref(),
        Some(allowed)
    );
    client.opening_id().await;
    // One commit at a time, each event read before the next commit: nothing is held back.
    for n in 0..5 {
        let written = log.commit(&[price("AMZN", T0 + 30 * n, n)], 0).await;
        let started = Instant::now();
        let events = client.events(written.len()).await;
        assert_events(&events, &written.iter().collect::<Vec<_>>());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "event {n} took {:?}",
            started.elapsed()
        );
    }
    server.stop().await;
}
