// One ticker's candlestick chart. Bars are entries of /v1/get-prices (a window, or a bar of
// several); a bar that is not yet complete is drawn hollow and grey, so the part of the chart that
// may still change is visible as such.

import { CandlestickSeries, createChart } from 'lightweight-charts';

import { seconds } from './api.js';

const HOLLOW = 'rgba(0, 0, 0, 0)';
const OPEN_GREY = '#8b949e';

/** A complete entry, or one whose end the topic-wide boundary has passed. */
export function isComplete(entry, completeBefore) {
  return entry.complete || (completeBefore !== null && seconds(entry.windowEnd) <= completeBefore);
}

/** The candle of an entry. Open and close are null only for windows older than their recording. */
function candle(entry, complete) {
  const bar = {
    time: seconds(entry.windowStart),
    open: entry.openPrice ?? entry.averagePrice,
    high: entry.maxPrice,
    low: entry.minPrice,
    close: entry.closePrice ?? entry.averagePrice,
  };
  return complete ? bar : { ...bar, color: HOLLOW, borderColor: OPEN_GREY, wickColor: OPEN_GREY };
}

export class TickerChart {
  constructor(container, ticker) {
    this.ticker = ticker;
    this.container = container;
    /** time (s) -> { entry, complete } */
    this.bars = new Map();
    this.chart = createChart(container, {
      autoSize: true,
      layout: {
        background: { color: '#161b22' },
        textColor: '#c9d1d9',
        // Its logo would add an inline <style>, which the page's policy refuses; the footer
        // credits TradingView instead.
        attributionLogo: false,
      },
      grid: { vertLines: { color: '#21262d' }, horzLines: { color: '#21262d' } },
      rightPriceScale: { borderColor: '#30363d' },
      timeScale: { borderColor: '#30363d', timeVisible: true, secondsVisible: true, rightOffset: 2 },
      crosshair: { mode: 0 },
    });
    this.series = this.chart.addSeries(CandlestickSeries, {
      upColor: '#26a69a',
      downColor: '#ef5350',
      borderVisible: true,
      borderUpColor: '#26a69a',
      borderDownColor: '#ef5350',
      wickUpColor: '#26a69a',
      wickDownColor: '#ef5350',
      priceFormat: { type: 'price', precision: 0, minMove: 1 },
    });
  }

  /** Replaces every bar, e.g. after loading another interval. */
  setBars(entries, completeBefore, secondsVisible) {
    this.bars.clear();
    for (const entry of entries) {
      this.bars.set(seconds(entry.windowStart), { entry, complete: isComplete(entry, completeBefore) });
    }
    this.chart.applyOptions({ timeScale: { secondsVisible } });
    this.redraw();
    this.chart.timeScale().fitContent();
  }

  /** Adds or replaces the bar of `entry` (a newer state of it, or a new bar). */
  upsert(entry, completeBefore) {
    const time = seconds(entry.windowStart);
    const known = this.bars.has(time);
    const complete = isComplete(entry, completeBefore) || (known && this.bars.get(time).complete);
    this.bars.set(time, { entry, complete });
    const last = this.lastTime();
    if (time >= last || known) {
      this.series.update(candle(entry, complete), time < last);
    } else {
      this.redraw();
    }
    this.changed();
  }

  /** Marks complete every bar that ends at or before `completeBefore`; redraws those. */
  markComplete(completeBefore) {
    const last = this.lastTime();
    for (const [time, bar] of this.bars) {
      if (!bar.complete && seconds(bar.entry.windowEnd) <= completeBefore) {
        bar.complete = true;
        this.series.update(candle(bar.entry, true), time < last);
      }
    }
    this.changed();
  }

  lastTime() {
    let last = -Infinity;
    for (const time of this.bars.keys()) last = Math.max(last, time);
    return last;
  }

  redraw() {
    const times = [...this.bars.keys()].sort((a, b) => a - b);
    this.series.setData(times.map((time) => candle(this.bars.get(time).entry, this.bars.get(time).complete)));
    this.changed();
  }

  /** Publishes what the chart holds on its container, for people reading the DOM and for tests. */
  changed() {
    const data = this.series.data();
    this.container.dataset.bars = String(data.length);
    this.container.dataset.lastTime = data.length ? String(data[data.length - 1].time) : '';
    if (this.onChange) this.onChange(data);
  }

  /** Frees the chart's canvases and listeners (its card is being removed). */
  remove() {
    this.onChange = null;
    this.chart.remove();
  }

  /** The bars as the chart's series holds them (not this object's copy). */
  drawn() {
    return this.series.data().map((bar) => ({
      time: bar.time,
      open: bar.open,
      high: bar.high,
      low: bar.low,
      close: bar.close,
      complete: bar.color !== HOLLOW,
    }));
  }
}
