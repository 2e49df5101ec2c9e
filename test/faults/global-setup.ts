import type { TestProject } from 'vitest/node';
import { stackDown, stackStatus, stackUp, type Connections } from '../../infra/index.js';
import { faultEnv } from './env.js';

declare module 'vitest' {
  export interface ProvidedContext {
    connections: Connections;
  }
}

/** Brings up the fault suite's own stack (see env.ts) and stops it afterwards unless PROPENSITY_KEEP_STACK is set. */
export default async function setup(project: TestProject) {
  const env = faultEnv();
  const log = (l: string) => console.log(`[faults stack] ${l}`);
  const before = await stackStatus({ env, log: () => {} });
  const wasRunning = before.some((s) => s.state === 'running');
  const { services: _services, ...connections } = await stackUp({ env, log });
  project.provide('connections', connections);
  return async () => {
    if (!wasRunning && !process.env.PROPENSITY_KEEP_STACK) await stackDown({ env, log });
  };
}
