// Lesson 2's exercises (notebooks/02-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
// The references: lib/bench/roofline.ts's kvBytesPerToken, attention over a cache written out as
// a plain float64 loop (the model's attention, one query token), and generate()'s loop counted.
import { kvBytesPerToken as kvBytes } from '../bench/roofline';
import { Rng } from '../generate/sampling';
import { resolveLlamaConfig, type LlamaConfig } from '../model/config';
import { loadPreset } from '../model/presets';
import { buildExercise, closeArray, closeNumber, predictExercise, randomInt, randomNormals, randomPick, sameValue, type Case, type Exercise } from './check';

// ---- inputs

/** target's shapes (data/models/target/config.json): 8 layers, 6 query heads, 2 KV heads of 64. */
const targetShapes = () => resolveLlamaConfig({ vocabSize: 8192, hiddenSize: 384, intermediateSize: 1024, numLayers: 8, numHeads: 6, numKvHeads: 2, headDim: 64, tieWordEmbeddings: true });
const llama2_7b = () => resolveLlamaConfig({ vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32 });

/** Configs where every factor shows: GQA (Hkv < H) and a head dim that is not hiddenSize / numHeads. */
function configCases(seed: number): Case<LlamaConfig>[] {
  const rng = new Rng(seed);
  const cases: Case<LlamaConfig>[] = [
    { name: 'target (8 layers, 2 KV heads of 64)', input: targetShapes() },
    { name: 'Llama-2-7B shapes (no GQA)', input: llama2_7b() },
    { name: 'Llama-3-8B shapes (8 KV heads)', input: loadPreset('random-llama3-8b').config },
  ];
  for (let i = 0; i < 10; i++) {
    const numHeads = randomPick(rng, [4, 8, 12, 16, 32]);
    const numKvHeads = randomPick(rng, [1, 2, 4].filter((h) => numHeads % h === 0 && h < numHeads));
    const headDim = randomPick(rng, [48, 64, 80, 128]);
    cases.push({
      name: `random GQA config ${i + 1}`,
      input: resolveLlamaConfig({ vocabSize: 32000, hiddenSize: numHeads * 64, intermediateSize: 1024, numLayers: randomInt(rng, 3, 40), numHeads, numKvHeads, headDim }),
    });
  }
  return cases;
}

const describeConfig = (c: LlamaConfig) =>
  `{ numLayers: ${c.numLayers}, hiddenSize: ${c.hiddenSize}, numHeads: ${c.numHeads}, numKvHeads: ${c.numKvHeads}, headDim: ${c.headDim}, ... }`;

const near = (x: number, y: number) => Math.abs(x / y - 1) < 1e-6;

/** Name the factor a KV-size answer is off by. */
function kvFactorHint(c: LlamaConfig, ratio: number): string | null {
  if (!Number.isFinite(ratio)) return null;
  if (near(ratio, 0.5)) return 'Did you count both K and V? Every token stores a key and a value.';
  if (near(ratio, 2)) return 'K and V are counted once each (a factor 2), not twice.';
  if (near(ratio, c.numHeads / c.numKvHeads)) return 'Grouped-query attention: the cache holds numKvHeads heads, not numHeads.';
  if (near(ratio, c.hiddenSize / c.numKvHeads / c.headDim)) return 'A head has headDim channels (config.headDim), and there are numKvHeads of them: hiddenSize is the query width.';
  if (near(ratio, 1 / c.numLayers)) return 'Every layer has its own cache: multiply by numLayers.';
  return null;
}

// ---- 1. KV bytes per token for a config

interface KvInput {
  config: LlamaConfig;
  bytesPerValue: number;
}

const kvBytesPerToken = buildExercise<(c: LlamaConfig, bytesPerValue: number) => number, KvInput, number>(
  {
    id: 'l2.kv-bytes',
    lesson: 2,
    title: 'KV-cache bytes per token of a config',
    signature: '(c: LlamaConfig, bytesPerValue: number) => number  // bytes one token adds to the cache, all layers',
  },
  {
    cases: () => configCases(201).flatMap((c, i) => [{ name: `${c.name}, float32`, input: { config: c.input, bytesPerValue: 4 } }, ...(i % 3 === 1 ? [{ name: `${c.name}, FP16`, input: { config: c.input, bytesPerValue: 2 } }] : [])]),
    reference: (x) => kvBytes({ layers: x.config.numLayers, kvHeads: x.config.numKvHeads, headDim: x.config.headDim, bytesPerElement: x.bytesPerValue }),
    call: (fn, x) => (fn as (c: LlamaConfig, b: number) => number)(x.config, x.bytesPerValue),
    compare: closeNumber(1e-9),
    describe: (x) => `${describeConfig(x.config)}, bytesPerValue ${x.bytesPerValue}`,
    hint: (x, e, g) => (typeof g === 'number' ? kvFactorHint(x.config, g / e) : null) ?? 'Per token, every layer stores one key and one value per KV head, headDim values each.',
  },
);

// ---- 2. how long a context fits in a memory budget

interface FitInput {
  config: LlamaConfig;
  budgetBytes: number;
  bytesPerValue: number;
  batch: number;
}

const maxContext = buildExercise<(c: LlamaConfig, budgetBytes: number, bytesPerValue: number, batch: number) => number, FitInput, number>(
  {
    id: 'l2.max-context',
    lesson: 2,
    title: 'The longest context that fits in a KV budget',
    signature: '(c: LlamaConfig, budgetBytes: number, bytesPerValue: number, batch: number) => number  // whole tokens per sequence',
  },
  {
    cases: () => {
      const rng = new Rng(202);
      const cfgs = configCases(203);
      const out: Case<FitInput>[] = [
        { name: 'random-125m in 1 GiB, float32, one sequence', input: { config: loadPreset('random-125m').config, budgetBytes: 2 ** 30, bytesPerValue: 4, batch: 1 } },
        { name: 'edge: budget below one token', input: { config: llama2_7b(), budgetBytes: 1000, bytesPerValue: 2, batch: 1 } },
        { name: 'Llama-3-8B shapes, 40 GB, FP16, batch 32', input: { config: loadPreset('random-llama3-8b').config, budgetBytes: 40e9, bytesPerValue: 2, batch: 32 } },
      ];
      for (let i = 0; i < 10; i++) {
        out.push({ name: `random ${i + 1}`, input: { config: randomPick(rng, cfgs).input, budgetBytes: Math.round(10 ** (7 + 4 * rng.next())), bytesPerValue: randomPick(rng, [1, 2, 4]), batch: randomInt(rng, 1, 64) } });
      }
      return out;
    },
    reference: (x) => Math.floor(x.budgetBytes / (x.batch * kvBytes({ layers: x.config.numLayers, kvHeads: x.config.numKvHeads, headDim: x.config.headDim, bytesPerElement: x.bytesPerValue }))),
    call: (fn, x) => (fn as (c: LlamaConfig, b: number, v: number, n: number) => number)(x.config, x.budgetBytes, x.bytesPerValue, x.batch),
    compare: closeNumber(0, 0),
    describe: (x) => `${describeConfig(x.config)}, budgetBytes ${x.budgetBytes}, bytesPerValue ${x.bytesPerValue}, batch ${x.batch}`,
    hint: (x, e, g) => {
      if (typeof g !== 'number') return null;
      if (!Number.isInteger(g)) return 'A context is a whole number of tokens: round down (a token that does not fit entirely does not fit).';
      const c = x.config;
      const exact = x.budgetBytes / (x.batch * kvBytes({ layers: c.numLayers, kvHeads: c.numKvHeads, headDim: c.headDim, bytesPerElement: x.bytesPerValue }));
      if (g === Math.round(exact)) return 'Round down, not to the nearest: a token that does not fit entirely does not fit.';
      const about = (r: number) => g > 0 && Math.abs(g / (exact * r) - 1) < 2 / g;
      if (x.batch > 1 && about(x.batch)) return 'Each of the `batch` sequences has its own cache: the budget is shared between them.';
      if (about(2)) return 'Did you count both K and V? Every token stores a key and a value.';
      if (about(c.numKvHeads / c.numHeads)) return 'Grouped-query attention: the cache holds numKvHeads heads, not numHeads.';
      return 'Divide the budget by the bytes one token takes in every sequence of the batch, and round down.';
    },
  },
);

// ---- 3. attention of one new token over its cache

export interface AttentionInput {
  q: Float32Array; // [H, D]: the new token's queries
  k: Float32Array; // [Hkv, S, D]: the cache after appending the new token's key
  v: Float32Array; // [Hkv, S, D]
  shape: { H: number; Hkv: number; S: number; D: number };
}

/** softmax(q k^T / sqrt(D)) v per query head, in float64; head h reads KV head floor(h / (H / Hkv)). */
function attendReference(x: AttentionInput): Float32Array {
  const { H, Hkv, S, D } = x.shape;
  const out = new Float32Array(H * D);
  const scores = new Float64Array(S);
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / (H / Hkv));
    let max = -Infinity;
    for (let s = 0; s < S; s++) {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += x.q[h * D + d] * x.k[(g * S + s) * D + d];
      scores[s] = dot / Math.sqrt(D);
      max = Math.max(max, scores[s]);
    }
    let sum = 0;
    for (let s = 0; s < S; s++) sum += scores[s] = Math.exp(scores[s] - max);
    for (let d = 0; d < D; d++) {
      let acc = 0;
      for (let s = 0; s < S; s++) acc += scores[s] * x.v[(g * S + s) * D + d];
      out[h * D + d] = acc / sum;
    }
  }
  return out;
}

function attentionCases(): Case<AttentionInput>[] {
  const rng = new Rng(204);
  const make = (name: string, H: number, Hkv: number, S: number, D: number, scale = 1): Case<AttentionInput> => ({
    name,
    input: { q: randomNormals(rng, H * D, scale), k: randomNormals(rng, Hkv * S * D, scale), v: randomNormals(rng, Hkv * S * D), shape: { H, Hkv, S, D } },
  });
  const cases = [
    make('edge: the first token (S = 1)', 2, 2, 1, 4),
    make('one head, 6 tokens', 1, 1, 6, 4),
    make('multi-head, no GQA', 4, 4, 9, 8, 2),
    make('GQA: 8 query heads share 2 KV heads', 8, 2, 17, 16, 2),
    make('MQA: 4 query heads share 1 KV head', 4, 1, 12, 8, 2),
  ];
  for (let i = 0; i < 6; i++) {
    const Hkv = randomPick(rng, [1, 2, 4]);
    cases.push(make(`random ${i + 1}`, Hkv * randomPick(rng, [1, 2, 4]), Hkv, randomInt(rng, 2, 96), randomPick(rng, [8, 16, 32, 64]), 1 + 2 * rng.next()));
  }
  return cases;
}

const attendOneStep = buildExercise<(q: Float32Array, k: Float32Array, v: Float32Array, shape: AttentionInput['shape']) => Float32Array, AttentionInput, Float32Array>(
  {
    id: 'l2.attend-step',
    lesson: 2,
    title: 'Attention with a cache, one decode step',
    signature:
      '(q: Float32Array /* [H, D] */, k: Float32Array /* [Hkv, S, D] */, v: Float32Array /* [Hkv, S, D] */, shape: { H: number; Hkv: number; S: number; D: number }) => Float32Array  // [H, D]',
  },
  {
    cases: attentionCases,
    reference: attendReference,
    call: (fn, x) => (fn as (q: Float32Array, k: Float32Array, v: Float32Array, s: AttentionInput['shape']) => Float32Array)(x.q, x.k, x.v, x.shape),
    compare: closeArray(1e-4, 1e-5),
    describe: (x) => `shape ${JSON.stringify(x.shape)}, q [${x.shape.H}, ${x.shape.D}], k and v [${x.shape.Hkv}, ${x.shape.S}, ${x.shape.D}] (seeded normals)`,
    hint: (x) =>
      'Per query head h: scores over all S cached keys (the new token is already in the cache, the last one), scaled by 1 / sqrt(D); softmax over them; the weighted sum of the values.' +
      (x.shape.H !== x.shape.Hkv ? ` With grouped-query attention H / Hkv = ${x.shape.H / x.shape.Hkv} consecutive query heads share one KV head: head h reads KV head floor(h / (H / Hkv)).` : ''),
  },
);

// ---- 4. token-passes of generate(), naive vs cached

interface PassesInput {
  promptLength: number;
  newTokens: number;
}

/** generate()'s loop, counted: naive feeds the whole prefix every step; cached feeds the prompt once, then one token. */
function countPasses(x: PassesInput): { naive: number; cached: number } {
  let naive = 0;
  let cached = 0;
  let length = x.promptLength;
  for (let step = 0; step < x.newTokens; step++) {
    naive += length; // the whole text so far
    cached += step === 0 ? x.promptLength : 1; // the prompt, then the token sampled last
    length += 1; // this step's token joins the text
  }
  return { naive, cached };
}

const tokenPasses = buildExercise<(promptLength: number, newTokens: number) => { naive: number; cached: number }, PassesInput, { naive: number; cached: number }>(
  {
    id: 'l2.token-passes',
    lesson: 2,
    title: 'Tokens fed through the network: naive vs cached',
    signature: '(promptLength: number, newTokens: number) => { naive: number; cached: number }  // tokens processed by all forward passes of generate()',
  },
  {
    cases: () => {
      const rng = new Rng(205);
      const out: Case<PassesInput>[] = [
        { name: 'edge: one new token', input: { promptLength: 5, newTokens: 1 } },
        { name: 'edge: a one-token prompt', input: { promptLength: 1, newTokens: 4 } },
        { name: 'prompt 4, 3 new tokens', input: { promptLength: 4, newTokens: 3 } },
      ];
      for (let i = 0; i < 10; i++) out.push({ name: `random ${i + 1}`, input: { promptLength: randomInt(rng, 1, 500), newTokens: randomInt(rng, 1, 1000) } });
      return out;
    },
    reference: countPasses,
    call: (fn, x) => (fn as (p: number, n: number) => unknown)(x.promptLength, x.newTokens),
    compare: sameValue(),
    hint: (x, e, g) => {
      const got = g as { naive?: unknown; cached?: unknown } | null;
      if (got && got.cached === x.promptLength + x.newTokens) return 'Cached: the first pass (the prompt) already produces the first new token, so only newTokens - 1 one-token passes follow.';
      if (got && got.naive === e.naive + x.newTokens) return 'Naive: step i feeds the prompt plus the i tokens made before it; the token a step produces is fed only from the next step on.';
      return 'Walk through generate(): the step that makes new token i (from 0) feeds promptLength + i tokens without a cache; with a cache the prompt once, then one token per step.';
    },
  },
);

// ---- 5. predict, then measure: the 7B cache at 2048 tokens

const predict7bKv = predictExercise({
  id: 'l2.kv-7b',
  lesson: 2,
  title: 'KV cache of a 7B model at 2048 tokens',
  question: 'A 7B Llama with Llama-2-7B shapes (32 layers, 32 KV heads of 128, no GQA) holds 2048 tokens of one sequence in an FP16 cache. How many GB (1e9 bytes)?',
  tolerance: 0.1,
});

/** Lesson 2's exercises, one field per exercise, in the order the notebook poses them. */
export const lesson2 = { kvBytesPerToken, maxContext, attendOneStep, tokenPasses, predict7bKv };

/** Lesson 2's exercises, in the order the notebook poses them. */
export const lesson2Exercises: Exercise[] = Object.values(lesson2);
