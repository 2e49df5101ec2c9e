/** Seeded randomness for the synthetic shop: no Math.random, so a seed reproduces a shop exactly. */
export type Rng = () => number;

export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes integers into one 32-bit seed, so each user gets an independent stream. */
export function mixSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x01000193);
    h = Math.imul(h ^ (h >>> 13), 0x5bd1e995);
    h ^= h >>> 15;
  }
  return h >>> 0;
}

export const uniform = (r: Rng, lo: number, hi: number) => lo + (hi - lo) * r();
export const int = (r: Rng, lo: number, hiExclusive: number) => lo + Math.floor(r() * (hiExclusive - lo));
export const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];

export function normal(r: Rng): number {
  const u = 1 - r();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

export const logNormal = (r: Rng, mu: number, sigma: number) => Math.exp(mu + sigma * normal(r));

export function poisson(r: Rng, lambda: number): number {
  if (lambda <= 0) return 0;
  if (lambda > 40) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * normal(r)));
  const l = Math.exp(-lambda);
  let k = 0;
  let p = r();
  while (p > l) {
    k++;
    p *= r();
  }
  return k;
}

/** Number of failures before the first success, mean (1 - p) / p. */
export const geometric = (r: Rng, p: number) => Math.floor(Math.log(1 - r()) / Math.log(1 - p));

export function pickWeighted<T>(r: Rng, xs: readonly T[], weights: readonly number[]): T {
  let total = 0;
  for (const w of weights) total += w;
  let u = r() * total;
  for (let i = 0; i < xs.length; i++) {
    u -= weights[i];
    if (u < 0) return xs[i];
  }
  return xs[xs.length - 1];
}
