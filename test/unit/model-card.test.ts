import { describe, expect, it } from 'vitest';
import { CHARTS, ModelCardError, buildModelCard, escapeHtml, renderModelCard, type ModelCardInput } from '../../report/model-card.js';
import { evaluatedCardInput } from '../support/model-card-fixture.js';

/** The HTML of one `<figure data-chart="name">`. */
const figure = (html: string, name: string): string => {
  const m = html.match(new RegExp(`<figure data-chart="${name}"[^>]*>([\\s\\S]*?)</figure>`));
  expect(m, `figure ${name}`).not.toBeNull();
  return m![1];
};
/** Drawn items of a named Vega-Lite layer in an SVG string. */
const items = (svg: string, mark: string): number => {
  const m = svg.match(new RegExp(`<g class="[^"]*\\b${mark}_marks"[^>]*>([\\s\\S]*?)</g>`));
  return m ? (m[1].match(/<(path|line)\b/g) ?? []).length : 0;
};

const PAGE_TAGS = new Set(
  'html head meta title style body header h1 h2 p span code section table caption thead tbody tr th td div figure figcaption ul li details summary svg g path line rect text'.split(' '),
);

describe('model card', () => {
  const input = evaluatedCardInput();

  it('carries the evaluation, gate, data and lineage into the JSON unchanged (NaN of a skipped comparison as null)', async () => {
    const { json } = await renderModelCard(input);
    const r = input.report;
    expect(json.schema).toBe('propensity.model-card/v1');
    expect(json.model).toEqual({ name: 'propensity', version: null });
    expect(json.metrics).toEqual(r.metrics);
    expect(json.ci95).toEqual(r.ci95);
    expect(json.ci95.rocAuc![0]).toBeLessThan(r.metrics.rocAuc);
    expect(json.bootstrap).toEqual({ samples: 60, seed: 3 });
    expect(json.curves.roc).toEqual(r.curves.roc);
    expect(json.curves.roc.length).toBe(101); // the report's downsampled curve, kept as is
    expect(json.curves.pr).toEqual(r.curves.pr);
    expect(json.curves.calibration).toEqual(r.curves.calibration);
    expect(json.deciles).toEqual(r.deciles);
    expect(json.segments).toEqual(r.segments);
    expect(json.featureImportance).toEqual(input.featureImportance);
    expect(json.featureImportance).toHaveLength(25);
    expect(json.data).toEqual(input.data);
    expect(json.lineage).toEqual(input.lineage);
    expect(json.gate.checks).toEqual(input.gate.checks);
    expect(json.gate.comparisons[0]).toEqual(input.gate.comparisons[0]);
    expect(json.gate.comparisons[1]).toMatchObject({ challengerAuc: null, otherAuc: null, diff: null, pValue: null, passed: true, skipped: 'feature set changed' });
    // what lands in S3 is what the page was rendered from: a JSON round trip changes nothing
    expect(JSON.parse(JSON.stringify(json))).toEqual(json);
  });

  it('shows the same numbers on the page: metrics with their intervals, deciles, splits, quarantine counts, lineage', async () => {
    const { html, json } = await renderModelCard(input);
    const m = json.metrics;
    const metrics = html.match(/<table id="metrics">[\s\S]*?<\/table>/)![0];
    expect(metrics).toContain(`<td class="num">${m.rocAuc.toFixed(4)}</td>`);
    expect(metrics).toContain(`[${json.ci95.rocAuc![0].toFixed(4)}, ${json.ci95.rocAuc![1].toFixed(4)}]`);
    expect(metrics).toContain(`[${json.ci95.rocAucDeLong![0].toFixed(4)}, ${json.ci95.rocAucDeLong![1].toFixed(4)}]`);
    expect(metrics).toContain(`[${json.ci95.prAuc![0].toFixed(4)}, ${json.ci95.prAuc![1].toFixed(4)}]`);
    for (const v of [m.prAuc, m.logLoss, m.brier, m.ece, m.f1, m.precision, m.recall]) expect(metrics).toContain(`>${v.toFixed(4)}<`);
    const deciles = html.match(/<table id="deciles">[\s\S]*?<\/table>/)![0];
    expect(deciles.match(/<tr>/g)).toHaveLength(11); // header + 10 deciles
    expect(deciles).toContain(`>${json.deciles[0].lift.toFixed(4)}<`);
    const quality = html.match(/<table id="quality">[\s\S]*?<\/table>/)![0];
    expect(quality).toContain('duplicate_event_id: 400, negative_price: 34');
    expect(quality).toContain('>434<');
    expect(html.match(/<table id="splits">[\s\S]*?<\/table>/)![0]).toContain('>24,000<');
    const gate = html.match(/<table id="gate">[\s\S]*?<\/table>/)![0];
    expect(gate.match(/class="verdict pass"/g)).toHaveLength(2);
    expect(gate.match(/class="verdict skip"/g)).toHaveLength(1);
    const lineage = html.match(/<table id="lineage">[\s\S]*?<\/table>/)![0];
    for (const v of ['run-0000-fixture', 'train-propensity-2026-11-24', 'c0ffee', 'abc123', 'd'.repeat(64), '2026-11-09T00:00:00.000Z', 'wasm', '1234', '14']) {
      expect(lineage).toContain(`<code>${v}</code>`);
    }
    expect(lineage).toContain('not registered');
    expect(lineage).toContain('<code>learningRate</code>: <code>0.003</code>');
  });

  it("prints a comparison's p on the side of its own alpha that decided it", async () => {
    const [first, ...rest] = input.gate.comparisons;
    const card = (c: Partial<typeof first>) => renderModelCard({ ...input, gate: { ...input.gate, comparisons: [{ ...first, ...c }, ...rest] } });
    const gate = (html: string) => html.match(/<table id="gate">[\s\S]*?<\/table>/)![0];
    // two or three digits would print 0.010 / 0.0100, which reads as not below alpha 0.01
    expect(gate((await card({ pValue: 0.009996, alpha: 0.01 })).html)).toContain(', p 0.009996)');
    expect((await card({ pValue: 0.009996, alpha: 0.01 })).json.gate.comparisons[0].alpha).toBe(0.01);
    // a record from before alpha was kept is read at the default 0.05, where two digits say enough
    expect(gate((await card({ pValue: 0.009996 })).html)).toContain(', p 0.010)');
    expect(gate((await card({ pValue: 0.0004 })).html)).toContain(', p &lt; 0.001)');
  });

  it('draws every chart as inline SVG: ROC with the diagonal, PR with the base rate, calibration, 10 lift bars, top-20 importance', async () => {
    const { html, json } = await renderModelCard(input);
    for (const name of CHARTS) {
      expect(html.match(new RegExp(`<figure data-chart="${name}"`, 'g')), name).toHaveLength(1);
      expect(figure(html, name).match(/<svg\b/g), name).toHaveLength(1);
    }
    const roc = figure(html, 'roc');
    expect(items(roc, 'roc')).toBe(1);
    expect(roc.match(/roc_marks[\s\S]*?d="([^"]+)"/)![1].match(/L/g)!.length).toBe(json.curves.roc.length - 1);
    expect(items(roc, 'chance')).toBe(1);
    expect(items(figure(html, 'pr'), 'baseRate')).toBe(1);
    expect(items(figure(html, 'calibration'), 'calibration')).toBe(json.curves.calibration.length);
    expect(items(figure(html, 'calibration'), 'identity')).toBe(1);
    expect(items(figure(html, 'lift'), 'lift')).toBe(10);
    expect(items(figure(html, 'importance'), 'importance')).toBe(20);
    // self-contained: no script, no external resource, nothing to fetch
    expect(html).not.toMatch(/<script|<link|<img|<iframe|\bsrc=|url\(\s*['"]?https?:/i);
    // deterministic: the same input renders the same bytes
    expect((await renderModelCard(input)).html).toBe(html);
  });

  it('escapes hostile strings everywhere: model name, feature names, reasons, details, lineage, segment values', async () => {
    const evil = '<script>alert("x")</script>&<img src=x onerror=alert(1)>\'';
    const hostile: ModelCardInput = {
      ...input,
      modelName: evil,
      featureImportance: input.featureImportance.map((f, i) => (i === 0 ? { ...f, feature: evil } : f)),
      gate: {
        ...input.gate,
        blessed: false,
        reasons: [`threshold: ${evil}`],
        comparisons: input.gate.comparisons.map((c) => ({ ...c, against: evil, detail: evil })),
      },
      data: { ...input.data, quality: [{ stage: evil, rowsIn: 3, rowsOut: 2, quarantined: { [evil]: 1 } }] },
      report: { ...input.report, segments: { [evil]: { [evil]: input.report.segments.region.north } } },
      lineage: { ...input.lineage, codeVersion: evil, workflowId: evil, params: { [evil]: evil }, features: [evil] },
    };
    const { html, json } = await renderModelCard(hostile);
    expect(json.model.name).toBe(evil);
    // only the page's own elements, and no event-handler attribute on any of them
    const tags = new Set([...html.matchAll(/<([a-zA-Z][\w:-]*)/g)].map((m) => m[1].toLowerCase()));
    expect([...tags].filter((t) => !PAGE_TAGS.has(t))).toEqual([]);
    const attributes = [...html.matchAll(/<[a-zA-Z][\w:-]*((?:\s+[\w:-]+(?:="[^"]*")?)*)\s*\/?>/g)].flatMap((m) => [...m[1].replace(/="[^"]*"/g, '').matchAll(/\s([\w:-]+)/g)].map((a) => a[1]));
    expect(attributes.length).toBeGreaterThan(1000);
    expect(attributes.filter((a) => /^on/i.test(a))).toEqual([]);
    const escaped = escapeHtml(evil);
    expect(escaped).toBe('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&lt;img src=x onerror=alert(1)&gt;&#39;');
    expect(html.split(escaped).length - 1).toBeGreaterThanOrEqual(10);
    expect(html).toContain('class="badge fail"');
    // the feature name is data to Vega too: it comes out as escaped SVG text, not markup
    expect(figure(html, 'importance')).toContain('&lt;script&gt;');
  });

  it('keeps the importance figure without a chart when importance was not computed', async () => {
    const { html } = await renderModelCard({ ...input, featureImportance: [] });
    const imp = figure(html, 'importance');
    expect(imp).not.toContain('<svg');
    expect(imp).toContain('Not computed');
  });

  it("sums up an event-mode run's sequence columns in one line of the feature list; the JSON keeps every name", async () => {
    const seq = Array.from({ length: 8 }, (_, i) => ['event_type', 'category', 'price', 'hours_since_prev'].map((f) => `seq_${i + 1}_${f}`)).flat();
    const features = [...input.lineage.features!, ...seq];
    const { html, json } = await renderModelCard({ ...input, lineage: { ...input.lineage, features } });
    expect(html).toContain(`<summary>${input.lineage.features!.length} features + the last 8 events (32 sequence columns)</summary>`);
    expect(html).not.toContain('<code>seq_3_price</code>');
    expect(json.lineage.features).toEqual(features);
    // a table-mode query's own columns are listed as they are, whatever their names
    const table = await renderModelCard({ ...input, lineage: { ...input.lineage, source: 'table', features } });
    expect(table.html).toContain(`<summary>${features.length} features</summary>`);
    expect(table.html).toContain('<code>seq_3_price</code>');
  });

  it('rejects bad input with a typed error naming the field', () => {
    const bad = (patch: Partial<ModelCardInput>) => () => buildModelCard({ ...input, ...patch } as ModelCardInput);
    expect(bad({ version: 0 })).toThrow(ModelCardError);
    expect(bad({ version: 0 })).toThrow(/version must be a positive integer or null/);
    expect(bad({ modelName: '' })).toThrow(/modelName must be a non-empty string/);
    expect(bad({ lineage: { ...input.lineage, runId: '' } })).toThrow(/lineage\.runId/);
    expect(bad({ report: { ...input.report, curves: { ...input.report.curves, roc: undefined as never } } })).toThrow(/report\.curves\.roc must be an array/);
    try {
      bad({ version: 1.5 })();
    } catch (err) {
      expect((err as ModelCardError).type).toBe('InvalidModelCard');
    }
  });
});
