// Batches as a person uses them (issue "Act on the work"): paste 50 addresses of which 10
// fail, follow the batch, watch the progress bar fill, make the failing pages answer,
// press "retry", see every row turn right without a reload, download the CSV; cancel;
// the task page's history.
import fs from 'node:fs';
import path from 'node:path';
import { SCREENSHOT_DIR } from '../support/paths';
import { expect, htmxReady, submitAddresses, test, uniq } from './fixtures';

test('50 addresses, 10 failing: progress to 100%, retry failed after the site heals, CSV download', async ({ page, env }) => {
  test.setTimeout(120_000);
  const t = uniq();
  const good = Array.from({ length: 40 }, (_, i) => `${env.pagesURL}/b-${t}/${i}/${(i % 7) + 1}.html`);
  const flaky = Array.from({ length: 10 }, (_, i) => `${env.pagesURL}/flaky/${t}/${i}/4.html`);
  await page.goto('/tasks');
  await htmxReady(page);
  await page.locator('#label').fill(`docs ${t}`);
  await submitAddresses(page, [...good, ...flaky]);
  await expect(page.locator('#submit-result')).toContainText('Queued 50 addresses.');
  await page.locator('#submit-result').getByRole('link', { name: /Follow batch/ }).click();
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(`docs ${t}`);
  await htmxReady(page);
  await page.evaluate(() => ((window as any).__marker = 'same-page'));

  // The progress bar fills by itself, and the totals say what happened.
  await expect(page.locator('#batch-panel svg.progress')).toHaveAttribute('data-percent', '100', { timeout: 60_000 });
  const panel = page.locator('#batch-panel');
  await expect(panel.locator('dd[data-outcome="ok"]')).toHaveText('40');
  await expect(panel.locator('dd[data-outcome="http_error"]')).toHaveText('10');
  const goodSum = good.reduce((s, _, i) => s + (i % 7) + 1, 0);
  await expect(panel.locator('#words-total')).toHaveText(String(goodSum));
  await expect(panel).toContainText('404 × 10');

  // The site comes back; retry the failures from the batch page.
  await page.request.get(`${env.pagesURL}/heal/${t}`);
  await page.getByText('Retry…').click();
  await page.locator('#retry-batch').click();
  await expect(page.locator('#batch-notice')).toContainText('Retried 10 tasks');
  await expect(panel.locator('dd[data-outcome="ok"]')).toHaveText('50', { timeout: 60_000 });
  await expect(panel.locator('dd[data-outcome="http_error"]')).toHaveText('0');
  await expect(panel.locator('#words-total')).toHaveText(String(goodSum + 40));
  // Every row of the batch's table is green, without a reload.
  const rows = page.locator('#tasks-table tbody tr');
  await expect(rows).toHaveCount(50);
  await expect(page.locator('#tasks-table tbody tr[data-outcome="ok"]')).toHaveCount(50, { timeout: 30_000 });
  await expect(page.locator('#tasks-table tbody tr.finished')).toHaveCount(50);
  expect(await page.evaluate(() => (window as any).__marker)).toBe('same-page');

  if (process.env.UPDATE_SCREENSHOT === '1') {
    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'batch.png'), fullPage: false, animations: 'disabled' });
  }

  // The CSV download: parsed and checked.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('.batch-actions').getByRole('link', { name: 'Download CSV' }).click(),
  ]);
  const csv = fs.readFileSync(await download.path(), 'utf8').trim().split('\r\n');
  expect(csv[0].startsWith('id,address,status,outcome,words_count,http_status_code,error')).toBe(true);
  const records = csv.slice(1).map((l) => l.split(','));
  expect(records).toHaveLength(50);
  const byAddress = new Map(records.map((r) => [r[1], r]));
  for (const [i, a] of good.entries()) expect(byAddress.get(a)?.[4]).toBe(String((i % 7) + 1));
  for (const a of flaky) {
    expect(byAddress.get(a)?.[3]).toBe('ok');
    expect(byAddress.get(a)?.[4]).toBe('4');
    expect(byAddress.get(a)?.[8]).toBe('2'); // run 2
  }

  // A retried task's page shows its earlier run.
  const id = byAddress.get(flaky[0])![0];
  await page.goto(`/tasks/${id}`);
  await expect(page.locator('#task-status')).toHaveAttribute('data-outcome', 'ok');
  await expect(page.locator('#current-result')).toContainText('4 · ok');
  await expect(page.locator('#history')).toContainText('Run 1: HTTP error');
  await expect(page.locator('#history')).toContainText('404');
});

test('cancel an unfinished batch; the task page retries one task and keeps its history', async ({ page, env }) => {
  const t = uniq();
  const held = `${env.pagesURL}/hold/c-${t}`;
  await page.goto('/tasks');
  await htmxReady(page);
  await submitAddresses(page, [held]);
  await page.locator('#submit-result').getByRole('link', { name: /Follow batch/ }).click();
  await htmxReady(page);
  await expect(page.locator('#tasks-table tbody tr')).toHaveAttribute('data-status', /PENDING|NOT_STARTED/);
  await page.getByText('Cancel…').click();
  await page.locator('#cancel-batch').click();
  await expect(page.locator('#batch-notice')).toContainText('Cancelled 1 unfinished task');
  await expect(page.locator('#tasks-table tbody tr')).toHaveAttribute('data-outcome', 'cancelled');
  await expect(page.locator('#batch-panel dd[data-outcome="cancelled"]')).toHaveText('1');
  // The held page answers late: the cancel stays.
  await page.request.get(`${env.pagesURL}/release/c-${t}`);

  // Retry that task from its own page: it runs again and finishes.
  await page.locator('#tasks-table tbody tr td.id a').click();
  await htmxReady(page);
  await page.locator('#retry-task').click();
  await expect(page.locator('#task-notice')).toContainText('run 2 is queued');
  await expect(page.locator('#task-status')).toHaveAttribute('data-outcome', 'ok', { timeout: 30_000 });
  await expect(page.locator('#current-result')).toContainText('1 · ok');
  await expect(page.locator('#history')).toHaveCount(0); // a cancelled run has no result to keep
  await expect(page.locator('#task-panel')).toContainText('run 2');
});
