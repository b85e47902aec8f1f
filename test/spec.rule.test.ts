// Speculative decoding's pieces without a model: the accept rule on synthetic p and q (the output
// law is exactly p, and is not without the correction step), the residual, prompt lookup,
// adaptive gamma and the speedup formula.
import { describe, expect, it } from 'vitest';

import { argmax, logitsToProbs, Rng } from '../lib/generate/sampling';
import { AdaptiveGamma, bestGamma, gammaPolicy } from '../lib/spec/adaptive';
import { promptLookup } from '../lib/spec/promptLookup';
import { acceptGreedy, acceptReject, capGamma, checkGamma, residual, scoredToken, type DraftProposal } from '../lib/spec/speculative';
import { expectedTokensPerStep, predictedSpeedup, SpecStats, type StepTrace } from '../lib/spec/stats';

const f32 = (xs: number[]) => Float32Array.from(xs);
function draw(probs: Float32Array, rng: Rng): number {
  let u = rng.next();
  for (let i = 0; i < probs.length; i++) if ((u -= probs[i]) < 0) return i;
  return probs.length - 1;
}
const tv = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / 2;
};

// a toy "model" over V = 4 tokens whose next-token law depends on the previous token
const P: Float32Array[] = [f32([0.5, 0.2, 0.2, 0.1]), f32([0.1, 0.6, 0.2, 0.1]), f32([0.25, 0.25, 0.4, 0.1]), f32([0.7, 0.1, 0.1, 0.1])];
const Q: Float32Array[] = [f32([0.1, 0.6, 0.2, 0.1]), f32([0.4, 0.1, 0.4, 0.1]), f32([0.1, 0.1, 0.1, 0.7]), f32([0.25, 0.25, 0.25, 0.25])];
const START = 0; // the token before the first drafted one

// the empirical joint law of the first two emitted tokens of one speculative step (gamma = 2),
// or of two steps when the first step emits only one token
function jointOfTwo(trials: number, unsafeSkipCorrection: boolean): Float64Array {
  const rng = new Rng(1234);
  const counts = new Float64Array(16);
  for (let t = 0; t < trials; t++) {
    const out: number[] = [];
    let prev = START;
    while (out.length < 2) {
      const d1 = draw(Q[prev], rng);
      const d2 = draw(Q[d1], rng);
      const draft: DraftProposal = { tokens: [d1, d2], probs: [Q[prev], Q[d1]] };
      const r = acceptReject([P[prev], P[d1], P[d2]], draft, rng, { greedy: false, unsafeSkipCorrection });
      out.push(...draft.tokens.slice(0, r.accepted), r.token);
      prev = out[out.length - 1];
    }
    counts[out[0] * 4 + out[1]]++;
  }
  return counts.map((c) => c / trials);
}

describe('acceptReject (the rule on synthetic distributions)', () => {
  const exact = new Float64Array(16);
  for (let a = 0; a < 4; a++) for (let b = 0; b < 4; b++) exact[a * 4 + b] = P[START][a] * P[a][b];

  it('emits tokens distributed exactly as the target: TV(empirical, p) < 0.01 over 200000 runs', () => {
    const got = jointOfTwo(200_000, false);
    const d = tv(got, exact);
    console.log(`[spec rule] joint of two tokens: TV to the target = ${d.toFixed(4)} (threshold 0.01)`);
    expect(d).toBeLessThan(0.01);
  });

  it('without the correction step (resample from p) the law is wrong: TV > 0.03', () => {
    const got = jointOfTwo(40_000, true);
    const d = tv(got, exact);
    console.log(`[spec rule] without correction: TV to the target = ${d.toFixed(4)}`);
    expect(d).toBeGreaterThan(0.03);
  });

  it('greedy: accepts the prefix matching the target argmax, then the target argmax; draws nothing', () => {
    const oneHot = (i: number) => f32([0, 1, 2, 3].map((v) => (v === i ? 1 : 0)));
    const rng = new Rng(5);
    const before = new Rng(5).next();
    const r = acceptReject([oneHot(2), oneHot(1), oneHot(3), oneHot(0)], { tokens: [2, 1, 0], probs: null }, rng, { greedy: true });
    expect(r).toMatchObject({ accepted: 2, token: 3, kind: 'resampled', acceptProbs: [1, 1, 0] });
    const all = acceptReject([oneHot(2), oneHot(1), oneHot(0)], { tokens: [2, 1], probs: null }, rng, { greedy: true });
    expect(all).toMatchObject({ accepted: 2, token: 0, kind: 'bonus' });
    expect(rng.next()).toBe(before);
  });

  it('needs gamma + 1 target distributions', () => {
    expect(() => acceptReject([P[0]], { tokens: [1], probs: null }, new Rng(0), { greedy: false })).toThrow(/1 drafted tokens need 2 target distributions/);
  });

  it('residual is max(0, p - q), and one-hot q removes the drafted token', () => {
    expect(Array.from(residual(P[0], Q[0], 1))).toEqual(Array.from(f32([0.4, 0, 0, 0])));
    expect(Array.from(residual(P[0], null, 0))).toEqual(Array.from(f32([0, 0.2, 0.2, 0.1])));
    expect(Array.from(residual(P[0], P[0], 0))).toEqual(Array.from(P[0])); // p == q: falls back to p
  });

  it('gamma <= 0 or fractional is a clear error', () => {
    for (const g of [0, -1, 1.5, NaN]) expect(() => checkGamma(g)).toThrow(/gamma must be an integer >= 1/);
  });
});

describe('promptLookup', () => {
  it('proposes what followed the most recent earlier match of the longest n-gram', () => {
    //           0  1  2  3  4  5  6  7  8  9 10 11
    const ctx = [1, 2, 3, 8, 5, 2, 3, 9, 0, 1, 2, 3];
    expect(promptLookup(ctx, 3)).toEqual([8, 5, 2]); // "1 2 3" seen at 0
    expect(promptLookup(ctx, 3, { maxNgram: 2 })).toEqual([9, 0, 1]); // "2 3" last seen at 5
    expect(promptLookup(ctx, 2, { maxNgram: 1 })).toEqual([9, 0]); // "3" last seen at 6
    expect(promptLookup([1, 2, 3, 4], 4)).toEqual([]);
    expect(promptLookup([3, 3], 4)).toEqual([3]); // runs up to the end of the context
    expect(() => promptLookup(ctx, 2, { minNgram: 0 })).toThrow(/minNgram/);
    expect(() => promptLookup(ctx, 2, { maxNgram: 1, minNgram: 2 })).toThrow(/maxNgram/);
  });
});

describe('speedup theory, adaptive gamma, stats', () => {
  it('the formula: E tokens = (1 - a^(g+1)) / (1 - a); S = E / (g c + 1)', () => {
    expect(expectedTokensPerStep(0.5, 3)).toBeCloseTo(1.875, 12);
    expect(expectedTokensPerStep(1, 3)).toBe(4);
    expect(predictedSpeedup(0.8, 4, 0.05)).toBeCloseTo((1 - 0.8 ** 5) / (0.2 * 1.2), 12);
    expect(predictedSpeedup(0.8, 4, 0.05, 2)).toBeCloseTo((1 - 0.8 ** 5) / (0.2 * 2.2), 12);
  });

  it('bestGamma grows with alpha and shrinks with c', () => {
    expect(bestGamma(0.9, 0.05)).toBeGreaterThan(bestGamma(0.5, 0.05));
    expect(bestGamma(0.8, 0.5)).toBeLessThan(bestGamma(0.8, 0.01));
    expect(bestGamma(0.2, 0.3)).toBe(1);
  });

  it('AdaptiveGamma follows the running acceptance', () => {
    const a = new AdaptiveGamma({ c: 0.05, initial: 4 });
    expect(a.gamma).toBe(4);
    for (let i = 0; i < 30; i++) a.observe(a.gamma, a.gamma); // everything accepted
    expect(a.gamma).toBe(8);
    for (let i = 0; i < 60; i++) a.observe(a.gamma, 0); // nothing accepted
    expect(a.gamma).toBe(1);
    expect(a.alpha!).toBeLessThan(0.1);
    expect(() => new AdaptiveGamma({ min: 0 })).toThrow(/adaptive min must be an integer >= 1/);
    expect(() => new AdaptiveGamma({ min: 4, max: 2 })).toThrow(/max \(2\) must be >= min/);
  });

  it('capGamma fits the step into tokens left, context room and budget; gammaPolicy is fixed or adaptive', () => {
    expect(capGamma(4, { tokensLeft: 10, room: 100 })).toBe(4);
    expect(capGamma(4, { tokensLeft: 3, room: 100 })).toBe(2); // 2 drafts + 1 token = the 3 wanted
    expect(capGamma(4, { tokensLeft: 10, room: 1 })).toBe(1);
    expect(capGamma(4, { tokensLeft: 10, room: 100, budget: 3 })).toBe(2); // the newest token takes 1
    expect(capGamma(4, { tokensLeft: 1, room: 100 })).toBe(0);
    expect(capGamma(4, { tokensLeft: 10, room: -2 })).toBe(0);
    const fixed = gammaPolicy(3);
    fixed.observe(3, 0);
    expect(fixed.gamma).toBe(3);
    expect(gammaPolicy('adaptive', { initial: 2 })).toBeInstanceOf(AdaptiveGamma);
    expect(() => gammaPolicy(0)).toThrow(/gamma must be an integer >= 1/);
  });

  it('SpecStats: alpha counts tried positions only; acceptance per position; histogram', () => {
    const s = new SpecStats();
    const t = (step: number, drafted: number, accepted: number): StepTrace => ({
      step, row: 0, gamma: drafted, drafted: new Array(drafted).fill(0), accepted,
      acceptProbs: new Array(Math.min(drafted, accepted + 1)).fill(0.5), token: 0, kind: accepted === drafted ? 'bonus' : 'resampled',
      draftMs: 1, verifyMs: 2, acceptMs: 0,
    });
    s.record(t(0, 4, 4));
    s.record(t(1, 4, 1));
    s.record(t(2, 4, 0));
    const m = s.summary();
    expect(m).toMatchObject({ steps: 3, drafted: 12, accepted: 5, meanTokensPerStep: 8 / 3, acceptanceRate: 5 / 12, alpha: 5 / 7 });
    expect(m.acceptanceByPosition).toEqual([2 / 3, 1 / 2, 1, 1]);
    expect(m.acceptedLengthHistogram).toEqual([1, 1, 0, 0, 1]);
  });
});

describe('acceptGreedy (the captured path verdict from picked tokens)', () => {
  it('gives acceptReject greedy verdict on the same rows, with each picked token logprob', () => {
    const rng = new Rng(5);
    const V = 50;
    for (let trial = 0; trial < 200; trial++) {
      const gamma = 1 + Math.floor(rng.next() * 5);
      const logits = Array.from({ length: gamma + 1 }, () => Float32Array.from({ length: V }, () => rng.next() * 4));
      const best = logits.map((l) => argmax(l));
      // drafts agree with the target's argmax for a random prefix, then (maybe) differ
      const agree = Math.floor(rng.next() * (gamma + 1));
      const drafted = Array.from({ length: gamma }, (_, i) => (i < agree ? best[i] : (best[i] + 1 + Math.floor(rng.next() * (V - 1))) % V));
      const probs = logits.map((l) => logitsToProbs(l, { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0 }, { promptTokenIds: [], outputTokenIds: [] }));
      const want = acceptReject(probs, { tokens: drafted, probs: null }, new Rng(1), { greedy: true });
      const picks = logits.map((l, i) => scoredToken(l, best[i], 0));
      const got = acceptGreedy(picks, drafted);
      expect(got).toEqual(want);
      expect(got.accepted).toBe(Math.min(agree, gamma));
    }
  });
});
