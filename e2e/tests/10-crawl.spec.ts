// A crawl from the form (issue 19): choose "Crawl from these addresses", start from one
// page of a small linked site, follow the crawl, and watch "discovered" and "fetched" grow
// until all 31 pages are counted; the task page shows depth and where a page was found.
import { expect, htmxReady, test, uniq } from './fixtures';

test('crawl from the form: discovered and fetched grow to the whole site', async ({ page, env }) => {
  test.setTimeout(120_000);
  const t = uniq();
  await page.goto('/tasks');
  await htmxReady(page);
  await page.locator('textarea#addresses').fill(`${env.pagesURL}/site/${t}/0.html`);
  await page.locator('#label').fill(`crawl ${t}`);
  await page.getByLabel('Crawl from these addresses').check();
  await page.getByText('Crawl rules').click();
  await page.getByLabel('Max depth').fill('4');
  await page.getByRole('button', { name: 'Count' }).click();
  await expect(page.locator('#submit-result')).toContainText('Crawl started from 1 address.');
  await page.locator('#submit-result').getByRole('link', { name: /Follow crawl/ }).click();
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(`crawl ${t}`);
  await htmxReady(page);

  // Watch the numbers move without a reload until the whole tree is in.
  const discovered = page.locator('#crawl-discovered');
  const fetched = page.locator('#crawl-fetched');
  const seen = new Set<string>();
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    seen.add(`${await discovered.textContent()}/${await fetched.textContent()}`);
    if ((await fetched.textContent()) === '31') break;
    await page.waitForTimeout(200);
  }
  await expect(fetched).toHaveText('31');
  await expect(discovered).toHaveText('31');
  expect(seen.size, `values seen: ${[...seen].join(', ')}`).toBeGreaterThan(1);
  await expect(page.locator('#crawl-depth')).toHaveText('4');
  await expect(page.locator('#batch-panel svg.progress')).toHaveAttribute('aria-valuenow', '31');
  await expect(page.locator('#batch-panel svg.progress')).toHaveAttribute('role', 'progressbar');
  // Sum of N % 4 + 1 over the 31 pages.
  const sum = Array.from({ length: 31 }, (_, n) => (n % 4) + 1).reduce((a, b) => a + b, 0);
  await expect(page.locator('#words-total')).toHaveText(String(sum));

  // A page two links deep: depth 2, found on page 1 (or 2).
  await page.goto(`/tasks?q=${encodeURIComponent(`/site/${t}/3.html`)}`);
  await page.locator('#tasks-table tbody tr a[href^="/tasks/"]').first().click();
  await expect(page.locator('#task-depth')).toHaveText('2');
  await expect(page.locator('#found-on')).toBeVisible();
  await page.locator('#found-on').click();
  await expect(page.locator('.task-address')).toContainText(`/site/${t}/1.html`);
});
