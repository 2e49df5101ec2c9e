/**
 * Workflow code for test/workflows/cancel.test.ts, bundled on its own: a `trainPipeline` that either throws on
 * every workflow task (a broken deployment: the task fails and is retried forever, the run never closes by itself),
 * or runs one long activity with a training step's options (`train`), or waits until it is cancelled, then closes
 * as CANCELLED. Which one is chosen by the start input's trigger.
 */
import { condition, proxyActivities, workflowInfo } from '@temporalio/workflow';
import { activityOptions } from '../../pipeline/retry.js';

export interface CancelTestActivities {
  /** heartbeats until it hears of a cancellation or its budget runs out */
  beatUntilCancelled(): Promise<void>;
}

export async function trainPipeline(input: { trigger?: string }): Promise<void> {
  if (input.trigger === 'broken') throw new Error('broken deployment: this trainPipeline cannot run');
  if (input.trigger === 'train') {
    const { beatUntilCancelled } = proxyActivities<CancelTestActivities>({ ...activityOptions('train', workflowInfo().taskQueue), retry: { maximumAttempts: 1 } });
    await beatUntilCancelled();
    return;
  }
  await condition(() => false);
}
