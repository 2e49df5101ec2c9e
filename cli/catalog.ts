import type { Command } from 'commander';

// Every top-level command: its one-line summary and the module that defines it. `propensity <command>` loads that
// module only, and `propensity --help` only this list, so no command pays for another's imports (pg, the S3 and
// Temporal SDKs, tfjs): README, "A fast CLI". A module's top-level commands take their descriptions from here.

type Register = (program: Command) => void;

export interface CommandEntry {
  name: string;
  summary: string;
  load: () => Promise<Register>;
}

const runs = () => import('./commands/runs.js').then((m) => m.registerRunsCommands);
const models = () => import('./commands/models.js').then((m) => m.registerModelsCommands);
const audit = () => import('./commands/audit.js').then((m) => m.registerAuditCommands);
const data = () => import('./commands/data.js').then((m) => m.registerDataCommands);

export const COMMANDS: CommandEntry[] = [
  { name: 'demo', summary: 'stack up (workers included), migrate, seed a synthetic shop, run one pipeline, print a summary', load: () => import('./commands/demo.js').then((m) => m.registerDemoCommand) },
  { name: 'dev', summary: 'the embedded dev stack: Temporal dev server, PostgreSQL, s3rver and supervised workers under .data/', load: () => import('./commands/dev.js').then((m) => m.registerDevCommands) },
  { name: 'db', summary: 'database administration', load: () => import('./commands/db.js').then((m) => m.registerDbCommands) },
  { name: 'seed', summary: 'replace shop.* with a synthetic shop (and bench.user_truth with its true probabilities)', load: data },
  { name: 'import', summary: 'load a real shop export into shop.*', load: data },
  { name: 'worker', summary: 'run a worker until SIGINT/SIGTERM', load: () => import('./commands/worker.js').then((m) => m.registerWorkerCommand) },
  { name: 'run', summary: 'start a pipeline run from a config file (JSON or YAML) and follow it stage by stage; show, watch or resume a run', load: runs },
  { name: 'runs', summary: 'recent pipeline runs, newest first', load: runs },
  { name: 'cancel', summary: 'end a pipeline run at any stage: request cancellation, then terminate after a grace period', load: runs },
  { name: 'schedule', summary: 'nightly retrains as Temporal Schedules (create, list, describe, pause, trigger, backfill, delete)', load: () => import('./commands/schedule.js').then((m) => m.registerScheduleCommands) },
  { name: 'models', summary: 'the model registry: versions, lineage, aliases and their history', load: models },
  { name: 'promote', summary: 'point an alias (default champion) at an approved version', load: models },
  { name: 'rollback', summary: 'move an alias (default champion) back to the version it pointed at before', load: models },
  { name: 'approve', summary: 'approve the model of a run awaiting approval: it becomes champion', load: models },
  { name: 'reject', summary: 'reject the model of a run awaiting approval: its version can never be promoted', load: models },
  { name: 'score', summary: 'score every active user with a registered model and write ml.scores', load: () => import('./commands/score.js').then((m) => m.registerScoreCommands) },
  { name: 'history', summary: 'workflow histories: export them for auditors and for replay tests', load: audit },
  { name: 'replay', summary: 'replay workflow histories against the current workflow code', load: audit },
  { name: 'setup', summary: 'optional native pieces: `setup tensorflow [--gpu]` builds the native TensorFlow training backend into .tools/', load: () => import('./commands/setup.js').then((m) => m.registerSetupCommands) },
];

/** The entry for a top-level command name, if any. */
export const findCommand = (name: string | undefined): CommandEntry | undefined => COMMANDS.find((c) => c.name === name);
