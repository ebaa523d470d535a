// The tickers the page knows, kept sorted, and the search over them that the table's filter and the
// chart picker share. With 10,000 tickers a sorted array and a linear scan per keystroke are
// enough (well under a millisecond); nothing here touches the DOM.

/** The order the page lists tickers in (the one the table always had: plain string order). */
export function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class TickerIndex {
  constructor() {
    this.sorted = [];
    this.known = new Set();
  }

  get size() {
    return this.sorted.length;
  }

  has(ticker) {
    return this.known.has(ticker);
  }

  /** Adds a ticker; false if it was known. Appending is the common case (the API sends them sorted). */
  add(ticker) {
    if (this.known.has(ticker)) return false;
    this.known.add(ticker);
    const last = this.sorted[this.sorted.length - 1];
    if (last === undefined || compare(last, ticker) < 0) {
      this.sorted.push(ticker);
      return true;
    }
    let low = 0;
    let high = this.sorted.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (compare(this.sorted[mid], ticker) < 0) low = mid + 1;
      else high = mid;
    }
    this.sorted.splice(low, 0, ticker);
    return true;
  }

  clear() {
    this.sorted = [];
    this.known.clear();
  }

  /**
   * The tickers containing `query` (case-insensitive), at most `limit`: an exact match first, then
   * those starting with it, then the rest, each in list order; every ticker for an empty query.
   */
  match(query, limit = Infinity) {
    const wanted = query.trim().toUpperCase();
    if (!wanted) return this.sorted.slice(0, limit);
    const exact = [];
    const prefix = [];
    const inside = [];
    for (const ticker of this.sorted) {
      const name = ticker.toUpperCase();
      if (name === wanted) exact.push(ticker);
      else if (name.startsWith(wanted)) prefix.push(ticker);
      else if (name.includes(wanted)) inside.push(ticker);
      // Enough exact and prefix matches already: the rest could only come after them (an exact
      // match sorts before the names it prefixes).
      if (exact.length + prefix.length >= limit) break;
    }
    return [...exact, ...prefix, ...inside].slice(0, limit);
  }

  /** The ticker named `query` regardless of case, or null. */
  find(query) {
    const wanted = query.trim();
    if (this.known.has(wanted)) return wanted;
    const upper = wanted.toUpperCase();
    return this.sorted.find((ticker) => ticker.toUpperCase() === upper) ?? null;
  }
}
