/**
 * The model card: one self-contained HTML page per evaluated model (and the same numbers as JSON) — metrics with
 * 95 % intervals, ROC / PR / calibration / lift / importance charts, data summary, gate verdicts and lineage.
 *
 * Pure: data in, { html, json } out (no I/O). Charts are Vega-Lite specs compiled with `vega-lite` and rendered to
 * static SVG on the server by `vega` (headless view, renderer 'none'), then inlined: the page has no script and no
 * external resource, so it opens offline, from S3, in a mail client or behind a strict CSP alike.
 */
import type { TopLevelSpec } from 'vega-lite';
import type { ReliabilityPoint } from '../ml/calibration.js';
import { formatEnsembleGain, type EnsembleGain } from '../ml/ensemble-gain.js';
import { formatPValue } from '../ml/delong.js';
import type { BootstrapOptions, DecileRow, EvaluationMetrics, EvaluationReport, SegmentMetrics } from '../ml/evaluation.js';
import type { GateCheck } from '../ml/gate.js';
import type { FeatureImportance } from '../ml/importance.js';
import { sequenceColumnOf } from '../db/sequences.js';

export const MODEL_CARD_SCHEMA = 'propensity.model-card/v1';
export const MODEL_CARD_FILES = { html: 'model-card.html', json: 'model-card.json' } as const;
/** At most this many points per ROC / PR curve in the card (the evaluation report already holds ≤ 101). */
export const CARD_CURVE_POINTS = 201;
/** Features shown in the importance chart (the JSON keeps all of them). */
export const CARD_TOP_FEATURES = 20;
export const CHARTS = ['roc', 'pr', 'calibration', 'lift', 'importance'] as const;
export type ChartName = (typeof CHARTS)[number];

/** Where a run's card and a registered version's card live in the bucket (beside report.json / model.json). */
export const modelCardKeys = {
  run: (runId: string) => ({ html: `runs/${runId}/eval/${MODEL_CARD_FILES.html}`, json: `runs/${runId}/eval/${MODEL_CARD_FILES.json}` }),
  model: (name: string, version: number) => ({
    html: `models/${name}/v${version}/${MODEL_CARD_FILES.html}`,
    json: `models/${name}/v${version}/${MODEL_CARD_FILES.json}`,
  }),
};

/** A gate comparison (ml/compare.ts `Comparison`); NaN AUCs of a skipped comparison become null in the JSON. */
export interface CardComparison {
  check: string;
  against: string;
  challengerAuc: number | null;
  otherAuc: number | null;
  diff: number | null;
  pValue: number | null;
  /** the significance level it was judged at (absent in cards of gates from before it was kept) */
  alpha?: number;
  passed: boolean;
  skipped?: string;
  /** rows compared and excluded (the champion comparison: only rows neither model had seen) */
  rows?: number;
  excluded?: number;
  /** recorded for trends, not gating */
  informational?: boolean;
  detail: string;
}

export interface CardLineage {
  runId: string;
  workflowId: string | null;
  configHash: string | null;
  codeVersion: string | null;
  dataSha256: string | null;
  params: Record<string, unknown> | null;
  seed: number | null;
  backend: string | null;
  cutoff: string | null;
  horizonDays: number | null;
  source?: 'events' | 'table' | null;
  features?: string[] | null;
  /** how the model was chosen among the trials (the search's selection rule) */
  selection?: string | null;
  /** the model family: 'mlp', 'sequence', 'ensemble', or 'logistic' when the baseline won */
  family?: string | null;
  /** an ensemble's member trials, in the order they were chosen on validation */
  members?: string[] | null;
  /** an ensemble's validation ROC-AUC gain over its first member alone, with its noise (absent in older cards) */
  ensembleGain?: EnsembleGain | null;
}

export interface SplitSummary {
  rows: number;
  positiveRate: number | null;
}

/** One ledger stage of ml.data_quality: rows in/out and quarantined counts per reason. */
export interface QualityStage {
  stage: string;
  rowsIn: number;
  rowsOut: number;
  quarantined: Record<string, number>;
}

export interface DataSummary {
  splits: Partial<Record<'train' | 'val' | 'test', SplitSummary>>;
  quality: QualityStage[];
}

export interface ModelCardInput {
  modelName: string;
  /** null while the model is evaluated but not (yet) registered */
  version: number | null;
  /** ISO time the card was made; shown on the page */
  createdAt: string | null;
  report: Pick<EvaluationReport, 'metrics' | 'ci95' | 'bootstrap' | 'deciles' | 'curves' | 'segments'>;
  gate: { blessed: boolean; reasons: string[]; checks: GateCheck[]; comparisons: CardComparison[] };
  featureImportance: FeatureImportance[];
  data: DataSummary;
  lineage: CardLineage;
}

/** The JSON twin of the page: every number the page shows, and everything needed to render it again. */
export interface ModelCard {
  schema: typeof MODEL_CARD_SCHEMA;
  model: { name: string; version: number | null };
  createdAt: string | null;
  blessed: boolean;
  metrics: EvaluationMetrics;
  ci95: EvaluationReport['ci95'];
  bootstrap: BootstrapOptions | null;
  curves: { roc: [number, number][]; pr: [number, number][]; calibration: ReliabilityPoint[] };
  deciles: DecileRow[];
  segments: Record<string, Record<string, SegmentMetrics>>;
  featureImportance: FeatureImportance[];
  data: DataSummary;
  gate: { blessed: boolean; reasons: string[]; checks: GateCheck[]; comparisons: CardComparison[] };
  lineage: CardLineage;
}

export class ModelCardError extends Error {
  readonly type = 'InvalidModelCard';
}

const fail = (what: string): never => {
  throw new ModelCardError(`model card: ${what}`);
};

/** Evenly spaced, first and last kept (the same rule as ml/evaluation.ts). */
function downsample<T>(points: T[], max: number): T[] {
  if (points.length <= max) return points;
  return Array.from({ length: max }, (_, k) => points[Math.round((k * (points.length - 1)) / (max - 1))]);
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** Validates the input and returns the card's JSON (non-finite numbers, e.g. a skipped comparison's NaN, as null). */
export function buildModelCard(input: ModelCardInput): ModelCard {
  if (!input || typeof input !== 'object') fail('input must be an object');
  if (typeof input.modelName !== 'string' || !input.modelName) fail(`modelName must be a non-empty string, got ${JSON.stringify(input.modelName)}`);
  if (input.version !== null && !(Number.isInteger(input.version) && input.version >= 1)) {
    fail(`version must be a positive integer or null (not registered), got ${JSON.stringify(input.version)}`);
  }
  if (typeof input.lineage?.runId !== 'string' || !input.lineage.runId) fail('lineage.runId must be a non-empty string');
  const r = input.report;
  if (!r?.metrics || typeof r.metrics.rocAuc !== 'number') fail('report.metrics is missing (pass an EvaluationReport from ml/evaluation.ts)');
  for (const c of ['roc', 'pr', 'calibration'] as const) {
    if (!Array.isArray(r.curves?.[c])) fail(`report.curves.${c} must be an array`);
  }
  if (!Array.isArray(r.deciles)) fail('report.deciles must be an array');
  if (!Array.isArray(input.featureImportance)) fail('featureImportance must be an array (empty when it was not computed)');
  if (!input.gate || !Array.isArray(input.gate.checks) || !Array.isArray(input.gate.comparisons)) fail('gate.checks and gate.comparisons must be arrays');
  return {
    schema: MODEL_CARD_SCHEMA,
    model: { name: input.modelName, version: input.version },
    createdAt: input.createdAt ?? null,
    blessed: input.gate.blessed,
    metrics: { ...r.metrics },
    ci95: { ...r.ci95 },
    bootstrap: r.bootstrap ? { ...r.bootstrap } : null,
    curves: {
      roc: downsample(r.curves.roc, CARD_CURVE_POINTS).map(([x, y]) => [x, y]),
      pr: downsample(r.curves.pr, CARD_CURVE_POINTS).map(([x, y]) => [x, y]),
      calibration: r.curves.calibration.map((p) => ({ ...p })),
    },
    deciles: r.deciles.map((d) => ({ ...d })),
    segments: r.segments ?? {},
    featureImportance: input.featureImportance.map((f) => ({ feature: f.feature, kind: f.kind, aucDrop: f.aucDrop })),
    data: { splits: { ...input.data.splits }, quality: input.data.quality.map((q) => ({ ...q, quarantined: { ...q.quarantined } })) },
    gate: {
      blessed: input.gate.blessed,
      reasons: [...input.gate.reasons],
      checks: input.gate.checks.map((c) => ({ ...c })),
      comparisons: input.gate.comparisons.map((c) => ({
        ...c,
        challengerAuc: num(c.challengerAuc),
        otherAuc: num(c.otherAuc),
        diff: num(c.diff),
        pValue: num(c.pValue),
      })),
    },
    lineage: { ...input.lineage },
  };
}

/** Builds the card and renders its page. */
export async function renderModelCard(input: ModelCardInput): Promise<{ html: string; json: ModelCard }> {
  const json = buildModelCard(input);
  return { html: await renderModelCardHtml(json), json };
}

// ---------------------------------------------------------------------------------------------------------------
// Charts

const BLUE = '#4c78a8';
const ORANGE = '#f58518';
const GREY = '#888888';
const unit = { type: 'quantitative' as const, scale: { domain: [0, 1] } };

function chartSpecs(card: ModelCard): Record<ChartName, TopLevelSpec | null> {
  const m = card.metrics;
  const diagonal = [{ x: 0, y: 0 }, { x: 1, y: 1 }];
  const roc: TopLevelSpec = {
    width: 300,
    height: 300,
    layer: [
      {
        name: 'chance',
        data: { values: diagonal },
        mark: { type: 'line', color: GREY, strokeDash: [4, 4] },
        encoding: { x: { field: 'x', ...unit, title: 'false positive rate' }, y: { field: 'y', ...unit, title: 'true positive rate' } },
      },
      {
        name: 'roc',
        data: { values: card.curves.roc.map(([fpr, tpr], i) => ({ i, fpr, tpr })) },
        mark: { type: 'line', color: BLUE, strokeWidth: 2 },
        encoding: { x: { field: 'fpr', ...unit }, y: { field: 'tpr', ...unit }, order: { field: 'i', type: 'quantitative' } },
      },
    ],
  };
  const pr: TopLevelSpec = {
    width: 300,
    height: 300,
    layer: [
      {
        name: 'baseRate',
        data: { values: [{ rate: m.positiveRate }] },
        mark: { type: 'rule', color: GREY, strokeDash: [4, 4] },
        encoding: { y: { field: 'rate', ...unit } },
      },
      {
        name: 'pr',
        data: { values: card.curves.pr.map(([recall, precision], i) => ({ i, recall, precision })) },
        mark: { type: 'line', color: BLUE, strokeWidth: 2, interpolate: 'step-before' },
        encoding: {
          x: { field: 'recall', ...unit, title: 'recall' },
          y: { field: 'precision', ...unit, title: 'precision' },
          order: { field: 'i', type: 'quantitative' },
        },
      },
    ],
  };
  const bins = card.curves.calibration.map((p) => ({ predicted: p.meanPredicted, observed: p.observedRate, count: p.count, bin: p.bin }));
  const calibration: TopLevelSpec = {
    width: 300,
    height: 300,
    layer: [
      {
        name: 'identity',
        data: { values: diagonal },
        mark: { type: 'line', color: GREY, strokeDash: [4, 4] },
        encoding: { x: { field: 'x', ...unit, title: 'mean predicted probability' }, y: { field: 'y', ...unit, title: 'observed positive rate' } },
      },
      {
        name: 'calibrationLine',
        data: { values: bins },
        mark: { type: 'line', color: BLUE },
        encoding: { x: { field: 'predicted', ...unit }, y: { field: 'observed', ...unit }, order: { field: 'bin', type: 'quantitative' } },
      },
      {
        name: 'calibration',
        data: { values: bins },
        mark: { type: 'point', filled: true, color: BLUE, opacity: 0.9 },
        encoding: {
          x: { field: 'predicted', ...unit },
          y: { field: 'observed', ...unit },
          size: { field: 'count', type: 'quantitative', title: 'rows in bin', scale: { range: [20, 300] } },
        },
      },
    ],
  };
  const deciles = card.deciles.map((d) => ({ decile: d.decile, lift: d.lift, capture: d.cumulativeCapture }));
  const x = { field: 'decile', type: 'ordinal' as const, title: 'decile (1 = highest scores)', axis: { labelAngle: 0 } };
  const lift: TopLevelSpec = {
    width: 320,
    height: 300,
    data: { values: deciles },
    layer: [
      {
        layer: [
          {
            name: 'lift',
            mark: { type: 'bar', color: BLUE },
            encoding: { x, y: { field: 'lift', type: 'quantitative', title: 'lift (decile rate / base rate)' } },
          },
          { name: 'liftOne', data: { values: [{ one: 1 }] }, mark: { type: 'rule', color: GREY, strokeDash: [4, 4] }, encoding: { y: { field: 'one', type: 'quantitative' } } },
        ],
      },
      {
        layer: [
          {
            name: 'capture',
            mark: { type: 'line', color: ORANGE, point: { color: ORANGE } },
            encoding: {
              x,
              y: { field: 'capture', ...unit, title: 'cumulative capture of positives', axis: { orient: 'right', format: '%', titleColor: ORANGE } },
            },
          },
        ],
      },
    ],
    resolve: { scale: { y: 'independent' } },
  };
  const top = card.featureImportance.slice(0, CARD_TOP_FEATURES).map((f, i) => ({ rank: i + 1, feature: f.feature, drop: f.aucDrop }));
  const importance: TopLevelSpec | null = top.length
    ? {
        width: 300,
        height: { step: 16 },
        data: { values: top },
        layer: [
          {
            name: 'importance',
            mark: { type: 'bar', color: BLUE },
            encoding: {
              y: { field: 'feature', type: 'nominal', sort: { field: 'rank', order: 'ascending' }, title: null, axis: { labelLimit: 260 } },
              x: { field: 'drop', type: 'quantitative', title: 'ROC-AUC drop when shuffled (validation)' },
            },
          },
        ],
      }
    : null;
  return { roc, pr, calibration, lift, importance };
}

/** One Vega-Lite spec to static SVG; element ids are prefixed so that several inlined charts never share one. */
async function toSvg(spec: TopLevelSpec, prefix: string): Promise<string> {
  // loaded on first use: importing vega takes about a second, which every worker and test would pay at start
  const [vega, { compile }] = await Promise.all([import('vega'), import('vega-lite')]);
  const compiled = compile({ ...spec, config: { font: 'sans-serif', view: { stroke: '#ddd' } } } as TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    return svg
      .replace(/\sid="([^"]+)"/g, ` id="${prefix}-$1"`)
      .replace(/url\(#([^)]+)\)/g, `url(#${prefix}-$1)`)
      .replace(/href="#([^"]+)"/g, `href="#${prefix}-$1"`);
  } finally {
    view.finalize();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Page

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const DASH = '—';
const f4 = (v: number | null | undefined) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(4) : DASH);
const pct = (v: number | null | undefined, digits = 2) => (typeof v === 'number' && Number.isFinite(v) ? `${(v * 100).toFixed(digits)} %` : DASH);
const int = (v: number | null | undefined) => (typeof v === 'number' && Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : DASH);
const interval = (ci: [number, number] | null | undefined) => (ci ? `[${f4(ci[0])}, ${f4(ci[1])}]` : DASH);

const e = escapeHtml;
const td = (v: unknown, cls?: string) => `<td${cls ? ` class="${cls}"` : ''}>${e(v)}</td>`;
const row = (cells: string[]) => `<tr>${cells.join('')}</tr>`;
const table = (id: string, head: string[], rows: string[], caption?: string) =>
  `<table id="${id}">${caption ? `<caption>${e(caption)}</caption>` : ''}<thead><tr>${head.map((h) => `<th>${e(h)}</th>`).join('')}</tr></thead>` +
  `<tbody>${rows.join('') || `<tr><td colspan="${head.length}">${DASH}</td></tr>`}</tbody></table>`;
const verdict = (passed: boolean, skipped?: boolean) =>
  skipped ? '<td class="verdict skip">SKIPPED</td>' : passed ? '<td class="verdict pass">PASS</td>' : '<td class="verdict fail">FAIL</td>';

function metricsTable(card: ModelCard): string {
  const m = card.metrics;
  const ci = card.ci95;
  const boot = card.bootstrap ? `stratified bootstrap, ${card.bootstrap.samples} samples` : 'bootstrap off';
  const rows = [
    row([td('ROC-AUC'), td(f4(m.rocAuc), 'num'), td(interval(ci.rocAuc), 'num'), td(interval(ci.rocAucDeLong), 'num')]),
    row([td('PR-AUC (average precision)'), td(f4(m.prAuc), 'num'), td(interval(ci.prAuc), 'num'), td(DASH)]),
    row([td('log loss'), td(f4(m.logLoss), 'num'), td(DASH), td(DASH)]),
    row([td('Brier score'), td(f4(m.brier), 'num'), td(DASH), td(DASH)]),
    row([td('expected calibration error (10 bins)'), td(f4(m.ece), 'num'), td(DASH), td(DASH)]),
    row([td(`F1 at threshold ${f4(m.threshold)}`), td(f4(m.f1), 'num'), td(DASH), td(DASH)]),
    row([td('precision'), td(f4(m.precision), 'num'), td(DASH), td(DASH)]),
    row([td('recall'), td(f4(m.recall), 'num'), td(DASH), td(DASH)]),
    row([td('threshold (max F1 on validation)'), td(f4(m.threshold), 'num'), td(DASH), td(DASH)]),
    row([td('positive rate (base rate)'), td(pct(m.positiveRate), 'num'), td(DASH), td(DASH)]),
    row([td('predicted positive rate'), td(pct(m.predictedPositiveRate), 'num'), td(DASH), td(DASH)]),
    row([td('test rows / positives'), td(`${int(m.rows)} / ${int(m.positives)}`, 'num'), td(DASH), td(DASH)]),
  ];
  return table('metrics', ['metric', 'value', `95 % interval (${boot})`, '95 % interval (DeLong)'], rows);
}

function decilesTable(card: ModelCard): string {
  return table(
    'deciles',
    ['decile', 'rows', 'positives', 'positive rate', 'lift', 'cumulative capture'],
    card.deciles.map((d) => row([td(d.decile, 'num'), td(int(d.rows), 'num'), td(int(d.positives), 'num'), td(pct(d.rate), 'num'), td(f4(d.lift), 'num'), td(pct(d.cumulativeCapture), 'num')])),
  );
}

function segmentsTable(card: ModelCard): string {
  const rows: string[] = [];
  for (const [segment, values] of Object.entries(card.segments)) {
    for (const [value, s] of Object.entries(values)) {
      rows.push(row([td(segment), td(value), td(int(s.rows), 'num'), td(int(s.positives), 'num'), td(f4(s.rocAuc), 'num'), td(f4(s.prAuc), 'num'), td(f4(s.logLoss), 'num'), td(f4(s.brier), 'num')]));
    }
  }
  return table('segments', ['segment', 'value', 'rows', 'positives', 'ROC-AUC', 'PR-AUC', 'log loss', 'Brier'], rows);
}

function dataTables(card: ModelCard): string {
  const splits = (['train', 'val', 'test'] as const)
    .filter((s) => card.data.splits[s])
    .map((s) => row([td(s), td(int(card.data.splits[s]!.rows), 'num'), td(pct(card.data.splits[s]!.positiveRate), 'num')]));
  const reasons = (q: Record<string, number>) =>
    Object.entries(q)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k}: ${int(n)}`)
      .join(', ') || 'none';
  const stages = card.data.quality.map((q) => {
    const total = Object.values(q.quarantined).reduce((a, b) => a + b, 0);
    return row([td(q.stage), td(int(q.rowsIn), 'num'), td(int(q.rowsOut), 'num'), td(int(total), 'num'), td(reasons(q.quarantined))]);
  });
  return (
    table('splits', ['split', 'rows', 'positive rate'], splits, 'rows per split') +
    table('quality', ['stage', 'rows in', 'rows out', 'quarantined', 'quarantined per reason'], stages, 'data quality ledger (ml.data_quality)')
  );
}

function gateTable(card: ModelCard): string {
  const g = card.gate;
  const checks = g.checks.map((c) =>
    row([td('threshold'), td(`${c.metric} ${c.op} ${c.threshold}`), td(f4(c.value), 'num'), verdict(c.passed), td(`${c.metric} = ${f4(c.value)}, required ${c.op} ${c.threshold}`)]),
  );
  const comparisons = g.comparisons.map((c) =>
    row([
      td(c.informational ? 'comparison (not gating)' : 'comparison'),
      td(`${c.check} (vs ${c.against})` + (c.rows !== undefined ? `, ${c.rows} rows` + (c.excluded ? `, ${c.excluded} excluded as seen` : '') : '')),
      td(c.diff === null ? DASH : `${f4(c.challengerAuc)} vs ${f4(c.otherAuc)} (diff ${f4(c.diff)}, p ${c.pValue === null ? DASH : formatPValue(c.pValue, c.alpha)})`, 'num'),
      verdict(c.passed, c.skipped !== undefined),
      td(c.detail),
    ]),
  );
  const reasons = g.reasons.length
    ? `<ul class="reasons">${g.reasons.map((r) => `<li>${e(r)}</li>`).join('')}</ul>`
    : '<p>All checks and comparisons passed.</p>';
  return table('gate', ['kind', 'check', 'value', 'verdict', 'detail'], [...checks, ...comparisons]) + reasons;
}

/**
 * The lineage's feature names; an event-mode run's last-N-events columns (db/sequences.ts) are summed up in one
 * line instead of 4N names (the JSON keeps every name).
 */
function featureList(names: string[], events: boolean): string {
  const sequence = events ? names.filter((n) => sequenceColumnOf(n)) : [];
  const plain = sequence.length ? names.filter((n) => !sequenceColumnOf(n)) : names;
  const length = Math.max(0, ...sequence.map((n) => sequenceColumnOf(n)!.position));
  const summary = `${plain.length} features` + (sequence.length ? ` + the last ${length} events (${sequence.length} sequence columns)` : '');
  const list = plain.map((f) => `<code>${e(f)}</code>`).join(', ');
  const seq = sequence.length ? `<p>sequence: <code>seq_1_…</code> to <code>${e(`seq_${length}_…`)}</code>, most recent first</p>` : '';
  return `<details><summary>${e(summary)}</summary><p>${list}</p>${seq}</details>`;
}

function lineageTable(card: ModelCard): string {
  const l = card.lineage;
  const params = l.params
    ? `<ul class="params">${Object.entries(l.params)
        .map(([k, v]) => `<li><code>${e(k)}</code>: <code>${e(typeof v === 'string' ? v : JSON.stringify(v))}</code></li>`)
        .join('')}</ul>`
    : DASH;
  const features = l.features?.length ? featureList(l.features, l.source === 'events') : DASH;
  const kv = (k: string, v: string) => `<tr><th scope="row">${e(k)}</th><td>${v}</td></tr>`;
  const code = (v: string | number | null | undefined) => (v === null || v === undefined || v === '' ? DASH : `<code>${e(v)}</code>`);
  return (
    `<table id="lineage"><tbody>` +
    kv('model', `${code(card.model.name)} ${card.model.version === null ? 'not registered' : `version ${card.model.version}`}`) +
    kv('run id', code(l.runId)) +
    kv('workflow id', code(l.workflowId)) +
    kv('config hash', code(l.configHash)) +
    (l.family ? kv('model family', code(l.family)) : '') +
    (l.members?.length ? kv('ensemble members', l.members.map((m) => code(m)).join(', ')) : '') +
    (l.ensembleGain ? kv('ensemble vs its first member (validation ROC-AUC; members chosen on those rows)', e(formatEnsembleGain(l.ensembleGain))) : '') +
    (l.selection ? kv('model selection', e(l.selection)) : '') +
    kv('code version', code(l.codeVersion)) +
    kv('data sha256', code(l.dataSha256)) +
    kv('source', code(l.source ?? null)) +
    kv('cutoff', code(l.cutoff)) +
    kv('horizon (days)', code(l.horizonDays)) +
    kv('training seed', code(l.seed)) +
    kv('backend', code(l.backend)) +
    kv('hyperparameters', params) +
    kv('features', features) +
    `</tbody></table>`
  );
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0 auto;max-width:1180px;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a;margin:0 0 12px}.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;font-size:13px;vertical-align:middle}
.badge.pass{background:#dafbe1;color:#116329}.badge.fail{background:#ffebe9;color:#a40e26}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}thead th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.verdict{font-weight:700}.pass{color:#116329}.fail{color:#a40e26}.skip{color:#9a6700}
.charts{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0;border:1px solid #d0d7de;border-radius:6px;padding:8px;background:#fff}
figure svg{max-width:100%;height:auto;display:block}figcaption{font-weight:600;margin-bottom:6px;max-width:420px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;word-break:break-all}ul{margin:4px 0;padding-left:20px}
`;

/** Renders a card's JSON to one self-contained HTML page (inline CSS and SVG, no script, no external resource). */
export async function renderModelCardHtml(card: ModelCard): Promise<string> {
  const specs = chartSpecs(card);
  const m = card.metrics;
  const captions: Record<ChartName, string> = {
    roc: `ROC curve — AUC ${f4(m.rocAuc)}; dashed: chance`,
    pr: `Precision–recall curve — average precision ${f4(m.prAuc)}; dashed: base rate ${pct(m.positiveRate)}`,
    calibration: `Calibration — predicted vs observed per bin (ECE ${f4(m.ece)}); dashed: perfect calibration`,
    lift: 'Lift per decile (bars; dashed: lift 1) and cumulative capture of positives (line)',
    importance: `Permutation feature importance — top ${Math.min(CARD_TOP_FEATURES, card.featureImportance.length)} of ${card.featureImportance.length}`,
  };
  const figures: string[] = [];
  for (const name of CHARTS) {
    const spec = specs[name];
    const body = spec ? await toSvg(spec, `chart-${name}`) : '<p>Not computed for this run (evaluation.importanceRepeats = 0).</p>';
    figures.push(`<figure data-chart="${name}" id="chart-${name}"><figcaption>${e(captions[name])}</figcaption>${body}</figure>`);
  }
  const name = card.model.name;
  const version = card.model.version === null ? '(not registered)' : `v${card.model.version}`;
  const title = `Model card — ${name} ${version}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>${e(title)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>${e(title)} <span class="badge ${card.blessed ? 'pass' : 'fail'}" id="verdict">${card.blessed ? 'blessed' : 'rejected'}</span></h1>
<p class="sub">run <code>${e(card.lineage.runId)}</code>${card.createdAt ? ` · card made ${e(card.createdAt)}` : ''} · evaluated once on the held-out test split (${int(m.rows)} rows, ${int(m.positives)} positives)</p>
</header>
<section id="section-metrics"><h2>Metrics</h2>${metricsTable(card)}</section>
<section id="section-charts"><h2>Charts</h2><div class="charts">${figures.join('\n')}</div></section>
<section id="section-lift"><h2>Lift by decile</h2>${decilesTable(card)}</section>
<section id="section-segments"><h2>Segments</h2>${segmentsTable(card)}</section>
<section id="section-data"><h2>Data</h2>${dataTables(card)}</section>
<section id="section-gate"><h2>Gate verdicts</h2>${gateTable(card)}</section>
<section id="section-lineage"><h2>Lineage</h2>${lineageTable(card)}</section>
</body>
</html>
`;
}
