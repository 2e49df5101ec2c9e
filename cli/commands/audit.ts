import type { Command } from 'commander';

/** Placeholder: filled in by the audit work. */
export function registerAuditCommands(program: Command): void {
  void program;
}
