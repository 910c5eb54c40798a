// Regions and patterns (issue 20) as a person uses them: open "Only parts of the page,
// patterns" in the form, give "never inside" selectors and a pattern, see the pattern's
// count on the task, then narrow the table with "contains" / "absent".
import { expect, htmxReady, row, submitAddresses, test, uniq } from './fixtures';

const PATTERN = 'py(thon)?\\d*';

test('a pattern and regions from the form; contains / absent filters', async ({ page, env }) => {
  const t = uniq();
  const tag = `regions-${t}`;
  // The fixture page N counts "python" N times; PATTERN also matches its `python3` and
  // its lone `py` (whole word), so N + 2.
  const three = `${env.pagesURL}/${tag}/3.html`;
  const none = `${env.pagesURL}/${tag}/0.html`;
  await page.goto('/tasks');
  await htmxReady(page);
  await page.getByText('Only parts of the page, patterns').click();
  await page.locator('#outside').fill('nav\nfooter');
  await page.locator('#patterns').fill(PATTERN);
  await submitAddresses(page, [three, none]);
  await expect(page.locator('#submit-result')).toContainText('Queued 2 addresses.');
  // The table shows the word's and the pattern's count.
  for (const [address, n] of [[three, 3], [none, 0]] as const) {
    await expect(row(page, address)).toHaveAttribute('data-status', 'FINISHED', { timeout: 30_000 });
    await expect(row(page, address).locator('td.count')).toHaveText(`python ${n} · ${PATTERN} ${n + 2}`);
  }

  const id = (await row(page, three).getAttribute('id'))?.replace('task-', '');
  const task = await (await page.request.get(`/api/tasks/${id}`)).json();
  expect(task.patterns).toEqual([PATTERN]);
  expect(task.outside).toEqual(['nav', 'footer']);
  expect(task.result.counts).toEqual({ python: 3, [PATTERN]: 5 });

  await page.goto(`/tasks/${id}`);
  await expect(page.locator('#task-panel')).toContainText('never inside');
  await expect(page.locator('#task-panel')).toContainText(PATTERN);
  await expect(page.locator('#task-panel')).toContainText(`${PATTERN}: 5`);

  // The filter bar: contains / absent a word or a pattern.
  await page.goto('/tasks');
  await htmxReady(page);
  const addrs = page.locator('#tasks-table tbody tr td.address .addr');
  await page.getByRole('searchbox', { name: 'Search addresses' }).fill(tag);
  await page.getByRole('textbox', { name: /above zero/ }).fill('python');
  await page.getByRole('button', { name: 'Filter' }).click();
  await expect(page).toHaveURL(/contains=python/);
  await expect(addrs).toHaveText([three]);

  await page.getByRole('textbox', { name: /above zero/ }).fill('');
  await page.getByRole('textbox', { name: /is zero/ }).fill('python');
  await page.getByRole('button', { name: 'Filter' }).click();
  await expect(page).toHaveURL(/absent=python/);
  await expect(addrs).toHaveText([none]);

  await page.getByRole('textbox', { name: /is zero/ }).fill('');
  await page.getByRole('textbox', { name: /above zero/ }).fill(PATTERN);
  await page.getByRole('button', { name: 'Filter' }).click();
  await expect(addrs).toHaveText([none, three]);
});
