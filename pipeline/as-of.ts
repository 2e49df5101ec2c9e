import type { PipelineConfig } from './config.js';
import { ErrorType, PipelineError } from './errors.js';

const DAY_MS = 86_400_000;

/**
 * Applies a run's as-of time to its validated config. The as-of time is the instant the run stands at (for a
 * scheduled run, the time it was scheduled for, never the wall clock): nothing at or after it is read. An events
 * source without an explicit cutoff gets cutoff = asOf − horizonDays, so the label window [cutoff, asOf) ends
 * exactly at the as-of time and has been observed, and a backfill of a past night reproduces that night's cutoff.
 * An explicit cutoff is kept, but its label window must end by the as-of time. Table sources are unchanged.
 */
export function applyAsOf(config: PipelineConfig, asOf: string | undefined): PipelineConfig {
  if (asOf === undefined) return config;
  const at = new Date(asOf);
  if (Number.isNaN(at.getTime())) {
    throw new PipelineError(ErrorType.InvalidConfig, `the run's asOf "${asOf}" is not an ISO date-time (e.g. 2026-11-09T02:00:00Z)`);
  }
  if (config.source.kind !== 'events') return config;
  const horizonMs = config.source.horizonDays * DAY_MS;
  if (config.source.cutoff) {
    const windowEnd = new Date(new Date(config.source.cutoff).getTime() + horizonMs);
    if (windowEnd > at) {
      throw new PipelineError(
        ErrorType.InvalidConfig,
        `source.cutoff ${config.source.cutoff} + source.horizonDays ${config.source.horizonDays} ends at ${windowEnd.toISOString()}, ` +
          `after the run's as-of time ${at.toISOString()}: nothing at or after the as-of time may be read; ` +
          'remove source.cutoff (it then defaults to asOf − horizonDays) or choose an earlier one',
      );
    }
    return config;
  }
  return { ...config, source: { ...config.source, cutoff: new Date(at.getTime() - horizonMs).toISOString() } };
}
