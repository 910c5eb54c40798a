// Watching over time (issue 21): schedule a batch from its page, watch a run start by
// itself, see the trend drawn and a change appear on /changes — without a reload.
// The server keeps its one-minute minimum, so the schedule is the cron "every minute".
import { expect, htmxReady, submitAddresses, test, uniq } from './fixtures';

test('schedule a batch: a run starts by itself, the trend and a change appear', async ({ page, env }) => {
  test.setTimeout(180_000);
  const t = uniq();
  const grow = `${env.pagesURL}/grow/w-${t}.html`;
  await page.goto('/tasks');
  await htmxReady(page);
  await page.locator('#label').fill(`watch ${t}`);
  await submitAddresses(page, [grow]);
  await page.locator('#submit-result').getByRole('link', { name: /Follow batch/ }).click();
  await htmxReady(page);
  const panel = page.locator('#batch-panel');
  await expect(panel.locator('#words-total')).toHaveText('1', { timeout: 30_000 });
  await expect(panel.locator('#schedule-state')).toContainText('Not scheduled');

  // A bad interval is refused with its reason; nothing is stored.
  await page.getByText('Schedule…').click();
  await page.locator('#schedule-every').fill('10s');
  await page.locator('#schedule-every-submit').click();
  await expect(page.locator('#toast')).toContainText('at least 1m');
  await expect(panel.locator('#schedule-state')).toContainText('Not scheduled');

  // Every minute, from the cron form.
  await page.locator('#schedule-cron').fill('* * * * *');
  await page.locator('#schedule-timezone').fill('Europe/Berlin');
  await page.locator('#schedule-cron-submit').click();
  await expect(page.locator('#batch-notice')).toContainText('next run at');
  await expect(panel.locator('#schedule-state')).toContainText('* * * * *', { timeout: 10_000 });
  // The schedule's buttons follow it in place (they sit outside the polled panel).
  await expect(page.locator('#schedule-pause')).toBeVisible();
  await expect(page.locator('#schedule-remove')).toBeVisible();
  await expect(page.getByText('Change the schedule…')).toBeVisible();

  // Run 2 starts by itself and finishes: the runs table, the trend and the sum follow.
  await expect(panel.locator('#batch-runs tr[data-run="2"]')).toContainText('schedule', { timeout: 90_000 });
  await expect(panel.locator('#words-total')).toHaveText('2', { timeout: 30_000 });
  await expect(panel.locator('#batch-trend circle[data-run="2"]')).toHaveAttribute('data-value', '2');
  await expect(panel.locator('#last-tick')).toContainText('started run 2');

  // Pause it so nothing moves while we look at the change — no reload: the section
  // swaps itself, Resume replaces Pause.
  await page.locator('#schedule-pause').click();
  await expect(page.locator('#batch-notice')).toContainText('paused');
  await expect(page.locator('#schedule-resume')).toBeVisible();
  await expect(page.locator('#schedule-pause')).toHaveCount(0);
  await expect(panel.locator('#schedule-state')).toContainText('paused');

  await page.goto('/changes');
  await htmxReady(page);
  const change = page.locator('#changes-list tr.change').filter({ hasText: `w-${t}` });
  await expect(change).toHaveCount(1);
  await expect(change.locator('.before')).toHaveText('1');
  await expect(change.locator('.after')).toHaveText('2');

  // The task page draws its counts per run.
  await change.getByRole('link').first().click();
  await expect(page.locator('#task-trend circle[data-run="2"]')).toHaveAttribute('data-value', '2');
});
