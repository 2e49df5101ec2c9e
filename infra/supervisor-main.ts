// The dev stack's worker supervisor process: `node infra/supervisor-main.js <spec.json>` (infra/workers.ts starts it
// detached). It runs until SIGTERM or SIGINT, then stops its workers and exits.
import { readFileSync } from 'node:fs';
import { Supervisor, type SupervisorSpec } from './supervisor.js';

const specFile = process.argv[2];
if (!specFile) {
  console.error('usage: supervisor-main <spec.json>');
  process.exit(2);
}
const spec = JSON.parse(readFileSync(specFile, 'utf8')) as SupervisorSpec;
const supervisor = new Supervisor(spec);
let stopping: Promise<void> | null = null;
const stop = (signal: string) => {
  if (stopping) return;
  console.log(`${new Date().toISOString()} ${signal}: stopping ${spec.processes.length} workers`);
  stopping = supervisor.stop().then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
// a supervisor that dies leaves its workers orphaned (dev up and dev down find them by their pid files); better to
// log and keep supervising
process.on('uncaughtException', (err) => console.error(`${new Date().toISOString()} supervisor: uncaught exception (kept running): ${err.stack ?? err}`));
supervisor.start();
console.log(`${new Date().toISOString()} supervisor pid ${process.pid}: ${spec.processes.map((p) => p.name).join(', ')}`);
