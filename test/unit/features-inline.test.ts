import { describe, expect, it } from 'vitest';
import {
  cutoffCheckQuery, eventFeatureQuery, eventQualityQuery, eventQuarantineQuery, sqlLiteral,
} from '../../db/features.js';

const cutoff = new Date('2026-01-01T00:00:00Z');
const now = new Date('2026-01-20T12:34:56.789Z');

describe('sqlLiteral', () => {
  it('quotes strings safely, whatever standard_conforming_strings says', () => {
    expect(sqlLiteral("O'Brien")).toBe("'O''Brien'");
    expect(sqlLiteral("x'; DROP TABLE shop.events; --")).toBe("'x''; DROP TABLE shop.events; --'");
    expect(sqlLiteral('a\\b\'c')).toBe("E'a\\\\b''c'");
    expect(sqlLiteral('$1')).toBe("'$1'");
    expect(() => sqlLiteral('a\0b')).toThrow(/NUL/);
  });

  it('writes timestamps, numbers, booleans and NULL', () => {
    expect(sqlLiteral(cutoff)).toBe("'2026-01-01T00:00:00.000Z'::timestamptz");
    expect(sqlLiteral(42)).toBe('42');
    expect(sqlLiteral(-0.5)).toBe('-0.5');
    expect(sqlLiteral(12345678901234567890n)).toBe('12345678901234567890');
    expect(sqlLiteral(true)).toBe('TRUE');
    expect(sqlLiteral(null)).toBe('NULL');
    expect(sqlLiteral(undefined)).toBe('NULL');
    expect(() => sqlLiteral(Number.NaN)).toThrow(/finite/);
    expect(() => sqlLiteral(new Date(Number.NaN))).toThrow(/invalid Date/);
    expect(() => sqlLiteral({})).toThrow(/object/);
  });
});

describe('inline queries (for COPY (query) TO STDOUT, which takes no bind parameters)', () => {
  const all = {
    eventFeatureQuery: (inline: boolean) => eventFeatureQuery({ cutoff, horizonDays: 14, now, inline }),
    eventQualityQuery: (inline: boolean) => eventQualityQuery({ cutoff, now, inline }),
    eventQuarantineQuery: (inline: boolean) => eventQuarantineQuery({ cutoff, now, inline }),
    cutoffCheckQuery: (inline: boolean) => cutoffCheckQuery({ cutoff, horizonDays: 14, now, inline }),
  };

  for (const [name, build] of Object.entries(all)) {
    it(`${name}: no $n left, no params, and each parameter written as its literal`, () => {
      const bound = build(false);
      const inlined = build(true);
      expect(bound.sql).toMatch(/\$1\b/);
      expect(inlined.params).toEqual([]);
      expect(inlined.sql).not.toContain('$');
      // every placeholder became the literal of its value, nothing else changed
      const expected = bound.sql.replace(/\$(\d+)/g, (_, n) => sqlLiteral(bound.params[Number(n) - 1]));
      expect(inlined.sql).toBe(expected);
    });
  }

  it('writes the cutoff, label end and run time as timestamptz literals, and a missing opening time as NULL', () => {
    const q = eventFeatureQuery({ cutoff, horizonDays: 14, now, inline: true });
    expect(q.sql).toContain("'2026-01-01T00:00:00.000Z'::timestamptz");
    expect(q.sql).toContain("'2026-01-15T00:00:00.000Z'::timestamptz"); // cutoff + 14 days
    expect(q.sql).toContain("'2026-01-20T12:34:56.789Z'::timestamptz");
    expect(q.sql).toContain('coalesce(NULL::timestamptz, (SELECT min(su.signup_at) FROM shop.users su)');
    const opened = eventQualityQuery({ cutoff, now, openedAt: new Date('2025-06-01T00:00:00Z'), inline: true });
    expect(opened.sql).toContain("coalesce('2025-06-01T00:00:00.000Z'::timestamptz, (SELECT");
  });

  it('without a cutoff, the quarantine query leaves before_cutoff NULL', () => {
    const q = eventQuarantineQuery({ now, inline: true });
    expect(q.sql).toContain('r.occurred_at < NULL::timestamptz AS before_cutoff');
  });
});
