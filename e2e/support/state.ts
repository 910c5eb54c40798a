// The environment global setup started, as the tests read it (e2e/test-results/e2e-state.json).
import fs from 'node:fs';
import { STATE_FILE } from './paths';

export interface ChildInfo {
  name: string;
  pid: number;
  log: string;
}

export interface E2eState {
  /** http://127.0.0.1:PORT of `wordtally serve`. */
  baseURL: string;
  /** http://127.0.0.1:PORT of the fixture page server. */
  pagesURL: string;
  database: string;
  adminDatabaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  nsqdTcpAddress: string;
  nsqTopic: string;
  /** True when an external nsqd (NSQD_TCP_ADDRESS) is used instead of the test broker. */
  externalNsqd: boolean;
  children: ChildInfo[];
  /** The account global setup created (`wordtally user add --password-stdin`). */
  user: string;
  password: string;
  /** An API token for that account (`wordtally token create`), for request-only tests. */
  apiToken: string;
}

export function readState(): E2eState {
  if (!fs.existsSync(STATE_FILE)) {
    throw new Error(`${STATE_FILE} is missing: the global setup did not run (run the suite with \`npx playwright test\`)`);
  }
  return JSON.parse(fs.readFileSync(STATE_FILE, 'utf8')) as E2eState;
}
