//! Server-sent event frames, rendered once as the bytes that go on the wire.
//!
//! A change is rendered when the log is read, and a batch of changes once more as one buffer when
//! the feed publishes it, so that every subscriber writes the same reference-counted bytes: fanning
//! an event out to N streams costs N reference counts, not N serializations and copies. The bytes
//! are what axum's `Sse` would write for the same event (`event:`, `id:`, `data:` lines and a blank
//! line), so clients see no difference.

use axum::body::Bytes;

/// The frame of one event. `data` must be one line (serialized JSON is: newlines are escaped).
pub(crate) fn event(kind: &str, id: i64, data: &str) -> Bytes {
    debug_assert!(!data.contains(['\n', '\r']), "SSE data must be one line");
    Bytes::from(format!("event: {kind}\nid: {id}\ndata: {data}\n\n"))
}

/// A frame without data that sets the client's last event id to `id` without dispatching an
/// event: a client that reconnects before any event still resumes from there.
pub(crate) fn last_event_id(id: i64) -> Bytes {
    Bytes::from(format!("id: {id}\n\n"))
}

/// A comment that keeps a quiet connection open through proxies and tells the client it is alive.
pub(crate) const HEARTBEAT: Bytes = Bytes::from_static(b": heartbeat\n\n");

/// The frames one after the other, as one buffer (one write instead of many).
pub(crate) fn concat<'a>(frames: impl IntoIterator<Item = &'a Bytes> + Clone) -> Bytes {
    let size = frames.clone().into_iter().map(Bytes::len).sum();
    let mut joined = Vec::with_capacity(size);
    for frame in frames {
        joined.extend_from_slice(frame);
    }
    Bytes::from(joined)
}

#[cfg(test)]
mod tests {
    use axum::response::sse::Event;
    use axum::response::IntoResponse;

    use super::*;

    /// The bytes axum's `Sse` writes for `event`, for comparison.
    async fn axum_bytes(event: Event) -> Bytes {
        let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(event)]);
        let response = axum::response::sse::Sse::new(stream).into_response();
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body")
    }

    #[tokio::test]
    async fn an_event_is_the_bytes_axum_writes_for_it() {
        let data = r#"{"ticker":"AAPL","averagePrice":215.5}"#;
        let ours = event("price", 42, data);
        let theirs = axum_bytes(Event::default().event("price").id("42").data(data)).await;
        assert_eq!(ours, theirs);
        assert_eq!(last_event_id(7), axum_bytes(Event::default().id("7")).await);
        assert_eq!(
            HEARTBEAT,
            axum_bytes(Event::default().comment("heartbeat")).await
        );
    }

    #[test]
    fn frames_concatenate_in_order() {
        let frames = [event("price", 1, "{}"), event("watermark", 2, "{}")];
        assert_eq!(
            concat(&frames),
            Bytes::from_static(
                b"event: price\nid: 1\ndata: {}\n\nevent: watermark\nid: 2\ndata: {}\n\n"
            )
        );
        assert!(concat(&[]).is_empty());
    }
}
