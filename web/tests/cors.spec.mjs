// Cross-origin use of the API (issue 23) from a real browser: Debian's headless Chromium driven by
// playwright-core, against the real API over a real PostgreSQL. Run through scripts/browser-test.sh
// with a fresh database of its own; no Kafka, aggregator or generator: the windows are written by
// api/examples/dashboard_tickers.rs through the aggregator's write path (tickpipe_store::commit),
// so the new window the stream must deliver is committed by the test itself, when it is ready for
// it, not waited for from a pipeline.
//
// Two static sites on other origins than the API's (127.0.0.1 on other ports): ALLOWED is in
// API_CORS_ORIGINS, REFUSED is not. Steps, in order (the first failure stops the run):
//   1. seed three tickers; serve the API with API_CORS_ORIGINS=<ALLOWED>
//   2. from ALLOWED, fetch reads the prices and their ETag (an exposed header), then a fetch with
//      If-None-Match (not a safelisted header: the browser sends a preflight first, which the API's
//      log shows) is answered 304
//   3. from ALLOWED, an EventSource opens the stream; a window committed then arrives as a `price`
//      event of every ticker
//   4. from REFUSED, the same fetch fails (a CORS error, no answer readable) and an EventSource
//      errors without an event
// Steps 2 and 3 also fail on any console error, page error or failed request; step 4 expects
// exactly the browser's CORS errors.

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { Pipeline, freePort, sleep, stepper } from './pipeline.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TICKERS = 3;
const STEPS = 4;
/** The new window to every ticker's event: generous, a shared machine can be slow. */
const STREAM_LIMIT_MS = 60_000;
const STEP_LIMIT_MS = 120_000;

const pipeline = new Pipeline();
const problems = [];
const steps = [];
const sites = [];
let browser;
let allowed;
let refused;
let expectCorsErrors = false;

/** A static site on a free port of 127.0.0.1: one empty page. Returns its origin. */
async function site() {
  const port = await freePort();
  const server = createServer((request, response) => {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end('<!doctype html><title>another origin</title><p>another origin</p>');
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  sites.push(server);
  return `http://127.0.0.1:${port}`;
}

function watch(page) {
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    if (expectCorsErrors && /CORS|Access-Control|Failed to load resource/i.test(text)) return;
    problems.push(`console error: ${text}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => {
    if (!expectCorsErrors) problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`);
  });
}

const step = stepper(problems, steps, STEP_LIMIT_MS);

async function pageOn(origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  watch(page);
  await page.goto(`${origin}/`, { waitUntil: 'load' });
  return page;
}

/** OPTIONS requests the API has logged for `path`. */
async function preflightsLogged(path) {
  const log = await readFile(join(pipeline.logs, 'api.log'), 'utf8').catch(() => '');
  return log.split('\n').filter((line) => line.includes('answered') && line.includes('OPTIONS') && line.includes(path)).length;
}

async function seed() {
  await pipeline.run('seed', join(pipeline.bin, 'examples', 'dashboard_tickers'), {
    SEED_TICKERS: String(TICKERS),
    SEED_WINDOWS: '5',
  });
  allowed = await site();
  refused = await site();
  await pipeline.serve({ API_CORS_ORIGINS: allowed });
  const entries = await pipeline.prices();
  if (entries.length !== TICKERS) throw new Error(`/v1/get-prices holds ${entries.length} entries, expected ${TICKERS}`);
  return `API ${pipeline.url} with API_CORS_ORIGINS=${allowed}; refused origin ${refused}; ${TICKERS} tickers seeded`;
}

async function fetchFromAllowed() {
  const page = await pageOn(allowed);
  const before = await preflightsLogged('/v1/get-prices');
  const result = await page.evaluate(async (api) => {
    const first = await fetch(`${api}/v1/get-prices`, { cache: 'no-store' });
    const body = await first.json();
    const etag = first.headers.get('etag');
    const second = await fetch(`${api}/v1/get-prices`, { cache: 'no-store', headers: { 'If-None-Match': etag } });
    return {
      status: first.status,
      tickers: body.prices.map((entry) => entry.ticker),
      etag,
      cacheControl: first.headers.get('cache-control'),
      revalidated: second.status,
      revalidatedBody: (await second.text()).length,
      revalidatedEtag: second.headers.get('etag'),
    };
  }, pipeline.url);
  if (result.status !== 200 || result.tickers.length !== TICKERS) throw new Error(`the first fetch: ${JSON.stringify(result)}`);
  if (!/^"[0-9a-f]{32}(-(gzip|br|zstd))?"$/.test(result.etag ?? '')) throw new Error(`the ETag is not readable or not a tag: ${result.etag}`);
  if (result.revalidated !== 304 || result.revalidatedBody !== 0) throw new Error(`the revalidation was not a bodiless 304: ${JSON.stringify(result)}`);
  const after = await pipeline.until('the preflight in the API log', async () => {
    const n = await preflightsLogged('/v1/get-prices');
    return n > before && n;
  }, 10_000);
  await page.context().close();
  return `prices of ${result.tickers.join(', ')}; ETag ${result.etag} (${result.cacheControl}); ` +
    `If-None-Match after ${after - before} preflight(s): ${result.revalidated}, no body, ETag ${result.revalidatedEtag}`;
}

async function streamFromAllowed() {
  const page = await pageOn(allowed);
  await page.evaluate((api) => {
    window.events = [];
    window.opened = new Promise((resolve, reject) => {
      const source = new EventSource(`${api}/v1/stream-prices`);
      source.onopen = () => resolve();
      source.onerror = () => reject(new Error(`EventSource error (readyState ${source.readyState})`));
      source.addEventListener('price', (event) => window.events.push(JSON.parse(event.data)));
    });
  }, pipeline.url);
  await page.evaluate(() => window.opened);
  const before = await pipeline.prices();
  const newest = Math.max(...before.map((entry) => Date.parse(entry.windowStart)));
  // The new window, committed now that the stream is open: deterministic, whatever the clock does.
  const started = Date.now();
  await pipeline.run('advance', join(pipeline.bin, 'examples', 'dashboard_tickers'), { SEED_TICKERS: String(TICKERS) }, ['advance']);
  let arrived;
  try {
    arrived = await page.waitForFunction(
      ([after, n]) => new Set(window.events.filter((e) => Date.parse(e.windowStart) > after).map((e) => e.ticker)).size >= n && Date.now(),
      [newest, TICKERS],
      { polling: 100, timeout: STREAM_LIMIT_MS },
    );
  } catch (error) {
    const seen = await page.evaluate(() => window.events);
    throw new Error(`not every ticker's new window arrived within ${STREAM_LIMIT_MS} ms; events: ${JSON.stringify(seen)}\n     ${error.message}`);
  }
  const ms = (await arrived.jsonValue()) - started;
  const events = await page.evaluate(() => window.events);
  const after = await pipeline.prices();
  const byTicker = new Map(after.map((entry) => [entry.ticker, JSON.stringify(entry)]));
  const fresh = events.filter((e) => Date.parse(e.windowStart) > newest);
  const wrong = fresh.filter((e) => byTicker.get(e.ticker) !== JSON.stringify(e));
  if (wrong.length) throw new Error(`streamed entries differ from /v1/get-prices: ${JSON.stringify(wrong)}`);
  await page.context().close();
  return `${fresh.length} price events of the new window ${new Date(Date.parse(fresh[0].windowStart)).toISOString()} ` +
    `${ms} ms after the commit began, equal to /v1/get-prices`;
}

async function refusedOrigin() {
  expectCorsErrors = true;
  const page = await pageOn(refused);
  const result = await page.evaluate(async (api) => {
    let fetched;
    try {
      const response = await fetch(`${api}/v1/get-prices`, { cache: 'no-store' });
      fetched = `answered ${response.status}`;
    } catch (error) {
      fetched = `${error.name}: ${error.message}`;
    }
    const streamed = await new Promise((resolve) => {
      const source = new EventSource(`${api}/v1/stream-prices`);
      source.onopen = () => resolve('opened');
      source.onerror = () => {
        resolve(`error, readyState ${source.readyState}`);
        source.close();
      };
    });
    return { fetched, streamed };
  }, pipeline.url);
  await page.context().close();
  expectCorsErrors = false;
  if (!result.fetched.startsWith('TypeError')) throw new Error(`the fetch from ${refused} was not refused: ${result.fetched}`);
  if (result.streamed !== 'error, readyState 2') throw new Error(`the EventSource from ${refused}: ${result.streamed}`);
  return `fetch: ${result.fetched}; EventSource: ${result.streamed} (closed)`;
}

let exitCode = 1;
try {
  console.log(`browser test, CORS: Chromium at ${CHROMIUM}`);
  await step('seeding the prices through the store\'s write path; the API allows one other origin', seed);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  await step('from the allowed origin: prices, their ETag, and a 304 revalidation after a preflight', fetchFromAllowed);
  await step('from the allowed origin: an EventSource receives a window committed while it is open', streamFromAllowed);
  await step('from a refused origin: fetch and EventSource fail with a CORS error', refusedOrigin);
  exitCode = 0;
} catch (error) {
  if (!steps.some((s) => !s.ok)) console.log(`FAIL setup\n     ${error.stack ?? error}`);
} finally {
  const closed = !browser || (await Promise.race([browser.close().then(() => true, () => true), sleep(10_000).then(() => false)]));
  if (!closed) console.log('     the browser did not close within 10 s; it is killed on exit');
  for (const server of sites) server.close();
  await pipeline.stopAll().catch((error) => console.log(`stopping the API: ${error}`));
}
const passed = steps.filter((s) => s.ok).length;
console.log(`browser: ${passed} passed, ${STEPS - passed} failed (CORS)`);
process.exit(exitCode);
