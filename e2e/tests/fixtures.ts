// Shared test fixtures and helpers. Every test imports `test`/`expect` from here.
import { BrowserContext, expect, Locator, Page, test as base } from '@playwright/test';
import { readState, type E2eState } from '../support/state';

/** Only loopback: anything else a page tries to load is aborted (and the test fails). */
export async function guardNetwork(context: BrowserContext, blocked: string[]) {
  await context.route(
    (url) => !['127.0.0.1', '[::1]'].includes(url.hostname),
    async (route) => {
      blocked.push(route.request().url());
      await route.abort('blockedbyclient');
    },
  );
}

/** Collects the browser's Content-Security-Policy complaints (asserted empty after each test). */
export function watchCsp(context: BrowserContext, violations: string[]) {
  context.on('console', (msg) => {
    const text = msg.text();
    if (/Content Security Policy|Refused to (execute|apply|load|evaluate)/i.test(text)) violations.push(text);
  });
}

type Fixtures = {
  /** CSP violations reported in the console (asserted empty after each test). */
  cspViolations: string[];
  env: E2eState;
  /** Requests that tried to leave loopback (asserted empty after each test). */
  offLoopback: string[];
};

export const test = base.extend<Fixtures>({
  env: async ({}, use) => {
    await use(readState());
  },
  baseURL: async ({}, use) => {
    await use(readState().baseURL);
  },
  offLoopback: async ({}, use) => {
    const blocked: string[] = [];
    await use(blocked);
    expect(blocked, 'requests that tried to leave loopback').toEqual([]);
  },
  cspViolations: async ({}, use) => {
    const violations: string[] = [];
    await use(violations);
    expect(violations, 'Content-Security-Policy violations in the console').toEqual([]);
  },
  context: async ({ context, offLoopback, cspViolations }, use) => {
    await guardNetwork(context, offLoopback);
    watchCsp(context, cspViolations);
    await use(context);
  },
});

export { expect };

/** The table row of the task whose address is exactly `address`. */
export function row(page: Page, address: string): Locator {
  return page
    .locator('#tasks-table tbody tr')
    .filter({ has: page.locator('td.address .addr').getByText(address, { exact: true }) });
}

/** Fills the form's textarea with `lines` (one per line) and clicks "Count". */
export async function submitAddresses(page: Page, lines: string[]) {
  await page.locator('textarea#addresses').fill(lines.join('\n'));
  await page.getByRole('button', { name: 'Count' }).click();
}

/** Waits until htmx has loaded and initialised the page. */
export async function htmxReady(page: Page) {
  await page.waitForFunction(() => typeof (window as any).htmx === 'object');
}

/** Asserts the row finished with `count` (auto-waiting through the 1 s polling). */
export async function expectFinished(page: Page, address: string, count: number, timeout = 30_000) {
  const r = row(page, address);
  try {
    await expect(r).toHaveAttribute('data-status', 'FINISHED', { timeout });
  } catch (e) {
    // Say what the server holds for this task, to tell a UI problem from a pipeline one.
    const id = (await r.getAttribute('id', { timeout: 1_000 }).catch(() => null))?.replace('task-', '');
    const task = id ? await (await page.request.get(`/api/tasks/${id}`)).text() : '(no row)';
    (e as Error).message += `\n\nGET /api/tasks/${id} -> ${task}`;
    throw e;
  }
  await expect(r.locator('td.count')).toHaveText(String(count));
}

/** A short random tag for addresses unique to one test. */
export function uniq(): string {
  return Math.random().toString(36).slice(2, 8);
}
