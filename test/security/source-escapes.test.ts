import { existsSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { MockActivityEnvironment } from '@temporalio/testing';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { createSourceDb, grantSourceRead, type SourceDb } from '../../db/source.js';
import type { Db } from '../../db/client.js';
import { seedShop } from '../../db/synthetic/load.js';
import { createS3Client } from '../../infra/index.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { connections, freshDatabase, testStore } from '../support/services.js';
import { sourceClient, sourceDatabase } from '../support/source.js';

// Every reported escape of a table-mode source.query, and the others we could think of, against the real
// dev-stack Postgres: each is refused with an InvalidConfig naming the rule, and nothing was executed, read or
// changed (the victim table, a file the server would write, another session, a secret server file, ml.*).

let url: string;
let db: Db;
let source: SourceDb;
let store: ArtifactStore;
let closeStore: () => void;
let s3: S3Client;
let acts: ReturnType<typeof createActivities>;
let victimSession: pg.Client;
let victimPid: number;
const stamp = Date.now();
// a server file only a superuser (or pg_read_server_files) may read, with a token to look for everywhere
const secretFile = path.join(os.tmpdir(), `propensity-secret-${stamp}.txt`);
const SECRET = `server-secret-${stamp}`;
const pwnedFile = path.join(os.tmpdir(), `propensity-pwned-${stamp}`);

beforeAll(async () => {
  ({ url, db } = await freshDatabase('security_escapes'));
  ({ store, close: closeStore } = await testStore());
  s3 = createS3Client(connections().s3);
  source = sourceDatabase(url);
  acts = createActivities({ db, store, codeVersion: 'test', source });
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o644 });
  await db.pool.query(`create table shop.customers (id int primary key, y boolean not null, x float8, email text)`);
  await db.pool.query(`insert into shop.customers select g, g % 3 = 0, g * 1.5, 'c' || g || '@example.com' from generate_series(1, 60) g`);
  await db.pool.query(`create table public.victim (id int)`);
  await db.pool.query(`insert into public.victim values (1)`);
  // another session of the source role itself: a non-superuser may signal backends of its own role
  victimSession = await sourceClient(url, 'propensity-victim');
  victimPid = (await victimSession.query('select pg_backend_pid() as pid')).rows[0].pid;
});

afterAll(async () => {
  await victimSession?.end().catch(() => {});
  await source?.close();
  closeStore?.();
  s3?.destroy();
  await db?.close();
  rmSync(secretFile, { force: true });
  rmSync(pwnedFile, { force: true });
});

const call = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  new MockActivityEnvironment().run(fn as never, ...(args as unknown as never[])) as Promise<R>;

/** The run's row (ml.run_steps rows reference it), opened with a harmless config. */
const openRun = (runId: string, over: Record<string, unknown> = {}) =>
  call(acts.startRun, { runId, workflowId: `wf-${runId}`, config: { modelName: 'security', ...over } });

let attempt = 0;
/** Runs a table-mode ingest of `query`; returns the run id and what it threw (or null). */
async function ingest(query: string, via = acts) {
  const runId = `sec-${stamp}-${++attempt}`;
  await openRun(runId);
  const err = await call(via.ingestSource, { runId, source: { kind: 'table', query, entityKey: 'id', label: 'y' } }).then(
    () => null,
    (e: Error & { type?: string; cause?: unknown }) => e,
  );
  return { runId, err };
}

/** Nothing happened: the victim table and its row, every customer row, the other session, no file, no secret. */
async function assertNothingHappened(runId: string, err: unknown) {
  const victim = await db.pool.query(`select count(*)::int as n from public.victim`);
  expect(victim.rows[0].n).toBe(1);
  const customers = await db.pool.query(`select count(*)::int as n, count(*) filter (where email like 'c%@example.com')::int as intact from shop.customers`);
  expect(customers.rows[0]).toEqual({ n: 60, intact: 60 });
  expect((await db.pool.query(`select to_regclass('public.stolen') is null as absent`)).rows[0].absent).toBe(true);
  expect((await victimSession.query('select 1 as alive')).rows[0].alive).toBe(1);
  expect(existsSync(pwnedFile)).toBe(false);
  expect((await db.pool.query(`select count(*)::int as n from pg_largeobject_metadata`)).rows[0].n).toBe(0);
  // the secret is nowhere: not in the error, not in ml.*, and no artifact of the run was written at all
  expect(JSON.stringify(err, Object.getOwnPropertyNames(err ?? {}))).not.toContain(SECRET);
  const ml = await db.pool.query(
    `select (select count(*) from ml.data_quality where run_id = $1)::int as quality,
            (select string_agg(coalesce(error_message, ''), ' ') from ml.run_steps where run_id = $1) as steps`,
    [runId],
  );
  expect(ml.rows[0].quality).toBe(0);
  expect(ml.rows[0].steps ?? '').not.toContain(SECRET);
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: connections().s3.bucket, Prefix: `runs/${runId}/` }));
  expect(listed.KeyCount ?? 0).toBe(0);
}

const q = (inner: string) => inner.replace(/\s+/g, ' ').trim();

describe('table-mode source.query escapes are refused before anything runs', () => {
  const attacks: { name: string; query: string; rule: string; message: RegExp }[] = [
    {
      name: 'the reported wrapper escape: close the subquery, COMMIT, DROP TABLE, reopen',
      query: q(`select id, y, x from shop.customers) as s; commit; drop table public.victim; select * from (select id, y, x from shop.customers`),
      rule: 'syntax',
      message: /source\.query is not valid PostgreSQL: syntax error at or near "\)"/,
    },
    {
      name: 'the reported wrapper escape with COPY … TO PROGRAM',
      query: q(`select id, y, x from shop.customers) as s; copy (select current_user) to program 'touch ${pwnedFile}'; select * from (select id, y, x from shop.customers`),
      rule: 'syntax',
      message: /not valid PostgreSQL/,
    },
    { name: 'a second statement', query: 'select id, y, x from shop.customers; drop table public.victim', rule: 'single-statement', message: /holds 2 statements \(SELECT, DROP\)/ },
    { name: 'COPY … TO PROGRAM as the query', query: `copy (select current_user) to program 'touch ${pwnedFile}'`, rule: 'select-only', message: /is COPY, not a SELECT/ },
    { name: 'pg_read_file of a server file', query: `select 1 as id, true as y, pg_read_file('${secretFile}') as x`, rule: 'denied-function', message: /calls pg_read_file\(\)/ },
    { name: 'pg_read_file hidden in a subquery, schema-qualified', query: `select id, y, x from shop.customers where x > (select length(pg_catalog.pg_read_file('${secretFile}')))`, rule: 'denied-function', message: /calls pg_catalog\.pg_read_file\(\)/ },
    { name: 'pg_read_file inside a query string of query_to_xml', query: `select 1 as id, true as y, query_to_xml('select pg_read_file(''${secretFile}'')', true, true, '') as x`, rule: 'denied-function', message: /calls query_to_xml\(\)/ },
    { name: 'pg_terminate_backend of another session of the same role', query: 'select 1 as id, true as y, pg_terminate_backend(VICTIM) as x', rule: 'denied-function', message: /calls pg_terminate_backend\(\)/ },
    { name: 'pg_cancel_backend', query: 'select 1 as id, true as y, pg_cancel_backend(VICTIM) as x', rule: 'denied-function', message: /calls pg_cancel_backend\(\)/ },
    { name: 'lo_import of a server file', query: `select 1 as id, true as y, lo_import('${secretFile}') as x`, rule: 'denied-function', message: /calls lo_import\(\)/ },
    { name: 'a DELETE in a WITH clause', query: 'with d as (delete from shop.customers returning *) select id, y, x from d', rule: 'no-data-modifying', message: /contains DELETE/ },
    { name: 'an INSERT in a WITH clause', query: 'with i as (insert into public.victim values (2) returning id) select id, true as y, 1 as x from i', rule: 'no-data-modifying', message: /contains INSERT/ },
    { name: 'SELECT INTO a new table', query: 'select id, y, x into public.stolen from shop.customers', rule: 'no-select-into', message: /SELECT … INTO/ },
    { name: 'FOR UPDATE row locks', query: 'select id, y, x from shop.customers for update', rule: 'no-locking', message: /FOR UPDATE\/SHARE/ },
    { name: 'SET ROLE', query: 'set role postgres', rule: 'select-only', message: /is SET, not a SELECT/ },
    { name: "set_config('role', …)", query: "select 1 as id, true as y, set_config('role', 'postgres', false) as x", rule: 'denied-function', message: /calls set_config\(\)/ },
    { name: 'pg_sleep (held connections)', query: 'select 1 as id, true as y, pg_sleep(600) as x', rule: 'denied-function', message: /calls pg_sleep\(\)/ },
    { name: 'an advisory lock that outlives the query', query: 'select 1 as id, true as y, pg_advisory_lock(42) as x', rule: 'denied-function', message: /calls pg_advisory_lock\(\)/ },
  ];

  for (const attack of attacks) {
    it(`${attack.name}: InvalidConfig (${attack.rule})`, async () => {
      const { runId, err } = await ingest(attack.query.replace('VICTIM', String(victimPid)));
      expect(err, 'the ingest must fail').not.toBeNull();
      expect(err!.type).toBe('InvalidConfig');
      expect(err!.message).toMatch(attack.message);
      // the same rule at config validation (startRun), before a run is even recorded as running
      await expect(
        call(acts.startRun, { runId: `${runId}-cfg`, workflowId: `wf-${runId}`, config: { source: { kind: 'table', query: attack.query, entityKey: 'id', label: 'y' } } }),
      ).rejects.toMatchObject({ type: 'InvalidConfig', message: expect.stringContaining(`(rule ${attack.rule})`) });
      await assertNothingHappened(runId, err);
    });
  }

  it('queries that parse but reach past the role fail on its privileges: ml.*, pg_authid, other schemas', async () => {
    for (const [query, what] of [
      ['select 1 as id, true as y, count(*) as x from ml.pipeline_runs', /permission denied for schema ml/],
      ['select 1 as id, true as y, length(rolpassword) as x from pg_authid', /permission denied for table pg_authid/],
      ['select id, true as y, 1 as x from public.victim', /permission denied for table victim/],
    ] as const) {
      const { runId, err } = await ingest(query);
      expect(err?.type, query).toBe('InvalidConfig');
      expect(err!.message).toMatch(what);
      expect(err!.message).toMatch(/SQLSTATE 42501/);
      await assertNothingHappened(runId, err);
    }
  });

  it('a query running past the statement timeout is cancelled on the server, with a clear error', async () => {
    const quick = sourceDatabase(url, { statementTimeoutMs: 500 });
    try {
      const started = Date.now();
      const slow = createActivities({ db, store, codeVersion: 'test', source: quick });
      const marker = `timeout_probe_${stamp}`;
      const { err } = await ingest(`select g as id, g % 2 = 0 as y, g::float8 as ${marker} from generate_series(1, 500000000) g order by md5(g::text)`, slow);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(err?.type).toBe('InvalidConfig');
      expect(err!.message).toMatch(/ran longer than the statement timeout.*PROPENSITY_SOURCE_STATEMENT_TIMEOUT_S.*SQLSTATE 57014/);
      const running = await db.pool.query(`select count(*)::int as n from pg_stat_activity where state = 'active' and query like $1`, [`%${marker}%`]);
      expect(running.rows[0].n).toBe(0);
    } finally {
      await quick.close();
    }
  });

  it('a superuser source connection is refused before any source query runs', async () => {
    const asSuperuser = createSourceDb(url);
    try {
      const { runId, err } = await ingest('select id, y, x from shop.customers', createActivities({ db, store, codeVersion: 'test', source: asSuperuser }));
      expect(err?.type).toBe('InvalidConfig');
      expect(err!.message).toMatch(/role "postgres" is a superuser: source queries run only as a least-privilege read-only role/);
      await assertNothingHappened(runId, err);
    } finally {
      await asSuperuser.close();
    }
  });

  it('table mode over another schema needs a grant: refused naming the schema, then readable once granted', async () => {
    await db.pool.query(`create schema extra_data`);
    await db.pool.query(`create table extra_data.clients as select g as id, g % 2 = 0 as y, g * 2.0 as x from generate_series(1, 30) g`);
    const denied = await ingest('select id, y, x from extra_data.clients');
    expect(denied.err?.type).toBe('InvalidConfig');
    expect(denied.err!.message).toMatch(/permission denied for schema extra_data; .*\(SQLSTATE 42501\)/);
    await grantSourceRead(db.pool, 'extra_data');
    const runId = `sec-${stamp}-granted`;
    await openRun(runId);
    const out = await call(acts.ingestSource, { runId, source: { kind: 'table', query: 'select id, y, x from extra_data.clients', entityKey: 'id', label: 'y' } });
    expect(out).toMatchObject({ rows: 30, positives: 15 });
  });

  it('a legitimate query still works as the source role', async () => {
    const runId = `sec-${stamp}-ok`;
    await openRun(runId);
    const out = await call(acts.ingestSource, { runId, source: { kind: 'table', query: 'select id, y, x from shop.customers -- trailing comment', entityKey: 'id', label: 'y' } });
    expect(out).toMatchObject({ mode: 'table', rows: 60, positives: 20 });
  });
});

describe('the role alone (defense in depth, no parser in the way)', () => {
  it('may not read server files, run programs, write, drop, import large objects, switch roles or read ml.*', async () => {
    const client = await sourceClient(url);
    try {
      const denied = async (sql: string) => {
        const err = (await client.query(sql).then(() => null, (e: { code?: string }) => e)) as { code?: string } | null;
        expect(err?.code, sql).toBe('42501');
      };
      await denied(`select pg_read_file('${secretFile}')`);
      await denied(`copy (select 1) to program 'touch ${pwnedFile}'`);
      await denied(`select lo_import('${secretFile}')`);
      await denied('drop table public.victim');
      await denied('insert into shop.customers values (999, true, 1, null)');
      await denied('create table shop.mine (x int)');
      await denied('set role postgres');
      await denied('select * from ml.pipeline_runs');
      await assertNothingHappened('none', null);
    } finally {
      await client.end();
    }
  });

  it('may signal backends of its own role: only the parser guard stops pg_terminate_backend', async () => {
    const attacker = await sourceClient(url);
    const sacrificed = await sourceClient(url, 'propensity-sacrificed');
    try {
      const pid = (await sacrificed.query('select pg_backend_pid() as pid')).rows[0].pid;
      const { rows } = await attacker.query('select pg_terminate_backend($1) as killed', [pid]);
      expect(rows[0].killed).toBe(true); // why the parser denies it: the role cannot be kept from it
      await expect(sacrificed.query('select 1')).rejects.toThrow();
      // and it may not signal anyone else's
      const superPid = (await db.pool.query('select pg_backend_pid() as pid')).rows[0].pid;
      await expect(attacker.query('select pg_terminate_backend($1)', [superPid])).rejects.toMatchObject({ code: '42501' });
    } finally {
      await attacker.end();
      await sacrificed.end().catch(() => {});
    }
  });
});

describe('event mode reads shop.* as the source role', () => {
  it('ingests a small synthetic shop (features and quarantine) on the source pool', async () => {
    const shopDb = await freshDatabase('security_events');
    const shopSource = sourceDatabase(shopDb.url);
    try {
      const seeded = await seedShop(shopDb.db.pool, { users: 300, days: 30, seed: 5, horizonDays: 7 });
      const eventActs = createActivities({ db: shopDb.db, store, codeVersion: 'test', source: shopSource });
      await call(eventActs.startRun, { runId: `sec-${stamp}-events`, workflowId: 'wf-sec-events', config: { modelName: 'security' } });
      const out = await call(eventActs.ingestSource, { runId: `sec-${stamp}-events`, source: { kind: 'events', cutoff: seeded.timeline.cutoff.toISOString(), horizonDays: 7 } });
      expect(out.rows).toBeGreaterThan(100);
      expect(out.events!.total).toBeGreaterThan(out.events!.valid);
      // the source pool really is the restricted role
      const role = await shopSource.pool!.query('select current_user as who, (select rolsuper from pg_roles where rolname = current_user) as su');
      expect(role.rows[0]).toEqual({ who: 'propensity_source', su: false });
    } finally {
      await shopSource.close();
      await shopDb.db.close();
    }
  });
});
