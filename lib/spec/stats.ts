// Statistics of speculative decoding (lesson 4): what a lesson needs to explain a measured
// speedup with the theory of Leviathan et al. 2023.
//
// Model: each drafted token is accepted independently with probability alpha. A step with gamma
// drafts then emits E = (1 - alpha^(gamma+1)) / (1 - alpha) tokens on average, and costs
// gamma * c + 1 target steps, where c = (draft time per token) / (target time per step). So the
// predicted speedup over the target alone is
//     S = (1 - alpha^(gamma+1)) / ((1 - alpha) (gamma c + 1)).
// The formula assumes that verifying gamma + 1 tokens costs one target step. That holds when
// decoding is memory-bound (weights read once, whatever the token count); on a CPU whose caches
// hold the whole model it does not, and `verifyRatio` measures by how much it fails.

import type { AcceptResult } from './speculative';

/** Mean tokens emitted per step when each draft is accepted with probability alpha (lesson 4). */
export function expectedTokensPerStep(alpha: number, gamma: number): number {
  if (alpha >= 1) return gamma + 1;
  return (1 - alpha ** (gamma + 1)) / (1 - alpha);
}

/**
 * Leviathan et al.'s predicted speedup (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1)), with
 * c the draft/target cost ratio (lesson 4). `verifyRatio` (default 1) generalises it: the cost of
 * scoring gamma + 1 tokens in one target pass, in target decode steps.
 */
export function predictedSpeedup(alpha: number, gamma: number, c: number, verifyRatio = 1): number {
  return expectedTokensPerStep(alpha, gamma) / (gamma * c + verifyRatio);
}

/** One step of one row, for notebooks to draw (lesson 4). */
export interface StepTrace {
  step: number;
  /** which sequence of the batch */
  row: number;
  gamma: number;
  drafted: number[];
  /** accepted prefix length n */
  accepted: number;
  /** min(1, p/q) for each drafted position looked at */
  acceptProbs: number[];
  /** the token after the accepted prefix */
  token: number;
  kind: AcceptResult['kind'];
  /** wall time of the step's phases, ms (shared by the rows of a batch) */
  draftMs: number;
  verifyMs: number;
  acceptMs: number;
}

/** What SpecStats reports (lesson 4). */
export interface SpecSummary {
  steps: number;
  drafted: number;
  accepted: number;
  /** tokens emitted per step: accepted + 1 */
  meanTokensPerStep: number;
  meanAcceptedLength: number;
  /** accepted / drafted */
  acceptanceRate: number;
  /**
   * alpha, the per-token acceptance probability: accepted / (accepted + rejections), the
   * estimate under the i.i.d. model (positions after a rejection were never tried)
   */
  alpha: number;
  /** per drafted position i (0-based): accepted / tried */
  acceptanceByPosition: number[];
  /** histogram of n, the accepted length per step (index n) */
  acceptedLengthHistogram: number[];
  /** mean gamma over steps */
  meanGamma: number;
  /** mean ms per drafted token, per verify pass, per accept phase; steps after the first (which prefills) */
  draftMsPerToken: number;
  verifyMsPerStep: number;
  acceptMsPerStep: number;
}

/** Accumulates StepTraces and summarises them (lesson 4). */
export class SpecStats {
  readonly traces: StepTrace[] = [];
  /** keep every trace (default) or only the counters */
  constructor(private readonly keepTraces = true) {}

  private steps = 0;
  private drafted = 0;
  private accepted = 0;
  private rejections = 0;
  private gammaSum = 0;
  private tried: number[] = [];
  private acceptedAt: number[] = [];
  private histogram: number[] = [];
  private draftMs = 0;
  private verifyMs = 0;
  private acceptMs = 0;
  private timedSteps = new Set<number>();
  private timedDrafted = 0;

  record(t: StepTrace): void {
    if (this.keepTraces) this.traces.push(t);
    this.steps++;
    const g = t.drafted.length;
    this.gammaSum += g;
    this.drafted += g;
    this.accepted += t.accepted;
    if (t.accepted < g) this.rejections++;
    for (let i = 0; i < t.acceptProbs.length; i++) {
      this.tried[i] = (this.tried[i] ?? 0) + 1;
      if (i < t.accepted) this.acceptedAt[i] = (this.acceptedAt[i] ?? 0) + 1;
    }
    this.histogram[t.accepted] = (this.histogram[t.accepted] ?? 0) + 1;
    // timings: step 0 also prefills, so it is left out; phases are shared by the batch, so
    // each step's time counts once (drafted tokens of every row count)
    if (t.step > 0) this.timedDrafted += g;
    if (t.step > 0 && !this.timedSteps.has(t.step)) {
      this.timedSteps.add(t.step);
      this.draftMs += t.draftMs;
      this.verifyMs += t.verifyMs;
      this.acceptMs += t.acceptMs;
    }
  }

  summary(): SpecSummary {
    const steps = Math.max(1, this.steps);
    const timed = Math.max(1, this.timedSteps.size);
    const hist = Array.from(this.histogram, (x) => x ?? 0);
    return {
      steps: this.steps,
      drafted: this.drafted,
      accepted: this.accepted,
      meanTokensPerStep: (this.accepted + this.steps) / steps,
      meanAcceptedLength: this.accepted / steps,
      acceptanceRate: this.drafted > 0 ? this.accepted / this.drafted : 0,
      alpha: this.accepted + this.rejections > 0 ? this.accepted / (this.accepted + this.rejections) : 0,
      acceptanceByPosition: Array.from(this.tried, (n, i) => (n ? (this.acceptedAt[i] ?? 0) / n : 0)),
      acceptedLengthHistogram: hist,
      meanGamma: this.gammaSum / steps,
      draftMsPerToken: this.timedDrafted > 0 ? this.draftMs / this.timedDrafted : 0,
      verifyMsPerStep: this.verifyMs / timed,
      acceptMsPerStep: this.acceptMs / timed,
    };
  }
}
