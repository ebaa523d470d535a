//! Over real sockets: the server tells the guard each connection's peer address, so clients on
//! two addresses (127.0.0.1 and ::1, when this machine has an IPv6 loopback) have two buckets.

use std::net::SocketAddr;
use std::time::Duration;

use tickpipe_common::config::Layers;
use tickpipe_common::service::ServiceSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::helpers::database;

/// The status line of `GET path` to `addr`, and its `ratelimit` field.
async fn get(addr: SocketAddr, path: &str) -> (String, Option<String>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("answered within 10 s")
    .expect("read");
    let status = response.lines().next().unwrap_or_default().to_owned();
    let field = response.lines().find_map(|line| {
        line.to_ascii_lowercase()
            .strip_prefix("ratelimit: ")
            .map(str::to_owned)
    });
    (status, field)
}

#[tokio::test]
async fn each_peer_address_has_its_own_bucket() {
    let db = database().await;
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let layers = Layers::from_vars([
        ("DATABASE_URL".to_owned(), db.url.clone()),
        ("METRICS_ADDR".to_owned(), free.to_string()),
        ("API_RATE_LIMIT_RPS".to_owned(), "1".to_owned()),
        ("API_RATE_LIMIT_BURST".to_owned(), "2".to_owned()),
    ])
    .expect("layers");
    let settings = tickpipe_api::settings::Settings::load(&layers).expect("settings");
    // Both loopbacks if there is an IPv6 one (dual-stack), else IPv4 only.
    let (listener, ipv6) = match tokio::net::TcpListener::bind("[::]:0").await {
        Ok(listener)
            if tokio::net::TcpStream::connect((
                "::1",
                listener.local_addr().expect("addr").port(),
            ))
            .await
            .is_ok() =>
        {
            (listener, true)
        }
        _ => (
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
            false,
        ),
    };
    let port = listener.local_addr().expect("addr").port();
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(tickpipe_api::serve(listener, settings, shutdown.clone()));
    let v4 = SocketAddr::from(([127, 0, 0, 1], port));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(v4, "/v1/get-prices").await.0);
    }
    assert!(statuses[0].contains(" 200 "), "{statuses:?}");
    assert!(
        statuses.iter().any(|status| status.contains(" 429 ")),
        "{statuses:?}"
    );
    if ipv6 {
        let (status, field) = get(
            SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port)),
            "/v1/get-prices",
        )
        .await;
        assert!(
            status.contains(" 200 "),
            "::1 has a bucket of its own: {status}"
        );
        assert_eq!(field.as_deref(), Some("\"default\";r=1;t=1"));
    }
    shutdown.cancel();
    served.await.expect("join").expect("serve");
}
