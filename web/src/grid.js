// The chart cards, and which tickers get one. Every ticker does while they fit (MAX_CHARTS): with
// more, a chart each would mean thousands of canvases and an hour of bars each to load, so the
// cards show the first MAX_CHARTS tickers until the user picks others (the picker, a ticker's
// button in the table, or #charts=MSFT,AAPL in the URL). Picks beyond MAX_CHARTS push out the
// oldest one.

import { TickerChart } from './chart.js';
import * as format from './format.js';

export const MAX_CHARTS = 6;

/** The names the API accepts in `ticker=` (1-16 of A-Z a-z 0-9 . -). */
const NAME = /^[A-Za-z0-9.-]{1,16}$/;

/** The picks named in a URL hash (`#interval=1m&charts=MSFT,AAPL`), or null for none. */
export function picksFromHash(hash) {
  const named = /(?:^#|&)charts=([^&]*)/.exec(hash)?.[1];
  if (named === undefined) return null;
  const names = decodeURIComponent(named).split(',').filter((name) => NAME.test(name));
  return [...new Set(names)].slice(-MAX_CHARTS);
}

export class ChartGrid {
  /**
   * @param {object} handlers onRemove(ticker) (a card's remove button), onDrawn() (a chart drew
   *   bars)
   */
  constructor(doc, container, handlers) {
    this.doc = doc;
    this.container = container;
    this.handlers = handlers;
    /** ticker -> TickerChart */
    this.charts = new Map();
    /** The user's picks, oldest first; null while the default (the first tickers) holds. */
    this.picked = null;
    this.pickable = false;
  }

  get(ticker) {
    return this.charts.get(ticker);
  }

  tickers() {
    return [...this.charts.keys()];
  }

  /** A ticker the page learnt of: charted if picked, or by default while there is room. */
  offer(ticker) {
    if (this.charts.has(ticker)) return;
    if (this.picked === null ? this.charts.size < MAX_CHARTS : this.picked.includes(ticker)) this.add(ticker);
  }

  /** Charts `ticker`, pushing out the oldest pick beyond MAX_CHARTS; false if it was charted. */
  pick(ticker) {
    if (this.charts.has(ticker)) return false;
    const picked = this.picked ?? this.tickers();
    picked.push(ticker);
    while (picked.length > MAX_CHARTS) this.drop(picked.shift());
    this.picked = picked;
    this.add(ticker);
    return true;
  }

  /** Removes the chart of `ticker`; the remaining ones become the picks. */
  unpick(ticker) {
    this.picked = (this.picked ?? this.tickers()).filter((other) => other !== ticker);
    this.drop(ticker);
  }

  /** Shows or hides the cards' remove buttons (only useful when there are more tickers than charts). */
  setPickable(pickable) {
    this.pickable = pickable;
    for (const button of this.container.querySelectorAll('button.remove')) button.hidden = !pickable;
  }

  add(ticker) {
    const card = this.doc.createElement('article');
    card.className = 'card';
    card.dataset.ticker = ticker;
    const header = this.doc.createElement('header');
    const title = this.doc.createElement('h3');
    title.textContent = ticker;
    const last = this.doc.createElement('span');
    last.className = 'last';
    const change = this.doc.createElement('span');
    change.className = 'change';
    change.title = 'change over the charted hour';
    const remove = this.doc.createElement('button');
    remove.type = 'button';
    remove.className = 'remove';
    remove.textContent = '×';
    remove.title = `Remove the chart of ${ticker}`;
    remove.setAttribute('aria-label', remove.title);
    remove.hidden = !this.pickable;
    remove.addEventListener('click', () => this.handlers.onRemove(ticker));
    header.append(title, last, change, remove);
    const container = this.doc.createElement('div');
    container.className = 'chart';
    container.dataset.ticker = ticker;
    card.append(header, container);
    const before = [...this.container.children].find((other) => other.dataset.ticker > ticker);
    this.container.insertBefore(card, before ?? null);
    const chart = new TickerChart(container, ticker);
    chart.onChange = (data) => {
      if (data.length === 0) return;
      const first = data[0].open;
      const close = data[data.length - 1].close;
      last.textContent = format.price(close);
      const percent = ((close - first) / first) * 100;
      change.textContent = `${percent >= 0 ? '+' : ''}${percent.toFixed(2)}%`;
      change.className = `change ${percent > 0 ? 'up' : percent < 0 ? 'down' : ''}`;
      this.handlers.onDrawn();
    };
    this.charts.set(ticker, chart);
    return chart;
  }

  drop(ticker) {
    const chart = this.charts.get(ticker);
    if (!chart) return;
    this.charts.delete(ticker);
    chart.remove();
    chart.container.closest('.card').remove();
  }
}
