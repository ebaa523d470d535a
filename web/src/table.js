// The table of the latest window per ticker. It holds every ticker's entry but draws one page of
// PAGE_SIZE rows: with 10,000 tickers a row each would be 120,000 cells to build, restyle on every
// watermark and relabel every second. A filter narrows the tickers and a pager moves through them;
// both appear only once there is more than one page, so a few tickers look as they always did.
// Each value cell carries the API's raw value in `data-value`, so what is shown can be compared
// with /v1/get-prices exactly.

import { seconds } from './api.js';
import { isComplete } from './chart.js';
import * as format from './format.js';
import { TickerIndex } from './tickers.js';

export const PAGE_SIZE = 50;

const FIELDS = [
  ['averagePrice', format.average],
  ['openPrice', format.price],
  ['closePrice', format.price],
  ['minPrice', format.price],
  ['maxPrice', format.price],
  ['samples', format.count],
];

export class LatestTable {
  /**
   * @param {Document} doc the page, holding #latest-rows (the tbody), #table-tools (#table-filter,
   *   #page-info and the pager's #page-first, #page-prev, #page-next and #page-last)
   * @param {object} charts isCharted(ticker), toggle(ticker): the ticker cells' chart buttons,
   *   shown while `pickable` (more tickers than charts)
   */
  constructor(doc, charts) {
    const byId = (id) => doc.getElementById(id);
    const el = {
      body: byId('latest-rows'),
      tools: byId('table-tools'),
      filter: byId('table-filter'),
      info: byId('page-info'),
      first: byId('page-first'),
      prev: byId('page-prev'),
      next: byId('page-next'),
      last: byId('page-last'),
    };
    this.doc = doc;
    this.el = el;
    this.charts = charts;
    this.tickers = new TickerIndex();
    /** ticker -> its newest entry */
    this.latest = new Map();
    this.completeBefore = null;
    this.query = '';
    /** The filtered tickers, or null when a new ticker or another query made it stale. */
    this.view = null;
    this.page = 0;
    /** ticker -> row, for the page drawn */
    this.shown = new Map();
    this.pickable = false;
    this.scheduled = false;
    el.filter.addEventListener('input', () => {
      this.query = el.filter.value;
      this.view = null;
      this.page = 0;
      this.render();
    });
    const go = (page) => () => {
      this.page = page();
      this.render();
    };
    el.first.addEventListener('click', go(() => 0));
    el.prev.addEventListener('click', go(() => this.page - 1));
    el.next.addEventListener('click', go(() => this.page + 1));
    el.last.addEventListener('click', go(() => Infinity));
    el.body.addEventListener('click', (event) => {
      const button = event.target.closest('button.pick');
      if (button) this.charts.toggle(button.closest('tr').dataset.ticker);
    });
  }

  get size() {
    return this.tickers.size;
  }

  /** Keeps `entry` if it is the ticker's newest window so far (or a newer state of it). */
  offer(entry, completeBefore) {
    this.completeBefore = completeBefore;
    const known = this.latest.get(entry.ticker);
    if (known && seconds(known.windowStart) > seconds(entry.windowStart)) return;
    this.latest.set(entry.ticker, entry);
    if (!known) {
      this.tickers.add(entry.ticker);
      this.view = null;
      this.schedule();
      return;
    }
    const row = this.shown.get(entry.ticker);
    if (row) this.fill(row, entry, Date.now() / 1000);
  }

  /**
   * Draws the page once the current task is done: a load of 10,000 entries, or a burst of new
   * tickers from the stream, costs one render instead of one each.
   */
  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.render();
    });
  }

  /** The tickers the filter lets through, in list order (an exact match first). */
  visible() {
    this.view ??= this.tickers.match(this.query);
    return this.view;
  }

  /** Draws the current page, reusing the rows already there. */
  render() {
    const view = this.visible();
    const pages = Math.max(1, Math.ceil(view.length / PAGE_SIZE));
    this.page = Math.max(0, Math.min(this.page, pages - 1));
    const tickers = view.slice(this.page * PAGE_SIZE, (this.page + 1) * PAGE_SIZE);
    const rows = [...this.el.body.children];
    while (rows.length < tickers.length) rows.push(this.el.body.appendChild(this.makeRow()));
    while (rows.length > tickers.length) rows.pop().remove();
    this.shown.clear();
    const now = Date.now() / 1000;
    tickers.forEach((ticker, i) => {
      this.label(rows[i], ticker);
      this.fill(rows[i], this.latest.get(ticker), now);
      this.shown.set(ticker, rows[i]);
    });
    this.renderTools(view.length, pages);
  }

  renderTools(matching, pages) {
    const { tools, info, first, prev, next, last } = this.el;
    tools.hidden = this.size <= PAGE_SIZE && this.query === '';
    const from = this.page * PAGE_SIZE;
    const shown = Math.min(PAGE_SIZE, matching - from);
    const of = this.query === '' ? '' : ` (filtered from ${format.count(this.size)})`;
    info.textContent = matching === 0
      ? `no ticker matches “${this.query.trim()}”`
      : `${format.count(from + 1)}–${format.count(from + shown)} of ${format.count(matching)}${of}`;
    info.dataset.page = String(this.page + 1);
    info.dataset.pages = String(pages);
    first.disabled = prev.disabled = this.page === 0;
    next.disabled = last.disabled = this.page >= pages - 1;
  }

  makeRow() {
    const row = this.doc.createElement('tr');
    const cell = (field, numeric) => {
      const td = this.doc.createElement('td');
      td.dataset.field = field;
      if (numeric) td.className = 'num';
      row.append(td);
    };
    cell('ticker');
    cell('window');
    for (const [field] of FIELDS) cell(field, true);
    cell('ago', true);
    cell('state');
    return row;
  }

  /** Names the row's ticker: a button that charts it while there are more tickers than charts. */
  label(row, ticker) {
    row.dataset.ticker = ticker;
    const td = row.firstChild;
    if (!this.pickable) {
      td.textContent = ticker;
      return;
    }
    const button = this.doc.createElement('button');
    button.type = 'button';
    button.className = 'pick';
    button.textContent = ticker;
    const charted = this.charts.isCharted(ticker);
    button.setAttribute('aria-pressed', String(charted));
    button.title = charted ? `Remove the chart of ${ticker}` : `Chart ${ticker}`;
    td.replaceChildren(button);
  }

  /** Shows or hides the ticker cells' chart buttons. */
  setPickable(pickable) {
    if (pickable === this.pickable) return;
    this.pickable = pickable;
    this.render();
  }

  fill(row, entry, now) {
    const get = (field) => row.querySelector(`[data-field="${field}"]`);
    const start = seconds(entry.windowStart);
    const end = seconds(entry.windowEnd);
    get('window').textContent = `${format.clock(start)}–${format.clock(end)}`;
    get('window').dataset.value = entry.windowStart;
    row.dataset.windowEnd = String(end);
    for (const [field, show] of FIELDS) {
      const td = get(field);
      td.textContent = show(entry[field]);
      td.dataset.value = JSON.stringify(entry[field]);
    }
    this.markState(row, entry);
    this.age(row, now);
  }

  markState(row, entry) {
    const complete = isComplete(entry, this.completeBefore);
    const td = row.querySelector('[data-field="state"]');
    td.textContent = complete ? 'complete' : 'open';
    td.dataset.value = String(complete);
    td.className = complete ? 'state-complete' : 'state-open';
  }

  /** The watermark moved: windows it passed are complete (only the drawn rows show it). */
  watermark(completeBefore) {
    this.completeBefore = completeBefore;
    for (const [ticker, row] of this.shown) this.markState(row, this.latest.get(ticker));
  }

  /** Updates "seconds since the window ended" on the drawn rows. */
  tick(now) {
    for (const row of this.shown.values()) this.age(row, now);
  }

  age(row, now) {
    const ago = Math.max(0, Math.floor(now - Number(row.dataset.windowEnd)));
    const td = row.querySelector('[data-field="ago"]');
    const text = `${ago} s ago`;
    if (td.textContent !== text) td.textContent = text;
    td.dataset.value = String(ago);
  }

  /** Forgets every ticker (before a reload from scratch). */
  clear() {
    this.latest.clear();
    this.tickers.clear();
    this.view = null;
    this.render();
  }

  entries() {
    return [...this.latest.values()];
  }
}
