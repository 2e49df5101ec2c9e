import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CARD_TOP_FEATURES, CHARTS, renderModelCard, type ModelCard } from '../../report/model-card.js';
import { chartStats, inkOf, launchChromium, type ChartStats } from '../support/chromium.js';
import { evaluatedCardInput } from '../support/model-card-fixture.js';

// The acceptance check: a card built from a real evaluation (ml/evaluation.ts on seeded data, real permutation
// importance) opens in headless Chromium (Debian's, driven by playwright-core) and its charts render.
const OUT = resolve('.data/model-card');
let browser: Browser;
let page: Page;
let card: ModelCard;
let stats: Record<string, ChartStats>;
const problems: string[] = [];
const requests: string[] = [];

beforeAll(async () => {
  const rendered = await renderModelCard({ ...evaluatedCardInput({ features: 24 }), modelName: 'propensity', version: 7 });
  card = rendered.json;
  mkdirSync(OUT, { recursive: true });
  const file = resolve(OUT, 'model-card.html');
  writeFileSync(file, rendered.html);
  writeFileSync(resolve(OUT, 'model-card.json'), JSON.stringify(card, null, 2));
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  stats = await chartStats(page);
}, 60_000);

afterAll(async () => {
  await browser?.close();
});

describe('model card in headless Chromium', () => {
  it('opens without console errors, CSP violations or any request beyond the file itself', async () => {
    expect(problems).toEqual([]);
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatch(/^file:.*model-card\.html$/);
    expect(await page.title()).toBe('Model card — propensity v7');
    expect(await page.locator('script').count()).toBe(0);
    expect(await page.locator('#verdict').textContent()).toBe('blessed');
  });

  it('renders each chart as one SVG of real size with the expected marks', () => {
    expect(Object.keys(stats).sort()).toEqual([...CHARTS].sort());
    for (const name of CHARTS) {
      expect(stats[name].svgs, name).toBe(1);
      expect(stats[name].width, name).toBeGreaterThan(250);
      expect(stats[name].height, name).toBeGreaterThan(150);
    }
    const { roc, pr, calibration, lift, importance } = stats;
    expect(roc.pathPoints.roc).toBe(card.curves.roc.length);
    expect(roc.pathPoints.roc).toBeGreaterThan(10);
    expect(roc.marks.chance).toBe(1); // the diagonal
    expect(pr.pathPoints.pr).toBeGreaterThan(10);
    expect(pr.marks.baseRate).toBe(1);
    expect(calibration.marks.calibration).toBe(card.curves.calibration.length);
    expect(calibration.marks.calibration).toBeGreaterThanOrEqual(5);
    expect(calibration.marks.identity).toBe(1);
    expect(lift.marks.lift).toBe(10);
    expect(lift.emptyBars).toBe(0);
    expect(lift.pathPoints.capture).toBe(10);
    expect(importance.marks.importance).toBe(CARD_TOP_FEATURES);
  });

  it('draws bars in proportion to the numbers: the top decile is the tallest lift bar, the top feature the longest', async () => {
    const heights = await page.$$eval('figure[data-chart="lift"] g.lift_marks > path', (els) => els.map((e) => e.getBoundingClientRect().height));
    const lifts = card.deciles.map((d) => d.lift);
    expect(heights.indexOf(Math.max(...heights))).toBe(lifts.indexOf(Math.max(...lifts)));
    for (let i = 1; i < 10; i++) {
      expect(heights[i] / heights[0]).toBeCloseTo(lifts[i] / lifts[0], 1);
    }
    const widths = await page.$$eval('figure[data-chart="importance"] g.importance_marks > path', (els) => els.map((e) => e.getBoundingClientRect().width));
    expect(widths[0]).toBe(Math.max(...widths));
    const labels = await page.$$eval('figure[data-chart="importance"] .role-axis-label text', (els) => els.map((e) => e.textContent));
    expect(labels).toContain(card.featureImportance[0].feature);
  });

  it('paints every chart (non-blank screenshots) and saves the page for people to look at', async () => {
    for (const name of CHARTS) {
      const png = await page.locator(`figure[data-chart="${name}"] svg`).screenshot();
      const { ink, colours, width } = await inkOf(browser, png);
      expect(width, name).toBeGreaterThan(250);
      expect(ink, `${name}: share of non-white pixels`).toBeGreaterThan(0.02);
      expect(colours, `${name}: distinct colours`).toBeGreaterThanOrEqual(3);
    }
    const full = await page.screenshot({ fullPage: true });
    writeFileSync(resolve(OUT, 'model-card.png'), full);
    const { ink, height } = await inkOf(browser, full);
    expect(height).toBeGreaterThan(2000);
    expect(ink).toBeGreaterThan(0.02);
  });
});
