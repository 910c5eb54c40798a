import { expect, expectFinished, htmxReady, row, submitAddresses, test, uniq } from './fixtures';

test('status filter and search narrow the table', async ({ page, env }) => {
  const t = uniq();
  const tag = `filter-${t}`;
  const finishedA = `${env.pagesURL}/${tag}/alpha/3.html`;
  const finishedB = `${env.pagesURL}/${tag}/beta/6.html`;
  const hold = `hold-${t}`;
  const pending = `${env.pagesURL}/hold/${hold}`; // stays PENDING until released
  const other = `${env.pagesURL}/unrelated-${t}/2.html`;

  try {
    await page.goto('/tasks');
    await htmxReady(page);
    await submitAddresses(page, [finishedA, finishedB, other]);
    await expect(page.locator('#submit-result')).toContainText('Queued 3 addresses.');
    await submitAddresses(page, [pending]);
    await expect(page.locator('#submit-result')).toContainText('Queued 1 address.');
    await expectFinished(page, finishedA, 3);
    await expectFinished(page, finishedB, 6);
    await expectFinished(page, other, 2);
    await expect(row(page, pending)).toHaveAttribute('data-status', 'PENDING');

    const rows = page.locator('#tasks-table tbody tr');
    const addrs = page.locator('#tasks-table tbody tr td.address .addr');

    // Search (case-insensitive substring of the address).
    await page.getByRole('searchbox', { name: 'Search addresses' }).fill(tag.toUpperCase());
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect(page).toHaveURL(/[?&]q=FILTER-/);
    await expect(addrs).toHaveText([finishedB, finishedA]);
    await expect(page.locator('#tasks-table .filtered')).toContainText('show all');

    // Search + status.
    await page.getByRole('combobox', { name: 'Status' }).selectOption('FINISHED');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect(page).toHaveURL(/status=FINISHED/);
    await expect(addrs).toHaveText([finishedB, finishedA]);
    await expect(rows).toHaveCount(2);

    // Status alone: only PENDING rows, ours among them.
    await page.getByRole('searchbox', { name: 'Search addresses' }).fill('');
    await page.getByRole('combobox', { name: 'Status' }).selectOption('PENDING');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect(page).toHaveURL(/status=PENDING/);
    await expect(row(page, pending)).toHaveCount(1);
    for (const status of await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-status')))) {
      expect(status).toBe('PENDING');
    }
    await expect(row(page, finishedA)).toHaveCount(0);

    // The filtered table keeps polling with its filter: once released, the task leaves it.
    await page.getByRole('searchbox', { name: 'Search addresses' }).fill(`hold/${hold}`);
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect(addrs).toHaveText([pending]);
    await page.request.get(`${env.pagesURL}/release/${hold}`);
    await expect(rows).toHaveText(['No task matches.'], { timeout: 30_000 });

    // And it is in the FINISHED view now.
    await page.getByRole('combobox', { name: 'Status' }).selectOption('FINISHED');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expectFinished(page, pending, 1);

    // A search that matches nothing.
    await page.goto(`/tasks?q=${encodeURIComponent(`no-such-${t}`)}`);
    await expect(rows).toHaveText(['No task matches.']);

    // "show all" clears the filters.
    await page.getByRole('link', { name: 'show all' }).click();
    await expect(page).toHaveURL(/\/tasks$/);
    await expect(row(page, other)).toHaveCount(1);
    await expect(row(page, finishedA)).toHaveCount(1);
  } finally {
    await page.request.get(`${env.pagesURL}/release/${hold}`);
  }
});
