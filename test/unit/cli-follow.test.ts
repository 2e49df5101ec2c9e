import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure, RetryState, TerminatedFailure, defaultPayloadConverter } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { CliError, ExitCode } from '../../cli/common.js';
import { finalFromHeartbeats, finalLine, followPipeline, isConnectionError } from '../../cli/follow.js';
import type { PipelineProgress } from '../../workflows/pipeline.js';

// The follower against a fake handle: what `propensity run` and `run watch` print when the connection to Temporal
// drops, when the run does not exist, and while the final training runs. No services.

/** What the client reports once its own gRPC retries are spent and the server is still down. */
const unavailable = () =>
  Object.assign(new Error('Failed to describe workflow'), {
    name: 'ServiceError',
    cause: Object.assign(new Error('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:7233. Resolution note: '), { code: 14 }),
  });

const RESULT = { status: 'registered', modelName: 'm', modelVersion: 1 };
const client = { connection: { options: { address: '127.0.0.1:7233' } }, workflow: { getHandle: () => ({ query: async () => null }) } } as unknown as Client;
const noWait = async () => {};

type Step = () => unknown;
/** A handle whose describe() answers from `steps` in turn (a function that throws is a failed call), then the last one forever. */
function fakeHandle(steps: Step[], progress: () => PipelineProgress, result: () => Promise<unknown> = async () => RESULT) {
  let i = 0;
  const calls = { describe: 0, result: 0 };
  const handle = {
    workflowId: 'train-m-1',
    async describe() {
      calls.describe++;
      return steps[Math.min(i++, steps.length - 1)]();
    },
    async query() {
      return progress();
    },
    async result() {
      calls.result++;
      return result();
    },
  } as unknown as WorkflowHandle;
  return { handle, calls };
}

const desc = (status: string, pendingActivities: unknown[] = []) => () => ({ status: { name: status }, raw: { pendingActivities } });
const done: PipelineProgress = {
  stage: 'done',
  completed: [
    { stage: 'ingest', detail: '100 rows' },
    { stage: 'clean', detail: '98 rows' },
  ],
  searchWorkflowId: null,
};

describe('followPipeline', () => {
  it('says once that the connection to Temporal was lost, retries, says when it is back, and follows to the result', async () => {
    const lines: string[] = [];
    const { handle, calls } = fakeHandle(
      [() => { throw unavailable(); }, () => { throw unavailable(); }, () => { throw unavailable(); }, desc('RUNNING'), desc('COMPLETED')],
      () => done,
    );
    const out = await followPipeline(client, handle, (l) => lines.push(l), { sleep: noWait });
    expect(out).toEqual(RESULT);
    expect(calls.describe).toBe(5);
    const lost = lines.filter((l) => l.startsWith('lost the connection'));
    expect(lost).toEqual([
      'lost the connection to Temporal at 127.0.0.1:7233: 14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:7233; ' +
        'retrying (Ctrl-C stops following, not the run)',
    ]);
    expect(lines.filter((l) => l.startsWith('reconnected to Temporal at 127.0.0.1:7233'))).toHaveLength(1);
    // the stages come after the reconnection, each once
    expect(lines.findIndex((l) => l.includes('✓ ingest'))).toBeGreaterThan(lines.findIndex((l) => l.startsWith('reconnected')));
    expect(lines.filter((l) => l.includes('✓ '))).toHaveLength(2);
  });

  it('retries the result too when the connection drops as the run ends', async () => {
    const lines: string[] = [];
    let n = 0;
    const { handle, calls } = fakeHandle([desc('COMPLETED')], () => done, async () => {
      if (n++ < 2) throw unavailable();
      return RESULT;
    });
    expect(await followPipeline(client, handle, (l) => lines.push(l), { sleep: noWait })).toEqual(RESULT);
    expect(calls.result).toBe(3);
    expect(lines.filter((l) => l.startsWith('lost the connection'))).toHaveLength(1);
    expect(lines.at(-1)).toMatch(/^reconnected to Temporal/);
  });

  it('ends with a not-found error (exit code 4) for a workflow Temporal does not know, without retrying', async () => {
    const missing = Object.assign(new Error('workflow not found for ID: train-m-1'), { name: 'WorkflowNotFoundError' });
    const { handle, calls } = fakeHandle([() => { throw missing; }], () => done);
    const err = await followPipeline(client, handle, () => {}, { sleep: noWait }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect(err).toMatchObject({ exitCode: ExitCode.notFound, type: 'UnknownRun' });
    expect((err as Error).message).toMatch(/^workflow train-m-1 was not found on Temporal/);
    expect(calls.describe).toBe(1);
  });

  it('fails at once with any other error, without calling it a lost connection', async () => {
    const lines: string[] = [];
    const denied = Object.assign(new Error('7 PERMISSION_DENIED: not allowed'), { code: 7 });
    const { handle } = fakeHandle([() => { throw denied; }], () => done);
    await expect(followPipeline(client, handle, (l) => lines.push(l), { sleep: noWait })).rejects.toBe(denied);
    expect(lines).toEqual([]);
  });

  it('ends a run someone cancelled or terminated with where it stopped and the resume command, not the client\'s error', async () => {
    const searching: PipelineProgress = { stage: 'search', completed: done.completed, searchWorkflowId: null };
    const failedWith = (cause: Error) => async () => { throw new WorkflowFailedError('Workflow execution cancelled', cause, RetryState.NON_RETRYABLE_FAILURE); };
    for (const [cause, type, how] of [[new CancelledFailure('cancelled'), 'Cancelled', 'cancelled'], [new TerminatedFailure('by cli'), 'Terminated', 'terminated']] as const) {
      const { handle } = fakeHandle([desc('RUNNING'), desc(type === 'Cancelled' ? 'CANCELED' : 'TERMINATED')], () => searching, failedWith(cause));
      const err = await followPipeline(client, handle, () => {}, { sleep: noWait }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CliError);
      expect(err).toMatchObject({ type, exitCode: ExitCode.error });
      expect((err as Error).message).toBe(
        `run train-m-1 was ${how} during its search step; \`propensity run resume train-m-1\` starts its next run, which reuses the steps and search trials it completed`,
      );
    }
    // a run that failed keeps its own error, whose typed cause the CLI prints
    const failure = new WorkflowFailedError('Workflow execution failed', ApplicationFailure.nonRetryable('no rows', 'EmptyInput'), RetryState.NON_RETRYABLE_FAILURE);
    const { handle } = fakeHandle([desc('FAILED')], () => searching, async () => { throw failure; });
    await expect(followPipeline(client, handle, () => {}, { sleep: noWait })).rejects.toBe(failure);
  });

  it('prints a closed run\'s stages from its record when no worker answers its progress query', async () => {
    const lines: string[] = [];
    const { handle } = fakeHandle([desc('COMPLETED')], () => {
      throw new Error('no poller seen for task queue recently');
    });
    const out = await followPipeline(client, handle, (l) => lines.push(l), {
      sleep: noWait,
      closedStages: async () => [{ stage: 'ingest', detail: '12.0 s' }],
    });
    expect(out).toEqual(RESULT);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/✓ ingest\s+12\.0 s$/);
  });

  it('shows the final training\'s epochs, read from its heartbeat details', async () => {
    const lines: string[] = [];
    const beat = defaultPayloadConverter.toPayload({ epoch: 12, checkpoint: {}, curve: [{ epoch: 12, loss: 0.3, valLoss: 0.23114, valAuc: 0.85121 }] });
    const pending = [{ activityType: { name: 'trainTrial' }, heartbeatDetails: { payloads: [beat] } }];
    const { handle } = fakeHandle([desc('RUNNING', pending), desc('COMPLETED')], () => ({ stage: 'final', completed: [], searchWorkflowId: null }));
    await followPipeline(client, handle, (l) => lines.push(l), { sleep: noWait, finalEpochs: 40 });
    expect(lines.map((l) => l.replace(/^\s*\d+s\s+/, ''))).toEqual(['… final training: epoch 12/40, val loss 0.2311, val ROC-AUC 0.8512']);
  });

  it('names the ensemble\'s seed replicas while they train, not as a final training', async () => {
    const lines: string[] = [];
    const beat = defaultPayloadConverter.toPayload({ epoch: 3, checkpoint: {}, curve: [{ epoch: 3, loss: 0.3, valLoss: 0.2, valAuc: 0.8 }] });
    const pending = [{ activityType: { name: 'trainTrial' }, heartbeatDetails: { payloads: [beat] } }];
    const { handle } = fakeHandle([desc('RUNNING', pending), desc('RUNNING', pending), desc('COMPLETED')], () => ({
      stage: 'final',
      completed: [],
      searchWorkflowId: null,
      replicas: ['t010-s2', 't010-s3'],
    }));
    await followPipeline(client, handle, (l) => lines.push(l), { sleep: noWait, finalEpochs: 40 });
    expect(lines.map((l) => l.replace(/^\s*\d+s\s+/, ''))).toEqual(['… ensemble: training 2 seed replicas of the best trial (t010-s2, t010-s3)']);
  });
});

describe('final training progress', () => {
  it('reads "starting" before the first heartbeat and nothing when no training is pending', () => {
    expect(finalFromHeartbeats({ raw: { pendingActivities: [] } } as never, 40)).toBeNull();
    const f = finalFromHeartbeats({ raw: { pendingActivities: [{ activityType: { name: 'trainTrial' }, heartbeatDetails: null }] } } as never, 40);
    expect(finalLine(f)).toBe('final training: starting, up to 40 epochs');
  });
});

describe('isConnectionError', () => {
  it('tells a lost connection from an answer of the server', () => {
    expect(isConnectionError(unavailable())).toBe(true);
    expect(isConnectionError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:7233'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isConnectionError(Object.assign(new Error('workflow not found'), { name: 'WorkflowNotFoundError' }))).toBe(false);
    expect(isConnectionError(Object.assign(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded'), { code: 4 }))).toBe(false);
  });
});
