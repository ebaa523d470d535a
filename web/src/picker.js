// The chart picker: a search box over every ticker, shown once there are more tickers than charts.
// Its suggestions are a <datalist> of at most SUGGESTIONS matches, rebuilt as one types, rather
// than one option per ticker (10,000 options would be most of the page's DOM). Enter, the button,
// or choosing a suggestion charts the ticker named.

import { MAX_CHARTS } from './grid.js';

const SUGGESTIONS = 20;

export class TickerPicker {
  /**
   * @param {Document} doc the page, holding #picker (#pick-input, its datalist #pick-list,
   *   #pick-add and #pick-hint)
   * @param {TickerIndex} tickers the known tickers
   * @param {function} onPick charts a ticker; false if it was charted already
   */
  constructor(doc, tickers, onPick) {
    const byId = (id) => doc.getElementById(id);
    const el = { root: byId('picker'), input: byId('pick-input'), list: byId('pick-list'), button: byId('pick-add'), hint: byId('pick-hint') };
    this.doc = doc;
    this.el = el;
    this.tickers = tickers;
    this.onPick = onPick;
    this.hint(`up to ${MAX_CHARTS} charts; a new one replaces the oldest`, false);
    el.input.addEventListener('input', (event) => {
      // Choosing a suggestion replaces the text without typing (no inputType, or a replacement).
      const chosen = !event.inputType || event.inputType === 'insertReplacementText';
      if (chosen && this.tickers.find(el.input.value) !== null) {
        this.submit();
        return;
      }
      this.suggest();
    });
    el.input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        this.submit();
      }
    });
    el.button.addEventListener('click', () => this.submit());
  }

  setVisible(visible) {
    this.el.root.hidden = !visible;
  }

  suggest() {
    const query = this.el.input.value.trim();
    const matches = query ? this.tickers.match(query, SUGGESTIONS) : [];
    this.el.list.replaceChildren(
      ...matches.map((ticker) => {
        const option = this.doc.createElement('option');
        option.value = ticker;
        return option;
      }),
    );
  }

  /** Charts the ticker named in the box: exactly (any case), or the only one matching. */
  submit() {
    const query = this.el.input.value.trim();
    if (!query) return;
    let ticker = this.tickers.find(query);
    if (ticker === null) {
      const matches = this.tickers.match(query, 2);
      if (matches.length === 1) [ticker] = matches;
    }
    if (ticker === null) {
      this.hint(`no ticker “${query}”`, true);
      return;
    }
    this.el.input.value = '';
    this.el.list.replaceChildren();
    this.hint(this.onPick(ticker) ? `charted ${ticker}` : `${ticker} is charted`, false);
  }

  hint(text, problem) {
    this.el.hint.textContent = text;
    this.el.hint.classList.toggle('problem', problem);
  }
}
