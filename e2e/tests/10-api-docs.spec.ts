// The header's "JSON API" link opens the API reference: Swagger UI rendering
// /api/openapi.json, every file from our origin, no Content-Security-Policy complaint
// (the fixtures fail the test on any), nothing fetched off loopback.
import { expect, test } from './fixtures';

test('the JSON API link opens a rendered API reference under the strict CSP', async ({ page }) => {
  await page.goto('/tasks');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'JSON API' }).click();
  await expect(page).toHaveURL(/\/api-docs\/$/);
  // Swagger UI has read the document: its title and the operations are on the page.
  await expect(page.locator('.swagger-ui .info .title')).toContainText('wordtally');
  await expect(page.locator('.opblock-summary-path', { hasText: /^\/api\/tasks$/ }).first()).toBeVisible();
  await expect(page.locator('.opblock-summary-path', { hasText: '/api/crawls' }).first()).toBeVisible();
  // An operation opens and shows its responses.
  await page.locator('.opblock-summary', { hasText: '/api/openapi.json' }).first().click();
  await expect(page.locator('.responses-wrapper').first()).toBeVisible();
  await page.screenshot({ path: 'test-results/api-docs.png' });
});
