// Regression test for a race found by this suite (fixed: every store write transaction now
// takes the task_stats row lock first, so writers are serialized).
//
// The Submitter enqueues a task into Redis and only then marks it PENDING (Store::mark_queued).
// When the worker's result reaches Store::store_results in between, that transaction reads
// NOT_STARTED, then its guarded `UPDATE task SET task_status = 'FINISHED' … WHERE id = $1 AND
// task_status = 'NOT_STARTED'` waits for mark_queued's row lock and, re-checked under READ
// COMMITTED, matches nothing: the result row is stored but the task stays PENDING until the
// pending deadline (300 s by default) re-queued it. In the browser a finished task showed as
// "pending" for minutes; the normal tests hit it about once in five runs.
//
// To make the window wide and the test deterministic, a trigger (this test's database only,
// removed afterwards) holds mark_queued's transaction open for 1.5 s after it moved the row.
import { execFileSync } from 'node:child_process';
import type { E2eState } from '../support/state';
import { expect, test } from './fixtures';

function psql(env: E2eState, sql: string) {
  const u = new URL(env.adminDatabaseUrl);
  u.pathname = `/${env.database}`;
  execFileSync('psql', [u.toString(), '-v', 'ON_ERROR_STOP=1', '-qc', sql], { stdio: ['ignore', 'ignore', 'pipe'] });
}

test('a result arriving before the task is marked PENDING still finishes the task', async ({ request, env }) => {
  psql(
    env,
    `CREATE FUNCTION wt_e2e_slow_mark() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$;
     CREATE TRIGGER wt_e2e_slow_mark AFTER UPDATE ON task FOR EACH ROW
       WHEN (OLD.task_status = 'NOT_STARTED' AND NEW.task_status = 'PENDING') EXECUTE FUNCTION wt_e2e_slow_mark();`,
  );
  try {
    // A script's request: an API token, no session, so no CSRF token is needed.
    const res = await request.post('/api/tasks', {
      headers: { authorization: `Bearer ${env.apiToken}` },
      data: { addresses: [`${env.pagesURL}/race-${Date.now()}/2.html`] },
    });
    expect(res.status()).toBe(201);
    const id = (await res.json()).tasks[0].id;
    // The result is stored…
    await expect
      .poll(async () => (await (await request.get(`/api/tasks/${id}`)).json()).result?.words_count ?? null)
      .toBe(2);
    // …so the task must be FINISHED (it stays PENDING with the bug).
    await expect
      .poll(async () => (await (await request.get(`/api/tasks/${id}`)).json()).status, { timeout: 10_000 })
      .toBe('FINISHED');
  } finally {
    psql(env, 'DROP TRIGGER wt_e2e_slow_mark ON task; DROP FUNCTION wt_e2e_slow_mark();');
  }
});
