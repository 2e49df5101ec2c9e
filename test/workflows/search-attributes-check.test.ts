import { randomUUID } from 'node:crypto';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureSearchAttributes, requireSearchAttributes } from '../../infra/search-attributes.js';
import { connections } from '../support/services.js';

// What a cpu worker checks before it polls a cluster's namespace (workers/run-worker.ts): a namespace without the
// pipeline's search attributes is refused with the commands that create them, instead of every run's workflow tasks
// failing later. A fresh namespace on the real dev server plays the cluster an operator has not prepared yet.
let connection: Connection;
const namespace = `sa-check-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  connection = await Connection.connect({ address: connections().temporal.address });
  await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
});

afterAll(async () => {
  await connection?.close();
});

/** A namespace just registered may take a moment to be visible to the operator service. */
async function settle<T>(fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= 40 || (err as { type?: string; code?: string }).code === 'SEARCH_ATTRIBUTES_MISSING') throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

describe('the cpu worker\'s search attribute check', () => {
  it('the dev stack\'s namespace has them all', async () => {
    expect(await requireSearchAttributes(connection, connections().temporal.namespace)).toBe('ok');
  });

  it('refuses a namespace without them, naming each missing one and the command that creates it; ensure then adds them', async () => {
    const err = await settle(() => requireSearchAttributes(connection, namespace)).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(new RegExp(`^namespace ${namespace} lacks the search attributes PropensityModel, PropensityOutcome, PropensityTestAuc, PropensityTrigger`));
    expect(err?.message).toContain(`temporal operator search-attribute create --namespace ${namespace} --name PropensityTestAuc --type Double`);
    expect((await ensureSearchAttributes(connection, namespace)).sort()).toEqual(['PropensityModel', 'PropensityOutcome', 'PropensityTestAuc', 'PropensityTrigger']);
    expect(await settle(() => requireSearchAttributes(connection, namespace))).toBe('ok');
  });
});
