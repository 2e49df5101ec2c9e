import { createHash } from 'node:crypto';
import { z } from 'zod';
import { validateSearchSpace } from '../ml/search.js';
import { DEFAULT_SEARCH_SPACE, MAX_BATCH_ENSEMBLE, MAX_PLE_BINS, MAX_SEQUENCE_UNITS, NUMERIC_ENCODINGS, type NumericEncoding } from '../ml/types.js';
import { SCORING_DEFAULTS } from './defaults.js';
import { ID_RULES, NAME_PATTERN } from './ids.js';
import { ErrorType, PipelineError } from './errors.js';
import { sourceQueryProblem } from '../db/source-query.js';
import { MAX_SEQUENCE_LENGTH } from '../db/sequences.js';

const identifier = z.string().regex(NAME_PATTERN, `must be ${ID_RULES.modelName.rule} (pattern ${NAME_PATTERN.source}), e.g. ${ID_RULES.modelName.example}`);
const range = (min: number, max: number) =>
  z
    .tuple([z.number().min(min).max(max), z.number().min(min).max(max)])
    .refine(([lo, hi]) => lo <= hi, 'range must be [low, high] with low <= high');
const positiveRange = z
  .tuple([z.number().positive(), z.number().positive()])
  .refine(([lo, hi]) => lo <= hi, 'range must be [low, high] with 0 < low <= high');

const column = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'must be a plain column name (letters, digits, "_"), not an expression');

/**
 * Whether a table-mode query is exactly one read-only SELECT, by PostgreSQL's own grammar (source-query.ts):
 * no second statement, no data-modifying WITH, no SELECT INTO, no row locks, no server-touching functions.
 * It then runs as a least-privilege role inside a READ ONLY transaction.
 */
export function isSingleSelect(query: string): boolean {
  return sourceQueryProblem(query) === null;
}

const sourceQuery = z
  .string()
  .min(1)
  .superRefine((query, ctx) => {
    const problem = sourceQueryProblem(query, 'the query');
    if (problem) ctx.addIssue({ code: 'custom', message: `${problem.message} (rule ${problem.rule})` });
  });

export const METRIC_NAMES = ['rocAuc', 'prAuc', 'logLoss', 'brier', 'ece', 'f1', 'precision', 'recall'] as const;

export const searchSpaceSchema = z.strictObject({
  hiddenLayers: z
    .tuple([z.number().int().min(0).max(6), z.number().int().min(0).max(6)])
    .refine(([lo, hi]) => lo <= hi, 'range must be [low, high] with low <= high')
    .default([...DEFAULT_SEARCH_SPACE.hiddenLayers] as [number, number]),
  units: z.array(z.number().int().min(1).max(4096)).min(1, 'needs at least one choice').default([...DEFAULT_SEARCH_SPACE.units]),
  dropout: range(0, 0.9).default([...DEFAULT_SEARCH_SPACE.dropout] as [number, number]),
  l2: z
    .tuple([z.number().min(0), z.number().min(0)])
    .refine(([lo, hi]) => lo <= hi, 'range must be [low, high] with low <= high')
    .default([...DEFAULT_SEARCH_SPACE.l2] as [number, number]),
  learningRate: positiveRange.default([...DEFAULT_SEARCH_SPACE.learningRate] as [number, number]),
  batchSize: z.array(z.number().int().min(1).max(65536)).min(1, 'needs at least one choice').default([...DEFAULT_SEARCH_SPACE.batchSize]),
  classWeight: z.array(z.enum(['balanced', 'none'])).min(1, 'needs at least one choice').default([...DEFAULT_SEARCH_SPACE.classWeight]),
  /** embedding sizes for categorical features to sample from (0 = one-hot); absent = one-hot only */
  embeddingDim: z.array(z.number().int().min(0).max(256)).min(1, 'needs at least one choice').optional(),
  /**
   * numeric encodings to sample from: standard, quantile, robust, ple (piecewise-linear bins from train quantiles),
   * periodic (quantile-scaled, then learned sin/cos embeddings in the network's first layer)
   */
  numericEncoding: z.array(z.enum(NUMERIC_ENCODINGS as [NumericEncoding, ...NumericEncoding[]])).min(1, 'needs at least one choice').default([...DEFAULT_SEARCH_SPACE.numericEncoding!]),
  /**
   * GRU units of the sequence family over the last source.sequenceLength events (0 = a trial without the sequence
   * tower); absent: no sequence trials. Needs an events source with sequenceLength > 0
   */
  sequenceUnits: z.array(z.number().int().min(0).max(MAX_SEQUENCE_UNITS)).min(1, 'needs at least one choice').optional(),
  /**
   * for sequence trials: the GRU alone (true) or joined with the aggregate features (false) to sample from; absent:
   * joined
   */
  sequenceAlone: z.array(z.boolean()).min(1, 'needs at least one choice').optional(),
  /** bins per numeric feature for ple trials */
  pleBins: z.array(z.number().int().min(2).max(MAX_PLE_BINS)).min(1, 'needs at least one choice').default([...DEFAULT_SEARCH_SPACE.pleBins!]),
  /**
   * BatchEnsemble member counts to sample from (TabM: k members sharing the first hidden layer's weights, their
   * probabilities averaged; 0 or 1 = a plain MLP); absent: plain MLPs only
   */
  batchEnsemble: z.array(z.number().int().min(0).max(MAX_BATCH_ENSEMBLE)).min(1, 'needs at least one choice').optional(),
  /** log range of the initial frequency scale σ for periodic trials; absent: [0.01, 1] */
  periodicSigma: positiveRange.refine(([, hi]) => hi <= 100, 'σ above 100 makes every feature noise').optional(),
});

/** The training section of a pipeline config (its own schema, like searchSpaceSchema, so a bench may check a part of it). */
export const trainingSchema = z.strictObject({
  backend: z.enum(['auto', 'tensorflow', 'wasm', 'cpu']).default('auto'),
  /**
   * the worker pool that trains (task queue propensity-train for 'cpu', propensity-train-<pool> otherwise); a run
   * whose pool has no worker is refused at once by the CLI
   */
  pool: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,30}$/, 'a pool name is lower-case letters, digits and -, starting with a letter (e.g. cpu, gpu, gpu-large)')
    .default('cpu'),
  /** pool 'gpu' trains on a GPU or fails the trial (GpuUnavailable); true lets a GPU-less worker of that pool train on its CPU */
  allowCpuFallback: z.boolean().default(false),
  /**
   * the final model: 'retrain' trains the best trial's parameters again for up to finalEpochs; 'reuse' ships the
   * best trial's own weights (no final training)
   */
  final: z.enum(['retrain', 'reuse']).default('reuse'),
  /**
   * averaging several networks: members are added greedily while one raises the validation metric
   * (search.metric) by more than minGain; maxMembers 1 turns ensembles off. The candidates are the search's
   * trials and up to `seeds - 1` replicas of the best trial: its parameters trained again with other seeds, in
   * parallel on the train pool, as many as fit replicaBudgetSeconds. By default up to seven within two
   * minutes: at 100k users 4–6 fit (33–51 s each) and gave +0.0000 to +0.0012 test AUC; at 10 M events one
   * would take about 155–175 s, so none trains (README, "Latest figures")
   */
  ensemble: z
    .strictObject({
      maxMembers: z.number().int().min(1).max(32).default(5),
      minGain: z.number().min(0).max(1).default(0.0001),
      seeds: z.number().int().min(1).max(16).default(8),
      /**
       * the wall time the seed replicas may add to a run: only as many as fit train, each counted at the best
       * trial's seconds per epoch for the whole epoch budget (early stopping can only end it sooner),
       * search.parallelism at a time. Replicas help most where a network's seed moves test AUC most (small
       * data) and cost least there. The count depends on measured time, so the same config may train fewer on a
       * slower machine; null trains all `seeds - 1` (configs parsed before the budget existed have none)
       */
      replicaBudgetSeconds: z.number().int().min(1).max(86_400).nullable().default(120),
    })
    .prefault({}),
  finalEpochs: z.number().int().min(1).max(1000).default(60),
  /** early-stopping patience of the final training and the baseline */
  patience: z.number().int().min(1).max(1000).default(8),
  seed: z.number().int().min(0).default(1234),
  /** a training attempt silent this long (no epoch heartbeat) is retried elsewhere, from its last checkpoint */
  heartbeatTimeoutSeconds: z.number().int().min(5).max(3600).default(120),
});

export const pipelineConfigSchema = z.strictObject({
  modelName: identifier.default('propensity'),
  source: z
    .discriminatedUnion('kind', [
      z.strictObject({
        kind: z.literal('events'),
        /** Features use events strictly before the cutoff; the label is a purchase in [cutoff, cutoff + horizon). */
        cutoff: z.iso.datetime({ offset: true }).optional(),
        horizonDays: z.number().int().min(1).max(365).default(14),
        /** Events before this instant are invalid (default: the earliest signup in shop.users). */
        openedAt: z.iso.datetime({ offset: true }).optional(),
        /**
         * Also carry each user's last N valid events before the cutoff as columns seq_<i>_{event_type, category,
         * price, hours_since_prev} (i = 1 the most recent; NULL-padded), for sequence models; scoring then builds
         * the same columns. 0 to MAX_SEQUENCE_LENGTH; absent or 0: off. Absent stays absent (no default written),
         * so every earlier config keeps its hash and a resume of an earlier run still matches its source section.
         */
        sequenceLength: z.number().int().min(0).max(MAX_SEQUENCE_LENGTH).optional(),
      }),
      z.strictObject({
        kind: z.literal('table'),
        /** One read-only SELECT returning one row per entity; run inside a READ ONLY transaction. */
        query: sourceQuery,
        entityKey: column,
        label: column,
        /** Columns to train on, with optional declared kinds; default: every other column, kinds inferred. */
        features: z.union([z.array(column).min(1), z.record(column, z.enum(['numeric', 'categorical']))]).optional(),
      }),
    ])
    .prefault({ kind: 'events' }),
  quality: z
    .strictObject({
      /** Fail the run when more than this share of source rows (events, or entities) is quarantined. */
      maxQuarantineRate: z.number().min(0).max(1).default(0.05),
      /** Fail the run when a feature's population stability index against the last registered run exceeds this. */
      maxPsi: z.number().positive().default(0.25),
    })
    .prefault({}),
  split: z
    .strictObject({
      seed: z.number().int().min(0).default(42),
      train: z.number().gt(0).lt(1).default(0.8),
      val: z.number().gt(0).lt(1).default(0.1),
      test: z.number().gt(0).lt(1).default(0.1),
    })
    .refine((s) => Math.abs(s.train + s.val + s.test - 1) < 1e-9, 'split.train + split.val + split.test must equal 1')
    .prefault({}),
  search: z
    .strictObject({
      trials: z.number().int().min(1).max(1000).default(16),
      parallelism: z.number().int().min(1).max(256).default(2),
      seed: z.number().int().min(0).default(7),
      /** the largest epoch budget a trial reaches (the last successive-halving rung) */
      epochs: z.number().int().min(1).max(1000).default(DEFAULT_SEARCH_SPACE.epochs),
      patience: z.number().int().min(1).max(1000).default(DEFAULT_SEARCH_SPACE.patience),
      /**
       * what ranks trials on the validation split, from the first rung to the final choice. ROC-AUC by default: it
       * is comparable across class weightings (balanced weights inflate probabilities, and so log loss, by design)
       */
      metric: z.enum(['valLogLoss', 'valAuc', 'valPrAuc']).default('valAuc'),
      /**
       * the logistic baseline competes with the search: when it is at least as good as the best trial on validation
       * (by search.metric), the run ships it (family 'logistic') and skips the final training
       */
      baselineCompetes: z.boolean().default(true),
      /** successive halving: budgets minEpochs·eta^k; eta 1 trains every trial for the full budget */
      halving: z
        .strictObject({ eta: z.number().min(1).max(10).default(3), minEpochs: z.number().int().min(1).default(5) })
        .prefault({}),
      space: searchSpaceSchema.prefault({}),
    })
    .prefault({}),
  training: trainingSchema.prefault({}),
  gate: z
    .strictObject({
      thresholds: z
        .array(z.strictObject({ metric: z.enum(METRIC_NAMES), op: z.enum(['>=', '<=']), value: z.number() }))
        .default([{ metric: 'rocAuc', op: '>=', value: 0.65 }]),
      /**
       * The model against the logistic-regression baseline on the same test rows. Default: non-inferiority — it
       * fails only when significantly worse than baseline − margin (one-sided DeLong at alpha), so two models within
       * noise of each other never make a nightly run a coin flip. requireHigherAuc adds the strict rule (AUC higher
       * than the baseline's by more than margin).
       */
      versusBaseline: z
        .strictObject({
          enabled: z.boolean().default(true),
          alpha: z.number().gt(0).lt(1).default(0.05),
          requireHigherAuc: z.boolean().default(false),
          margin: z.number().min(0).max(0.5).default(0),
        })
        .prefault({}),
      /**
       * a challenger must not be significantly worse than the champion (DeLong, two-sided at alpha) on the test rows
       * neither has seen; with fewer unseen rows or positives than these, the comparison is skipped, never decided
       */
      versusChampion: z
        .strictObject({
          enabled: z.boolean().default(true),
          alpha: z.number().gt(0).lt(1).default(0.05),
          minRows: z.number().int().min(1).default(200),
          minPositives: z.number().int().min(1).default(20),
        })
        .prefault({}),
    })
    .prefault({}),
  evaluation: z
    .strictObject({
      /** categorical feature columns to report metrics by (event mode adds new vs returning customers) */
      segments: z.array(column).optional(),
      bootstrapSamples: z.number().int().min(0).max(5000).default(200),
      /** permutation importance on the validation split: repeats per feature (0 = off) */
      importanceRepeats: z.number().int().min(0).max(20).default(2),
    })
    .prefault({}),
  scoring: z
    .strictObject({
      /** after a promotion, score every active user with the new version (child workflow scoreUsers) */
      afterPromotion: z.boolean().default(false),
      /** active users: at least one valid event in the last activeDays days before the scoring time */
      activeDays: z.number().int().min(1).max(365).default(SCORING_DEFAULTS.activeDays),
      /** rows per scoring activity (one COPY transaction each) */
      chunkRows: z.number().int().min(100).max(1_000_000).default(SCORING_DEFAULTS.chunkRows),
    })
    .prefault({}),
  approval: z
    .strictObject({
      /** a blessed model is registered as pending_approval and waits for `propensity approve|reject <run>` */
      required: z.boolean().default(false),
      /** no decision within this many hours rejects the version (ApprovalTimeout); fractions allowed */
      timeoutHours: z.number().positive().max(24 * 365).default(72),
    })
    .prefault({}),
});

export type PipelineConfigInput = z.input<typeof pipelineConfigSchema>;
export type PipelineConfig = z.output<typeof pipelineConfigSchema>;
export type SearchSpaceConfig = z.output<typeof searchSpaceSchema>;

/** Validates a pipeline config; every problem names its key and, for unknown keys, the allowed ones. */
export function parsePipelineConfig(input: unknown): PipelineConfig {
  const result = pipelineConfigSchema.safeParse(input ?? {});
  if (result.success) {
    // The sampler's own rules (e.g. a log range cannot start at 0), checked here rather than in workflow code,
    // where a throw would fail the workflow task instead of the run.
    const { space, epochs, patience } = result.data.search;
    const problems = validateSearchSpace({ ...space, epochs, patience }).map((p) => `search.space.${p}`);
    const source = result.data.source;
    if (space.sequenceUnits?.some((u) => u > 0) && !(source.kind === 'events' && (source.sequenceLength ?? 0) > 0)) {
      problems.push(
        `search.space.sequenceUnits: sequence trials read each user's last events, which ${source.kind === 'events' ? 'source.sequenceLength (0 or absent) does not ask for: set it to e.g. 16' : "a table source does not have: use an events source with source.sequenceLength, or remove search.space.sequenceUnits"}`,
      );
    }
    if (problems.length) throw new PipelineError(ErrorType.InvalidConfig, `invalid pipeline config: ${problems.join('; ')}`, { problems });
    return result.data;
  }
  const problems = result.error.issues.map((issue) => {
    const where = issue.path.length ? issue.path.join('.') : '(top level)';
    if (issue.code === 'unrecognized_keys') {
      const allowed = allowedKeysAt(pipelineConfigSchema, issue.path, input);
      return (
        `unknown key ${issue.keys.map((k) => `"${[...issue.path, k].join('.')}"`).join(', ')} (check the spelling` +
        (allowed.length ? `; allowed ${issue.path.length ? `in ${issue.path.join('.')}` : 'at the top level'}: ${allowed.join(', ')})` : ')')
      );
    }
    return `${where}: ${issue.message}`;
  });
  throw new PipelineError(ErrorType.InvalidConfig, `invalid pipeline config: ${problems.join('; ')}`, { problems });
}

type SchemaDef = {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  options?: z.ZodType[];
  values?: unknown[];
};
const defOf = (schema: z.ZodType) => (schema as unknown as { _zod: { def: SchemaDef } })._zod.def;
const unwrap = (schema: z.ZodType) => {
  let def = defOf(schema);
  while (def.innerType || (def.type === 'pipe' && def.in)) def = defOf((def.innerType ?? def.in)!);
  return def;
};

/**
 * The keys an object in the schema accepts at `path` (through optionals, defaults and arrays), sorted. In a
 * union of objects, the options whose literal fields match `value` (e.g. source.kind) are the ones that count.
 */
export function allowedKeysAt(schema: z.ZodType, path: readonly PropertyKey[], value?: unknown): string[] {
  const def = unwrap(schema);
  if (def.type === 'union' && def.options) {
    const matching = def.options.filter((o) => {
      const shape = unwrap(o).shape ?? {};
      return Object.entries(shape).every(([k, v]) => {
        const d = unwrap(v);
        const given = (value as Record<string, unknown> | undefined)?.[k];
        return d.type !== 'literal' || given === undefined || d.values?.includes(given);
      });
    });
    return [...new Set((matching.length ? matching : def.options).flatMap((o) => allowedKeysAt(o, path, value)))].sort();
  }
  if (path.length === 0) return def.type === 'object' && def.shape ? Object.keys(def.shape).sort() : [];
  const [head, ...rest] = path;
  const next = (value as Record<PropertyKey, unknown> | undefined)?.[head];
  if (def.type === 'object' && def.shape && typeof head === 'string' && def.shape[head]) return allowedKeysAt(def.shape[head], rest, next);
  if (def.type === 'array' && def.element) return allowedKeysAt(def.element, rest, next);
  return [];
}

/** Stable hash of the normalized config: same knobs, same hash, whatever the key order. */
export function configHash(config: PipelineConfig): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v && typeof v === 'object'
        ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]))
        : v;
  return createHash('sha256').update(JSON.stringify(canonical(config))).digest('hex').slice(0, 16);
}
