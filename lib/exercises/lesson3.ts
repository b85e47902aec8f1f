// Lesson 3's exercises (notebooks/03-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
// The references: lib/kv/quant.ts's quantize/dequantize (symmetric per-channel int8, asymmetric
// per-token groups int4, float32 scales), lib/kv/budget.ts's proportionalBudgets and the keep rule
// of lib/kv/evicting.ts (sinks, recent window, heavy hitters).
import { proportionalBudgets } from '../kv/budget';
import { keptSlots } from '../kv/evicting';
import { dequantize, groupLayout, packCodes, packMeta, quantize, resolveQuantScheme, unpackCodes, unpackMeta } from '../kv/quant';
import { Rng } from '../generate/sampling';
import { buildExercise, closeArray, predictExercise, randomInt, randomNormals, randomPick, sameValue, short, type Case, type Exercise } from './check';

// ---- inputs: keys with outlier channels, as the lesson's recorded keys have

interface Block {
  x: Float32Array; // [n, D]: n tokens of one head, D channels
  n: number;
  D: number;
}

/** n tokens x D channels of normals; a few channels scaled up (outliers), optionally one channel of zeros. */
function keysLike(rng: Rng, n: number, D: number, opts: { outliers?: number; zeroChannel?: boolean; constantToken?: boolean } = {}): Float32Array {
  const x = randomNormals(rng, n * D);
  for (let o = 0; o < (opts.outliers ?? 2); o++) {
    const d = randomInt(rng, 0, D - 1);
    const k = 4 + 8 * rng.next();
    for (let t = 0; t < n; t++) x[t * D + d] *= k;
  }
  if (opts.zeroChannel) for (let t = 0; t < n; t++) x[t * D + 1] = 0;
  if (opts.constantToken) x.fill(0.75, 0, D);
  return x;
}

const describeBlock = (b: Block) => `n = ${b.n} tokens, D = ${b.D} channels, x = ${short(b.x, 6)}`;

// ---- 1. symmetric int8 per channel

export interface Int8Channel {
  codes: Int8Array; // [n, D], in [-127, 127]
  scales: Float32Array; // [D]
}

const int8Scheme = (n: number, D: number) => resolveQuantScheme({ bits: 8, symmetric: true, granularity: 'channel', tokenGroup: n, metaBits: 32 }, D);

/** The library's symmetric per-channel int8, codes shifted back to signed. */
function int8Reference(b: Block): Int8Channel {
  const s = int8Scheme(b.n, b.D);
  const block = quantize(b.x, 1, b.n, b.D, s);
  const codes = Int8Array.from(unpackCodes(block.codes, 8), (c) => c - 128);
  const { scales } = unpackMeta(block.meta, 1, b.D, true, 32);
  return { codes, scales };
}

function int8Cases(seed: number): Case<Block>[] {
  const rng = new Rng(seed);
  const cases: Case<Block>[] = [
    { name: 'edge: one token', input: { x: keysLike(rng, 1, 8), n: 1, D: 8 } },
    { name: 'edge: a channel of zeros (its scale is 1)', input: { x: keysLike(rng, 6, 8, { zeroChannel: true }), n: 6, D: 8 } },
    { name: '16 tokens, 16 channels, two outlier channels', input: { x: keysLike(rng, 16, 16), n: 16, D: 16 } },
  ];
  for (let i = 0; i < 6; i++) {
    const n = randomInt(rng, 2, 64);
    const D = randomPick(rng, [4, 8, 32, 64]);
    cases.push({ name: `random keys ${i + 1}`, input: { x: keysLike(rng, n, D, { outliers: randomInt(rng, 0, 3) }), n, D } });
  }
  return cases;
}

/** Codes equal to the reference's, except one level off where x / s sits on a rounding tie (within 1e-3). */
function compareQuantized(e: { codes: ArrayLike<number>; scales: ArrayLike<number>; zeros?: ArrayLike<number> }, g: unknown, x: Float32Array, groupOf: (i: number) => number, zeroOf: (zeros: ArrayLike<number> | undefined, grp: number) => number): string | null {
  const got = g as { codes?: ArrayLike<number>; scales?: ArrayLike<number>; zeros?: ArrayLike<number> } | null;
  if (!got || typeof got !== 'object' || !got.codes || !got.scales) return `expected an object { codes, scales${e.zeros ? ', zeros' : ''} }.`;
  const scales = closeArray(1e-6, 1e-30)(e.scales, got.scales);
  if (scales) return `scales: ${scales}`;
  if (e.zeros) {
    if (!got.zeros) return 'expected zero points (zeros) too.';
    const zeros = closeArray(1e-6, 1e-30)(e.zeros, got.zeros);
    if (zeros) return `zeros: ${zeros}`;
  }
  if (got.codes.length !== e.codes.length) return `codes: expected length ${e.codes.length}, got ${got.codes.length}.`;
  for (let i = 0; i < e.codes.length; i++) {
    if (got.codes[i] === e.codes[i]) continue;
    const grp = groupOf(i);
    const level = (x[i] - zeroOf(e.zeros, grp)) / e.scales[grp];
    const tie = Math.abs(Math.abs(level - Math.floor(level)) - 0.5) < 1e-3;
    if (!(tie && Math.abs(got.codes[i] - e.codes[i]) === 1)) return `codes: first difference at index ${i} (x = ${x[i]}): expected ${e.codes[i]}, got ${got.codes[i]}.`;
  }
  return null;
}

const quantizeInt8PerChannel = buildExercise<(x: Float32Array, n: number, D: number) => Int8Channel, Block, Int8Channel>(
  {
    id: 'l3.int8-channel',
    lesson: 3,
    title: 'A symmetric int8 per-channel quantizer',
    signature: '(x: Float32Array /* [n, D] */, n: number, D: number) => { codes: Int8Array /* [n, D] */; scales: Float32Array /* [D] */ }',
  },
  {
    cases: () => int8Cases(301),
    reference: int8Reference,
    call: (fn, b) => (fn as (x: Float32Array, n: number, D: number) => Int8Channel)(b.x, b.n, b.D),
    compare: (e, g, b) => compareQuantized(e, g, b!.x, (i) => i % b!.D, () => 0),
    describe: describeBlock,
    hint: (b, e, g) => {
      const got = g as Partial<Int8Channel> | null;
      const s = got?.scales;
      if (s && s.length === b.n && b.n !== b.D) return 'One scale per channel d (over all n tokens), not per token: scales has D entries.';
      if (s && s.length === b.D && e.scales.length === b.D) {
        const r = s[0] / e.scales[0];
        if (Math.abs(r - 127 / 128) < 1e-4) return 'Symmetric int8 uses the levels -127..127: s = max |x| / 127 (128 would let +max round to 128, out of range).';
        if (Math.abs(r - 127 / 255) < 1e-4) return 'Symmetric: the codes are signed, s = max |x| / 127; 255 levels are for the asymmetric (min/max) scheme.';
      }
      return 'Per channel d: s_d = max over tokens of |x[t, d]| / 127 (1 for a channel of zeros); code = round(x / s_d), nearest level, never floor.';
    },
  },
);

// ---- 2. its dequantizer

interface DequantInput {
  codes: Int8Array;
  scales: Float32Array;
  n: number;
  D: number;
}

const dequantizeInt8PerChannel = buildExercise<(codes: Int8Array, scales: Float32Array, n: number, D: number) => Float32Array, DequantInput, Float32Array>(
  {
    id: 'l3.int8-channel-dequant',
    lesson: 3,
    title: 'Its dequantizer',
    signature: '(codes: Int8Array /* [n, D] */, scales: Float32Array /* [D] */, n: number, D: number) => Float32Array  // x^ [n, D]',
  },
  {
    cases: () =>
      int8Cases(302).map((c) => {
        const q = int8Reference(c.input);
        return { name: c.name, input: { codes: q.codes, scales: q.scales, n: c.input.n, D: c.input.D } };
      }),
    reference: (q) => {
      // the library's dequantize of the same block (codes shifted back to unsigned)
      const s = int8Scheme(q.n, q.D);
      const codes = packCodes(Uint8Array.from(q.codes, (c) => c + 128), 8);
      return dequantize({ R: 1, n: q.n, D: q.D, codes, meta: packMeta(q.scales, null, q.D, 32) }, s);
    },
    call: (fn, q) => (fn as (c: Int8Array, s: Float32Array, n: number, D: number) => Float32Array)(q.codes, q.scales, q.n, q.D),
    compare: closeArray(1e-6, 1e-7),
    describe: (q) => `n = ${q.n}, D = ${q.D}, codes = ${short(q.codes, 6)}, scales = ${short(q.scales, 6)}`,
    hint: (q) => `x^[t, d] = codes[t, d] x scales[d]: the scale of the element's channel (index t * D + d, channel d = index % D${q.n === q.D ? '' : ', not its token'}).`,
  },
);

// ---- 3. asymmetric int4 with groups along each token

interface GroupInput extends Block {
  groupSize: number;
}

export interface Int4Groups {
  codes: Uint8Array; // [n, D], in 0..15
  scales: Float32Array; // [n, D / groupSize]
  zeros: Float32Array; // [n, D / groupSize]
}

function int4Reference(b: GroupInput): Int4Groups {
  const s = resolveQuantScheme({ bits: 4, symmetric: false, granularity: 'token', groupSize: b.groupSize, metaBits: 32 }, b.D);
  const block = quantize(b.x, 1, b.n, b.D, s);
  const { units, groupsPerUnit } = groupLayout(s, 1, b.n, b.D);
  const { scales, zeros } = unpackMeta(block.meta, units, groupsPerUnit, false, 32);
  return { codes: unpackCodes(block.codes, 4), scales, zeros: zeros! };
}

const quantizeInt4Groups = buildExercise<(x: Float32Array, n: number, D: number, groupSize: number) => Int4Groups, GroupInput, Int4Groups>(
  {
    id: 'l3.int4-groups',
    lesson: 3,
    title: 'An asymmetric int4 group quantizer',
    signature:
      '(x: Float32Array /* [n, D] */, n: number, D: number, groupSize: number) => { codes: Uint8Array /* [n, D] */; scales: Float32Array /* [n, D / groupSize] */; zeros: Float32Array /* [n, D / groupSize] */ }',
  },
  {
    cases: () => {
      const rng = new Rng(303);
      const cases: Case<GroupInput>[] = [
        { name: 'edge: one group per token (groupSize = D)', input: { x: keysLike(rng, 3, 8), n: 3, D: 8, groupSize: 8 } },
        { name: 'edge: a constant group (its scale is 1)', input: { x: keysLike(rng, 4, 16, { constantToken: true }), n: 4, D: 16, groupSize: 8 } },
        { name: 'groups of 4 channels', input: { x: keysLike(rng, 8, 16), n: 8, D: 16, groupSize: 4 } },
      ];
      for (let i = 0; i < 6; i++) {
        const D = randomPick(rng, [8, 16, 32, 64]);
        const groupSize = randomPick(rng, [2, 4, 8, D].filter((g) => D % g === 0));
        const n = randomInt(rng, 1, 32);
        cases.push({ name: `random keys ${i + 1}`, input: { x: keysLike(rng, n, D, { outliers: randomInt(rng, 0, 3) }), n, D, groupSize } });
      }
      return cases;
    },
    reference: int4Reference,
    call: (fn, b) => (fn as (x: Float32Array, n: number, D: number, g: number) => Int4Groups)(b.x, b.n, b.D, b.groupSize),
    compare: (e, g, b) => compareQuantized(e, g, b!.x, (i) => Math.floor(i / b!.groupSize), (z, grp) => z![grp]),
    describe: (b) => `${describeBlock(b)}, groupSize = ${b.groupSize}`,
    hint: (b, e, g) => {
      const got = g as Partial<Int4Groups> | null;
      if (got?.scales && got.scales.length === e.scales.length && e.scales[0] !== 1 && Math.abs(got.scales[0] / e.scales[0] - 15 / 16) < 1e-4) {
        return 'b bits give 2^b levels, codes 0..15: the step is (max - min) / 15, not / 16.';
      }
      if (got?.scales && got.scales.length !== e.scales.length) return `One (scale, zero) per group of ${b.groupSize} consecutive channels of each token: ${e.scales.length} groups here.`;
      return 'Per group (groupSize consecutive channels of one token): zero = min, s = (max - min) / 15 (1 for a constant group), code = round((x - zero) / s).';
    },
  },
);

// ---- 4. a KV budget split by entropy

interface BudgetInput {
  entropies: number[];
  total: number;
  min: number;
}

const entropyBudgets = buildExercise<(entropies: number[], total: number, min: number) => number[], BudgetInput, number[]>(
  {
    id: 'l3.entropy-budgets',
    lesson: 3,
    title: 'A KV budget split by entropy',
    signature: '(entropies: number[] /* per layer */, total: number, min: number) => number[]  // tokens per layer, summing to total',
  },
  {
    cases: () => {
      const rng = new Rng(304);
      const cases: Case<BudgetInput>[] = [
        { name: 'edge: total = layers x min (nothing to share)', input: { entropies: [2.1, 1.5, 0.9, 0.4], total: 4 * 53, min: 53 } },
        { name: 'edge: equal entropies (ties go to the first layers)', input: { entropies: [1, 1, 1], total: 3 * 10 + 5, min: 10 } },
        { name: 'like the lesson: 8 layers, 128 tokens each on average', input: { entropies: [3.1, 2.6, 2.2, 1.9, 1.6, 1.2, 1.05, 0.9], total: 1024, min: 53 } },
      ];
      for (let i = 0; i < 10; i++) {
        const L = randomInt(rng, 2, 32);
        const min = randomInt(rng, 0, 64);
        cases.push({ name: `random ${i + 1}`, input: { entropies: Array.from({ length: L }, () => Number((0.2 + 4 * rng.next()).toFixed(3))), total: L * min + randomInt(rng, 0, 4000), min } });
      }
      return cases;
    },
    reference: (x) => proportionalBudgets(x.entropies, x.total, x.min),
    call: (fn, x) => (fn as (e: number[], t: number, m: number) => number[])(x.entropies, x.total, x.min),
    compare: sameValue<number[]>(),
    hint: (x, e, g) => {
      if (!Array.isArray(g)) return 'Return an array with one budget per layer.';
      const sum = (g as unknown[]).reduce((a: number, b) => a + (typeof b === 'number' ? b : NaN), 0);
      if (sum !== x.total) return `Your budgets sum to ${sum}, not ${x.total}: after rounding down, hand the tokens left over one by one to the layers with the largest fractional parts.`;
      if ((g as number[]).some((b) => b < x.min)) return `Every layer gets at least min = ${x.min} tokens.`;
      return 'Give every layer min first; split the rest (total - L x min) in proportion to the entropies, round down, then give the leftover tokens one each to the largest fractional parts (ties: the lower layer first).';
    },
  },
);

// ---- 5. which tokens an H2O cache keeps

interface KeepInput {
  scores: number[]; // accumulated attention of the slots, oldest first (slot i holds position i)
  budget: number;
  sinks: number;
  recent: number;
}

// lib/kv/evicting.ts's keep rule itself, slot i holding position i
function keepReference(x: KeepInput): number[] {
  return keptSlots(x.scores.map((_, i) => i), x.scores, x.budget, { sinks: x.sinks, recent: x.recent, policy: 'h2o' });
}

const keepSlots = buildExercise<(scores: number[], budget: number, sinks: number, recent: number) => number[], KeepInput, number[]>(
  {
    id: 'l3.h2o-keep',
    lesson: 3,
    title: 'Which tokens an H2O cache keeps',
    signature: '(scores: number[] /* accumulated attention per token, oldest first */, budget: number, sinks: number, recent: number) => number[]  // kept indices, ascending',
  },
  {
    cases: () => {
      const rng = new Rng(305);
      const scoresOf = (n: number, ints: boolean) => Array.from({ length: n }, () => (ints ? randomInt(rng, 0, 5) : Number((10 * rng.next()).toFixed(4))));
      const cases: Case<KeepInput>[] = [
        { name: 'edge: fits, nothing evicted', input: { scores: scoresOf(10, false), budget: 12, sinks: 2, recent: 3 } },
        { name: 'edge: exactly the budget', input: { scores: scoresOf(12, false), budget: 12, sinks: 2, recent: 3 } },
        { name: 'one heavy hitter in the middle', input: { scores: [5, 1, 0.1, 0.2, 9, 0.3, 0.1, 0.2, 1, 2], budget: 5, sinks: 1, recent: 3 } },
        { name: 'edge: no sinks, no recent window', input: { scores: scoresOf(16, false), budget: 6, sinks: 0, recent: 0 } },
        { name: 'tied scores (the newer token wins)', input: { scores: [1, 1, 1, 1, 1, 1, 1, 1], budget: 5, sinks: 1, recent: 1 } },
      ];
      for (let i = 0; i < 10; i++) {
        const n = randomInt(rng, 8, 80);
        const sinks = randomInt(rng, 0, 4);
        const recent = randomInt(rng, 0, 8);
        cases.push({ name: `random ${i + 1}`, input: { scores: scoresOf(n, i % 2 === 0), budget: randomInt(rng, sinks + recent + 1, n + 2), sinks, recent } });
      }
      return cases;
    },
    reference: keepReference,
    call: (fn, x) => (fn as (s: number[], b: number, k: number, r: number) => number[])(x.scores, x.budget, x.sinks, x.recent),
    compare: sameValue<number[]>(),
    describe: (x) => `scores = ${short(x.scores, 12)}, budget = ${x.budget}, sinks = ${x.sinks}, recent = ${x.recent}`,
    hint: (x, e, g) => {
      if (!Array.isArray(g)) return 'Return the kept indices as an array, ascending.';
      if (g.length !== e.length) return `Keep min(n, budget) = ${e.length} tokens; you kept ${g.length}.`;
      const n = x.scores.length;
      const kept = new Set(g as number[]);
      if ([...Array(Math.min(x.recent, n)).keys()].some((i) => !kept.has(n - 1 - i))) return `The newest ${x.recent} tokens (the recent window) are always kept.`;
      if ([...Array(Math.min(x.sinks, n)).keys()].some((i) => !kept.has(i))) return `The first ${x.sinks} tokens (attention sinks) are always kept.`;
      if ((g as number[]).some((v, i) => i > 0 && v <= (g as number[])[i - 1])) return 'Return the kept indices in ascending order, each once.';
      return 'Sinks and the recent window first; fill the rest of the budget with the highest scores among the others (on a tie, the newer token); return the indices ascending.';
    },
  },
);

// ---- 6. predict, then measure: int4 vs int8 error

const predictInt4Error = predictExercise({
  id: 'l3.int4-vs-int8',
  lesson: 3,
  title: 'How much worse is int4 than int8?',
  question:
    "The tutorial's global min/max scheme (one scale for the whole tensor) quantizes keys with outlier channels at int8, then at int4. Predict (relative RMS error at int4) / (relative RMS error at int8).",
  tolerance: 0.2,
});

/** Lesson 3's exercises, one field per exercise, in the order the notebook poses them. */
export const lesson3 = { quantizeInt8PerChannel, dequantizeInt8PerChannel, quantizeInt4Groups, entropyBudgets, keepSlots, predictInt4Error };

/** Lesson 3's exercises, in the order the notebook poses them. */
export const lesson3Exercises: Exercise[] = Object.values(lesson3);
