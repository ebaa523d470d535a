// The table of the latest window per ticker. Each value cell carries the API's raw value in
// `data-value`, so what is shown can be compared with /v1/get-prices exactly.

import { seconds } from './api.js';
import { isComplete } from './chart.js';
import * as format from './format.js';

const FIELDS = [
  ['averagePrice', format.average],
  ['openPrice', format.price],
  ['closePrice', format.price],
  ['minPrice', format.price],
  ['maxPrice', format.price],
  ['samples', format.count],
];

export class LatestTable {
  constructor(body) {
    this.body = body;
    /** ticker -> { row, entry } */
    this.rows = new Map();
  }

  /** Shows `entry` if it is the ticker's newest window so far (or a newer state of it). */
  offer(entry, completeBefore) {
    const known = this.rows.get(entry.ticker);
    if (known && seconds(known.entry.windowStart) > seconds(entry.windowStart)) return;
    const row = known ? known.row : this.addRow(entry.ticker);
    this.rows.set(entry.ticker, { row, entry });
    this.fill(row, entry, completeBefore);
  }

  addRow(ticker) {
    const row = document.createElement('tr');
    row.dataset.ticker = ticker;
    const cell = (field, numeric) => {
      const td = document.createElement('td');
      td.dataset.field = field;
      if (numeric) td.className = 'num';
      row.append(td);
      return td;
    };
    cell('ticker').textContent = ticker;
    cell('window');
    for (const [field] of FIELDS) cell(field, true);
    cell('ago', true);
    cell('state');
    const rows = [...this.body.children];
    const before = rows.find((other) => other.dataset.ticker > ticker);
    this.body.insertBefore(row, before ?? null);
    return row;
  }

  fill(row, entry, completeBefore) {
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
    this.markState(row, entry, completeBefore);
    this.tick(Date.now() / 1000);
  }

  markState(row, entry, completeBefore) {
    const complete = isComplete(entry, completeBefore);
    const td = row.querySelector('[data-field="state"]');
    td.textContent = complete ? 'complete' : 'open';
    td.dataset.value = String(complete);
    td.className = complete ? 'state-complete' : 'state-open';
  }

  /** The watermark moved: windows it passed are complete. */
  watermark(completeBefore) {
    for (const { row, entry } of this.rows.values()) this.markState(row, entry, completeBefore);
  }

  /** Updates "seconds since the window ended". */
  tick(now) {
    for (const { row } of this.rows.values()) {
      const ago = Math.max(0, Math.floor(now - Number(row.dataset.windowEnd)));
      const td = row.querySelector('[data-field="ago"]');
      td.textContent = `${ago} s ago`;
      td.dataset.value = String(ago);
    }
  }

  /** Forgets every row (before a reload from scratch). */
  clear() {
    this.rows.clear();
    this.body.replaceChildren();
  }

  entries() {
    return [...this.rows.values()].map(({ entry }) => entry);
  }
}
