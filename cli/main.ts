import { Command } from 'commander';
import { COMMANDS, findCommand } from './catalog.js';
import { CliError, ExitCode } from './common.js';
import { typedCause } from './failure.js';

const program = new Command('propensity')
  .description('Retrain, gate and publish purchase-propensity models (Temporal + Postgres + S3 + TensorFlow.js)')
  .showHelpAfterError()
  // a command's options are its own, never its parent's: `run show <id> --json` reaches `show` even though `run`
  // has a --json of its own (inherited by every command created from here)
  .enablePositionalOptions()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

// Only the invoked command's module is loaded (cli/catalog.ts); without a known command name (--help, a typo)
// every command is listed by its summary, and commander prints the help or the "unknown command" error.
const args = process.argv.slice(2);
const name = args[0] === 'help' ? args[1] : args.find((a) => !a.startsWith('-'));
const entry = findCommand(name);
if (entry) {
  (await entry.load())(program);
} else {
  for (const c of COMMANDS) program.command(c.name).description(c.summary);
}

// Registry lookups that name something missing exit 4; a state conflict exits 5 (README, "Exit codes").
const REGISTRY_EXIT: Record<string, number> = {
  UnknownModel: ExitCode.notFound,
  UnknownVersion: ExitCode.notFound,
  UnknownAlias: ExitCode.notFound,
  InvalidModelRef: ExitCode.usage,
  // an id or name outside its pattern (pipeline/ids.ts), refused before it reaches Temporal, S3 or a file
  InvalidId: ExitCode.usage,
  VersionNotPromotable: ExitCode.conflict,
  NothingToRollBack: ExitCode.conflict,
  NotAwaitingApproval: ExitCode.conflict,
};

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const e = err as Error & { type?: string; code?: string };
  // a failed workflow explains itself with its typed cause (ApplicationFailure type and message), not "Workflow execution failed"
  const cause = err instanceof CliError ? null : typedCause(err);
  const type = err instanceof CliError ? err.type : (cause?.type ?? e.type ?? e.code ?? e.name);
  console.error(`propensity: ${type}: ${cause?.message ?? e.message}`);
  process.exitCode = err instanceof CliError ? err.exitCode : (REGISTRY_EXIT[type ?? ''] ?? ExitCode.error);
}
