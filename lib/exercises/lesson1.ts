// Lesson 1's exercises (notebooks/01-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
// The references are lib/bench/roofline.ts (bytes, FLOPs, intensity, predicted tokens/s) and the
// lesson's three-regime test (the largest of FLOPs/P, bytes/W and ops x cost per op).
import { bytesPerDecodedToken, decodeCost, predictDecodeTokensPerSecond, type ModelCost } from '../bench/roofline';
import { Rng } from '../generate/sampling';
import { resolveLlamaConfig, llamaSizes, type LlamaConfig } from '../model/config';
import { buildExercise, closeNumber, predictExercise, randomInt, randomPick, sameValue, type Case, type Exercise } from './check';

// ---- inputs

/** A random Llama config: the sizes of the models lessons meet, small to 8B. */
function randomConfig(rng: Rng): LlamaConfig {
  const numHeads = randomPick(rng, [4, 8, 9, 16, 32]);
  const headDim = randomPick(rng, [32, 64, 128]);
  const numKvHeads = randomPick(rng, [1, 2, 4, 8, numHeads].filter((h) => numHeads % h === 0));
  return resolveLlamaConfig({
    vocabSize: randomPick(rng, [4096, 32000, 49152, 128256]),
    hiddenSize: numHeads * headDim,
    intermediateSize: 4 * numHeads * headDim,
    numLayers: randomInt(rng, 2, 32),
    numHeads,
    numKvHeads,
    headDim,
  });
}

/** target's shapes (data/models/target/config.json). */
const targetShapes = () => resolveLlamaConfig({ vocabSize: 8192, hiddenSize: 384, intermediateSize: 1024, numLayers: 8, numHeads: 6, numKvHeads: 2, headDim: 64, tieWordEmbeddings: true });

/** A model's cost as lesson 1 builds it from a config (float32 weights and KV). */
function costOf(c: LlamaConfig): Required<ModelCost> {
  const s = llamaSizes(c);
  return { params: s.weightBytesPerToken / 4, weightBytes: s.weightBytesPerToken, kvBytesPerToken: s.kvBytesPerToken, attentionFlopsPerKey: 4 * c.numLayers * c.numHeads * c.headDim };
}

const ratio = (got: unknown, expected: number) => (typeof got === 'number' && expected !== 0 ? got / expected : NaN);
const near = (x: number, y: number) => Math.abs(x / y - 1) < 1e-6;

// ---- 1. bytes per decoded token

export interface Traffic {
  weightBytes: number;
  kvBytesPerToken: number;
  contextLength: number;
  batch: number;
}

function trafficCases(): Case<Traffic>[] {
  const rng = new Rng(101);
  const cases: Case<Traffic>[] = [
    { name: 'edge: batch 1, one token of context', input: { weightBytes: 62_000_000, kvBytesPerToken: 16_384, contextLength: 1, batch: 1 } },
    { name: 'batch 1, long context', input: { weightBytes: 62_000_000, kvBytesPerToken: 16_384, contextLength: 4096, batch: 1 } },
    { name: 'batch 8', input: { weightBytes: 62_000_000, kvBytesPerToken: 16_384, contextLength: 512, batch: 8 } },
  ];
  for (let i = 0; i < 12; i++) {
    const cost = costOf(randomConfig(rng));
    cases.push({ name: `random ${i + 1}`, input: { weightBytes: cost.weightBytes, kvBytesPerToken: cost.kvBytesPerToken, contextLength: randomInt(rng, 1, 8192), batch: randomInt(rng, 1, 64) } });
  }
  return cases;
}

const bytesPerToken = buildExercise<(t: Traffic) => number, Traffic, number>(
  {
    id: 'l1.bytes-per-token',
    lesson: 1,
    title: 'Bytes read per decoded token',
    signature: '(t: { weightBytes: number; kvBytesPerToken: number; contextLength: number; batch: number }) => number',
  },
  {
    cases: trafficCases,
    reference: (t) => bytesPerDecodedToken(t),
    compare: closeNumber(1e-9),
    hint: (t, e, g) => {
      const r = ratio(g, e);
      if (near(r, t.batch) && t.batch > 1) return 'One step makes `batch` tokens: divide the step\'s bytes by the batch.';
      if (typeof g === 'number' && near(g, t.weightBytes + t.contextLength * t.kvBytesPerToken) && t.batch > 1) return 'The weights are read once per step and shared by all `batch` sequences; each sequence reads only its own cache.';
      if (typeof g === 'number' && near(g, (t.weightBytes + t.contextLength * t.kvBytesPerToken) / t.batch)) return 'Every sequence of the batch reads its own KV cache: the cache bytes are per sequence, not shared.';
      if (typeof g === 'number' && near(g, e - t.kvBytesPerToken)) return 'contextLength already counts the new token: each sequence reads contextLength tokens of cache.';
      return 'A step reads every weight once (shared by the batch) and each sequence\'s cache of contextLength tokens; it produces `batch` tokens.';
    },
  },
);

// ---- 2. arithmetic intensity of a decode step

export interface IntensityInput {
  model: Required<ModelCost>;
  batch: number;
  contextLength: number;
}

function intensityCases(): Case<IntensityInput>[] {
  const rng = new Rng(102);
  const base = costOf(targetShapes());
  const cases: Case<IntensityInput>[] = [
    { name: 'edge: batch 1, context 1', input: { model: base, batch: 1, contextLength: 1 } },
    { name: 'no attention FLOPs counted', input: { model: { ...base, attentionFlopsPerKey: 0 }, batch: 4, contextLength: 100 } },
    { name: 'batch 16, context 1024', input: { model: base, batch: 16, contextLength: 1024 } },
  ];
  for (let i = 0; i < 12; i++) cases.push({ name: `random ${i + 1}`, input: { model: costOf(randomConfig(rng)), batch: randomInt(rng, 1, 256), contextLength: randomInt(rng, 1, 8192) } });
  return cases;
}

const decodeIntensity = buildExercise<(model: Required<ModelCost>, batch: number, contextLength: number) => number, IntensityInput, number>(
  {
    id: 'l1.decode-intensity',
    lesson: 1,
    title: 'Arithmetic intensity of a decode step',
    signature: '(model: { params: number; weightBytes: number; kvBytesPerToken: number; attentionFlopsPerKey: number }, batch: number, contextLength: number) => number  // FLOPs per byte',
  },
  {
    cases: intensityCases,
    reference: (x) => decodeCost(x.model, { batch: x.batch, contextLength: x.contextLength }).intensity,
    call: (fn, x) => (fn as (m: Required<ModelCost>, b: number, n: number) => number)(x.model, x.batch, x.contextLength),
    compare: closeNumber(1e-6),
    hint: (x, e, g) => {
      const r = ratio(g, e);
      if (near(r, 0.5)) return 'A multiply-add is 2 FLOPs: every weight gives 2 FLOPs per token.';
      const bytesNoKv = x.model.weightBytes;
      const flops = decodeCost(x.model, { batch: x.batch, contextLength: x.contextLength }).flops;
      if (typeof g === 'number' && near(g, flops / bytesNoKv)) return 'The step also reads every sequence\'s KV cache: batch x contextLength x kvBytesPerToken bytes.';
      if (typeof g === 'number' && near(g, (2 * x.model.params * x.batch) / (bytesNoKv + x.batch * x.contextLength * x.model.kvBytesPerToken))) return 'Attention has FLOPs too: attentionFlopsPerKey for each of the contextLength keys of each sequence.';
      if (near(r, 1 / x.batch) && x.batch > 1) return 'The step computes one token per sequence: the matmul FLOPs grow with the batch (the weight bytes do not).';
      return 'FLOPs: 2 per weight per token for the B tokens of the step, plus attentionFlopsPerKey for each of the contextLength keys of each sequence. Bytes: the weights once, plus each sequence\'s KV cache. Intensity = FLOPs / bytes.';
    },
  },
);

// ---- 3. which regime is this step in?

export type Regime = 'compute-bound' | 'bandwidth-bound' | 'overhead-bound';

export interface RegimeInput {
  step: { flops: number; bytes: number; ops: number };
  machine: { peakGflops: number; bandwidthGBps: number; usPerOp: number };
}

function regimeOf(x: RegimeInput): Regime {
  const terms: [Regime, number][] = [
    ['compute-bound', x.step.flops / (x.machine.peakGflops * 1e9)],
    ['bandwidth-bound', x.step.bytes / (x.machine.bandwidthGBps * 1e9)],
    ['overhead-bound', x.step.ops * x.machine.usPerOp * 1e-6],
  ];
  return terms.reduce((a, b) => (b[1] > a[1] ? b : a))[0];
}

function regimeCases(): Case<RegimeInput>[] {
  const rng = new Rng(103);
  const cpu = { peakGflops: 30, bandwidthGBps: 20, usPerOp: 12 };
  const h200 = { peakGflops: 5000, bandwidthGBps: 4000, usPerOp: 25 };
  const target = costOf(targetShapes());
  const big = costOf(resolveLlamaConfig({ vocabSize: 128256, hiddenSize: 4096, intermediateSize: 14336, numLayers: 32, numHeads: 32, numKvHeads: 8 }));
  const stepOf = (m: Required<ModelCost>, B: number, ops: number) => {
    const c = decodeCost(m, { batch: B, contextLength: 64 });
    return { flops: c.flops, bytes: c.bytes, ops };
  };
  const cases: Case<RegimeInput>[] = [
    { name: 'a small model on this kind of CPU, B = 1', input: { step: stepOf(target, 1, 370), machine: cpu } },
    { name: 'a small model on this kind of CPU, B = 64', input: { step: stepOf(target, 64, 370), machine: cpu } },
    { name: 'a small model on an H200 (eager tfjs)', input: { step: stepOf(target, 1, 370), machine: h200 } },
    { name: '8B on an H200, B = 1, captured (51 ops)', input: { step: stepOf(big, 1, 51), machine: h200 } },
    { name: '8B on an H200, B = 4096', input: { step: stepOf(big, 4096, 51), machine: h200 } },
  ];
  // random steps whose largest term leads the others by at least 1.5x (no coin flips)
  while (cases.length < 20) {
    const machine = { peakGflops: 10 ** (1 + 3 * rng.next()), bandwidthGBps: 10 ** (1 + 2.7 * rng.next()), usPerOp: 1 + 40 * rng.next() };
    const step = { flops: Math.round(10 ** (6 + 7 * rng.next())), bytes: Math.round(10 ** (5 + 6 * rng.next())), ops: randomInt(rng, 10, 1000) };
    const t = [step.flops / (machine.peakGflops * 1e9), step.bytes / (machine.bandwidthGBps * 1e9), step.ops * machine.usPerOp * 1e-6].sort((a, b) => b - a);
    if (t[0] >= 1.5 * t[1]) cases.push({ name: `random ${cases.length - 4}`, input: { step, machine } });
  }
  return cases;
}

const stepRegime = buildExercise<(step: RegimeInput['step'], machine: RegimeInput['machine']) => Regime, RegimeInput, Regime>(
  {
    id: 'l1.regime',
    lesson: 1,
    title: 'Which regime is this step in?',
    signature:
      "(step: { flops: number; bytes: number; ops: number }, machine: { peakGflops: number; bandwidthGBps: number; usPerOp: number }) => 'compute-bound' | 'bandwidth-bound' | 'overhead-bound'",
  },
  {
    cases: regimeCases,
    reference: regimeOf,
    call: (fn, x) => (fn as (s: RegimeInput['step'], m: RegimeInput['machine']) => Regime)(x.step, x.machine),
    compare: sameValue<Regime>(),
    hint: (x) => {
      const t = [x.step.flops / (x.machine.peakGflops * 1e9), x.step.bytes / (x.machine.bandwidthGBps * 1e9), x.step.ops * x.machine.usPerOp * 1e-6];
      const ms = t.map((v) => `${Number((v * 1e3).toPrecision(3))} ms`);
      return `Compare the three times in the same unit (GFLOP/s = 1e9 FLOP/s, GB/s = 1e9 bytes/s, 1 µs = 1e-6 s): on this input they are ${ms.join(', ')} (compute, bandwidth, overhead); the largest names the regime.`;
    },
  },
);

// ---- 4. predicted tokens per second, both roofs

export interface PredictionInput {
  weightBytes: number;
  kvBytesPerToken: number;
  contextLength: number;
  batch: number;
  bandwidthGBps: number;
  flopsPerToken: number;
  peakGflops: number;
}

function predictionCases(): Case<PredictionInput>[] {
  const rng = new Rng(104);
  const cases: Case<PredictionInput>[] = [];
  const target = costOf(targetShapes());
  cases.push({ name: 'memory-bound: batch 1', input: { weightBytes: target.weightBytes, kvBytesPerToken: target.kvBytesPerToken, contextLength: 64, batch: 1, bandwidthGBps: 20, flopsPerToken: 2 * target.params, peakGflops: 30 } });
  cases.push({ name: 'compute-bound: batch 256', input: { weightBytes: target.weightBytes, kvBytesPerToken: target.kvBytesPerToken, contextLength: 64, batch: 256, bandwidthGBps: 20, flopsPerToken: 2 * target.params, peakGflops: 30 } });
  for (let i = 0; i < 12; i++) {
    const c = costOf(randomConfig(rng));
    cases.push({
      name: `random ${i + 1}`,
      input: {
        weightBytes: c.weightBytes,
        kvBytesPerToken: c.kvBytesPerToken,
        contextLength: randomInt(rng, 1, 8192),
        batch: randomPick(rng, [1, 2, 8, 32, 128, 512]),
        bandwidthGBps: randomPick(rng, [20, 100, 900, 3350, 4800]),
        flopsPerToken: 2 * c.params,
        peakGflops: randomPick(rng, [30, 1000, 67_000, 989_000]),
      },
    });
  }
  return cases;
}

const predictTokensPerSecond = buildExercise<(p: PredictionInput) => number, PredictionInput, number>(
  {
    id: 'l1.predict-tok-s',
    lesson: 1,
    title: 'Predicted decode tokens/s from both roofs',
    signature: '(p: { weightBytes: number; kvBytesPerToken: number; contextLength: number; batch: number; bandwidthGBps: number; flopsPerToken: number; peakGflops: number }) => number  // tokens/s, all sequences',
  },
  {
    cases: predictionCases,
    reference: (p) => predictDecodeTokensPerSecond(p),
    compare: closeNumber(1e-6),
    hint: (p, e, g) => {
      const r = ratio(g, e);
      if (near(r, 1 / p.batch) && p.batch > 1) return 'Count the tokens of the whole batch: a step makes `batch` tokens.';
      if (near(r, 2 ** 30 / 1e9) || near(r, 1e9 / 2 ** 30)) return 'GB/s and GFLOP/s here are 1e9 bytes and FLOPs per second, not 2^30.';
      if (r > 1 + 1e-6) return 'Too optimistic: a step takes as long as the slower of its two limits (memory time and compute time), not the faster.';
      return 'Time per step = max(bytes of the step / bandwidth, batch x FLOPs per token / peak); tokens/s = batch / that time. Mind the units: GB/s and GFLOP/s are 1e9.';
    },
  },
);

// ---- 5. predict, then measure: double the batch

const predictDoubleBatch = predictExercise({
  id: 'l1.double-batch',
  lesson: 1,
  title: 'Double the batch: how much longer is the step?',
  question: 'target decodes one step for B = 4 sequences at context 64, then for B = 8. Predict (step time at B = 8) / (step time at B = 4): 1 means free, 2 means twice as long.',
  tolerance: 0.25,
});

/** Lesson 1's exercises, one field per exercise, in the order the notebook poses them. */
export const lesson1 = { bytesPerToken, decodeIntensity, stepRegime, predictTokensPerSecond, predictDoubleBatch };

/** Lesson 1's exercises, in the order the notebook poses them. */
export const lesson1Exercises: Exercise[] = Object.values(lesson1);
