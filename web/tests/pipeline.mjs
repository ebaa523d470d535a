// The real pipeline for the browser test: an hour of history in a fresh topic, then the aggregator,
// the generator and the API as child processes, on free ports, with a fresh database. The API can
// be stopped and started again on the same port. The 10,000-ticker test seeds its database itself
// and starts only the API (`serve`).
//
// Everything comes from the environment scripts/browser-test.sh sets: BIN_DIR (the binaries),
// KAFKA_BROKERS, KAFKA_TOPIC, DATABASE_URL (the fresh database), AGGREGATOR_WINDOW_SECS,
// AGGREGATOR_GRACE_MS, API_WEB_DIR, LOG_DIR; and, when set, the API's rate limits
// API_RATE_LIMIT_RPS and API_RATE_LIMIT_BURST (unset: the API's defaults, 100 and 400).
//
// Rate limits are per client address: the page in the browser connects to 127.0.0.1, and the
// test's own reads (`prices`) go to [::1] when this machine has an IPv6 loopback (the API then
// listens on both), so they spend a bucket of their own and the page's requests are limited
// exactly as a lone dashboard's would be. They also wait out a 429 as `Retry-After` says.

import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the browser test through scripts/browser-test.sh`);
  return value;
}

/** A port nobody listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether this machine can listen on the IPv6 loopback. */
function hasIpv6Loopback() {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(0, '::1', () => server.close(() => resolve(true)));
  });
}

/** The API's rate limit settings from the environment, those that are set. */
function rateLimitSettings() {
  const settings = {};
  for (const name of ['API_RATE_LIMIT_RPS', 'API_RATE_LIMIT_BURST']) {
    if (process.env[name]) settings[name] = process.env[name];
  }
  return settings;
}

/**
 * A step runner for a spec: `step(title, body)` runs `body`, fails it if it runs longer than
 * `limitMs` (a hung page otherwise holds the whole run until CI's own limit) or if the page
 * reported `problems` meanwhile, records the outcome in `steps`, and prints one `ok`/`FAIL` line
 * with the note `body` returns.
 */
export function stepper(problems, steps, limitMs) {
  return async function step(title, body) {
    const started = Date.now();
    try {
      let timer;
      const hung = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the step hung: still running after ${limitMs} ms`)), limitMs);
      });
      const note = await Promise.race([body(), hung]).finally(() => clearTimeout(timer));
      if (problems.length) throw new Error(problems.splice(0).join('\n     '));
      steps.push({ title, ok: true });
      console.log(`ok   ${title} (${((Date.now() - started) / 1000).toFixed(1)} s)${note ? `\n     ${note}` : ''}`);
    } catch (error) {
      steps.push({ title, ok: false });
      console.log(`FAIL ${title}\n     ${error.stack ?? error}`);
      throw error;
    }
  };
}

export class Pipeline {
  constructor() {
    this.bin = env('BIN_DIR');
    this.logs = env('LOG_DIR');
    this.window = Number(env('AGGREGATOR_WINDOW_SECS'));
    this.graceMs = Number(env('AGGREGATOR_GRACE_MS'));
    this.base = {
      PATH: process.env.PATH,
      KAFKA_BROKERS: env('KAFKA_BROKERS'),
      KAFKA_TOPIC: env('KAFKA_TOPIC'),
      DATABASE_URL: env('DATABASE_URL'),
      AGGREGATOR_WINDOW_SECS: String(this.window),
      RUST_LOG: process.env.RUST_LOG ?? 'info',
      METRICS_ADDR: '127.0.0.1:0',
    };
    this.children = new Map();
  }

  /** Runs `program` to completion (the history filler, the 10,000-ticker seeder). */
  async run(name, program, extra = {}, args = []) {
    const child = this.spawn(name, program, extra, args);
    child.stopping = true; // its exit is expected
    const code = await new Promise((resolve) => child.once('exit', resolve));
    this.children.delete(name);
    if (code !== 0) throw new Error(`${name} exited with ${code}; see ${this.logs}/${name}.log`);
  }

  spawn(name, program, extra = {}, args = []) {
    const log = createWriteStream(join(this.logs, `${name}.log`), { flags: 'a' });
    const child = spawn(program, args, { env: { ...this.base, ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(log);
    child.stderr.pipe(log);
    child.once('exit', (code, signal) => {
      if (this.children.get(name) === child && !child.stopping) {
        console.error(`   ${name} exited unexpectedly (${code ?? signal}); see ${this.logs}/${name}.log`);
      }
    });
    this.children.set(name, child);
    return child;
  }

  async start() {
    this.apiPort = await freePort();
    this.url = `http://127.0.0.1:${this.apiPort}`;
    await this.run('history', join(this.bin, 'examples', 'dashboard_history'), {
      HISTORY_SECS: '3600',
      HISTORY_RATE: '2',
    });
    this.spawn('aggregator', join(this.bin, 'aggregator'), {
      AGGREGATOR_GRACE_MS: String(this.graceMs),
      AGGREGATOR_GROUP_ID: `${this.base.KAFKA_TOPIC}-group`,
      AGGREGATOR_DLQ_TOPIC: `${this.base.KAFKA_TOPIC}.dlq`,
    });
    this.spawn('generator', join(this.bin, 'generator'), { GENERATOR_RATE: '20' });
    await this.startApi();
  }

  /** Only the API, on a free port, over whatever the database holds; `extra`: more of its settings. */
  async serve(extra = {}) {
    this.apiPort = await freePort();
    this.url = `http://127.0.0.1:${this.apiPort}`;
    await this.startApi(extra);
  }

  async startApi(extra = {}) {
    const ipv6 = await hasIpv6Loopback();
    // The test's own reads, from another address than the page's (see the top of this file).
    this.checkUrl = ipv6 ? `http://[::1]:${this.apiPort}` : this.url;
    this.spawn('api', join(this.bin, 'api'), {
      API_BIND: ipv6 ? `[::]:${this.apiPort}` : `127.0.0.1:${this.apiPort}`,
      ...rateLimitSettings(),
      API_WEB_DIR: env('API_WEB_DIR'),
      // A shared 2-core machine under load can take longer than the default 2 s for a query; a
      // 503 then would be the machine's doing, not the page's.
      API_QUERY_TIMEOUT_MS: '15000',
      ...extra,
    });
    await this.until('the API answers /healthz', async () => (await fetch(`${this.url}/healthz`)).ok, 30_000);
  }

  async stop(name) {
    const child = this.children.get(name);
    if (!child) return;
    child.stopping = true;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(killer);
    this.children.delete(name);
  }

  async stopAll() {
    for (const name of ['generator', 'api', 'aggregator']) await this.stop(name);
  }

  /** Every entry of /v1/get-prices for `params`, all pages. */
  async prices(params = {}) {
    const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined));
    const entries = [];
    for (;;) {
      let response = await fetch(`${this.checkUrl}/v1/get-prices?${query}`);
      // 503 at most 3 times, as before; a 429 of the test's own bucket (its limit=10000 reads
      // cost 101 each) up to 10 times.
      for (let retry = 0; (response.status === 503 && retry < 3) || (response.status === 429 && retry < 10); retry += 1) {
        // 503: "retry shortly", as the problem says; 429: when Retry-After says.
        const after = Number(response.headers.get('retry-after') ?? '1');
        await sleep(Math.max(1, after) * 1000);
        response = await fetch(`${this.checkUrl}/v1/get-prices?${query}`);
      }
      if (!response.ok) throw new Error(`get-prices ${query}: HTTP ${response.status} ${await response.text()}`);
      const body = await response.json();
      entries.push(...body.prices);
      if (!body.nextCursor) return entries;
      query.set('cursor', body.nextCursor);
    }
  }

  /** Polls `check` until it returns something truthy (returned), or fails after `ms`. */
  async until(what, check, ms) {
    const deadline = Date.now() + ms;
    let last;
    for (;;) {
      try {
        const result = await check();
        if (result) return result;
      } catch (error) {
        last = error;
      }
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
      await sleep(200);
    }
  }
}
