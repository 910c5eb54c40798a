// Where things are, relative to the e2e/ folder (never to the current directory).
import path from 'node:path';

export const E2E_DIR = path.resolve(__dirname, '..');
export const REPO_ROOT = path.resolve(E2E_DIR, '..');
export const RESULTS_DIR = path.join(E2E_DIR, 'test-results');
export const STATE_FILE = path.join(RESULTS_DIR, 'e2e-state.json');
// The signed-in browser state (session cookie) global setup saves after signing in through
// the sign-in page; every test's context starts from it (playwright.config.ts).
export const AUTH_STATE_FILE = path.join(RESULTS_DIR, 'auth-state.json');
// The README's screenshot is refreshed only on request (UPDATE_SCREENSHOT=1), so a test run
// leaves the work tree clean; otherwise it goes with the other run artefacts.
export const SCREENSHOT_DIR = process.env.UPDATE_SCREENSHOT ? path.join(E2E_DIR, 'screenshots') : RESULTS_DIR;
export const WORDTALLY_BIN = path.join(REPO_ROOT, 'target', 'debug', 'wordtally');
export const BROKER_BIN = path.join(REPO_ROOT, 'target', 'debug', 'examples', 'nsq_test_broker');
export const PAGE_SERVER = path.join(E2E_DIR, 'fixtures', 'page-server.mjs');
export const HTMX_DIST = path.join(E2E_DIR, 'node_modules', 'htmx.org', 'dist', 'htmx.min.js');
