import { sql, type Insertable, type Kysely, type Transaction } from 'kysely';
import type { Database, ModelVersionStatus, ModelVersionsTable } from '../db/schema.js';
import { RegistryError, RegistryErrorType, resolveModelRef, type ModelRef } from './refs.js';
import { idProblem, invalidIdMessage } from '../pipeline/ids.js';

// Registry operations over Postgres (the truth; S3 holds the files). Pure DB functions: the CLI and the
// activities call the same code. Every alias move takes the model's advisory lock — the same one registerModel
// takes — and the alias row's lock, and writes its history row in the same transaction.

type Db = Kysely<Database>;
type Trx = Transaction<Database>;


export interface ModelSummary {
  modelName: string;
  versions: number;
  latestVersion: number;
  latestCreatedAt: string;
  pendingApproval: number;
  rejected: number;
  /** alias → version */
  aliases: Record<string, number>;
}

export interface AliasMove {
  id: number;
  alias: string;
  fromVersion: number | null;
  toVersion: number;
  changedAt: string;
  changedBy: string;
  reason: string | null;
  action: 'move' | 'rollback';
}

export interface ModelDetails {
  modelName: string;
  version: number;
  /** the alias the reference went through, null for an explicit version */
  resolvedVia: string | null;
  uri: string;
  status: ModelVersionStatus;
  decision: { by: string; at: string | null; reason: string | null } | null;
  createdAt: string;
  lineage: {
    workflowId: string;
    runId: string;
    configHash: string;
    codeVersion: string;
    dataSha256: string;
    params: unknown;
    seed: number;
    backend: string;
    trigger: string | null;
    cutoff: string | null;
    horizonDays: number | null;
  };
  metrics: Record<string, number>;
  evaluation: { blessed: boolean; reasons: string[]; reportUri: string } | null;
  approval: { requestedAt: string; timeoutAt: string; decision: string | null; decidedBy: string | null; decidedAt: string | null; reason: string | null } | null;
  /** aliases pointing at this version */
  aliases: string[];
  /** every alias of the model → version */
  modelAliases: Record<string, number>;
  versions: { version: number; status: ModelVersionStatus; createdAt: string }[];
  /** the model's alias moves, newest first */
  aliasHistory: AliasMove[];
  /** model card files written next to the model at registration (they may be absent for older versions) */
  card: { html: string; json: string };
}

export interface AliasMoveInput {
  modelName: string;
  alias?: string;
  /** who asks: a user name, `pipeline:<workflow id>`, … */
  by: string;
  reason?: string | null;
}
export interface PromoteInput extends AliasMoveInput {
  version: number;
}

export interface AliasMoveResult {
  modelName: string;
  alias: string;
  fromVersion: number | null;
  toVersion: number;
  /** false when the alias already pointed at the version: nothing was written */
  changed: boolean;
  action: 'move' | 'rollback';
}

const iso = (d: Date | string | null): string | null => (d === null ? null : new Date(d).toISOString());

/** Every registered model with its version counts and aliases, by name. */
export async function listModels(db: Db): Promise<ModelSummary[]> {
  const rows = await db
    .selectFrom('ml.model_versions')
    .select((eb) => [
      'model_name',
      eb.fn.countAll<string>().as('versions'),
      eb.fn.max('version').as('latest_version'),
      eb.fn.max('created_at').as('latest_created_at'),
      sql<string>`count(*) filter (where status = 'pending_approval')`.as('pending'),
      sql<string>`count(*) filter (where status = 'rejected')`.as('rejected'),
    ])
    .groupBy('model_name')
    .orderBy('model_name')
    .execute();
  const aliases = await db.selectFrom('ml.model_aliases').select(['model_name', 'alias', 'version']).orderBy('alias').execute();
  return rows.map((r) => ({
    modelName: r.model_name,
    versions: Number(r.versions),
    latestVersion: Number(r.latest_version),
    latestCreatedAt: iso(r.latest_created_at as Date)!,
    pendingApproval: Number(r.pending),
    rejected: Number(r.rejected),
    aliases: Object.fromEntries(aliases.filter((a) => a.model_name === r.model_name).map((a) => [a.alias, a.version])),
  }));
}

/** One version in full: lineage, metrics, decision, aliases, the model's alias history and its card URIs. */
export async function showModel(db: Db, ref: ModelRef): Promise<ModelDetails> {
  const resolved = await resolveModelRef(db, ref);
  const { modelName, version } = resolved;
  const v = await db
    .selectFrom('ml.model_versions')
    .selectAll()
    .where('model_name', '=', modelName)
    .where('version', '=', version)
    .executeTakeFirstOrThrow();
  const [run, evaluation, approval, aliases, versions, history] = await Promise.all([
    db.selectFrom('ml.pipeline_runs').select(['trigger', 'cutoff', 'horizon_days']).where('run_id', '=', v.run_id).executeTakeFirst(),
    db.selectFrom('ml.evaluations').select(['blessed', 'reasons', 'report_uri']).where('run_id', '=', v.run_id).executeTakeFirst(),
    db.selectFrom('ml.approvals').selectAll().where('model_name', '=', modelName).where('version', '=', version).executeTakeFirst(),
    db.selectFrom('ml.model_aliases').select(['alias', 'version']).where('model_name', '=', modelName).orderBy('alias').execute(),
    db.selectFrom('ml.model_versions').select(['version', 'status', 'created_at']).where('model_name', '=', modelName).orderBy('version').execute(),
    aliasHistory(db, modelName),
  ]);
  const cardUri = (file: string) => v.uri.replace(/[^/]+$/, file);
  return {
    modelName,
    version,
    resolvedVia: resolved.alias,
    uri: v.uri,
    status: v.status,
    decision: v.decided_by ? { by: v.decided_by, at: iso(v.decided_at), reason: v.decision_reason } : null,
    createdAt: iso(v.created_at)!,
    lineage: {
      workflowId: v.workflow_id,
      runId: v.run_id,
      configHash: v.config_hash,
      codeVersion: v.code_version,
      dataSha256: v.data_sha256,
      params: v.params,
      seed: Number(v.seed),
      backend: v.backend,
      trigger: run?.trigger ?? null,
      cutoff: iso(run?.cutoff ?? null),
      horizonDays: run?.horizon_days ?? null,
    },
    metrics: v.metrics,
    evaluation: evaluation ? { blessed: evaluation.blessed, reasons: evaluation.reasons, reportUri: evaluation.report_uri } : null,
    approval: approval
      ? {
          requestedAt: iso(approval.requested_at)!,
          timeoutAt: iso(approval.timeout_at)!,
          decision: approval.decision,
          decidedBy: approval.decided_by,
          decidedAt: iso(approval.decided_at),
          reason: approval.reason,
        }
      : null,
    aliases: aliases.filter((a) => a.version === version).map((a) => a.alias),
    modelAliases: Object.fromEntries(aliases.map((a) => [a.alias, a.version])),
    versions: versions.map((r) => ({ version: r.version, status: r.status, createdAt: iso(r.created_at)! })),
    aliasHistory: history,
    card: { html: cardUri('model-card.html'), json: cardUri('model-card.json') },
  };
}

/** A model's alias moves, newest first (optionally of one alias). */
export async function aliasHistory(db: Db, modelName: string, alias?: string): Promise<AliasMove[]> {
  let q = db.selectFrom('ml.model_alias_history').selectAll().where('model_name', '=', modelName);
  if (alias !== undefined) q = q.where('alias', '=', alias);
  const rows = await q.orderBy('id', 'desc').execute();
  return rows.map((h) => ({
    id: Number(h.id),
    alias: h.alias,
    fromVersion: h.from_version,
    toVersion: h.to_version,
    changedAt: iso(h.changed_at)!,
    changedBy: h.changed_by,
    reason: h.reason,
    action: h.action,
  }));
}

/** Points an alias (`champion`, `challenger`, any name) at an approved version; creates the alias if needed. */
export async function promote(db: Db, input: PromoteInput): Promise<AliasMoveResult> {
  const alias = checkAlias(input.alias ?? 'champion');
  const by = checkBy(input.by);
  return db.transaction().execute(async (trx) => {
    await lockModel(trx, input.modelName);
    await lockPromotable(trx, input.modelName, input.version);
    return moveAlias(trx, { modelName: input.modelName, alias, version: input.version, by, reason: input.reason ?? 'promoted by hand', action: 'move' });
  });
}

/**
 * Moves an alias back to the version it pointed at before its last move. Rollback moves undo the move they
 * roll back, so rolling back twice goes two steps back; versions no longer approved are skipped.
 */
export async function rollback(db: Db, input: AliasMoveInput): Promise<AliasMoveResult> {
  const alias = checkAlias(input.alias ?? 'champion');
  const by = checkBy(input.by);
  return db.transaction().execute(async (trx) => {
    await lockModel(trx, input.modelName);
    const current = await resolveModelRef(trx, { modelName: input.modelName, alias }); // UnknownModel / UnknownAlias
    await trx
      .selectFrom('ml.model_aliases')
      .select('version')
      .where('model_name', '=', input.modelName)
      .where('alias', '=', alias)
      .forUpdate()
      .execute();
    const moves = await trx
      .selectFrom('ml.model_alias_history')
      .select(['to_version', 'action'])
      .where('model_name', '=', input.modelName)
      .where('alias', '=', alias)
      .orderBy('id')
      .execute();
    const stack = positions(moves.map((m) => ({ toVersion: m.to_version, action: m.action })));
    if (stack.at(-1) !== current.version) stack.push(current.version); // the alias moved without a history row
    const statuses = new Map(
      (await trx.selectFrom('ml.model_versions').select(['version', 'status']).where('model_name', '=', input.modelName).execute()).map(
        (r) => [r.version, r.status],
      ),
    );
    const skipped: string[] = [];
    for (let i = stack.length - 2; i >= 0; i--) {
      const target = stack[i];
      if (target === current.version) continue;
      const status = statuses.get(target);
      if (status !== 'approved') {
        skipped.push(`v${target} ${status ?? 'deleted'}`);
        continue;
      }
      return moveAlias(trx, {
        modelName: input.modelName,
        alias,
        version: target,
        by,
        reason: input.reason ?? `rolled back from v${current.version}`,
        action: 'rollback',
      });
    }
    throw new RegistryError(
      RegistryErrorType.NothingToRollBack,
      `model "${input.modelName}" alias "${alias}" points at v${current.version} and has no earlier approved version to roll back to` +
        (skipped.length ? ` (skipped: ${skipped.join(', ')})` : ' (its history has no earlier version)'),
    );
  });
}

/**
 * The alias's positions over time, oldest first, with rolled-back moves removed: a rollback to X pops every
 * position above the last X.
 */
export function positions(moves: { toVersion: number; action: 'move' | 'rollback' }[]): number[] {
  const stack: number[] = [];
  for (const m of moves) {
    if (m.action === 'rollback') {
      const i = stack.lastIndexOf(m.toVersion);
      if (i >= 0) {
        stack.length = i + 1;
        continue;
      }
    }
    if (stack.at(-1) !== m.toVersion) stack.push(m.toVersion);
  }
  return stack;
}

/** Serializes registry writes per model (registerModel takes the same lock). */
export async function lockModel(trx: Trx, modelName: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext(${'model:' + modelName}))`.execute(trx);
}

/**
 * Locks a version row and checks it may hold an alias: UnknownModel / UnknownVersion when it does not exist,
 * VersionNotPromotable when it is pending approval or rejected.
 */
export async function lockPromotable(trx: Trx, modelName: string, version: number): Promise<void> {
  await resolveModelRef(trx, { modelName, version });
  const row = await trx
    .selectFrom('ml.model_versions')
    .select(['status', 'decided_by', 'decided_at', 'decision_reason'])
    .where('model_name', '=', modelName)
    .where('version', '=', version)
    .forUpdate()
    .executeTakeFirstOrThrow();
  if (row.status === 'approved') return;
  const detail =
    row.status === 'pending_approval'
      ? 'it is pending approval: approve its run first (`propensity approve <run>`)'
      : `it was rejected${row.decided_by ? ` by ${row.decided_by}` : ''}${row.decided_at ? ` at ${iso(row.decided_at)}` : ''}` +
        `${row.decision_reason ? ` (${row.decision_reason})` : ''}`;
  throw new RegistryError(RegistryErrorType.VersionNotPromotable, `model "${modelName}" v${version} cannot be promoted: ${detail}`);
}

/**
 * Moves (or creates) an alias inside a transaction that holds the model's lock and has checked the version;
 * writes one history row per real move.
 */
export async function moveAlias(
  trx: Trx,
  m: { modelName: string; alias: string; version: number; by: string; reason: string | null; action: 'move' | 'rollback' },
): Promise<AliasMoveResult> {
  const current = await trx
    .selectFrom('ml.model_aliases')
    .select('version')
    .where('model_name', '=', m.modelName)
    .where('alias', '=', m.alias)
    .forUpdate()
    .executeTakeFirst();
  const result = { modelName: m.modelName, alias: m.alias, fromVersion: current?.version ?? null, toVersion: m.version, action: m.action };
  if (current?.version === m.version) return { ...result, changed: false };
  await trx
    .insertInto('ml.model_aliases')
    .values({ model_name: m.modelName, alias: m.alias, version: m.version, updated_by: m.by })
    .onConflict((oc) => oc.columns(['model_name', 'alias']).doUpdateSet({ version: m.version, updated_by: m.by, updated_at: sql`now()` }))
    .execute();
  await trx
    .insertInto('ml.model_alias_history')
    .values({
      model_name: m.modelName,
      alias: m.alias,
      from_version: current?.version ?? null,
      to_version: m.version,
      changed_by: m.by,
      reason: m.reason,
      action: m.action,
    })
    .execute();
  return { ...result, changed: true };
}

/** The one alias pattern (pipeline/ids.ts), reported as a registry error. */
function checkAlias(alias: string): string {
  const problem = idProblem('alias', alias);
  if (problem) throw new RegistryError(RegistryErrorType.InvalidModelRef, invalidIdMessage('alias', alias, problem));
  return alias;
}

function checkBy(by: string): string {
  const trimmed = by.trim();
  if (!trimmed) throw new RegistryError(RegistryErrorType.InvalidModelRef, 'who makes the change (--by) must not be empty');
  return trimmed;
}

export interface RegisterVersionInput {
  modelName: string;
  runId: string;
  /** who registers (recorded in the alias history), e.g. pipeline:<workflow id> */
  by: string;
  reason: string;
  /** register as pending_approval and leave champion where it is */
  approvalRequired: boolean;
  /** publishes the version's files under its number (server-side copies) and returns the model's URI */
  publish: (version: number) => Promise<string>;
  /** the ml.model_versions row, given the number and URI */
  row: (version: number, uri: string) => Insertable<ModelVersionsTable>;
}

/**
 * The one way a version enters the registry — the same lock, numbering and alias move as promote, rollback and
 * approval use: under the model's lock, idempotent per run (a second call returns the version the first created),
 * the next number from Postgres, the files published, the row, and — unless approval is required — champion moved
 * with a history row.
 */
export async function registerVersion(db: Kysely<Database>, input: RegisterVersionInput): Promise<{ version: number; uri: string; created: boolean }> {
  return db.transaction().execute(async (trx) => {
    await lockModel(trx, input.modelName);
    const existing = await trx
      .selectFrom('ml.model_versions')
      .select(['version', 'uri'])
      .where('model_name', '=', input.modelName)
      .where('run_id', '=', input.runId)
      .executeTakeFirst();
    if (existing) return { version: existing.version, uri: existing.uri, created: false };
    const { next } = await trx
      .selectFrom('ml.model_versions')
      .select(sql<number>`coalesce(max(version), 0) + 1`.as('next'))
      .where('model_name', '=', input.modelName)
      .executeTakeFirstOrThrow();
    const version = Number(next);
    const uri = await input.publish(version);
    await trx.insertInto('ml.model_versions').values(input.row(version, uri)).execute();
    if (!input.approvalRequired) {
      await moveAlias(trx, { modelName: input.modelName, alias: 'champion', version, by: input.by, reason: input.reason, action: 'move' });
    }
    return { version, uri, created: true };
  });
}
