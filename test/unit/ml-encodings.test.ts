import { describe, expect, it } from 'vitest';
import { fitPreprocessor, pleEdges, stepWidth, transform, withEncoding, type NumericStep } from '../../ml/preprocess.js';
import { layoutOf } from '../../ml/model.js';
import { encodingOf, sampleTrials, validateSearchSpace } from '../../ml/search.js';
import { DEFAULT_SEARCH_SPACE, type FeatureSpec, type Frame } from '../../ml/types.js';

const specs: FeatureSpec[] = [
  { name: 'x', kind: 'numeric' },
  { name: 'count', kind: 'numeric' },
  { name: 'region', kind: 'categorical' },
];
const n = 1000;
// x: uniform 0..999 with one gap; count: mostly zeros (ties), a few larger values
const train: Frame = {
  ids: Array.from({ length: n }, (_, i) => `u${i}`),
  label: Uint8Array.from({ length: n }, (_, i) => i % 2),
  numeric: {
    x: Float64Array.from({ length: n }, (_, i) => (i === 7 ? NaN : i)),
    count: Float64Array.from({ length: n }, (_, i) => (i % 10 === 0 ? i % 7 : 0)),
  },
  categorical: { region: Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 'north' : 'south')) },
};
const probe = (x: number[], count: number[]): Frame => ({
  ids: x.map((_, i) => `p${i}`),
  label: new Uint8Array(x.length),
  numeric: { x: Float64Array.from(x), count: Float64Array.from(count) },
  categorical: { region: x.map(() => 'north') },
});
const pre = fitPreprocessor(train, specs);
const colOf = (m: { x: Float32Array; cols: number; featureNames: string[] }, name: string, row: number) => m.x[row * m.cols + m.featureNames.indexOf(name)];

describe('numeric encodings', () => {
  it('keeps 129 train quantiles per numeric step and leaves the standard encoding as it was', () => {
    const x = pre.steps[0] as NumericStep;
    expect(x.quantiles).toHaveLength(129);
    expect(x.quantiles![0]).toBeLessThanOrEqual(x.quantiles![128]);
    expect(pre.encoding).toBeUndefined();
    expect(withEncoding(pre, { numeric: 'standard' })).toEqual(pre);
  });

  it('ple: one column per distinct quantile bin, 0 below, 1 above, linear inside; ties merge bins', () => {
    const p = withEncoding(pre, { numeric: 'ple', bins: 8 });
    const xs = p.steps[0] as NumericStep;
    const edges = pleEdges(xs, p.encoding!);
    expect(edges).toHaveLength(9); // x has distinct quantiles
    expect(pleEdges(p.steps[1] as NumericStep, p.encoding!).length).toBeLessThan(9); // count: mostly zeros
    expect(p.featureNames.slice(0, 9)).toEqual([...Array.from({ length: 8 }, (_, t) => `x__ple${t + 1}`), 'x__missing']);
    const mid = (edges[2] + edges[3]) / 2;
    const m = transform(p, probe([-5, mid, 5000, NaN], [0, 0, 0, 0]));
    expect(m.cols).toBe(p.featureNames.length);
    expect(Array.from({ length: 8 }, (_, t) => colOf(m, `x__ple${t + 1}`, 0))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(Array.from({ length: 8 }, (_, t) => colOf(m, `x__ple${t + 1}`, 1))).toEqual([1, 1, 0.5, 0, 0, 0, 0, 0]);
    expect(Array.from({ length: 8 }, (_, t) => colOf(m, `x__ple${t + 1}`, 2))).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect(colOf(m, 'x__missing', 3)).toBe(1);
    expect(stepWidth(xs, p.encoding)).toBe(9);
    // the categorical block moves right by the PLE columns, and the model's layout follows
    const region = layoutOf(p).blocks[0];
    expect(p.featureNames[region.start]).toBe('region=south');
  });

  it('quantile: the train quantile spread over [-√3, √3]; robust: median-centred, softly clipped', () => {
    const q = transform(withEncoding(pre, { numeric: 'quantile' }), probe([-1, 499.5, 2000], [0, 0, 0]));
    expect(colOf(q, 'x', 0)).toBeCloseTo(-Math.sqrt(3), 5);
    expect(Math.abs(colOf(q, 'x', 1))).toBeLessThan(0.02);
    expect(colOf(q, 'x', 2)).toBeCloseTo(Math.sqrt(3), 5);
    const r = transform(withEncoding(pre, { numeric: 'robust' }), probe([-1e9, 500, 1e9], [0, 0, 0]));
    expect(Math.abs(colOf(r, 'x', 1))).toBeLessThan(0.01);
    // the clip to train quantiles bounds the raw value first, the soft clip keeps |z| below 3
    for (const row of [0, 2]) expect(Math.abs(colOf(r, 'x', row))).toBeLessThan(3);
  });

  it('refuses an encoding its preprocessor cannot apply, naming the feature', () => {
    const old = { ...pre, steps: pre.steps.map((s) => (s.kind === 'numeric' ? { ...s, quantiles: undefined } : s)) };
    expect(() => withEncoding(old, { numeric: 'ple', bins: 8 })).toThrow(/lacks for 'x'/);
    expect(() => withEncoding(pre, { numeric: 'ple', bins: 1 })).toThrow(/pleBins: expected an integer in \[2, 128\]/);
  });

  it('is sampled from its own stream: adding encodings to a space changes no other sampled value', () => {
    const { numericEncoding: _e, pleBins: _b, ...space } = DEFAULT_SEARCH_SPACE;
    const plain = sampleTrials(space, 12, 3);
    const withEnc = sampleTrials({ ...space, numericEncoding: ['standard', 'ple'], pleBins: [8, 16] }, 12, 3);
    expect(withEnc.map(({ numericEncoding: _e, pleBins: _b, ...rest }) => rest)).toEqual(plain);
    expect(new Set(withEnc.map((t) => t.numericEncoding))).toEqual(new Set(['standard', 'ple']));
    for (const t of withEnc) expect(t.numericEncoding === 'ple' ? [8, 16] : [undefined]).toContain(t.pleBins);
    expect(encodingOf({})).toEqual({ numeric: 'standard' });
    expect(encodingOf({ numericEncoding: 'ple' })).toEqual({ numeric: 'ple', bins: 16 });
    expect(validateSearchSpace({ ...space, numericEncoding: ['fancy' as never], pleBins: [0] })).toEqual([
      "numericEncoding: expected a non-empty list of 'standard' | 'quantile' | 'robust' | 'ple' | 'periodic', got [\"fancy\"]",
      'pleBins: expected a non-empty list of integers in [2, 128], got [0]',
    ]);
  });
});
