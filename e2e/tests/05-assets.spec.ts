import fs from 'node:fs';
import path from 'node:path';
import { HTMX_DIST, E2E_DIR } from '../support/paths';
import { expect, test } from './fixtures';

test('served /static/htmx.min.js is byte-identical to the pinned htmx.org package', async ({ request }) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(E2E_DIR, 'package.json'), 'utf8'));
  const pinned: string = pkg.devDependencies['htmx.org'];
  expect(pinned, 'htmx.org is pinned to an exact version').toMatch(/^\d+\.\d+\.\d+$/);
  const installed = JSON.parse(
    fs.readFileSync(path.join(E2E_DIR, 'node_modules', 'htmx.org', 'package.json'), 'utf8'),
  ).version;
  expect(installed, 'installed htmx.org matches package.json (run npm ci)').toBe(pinned);

  const res = await request.get('/static/htmx.min.js');
  expect(res.status()).toBe(200);
  expect(res.headers()['content-type']).toMatch(/javascript/);
  const served = await res.body();
  const expected = fs.readFileSync(HTMX_DIST);
  expect(served.length, 'size of the served htmx.min.js').toBe(expected.length);
  expect(served.equals(expected), 'served htmx.min.js equals node_modules/htmx.org/dist/htmx.min.js').toBe(true);

  // The version the app reports is the one pinned here.
  const health = await (await request.get('/healthz')).json();
  expect(health.htmx).toBe(pinned);
});

test('the page loads htmx from /static and it initialises', async ({ page }) => {
  await page.goto('/tasks');
  await page.waitForFunction(() => typeof (window as any).htmx === 'object');
  const version = await page.evaluate(() => (window as any).htmx.version);
  const pkg = JSON.parse(fs.readFileSync(path.join(E2E_DIR, 'package.json'), 'utf8'));
  expect(version).toBe(pkg.devDependencies['htmx.org']);
});

test('the API reference serves swagger-ui-dist files byte-identical to the pinned package', async ({ request }) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(E2E_DIR, 'package.json'), 'utf8'));
  const pinned: string = pkg.devDependencies['swagger-ui-dist'];
  expect(pinned, 'swagger-ui-dist is pinned to an exact version').toMatch(/^\d+\.\d+\.\d+$/);
  const dist = path.join(E2E_DIR, 'node_modules', 'swagger-ui-dist');
  const installed = JSON.parse(fs.readFileSync(path.join(dist, 'package.json'), 'utf8')).version;
  expect(installed, 'installed swagger-ui-dist matches package.json (run npm ci)').toBe(pinned);
  for (const [file, type] of [
    ['swagger-ui-bundle.js', /javascript/],
    ['swagger-ui.css', /text\/css/],
    ['favicon-32x32.png', /image\/png/],
  ] as const) {
    const res = await request.get(`/api-docs/${file}`);
    expect(res.status(), file).toBe(200);
    expect(res.headers()['content-type'], file).toMatch(type);
    const served = await res.body();
    expect(served.equals(fs.readFileSync(path.join(dist, file))), `served ${file} equals the package's`).toBe(true);
  }
  // Nothing else of the package is served (its own index and OAuth pages, source maps).
  for (const file of ['index.html', 'oauth2-redirect.html', 'swagger-ui-bundle.js.map', '..%2Fapp.css']) {
    expect((await request.get(`/api-docs/${file}`)).status(), file).toBe(404);
  }
});
