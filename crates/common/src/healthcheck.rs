//! A tiny HTTP probe for container health checks.
//!
//! The runtime images carry no curl, so each binary answers `--healthcheck` by fetching its own
//! `/healthz` with this function and exiting 0 or 1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Sends `GET path` to `addr` and returns whether the answer was `200`.
///
/// A wildcard listen address (`0.0.0.0`) is probed on loopback, which is where the probe runs.
pub fn probe(addr: &str, path: &str) -> bool {
    let Some(target) = resolve(addr) else {
        return false;
    };
    let timeout = Duration::from_secs(2);
    let Ok(mut stream) = TcpStream::connect_timeout(&target, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn resolve(addr: &str) -> Option<SocketAddr> {
    let mut target = addr.to_socket_addrs().ok()?.next()?;
    if target.ip().is_unspecified() {
        target.set_ip(if target.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Some(target)
}
