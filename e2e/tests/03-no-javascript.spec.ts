import { AUTH_STATE_FILE } from '../support/paths';
import { expect, guardNetwork, row, test, uniq } from './fixtures';

test('the form works with JavaScript disabled: full-page post, then a reload shows the result', async ({
  browser,
  baseURL,
  env,
  offLoopback,
}) => {
  // Signed in (the saved session); the form carries its CSRF token as a hidden field.
  const context = await browser.newContext({ javaScriptEnabled: false, baseURL, storageState: AUTH_STATE_FILE });
  await guardNetwork(context, offLoopback);
  try {
    const page = await context.newPage();
    const address = `${env.pagesURL}/nojs-${uniq()}/4.html`;
    await page.goto('/tasks');
    // No JavaScript: htmx never loads, so the submission is a normal form post.
    expect(await page.evaluate(() => typeof (window as any).htmx).catch(() => 'no-js')).not.toBe('object');

    await page.locator('textarea#addresses').fill(`${address}\nftp://nope`);
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/tasks') && r.request().method() === 'POST'),
      page.getByRole('button', { name: 'Count' }).click(),
    ]);
    expect(response.status()).toBe(200);
    await page.waitForLoadState('domcontentloaded');

    // The whole page was rendered again, with the same result block and the new row.
    await expect(page).toHaveTitle('Tasks · wordtally');
    await expect(page.locator('#submit-result')).toContainText('Queued 1 address.');
    await expect(page.locator('#submit-result ul.rejected li')).toHaveText([
      'line 2 ftp://nope — only http and https addresses are supported (got "ftp:")',
    ]);
    await expect(page.locator('textarea#addresses')).toHaveValue('ftp://nope');
    await expect(row(page, address)).toHaveCount(1);

    // No polling without JavaScript: load the page again until the task has finished.
    await expect
      .poll(
        async () => {
          await page.goto('/tasks');
          return row(page, address).getAttribute('data-status');
        },
        { timeout: 30_000, intervals: [250, 500, 1_000] },
      )
      .toBe('FINISHED');
    await expect(row(page, address).locator('td.count')).toHaveText('4');
  } finally {
    await context.close();
  }
});
