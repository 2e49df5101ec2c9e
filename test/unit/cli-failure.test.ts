import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, RetryState } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { typedCause } from '../../cli/failure.js';

describe('a failed run explains itself', () => {
  it('finds the typed cause under the workflow and activity failures', () => {
    const app = ApplicationFailure.create({ type: 'InvalidData', message: 'the label window [a, b) has not ended yet: choose an earlier source.cutoff', nonRetryable: true });
    const activity = new ActivityFailure('Activity task failed', 'ingestSource', '2', RetryState.NON_RETRYABLE_FAILURE, 'worker', app);
    const err = new WorkflowFailedError('Workflow execution failed', activity, RetryState.NON_RETRYABLE_FAILURE);
    expect(typedCause(err)).toEqual({ type: 'InvalidData', message: 'the label window [a, b) has not ended yet: choose an earlier source.cutoff' });
  });

  it('has none for an error without a type', () => {
    expect(typedCause(new Error('plain'))).toBeNull();
    expect(typedCause(undefined)).toBeNull();
  });
});
