// Clocks for the engine's timestamps (lesson 5, "continuous batching"). The real clock reads
// performance.now(); the virtual clock advances only when told, by a cost model of each step, so
// a run on a slow or busy CPU gives the same timeline (arrivals, queueing, TTFT) every time.

/** What a step cost model sees of a step. */
export interface StepCostInput {
  /** tokens computed this step (prefill chunk tokens + decodes) */
  numScheduledTokens: number;
  /** sequences in the step */
  numSeqs: number;
  /** tokens attended over, summed over sequences */
  numContextTokens: number;
}

/** Time source for the engine (ms). */
export interface Clock {
  readonly kind: 'real' | 'virtual';
  now(): number;
  /** called after each step with the step's shape and its measured duration */
  onStep(step: StepCostInput, measuredMs: number): void;
  /** wait (real) or jump (virtual) until time t */
  waitUntil(t: number): Promise<void>;
}

/** Wall clock from performance.now(), starting at 0 when created (lesson 5). */
export class RealClock implements Clock {
  readonly kind = 'real';
  private readonly t0 = performance.now();

  now(): number {
    return performance.now() - this.t0;
  }

  onStep(): void {}

  async waitUntil(t: number): Promise<void> {
    const ms = t - this.now();
    if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
  }
}

/** A linear step cost: fixed + per scheduled token + per sequence + per context token (ms). */
export interface LinearStepCost {
  stepMs: number;
  perTokenMs: number;
  perSeqMs: number;
  perContextTokenMs: number;
}

/** Roughly the target model (15.7M) on tfjs-wasm, one core; only the shape of the curve matters. */
export const DEFAULT_STEP_COST: LinearStepCost = { stepMs: 4, perTokenMs: 0.6, perSeqMs: 0.8, perContextTokenMs: 0.002 };

/**
 * Deterministic clock (lesson 5): each step advances it by `cost(step)`, never by real time, so
 * timelines and latencies are reproducible on any machine.
 */
export class VirtualClock implements Clock {
  readonly kind = 'virtual';
  private t = 0;
  private readonly cost: (s: StepCostInput) => number;

  constructor(cost: LinearStepCost | ((s: StepCostInput) => number) = DEFAULT_STEP_COST) {
    this.cost =
      typeof cost === 'function'
        ? cost
        : (s) => cost.stepMs + cost.perTokenMs * s.numScheduledTokens + cost.perSeqMs * s.numSeqs + cost.perContextTokenMs * s.numContextTokens;
  }

  now(): number {
    return this.t;
  }

  onStep(step: StepCostInput): void {
    this.t += this.cost(step);
  }

  async waitUntil(t: number): Promise<void> {
    this.t = Math.max(this.t, t);
  }
}
