import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Debian's `chromium` (installed by .ci/run when missing), or CHROMIUM_PATH. */
export function chromiumPath(): string {
  const path = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(path)) {
    throw new Error(`no Chromium at ${path}: install it (apt-get install -y --no-install-recommends chromium) or set CHROMIUM_PATH`);
  }
  return path;
}

export function launchChromium(): Promise<Browser> {
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
  return chromium.launch({ executablePath: chromiumPath(), headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/** What one chart's inline SVG holds, as the browser laid it out. */
export interface ChartStats {
  svgs: number;
  width: number;
  height: number;
  /** mark name (the Vega-Lite layer name) → number of drawn items */
  marks: Record<string, number>;
  /** mark name → points of its first path (for line marks) */
  pathPoints: Record<string, number>;
  /** drawn items of zero width or height among rect marks */
  emptyBars: number;
}

/** Inspects every `figure[data-chart]` of the open page. */
export async function chartStats(page: Page): Promise<Record<string, ChartStats>> {
  return page.evaluate(() => {
    // runs in the page: the project compiles without DOM typings, so the DOM is reached untyped
    const doc = (globalThis as any).document;
    const out: Record<string, ChartStats> = {};
    for (const fig of Array.from<any>(doc.querySelectorAll('figure[data-chart]'))) {
      const svg = fig.querySelector('svg');
      const box = svg?.getBoundingClientRect();
      const marks: Record<string, number> = {};
      const pathPoints: Record<string, number> = {};
      let emptyBars = 0;
      for (const g of Array.from<any>(fig.querySelectorAll('g.role-mark'))) {
        const name = Array.from<string>(g.classList).find((c) => c.endsWith('_marks'))?.replace(/_marks$/, '');
        if (!name) continue;
        const items = Array.from<any>(g.children); // one element per drawn item (a line mark draws one path)
        marks[name] = items.length;
        const d = g.querySelector('path')?.getAttribute('d') ?? '';
        pathPoints[name] = (d.match(/[ML]/g) ?? []).length;
        if (g.classList.contains('mark-rect')) {
          for (const item of items) {
            const r = item.getBoundingClientRect();
            if (!(r.width > 0 && r.height > 0)) emptyBars++;
          }
        }
      }
      out[fig.getAttribute('data-chart')!] = {
        svgs: fig.querySelectorAll('svg').length,
        width: box?.width ?? 0,
        height: box?.height ?? 0,
        marks,
        pathPoints,
        emptyBars,
      };
    }
    return out;
  });
}

/**
 * Share of non-white pixels and number of distinct colours of a PNG, decoded by the browser itself (a blank page
 * of its own, so the card's Content-Security-Policy is not involved).
 */
export async function inkOf(browser: Browser, png: Buffer): Promise<{ ink: number; colours: number; width: number; height: number }> {
  const page = await browser.newPage();
  try {
    return await page.evaluate(async (b64) => {
      const doc = (globalThis as any).document; // in the page, untyped as above
      const img = new (globalThis as any).Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const canvas = doc.createElement('canvas');
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
      let inked = 0;
      const colours = new Set<number>();
      for (let i = 0; i < data.length; i += 4) {
        if (data[i] < 245 || data[i + 1] < 245 || data[i + 2] < 245) inked++;
        colours.add(((data[i] >> 4) << 8) | ((data[i + 1] >> 4) << 4) | (data[i + 2] >> 4));
      }
      return { ink: inked / (data.length / 4), colours: colours.size, width: canvas.width, height: canvas.height };
    }, png.toString('base64'));
  } finally {
    await page.close();
  }
}
