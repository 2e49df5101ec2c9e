import { Context } from '@temporalio/activity';
import { sql } from 'kysely';
import { lockModel, moveAlias } from '../registry/registry.js';
import type { ActivityDeps } from './deps.js';

export interface MarkAwaitingApprovalInput {
  runId: string;
  workflowId: string;
  modelName: string;
  version: number;
  /** workflow time, so the row and the workflow's timer agree */
  requestedAt: string;
  timeoutAt: string;
}

export type ApprovalDecision = 'approved' | 'rejected' | 'timeout';

export interface RecordApprovalDecisionInput {
  runId: string;
  modelName: string;
  version: number;
  decision: ApprovalDecision;
  by: string;
  reason: string | null;
  decidedAt: string;
}
export interface RecordApprovalDecisionOutput {
  decision: ApprovalDecision;
  /** the champion move an approval made (null for a rejection, or when the version already was champion) */
  champion: { fromVersion: number | null; toVersion: number } | null;
}

function taskQueue(): string | null {
  try {
    return Context.current().info.taskQueue;
  } catch {
    return null;
  }
}

export function createApprovalActivities({ db }: ActivityDeps) {
  return {
    /** The run waits for a reviewer: its row says so, an ml.approvals row opens, and step 'approval' is running. */
    async markAwaitingApproval(input: MarkAwaitingApprovalInput): Promise<void> {
      await db.db.transaction().execute(async (trx) => {
        await trx
          .updateTable('ml.pipeline_runs')
          .set({ status: 'awaiting_approval', model_version: input.version })
          .where('run_id', '=', input.runId)
          .where('status', 'in', ['running', 'awaiting_approval'])
          .execute();
        await trx
          .insertInto('ml.approvals')
          .values({
            run_id: input.runId,
            workflow_id: input.workflowId,
            model_name: input.modelName,
            version: input.version,
            requested_at: input.requestedAt,
            timeout_at: input.timeoutAt,
          })
          .onConflict((oc) => oc.column('run_id').doNothing())
          .execute();
        await trx
          .insertInto('ml.run_steps')
          .values({
            run_id: input.runId,
            step: 'approval',
            trial_id: '',
            status: 'running',
            attempt: 1,
            worker: taskQueue(),
            started_at: input.requestedAt,
            detail: JSON.stringify({ modelName: input.modelName, version: input.version, timeoutAt: input.timeoutAt }),
          })
          // one row for the whole wait (it spans two activities), whatever attempt opened it
          .onConflict((oc) => oc.columns(['run_id', 'step', 'trial_id', 'rung', 'attempt']).doNothing())
          .execute();
      });
    },

    /**
     * Records a reviewer's decision (or the timeout) on a pending version, and on approval moves `champion` to it,
     * all in one transaction under the model's lock. A retry after a commit changes nothing and returns the same.
     */
    async recordApprovalDecision(input: RecordApprovalDecisionInput): Promise<RecordApprovalDecisionOutput> {
      return db.db.transaction().execute(async (trx) => {
        await lockModel(trx, input.modelName);
        const row = await trx
          .selectFrom('ml.model_versions')
          .select('status')
          .where('model_name', '=', input.modelName)
          .where('version', '=', input.version)
          .forUpdate()
          .executeTakeFirstOrThrow();
        const approved = input.decision === 'approved';
        if (row.status !== 'pending_approval') {
          // already recorded by an earlier attempt of this activity
          const move = approved
            ? await trx
                .selectFrom('ml.model_alias_history')
                .select(['from_version', 'to_version'])
                .where('model_name', '=', input.modelName)
                .where('alias', '=', 'champion')
                .where('to_version', '=', input.version)
                .orderBy('id', 'desc')
                .executeTakeFirst()
            : undefined;
          return { decision: input.decision, champion: move ? { fromVersion: move.from_version, toVersion: move.to_version } : null };
        }
        const reason = input.reason ?? (input.decision === 'timeout' ? 'no decision before the approval timeout' : null);
        await trx
          .updateTable('ml.model_versions')
          .set({ status: approved ? 'approved' : 'rejected', decided_by: input.by, decided_at: input.decidedAt, decision_reason: reason })
          .where('model_name', '=', input.modelName)
          .where('version', '=', input.version)
          .execute();
        await trx
          .updateTable('ml.approvals')
          .set({ decision: input.decision, decided_by: input.by, decided_at: input.decidedAt, reason })
          .where('run_id', '=', input.runId)
          .execute();
        await trx
          .updateTable('ml.run_steps')
          .set({
            status: 'succeeded',
            finished_at: sql`now()`,
            duration_ms: sql`(extract(epoch from now() - started_at) * 1000)::int`,
            detail: JSON.stringify({ version: input.version, decision: input.decision, by: input.by }),
          })
          .where('run_id', '=', input.runId)
          .where('step', '=', 'approval')
          .execute();
        if (!approved) return { decision: input.decision, champion: null };
        const move = await moveAlias(trx, {
          modelName: input.modelName,
          alias: 'champion',
          version: input.version,
          by: input.by,
          reason: `approved run ${input.runId}${reason ? `: ${reason}` : ''}`,
          action: 'move',
        });
        return { decision: input.decision, champion: move.changed ? { fromVersion: move.fromVersion, toVersion: move.toVersion } : null };
      });
    },
  };
}
