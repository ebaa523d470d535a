// The dashboard with 10,000 tickers (issue 20), in Debian's headless Chromium driven by
// playwright-core, against the real API over a real PostgreSQL. Run through
// scripts/browser-test.sh after dashboard.spec.mjs, with a fresh database of its own and 60 s
// windows; no Kafka, aggregator or generator: api/examples/dashboard_tickers.rs writes the windows
// through the aggregator's write path (tickpipe_store::commit), and the API streams its change log.
//
// Steps, in order (each needs the ones before; the first failure stops the run):
//   1. seed 10,000 tickers' last SEED_WINDOWS windows; /v1/get-prices pages through all of them
//   2. first load: every ticker reaches the page (all pages of /v1/get-prices) within LOAD_LIMIT_MS,
//      the main thread stays responsive, the table draws one page of rows (not 10,000) equal to
//      the API's first entries, and only the first MAX_CHARTS tickers get charts; prints the time
//   3. searching for a ticker shows its row with the API's exact values
//   4. picking a ticker (the picker, then a row's button) shows its chart, with bars equal to
//      /v1/get-prices?ticker=...; removing it takes it away
//   5. the pager moves through the table and reaches the last ticker
//   6. a new window of all 10,000 tickers, committed while the page is open, streams in: every
//      ticker's entry and the drawn rows and charts show it within STREAM_LIMIT_MS
//   7. a screenshot (BROWSER_TEST_OUT/dashboard-10k.png)
// Every step also fails on any console error, page error, failed request or HTTP error status.

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { Pipeline, env, sleep, stepper } from './pipeline.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const OUT = env('BROWSER_TEST_OUT');
const TICKERS = 10_000;
const SEED_WINDOWS = 10;
/** What the page may draw: a page of table rows, and a bound on every element of the page. */
const PAGE_ROWS = 50;
const MAX_CHARTS = 6;
const ELEMENT_LIMIT = 2_500;
/** Navigation to every ticker on the page (10 pages of /v1/get-prices from a debug API). */
const LOAD_LIMIT_MS = 15_000;
/** A round trip into the page: what "not hanging" means here. */
const RESPONSIVE_LIMIT_MS = 1_000;
/** A commit of 10,000 windows to every one of them on the page. */
const STREAM_LIMIT_MS = 15_000;
const STEPS = 7;
/** A step still running after this has hung (a page that never answers can stall playwright). */
const STEP_LIMIT_MS = 120_000;

const pipeline = new Pipeline();
let browser;
let page;
let api;
const problems = [];
let closing = false;
const steps = [];

const FIELDS = ['ticker', 'windowStart', 'averagePrice', 'openPrice', 'closePrice', 'minPrice', 'maxPrice', 'samples', 'complete'];
const name = (secs) => (secs % 3600 === 0 ? `${secs / 3600}h` : secs % 60 === 0 ? `${secs / 60}m` : `${secs}s`);
const pick = (entry) => Object.fromEntries(FIELDS.map((field) => [field, entry[field]]));
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/** The table's drawn rows as the raw values each cell carries. */
function readTable() {
  return page.evaluate(() =>
    [...document.querySelectorAll('#latest-rows tr')].map((row) => {
      const value = (field) => row.querySelector(`[data-field="${field}"]`).dataset.value;
      return {
        ticker: row.dataset.ticker,
        windowStart: value('window'),
        averagePrice: JSON.parse(value('averagePrice')),
        openPrice: JSON.parse(value('openPrice')),
        closePrice: JSON.parse(value('closePrice')),
        minPrice: JSON.parse(value('minPrice')),
        maxPrice: JSON.parse(value('maxPrice')),
        samples: JSON.parse(value('samples')),
        complete: value('state') === 'true',
      };
    }),
  );
}

/** The drawn rows equal `expected` (API entries), or the first difference. */
async function rowsEqual(what, expected) {
  const shown = await readTable();
  const want = expected.map(pick);
  if (!same(shown, want)) {
    const i = shown.findIndex((row, n) => !same(row, want[n]));
    throw new Error(`${what}: ${shown.length} rows drawn, ${want.length} expected; first difference at row ${i}:\n` +
      `     api  ${JSON.stringify(want[i])}\n     page ${JSON.stringify(shown[i])}`);
  }
}

/** Times a round trip into the page; fails when the main thread is busy for too long. */
async function responsive(what) {
  const started = Date.now();
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve())));
  const ms = Date.now() - started;
  if (ms > RESPONSIVE_LIMIT_MS) throw new Error(`${what}: a frame took ${ms} ms (limit ${RESPONSIVE_LIMIT_MS} ms)`);
  return ms;
}

const counts = () => page.evaluate(() => ({
  rows: document.querySelectorAll('#latest-rows tr').length,
  elements: document.getElementsByTagName('*').length,
  cards: [...document.querySelectorAll('#charts .card')].map((card) => card.dataset.ticker),
  info: document.getElementById('page-info').textContent,
}));

function bounded(what, { rows, elements }) {
  if (rows > PAGE_ROWS) throw new Error(`${what}: ${rows} table rows in the DOM (at most ${PAGE_ROWS})`);
  if (elements > ELEMENT_LIMIT) throw new Error(`${what}: ${elements} elements in the DOM (at most ${ELEMENT_LIMIT})`);
}

/** The chart of `ticker` draws what /v1/get-prices says for the page's hour and interval. */
async function chartEqualsApi(ticker) {
  await page.waitForFunction((t) => !tickpipe.loading() && (tickpipe.charts()[t]?.length ?? 0) > 0, ticker, { timeout: 15_000 });
  const [interval, start, window] = await page.evaluate(() => [tickpipe.interval(), tickpipe.chartStart(), tickpipe.window()]);
  const entries = await pipeline.prices({ ticker, startTime: start, interval: interval === window ? null : name(interval) });
  const want = entries.map((e) => ({
    time: Date.parse(e.windowStart) / 1000,
    open: e.openPrice ?? e.averagePrice,
    high: e.maxPrice,
    low: e.minPrice,
    close: e.closePrice ?? e.averagePrice,
    complete: e.complete,
  }));
  const drawn = await page.evaluate((t) => tickpipe.charts()[t], ticker);
  if (!same(drawn, want)) throw new Error(`${ticker}: the chart draws ${JSON.stringify(drawn)}, the API says ${JSON.stringify(want)}`);
  return want.length;
}

async function filter(text) {
  await page.fill('#table-filter', text);
  await page.waitForFunction((t) => document.getElementById('table-filter').value === t, text);
}

function watch(target) {
  target.on('console', (message) => {
    if (message.type() === 'error' && !closing) problems.push(`console error: ${message.text()} (${message.location()?.url ?? ''})`);
  });
  target.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  target.on('requestfailed', (request) => {
    if (!closing) problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`);
  });
  target.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`);
  });
}

const step = stepper(problems, steps, STEP_LIMIT_MS);

async function seed() {
  await pipeline.run('seed', join(pipeline.bin, 'examples', 'dashboard_tickers'), {
    SEED_TICKERS: String(TICKERS),
    SEED_WINDOWS: String(SEED_WINDOWS),
  });
  await pipeline.serve();
  const started = Date.now();
  api = await pipeline.prices();
  const ms = Date.now() - started;
  if (api.length !== TICKERS || new Set(api.map((e) => e.ticker)).size !== TICKERS) {
    throw new Error(`/v1/get-prices holds ${api.length} entries, expected one for each of ${TICKERS} tickers`);
  }
  return `${TICKERS} tickers × ${SEED_WINDOWS} windows of ${pipeline.window} s; /v1/get-prices: ${Math.ceil(TICKERS / 1000)} pages in ${ms} ms`;
}

async function firstLoad() {
  const context = await browser.newContext({ viewport: { width: 1440, height: 980 }, deviceScaleFactor: 1 });
  page = await context.newPage();
  watch(page);
  const reads = [];
  page.on('request', (request) => {
    if (request.url().includes('/v1/get-prices')) reads.push(new URL(request.url()).search);
  });
  const started = Date.now();
  await page.goto(`${pipeline.url}/`, { waitUntil: 'load' });
  let handle;
  try {
    handle = await page.waitForFunction(
      (n) => window.tickpipe && tickpipe.latest().length >= n && !tickpipe.loading() && performance.now(),
      TICKERS,
      { polling: 50, timeout: 2 * LOAD_LIMIT_MS },
    );
  } catch (error) {
    const state = await Promise.race([
      page.evaluate(() => `${tickpipe.latest().length} tickers on the page, ${tickpipe.loading() ? 'still loading' : 'loaded'}`),
      sleep(5_000).then(() => 'the page did not answer within 5 s'),
    ]).catch((e) => `the page could not be read (${e.message})`);
    throw new Error(`not every ticker reached the page within ${2 * LOAD_LIMIT_MS} ms: ${state}; ` +
      `/v1/get-prices read ${reads.length} times (${reads.slice(0, 12).join(' ')})\n     ${error.message}`);
  }
  const loadedMs = await handle.jsonValue();
  const wallMs = Date.now() - started;
  const firstChartMs = await page.evaluate(() => performance.getEntriesByName('tickpipe:first-chart')[0]?.startTime ?? null);
  const frameMs = await responsive('after the load');
  if (loadedMs > LOAD_LIMIT_MS) throw new Error(`every ticker was on the page ${Math.round(loadedMs)} ms after navigation (limit ${LOAD_LIMIT_MS} ms)`);

  const latestPages = reads.filter((query) => !query.includes('startTime')).length;
  if (latestPages < TICKERS / 1000) throw new Error(`the page read ${latestPages} pages of latest entries: ${reads.join(' ')}`);
  const shown = await counts();
  bounded('first load', shown);
  if (shown.rows !== PAGE_ROWS) throw new Error(`${shown.rows} rows drawn, expected a page of ${PAGE_ROWS}`);
  await rowsEqual('the first page', api.slice(0, PAGE_ROWS));
  if (shown.info !== `1–${PAGE_ROWS} of 10,000`) throw new Error(`the pager says "${shown.info}"`);
  const defaults = api.slice(0, MAX_CHARTS).map((e) => e.ticker);
  if (!same(shown.cards, defaults)) throw new Error(`charts of ${shown.cards}, expected the first ${MAX_CHARTS} tickers ${defaults}`);
  if (await page.isHidden('#picker')) throw new Error('no ticker picker with more tickers than charts');
  const chartReads = reads.filter((query) => query.includes('startTime'));
  if (chartReads.some((query) => !query.includes('ticker='))) throw new Error(`a chart load asked for every ticker: ${chartReads}`);
  let bars = 0;
  for (const ticker of defaults) bars += await chartEqualsApi(ticker);
  return `all ${TICKERS} tickers on the page ${Math.round(loadedMs)} ms after navigation start (${wallMs} ms from goto, ` +
    `${latestPages} pages of /v1/get-prices); first chart drawn at ${Math.round(firstChartMs)} ms; a frame after it ${frameMs} ms\n     ` +
    `DOM: ${shown.rows} table rows, ${shown.elements} elements; pager "${shown.info}"; ` +
    `${shown.cards.length} charts (${shown.cards.join(', ')}), ${bars} bars equal /v1/get-prices`;
}

async function search() {
  const notes = [];
  for (const target of ['MSFT', api[Math.floor(TICKERS / 2)].ticker.toLowerCase()]) {
    const started = Date.now();
    await filter(target);
    await page.waitForFunction((t) => document.querySelector('#latest-rows tr')?.dataset.ticker.toUpperCase() === t.toUpperCase(), target, { timeout: 5_000 });
    const ms = Date.now() - started;
    const ticker = target.toUpperCase();
    const [entry] = await pipeline.prices({ ticker });
    const [row] = await readTable();
    if (!same(row, pick(entry))) throw new Error(`searching "${target}": the row shows ${JSON.stringify(row)}, the API says ${JSON.stringify(pick(entry))}`);
    const shown = await counts();
    bounded(`searching "${target}"`, shown);
    notes.push(`"${target}": ${ticker}'s row first (${shown.rows} rows; "${shown.info}") in ${ms} ms, its values equal /v1/get-prices?ticker=${ticker}`);
  }
  await filter('zzzz9');
  await page.waitForFunction(() => document.querySelectorAll('#latest-rows tr').length === 0);
  const none = await counts();
  notes.push(`"zzzz9": no row, "${none.info}"`);
  return notes.join('\n     ');
}

async function picking() {
  const before = await page.evaluate(() => tickpipe.charted());
  await page.fill('#pick-input', 'msft');
  await page.press('#pick-input', 'Enter');
  await page.waitForSelector('#charts .card[data-ticker="MSFT"]', { timeout: 5_000 });
  const msftBars = await chartEqualsApi('MSFT');
  const after = await page.evaluate(() => tickpipe.charted());
  if (after.length !== MAX_CHARTS || after.includes(before[0])) {
    throw new Error(`after picking MSFT the charts are ${after}; expected ${MAX_CHARTS}, without the oldest (${before[0]})`);
  }
  if (!(await page.evaluate(() => location.hash)).includes('MSFT')) throw new Error('the pick is not in the URL');

  // A ticker's button in the table charts it too.
  const ticker = api[TICKERS - 2].ticker;
  await filter(ticker);
  await page.click(`#latest-rows tr[data-ticker="${ticker}"] button.pick`);
  await page.waitForSelector(`#charts .card[data-ticker="${ticker}"]`, { timeout: 5_000 });
  const bars = await chartEqualsApi(ticker);
  const pressed = await page.getAttribute(`#latest-rows tr[data-ticker="${ticker}"] button.pick`, 'aria-pressed');
  if (pressed !== 'true') throw new Error(`${ticker}'s button is not marked charted (aria-pressed=${pressed})`);

  await page.click('#charts .card[data-ticker="MSFT"] button.remove');
  await page.waitForSelector('#charts .card[data-ticker="MSFT"]', { state: 'detached', timeout: 5_000 });
  const hash = await page.evaluate(() => decodeURIComponent(location.hash));
  if (hash.includes('MSFT')) throw new Error(`MSFT was removed but the URL still names it: ${hash}`);
  bounded('after picking', await counts());
  return `MSFT from the picker: its chart draws ${msftBars} bars equal /v1/get-prices?ticker=MSFT, replacing ${before[0]}; ` +
    `${ticker} from its row's button: ${bars} bars; MSFT removed again (URL ${hash})`;
}

async function paging() {
  await filter('');
  await page.waitForFunction((n) => document.querySelectorAll('#latest-rows tr').length === n, PAGE_ROWS);
  await page.click('#page-next');
  await page.waitForFunction((t) => document.querySelector('#latest-rows tr')?.dataset.ticker === t, api[PAGE_ROWS].ticker);
  await rowsEqual('the second page', api.slice(PAGE_ROWS, 2 * PAGE_ROWS));
  const started = Date.now();
  await page.click('#page-last');
  const last = api[TICKERS - 1];
  await page.waitForFunction((t) => [...document.querySelectorAll('#latest-rows tr')].pop()?.dataset.ticker === t, last.ticker);
  const ms = Date.now() - started;
  await rowsEqual('the last page', api.slice(TICKERS - PAGE_ROWS));
  const shown = await counts();
  bounded('the last page', shown);
  if (!(await page.isDisabled('#page-next'))) throw new Error('"next" is enabled on the last page');
  return `next: rows ${PAGE_ROWS + 1}–${2 * PAGE_ROWS} equal the API's; last: "${shown.info}" in ${ms} ms, ending with ${last.ticker}, equal the API's last ${PAGE_ROWS}`;
}

async function streamed() {
  const [first] = await readTable();
  const previous = Date.parse(first.windowStart);
  await page.evaluate(() => {
    window.notReloaded = true;
  });
  const started = Date.now();
  await pipeline.run('advance', join(pipeline.bin, 'examples', 'dashboard_tickers'), { SEED_TICKERS: String(TICKERS) }, ['advance']);
  const committedMs = Date.now() - started;
  const handle = await page.waitForFunction(
    (after) => tickpipe.latest().every((e) => Date.parse(e.windowStart) > after) && Date.now(),
    previous,
    { polling: 100, timeout: STREAM_LIMIT_MS + 5_000 },
  );
  const allMs = (await handle.jsonValue()) - started;
  const frameMs = await responsive('after the streamed window');
  if (allMs > STREAM_LIMIT_MS) throw new Error(`every ticker's new window was on the page ${allMs} ms after the commit began (limit ${STREAM_LIMIT_MS} ms)`);
  if (!(await page.evaluate(() => window.notReloaded === true))) throw new Error('the page was reloaded');
  api = await pipeline.prices();
  const newest = api[0].windowStart;
  if (!api.every((e) => e.windowStart === newest) || Date.parse(newest) <= previous) throw new Error(`the API's latest windows are not one new window: ${newest}`);
  await rowsEqual('the last page after the new window', api.slice(TICKERS - PAGE_ROWS));
  const latest = await page.evaluate(() => tickpipe.latest());
  const byTicker = new Map(latest.map((e) => [e.ticker, e]));
  const wrong = api.filter((e) => !same(pick(byTicker.get(e.ticker) ?? {}), pick(e)));
  if (wrong.length) throw new Error(`${wrong.length} tickers' latest entries differ from /v1/get-prices, e.g. ${JSON.stringify(wrong[0])}`);
  const charted = await page.evaluate(() => tickpipe.charted());
  for (const ticker of charted) await chartEqualsApi(ticker);
  bounded('after the streamed window', await counts());
  return `a window of ${TICKERS} tickers committed in ${committedMs} ms (the seeding program's run); every ticker's entry on the page ` +
    `${allMs} ms after it began, equal to /v1/get-prices; the drawn rows and ${charted.length} charts show it; a frame after it ${frameMs} ms`;
}

async function screenshot() {
  await mkdir(OUT, { recursive: true });
  await page.click('#page-first');
  await page.setViewportSize({ width: 1440, height: 900 });
  await sleep(500);
  const path = join(OUT, 'dashboard-10k.png');
  await page.screenshot({ path, fullPage: true });
  return path;
}

let exitCode = 1;
try {
  console.log(`browser test, ${TICKERS} tickers: ${pipeline.window} s windows, Chromium at ${CHROMIUM}`);
  await step(`seeding ${TICKERS} tickers through the store's write path; /v1/get-prices pages through them`, seed);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  await step('first load: every ticker reaches the page, one page of rows in the DOM, the first tickers charted', firstLoad);
  await step("searching for a ticker shows its row with the API's exact values", search);
  await step('picking a ticker shows its chart, removing it takes it away', picking);
  await step('the pager reaches the last ticker', paging);
  await step('a new window of every ticker streams in without a reload', streamed);
  await step('screenshot', screenshot);
  exitCode = 0;
} catch (error) {
  if (!steps.some((s) => !s.ok)) console.log(`FAIL setup\n     ${error.stack ?? error}`);
} finally {
  closing = true;
  // A hung page can keep close() from returning: give up after a while (playwright kills the
  // browser it launched when this process exits).
  const closed = !browser || (await Promise.race([browser.close().then(() => true, () => true), sleep(10_000).then(() => false)]));
  if (!closed) console.log('     the browser did not close within 10 s; it is killed on exit');
  await pipeline.stopAll().catch((error) => console.log(`stopping the API: ${error}`));
}
const passed = steps.filter((s) => s.ok).length;
console.log(`browser: ${passed} passed, ${STEPS - passed} failed (${TICKERS} tickers)`);
process.exit(exitCode);
