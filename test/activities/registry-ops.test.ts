import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApprovalActivities } from '../../activities/approval.js';
import type { Db } from '../../db/client.js';
import type { ModelVersionStatus } from '../../db/schema.js';
import { RegistryError } from '../../registry/refs.js';
import { listModels, promote, rollback, showModel } from '../../registry/registry.js';
import type { ArtifactStore } from '../../store/artifacts.js';
import { freshDatabase, testStore } from '../support/services.js';

// Registry operations on the real Postgres of the dev stack, over versions inserted as registerModel leaves them.
let db: Db;
let store: ArtifactStore;
let closeStore: () => void;

async function addVersion(model: string, version: number, status: ModelVersionStatus = 'approved') {
  const runId = `run-${model}-${version}`;
  await db.db
    .insertInto('ml.pipeline_runs')
    .values({ run_id: runId, workflow_id: `wf-${model}-${version}`, model_name: model, status: 'registered', config: '{}', config_hash: `h${version}`, code_version: 'test' })
    .execute();
  await db.db
    .insertInto('ml.model_versions')
    .values({
      model_name: model,
      version,
      run_id: runId,
      workflow_id: `wf-${model}-${version}`,
      uri: `s3://bucket/models/${model}/v${version}/model.json`,
      config_hash: `h${version}`,
      code_version: 'test',
      data_sha256: `sha-${version}`,
      params: JSON.stringify({ hiddenUnits: [8] }),
      seed: 1234,
      backend: 'wasm',
      metrics: JSON.stringify({ rocAuc: 0.7 + version / 100 }),
      status,
    })
    .execute();
}

/** Aliases and alias history as they are now: bad input must leave both unchanged. */
const snapshot = async () => ({
  aliases: await db.db.selectFrom('ml.model_aliases').selectAll().orderBy('model_name').orderBy('alias').execute(),
  history: await db.db.selectFrom('ml.model_alias_history').selectAll().orderBy('id').execute(),
  versions: await db.db.selectFrom('ml.model_versions').select(['model_name', 'version', 'status']).orderBy('model_name').orderBy('version').execute(),
});

const failure = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (e) {
    return e instanceof RegistryError ? { type: e.type, message: e.message } : { type: 'not a RegistryError', message: String(e) };
  }
  return undefined;
};

const champion = async (model: string, alias = 'champion') =>
  (await db.db.selectFrom('ml.model_aliases').select('version').where('model_name', '=', model).where('alias', '=', alias).executeTakeFirst())?.version;

beforeAll(async () => {
  ({ db } = await freshDatabase('registry_ops'));
  ({ store, close: closeStore } = await testStore());
  void store;
  // m: v1..v3 approved, v4 pending approval, v5 rejected; champion v1 as the first registration left it
  for (const v of [1, 2, 3]) await addVersion('m', v);
  await addVersion('m', 4, 'pending_approval');
  await addVersion('m', 5, 'rejected');
  await db.db.updateTable('ml.model_versions').set({ decided_by: 'carol', decision_reason: 'leaks the label' }).where('version', '=', 5).execute();
  await db.db.insertInto('ml.model_aliases').values({ model_name: 'm', alias: 'champion', version: 1, updated_by: 'pipeline:wf-m-1' }).execute();
  await db.db
    .insertInto('ml.model_alias_history')
    .values({ model_name: 'm', alias: 'champion', from_version: null, to_version: 1, changed_by: 'pipeline:wf-m-1', reason: 'blessed by run run-m-1' })
    .execute();
  await addVersion('other', 1);
});

afterAll(async () => {
  closeStore?.();
  await db?.close();
});

describe('promote', () => {
  it('moves champion to an approved version and records who, from, to and why in one history row', async () => {
    const r = await promote(db.db, { modelName: 'm', version: 2, by: 'alice', reason: 'better on last week' });
    expect(r).toEqual({ modelName: 'm', alias: 'champion', fromVersion: 1, toVersion: 2, changed: true, action: 'move' });
    expect(await champion('m')).toBe(2);
    const alias = await db.db.selectFrom('ml.model_aliases').selectAll().where('model_name', '=', 'm').executeTakeFirstOrThrow();
    expect(alias.updated_by).toBe('alice');
    const last = await db.db.selectFrom('ml.model_alias_history').selectAll().orderBy('id', 'desc').executeTakeFirstOrThrow();
    expect(last).toMatchObject({ model_name: 'm', alias: 'champion', from_version: 1, to_version: 2, changed_by: 'alice', reason: 'better on last week', action: 'move' });
    expect(Date.now() - last.changed_at.getTime()).toBeLessThan(60_000);
  });

  it('creates any other alias, and a promote to where the alias already points writes nothing', async () => {
    const r = await promote(db.db, { modelName: 'm', version: 3, alias: 'challenger', by: 'bob' });
    expect(r).toMatchObject({ alias: 'challenger', fromVersion: null, toVersion: 3, changed: true });
    expect(await champion('m', 'challenger')).toBe(3);
    const before = await snapshot();
    const again = await promote(db.db, { modelName: 'm', version: 3, alias: 'challenger', by: 'bob' });
    expect(again).toMatchObject({ fromVersion: 3, toVersion: 3, changed: false });
    expect(await snapshot()).toEqual(before);
  });

  it('serializes concurrent promotes of one alias: the history is a chain (each from = the previous to)', async () => {
    await Promise.all([2, 3, 1, 3, 2].map((version, i) => promote(db.db, { modelName: 'm', version, alias: 'race', by: `u${i}` })));
    const rows = await db.db.selectFrom('ml.model_alias_history').selectAll().where('alias', '=', 'race').orderBy('id').execute();
    expect(rows[0].from_version).toBeNull();
    for (let i = 1; i < rows.length; i++) expect(rows[i].from_version).toBe(rows[i - 1].to_version);
    expect(await champion('m', 'race')).toBe(rows.at(-1)!.to_version);
  });

  it('refuses bad input with one typed message and changes nothing', async () => {
    const before = await snapshot();
    const cases: [() => Promise<unknown>, string, RegExp][] = [
      [() => promote(db.db, { modelName: 'nope', version: 1, by: 'a' }), 'UnknownModel', /^unknown model "nope" \(registered models: m, other\)$/],
      [() => promote(db.db, { modelName: 'm', version: 9, by: 'a' }), 'UnknownVersion', /^model "m" has no version 9 \(versions: 1, 2, 3, 4, 5\)$/],
      [() => promote(db.db, { modelName: 'm', version: 4, by: 'a' }), 'VersionNotPromotable', /^model "m" v4 cannot be promoted: it is pending approval/],
      [() => promote(db.db, { modelName: 'm', version: 5, by: 'a' }), 'VersionNotPromotable', /^model "m" v5 cannot be promoted: it was rejected by carol \(leaks the label\)$/],
      [() => promote(db.db, { modelName: 'm', version: 2, alias: 'v3', by: 'a' }), 'InvalidModelRef', /invalid alias "v3": "v3" names a version, not an alias/],
      [() => promote(db.db, { modelName: 'm', version: 2, alias: 'bad alias', by: 'a' }), 'InvalidModelRef', /invalid alias "bad alias": it contains " " at position 4/],
      [() => promote(db.db, { modelName: 'm', version: 2, by: '  ' }), 'InvalidModelRef', /--by\) must not be empty/],
    ];
    for (const [p, type, message] of cases) {
      const e = await failure(p());
      expect(e?.type, String(message)).toBe(type);
      expect(e?.message).toMatch(message);
    }
    expect(await snapshot()).toEqual(before);
  });
});

describe('rollback', () => {
  it('moves the alias back step by step along its history, then says there is nothing left', async () => {
    // champion: 1 → 2 (promoted above) → 3
    await promote(db.db, { modelName: 'm', version: 3, by: 'alice' });
    const first = await rollback(db.db, { modelName: 'm', by: 'bob', reason: 'v3 misbehaves' });
    expect(first).toEqual({ modelName: 'm', alias: 'champion', fromVersion: 3, toVersion: 2, changed: true, action: 'rollback' });
    // a second rollback undoes the move before, instead of flipping back to v3
    const second = await rollback(db.db, { modelName: 'm', by: 'bob' });
    expect(second).toMatchObject({ fromVersion: 2, toVersion: 1, action: 'rollback' });
    expect(await champion('m')).toBe(1);
    const before = await snapshot();
    const e = await failure(rollback(db.db, { modelName: 'm', by: 'bob' }));
    expect(e).toEqual({
      type: 'NothingToRollBack',
      message: 'model "m" alias "champion" points at v1 and has no earlier approved version to roll back to (its history has no earlier version)',
    });
    expect(await snapshot()).toEqual(before);
    const history = (await showModel(db.db, { modelName: 'm', version: 1 })).aliasHistory.filter((h) => h.alias === 'champion');
    expect(history.map((h) => [h.fromVersion, h.toVersion, h.action, h.changedBy, h.reason])).toEqual([
      [2, 1, 'rollback', 'bob', 'rolled back from v2'],
      [3, 2, 'rollback', 'bob', 'v3 misbehaves'],
      [2, 3, 'move', 'alice', 'promoted by hand'],
      [1, 2, 'move', 'alice', 'better on last week'],
      [null, 1, 'move', 'pipeline:wf-m-1', 'blessed by run run-m-1'],
    ]);
  });

  it('skips versions that are no longer approved', async () => {
    await promote(db.db, { modelName: 'm', version: 2, alias: 'prod', by: 'a' });
    await promote(db.db, { modelName: 'm', version: 1, alias: 'prod', by: 'a' });
    await promote(db.db, { modelName: 'm', version: 3, alias: 'prod', by: 'a' });
    await db.db.updateTable('ml.model_versions').set({ status: 'rejected' }).where('model_name', '=', 'm').where('version', '=', 1).execute();
    try {
      const r = await rollback(db.db, { modelName: 'm', alias: 'prod', by: 'a' });
      expect(r).toMatchObject({ fromVersion: 3, toVersion: 2 });
      // the skipped v1 was rolled back past: v2 is now the earliest position
      expect(await failure(rollback(db.db, { modelName: 'm', alias: 'prod', by: 'a' }))).toMatchObject({ type: 'NothingToRollBack' });
      await promote(db.db, { modelName: 'm', version: 3, alias: 'prod', by: 'a' });
      await db.db.updateTable('ml.model_versions').set({ status: 'rejected' }).where('model_name', '=', 'm').where('version', '=', 2).execute();
      const e = await failure(rollback(db.db, { modelName: 'm', alias: 'prod', by: 'a' }));
      expect(e?.type).toBe('NothingToRollBack');
      expect(e?.message).toMatch(/alias "prod" points at v3 and has no earlier approved version to roll back to \(skipped: v2 rejected\)$/);
    } finally {
      await db.db.updateTable('ml.model_versions').set({ status: 'approved' }).where('model_name', '=', 'm').where('version', 'in', [1, 2]).execute();
    }
  });

  it('names an unknown model or alias and changes nothing', async () => {
    const before = await snapshot();
    expect(await failure(rollback(db.db, { modelName: 'nope', by: 'a' }))).toMatchObject({ type: 'UnknownModel' });
    expect(await failure(rollback(db.db, { modelName: 'other', by: 'a' }))).toEqual({
      type: 'UnknownAlias',
      message: 'model "other" has no alias "champion" (it has no aliases)',
    });
    expect(await failure(rollback(db.db, { modelName: 'm', alias: 'staging', by: 'a' }))).toMatchObject({
      type: 'UnknownAlias',
      message: expect.stringMatching(/^model "m" has no alias "staging" \(its aliases: challenger, champion, prod, race\)$/),
    });
    expect(await snapshot()).toEqual(before);
  });
});

describe('list and show', () => {
  it('lists every model with counts and aliases; shows a version with lineage, decision, aliases and card URIs', async () => {
    const list = await listModels(db.db);
    expect(list.map((m) => m.modelName)).toEqual(['m', 'other']);
    expect(list[0]).toMatchObject({ versions: 5, latestVersion: 5, pendingApproval: 1, rejected: 1, aliases: { champion: 1, challenger: 3 } });
    expect(list[1]).toMatchObject({ versions: 1, aliases: {} });

    const d = await showModel(db.db, { modelName: 'm', alias: 'challenger' });
    expect(d).toMatchObject({
      modelName: 'm',
      version: 3,
      resolvedVia: 'challenger',
      status: 'approved',
      lineage: { workflowId: 'wf-m-3', runId: 'run-m-3', configHash: 'h3', codeVersion: 'test', dataSha256: 'sha-3', seed: 1234, backend: 'wasm', params: { hiddenUnits: [8] } },
      metrics: { rocAuc: 0.73 },
      card: { html: 's3://bucket/models/m/v3/model-card.html', json: 's3://bucket/models/m/v3/model-card.json' },
    });
    const pointing = await db.db.selectFrom('ml.model_aliases').select('alias').where('model_name', '=', 'm').where('version', '=', 3).orderBy('alias').execute();
    expect(d.aliases).toEqual(pointing.map((a) => a.alias));
    expect(d.aliases).toContain('challenger');
    expect(d.versions.map((v) => `${v.version}:${v.status}`)).toEqual(['1:approved', '2:approved', '3:approved', '4:pending_approval', '5:rejected']);
    const ids = d.aliasHistory.map((h) => h.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a)); // newest first
    const rejected = await showModel(db.db, { modelName: 'm', version: 5 });
    expect(rejected.decision).toMatchObject({ by: 'carol', reason: 'leaks the label' });
  });
});

describe('approval activities', () => {
  it('record a decision once: an approval moves champion, a retried call changes nothing and answers the same', async () => {
    const acts = createApprovalActivities({ db, store, codeVersion: 'test' });
    const env = new MockActivityEnvironment();
    await addVersion('appr', 1);
    await addVersion('appr', 2, 'pending_approval');
    await db.db.insertInto('ml.model_aliases').values({ model_name: 'appr', alias: 'champion', version: 1, updated_by: 'x' }).execute();
    const mark = { runId: 'run-appr-2', workflowId: 'wf-appr-2', modelName: 'appr', version: 2, requestedAt: new Date().toISOString(), timeoutAt: new Date(Date.now() + 3600e3).toISOString() };
    await env.run(acts.markAwaitingApproval, mark);
    await env.run(acts.markAwaitingApproval, mark); // retried: still one approval row
    const run = await db.db.selectFrom('ml.pipeline_runs').select(['status', 'model_version']).where('run_id', '=', 'run-appr-2').executeTakeFirstOrThrow();
    expect(run).toEqual({ status: 'registered', model_version: null }); // a finished run is never put back to waiting
    const decision = { runId: 'run-appr-2', modelName: 'appr', version: 2, decision: 'approved' as const, by: 'dana', reason: 'looks good', decidedAt: new Date().toISOString() };
    const out = await env.run(acts.recordApprovalDecision, decision);
    expect(out).toEqual({ decision: 'approved', champion: { fromVersion: 1, toVersion: 2 } });
    const before = await snapshot();
    expect(await env.run(acts.recordApprovalDecision, decision)).toEqual(out);
    expect(await snapshot()).toEqual(before);
    const v = await db.db.selectFrom('ml.model_versions').selectAll().where('model_name', '=', 'appr').where('version', '=', 2).executeTakeFirstOrThrow();
    expect(v).toMatchObject({ status: 'approved', decided_by: 'dana', decision_reason: 'looks good' });
    const approval = await db.db.selectFrom('ml.approvals').selectAll().where('run_id', '=', 'run-appr-2').execute();
    expect(approval).toEqual([expect.objectContaining({ decision: 'approved', decided_by: 'dana', version: 2 })]);
    const moved = await db.db.selectFrom('ml.model_alias_history').selectAll().where('model_name', '=', 'appr').execute();
    expect(moved).toEqual([expect.objectContaining({ from_version: 1, to_version: 2, changed_by: 'dana', reason: 'approved run run-appr-2: looks good' })]);
  });
});

describe('champion-aware scores (ml.latest_scores)', () => {
  /** One succeeded scoring run of `version` that scored these users, as scoreUsers leaves it. */
  async function scored(version: number, runId: string, users: Record<string, number>, at: string) {
    await db.db
      .insertInto('ml.score_runs')
      .values({ score_run_id: runId, temporal_run_id: `t-${runId}`, model_name: 'sc', model_version: version, model_ref: `sc:${version}`, mode: 'events', status: 'succeeded', rows: Object.keys(users).length, finished_at: at })
      .execute();
    await db.db
      .insertInto('ml.scores')
      .values(Object.entries(users).map(([user_id, probability]) => ({ score_run_id: runId, user_id, model_name: 'sc', model_version: version, scored_at: at, probability })))
      .execute();
  }
  const served = async () =>
    (await db.db.selectFrom('ml.latest_scores').select(['user_id', 'model_version', 'probability']).where('model_name', '=', 'sc').orderBy('user_id').execute()).map(
      (r) => `${r.user_id}:v${r.model_version}:${r.probability}`,
    );

  it('serves the champion\'s scores: a challenger scored later in shadow never reaches the view, a rollback is followed', async () => {
    for (const v of [1, 2]) await addVersion('sc', v);
    await promote(db.db, { modelName: 'sc', version: 1, by: 'test' });
    await promote(db.db, { modelName: 'sc', version: 2, alias: 'challenger', by: 'test' });
    await scored(1, 'score-sc-v1', { u1: 0.1, u2: 0.2 }, '2026-11-20T00:00:00Z');
    // the challenger is scored afterwards (newer rows): the champion's scores must still be what is served
    await scored(2, 'score-sc-v2', { u1: 0.9, u2: 0.8, u3: 0.7 }, '2026-11-21T00:00:00Z');
    expect(await served()).toEqual(['u1:v1:0.1', 'u2:v1:0.2']);
    const byAlias = await db.db.selectFrom('ml.latest_scores_by_alias').select(['alias', 'user_id', 'model_version']).where('model_name', '=', 'sc').where('alias', '=', 'challenger').execute();
    expect(byAlias.map((r) => `${r.user_id}:v${r.model_version}`).sort()).toEqual(['u1:v2', 'u2:v2', 'u3:v2']);
    // promote the challenger to champion: the view follows at once; roll back: it follows back
    await promote(db.db, { modelName: 'sc', version: 2, by: 'test' });
    expect(await served()).toEqual(['u1:v2:0.9', 'u2:v2:0.8', 'u3:v2:0.7']);
    await rollback(db.db, { modelName: 'sc', by: 'test' });
    expect(await served()).toEqual(['u1:v1:0.1', 'u2:v1:0.2']);
  });
});
