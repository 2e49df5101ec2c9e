import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import type { SourceDb } from '../../db/source.js';
import type { Db } from '../../db/client.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { freshDatabase, testStore } from '../support/services.js';
import { sourceDatabase } from '../support/source.js';

// A failing ingest names the column, the type, the count and the row numbers, never a cell value: the message
// lands in ml.pipeline_runs, ml.run_steps and the workflow history, which hold no personal data.

const EMAIL = 'leak.me@example.com';
const LABEL = 'secret-label@example.com';
let db: Db;
let source: SourceDb;
let store: ArtifactStore;
let closeStore: () => void;
let acts: ReturnType<typeof createActivities>;
const stamp = Date.now();

beforeAll(async () => {
  let url: string;
  ({ url, db } = await freshDatabase('security_leaks'));
  ({ store, close: closeStore } = await testStore());
  source = sourceDatabase(url);
  acts = createActivities({ db, store, codeVersion: 'test', source });
  await db.pool.query(`create table shop.people (id int primary key, y text not null, score text, email text)`);
  // rows 7 and 19 hold an e-mail address where a number is expected, rows 4 and 30 a label that is not boolean
  await db.pool.query(`
    insert into shop.people
    select g,
           case when g in (4, 30) then '${LABEL}' when g % 2 = 0 then 'yes' else 'no' end,
           case when g in (7, 19) then '${EMAIL}' else (g * 0.5)::text end,
           'user' || g || '@example.com'
    from generate_series(1, 40) g`);
});

afterAll(async () => {
  await source?.close();
  closeStore?.();
  await db?.close();
});

const call = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  new MockActivityEnvironment().run(fn as never, ...(args as unknown as never[])) as Promise<R>;

/** startRun → ingestSource (fails) → finishRun with the failure, as the workflow records it. */
async function failingRun(name: string, source: Record<string, unknown>) {
  const runId = `leak-${stamp}-${name}`;
  const config = { modelName: 'leaks', source: { kind: 'table', entityKey: 'id', label: 'y', ...source } };
  const started = await call(acts.startRun, { runId, workflowId: `wf-${runId}`, config });
  const failure = await call(acts.ingestSource, { runId, source: started.config.source }).then(
    () => {
      throw new Error('the ingest should have failed');
    },
    (e: Error & { type?: string }) => e,
  );
  await call(acts.finishRun, { runId, status: 'failed', error: { type: failure.type ?? 'Error', message: failure.message } });
  const run = await db.pool.query(`select error_type, error_message from ml.pipeline_runs where run_id = $1`, [runId]);
  const steps = await db.pool.query(`select step, error_message from ml.run_steps where run_id = $1`, [runId]);
  return { failure, run: run.rows[0] as { error_type: string; error_message: string }, steps: steps.rows as { step: string; error_message: string | null }[] };
}

/** The value is in no message: the failure (with its whole cause chain), the run row, any step row. */
function expectNowhere(value: string, r: Awaited<ReturnType<typeof failingRun>>) {
  const chain: unknown[] = [];
  for (let e: unknown = r.failure; e && chain.length < 10; e = (e as { cause?: unknown }).cause) chain.push(e);
  for (const e of chain) {
    expect(JSON.stringify(e, Object.getOwnPropertyNames(e))).not.toContain(value);
    expect(String((e as Error).message)).not.toContain(value);
  }
  if (r.failure instanceof ApplicationFailure) expect(JSON.stringify(r.failure.details ?? null)).not.toContain(value);
  expect(r.run.error_message).not.toContain(value);
  for (const s of r.steps) expect(s.error_message ?? '').not.toContain(value);
}

describe('no cell values in error messages', () => {
  it('a text column declared numeric: column, count and rows, not the e-mail address', async () => {
    const r = await failingRun('numeric', { query: `select id, case when id in (4, 30) then 'yes' else y end as y, score from shop.people`, features: { score: 'numeric' } });
    expect(r.failure.type).toBe('InvalidData');
    expect(r.failure.message).toMatch(/column "score" holds 2 values \(rows 7, 19\) that are not numbers/);
    expect(r.run).toMatchObject({ error_type: 'InvalidData', error_message: r.failure.message });
    expectNowhere(EMAIL, r);
  });

  it('labels that are not boolean-like: count and row numbers, not the values', async () => {
    const r = await failingRun('labels', { query: 'select id, y, length(email) as n from shop.people' });
    expect(r.failure.type).toBe('InvalidData');
    expect(r.failure.message).toMatch(/label column "y" has 2 values \(rows 4, 30\) that are not boolean-like/);
    expectNowhere(LABEL, r);
  });

  it("a cast inside the user's own query fails in Postgres (22P02): SQLSTATE and type, not the value", async () => {
    const r = await failingRun('cast', { query: `select id, case when id in (4, 30) then 'yes' else y end as y, score::float8 as x from shop.people` });
    expect(r.failure.type).toBe('InvalidData');
    expect(r.failure.message).toMatch(/a source value has the wrong type: a value is not a valid double precision.*\(SQLSTATE 22P02\)/);
    expectNowhere(EMAIL, r);
  });

  it('an integer overflow inside the query (22003): not the value either', async () => {
    const r = await failingRun('range', { query: `select id, case when id in (4, 30) then 'yes' else y end as y, (id * 98765432101)::int as x from shop.people` });
    expect(r.failure.message).toMatch(/SQLSTATE 22003/);
    expectNowhere('98765432101', r);
  });
});
