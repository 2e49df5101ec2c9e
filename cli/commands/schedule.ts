import type { Command } from 'commander';

/** Placeholder: filled in by the schedule work. */
export function registerScheduleCommands(program: Command): void {
  void program;
}
