//! A server-sent events client over a plain TCP connection (HTTP/1.1, chunked), so the tests see
//! exactly what the server writes, including the opening `id:` line and the heartbeats.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// One block of the stream (lines up to an empty line).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Block {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub comments: Vec<String>,
}

impl Block {
    /// The id as a number (every event has one).
    pub fn id(&self) -> i64 {
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("a block without a numeric id: {self:?}"))
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().unwrap_or_default())
            .unwrap_or_else(|e| panic!("data is not JSON ({e}): {self:?}"))
    }
}

/// What reading the stream gave.
#[derive(Debug)]
pub enum Next {
    Block(Block),
    /// The response ended (the terminating chunk) or the connection closed.
    Ended,
    TimedOut,
}

#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    ended: bool,
    pub status: u16,
    /// The response head, lower-cased.
    pub head: String,
    /// The body when the response is not a stream (a problem document).
    pub problem: Option<Value>,
}

impl Client {
    /// `GET target` with the extra headers; returns once the response head has arrived.
    pub async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Self {
        Self::get_with_receive_buffer(addr, target, headers, None).await
    }

    /// [`Client::get`] on a socket with a small receive buffer (a slow client fills it quickly).
    pub async fn get_with_receive_buffer(
        addr: SocketAddr,
        target: &str,
        headers: &[(&str, &str)],
        receive_buffer: Option<u32>,
    ) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let mut stream = socket.connect(addr).await.expect("connect");
        let mut request = format!("GET {target} HTTP/1.1\r\nHost: test\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut client = Self {
            stream,
            raw: Vec::new(),
            body: Vec::new(),
            ended: false,
            status: 0,
            head: String::new(),
            problem: None,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let end = loop {
            if let Some(end) = find(&client.raw, b"\r\n\r\n") {
                break end;
            }
            assert!(
                client.read_more(deadline).await,
                "no response head from {addr}{target}"
            );
        };
        client.head = String::from_utf8_lossy(&client.raw[..end]).to_ascii_lowercase();
        client.raw.drain(..end + 4);
        client.status = client
            .head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        if !client.head.contains("text/event-stream") {
            // A whole response: read it (content-length, since errors are small documents).
            let length: usize = client
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while client.raw.len() < length {
                assert!(client.read_more(deadline).await, "truncated body");
            }
            client.problem = serde_json::from_slice(&client.raw[..length]).ok();
        }
        client
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    }

    /// Reads more bytes before `deadline`; `false` on end of stream, error or timeout.
    async fn read_more(&mut self, deadline: Instant) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => false,
            Ok(Ok(n)) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// Moves every complete chunk from the raw bytes to the body.
    fn decode(&mut self) {
        loop {
            let Some(line_end) = find(&self.raw, b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
        }
    }

    /// The next block (comments and the opening `id:` line included) within `timeout`.
    pub async fn next_block(&mut self, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        loop {
            self.decode();
            if let Some(end) = find(&self.body, b"\n\n") {
                let text = String::from_utf8_lossy(&self.body[..end]).into_owned();
                self.body.drain(..end + 2);
                return Next::Block(parse_block(&text));
            }
            if self.ended {
                return Next::Ended;
            }
            if !self.read_more(deadline).await {
                return if Instant::now() >= deadline {
                    Next::TimedOut
                } else {
                    Next::Ended
                };
            }
        }
    }

    /// The next event (a block with data), skipping comments and data-less blocks; `None` if the
    /// stream ends first. Panics after `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Block> {
        loop {
            match self.next_block(timeout).await {
                Next::Block(block) if block.data.is_some() => return Some(block),
                Next::Block(_) => {}
                Next::Ended => return None,
                Next::TimedOut => panic!("no event within {timeout:?}"),
            }
        }
    }

    /// `count` events, in order.
    pub async fn events(&mut self, count: usize) -> Vec<Block> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            match self.next_event(Duration::from_secs(20)).await {
                Some(event) => events.push(event),
                None => panic!(
                    "the stream ended after {} of {count} events (last id {:?})",
                    events.len(),
                    events.last().map(Block::id)
                ),
            }
        }
        events
    }

    /// The opening block: an `id:` line without data.
    pub async fn opening_id(&mut self) -> i64 {
        match self.next_block(Duration::from_secs(10)).await {
            Next::Block(block) if block.data.is_none() && block.event.is_none() => block.id(),
            other => panic!("expected the opening id line, got {other:?}"),
        }
    }

    /// Asserts that nothing but comments arrives for `quiet`.
    pub async fn assert_no_event_for(&mut self, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_block(left).await {
                Next::Block(block) if block.data.is_none() => {}
                Next::TimedOut => return,
                other => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Reads until the response ends (or panics after `timeout`); returns the events on the way.
    pub async fn until_end(&mut self, timeout: Duration) -> Vec<Block> {
        let mut events = Vec::new();
        loop {
            match self.next_block(timeout).await {
                Next::Block(block) if block.data.is_some() => events.push(block),
                Next::Block(_) => {}
                Next::Ended => return events,
                Next::TimedOut => panic!("the stream did not end within {timeout:?}"),
            }
        }
    }
}

fn parse_block(text: &str) -> Block {
    let mut block = Block::default();
    for line in text.split('\n') {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "" => block.comments.push(value),
            "event" => block.event = Some(value),
            "id" => block.id = Some(value),
            "data" => {
                block.data = Some(match block.data.take() {
                    Some(previous) => format!("{previous}\n{value}"),
                    None => value,
                })
            }
            _ => {}
        }
    }
    block
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
