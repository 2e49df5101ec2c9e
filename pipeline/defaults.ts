/**
 * Defaults that workflow code needs as values as well (it does not parse configs): written once here, used by the
 * config schema's zod defaults and by the workflows.
 */
export const SCORING_DEFAULTS = { activeDays: 30, chunkRows: 50_000, parallelism: 2 } as const;
