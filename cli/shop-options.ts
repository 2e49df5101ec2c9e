import type { Command } from 'commander';
import { SHOP_ANCHOR } from '../db/synthetic/generator.js';
import { dayOption, intOption } from './common.js';

/**
 * The synthetic shop's shape, as `seed`, `demo` and the benchmarks take it: users, days, seed, label horizon and the
 * day it ends (fixed by default, so the same options give the same shop on any day).
 */
export const shopOptions = <C extends Command>(cmd: C): C =>
  cmd
    .option('--users <n>', 'synthetic shop: users', intOption('--users'), 100_000)
    .option('--days <n>', 'synthetic shop: days of events', intOption('--days'), 60)
    .option('--seed <n>', 'synthetic shop: generator seed', intOption('--seed', 0), 1)
    .option('--horizon-days <n>', 'label window after the cutoff, in days (the shop and the pipeline)', intOption('--horizon-days'), 14)
    .option(
      '--end <day>',
      `the day the shop's data ends (exclusive, UTC; the cutoff is --horizon-days before it); fixed by default (${SHOP_ANCHOR}), so the same options give the same shop on any day`,
      dayOption('--end'),
      dayOption('--end')(SHOP_ANCHOR),
    ) as C;
