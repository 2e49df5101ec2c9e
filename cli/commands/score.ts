import type { Command } from 'commander';

/** Placeholder: filled in by the score work. */
export function registerScoreCommands(program: Command): void {
  void program;
}
