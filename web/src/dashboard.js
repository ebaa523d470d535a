// The page's state and what moves it: one load from /v1/get-prices, then the live stream.
//
// The load follows `nextCursor` through every page of latest entries (1,000 a page), so each of
// 10,000 tickers is in the table; the charts load only the charted tickers' bars (grid.js says
// which), with `ticker=` once there are more tickers than charts.
//
// The stream is opened first and the prices loaded after it is open, as the API's documentation
// says: an event for an entry the load already shows carries the same or a newer state of the
// whole entry, so applying it again is harmless. Events that arrive during a load wait for it.
//
// Charts of the aggregator's own window apply each `price` event directly (the event is the bar).
// A wider bar is a rollup of several windows, which only the API computes exactly, so an event in
// it makes the page fetch that one bar again (at most every REFETCH_DELAY_MS per bar). A
// `watermark` event marks complete every bar and window that ends at or before its boundary.

import { getPrices, seconds } from './api.js';
import { isComplete } from './chart.js';
import * as format from './format.js';
import { ChartGrid, MAX_CHARTS, picksFromHash } from './grid.js';
import { TickerPicker } from './picker.js';
import { PriceStream } from './stream.js';
import { LatestTable } from './table.js';

/** The bar widths offered (those that are multiples of the aggregator's window). */
const INTERVALS = [30, 60, 300, 3600];
const HOUR = 3600;
/** The API's largest page. */
const MAX_LIMIT = 10000;

/**
 * The rows an hour of `interval`-wide bars of `tickers` tickers can take (the hour's bars, plus the
 * partial ones at both ends), at most a page: asked for as the `limit`, since a page's cost to the
 * API's rate limit grows with its `limit` (1 + limit/100 units of a 400-unit burst by default), so
 * asking for 10,000 rows when 2,000 can come would spend five times what it needs.
 */
export function hourRows(interval, tickers) {
  return Math.min(MAX_LIMIT, Math.max(1, (Math.ceil(HOUR / interval) + 2) * Math.max(1, tickers)));
}
const REFETCH_DELAY_MS = 250;
const RELOAD_RETRY_MS = 3000;

export class Dashboard {
  constructor(doc) {
    const byId = (id) => doc.getElementById(id);
    this.doc = doc;
    this.el = {
      badge: byId('badge'),
      intervals: byId('intervals'),
      subtitle: byId('subtitle'),
      notice: byId('notice'),
    };
    this.grid = new ChartGrid(doc, byId('charts'), {
      onRemove: (ticker) => this.unpick(ticker),
      onDrawn: () => this.markFirstChart(),
    });
    this.grid.picked = picksFromHash(doc.location.hash);
    this.table = new LatestTable(doc, {
      isCharted: (ticker) => this.grid.get(ticker) !== undefined,
      toggle: (ticker) => (this.grid.get(ticker) ? this.unpick(ticker) : this.pick(ticker)),
    });
    this.picker = new TickerPicker(doc, this.table.tickers, (ticker) => this.pick(ticker));
    /** Whether there are more tickers than charts (the picker and the remove buttons show). */
    this.pickable = false;
    /** The aggregator's window in seconds, learnt from the first entry. */
    this.window = null;
    /** The selected bar width in seconds, and the start of the charts' hour. */
    this.interval = null;
    this.chartStart = null;
    /** Every window ending at or before this (s) is final, from the last `watermark` event. */
    this.completeBefore = null;
    /** End (s) of the newest complete window seen: what the freshness badge measures. */
    this.newestComplete = null;
    this.streamState = 'connecting';
    /** While a full load runs, events wait here (null otherwise). */
    this.queued = [];
    /** While only the charts load (another interval or pick), price events wait here. */
    this.chartPending = null;
    /** Counts chart loads: the answer of a superseded one is dropped. */
    this.generation = 0;
    /** `${ticker}@${barStart}` -> pending refetch of that bar */
    this.refetches = new Map();
    this.firstChartMarked = false;
    this.stream = new PriceStream({
      onPrice: (entry) => this.receive('price', entry),
      onWatermark: (data) => this.receive('watermark', data),
      onState: (state) => {
        this.streamState = state;
        this.renderBadge();
      },
      onGone: () => {
        // The stream no longer continues what the page shows (a 410: the log was pruned past the
        // page's id, or the API now reads another database): start over from the API's state.
        this.completeBefore = null;
        this.newestComplete = null;
        this.table.clear();
        this.reload();
      },
    });
  }

  async start() {
    setInterval(() => {
      this.table.tick(Date.now() / 1000);
      this.renderBadge();
    }, 1000);
    this.renderBadge();
    await this.stream.open();
    await this.reload();
  }

  /** Loads the latest windows and the charts; events received meanwhile are applied after. */
  async reload() {
    // Events so far are in the snapshot the requests below will read.
    this.queued = [];
    try {
      const latest = await getPrices();
      for (const entry of latest) {
        this.learnWindow(entry);
        this.acceptLatest(entry);
      }
      if (this.window !== null) await this.loadCharts();
      this.showNotice(null);
    } catch (error) {
      this.showNotice(`Cannot load prices (${error.message}); retrying.`);
      setTimeout(() => this.reload(), RELOAD_RETRY_MS);
      return;
    }
    const queued = this.queued;
    this.queued = null;
    for (const [kind, data] of queued) this.apply(kind, data);
  }

  receive(kind, data) {
    if (this.queued) this.queued.push([kind, data]);
    else this.apply(kind, data);
  }

  apply(kind, data) {
    if (kind === 'watermark') {
      this.watermark(seconds(data.completeBefore));
      return;
    }
    const firstEntry = this.window === null;
    this.learnWindow(data);
    this.acceptLatest(data);
    if (firstEntry) this.switchInterval(this.interval, true);
    else this.updateChart(data);
  }

  /** The window is the width of any entry of the default interval. */
  learnWindow(entry) {
    if (this.window !== null) return;
    this.window = seconds(entry.windowEnd) - seconds(entry.windowStart);
    const choices = [...new Set([this.window, ...INTERVALS.filter((secs) => secs % this.window === 0)])]
      .sort((a, b) => a - b);
    const fromHash = /interval=(\w+)/.exec(this.doc.location.hash)?.[1];
    const named = choices.find((secs) => format.intervalName(secs) === fromHash);
    this.interval = named ?? choices.find((secs) => secs >= 30) ?? this.window;
    this.el.intervals.replaceChildren(
      ...choices.map((secs) => {
        const button = this.doc.createElement('button');
        button.type = 'button';
        button.textContent = format.intervalName(secs);
        button.dataset.interval = format.intervalName(secs);
        button.addEventListener('click', () => this.switchInterval(secs));
        return button;
      }),
    );
    this.renderInterval();
  }

  acceptLatest(entry) {
    this.table.offer(entry, this.completeBefore);
    this.grid.offer(entry.ticker);
    this.updatePickable();
    if (isComplete(entry, this.completeBefore)) this.sawComplete(seconds(entry.windowEnd));
    this.renderBadge();
  }

  /** The picker and the remove buttons show once there are more tickers than charts. */
  updatePickable() {
    const pickable = this.table.size > MAX_CHARTS;
    if (pickable === this.pickable) return;
    this.pickable = pickable;
    this.picker.setVisible(pickable);
    this.grid.setPickable(pickable);
    this.table.setPickable(pickable);
  }

  /** Charts `ticker` (loading the charts again); false if it was charted already. */
  pick(ticker) {
    if (!this.grid.pick(ticker)) return false;
    this.table.render();
    this.switchInterval(this.interval, true);
    return true;
  }

  unpick(ticker) {
    this.grid.unpick(ticker);
    this.table.render();
    this.writeHash();
  }

  sawComplete(end) {
    if (this.newestComplete === null || end > this.newestComplete) this.newestComplete = end;
  }

  watermark(completeBefore) {
    if (this.completeBefore !== null && completeBefore <= this.completeBefore) return;
    this.completeBefore = completeBefore;
    this.table.watermark(completeBefore);
    for (const entry of this.table.entries()) {
      if (isComplete(entry, completeBefore)) this.sawComplete(seconds(entry.windowEnd));
    }
    for (const chart of this.grid.charts.values()) chart.markComplete(completeBefore);
    this.renderBadge();
  }

  /** The `interval` parameter for a width: none for the window itself (the API's default). */
  intervalParam(secs) {
    return secs === this.window ? null : format.intervalName(secs);
  }

  /** Loads the charts' last hour at the selected interval. */
  async loadCharts() {
    const generation = ++this.generation;
    for (const pending of this.refetches.values()) clearTimeout(pending.timer);
    this.refetches.clear();
    this.chartPending = [];
    const interval = this.interval;
    const start = Math.floor((Date.now() / 1000 - HOUR) / interval) * interval;
    // Every ticker is charted while they fit: then one query for all, which also brings tickers
    // that appeared since the latest load; otherwise only the charted ones'.
    const all = this.grid.picked === null && this.table.size <= MAX_CHARTS;
    const charted = this.grid.tickers();
    const entries = all || charted.length > 0
      ? await getPrices({
        interval: this.intervalParam(interval),
        ticker: all ? null : charted.join(','),
        startTime: start,
        limit: hourRows(interval, all ? this.table.size : charted.length),
      })
      : [];
    if (generation !== this.generation) return;
    const byTicker = new Map(this.grid.tickers().map((ticker) => [ticker, []]));
    for (const entry of entries) {
      if (!byTicker.has(entry.ticker)) {
        this.grid.offer(entry.ticker);
        if (!this.grid.get(entry.ticker)) continue;
        byTicker.set(entry.ticker, []);
      }
      byTicker.get(entry.ticker).push(entry);
    }
    this.chartStart = start;
    for (const [ticker, bars] of byTicker) {
      this.grid.get(ticker)?.setBars(bars, this.completeBefore, interval < 60);
    }
    const pending = this.chartPending;
    this.chartPending = null;
    for (const entry of pending) this.updateChart(entry);
  }

  async switchInterval(secs, force = false) {
    if (secs === this.interval && !force) return;
    this.interval = secs;
    this.renderInterval();
    this.writeHash();
    try {
      await this.loadCharts();
      this.showNotice(null);
    } catch (error) {
      this.showNotice(`Cannot load the ${format.intervalName(secs)} bars (${error.message}); retrying.`);
      setTimeout(() => this.switchInterval(secs, true), RELOAD_RETRY_MS);
    }
  }

  /** A window changed: move its bar. */
  updateChart(entry) {
    if (this.chartPending) {
      this.chartPending.push(entry);
      return;
    }
    if (this.chartStart === null || seconds(entry.windowStart) < this.chartStart) return;
    const chart = this.grid.get(entry.ticker);
    if (!chart) return;
    if (this.interval === this.window) {
      chart.upsert(entry, this.completeBefore);
      return;
    }
    const barStart = Math.floor(seconds(entry.windowStart) / this.interval) * this.interval;
    this.refetchBar(entry.ticker, barStart);
  }

  /** Fetches one bar again soon; events meanwhile are covered by that one request. */
  refetchBar(ticker, barStart) {
    const key = `${ticker}@${barStart}`;
    const pending = this.refetches.get(key) ?? { timer: null, issued: 0, applied: 0 };
    this.refetches.set(key, pending);
    if (pending.timer !== null) return;
    const generation = this.generation;
    const interval = this.interval;
    pending.timer = setTimeout(async () => {
      pending.timer = null;
      const sequence = ++pending.issued;
      let entries;
      try {
        entries = await getPrices({
          interval: this.intervalParam(interval),
          ticker,
          startTime: barStart,
          endTime: barStart + interval,
          // One bar: a page of one costs the API's rate limit 2 units, the default 1000 rows 11.
          limit: 1,
        });
      } catch {
        if (generation === this.generation) setTimeout(() => this.refetchBar(ticker, barStart), 1000);
        return;
      }
      if (generation !== this.generation || sequence < pending.applied) return;
      pending.applied = sequence;
      const bar = entries.find((entry) => entry.ticker === ticker);
      if (bar) this.grid.get(ticker)?.upsert(bar, this.completeBefore);
      this.forgetOldRefetches(barStart);
    }, REFETCH_DELAY_MS);
  }

  forgetOldRefetches(newest) {
    for (const [key, pending] of this.refetches) {
      const start = Number(key.split('@')[1]);
      if (pending.timer === null && start < newest - 2 * this.interval) this.refetches.delete(key);
    }
  }

  /** Keeps the interval and the picks in the URL (`#interval=1m&charts=MSFT,AAPL`). */
  writeHash() {
    const parts = [`interval=${format.intervalName(this.interval)}`];
    if (this.grid.picked !== null) parts.push(`charts=${this.grid.picked.join(',')}`);
    this.doc.defaultView.history.replaceState(null, '', `#${parts.join('&')}`);
  }

  markFirstChart() {
    if (this.firstChartMarked) return;
    this.firstChartMarked = true;
    // Drawn on the next frame; the mark follows the frame after it.
    const frame = this.doc.defaultView.requestAnimationFrame.bind(this.doc.defaultView);
    frame(() => frame(() => this.doc.defaultView.performance.mark('tickpipe:first-chart')));
  }

  renderInterval() {
    for (const button of this.el.intervals.children) {
      button.setAttribute('aria-pressed', String(button.dataset.interval === format.intervalName(this.interval)));
    }
    this.el.subtitle.textContent =
      `live prices · ${format.intervalName(this.interval)} bars over the last hour (UTC) · ` +
      `${format.intervalName(this.window)} windows`;
  }

  /** Green while the newest complete window is younger than 2 windows; red with the reason. */
  renderBadge() {
    const now = Date.now() / 1000;
    let state;
    let text;
    if (this.streamState === 'connecting') {
      [state, text] = ['connecting', 'connecting…'];
    } else if (this.streamState !== 'open') {
      [state, text] = ['disconnected', 'stream disconnected, reconnecting'];
    } else if (this.newestComplete === null || this.window === null) {
      [state, text] = ['stale', 'no data yet'];
    } else {
      const age = Math.max(0, Math.floor(now - this.newestComplete));
      [state, text] = age < 2 * this.window ? ['ok', `live · newest window ${age} s old`] : ['stale', `no data for ${age} s`];
    }
    if (this.el.badge.dataset.state !== state) this.el.badge.dataset.state = state;
    if (this.el.badge.textContent !== text) this.el.badge.textContent = text;
  }

  showNotice(text) {
    this.el.notice.hidden = text === null;
    this.el.notice.textContent = text ?? '';
  }

  /** What tests (and curious people, from the console) read: the charts' own series data. */
  hook() {
    return {
      window: () => this.window,
      interval: () => this.interval,
      intervalName: () => format.intervalName(this.interval),
      chartStart: () => this.chartStart,
      stream: () => ({ state: this.streamState, lastEventId: this.stream.lastEventId }),
      charts: () => Object.fromEntries([...this.grid.charts].map(([ticker, chart]) => [ticker, chart.drawn()])),
      charted: () => this.grid.tickers(),
      latest: () => this.table.entries(),
      badge: () => ({ state: this.el.badge.dataset.state, text: this.el.badge.textContent }),
      loading: () => this.queued !== null || this.chartPending !== null,
    };
  }
}
