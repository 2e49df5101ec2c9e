import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { eventFeatureQuery, eventScoringQuery } from '../../db/features.js';
import {
  checkSequenceLength, MAX_SEQUENCE_LENGTH, SEQUENCE_FIELDS, sequenceColumnOf, sequenceFeatureSpecs,
} from '../../db/sequences.js';
import { parsePipelineConfig } from '../../pipeline/config.js';

const cutoff = new Date('2026-03-01T00:00:00Z');
const now = new Date('2026-03-20T00:00:00Z');
// The feature SQL as it was before sequences existed: with the option off, not one byte may differ.
const fixture = (name: string) => readFileSync(new URL(`../fixtures/feature-sql/${name}`, import.meta.url), 'utf8');

describe('sequenceFeatureSpecs', () => {
  it('lists seq_<i>_<field> position-major, most recent first, with kind and position', () => {
    expect(sequenceFeatureSpecs(0)).toEqual([]);
    expect(sequenceFeatureSpecs(2)).toEqual([
      { name: 'seq_1_event_type', kind: 'categorical', sequence: { position: 1, field: 'event_type' } },
      { name: 'seq_1_category', kind: 'categorical', sequence: { position: 1, field: 'category' } },
      { name: 'seq_1_price', kind: 'numeric', sequence: { position: 1, field: 'price' } },
      { name: 'seq_1_hours_since_prev', kind: 'numeric', sequence: { position: 1, field: 'hours_since_prev' } },
      { name: 'seq_2_event_type', kind: 'categorical', sequence: { position: 2, field: 'event_type' } },
      { name: 'seq_2_category', kind: 'categorical', sequence: { position: 2, field: 'category' } },
      { name: 'seq_2_price', kind: 'numeric', sequence: { position: 2, field: 'price' } },
      { name: 'seq_2_hours_since_prev', kind: 'numeric', sequence: { position: 2, field: 'hours_since_prev' } },
    ]);
    expect(sequenceFeatureSpecs(MAX_SEQUENCE_LENGTH)).toHaveLength(MAX_SEQUENCE_LENGTH * SEQUENCE_FIELDS.length);
  });

  it('reads a column name back, and nothing else', () => {
    expect(sequenceColumnOf('seq_12_hours_since_prev')).toEqual({ position: 12, field: 'hours_since_prev' });
    expect(sequenceColumnOf('seq_0_price')).toBeNull();
    expect(sequenceColumnOf('seq_1_brand')).toBeNull();
    expect(sequenceColumnOf('views_30d')).toBeNull();
  });

  it('refuses a length outside 0..MAX_SEQUENCE_LENGTH with a typed error naming the key', () => {
    for (const bad of [-1, 1.5, MAX_SEQUENCE_LENGTH + 1, Number.NaN]) {
      expect(() => sequenceFeatureSpecs(bad)).toThrow(expect.objectContaining({ type: 'InvalidConfig' }));
    }
    expect(() => checkSequenceLength('3')).toThrow(/source\.sequenceLength must be an integer from 0 \(off\) to 64, got string/);
    expect(() => eventFeatureQuery({ cutoff, horizonDays: 7, now, sequenceLength: 65 })).toThrow(/sequenceLength must be an integer from 0/);
    expect(() => eventScoringQuery({ cutoff, activeDays: 7, now, sequenceLength: -1 })).toThrow(/sequenceLength/);
  });
});

describe('the feature queries with sequences off', () => {
  it('are byte-identical to the SQL from before the option, absent or 0', () => {
    for (const sequenceLength of [undefined, 0]) {
      expect(eventFeatureQuery({ cutoff, horizonDays: 7, now, sequenceLength }).sql).toBe(fixture('train.sql'));
      expect(eventScoringQuery({ cutoff, activeDays: 7, now, sequenceLength }).sql).toBe(fixture('score.sql'));
      const inline = eventFeatureQuery({ cutoff, horizonDays: 7, now, openedAt: new Date('2026-01-01T00:00:00Z'), inline: true, sequenceLength });
      expect(inline.sql).toBe(fixture('train-inline.sql'));
    }
  });

  it('with sequences on, add only the aggregates and the columns, still in one pass over the events', () => {
    const off = eventFeatureQuery({ cutoff, horizonDays: 7, now }).sql;
    const on = eventFeatureQuery({ cutoff, horizonDays: 7, now, sequenceLength: 3 }).sql;
    expect(on.match(/FROM shop\.events/g)).toHaveLength(1);
    expect(on).not.toMatch(/OVER\s*\(/); // no window function
    // every sequence aggregate is filtered to events strictly before the cutoff
    const aggs = on.match(/array_agg\(v\.\w+ ORDER BY [^)]*\) FILTER \(WHERE [^)]*\)\)\[1:\d+\]/g)!;
    expect(aggs).toHaveLength(4);
    for (const a of aggs) expect(a).toContain('FILTER (WHERE v.occurred_at < $1::timestamptz)');
    // removing the additions gives back the text without them
    const stripped = on
      .replace(/,\n {4}\(array_agg[\s\S]*? AS seq_times/, '')
      .replace(/,\n {2}a\.seq_event_types\[1\][\s\S]*?AS seq_3_hours_since_prev/, '');
    expect(stripped).toBe(off);
  });
});

describe('source.sequenceLength', () => {
  it('is optional (absent stays absent: earlier configs keep their hash) and bounded', () => {
    expect(parsePipelineConfig({ source: { kind: 'events' } }).source).not.toHaveProperty('sequenceLength');
    expect(parsePipelineConfig({ source: { kind: 'events', sequenceLength: 16 } }).source).toMatchObject({ sequenceLength: 16 });
    expect(() => parsePipelineConfig({ source: { kind: 'events', sequenceLength: 65 } })).toThrow(/source\.sequenceLength/);
    expect(() => parsePipelineConfig({ source: { kind: 'events', sequenceLength: 2.5 } })).toThrow(/source\.sequenceLength/);
    expect(() => parsePipelineConfig({ source: { kind: 'table', query: 'select 1 as id, true as y', entityKey: 'id', label: 'y', sequenceLength: 4 } }))
      .toThrow(/unknown key "source\.sequenceLength"/);
  });
});
