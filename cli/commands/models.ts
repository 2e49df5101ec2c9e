import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { Services } from '../../workers/deps.js';
import type { Command } from 'commander';
import type { Db } from '../../db/client.js';
import { listModels, promote, rollback, showModel, type AliasMove, type AliasMoveResult, type ModelDetails } from '../../registry/registry.js';
import { parseModelRef, RegistryError, RegistryErrorType } from '../../registry/refs.js';
import type { ApprovalState } from '../../workflows/pipeline.js';
import { CliError, ExitCode, idParser, output, withDb, withServices, withTemporal } from '../common.js';
import { table } from '../table.js';

// The Temporal SDK, the workflow definitions, S3 and the scoring command load only in the commands that use them,
// so `models list` and `models show` start fast (README, "A fast CLI").
const startScoring: typeof import('./score.js').startScoring = async (...args) => (await import('./score.js')).startScoring(...args);

/** The OS user, for --by. */
function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? process.env.USERNAME ?? 'unknown';
  }
}

/** `3` or `v3`. */
function parseVersion(text: string): number {
  const m = /^v?(\d+)$/.exec(text.trim());
  const version = m ? Number(m[1]) : NaN;
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new RegistryError(RegistryErrorType.InvalidModelRef, `"${text}" is not a version: use a positive integer such as 3 (or v3)`);
  }
  return version;
}

/** The alias history, newest first, one move a row. */
const movesTable = (moves: AliasMove[]) =>
  table(
    ['changed at', 'alias', 'move', 'by', { header: 'reason', maxWidth: 60 }],
    moves.map((h) => [
      h.changedAt,
      h.alias,
      `${h.fromVersion === null ? '(new)' : `v${h.fromVersion}`} → v${h.toVersion}${h.action === 'rollback' ? ' (rollback)' : ''}`,
      h.changedBy,
      h.reason ?? '',
    ]),
    { indent: '    ' },
  );

const fmtResult = (r: AliasMoveResult) =>
  r.changed
    ? `${r.modelName}@${r.alias}: ${r.fromVersion === null ? '(new alias)' : `v${r.fromVersion}`} → v${r.toVersion}${r.action === 'rollback' ? ' (rollback)' : ''}`
    : `${r.modelName}@${r.alias} already points at v${r.toVersion}: nothing changed`;

function showLines(d: ModelDetails): string[] {
  const metrics = Object.entries(d.metrics)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => `${k} ${Number(v).toFixed(4)}`)
    .join(', ');
  const l = d.lineage;
  const lines = [
    `${d.modelName} v${d.version}${d.aliases.length ? ` (${d.aliases.join(', ')})` : ''} — ${d.status}`,
    `  uri          ${d.uri}`,
    `  created      ${d.createdAt}`,
  ];
  if (d.decision) lines.push(`  decision     ${d.status} by ${d.decision.by} at ${d.decision.at ?? '-'}${d.decision.reason ? `: ${d.decision.reason}` : ''}`);
  if (d.approval && !d.approval.decision) lines.push(`  approval     requested ${d.approval.requestedAt}, times out ${d.approval.timeoutAt}`);
  lines.push(
    `  workflow     ${l.workflowId} (run ${l.runId}, trigger ${l.trigger ?? '-'})`,
    `  config hash  ${l.configHash}`,
    `  code         ${l.codeVersion}`,
    `  data sha256  ${l.dataSha256}`,
    `  data         ${l.cutoff ? `cutoff ${l.cutoff}, horizon ${l.horizonDays} days` : 'table source'}`,
    `  seed         ${l.seed}`,
    `  backend      ${l.backend}`,
    `  params       ${JSON.stringify(l.params)}`,
    `  metrics      ${metrics || '-'}`,
  );
  if (d.evaluation) {
    lines.push(`  evaluation   ${d.evaluation.blessed ? 'blessed' : `not blessed: ${d.evaluation.reasons.join('; ')}`}; report ${d.evaluation.reportUri}`);
  }
  lines.push(
    `  model card   ${d.card.html}`,
    `  versions     ${d.versions.map((v) => `v${v.version} ${v.status}`).join(', ')}`,
    `  aliases      ${Object.entries(d.modelAliases).map(([a, v]) => `${a} → v${v}`).join(', ') || '-'}`,
    `  alias history (newest first):`,
    ...(d.aliasHistory.length ? movesTable(d.aliasHistory) : ['    -']),
  );
  return lines;
}

/** A run by its Temporal run id or workflow id (the latest run of that workflow). */
async function findRun(db: Db, id: string) {
  const row = await db.db
    .selectFrom('ml.pipeline_runs')
    .select(['run_id', 'workflow_id', 'model_name', 'status', 'model_version'])
    .where((eb) => eb.or([eb('run_id', '=', id), eb('workflow_id', '=', id)]))
    .orderBy('started_at', 'desc')
    .executeTakeFirst();
  if (!row) throw new CliError(`no pipeline run has run id or workflow id "${id}"`, ExitCode.notFound, 'UnknownRun');
  return row;
}

/** Sends approve or reject to a run that waits for it; anything else is a conflict that changes nothing. */
async function decide(kind: 'approve' | 'reject', id: string, o: { by?: string; reason?: string; json?: boolean }) {
  await withTemporal(async (s, client) => {
    const run = await findRun(s.db, id);
    const notWaiting = (why: string) =>
      new CliError(`run ${run.run_id} (workflow ${run.workflow_id}) is not awaiting approval: ${why}`, ExitCode.conflict, RegistryErrorType.NotAwaitingApproval);
    if (run.status !== 'awaiting_approval') throw notWaiting(`its status is ${run.status}`);
    const by = (o.by ?? osUser()).trim();
    if (!by) throw new CliError('--by must not be empty', ExitCode.usage, 'InvalidArgument');
    const handle = client.workflow.getHandle(run.workflow_id, run.run_id);
    const [{ approveUpdate, rejectUpdate }, { WorkflowNotFoundError, WorkflowUpdateFailedError }] = await Promise.all([
      import('../../workflows/pipeline.js'),
      import('@temporalio/client'),
    ]);
    let state: ApprovalState;
    try {
      state = await handle.executeUpdate(kind === 'approve' ? approveUpdate : rejectUpdate, { args: [{ by, reason: o.reason ?? null }] });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) {
        const cause = (err.cause as Error | undefined)?.message ?? err.message;
        throw notWaiting(cause.replace(/^run \S+ is not awaiting approval: /, ''));
      }
      if (err instanceof WorkflowNotFoundError) throw notWaiting('its workflow is no longer running');
      throw err;
    }
    output(o.json, { runId: run.run_id, workflowId: run.workflow_id, ...state }, () =>
      state.status === 'approved'
        ? `approved ${state.modelName} v${state.version} (run ${run.run_id}) by ${state.by}` +
          (state.champion ? `: champion ${state.champion.fromVersion === null ? '(new)' : `v${state.champion.fromVersion}`} → v${state.champion.toVersion}` : '')
        : `rejected ${state.modelName} v${state.version} (run ${run.run_id}) by ${state.by}${state.reason ? `: ${state.reason}` : ''}`,
    );
  });
}

export function registerModelsCommands(program: Command): void {
  const models = program.command('models').description('the model registry: versions, lineage, aliases and their history');

  models
    .command('list')
    .description('every registered model: version counts and aliases')
    .option('--json', 'print as one JSON line')
    .action((o) =>
      withDb(async (db) => {
        const list = await listModels(db.db);
        output(o.json, list, () =>
          list.length
            ? table(
                ['model', { header: 'versions', align: 'right' }, 'latest', 'latest created', { header: 'pending approval', align: 'right' }, { header: 'rejected', align: 'right' }, 'aliases'],
                list.map((m) => [
                  m.modelName,
                  m.versions,
                  `v${m.latestVersion}`,
                  m.latestCreatedAt,
                  m.pendingApproval,
                  m.rejected,
                  Object.entries(m.aliases).map(([a, v]) => `${a} → v${v}`).join(', ') || 'no aliases',
                ]),
              )
            : 'no model is registered yet',
        );
      }),
    );

  models
    .command('show')
    .description('one version: lineage (workflow, run, config hash, code, data sha256, params, seed, backend), metrics, decision, aliases and their history')
    .argument('<ref>', 'name (its champion), name@alias, or name:version', (v: string) => (parseModelRef(v), v))
    .option('--json', 'print as one JSON line')
    .option('--card <file>', 'download the HTML model card to this file')
    .action((ref: string, o) =>
      withServices(async (s) => {
        const d = await showModel(s.db.db, parseModelRef(ref));
        let cardFile: string | null = null;
        if (o.card) {
          const { keys } = await import('../../store/artifacts.js');
          const key = keys.modelFile(d.modelName, d.version, 'model-card.html');
          if (await s.store.exists(key)) {
            cardFile = path.resolve(o.card);
            writeFileSync(cardFile, await s.store.getKey(key));
          }
        }
        output(o.json, o.card ? { ...d, cardFile } : d, () => [
          ...showLines(d),
          ...(o.card ? [cardFile ? `model card written to ${cardFile}` : `no model card exists for ${d.modelName} v${d.version} (${d.card.html})`] : []),
        ]);
        if (o.card && !cardFile) process.exitCode = ExitCode.notFound;
      }),
    );

  program
    .command('promote')
    .description('point an alias (default champion) at an approved version; the move is recorded in ml.model_alias_history')
    .argument('<model>', 'model name', idParser('modelName'))
    .argument('<version>', 'version number (3 or v3)')
    .option('--alias <alias>', 'the alias to move or create', idParser('alias'), 'champion')
    .option('--reason <text>', 'why (kept in the alias history)')
    .option('--by <name>', 'who (default: the OS user)')
    .option('--score', 'score every active user with the version first (scoreUsers), and move the alias only when that succeeded')
    .option('--json', 'print the move as one JSON line')
    .action((model: string, version: string, o) =>
      withScoring(o.score, async (s, client) => {
        const v = parseVersion(version);
        // score first: a version that cannot score today's users (its features are gone) fails before the alias moves
        const scored = o.score ? await startScoring(s, client!, { model: `${model}:${v}`, json: o.json }) : null;
        const r = await promote(s.db.db, { modelName: model, version: v, alias: o.alias, by: o.by ?? osUser(), reason: o.reason });
        const scores = await scoresOf(s.db.db, model, r.toVersion);
        output(o.json, { ...r, scores, scoring: scored && { scoreRunId: scored.scoreRunId, rows: scored.rows } }, () => [fmtResult(r), fmtScores(model, o.alias, r.toVersion, scores)]);
      }),
    );

  program
    .command('rollback')
    .description('move an alias (default champion) back to the version it pointed at before its last move, skipping versions no longer approved')
    .argument('<model>', 'model name', idParser('modelName'))
    .option('--alias <alias>', 'the alias to roll back', idParser('alias'), 'champion')
    .option('--reason <text>', 'why (kept in the alias history)')
    .option('--by <name>', 'who (default: the OS user)')
    .option('--score', 'after the move, score every active user with the version the alias now points to (when it has no scores)')
    .option('--json', 'print the move as one JSON line')
    .action((model: string, o) =>
      withScoring(o.score, async (s, client) => {
        const r = await rollback(s.db.db, { modelName: model, alias: o.alias, by: o.by ?? osUser(), reason: o.reason });
        let scores = await scoresOf(s.db.db, model, r.toVersion);
        const scored = o.score && !scores ? await startScoring(s, client!, { model: `${model}:${r.toVersion}`, json: o.json }) : null;
        if (scored) scores = await scoresOf(s.db.db, model, r.toVersion);
        output(o.json, { ...r, scores, scoring: scored && { scoreRunId: scored.scoreRunId, rows: scored.rows } }, () => [fmtResult(r), fmtScores(model, o.alias, r.toVersion, scores)]);
      }),
    );

  for (const kind of ['approve', 'reject'] as const) {
    program
      .command(kind)
      .description(
        kind === 'approve'
          ? 'approve the model of a run awaiting approval: it becomes champion; the decision and who made it are recorded'
          : 'reject the model of a run awaiting approval: its version is marked rejected and can never be promoted',
      )
      .argument('<run>', 'run id or workflow id', idParser('runRef'))
      .option('--by <name>', 'who decides (default: the OS user)')
      .option('--reason <text>', 'why (recorded with the decision)')
      .option('--json', 'print the decision as one JSON line')
      .action((id: string, o) => decide(kind, id, o));
  }
}

interface VersionScores {
  scoreRunId: string;
  rows: number;
  asOf: string | null;
  finishedAt: string | null;
}

/** The latest succeeded scoring run of a version (what ml.latest_scores serves once an alias points at it), or null. */
async function scoresOf(db: Db['db'], model: string, version: number): Promise<VersionScores | null> {
  const r = await db
    .selectFrom('ml.score_runs')
    .select(['score_run_id', 'rows', 'as_of', 'finished_at'])
    .where('model_name', '=', model)
    .where('model_version', '=', version)
    .where('status', '=', 'succeeded')
    .orderBy('finished_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  return r
    ? { scoreRunId: r.score_run_id, rows: Number(r.rows ?? 0), asOf: r.as_of ? new Date(r.as_of).toISOString() : null, finishedAt: r.finished_at ? new Date(r.finished_at).toISOString() : null }
    : null;
}

function fmtScores(model: string, alias: string, version: number, s: VersionScores | null): string {
  const view = alias === 'champion' ? 'ml.latest_scores' : `ml.latest_scores_by_alias (alias '${alias}')`;
  return s
    ? `${view} now serves v${version}'s scores: ${s.rows} users from score run ${s.scoreRunId}${s.asOf ? ` as of ${s.asOf}` : ''}`
    : `v${version} has no scores yet, so ${view} is empty for ${model}: run \`propensity score --model ${model}@${alias}\` (or pass --score)`;
}

/** Services, plus a Temporal client only when the command will score (promote and rollback work without Temporal). */
const withScoring = <T>(score: boolean | undefined, fn: (s: Services, client: Client | null) => Promise<T>): Promise<T> =>
  score ? withTemporal(fn) : withServices((s) => fn(s, null));
