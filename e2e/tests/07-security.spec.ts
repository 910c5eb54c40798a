// Access control as a person meets it (DESIGN §13): signed out, pages lead to the sign-in
// form; signing in and out; a forged form on another origin changes nothing even though
// the browser is signed in; every response carries the Content-Security-Policy (and the
// fixtures fail any test whose console reports a CSP violation).
import { expect, guardNetwork, test, uniq, watchCsp } from './fixtures';

test('signed out, pages lead to the sign-in form; signing in and out works', async ({
  browser,
  baseURL,
  env,
  offLoopback,
  cspViolations,
}) => {
  // A fresh browser: no saved session.
  const context = await browser.newContext({ baseURL, storageState: { cookies: [], origins: [] } });
  await guardNetwork(context, offLoopback);
  watchCsp(context, cspViolations);
  try {
    const page = await context.newPage();
    await page.goto('/tasks?status=FINISHED');
    await expect(page).toHaveURL(/\/login\?next=%2Ftasks%3Fstatus%3DFINISHED$/);
    expect((await page.request.get('/api/tasks')).status()).toBe(401);

    await page.getByLabel('Name').fill(env.user);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert')).toHaveText('wrong name or password');

    await page.getByLabel('Password').fill(env.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    // Back to the page that was asked for, signed in.
    await expect(page).toHaveURL(/\/tasks\?status=FINISHED$/);
    await expect(page.locator('header .who')).toHaveText(env.user);
    expect((await page.request.get('/api/tasks')).status()).toBe(200);

    await page.getByRole('button', { name: 'Sign out' }).click();
    await expect(page).toHaveURL(/\/login$/);
    await page.goto('/tasks');
    await expect(page).toHaveURL(/\/login\?next=/);
  } finally {
    await context.close();
  }
});

test('a forged form on another origin changes nothing', async ({ page, baseURL, env }) => {
  const marker = `forged-${uniq()}.example`;
  // Another origin (the fixture server's port), signed in to wordtally in the same browser.
  const evil = `${env.pagesURL}/prize-${uniq()}.html`;
  await page.route(evil, (route) =>
    route.fulfill({
      contentType: 'text/html',
      body:
        `<!doctype html><title>You won</title><form method="post" action="${baseURL}/tasks">` +
        `<input type="hidden" name="addresses" value="${marker}"><input type="hidden" name="word" value="x">` +
        `<button type="submit">Claim the prize</button></form>`,
    }),
  );
  await page.goto(evil);
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${baseURL}/tasks` && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Claim the prize' }).click(),
  ]);
  expect(res.status()).toBe(403);

  // Nothing was stored, although the session is valid.
  const list = await (await page.request.get(`/api/tasks?q=${marker}`)).json();
  expect(list.tasks).toEqual([]);
  await page.goto('/tasks');
  await expect(page).toHaveTitle('Tasks · wordtally');
});

test('pages carry a strict Content-Security-Policy and htmx runs under it', async ({ page }) => {
  const res = await page.goto('/tasks');
  const csp = res?.headers()['content-security-policy'] ?? '';
  expect(csp).toContain("script-src 'self'");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).not.toContain('unsafe-inline');
  expect(csp).not.toContain('unsafe-eval');
  // htmx loaded and polls (the table refreshes itself): scripts from 'self' only.
  await page.waitForFunction(() => typeof (window as any).htmx === 'object');
  await page.waitForResponse((r) => r.url().includes('/tasks/table'));
});
