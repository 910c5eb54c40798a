// Stops every process global setup started (SIGTERM, wait for exit), drops the database and
// removes the run's Redis keys. Safe to run after a partial setup.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { FullConfig } from '@playwright/test';
import { STATE_FILE } from './support/paths';
import { Started, stopProcess } from './support/processes';
import type { E2eState } from './support/state';

// Child handles when the teardown runs in the process that ran the setup (Playwright's runner).
const REGISTRY = Symbol.for('wordtally.e2e.children');
type Registry = { [REGISTRY]?: Started[] };

export function registerChildren(started: Started[]) {
  (globalThis as Registry)[REGISTRY] = started;
}

export async function stopAll(state: E2eState) {
  const handles = (globalThis as Registry)[REGISTRY] ?? [];
  const stop = (name: string) =>
    Promise.all(
      state.children
        .filter((c) => c.name === name && c.pid > 0)
        .map((c) => stopProcess(c.name, c.pid, handles.find((h) => h.child.pid === c.pid)?.child)),
    );
  // The app first (the worker drains, serve flushes results), then what it talks to.
  await Promise.all([stop('worker'), stop('serve')]);
  await Promise.all([stop('nsq-broker'), stop('page-server')]);

  try {
    execFileSync(
      'psql',
      [state.adminDatabaseUrl, '-v', 'ON_ERROR_STOP=1', '-qc', `DROP DATABASE IF EXISTS ${state.database} WITH (FORCE)`],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
  } catch (e) {
    console.warn(`[e2e] could not drop database ${state.database}: ${e}`);
  }
  try {
    const u = new URL(state.redisUrl);
    const db = u.pathname.replace('/', '') || '0';
    const cli = ['-h', u.hostname, '-p', u.port || '6379', '-n', db];
    const keys = execFileSync('redis-cli', [...cli, '--scan', '--pattern', `${state.redisPrefix}*`], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
    if (keys.length) execFileSync('redis-cli', [...cli, 'DEL', ...keys], { stdio: 'ignore' });
  } catch (e) {
    console.warn(`[e2e] could not remove Redis keys ${state.redisPrefix}*: ${e}`);
  }
}

export default async function globalTeardown(_config: FullConfig) {
  if (!fs.existsSync(STATE_FILE)) return;
  const state = JSON.parse(fs.readFileSync(STATE_FILE, 'utf8')) as E2eState;
  await stopAll(state);
}
