import type { TestProject } from 'vitest/node';
import { loadEnv, stackDown, stackStatus, stackUp, type Connections } from '../infra/index.js';

declare module 'vitest' {
  export interface ProvidedContext {
    connections: Connections;
  }
}

/**
 * Brings up the real dev stack (Temporal dev server, PostgreSQL, s3rver) once for the whole run, or reuses
 * the one `propensity dev up` started. Only a stack this setup started is stopped afterwards.
 */
export default async function setup(project: TestProject) {
  const env = loadEnv();
  const quiet = () => {};
  const before = await stackStatus({ env, log: quiet });
  const wasRunning = before.some((s) => s.state === 'running');
  const info = await stackUp({ env, log: (l) => console.log(`[stack] ${l}`) });
  const { services: _services, ...connections } = info;
  project.provide('connections', connections);
  return async () => {
    if (!wasRunning && !process.env.PROPENSITY_KEEP_STACK) await stackDown({ env, log: (l) => console.log(`[stack] ${l}`) });
  };
}
