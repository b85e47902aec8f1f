// Adaptive gamma (lesson 4): pick the number of drafts per step from the acceptance seen so far.
// With alpha the running acceptance probability and c the draft/target cost ratio, the expected
// speedup of gamma drafts is (1 - alpha^(gamma+1)) / ((1 - alpha) * cost(gamma)) with
// cost(gamma) = gamma c + verify(gamma); take the gamma in [min, max] that maximises it. High
// acceptance pays for long drafts; low acceptance makes every draft a waste.

import { checkGamma } from './speculative';
import { expectedTokensPerStep } from './stats';

/** Options of AdaptiveGamma. */
export interface AdaptiveGammaOptions {
  /** gamma before anything is observed (default 4) */
  initial?: number;
  min?: number;
  /** default 8 */
  max?: number;
  /** draft/target cost ratio c (default 0.1); update it with setCost when measured */
  c?: number;
  /** cost of verifying gamma + 1 tokens, in target decode steps (default: 1, the textbook) */
  verifyCost?: (gamma: number) => number;
  /** weight of the newest observation in the running alpha (default 0.1) */
  smoothing?: number;
}

/**
 * The gamma in [min, max] that maximises the expected speedup for acceptance alpha and cost ratio
 * c (lesson 4).
 */
export function bestGamma(alpha: number, c: number, min = 1, max = 8, verifyCost: (gamma: number) => number = () => 1): number {
  let best = min;
  let bestValue = -Infinity;
  for (let g = min; g <= max; g++) {
    const value = expectedTokensPerStep(alpha, g) / (g * c + verifyCost(g));
    if (value > bestValue + 1e-12) {
      best = g;
      bestValue = value;
    }
  }
  return best;
}

/** Running alpha and the gamma it suggests (lesson 4). One per sequence. */
export class AdaptiveGamma implements GammaPolicy {
  readonly min: number;
  readonly max: number;
  private c: number;
  private readonly verifyCost: (gamma: number) => number;
  private readonly smoothing: number;
  private alphaEstimate: number | null = null;
  private current: number;

  constructor(options: AdaptiveGammaOptions = {}) {
    this.min = options.min ?? 1;
    this.max = options.max ?? 8;
    checkGamma(this.min, 'adaptive min');
    checkGamma(this.max, 'adaptive max');
    if (this.max < this.min) throw new Error(`adaptive max (${this.max}) must be >= min (${this.min})`);
    this.current = options.initial ?? Math.min(this.max, Math.max(this.min, 4));
    checkGamma(this.current, 'adaptive initial');
    this.c = options.c ?? 0.1;
    if (!(this.c >= 0 && Number.isFinite(this.c))) throw new Error(`c must be a finite number >= 0, got ${String(this.c)}`);
    this.verifyCost = options.verifyCost ?? (() => 1);
    this.smoothing = options.smoothing ?? 0.1;
    if (!(this.smoothing > 0 && this.smoothing <= 1)) throw new Error(`smoothing must be in (0, 1], got ${String(this.smoothing)}`);
  }

  /** gamma for the next step */
  get gamma(): number {
    return this.current;
  }

  /** the running alpha (null before the first observation) */
  get alpha(): number | null {
    return this.alphaEstimate;
  }

  /** Set the draft/target cost ratio c (e.g. measured). */
  setCost(c: number): void {
    this.c = c;
  }

  /**
   * Record a step: `accepted` of `drafted` tokens were accepted. Each position tried is one
   * Bernoulli(alpha) observation: accepted ones, plus the rejection if there was one.
   */
  observe(drafted: number, accepted: number): void {
    if (drafted === 0) return;
    const tried = accepted + (accepted < drafted ? 1 : 0);
    const rate = accepted / tried;
    // weight the step by how many positions it tried
    const w = 1 - (1 - this.smoothing) ** tried;
    this.alphaEstimate = this.alphaEstimate === null ? rate : (1 - w) * this.alphaEstimate + w * rate;
    this.current = bestGamma(Math.min(this.alphaEstimate, 0.999), this.c, this.min, this.max, this.verifyCost);
  }
}

/** How many drafts one sequence asks for at each step (lesson 4): a fixed gamma or an AdaptiveGamma. */
export interface GammaPolicy {
  /** gamma for the next step (before capGamma) */
  readonly gamma: number;
  /** record a step: `accepted` of `drafted` tokens were accepted */
  observe(drafted: number, accepted: number): void;
}

/** One sequence's gamma policy (lesson 4): `gamma` every step, or a fresh AdaptiveGamma. */
export function gammaPolicy(gamma: number | 'adaptive', adaptive?: AdaptiveGammaOptions): GammaPolicy {
  if (gamma === 'adaptive') return new AdaptiveGamma(adaptive);
  checkGamma(gamma);
  return { gamma, observe: () => {} };
}
