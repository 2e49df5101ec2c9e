import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, RetryState } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { failureLines } from '../../bench/common.js';

const failedRun = (type: string, message: string) =>
  new WorkflowFailedError(
    'Workflow execution failed',
    new ActivityFailure('Activity task failed', 'ingestSource', '1', RetryState.NON_RETRYABLE_FAILURE, 'worker', ApplicationFailure.create({ type, message, nonRetryable: true })),
    RetryState.NON_RETRYABLE_FAILURE,
  );

describe('a failed bench suite explains itself', () => {
  it("prints the run's typed cause, not 'Workflow execution failed'", () => {
    expect(failureLines(failedRun('InvalidConfig', 'gate.thresholds[0].metric "auc" is not a metric'))).toEqual([
      'bench: InvalidConfig: gate.thresholds[0].metric "auc" is not a metric',
    ]);
  });

  it('says where the suites look for a source table that does not exist', () => {
    const lines = failureLines(failedRun('SourceSchema', 'a source table does not exist: relation "public.my_table" does not exist'));
    expect(lines[0]).toBe('bench: SourceSchema: a source table does not exist: relation "public.my_table" does not exist');
    expect(lines[1]).toMatch(/^bench: the suites read database propensity_bench, not the main one/);
  });

  it('prints any other error by its message', () => {
    expect(failureLines(new Error('connect ECONNREFUSED 127.0.0.1:5432'))).toEqual(['bench: connect ECONNREFUSED 127.0.0.1:5432']);
  });
});
