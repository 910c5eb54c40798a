import { defineConfig, devices } from '@playwright/test';
import { AUTH_STATE_FILE } from './support/paths';

// The system Chromium is used; Playwright must never download a browser.
process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1';

export default defineConfig({
  testDir: './tests',
  // Playwright's own artifacts; our process logs and state live one level up, in test-results/.
  outputDir: './test-results/artifacts',
  globalSetup: './global-setup.ts',
  globalTeardown: './global-teardown.ts',
  // One worker: a 2-core machine also runs the server, the worker, Postgres and Redis.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 15_000 },
  reporter: [['list']],
  use: {
    // baseURL comes from the global setup (see tests/fixtures.ts).
    headless: true,
    viewport: { width: 1280, height: 800 },
    actionTimeout: 10_000,
    navigationTimeout: 15_000,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    serviceWorkers: 'block',
    // Signed in: global setup signs in through the sign-in page and saves the cookie here.
    storageState: AUTH_STATE_FILE,
  },
  projects: [
    {
      name: 'chromium',
      use: {
        ...devices['Desktop Chrome'],
        viewport: { width: 1280, height: 800 },
        launchOptions: {
          executablePath: '/usr/bin/chromium',
          args: [
            '--no-sandbox',
            '--disable-gpu',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
            '--no-first-run',
            '--disable-quic',
            // Belt and braces: no host name resolves, so nothing but IP literals
            // (127.0.0.1 / ::1) can be reached even by accident; the tests also abort any
            // request to another host (tests/fixtures.ts).
            '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE ::1',
          ],
        },
      },
    },
  ],
});
