import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import type { Command } from 'commander';
import {
  AUDITED_WORKFLOW_TYPES,
  AuditError,
  AuditErrorType,
  type AuditErrorTypeName,
  exportHistory,
  fetchServerHistory,
  historyFilePath,
  listHistoriesSince,
  parseSince,
  readHistoryFile,
  replayHistories,
  type ReplayItem,
  type ReplayOutcome,
  serializeHistoryFile,
} from '../../audit/history.js';
import { loadEnv, resolveConnections } from '../../infra/index.js';
import { codeVersion, connectTemporal, WORKFLOWS_PATH } from '../../workers/deps.js';
import { idProblem, invalidIdMessage } from '../../pipeline/ids.js';
import { CliError, ExitCode, idParser, output, withTemporal } from '../common.js';

const AUDIT_EXIT: Record<AuditErrorTypeName, number> = {
  NotAHistory: ExitCode.usage,
  MissingWorkflowId: ExitCode.usage,
  InvalidDate: ExitCode.usage,
  NoHistories: ExitCode.usage,
  UnknownWorkflow: ExitCode.notFound,
  FileNotFound: ExitCode.notFound,
};

/** AuditErrors become one-line CLI errors with their exit code; anything else passes through. */
async function audited<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AuditError) throw new CliError(err.message, AUDIT_EXIT[err.type], err.type);
    throw err;
  }
}

/** `history export` and `replay`: workflow histories for auditors, replayed against the current workflow code. */
export function registerAuditCommands(program: Command): void {
  program
    .command('history')
    .description('workflow histories: export them for auditors and for replay tests')
    .command('export')
    .description('write a workflow run\'s history (JSON, with its workflow id and the current code version) to S3 at histories/<workflowId>/<runId>.json and to a file')
    .argument('<workflowId>', 'the workflow id (e.g. train-propensity-2026-11-23-093000, or <id>/search for its search)', idParser('workflowId'))
    .option('--run-id <runId>', 'a specific run (default: the latest run of the id)', idParser('runId'))
    .option('--out <file>', 'the file to write (default: ./histories/<workflowId with / as _>-<runId>.json)')
    .option('--json', 'print the result as one JSON line')
    .action((workflowId: string, o: { runId?: string; out?: string; json?: boolean }) =>
      audited(() =>
        withTemporal(async (s, client) => {
          const r = await exportHistory(client, s.store, { workflowId, runId: o.runId, codeVersion: s.codeVersion });
          // --out is the user's own choice; the default name is built from the ids and must stay under ./histories
          const file = o.out ? path.resolve(o.out) : historyFilePath(workflowId, r.file.runId);
          mkdirSync(path.dirname(file), { recursive: true });
          writeFileSync(file, serializeHistoryFile(r.file));
          const { workflowType, runId, codeVersion: version } = r.file;
          output(o.json, { workflowId, runId, workflowType, codeVersion: version, events: r.events, status: r.status, uri: r.uri, file }, () => [
            `exported ${workflowType} ${workflowId} (run ${runId}, ${r.events} events${r.status === 'RUNNING' ? ', still running: a partial history' : ''}, code ${version})`,
            `  ${r.uri}`,
            `  ${file}`,
          ]);
        }),
      ),
    );

  program
    .command('replay')
    .description(
      'replay workflow histories against the current workflow code (workflows/) and report, per history, PASS or FAIL with the determinism error; ' +
        'exit 0 when all pass, 1 when any fails, 2 for a file that is not a history, 4 for an unknown workflow id or file',
    )
    .argument('[targets...]', 'workflow ids on the server, history .json files (wrapper or bare `temporal workflow show --output json`), or directories of them')
    .option('--all-since <date>', `also every ${AUDITED_WORKFLOW_TYPES.join(', ')} run started since the date (YYYY-MM-DD or ISO timestamp)`)
    .option('--workflow-id <id>', 'the workflow id of a bare history file (wrapper files carry their own)', idParser('workflowId'))
    .option('--json', 'print the results as one JSON line')
    .action((targets: string[], o: { allSince?: string; workflowId?: string; json?: boolean }) =>
      audited(async () => {
        if (targets.length === 0 && !o.allSince) {
          throw new AuditError(AuditErrorType.NoHistories, 'nothing to replay: name workflow ids, history files or directories, or pass --all-since <date>');
        }
        const since = o.allSince ? parseSince(o.allSince) : undefined;
        // Only targets that are not files need the Temporal server, so replaying committed files needs no services.
        let client: Client | undefined;
        const temporal = async () => (client ??= await connectTemporal(resolveConnections(loadEnv())));
        try {
          // Resolve every target before replaying anything, so bad input fails alone and fast.
          const items: ReplayItem[] = [];
          for (const target of targets) {
            if (existsSync(target) && statSync(target).isDirectory()) {
              const files = readdirSync(target).filter((f) => f.endsWith('.json')).sort();
              if (files.length === 0) throw new AuditError(AuditErrorType.NoHistories, `directory ${target} holds no .json history files`);
              for (const f of files) items.push(await readHistoryFile(path.join(target, f), { workflowId: o.workflowId }));
            } else if (existsSync(target) || target.endsWith('.json')) {
              items.push(await readHistoryFile(target, { workflowId: o.workflowId }));
            } else {
              // not a file: a workflow id, checked before it reaches the server
              const problem = idProblem('workflowId', target);
              if (problem !== null) {
                throw new CliError(`${invalidIdMessage('workflowId', target, problem)}; nor is it a history file or directory`, ExitCode.usage, 'InvalidId');
              }
              items.push(await fetchServerHistory(await temporal(), { workflowId: target }));
            }
          }
          if (since) items.push(...(await listHistoriesSince(await temporal(), since)));
          await client?.connection.close();
          client = undefined;

          // The worker's and core's logs repeat each failure at length (each result line carries it): keep them quiet.
          Runtime.install({ logger: new DefaultLogger('ERROR', () => {}), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
          const results = await replayHistories(items, { workflowsPath: WORKFLOWS_PATH });
          const failed = results.filter((r) => !r.ok).length;
          output(o.json, { passed: results.length - failed, failed, codeVersion: codeVersion(), results }, () =>
            results.length === 0
              ? [`no histories${since ? ` of ${AUDITED_WORKFLOW_TYPES.join(', ')} started since ${since.toISOString()}` : ''} to replay`]
              : [...results.map(line), `${results.length - failed} passed, ${failed} failed (workflow code ${codeVersion()})`],
          );
          process.exitCode = failed > 0 ? ExitCode.error : ExitCode.ok;
        } finally {
          await client?.connection.close();
        }
      }),
    );
}

function line(r: ReplayOutcome): string {
  const where = r.source === 'file' ? r.file : 'server';
  const head = `${r.workflowType} ${r.workflowId} (run ${r.runId}, ${where})`;
  return r.ok ? `PASS ${head}` : `FAIL ${head}: ${r.error!.type}: ${r.error!.message.replace(/\s+/g, ' ').trim()}`;
}
