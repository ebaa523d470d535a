// The dashboard in a real browser (Debian's headless Chromium driven by playwright-core) against
// the real pipeline: Kafka, PostgreSQL, the aggregator, the generator and the API (see
// pipeline.mjs). Run through scripts/browser-test.sh, which builds everything and prepares the
// topic and the database.
//
// Steps, in order (each needs the ones before; the first failure stops the run):
//   1. first load: no console error, no failed request, the page's headers (CSP, caching);
//      prints the bytes transferred and the time to the first chart
//   2. every ticker's chart has drawn bars equal to /v1/get-prices, and the table equals it
//   3. a new window appears without a reload within grace + 5 s of its end
//   4. the API is stopped and started again: the badge says so, the page reconnects by itself
//      (Last-Event-ID) and misses no window, without reading /v1/get-prices again
//   5. each interval redraws with bars equal to /v1/get-prices?interval=...
//   6. a screenshot (BROWSER_TEST_OUT/dashboard.png)
// Every step also fails on any console error, page error, failed request or HTTP error status
// (during the API's restart, only the stream's failed reconnection attempts are expected).

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { Pipeline, env, sleep } from './pipeline.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const OUT = env('BROWSER_TEST_OUT');
const PAGE_WEIGHT_LIMIT = 300 * 1024;

const pipeline = new Pipeline();
const windowSecs = pipeline.window;
let browser;
let page;
const problems = [];
let restarting = false;
let closing = false;
const steps = [];

/** The API's entry as the page draws it. */
function bar(entry) {
  return {
    time: Date.parse(entry.windowStart) / 1000,
    open: entry.openPrice ?? entry.averagePrice,
    high: entry.maxPrice,
    low: entry.minPrice,
    close: entry.closePrice ?? entry.averagePrice,
    complete: entry.complete,
  };
}

function byTicker(entries) {
  const out = {};
  for (const entry of entries) (out[entry.ticker] ??= []).push(bar(entry));
  return out;
}

const name = (secs) => (secs % 3600 === 0 ? `${secs / 3600}h` : secs % 60 === 0 ? `${secs / 60}m` : `${secs}s`);
/** The `interval` parameter the page sends for a width: none for the window itself. */
const param = (secs) => (secs === windowSecs ? null : name(secs));

function firstDifference(a, b) {
  const left = JSON.stringify(a);
  const right = JSON.stringify(b);
  let i = 0;
  while (i < left.length && left[i] === right[i]) i += 1;
  return `api …${left.slice(Math.max(0, i - 80), i + 120)}…\n     page …${right.slice(Math.max(0, i - 80), i + 120)}…`;
}

/**
 * Waits until the page shows what the API says at a quiet moment (two API reads around the
 * page's read agree), since windows keep committing while we look.
 */
async function equalsApi(what, readApi, readPage, ms = 15_000) {
  const deadline = Date.now() + ms;
  let difference = 'never compared';
  while (Date.now() < deadline) {
    const before = await readApi();
    const shown = await readPage();
    const after = await readApi();
    if (JSON.stringify(before) === JSON.stringify(after)) {
      if (JSON.stringify(shown) === JSON.stringify(before)) return before;
      difference = firstDifference(before, shown);
    }
    await sleep(300);
  }
  throw new Error(`${what}: the page never showed what /v1/get-prices says:\n     ${difference}`);
}

async function chartsEqualApi(what) {
  const [interval, start] = await page.evaluate(() => [tickpipe.interval(), tickpipe.chartStart()]);
  const api = await equalsApi(
    what,
    async () => byTicker(await pipeline.prices({ interval: param(interval), startTime: start, limit: 10000 })),
    () => page.evaluate(() => tickpipe.charts()),
  );
  const counts = Object.entries(api).map(([ticker, bars]) => `${ticker} ${bars.length}`);
  return { interval, counts };
}

/** The table as shown: the raw values each cell carries, and the visible "seconds ago". */
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
        ago: Number(value('ago')),
        agoText: row.querySelector('[data-field="ago"]').textContent,
      };
    }),
  );
}

async function tableEqualsApi() {
  const pick = ({ ticker, windowStart, averagePrice, openPrice, closePrice, minPrice, maxPrice, samples, complete }) => ({
    ticker, windowStart, averagePrice, openPrice, closePrice, minPrice, maxPrice, samples, complete,
  });
  const api = await equalsApi(
    'the table',
    async () => (await pipeline.prices()).map(pick),
    async () => (await readTable()).map(pick),
  );
  const now = Date.now() / 1000;
  for (const row of await readTable()) {
    const entry = api.find((e) => e.ticker === row.ticker);
    const end = entry ? Date.parse(entry.windowStart) / 1000 + windowSecs : NaN;
    if (Math.abs(row.ago - (now - end)) > 2.5 || row.agoText !== `${row.ago} s ago`) {
      throw new Error(`${row.ticker}: "ended" shows ${row.agoText}, the window ended ${(now - end).toFixed(1)} s ago`);
    }
  }
  return api;
}

function watch(target) {
  const expected = (url) => restarting && url.includes('/v1/stream-prices');
  target.on('console', (message) => {
    if (message.type() !== 'error' || closing) return;
    if (expected(message.location()?.url ?? '')) return;
    problems.push(`console error: ${message.text()} (${message.location()?.url ?? ''})`);
  });
  target.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  target.on('requestfailed', (request) => {
    if (closing || expected(request.url())) return;
    problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`);
  });
  target.on('response', (response) => {
    if (response.status() >= 400 && !expected(response.url())) {
      problems.push(`HTTP ${response.status()} for ${response.url()}`);
    }
  });
}

async function step(title, body) {
  const started = Date.now();
  try {
    const note = await body();
    if (problems.length) throw new Error(problems.splice(0).join('\n     '));
    steps.push({ title, ok: true });
    console.log(`ok   ${title} (${((Date.now() - started) / 1000).toFixed(1)} s)${note ? `\n     ${note}` : ''}`);
  } catch (error) {
    steps.push({ title, ok: false });
    console.log(`FAIL ${title}\n     ${error.stack ?? error}`);
    throw error;
  }
}

async function firstLoad() {
  const context = await browser.newContext({ viewport: { width: 1440, height: 980 }, deviceScaleFactor: 1 });
  page = await context.newPage();
  watch(page);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const urls = new Map();
  const transferred = new Map();
  cdp.on('Network.requestWillBeSent', (event) => urls.set(event.requestId, event.request.url));
  cdp.on('Network.loadingFinished', (event) => transferred.set(event.requestId, event.encodedDataLength));
  const headers = new Map();
  page.on('response', (response) => headers.set(new URL(response.url()).pathname, response.headers()));

  await page.goto(`${pipeline.url}/`, { waitUntil: 'load' });
  await page.waitForFunction(() => performance.getEntriesByName('tickpipe:first-chart').length > 0, null, { timeout: 30_000 });
  const firstChartMs = await page.evaluate(() => performance.getEntriesByName('tickpipe:first-chart')[0].startTime);
  await page.waitForFunction(() => !tickpipe.loading(), null, { timeout: 30_000 });
  await sleep(500);

  const page_ = headers.get('/');
  if (!page_?.['content-security-policy']?.includes("default-src 'self'")) throw new Error(`no strict CSP on /: ${JSON.stringify(page_)}`);
  if (page_['cache-control'] !== 'no-cache') throw new Error(`/ is cached: ${page_['cache-control']}`);
  const assets = [...headers].filter(([path]) => path.startsWith('/assets/'));
  if (assets.length < 3) throw new Error(`expected the script, the stylesheet and the icon, got ${assets.map(([p]) => p)}`);
  for (const [path, h] of assets) {
    if (!/^\/assets\/[\w-]+\.[\w]{8,}\.\w+$/.test(path)) throw new Error(`${path} has no content hash in its name`);
    if (h['cache-control'] !== 'public, max-age=31536000, immutable') throw new Error(`${path}: ${h['cache-control']}`);
  }

  let total = 0;
  const lines = [];
  for (const [id, bytes] of transferred) {
    total += bytes;
    lines.push(`${String(bytes).padStart(8)} B  ${new URL(urls.get(id) ?? 'about:blank').pathname}`);
  }
  const weight = `first load: ${(total / 1024).toFixed(1)} KiB transferred in ${transferred.size} requests ` +
    `(the open event stream not counted); first chart drawn ${Math.round(firstChartMs)} ms after navigation start`;
  if (total > PAGE_WEIGHT_LIMIT) throw new Error(`${weight}: over ${PAGE_WEIGHT_LIMIT / 1024} KiB`);
  return `${weight}\n${lines.map((line) => `       ${line}`).join('\n')}`;
}

async function chartsAndTable() {
  const tickers = (await pipeline.prices()).map((entry) => entry.ticker);
  if (tickers.length === 0) throw new Error('the API has no prices');
  await page.waitForFunction(() => tickpipe.badge().state === 'ok', null, { timeout: 20_000 });
  const drawn = await page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll('.chart')].map((el) => [el.dataset.ticker, { attr: Number(el.dataset.bars), bars: tickpipe.charts()[el.dataset.ticker].length }]),
    ),
  );
  for (const ticker of tickers) {
    const chart = drawn[ticker];
    if (!chart || chart.bars === 0 || chart.attr !== chart.bars) throw new Error(`${ticker}: chart ${JSON.stringify(chart)}`);
  }
  const { interval, counts } = await chartsEqualApi('the charts');
  const table = await tableEqualsApi();
  return `${name(interval)} bars equal /v1/get-prices: ${counts.join(', ')}; table rows equal it: ${table.map((e) => e.ticker).join(', ')}`;
}

async function newWindow() {
  await page.evaluate(() => {
    window.notReloaded = true;
  });
  const before = await page.evaluate(() => Math.max(...tickpipe.latest().map((e) => Date.parse(e.windowStart))));
  const handle = await page.waitForFunction(
    (previous) => {
      const newest = Math.max(...tickpipe.latest().map((e) => Date.parse(e.windowStart)));
      return newest > previous ? { start: newest, shownAt: Date.now() } : null;
    },
    before,
    { polling: 50, timeout: (windowSecs * 2 + 15) * 1000 },
  );
  const { start, shownAt } = await handle.jsonValue();
  const lagMs = shownAt - (start + windowSecs * 1000);
  const allowed = pipeline.graceMs + 5000;
  if (lagMs > allowed) throw new Error(`the window ending ${new Date(start + windowSecs * 1000).toISOString()} appeared ${lagMs} ms after its end (allowed ${allowed})`);
  const interval = await page.evaluate(() => tickpipe.interval());
  const barStart = Math.floor(start / 1000 / interval) * interval;
  await page.waitForFunction(
    (t) => Object.values(tickpipe.charts()).some((bars) => bars.length && bars[bars.length - 1].time >= t),
    barStart,
    { timeout: 5000 },
  );
  if (!(await page.evaluate(() => window.notReloaded === true))) throw new Error('the page was reloaded');
  return `window ${new Date(start).toISOString()} shown ${lagMs} ms after its end (grace ${pipeline.graceMs} ms; allowed ${allowed} ms); its bar is on the chart`;
}

async function select(secs) {
  const started = Date.now();
  await page.click(`#intervals button[data-interval="${name(secs)}"]`);
  await page.waitForFunction((s) => tickpipe.interval() === s && !tickpipe.loading(), secs, { timeout: 15_000 });
  return Date.now() - started;
}

async function restart() {
  await select(windowSecs);
  await chartsEqualApi(`the ${name(windowSecs)} bars before the restart`);
  const reads = [];
  const count = (request) => {
    if (request.url().includes('/v1/get-prices')) reads.push(request.url());
  };
  page.on('request', count);
  restarting = true;
  const stoppedAt = Date.now();
  await pipeline.stop('api');
  await page.waitForFunction(() => tickpipe.badge().state === 'disconnected', null, { timeout: 10_000 });
  const badge = await page.evaluate(() => tickpipe.badge().text);
  if (badge !== 'stream disconnected, reconnecting') throw new Error(`badge while the API is down: ${badge}`);
  await sleep(Math.max(0, stoppedAt + 3 * windowSecs * 1000 - Date.now()));
  const startedAt = Date.now();
  await pipeline.startApi();
  await page.waitForFunction(() => tickpipe.stream().state === 'open', null, { timeout: 30_000 });
  const reconnectedMs = Date.now() - startedAt;
  restarting = false;
  await page.waitForFunction(() => tickpipe.badge().state === 'ok', null, { timeout: 20_000 });
  // Once a window begun after the restart is on the page, every window of the downtime is written.
  await page.waitForFunction(
    (after) => tickpipe.latest().every((e) => Date.parse(e.windowStart) >= after),
    Math.ceil(startedAt / 1000) * 1000,
    { timeout: (windowSecs * 3 + 15) * 1000 },
  );
  const during = await pipeline.prices({
    startTime: Math.floor(stoppedAt / 1000),
    endTime: Math.ceil(startedAt / 1000),
  });
  if (during.length === 0) throw new Error('no window started while the API was down: the check would prove nothing');
  const { counts } = await chartsEqualApi(`the ${name(windowSecs)} bars after the restart`);
  await tableEqualsApi();
  page.off('request', count);
  if (reads.length) throw new Error(`the page read /v1/get-prices again instead of resuming the stream: ${reads.join(', ')}`);
  return `API down ${((startedAt - stoppedAt) / 1000).toFixed(1)} s, badge "${badge}"; stream open again ${reconnectedMs} ms after the API started; ` +
    `the ${new Set(during.map((e) => e.windowStart)).size} windows (${during.length} ticker entries) that started while it was down are all on the charts (${counts.join(', ')} bars equal /v1/get-prices), ` +
    'none re-read from /v1/get-prices';
}

async function intervals() {
  const notes = [];
  for (const secs of [300, 3600, 60, 30]) {
    const ms = await select(secs);
    const { counts } = await chartsEqualApi(`the ${name(secs)} bars`);
    notes.push(`${name(secs)}: redrawn in ${ms} ms, ${counts.join(', ')} bars equal /v1/get-prices?interval=${name(secs)}`);
  }
  return notes.join('\n     ');
}

async function screenshot() {
  await mkdir(OUT, { recursive: true });
  await select(60);
  await page.setViewportSize({ width: 1440, height: 760 });
  await page.waitForFunction(() => tickpipe.badge().state === 'ok', null, { timeout: 20_000 });
  await sleep(1000);
  const path = join(OUT, 'dashboard.png');
  await page.screenshot({ path, fullPage: true });
  return path;
}

let exitCode = 1;
try {
  console.log(`browser test: ${windowSecs} s windows, grace ${pipeline.graceMs} ms, Chromium at ${CHROMIUM}`);
  await pipeline.start();
  await pipeline.until(
    'the aggregator to catch up with the hour of history',
    async () => {
      const latest = await pipeline.prices();
      return latest.length >= 3 && latest.every((e) => Date.now() - Date.parse(e.windowEnd) < 4 * windowSecs * 1000 && e.complete);
    },
    120_000,
  );
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  await step('first load: no console error, no failed request, CSP and cache headers', firstLoad);
  await step("every ticker's chart has drawn bars, charts and table equal /v1/get-prices", chartsAndTable);
  await step('a new window appears without a reload within grace + 5 s of its end', newWindow);
  await step('after an API restart the page reconnects by itself and misses no window', restart);
  await step('switching the interval redraws with bars equal to /v1/get-prices?interval=...', intervals);
  await step('screenshot', screenshot);
  exitCode = 0;
} catch (error) {
  if (!steps.some((s) => !s.ok)) console.log(`FAIL setup\n     ${error.stack ?? error}`);
} finally {
  closing = true;
  if (browser) await browser.close().catch(() => {});
  await pipeline.stopAll().catch((error) => console.log(`stopping the pipeline: ${error}`));
}
const passed = steps.filter((s) => s.ok).length;
console.log(`browser: ${passed} passed, ${6 - passed} failed`);
process.exit(exitCode);
