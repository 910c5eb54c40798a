import fs from 'node:fs';
import path from 'node:path';
import { SCREENSHOT_DIR } from '../support/paths';
import { expect, expectFinished, htmxReady, row, submitAddresses, test, uniq } from './fixtures';

test('one address: the row appears and finishes with the right count, without a page reload', async ({ page, env }) => {
  const address = `${env.pagesURL}/live-${uniq()}/7.html`;
  await page.goto('/tasks');
  await htmxReady(page);
  // Survives only if the page is never reloaded or navigated away.
  await page.evaluate(() => ((window as any).__marker = 'still-the-same-page'));
  let navigations = 0;
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) navigations++;
  });

  await submitAddresses(page, [address]);

  await expect(page.locator('#submit-result')).toContainText('Queued 1 address.');
  await expect(page.locator('textarea#addresses')).toHaveValue('');
  await expect(row(page, address)).toHaveCount(1);
  await expectFinished(page, address, 7);
  await expect(row(page, address).locator('td.http')).toHaveText('200');
  await expect(row(page, address).locator('.badge')).toHaveText('finished');

  expect(await page.evaluate(() => (window as any).__marker)).toBe('still-the-same-page');
  expect(navigations, 'main-frame navigations after submitting').toBe(0);
  expect(page.url()).toMatch(/\/tasks$/);

  // The JSON API agrees with the table.
  const id = (await row(page, address).getAttribute('id'))!.replace('task-', '');
  const task = await (await page.request.get(`/api/tasks/${id}`)).json();
  expect(task.status).toBe('FINISHED');
  expect(task.result.words_count).toBe(7);
  expect(task.result.http_status_code).toBe(200);
});

test('a batch of 20 addresses: every row finishes with its own count', async ({ page, env }) => {
  const t = uniq();
  // 20 distinct pages with 20 distinct expected counts (0 … 38, step 2).
  const batch = Array.from({ length: 20 }, (_, i) => ({
    address: `${env.pagesURL}/batch-${t}/article-${i + 1}/${2 * i}.html`,
    count: 2 * i,
  }));
  await page.goto('/tasks');
  await htmxReady(page);
  await submitAddresses(
    page,
    batch.map((b) => b.address),
  );
  await expect(page.locator('#submit-result')).toContainText('Queued 20 addresses.');
  await expect(page.locator('#submit-result ul.rejected')).toHaveCount(0);

  for (const b of batch) {
    await expectFinished(page, b.address, b.count, 45_000);
  }
  const finished = page.locator(`#tasks-table tbody tr[data-status="FINISHED"]`).filter({ hasText: `batch-${t}/` });
  await expect(finished).toHaveCount(20);

  // ---- The README's screenshot: finished rows with counts, a failed one, a pending one and a
  // rejected line in the result block. Not an assertion of looks, only a picture.
  const hold = `screenshot-${t}`;
  const failed = `${env.pagesURL}/downloads/logo-binary.png`;
  const pending = `${env.pagesURL}/hold/${hold}`;
  try {
    await submitAddresses(page, [failed, pending, 'ftp://files.example/python.tar.gz']);
    await expect(page.locator('#submit-result')).toContainText('Queued 2 addresses.');
    await expect(row(page, failed)).toHaveAttribute('data-status', 'FINISHED', { timeout: 30_000 });
    await expect(row(page, failed).locator('.badge')).toHaveText('failed');
    await expect(row(page, failed).locator('.error')).toHaveText('not a text document (content type image/png)');
    await expect(row(page, pending)).toHaveAttribute('data-status', 'PENDING');
    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'tasks.png'), fullPage: true, animations: 'disabled' });
  } finally {
    await page.request.get(`${env.pagesURL}/release/${hold}`);
  }
  await expectFinished(page, pending, 1);
});
