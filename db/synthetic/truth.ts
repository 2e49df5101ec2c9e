/**
 * The synthetic shop's ground truth: P(valid purchase in [cutoff, cutoff + horizon)) as a function of exactly the
 * event-mode features (db/features.ts). The generator draws each user's label from it, so a model trained on those
 * features can at best reach the oracle AUC of this function; a gap to it is the model's fault, not the data's.
 *
 * Design: a logit of saturating / interacting terms a logistic regression cannot express, times a bot gate.
 * Only integer counts get hard thresholds; continuous features enter smoothly, so the SQL and JS values (equal to
 * ~1e-15) give the same probability.
 */
import type { FeatureRow } from './features-js.js';

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export function truthProbability(f: FeatureRow): number {
  const num = (k: string, missing: number) => (typeof f[k] === 'number' ? (f[k] as number) : missing);
  const lastView = num('days_since_last_view', 365);
  const lastCart = num('days_since_last_cart', 365);
  const purchases90 = num('purchases_90d', 0);
  const carts7 = num('carts_7d', 0);
  const price = num('mean_view_price_30d', 100);
  const sessions30 = num('sessions_30d', 0);
  const categories30 = num('distinct_categories_30d', 0);
  const perSession = num('events_per_session_30d', 0);
  const tenure = num('tenure_days', 365);
  const age = f.age_band;

  // Saturating recency: interest fades with a ~4-day time constant; beyond a few weeks it is simply gone.
  const recency = 1.45 * Math.exp(-lastView / 4);
  // Cart activity × price level: a recent cart converts far more often for cheap items than for expensive ones.
  const cartIntent = (1.3 * Math.log1p(carts7)) / (1 + Math.pow(price / 80, 1.5)) + 0.72 * Math.exp(-lastCart / 2);
  // Threshold: repeat buyers (two or more purchases in 90 days) are a different population.
  const repeat = purchases90 >= 2 ? 0.75 : purchases90 === 1 ? 0.3 : 0;
  // Profile × behaviour: 25–44-year-olds who browse many categories are shopping, others are just looking.
  const breadth = (age === '25-34' || age === '35-44' ? 0.27 : 0.05) * Math.min(categories30, 5);
  // Engagement saturates: many sessions help, with diminishing returns.
  const engagement = 0.6 * Math.tanh(sessions30 / 6);
  // New users are in a buying phase for their first weeks.
  const newUser = 0.5 * Math.exp(-tenure / 10);
  const logit = -4.9 + recency + cartIntent + repeat + breadth + engagement + newUser;
  // Bots (dozens of views per session) never buy.
  const human = sigmoid((30 - perSession) / 2);
  return sigmoid(logit) * human;
}
