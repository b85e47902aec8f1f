// Lesson 4's exercises (notebooks/04-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
//
// Build it: the speculative accept/reject rule (checked by its output distribution, chi-square),
// the expected tokens per step, a prompt-lookup drafter, the greedy accept rule. Predict, then
// measure: tokens per step of a 70% coin at gamma = 4.
import { Rng, sampleFromProbs } from '../generate/sampling';
import { promptLookup } from '../spec/promptLookup';
import { acceptGreedy } from '../spec/speculative';
import { expectedTokensPerStep } from '../spec/stats';
import { closeNumber, runCases, sameValue, short, type BuildExercise, type Case, type Exercise, type PredictExercise, type Verdict } from './check';

// ---- chi-square, for checks at the level of a distribution

/** Upper quantile of the standard normal (Acklam's rational approximation, |error| < 1.2e-9). */
function normalQuantile(p: number): number {
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/**
 * The chi-square value exceeded with probability `tail` at `df` degrees of freedom
 * (Wilson-Hilferty; within a few % of the exact quantile from df = 1 on). Lesson 4 uses 26.12 for
 * df = 8, tail 0.001; this gives 26.1.
 */
export function chiSquareCritical(df: number, tail: number): number {
  const z = -normalQuantile(tail); // upper quantile
  const k = 2 / (9 * df);
  return df * (1 - k + z * Math.sqrt(k)) ** 3;
}

/**
 * Pearson's chi-square of observed counts against a law (probabilities summing to 1). Cells the
 * law gives (almost) nothing are left out, and `impossible` counts what fell into them.
 */
export function chiSquare(observed: readonly number[], law: readonly number[]): { chi2: number; df: number; impossible: number } {
  const n = observed.reduce((a, b) => a + b, 0);
  let chi2 = 0;
  let cells = 0;
  let impossible = 0;
  for (let i = 0; i < law.length; i++) {
    if (law[i] <= 1e-12) {
      impossible += observed[i];
      continue;
    }
    const e = n * law[i];
    chi2 += (observed[i] - e) ** 2 / e;
    cells++;
  }
  return { chi2, df: Math.max(1, cells - 1), impossible };
}

// tail probability per test: a correct rule fails a check about once in 10^5 runs
const TAIL = 1e-5;

const fmt = (xs: ArrayLike<number>) => `[${Array.from(xs, (x) => Number(x.toFixed(3))).join(', ')}]`;

function failed(id: string, cases: number, name: string, input: string, expected: string, got: string, hint: string): Verdict {
  return { id, passed: false, cases, failure: { case: name, input, expected, got, hint } };
}

// ---- 1. the accept/reject rule

/** The learner's speculative accept rule: how many drafts are kept, and the token after them. */
export type AcceptRejectFn = (p: Float32Array[], q: Float32Array[], drafted: number[], random: () => number) => { accepted: number; token: number };

interface DistCase {
  name: string;
  p: number[][]; // [gamma + 1][V]
  q: number[][]; // [gamma][V]
  trials: number;
}

function normalised(xs: number[]): number[] {
  const s = xs.reduce((a, b) => a + b, 0);
  return xs.map((x) => x / s);
}

// a peaked random distribution over V tokens (a few likely tokens, as a language model gives)
function randomDist(rng: Rng, V: number): number[] {
  return normalised(Array.from({ length: V }, () => rng.next() ** 3 + 0.01));
}

function acceptCases(): DistCase[] {
  const rng = new Rng(4_001);
  const cases: DistCase[] = [
    {
      name: "lesson 4's toy pair (gamma 3, V 6)",
      p: [
        [0.1, 0.3, 0.35, 0.1, 0.1, 0.05],
        [0.05, 0.1, 0.15, 0.55, 0.1, 0.05],
        [0.5, 0.05, 0.05, 0.05, 0.3, 0.05],
        [0.05, 0.05, 0.05, 0.05, 0.1, 0.7],
      ],
      q: [
        [0.1, 0.55, 0.1, 0.1, 0.1, 0.05],
        [0.05, 0.1, 0.05, 0.7, 0.05, 0.05],
        [0.3, 0.05, 0.05, 0.05, 0.5, 0.05],
      ],
      trials: 6000,
    },
  ];
  for (let k = 0; k < 2; k++) {
    const V = 5 + k;
    const gamma = 2;
    cases.push({ name: `seeded random pair ${k + 1} (gamma ${gamma}, V ${V})`, p: Array.from({ length: gamma + 1 }, () => randomDist(rng, V)), q: Array.from({ length: gamma }, () => randomDist(rng, V)), trials: 6000 });
  }
  const same = [0.4, 0.3, 0.2, 0.1];
  cases.push({ name: 'edge: the draft equals the target (every draft must be kept)', p: [same, same, same], q: [same, same], trials: 3000 });
  cases.push({
    name: 'edge: the draft proposes tokens the target never picks (p = 0 there)',
    p: [[0.5, 0.5, 0, 0], [0.25, 0.25, 0.25, 0.25]],
    q: [[0.25, 0.25, 0.25, 0.25]],
    trials: 4000,
  });
  cases.push({
    name: 'edge: a deterministic drafter (q one-hot, as prompt lookup)',
    p: [[0.2, 0.5, 0.3], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]],
    q: [[0, 1, 0], [1, 0, 0]],
    trials: 4000,
  });
  return cases;
}

// sum_v min(p(v), q(v)): the probability a draft drawn from q is kept
const overlap = (p: number[], q: number[]) => p.reduce((s, pv, v) => s + Math.min(pv, q[v]), 0);

// the law of the accepted length n: prod_{i<n} a_i * (1 - a_n), and prod a_i for n = gamma
function acceptedLengthLaw(c: DistCase): number[] {
  const a = c.q.map((q, i) => overlap(c.p[i], q));
  const law: number[] = [];
  let reach = 1;
  for (let i = 0; i < a.length; i++) {
    law.push(reach * (1 - a[i]));
    reach *= a[i];
  }
  law.push(reach);
  return law;
}

// what a rule that resamples from p (not from the residual) emits at a position: min(p, q) + beta p
const noCorrectionLaw = (p: number[], q: number[]) => {
  const beta = 1 - overlap(p, q);
  return p.map((pv, v) => Math.min(pv, q[v]) + beta * pv);
};

const describeDist = (c: DistCase) => `p = ${c.p.map(fmt).join(' ')}; q = ${c.q.map(fmt).join(' ')}; ${c.trials} seeded trials, drafts drawn from q`;

/** Run the learner's rule over every case; compare the accepted length and each emitted position with their exact laws. */
async function checkAcceptReject(id: string, fn: unknown): Promise<Verdict> {
  if (typeof fn !== 'function') return failed(id, 0, '-', '-', 'a function', typeof fn, 'pass your function itself, not its result');
  const rule = fn as AcceptRejectFn;
  const cases = acceptCases();
  for (let ci = 0; ci < cases.length; ci++) {
    const c = cases[ci];
    const gamma = c.q.length;
    const V = c.p[0].length;
    const draftRng = new Rng(40_000 + ci);
    const ruleRng = new Rng(41_000 + ci);
    const random = () => ruleRng.next();
    const lengths = new Array<number>(gamma + 1).fill(0);
    const tokensAt = Array.from({ length: gamma + 1 }, () => new Array<number>(V).fill(0)); // [gamma + 1][V]
    for (let t = 0; t < c.trials; t++) {
      const drafted = c.q.map((q) => sampleFromProbs(Float32Array.from(q), draftRng));
      const p = c.p.map((r) => Float32Array.from(r));
      const q = c.q.map((r) => Float32Array.from(r));
      let out: { accepted: number; token: number };
      try {
        out = rule(p, q, [...drafted], random);
      } catch (e) {
        return failed(id, ci + 1, c.name, `${describeDist(c)}; drafted ${short(drafted)}`, '{ accepted, token }', `threw: ${e instanceof Error ? e.message : String(e)}`, 'your function threw on this input');
      }
      const n = out?.accepted;
      const token = out?.token;
      if (!Number.isInteger(n) || n < 0 || n > gamma || !Number.isInteger(token) || token < 0 || token >= V) {
        return failed(id, ci + 1, c.name, `${describeDist(c)}; drafted ${short(drafted)}`, `{ accepted: an integer in 0..${gamma}, token: a token id in 0..${V - 1} }`, short(out),
          'return how many drafts were kept (a prefix of drafted) and the one token after them');
      }
      lengths[n]++;
      for (let k = 0; k < n; k++) tokensAt[k][drafted[k]]++;
      tokensAt[n][token]++;
    }
    // the accepted length
    const critical = (df: number) => chiSquareCritical(df, TAIL);
    const lawN = acceptedLengthLaw(c);
    const sN = chiSquare(lengths, lawN);
    if (sN.impossible > 0 || sN.chi2 > critical(sN.df)) {
      const freq = lengths.map((x) => x / c.trials);
      const tooMany = freq[gamma] > lawN[gamma];
      return failed(id, ci + 1, c.name, describeDist(c), `kept drafts per step, n = 0..${gamma}: ${fmt(lawN)}`,
        `${fmt(freq)} (chi-square ${sN.chi2.toFixed(1)}, critical ${critical(sN.df).toFixed(1)})`,
        (tooMany
          ? 'you keep drafts too often. '
          : 'you keep drafts too rarely. ') +
          'Test the drafts left to right: keep d_i with probability min(1, p_i(d_i) / q_i(d_i)) (compare one random() with it; when p >= q keep it outright), and stop at the first rejection.');
    }
    // each emitted position k: among the trials that reached it, the token must follow p_k
    for (let k = 0; k <= gamma; k++) {
      const sK = chiSquare(tokensAt[k], c.p[k]);
      const reached = tokensAt[k].reduce((a, b) => a + b, 0);
      if (reached < 50) continue; // too few to judge
      if (sK.impossible === 0 && sK.chi2 <= critical(sK.df)) continue;
      const freq = tokensAt[k].map((x) => x / reached);
      const where = k === 0 ? 'the first emitted token' : `emitted token ${k + 1} (when the step got that far)`;
      let hint: string;
      if (k === gamma) {
        hint = `after keeping all ${gamma} drafts, the step emits a bonus token drawn from p_${gamma + 1}, the target's last distribution.`;
      } else {
        const biased = noCorrectionLaw(c.p[k], c.q[k]);
        const sBiased = chiSquare(tokensAt[k], biased);
        hint = sBiased.impossible === 0 && sBiased.chi2 <= critical(sBiased.df)
          ? 'this is what resampling from p gives after a rejection: the draft\'s favourites come out too often. Draw the replacement from the residual norm(max(0, p_i - q_i)) instead.'
          : 'after a rejection, draw the replacement from the residual norm(max(0, p_i - q_i)) (one random() and an inverse-CDF walk over the weights); the accepted draft and the replacement together must reproduce p_i.';
      }
      return failed(id, ci + 1, c.name, describeDist(c), `${where} ~ p_${k + 1} = ${fmt(c.p[k])}`,
        `${fmt(freq)} over ${reached} steps (chi-square ${sK.chi2.toFixed(1)}, critical ${critical(sK.df).toFixed(1)}${sK.impossible ? `, ${sK.impossible} tokens the target gives probability 0` : ''})`, hint);
    }
  }
  return { id, passed: true, cases: cases.length };
}

// ---- 2..4: pure functions against the library

function expectedTokensCases(): Case<[number, number]>[] {
  const rng = new Rng(4_002);
  const cases: Case<[number, number]>[] = [
    { name: 'the tutorial: alpha 0.7, gamma 4', input: [0.7, 4] },
    { name: 'edge: alpha 0 (every draft rejected)', input: [0, 4] },
    { name: 'edge: alpha 1 (every draft kept)', input: [1, 5] },
    { name: 'edge: gamma 1', input: [0.6, 1] },
  ];
  for (let i = 0; i < 12; i++) cases.push({ name: `seeded random ${i + 1}`, input: [Number(rng.next().toFixed(3)), 1 + Math.floor(rng.next() * 8)] });
  return cases;
}

function lookupCases(): Case<[number[], number, number]>[] {
  const rng = new Rng(4_003);
  const cases: Case<[number[], number, number]>[] = [
    { name: 'a repeat: propose what followed', input: [[7, 1, 2, 3, 4, 5, 1, 2], 3, 3] },
    { name: 'the longest n-gram wins over a more recent short one', input: [[5, 1, 2, 3, 9, 9, 7, 3, 0, 1, 2, 3], 2, 3] },
    { name: 'the most recent occurrence wins', input: [[1, 2, 8, 8, 1, 2, 6, 6, 1, 2], 2, 2] },
    { name: 'fewer than gamma tokens follow the match', input: [[4, 5, 6, 4, 5], 4, 2] },
    { name: 'an overlapping repeat', input: [[1, 2, 1, 2, 1, 2], 4, 2] },
    { name: 'edge: no match', input: [[1, 2, 3, 4, 5], 3, 3] },
    { name: 'edge: one token of context', input: [[3], 2, 2] },
    { name: 'edge: back off to one token', input: [[1, 2, 3, 9, 4, 5, 3], 3, 3] },
  ];
  for (let i = 0; i < 20; i++) {
    const L = 3 + Math.floor(rng.next() * 30);
    const V = 3 + Math.floor(rng.next() * 5);
    cases.push({ name: `seeded random ${i + 1}`, input: [Array.from({ length: L }, () => Math.floor(rng.next() * V)), 1 + Math.floor(rng.next() * 5), 1 + Math.floor(rng.next() * 4)] });
  }
  return cases;
}

function greedyCases(): Case<[number[], number[]]>[] {
  const rng = new Rng(4_004);
  const cases: Case<[number[], number[]]>[] = [
    { name: 'first draft rejected', input: [[3, 5, 6], [4, 5]] },
    { name: 'edge: every draft matches (bonus token)', input: [[1, 2, 3, 4], [1, 2, 3]] },
    { name: 'edge: gamma 1, kept', input: [[9, 8], [9]] },
    { name: 'a later draft matches after a mismatch (still stop at the first)', input: [[1, 2, 3, 4], [1, 7, 3]] },
  ];
  for (let i = 0; i < 20; i++) {
    const gamma = 1 + Math.floor(rng.next() * 6);
    const target = Array.from({ length: gamma + 1 }, () => Math.floor(rng.next() * 4));
    const drafted = target.slice(0, gamma).map((t) => (rng.next() < 0.75 ? t : (t + 1 + Math.floor(rng.next() * 3)) % 4));
    cases.push({ name: `seeded random ${i + 1}`, input: [target, drafted] });
  }
  return cases;
}

// ---- the predict exercise's measurement

/** Mean tokens emitted per step when each of gamma drafts is kept by an alpha-coin (seeded simulation). */
export function coinTokensPerStep(alpha: number, gamma: number, steps = 20_000, seed = 7): number {
  const rng = new Rng(seed);
  let emitted = 0;
  for (let s = 0; s < steps; s++) {
    let n = 0;
    while (n < gamma && rng.next() < alpha) n++;
    emitted += n + 1; // the kept drafts + the target's own token
  }
  return emitted / steps;
}

// ---- the exercises

const acceptReject: BuildExercise<AcceptRejectFn> = {
  kind: 'build',
  id: 'l4.accept-reject',
  lesson: 4,
  title: 'the speculative accept/reject rule',
  signature: '(p: Float32Array[] /* [gamma + 1][V] */, q: Float32Array[] /* [gamma][V] */, drafted: number[] /* [gamma] */, random: () => number) => { accepted: number; token: number }',
  run: (fn) => checkAcceptReject('l4.accept-reject', fn),
};

const expectedTokens: BuildExercise<(alpha: number, gamma: number) => number> = {
  kind: 'build',
  id: 'l4.expected-tokens',
  lesson: 4,
  title: 'expected tokens per step',
  signature: '(alpha: number, gamma: number) => number',
  run: (fn) =>
    runCases(fn, {
      id: 'l4.expected-tokens',
      cases: expectedTokensCases,
      reference: ([alpha, gamma]) => expectedTokensPerStep(alpha, gamma),
      call: (f, [alpha, gamma]) => (f as (a: number, g: number) => number)(alpha, gamma),
      compare: closeNumber(1e-9),
      describe: ([alpha, gamma]) => `alpha = ${alpha}, gamma = ${gamma}`,
      hint: ([alpha, gamma], e, g) => {
        const close = (x: number) => typeof g === 'number' && Math.abs(g - x) <= 1e-9 * Math.max(1, Math.abs(x));
        const general = 'A step emits its kept drafts plus one token of the target\'s own (the correction or the bonus): sum over k = 0..gamma of alpha^k.';
        if (close(e - 1)) return `That is the kept drafts only: add the target's own token. ${general}`;
        if (alpha < 1 && close((1 - alpha ** gamma) / (1 - alpha))) return `One term short: gamma drafts give gamma + 1 terms (k = 0..gamma). ${general}`;
        if (alpha === 1) return `At alpha = 1 the closed form is 0/0; every draft is kept, so the step emits gamma + 1 tokens. ${general}`;
        return general;
      },
    }),
};

const lookup: BuildExercise<(context: number[], gamma: number, maxNgram: number) => number[]> = {
  kind: 'build',
  id: 'l4.prompt-lookup',
  lesson: 4,
  title: 'a prompt-lookup drafter',
  signature: '(context: number[], gamma: number, maxNgram: number) => number[]',
  run: (fn) =>
    runCases(fn, {
      id: 'l4.prompt-lookup',
      cases: lookupCases,
      reference: ([context, gamma, maxNgram]) => promptLookup(context, gamma, { maxNgram, minNgram: 1 }),
      call: (f, [context, gamma, maxNgram]) => (f as (c: number[], g: number, m: number) => number[])(context, gamma, maxNgram),
      compare: (e, g) => (Array.isArray(g) ? sameValue<number[]>()(e, g) : `expected an array of token ids, got ${typeof g}.`),
      describe: ([context, gamma, maxNgram]) => `context = ${short(context, 40)}, gamma = ${gamma}, maxNgram = ${maxNgram}`,
      hint: ([context, gamma, maxNgram], _e, g) => {
        const general =
          'For n = maxNgram down to 1 (and n < context length): take the last n tokens as the pattern, search earlier start positions from the most recent ' +
          'backwards (the pattern itself, at the very end, does not count), and at the first match return up to gamma tokens that follow it. [] if no n matches.';
        const same = (x: number[]) => sameValue<number[]>()(x, g) === null;
        const L = context.length;
        const earliest = (() => {
          for (let n = Math.min(maxNgram, L - 1); n >= 1; n--) {
            for (let j = 0; j <= L - n - 1; j++) if (context.slice(j, j + n).every((t, k) => t === context[L - n + k])) return context.slice(j + n, j + n + gamma);
          }
          return [];
        })();
        if (same(earliest)) return `You took the earliest occurrence: the most recent earlier one wins (it is likelier to continue the same way). ${general}`;
        const n0 = Math.min(maxNgram, L - 1);
        if (n0 >= 1 && promptLookup(context, gamma, { maxNgram: n0, minNgram: n0 }).length === 0 && Array.isArray(g) && g.length === 0) {
          return `No ${n0}-gram matched, but a shorter one does: back off to shorter n-grams. ${general}`;
        }
        return general;
      },
    }),
};

const greedyAccept: BuildExercise<(targetTokens: number[], drafted: number[]) => { accepted: number; token: number }> = {
  kind: 'build',
  id: 'l4.greedy-accept',
  lesson: 4,
  title: 'the greedy accept rule',
  signature: '(targetTokens: number[] /* [gamma + 1]: the target\'s argmax at each position */, drafted: number[] /* [gamma] */) => { accepted: number; token: number }',
  run: (fn) =>
    runCases(fn, {
      id: 'l4.greedy-accept',
      cases: greedyCases,
      reference: ([targetTokens, drafted]) => {
        const r = acceptGreedy(targetTokens.map((t) => ({ token: t, logprob: 0 })), drafted);
        return { accepted: r.accepted, token: r.token };
      },
      call: (f, [targetTokens, drafted]) => {
        const r = (f as (t: number[], d: number[]) => { accepted: number; token: number })(targetTokens, drafted);
        return r && typeof r === 'object' ? { accepted: r.accepted, token: r.token } : r;
      },
      compare: sameValue(),
      describe: ([targetTokens, drafted]) => `targetTokens = ${short(targetTokens)}, drafted = ${short(drafted)}`,
      hint: ([targetTokens, drafted], e, g) => {
        const general = 'Keep drafts while each equals the target\'s token at its position; then emit the target\'s token at the first position that differs, or targetTokens[gamma] (the bonus) when all were kept.';
        if (g.accepted === e.accepted && e.accepted < drafted.length && g.token === drafted[e.accepted]) return `You emitted the rejected draft: the step adds the target's token there. ${general}`;
        if (g.accepted === e.accepted && g.token === targetTokens[e.accepted + 1]) return `Off by one: the target's token at the first mismatch is targetTokens[accepted]. ${general}`;
        if (g.accepted > e.accepted) return `Only a prefix counts: drafts after the first mismatch were never verified against the right context. ${general}`;
        return general;
      },
    }),
};

const predictTokensPerStep: PredictExercise & { measure: () => number } = {
  kind: 'predict',
  id: 'l4.predict-tokens-per-step',
  lesson: 4,
  title: 'tokens per step of a 70% coin at gamma 4',
  question: 'Each of gamma = 4 drafts is kept with probability 0.7, independently, up to the first rejection. How many tokens does one step emit on average (kept drafts and the target\'s own token)?',
  tolerance: 0.05,
  measure: () => coinTokensPerStep(0.7, 4),
};

/** Lesson 4's exercises, one field per exercise, in the order the notebook poses them. */
export const lesson4 = { acceptReject, expectedTokens, lookup, greedyAccept, predictTokensPerStep };

/** Lesson 4's exercises, in the order the notebook poses them. */
export const lesson4Exercises: Exercise[] = Object.values(lesson4);
