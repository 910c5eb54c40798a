// The workers page (DESIGN §12): live workers listed from their heartbeats, the list
// updating when one stops, and the throughput chart's SVG showing bars for a run's minute.
import fs from 'node:fs';
import path from 'node:path';
import { SCREENSHOT_DIR, WORDTALLY_BIN } from '../support/paths';
import { startProcess, stopProcess, type Started } from '../support/processes';
import { expect, expectFinished, htmxReady, submitAddresses, test, uniq } from './fixtures';

test('the workers page lists live workers, updates when one stops, and charts a run', async ({ page, env }) => {
  // A second worker of our own, beating fast, beside the suite's shared one.
  let extra: Started | undefined;
  extra = await startProcess(
    `worker-08-${uniq()}`,
    WORDTALLY_BIN,
    ['worker', '--allow-private-targets', '--workers', '3'],
    {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NO_COLOR: '1',
      RUST_LOG: 'info,sqlx=warn,tokio_nsq=warn',
      REDIS_URL: env.redisUrl,
      REDIS_PREFIX: env.redisPrefix,
      NSQD_TCP_ADDRESS: env.nsqdTcpAddress,
      NSQ_TOPIC: env.nsqTopic,
      HEARTBEAT_INTERVAL_MS: '500',
    },
    /wordtally worker running/,
    30_000,
    () => {},
  );
  const pid = extra.child.pid!;
  try {
    await page.goto('/workers');
    await htmxReady(page);
    const mine = page.locator(`#workers-panel tr.worker[data-id$=":${pid}"]`);
    await expect(mine).toHaveCount(1, { timeout: 15_000 });
    await expect(mine).toHaveClass(/\balive\b/);
    await expect(mine).toHaveAttribute('data-concurrency', '3');
    await expect(page.locator('#workers-panel tr.worker.alive')).toHaveCount(2);

    // A run: its minute gets bars in the chart, without reloading the page.
    const t = uniq();
    const addresses = Array.from({ length: 6 }, (_, i) => `${env.pagesURL}/workers-${t}/${i}.html`);
    const tasks = await page.context().newPage();
    await tasks.goto('/tasks');
    await htmxReady(tasks);
    await submitAddresses(tasks, addresses);
    for (const [i, a] of addresses.entries()) await expectFinished(tasks, a, i);
    await tasks.close();
    const bars = page.locator('#workers-panel .throughput-chart svg rect.ok');
    await expect(bars.first()).toBeVisible({ timeout: 10_000 });
    const counted = await bars.evaluateAll((rs) => rs.reduce((n, r) => n + Number(r.getAttribute('data-count')), 0));
    expect(counted).toBeGreaterThanOrEqual(addresses.length);

    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'workers.png'), fullPage: true, animations: 'disabled' });

    // A graceful stop says goodbye: the row leaves at the next refresh.
    await stopProcess(extra.name, pid, extra.child);
    extra = undefined;
    await expect(mine).toHaveCount(0, { timeout: 10_000 });
    await expect(page.locator('#workers-panel tr.worker.alive')).toHaveCount(1);
  } finally {
    if (extra) await stopProcess(extra.name, pid, extra.child);
  }
});
