import type { Dialog } from '@playwright/test';
import { expect, expectFinished, htmxReady, row, submitAddresses, test, uniq } from './fixtures';

test('a mixed paste: bad lines listed with line number and reason, good lines queued, only bad lines kept', async ({ page, env }) => {
  const t = uniq();
  const good1 = `${env.pagesURL}/mixed-${t}/3.html`;
  const good2 = `${env.pagesURL}/mixed-${t}/5.html`;
  const lines = [
    good1, //                      1
    'javascript:alert(1)', //      2
    'ftp://x', //                  3
    '', //                         4 (blank: skipped, still counted as a line)
    'http://', //                  5
    good2, //                      6
    'not a url with spaces', //    7
    'http://[::1', //              8
  ];
  await page.goto('/tasks');
  await htmxReady(page);
  await submitAddresses(page, lines);

  const result = page.locator('#submit-result');
  await expect(result).toContainText('Queued 2 addresses.');
  await expect(result).toContainText('5 lines were not accepted');
  await expect(result.locator('ul.rejected li')).toHaveText([
    'line 2 javascript:alert(1) — only http and https addresses are supported (got "javascript:")',
    'line 3 ftp://x — only http and https addresses are supported (got "ftp:")',
    'line 5 http:// — the address has no host name',
    'line 7 not a url with spaces — the address contains a space or other blank character',
    'line 8 http://[::1 — the address has an invalid IPv6 address',
  ]);
  await expect(result.locator('ul.rejected li .line')).toHaveText(['line 2', 'line 3', 'line 5', 'line 7', 'line 8']);
  await expect(result.locator('ul.rejected li code')).toHaveText([
    'javascript:alert(1)',
    'ftp://x',
    'http://',
    'not a url with spaces',
    'http://[::1',
  ]);
  // The textarea keeps exactly the rejected lines, in order, for fixing.
  await expect(page.locator('textarea#addresses')).toHaveValue(
    ['javascript:alert(1)', 'ftp://x', 'http://', 'not a url with spaces', 'http://[::1'].join('\n'),
  );

  await expectFinished(page, good1, 3);
  await expectFinished(page, good2, 5);
  // Nothing was stored for a rejected line.
  for (const bad of ['javascript:alert(1)', 'ftp://x', 'not a url with spaces']) {
    await expect(page.locator('#tasks-table .addr').getByText(bad)).toHaveCount(0);
  }
});

test('markup in an address or in a result error is shown as literal text, never run', async ({ page, env }) => {
  const dialogs: string[] = [];
  page.on('dialog', (d: Dialog) => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    void d.dismiss();
  });
  const t = uniq();
  const scriptLine = 'http://<script>window.__xss=1</script>';
  const imgLine = '<img src=x onerror="window.__xss=1;alert(1)">';
  const evil = `${env.pagesURL}/xss-${t}/evil-type`;
  const evilType = 'image/x-<img src=x onerror=window.__xss=1>';

  await page.goto('/tasks');
  await htmxReady(page);
  await submitAddresses(page, [scriptLine, imgLine, evil]);

  const result = page.locator('#submit-result');
  await expect(result).toContainText('Queued 1 address.');
  const codes = result.locator('ul.rejected li code');
  await expect(codes).toHaveText([scriptLine, imgLine]);
  await expect(codes.first()).toBeVisible();
  await expect(page.getByText(scriptLine, { exact: true })).toBeVisible();
  await expect(page.locator('textarea#addresses')).toHaveValue(`${scriptLine}\n${imgLine}`);

  // The failed task's error (from the Content-Type header) contains markup: shown as text.
  const r = row(page, evil);
  await expect(r).toHaveAttribute('data-status', 'FINISHED', { timeout: 30_000 });
  await expect(r.locator('.badge')).toHaveText('failed');
  await expect(r.locator('.error')).toHaveText(`not a text document (content type ${evilType})`);
  await expect(r.locator('.error')).toBeVisible();
  await expect(r.locator('.details')).toContainText(evilType);

  // Nothing ran and no element was injected, neither by the fragment nor by the polled table.
  expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined();
  await expect(page.locator('main script')).toHaveCount(0);
  await expect(page.locator('img')).toHaveCount(0);
  await expect(page.locator('[onerror]')).toHaveCount(0);
  expect(dialogs).toEqual([]);

  // A full page load renders the same rows server-side: still literal text.
  await page.reload();
  await expect(row(page, evil).locator('.error')).toHaveText(`not a text document (content type ${evilType})`);
  expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined();
  await expect(page.locator('img')).toHaveCount(0);
  expect(dialogs).toEqual([]);
});
