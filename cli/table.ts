import { createRequire } from 'node:module';
import type CliTable from 'cli-table3';

// The one way the CLI prints a table: cli-table3 sizes each column to its widest cell (headers included), so a long
// cell such as `rejected (GateFailed)` widens its column instead of pushing the rest of its row out of line.
// Borderless, two spaces between columns, no colours: the output reads like `ps` and greps like plain text.

/** A column: its header, and optionally right alignment (numbers) and a width past which cells wrap. */
export interface Column {
  header: string;
  align?: 'left' | 'right';
  /** cells wider than this wrap onto further lines of their row (long messages) */
  maxWidth?: number;
}

export type Cell = string | number | null | undefined;

let loaded: typeof CliTable | undefined;

const BORDERLESS = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
  bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '',
  middle: '  ',
};

/** `rows` under `columns` as aligned lines (header first), each prefixed with `indent`; null and undefined print as `-`. */
export function table(columns: (string | Column)[], rows: Cell[][], { indent = '' }: { indent?: string } = {}): string[] {
  const cols = columns.map((c) => (typeof c === 'string' ? { header: c } : c));
  // loaded on first use, so commands that print JSON (or nothing) never pay for it
  const Table = (loaded ??= createRequire(import.meta.url)('cli-table3') as typeof CliTable);
  const t = new Table({
    head: cols.map((c) => c.header),
    chars: BORDERLESS,
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0, compact: true },
    colAligns: cols.map((c) => c.align ?? 'left'),
    // a column without a limit takes its widest cell; one with a limit wraps longer cells (the +0: no padding)
    colWidths: cols.map((c, i) => (c.maxWidth ? Math.min(c.maxWidth, widest(c.header, rows, i)) : null)),
    wordWrap: true,
    wrapOnWordBoundary: true,
  });
  for (const r of rows) t.push(cols.map((_, i) => text(r[i])));
  return t
    .toString()
    .split('\n')
    .map((l) => `${indent}${l}`.trimEnd());
}

const text = (v: Cell): string => (v === null || v === undefined ? '-' : String(v));

function widest(header: string, rows: Cell[][], i: number): number {
  return Math.max(header.length, ...rows.map((r) => text(r[i]).length));
}
