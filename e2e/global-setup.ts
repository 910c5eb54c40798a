// Starts the whole pipeline on loopback for the browser tests:
//   fresh Postgres database · unique Redis prefix / NSQ topic · NSQ test broker (unless
//   NSQD_TCP_ADDRESS names a real nsqd) · fixture page server · `wordtally serve --workers 0`
//   · one separate `wordtally worker`.
// Then writes test-results/e2e-state.json for the tests and the teardown.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { FullConfig } from '@playwright/test';
import { chromium } from '@playwright/test';
import { AUTH_STATE_FILE, BROKER_BIN, PAGE_SERVER, REPO_ROOT, RESULTS_DIR, STATE_FILE, WORDTALLY_BIN } from './support/paths';
import { Started, startProcess } from './support/processes';
import type { E2eState } from './support/state';
import { registerChildren, stopAll } from './global-teardown';

const ADMIN_DB_URL = process.env.E2E_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.E2E_REDIS_URL ?? 'redis://127.0.0.1:6379';
const READY_TIMEOUT_MS = 30_000;

function requireBinary(file: string, what: string) {
  if (!fs.existsSync(file)) {
    throw new Error(
      `${what} was not found at ${file}.\n` +
        `Build it first:  cd ${REPO_ROOT} && cargo build --bin wordtally --example nsq_test_broker`,
    );
  }
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

function assertLoopback(url: string, what: string) {
  const host = new URL(url).hostname;
  if (!['127.0.0.1', '[::1]', 'localhost'].includes(host)) {
    throw new Error(`${what} (${url}) is not on loopback; the e2e suite only talks to 127.0.0.1/::1`);
  }
}

async function waitForHealth(baseURL: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${baseURL}/healthz`, { signal: AbortSignal.timeout(2_000) });
      const body = await res.text();
      if (res.status === 200) return JSON.parse(body);
      last = `HTTP ${res.status}: ${body}`;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${baseURL}/healthz did not answer 200 within ${timeoutMs} ms (last: ${last})`);
}

/** Signs in through the sign-in page like a person and saves the browser state. */
async function signIn(config: FullConfig, state: E2eState) {
  const launchOptions = config.projects[0]?.use?.launchOptions ?? {};
  const browser = await chromium.launch({ ...launchOptions, headless: true });
  try {
    const page = await browser.newPage({ baseURL: state.baseURL });
    await page.goto('/tasks');
    // Signed out: the page sends us to the sign-in form.
    await page.waitForURL(/\/login\?next=/);
    await page.getByLabel('Name').fill(state.user);
    await page.getByLabel('Password').fill(state.password);
    await Promise.all([page.waitForURL(/\/tasks$/), page.getByRole('button', { name: 'Sign in' }).click()]);
    await page.context().storageState({ path: AUTH_STATE_FILE });
  } finally {
    await browser.close();
  }
}

export default async function globalSetup(config: FullConfig) {
  requireBinary(WORDTALLY_BIN, 'The wordtally binary');
  const externalNsqd = process.env.NSQD_TCP_ADDRESS?.trim() || '';
  if (!externalNsqd) requireBinary(BROKER_BIN, 'The NSQ test broker (example nsq_test_broker)');
  assertLoopback(ADMIN_DB_URL, 'E2E_PG_ADMIN_URL');
  assertLoopback(REDIS_URL, 'E2E_REDIS_URL');
  if (externalNsqd) assertLoopback(`tcp://${externalNsqd}`, 'NSQD_TCP_ADDRESS');

  fs.rmSync(RESULTS_DIR, { recursive: true, force: true });
  fs.mkdirSync(RESULTS_DIR, { recursive: true });

  const tag = `${Date.now().toString(36)}_${crypto.randomBytes(3).toString('hex')}`;
  const database = `wt_e2e_${tag}`;
  const state: E2eState = {
    baseURL: '',
    pagesURL: '',
    database,
    adminDatabaseUrl: ADMIN_DB_URL,
    redisUrl: REDIS_URL,
    redisPrefix: `wt_e2e_${tag}`,
    nsqdTcpAddress: externalNsqd,
    nsqTopic: `wt_e2e_${tag}`,
    externalNsqd: Boolean(externalNsqd),
    children: [],
    user: 'e2e',
    password: crypto.randomBytes(12).toString('hex'),
    apiToken: '',
  };
  const started: Started[] = [];
  const track = (s: Started) => {
    started.push(s);
    state.children.push({ name: s.name, pid: s.child.pid ?? -1, log: s.log });
    registerChildren(started);
    // Written at once so the teardown can stop what was started even if a later step fails.
    fs.writeFileSync(STATE_FILE, JSON.stringify(state, null, 2));
  };

  execFileSync('psql', [ADMIN_DB_URL, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE DATABASE ${database}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  fs.writeFileSync(STATE_FILE, JSON.stringify(state, null, 2));

  // Only what the processes need: nothing inherited can change their settings.
  const baseEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NO_COLOR: '1',
    RUST_LOG: process.env.E2E_RUST_LOG ?? 'info,sqlx=warn,tokio_nsq=warn',
    RUST_BACKTRACE: '1',
  };

  try {
    const pending: Promise<Started>[] = [];
    pending.push(
      startProcess('page-server', process.execPath, [PAGE_SERVER], baseEnv, /^page_server (http:\S+)/, READY_TIMEOUT_MS, track),
    );
    if (!externalNsqd) {
      pending.push(
        startProcess(
          'nsq-broker',
          BROKER_BIN,
          ['--tcp-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0'],
          baseEnv,
          /^nsq_test_broker tcp=(\S+) http=\S+/,
          READY_TIMEOUT_MS,
          track,
        ),
      );
    }
    const [pages, broker] = await Promise.all(pending);
    state.pagesURL = pages.ready;
    if (broker) state.nsqdTcpAddress = broker.ready;

    const appEnv: NodeJS.ProcessEnv = {
      ...baseEnv,
      DATABASE_URL: withDatabase(ADMIN_DB_URL, database),
      REDIS_URL,
      REDIS_PREFIX: state.redisPrefix,
      NSQD_TCP_ADDRESS: state.nsqdTcpAddress,
      NSQ_TOPIC: state.nsqTopic,
      NSQ_CHANNEL: 'wordtally',
    };
    // One account, as an operator would create it; sign-in is then required everywhere.
    execFileSync(WORDTALLY_BIN, ['user', 'add', state.user, '--password-stdin'], {
      env: appEnv,
      input: `${state.password}\n`,
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    state.apiToken = execFileSync(WORDTALLY_BIN, ['token', 'create', 'e2e-api', '--user', state.user], {
      env: appEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
      .toString()
      .trim();
    const serve = await startProcess(
      'serve',
      WORDTALLY_BIN,
      ['serve', '--listen', '127.0.0.1:0', '--workers', '0'],
      { ...appEnv, AUTH: 'password' },
      /wordtally serving on (http:\/\/[^/\s]+)\/tasks/,
      READY_TIMEOUT_MS,
      track,
    );
    state.baseURL = serve.ready;
    assertLoopback(state.baseURL, 'wordtally serve');
    const health = await waitForHealth(state.baseURL, READY_TIMEOUT_MS);
    if (health.database?.kind !== 'postgres' || health.queue?.kind !== 'redis' || !health.queue?.ok) {
      throw new Error(`unexpected /healthz: ${JSON.stringify(health)}`);
    }
    await startProcess(
      'worker',
      WORDTALLY_BIN,
      ['worker', '--allow-private-targets', '--workers', '4'],
      appEnv,
      /wordtally worker running/,
      READY_TIMEOUT_MS,
      track,
    );
    await signIn(config, state);
    fs.writeFileSync(STATE_FILE, JSON.stringify(state, null, 2));
    process.env.E2E_BASE_URL = state.baseURL;
  } catch (e) {
    await stopAll(state).catch(() => {});
    throw e;
  }
}
