import type { Command } from 'commander';

/** Placeholder: filled in by the models work. */
export function registerModelsCommands(program: Command): void {
  void program;
}
