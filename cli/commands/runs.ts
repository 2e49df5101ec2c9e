import type { Command } from 'commander';

/** Placeholder: filled in by the runs work. */
export function registerRunsCommands(program: Command): void {
  void program;
}
