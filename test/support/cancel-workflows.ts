/**
 * Workflow code for test/workflows/cancel.test.ts, bundled on its own: a `trainPipeline` that either throws on
 * every workflow task (a broken deployment: the task fails and is retried forever, the run never closes by itself)
 * or waits until it is cancelled, then closes as CANCELLED. Which one is chosen by the start input's trigger.
 */
import { condition } from '@temporalio/workflow';

export async function trainPipeline(input: { trigger?: string }): Promise<void> {
  if (input.trigger === 'broken') throw new Error('broken deployment: this trainPipeline cannot run');
  await condition(() => false);
}
