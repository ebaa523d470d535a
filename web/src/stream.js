// The live stream, /v1/stream-prices, through EventSource: it reconnects by itself with
// Last-Event-ID after the connection drops (an API restart, the network). An answer that is not a
// stream (a 503 at the stream limit, a 410 for an id the log no longer holds) makes EventSource
// give up; then this asks the endpoint itself what it says and either reopens from the last id it
// saw (`since`) or, for a 410 or when it never saw an id, tells the page to reload from
// /v1/get-prices (`onGone`).

const RETRY_MS = [1000, 2000, 5000];

export class PriceStream {
  /**
   * @param {object} handlers onPrice(entry), onWatermark(data), onState('connecting' | 'open' |
   *   'reconnecting'), onGone() (reload from /v1/get-prices; the stream is already reopened)
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.source = null;
    this.lastEventId = null;
    this.failures = 0;
    this.timer = null;
  }

  /** Opens the stream (from `since` when given) and resolves once it is open or has failed. */
  open(since = null) {
    this.close();
    const url = since === null ? '/v1/stream-prices' : `/v1/stream-prices?since=${encodeURIComponent(since)}`;
    const source = new EventSource(url);
    this.source = source;
    this.handlers.onState(since === null && this.lastEventId === null ? 'connecting' : 'reconnecting');
    const opened = new Promise((resolve) => {
      source.addEventListener('open', () => resolve(true), { once: true });
      source.addEventListener('error', () => resolve(false), { once: true });
    });
    source.addEventListener('open', () => {
      this.failures = 0;
      this.handlers.onState('open');
    });
    source.addEventListener('error', () => {
      if (this.source !== source) return;
      this.handlers.onState('reconnecting');
      if (source.readyState === EventSource.CLOSED) this.recover();
    });
    source.addEventListener('price', (event) => this.receive(event, this.handlers.onPrice));
    source.addEventListener('watermark', (event) => this.receive(event, this.handlers.onWatermark));
    return opened;
  }

  receive(event, handler) {
    if (event.lastEventId) this.lastEventId = event.lastEventId;
    handler(JSON.parse(event.data));
  }

  close() {
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
  }

  /** EventSource gave up: find out why, then reopen or reload. */
  recover() {
    this.close();
    const delay = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
    this.failures += 1;
    this.timer = setTimeout(() => this.probe(), delay);
  }

  async probe() {
    const since = this.lastEventId;
    if (since === null) {
      // Nothing seen to resume from: start live and reload.
      this.lastEventId = null;
      await this.open();
      this.handlers.onGone();
      return;
    }
    const abort = new AbortController();
    let status = 0;
    try {
      const response = await fetch(`/v1/stream-prices?since=${encodeURIComponent(since)}`, {
        signal: abort.signal,
        cache: 'no-store',
      });
      status = response.status;
    } catch {
      status = 0; // the API is unreachable: try again later
    } finally {
      abort.abort();
    }
    if (status === 200) {
      this.open(since);
    } else if (status === 410) {
      this.lastEventId = null;
      await this.open();
      this.handlers.onGone();
    } else {
      this.recover();
    }
  }
}
