// Lesson 6's exercises (notebooks/06-*.ipynb, section "Exercises"); solutions in notebooks/solutions/.
//
// Build it: the KV bytes a request holds at its peak in the paged engine, the roofline price of
// one step (lib/bench/costModel.ts), the gamma that pays best when the verify pass is not free
// (bestGamma). Predict, then measure: what a decode step of 16 sequences buys on this machine.
import * as tf from '@tensorflow/tfjs-core';
import { timeIt } from '../bench/harness';
import { deployment, deploymentSizes, H200_BF16, LLAMA32_1B, LLAMA3_8B, modeledStepMs, type Hardware } from '../bench/costModel';
import type { StepCostInput } from '../engine/clock';
import { BlockManager } from '../engine/blockManager';
import { Rng } from '../generate/sampling';
import { ContiguousKVCache } from '../kv/contiguous';
import { resolveLlamaConfig, type LlamaConfig } from '../model/config';
import type { LlamaModel } from '../model/llama';
import { bestGamma } from '../spec/adaptive';
import { expectedTokensPerStep } from '../spec/stats';
import { closeNumber, runCases, sameValue, short, type BuildExercise, type Case, type Exercise, type PredictExercise } from './check';

// ---- 1. KV bytes of a request at its peak

interface KvCase {
  config: LlamaConfig;
  name: string;
  bytesPerValue: number;
  promptTokens: number;
  outputTokens: number;
  blockSize: number;
}

function kvReference(c: KvCase): number {
  const perToken = deploymentSizes(deployment(c.name, c.config, H200_BF16, c.bytesPerValue)).kvBytesPerToken;
  const bm = new BlockManager({ numBlocks: 1, blockSize: c.blockSize, enablePrefixCaching: false });
  // the newest token has been sampled but not fed: its keys and values are never stored
  return bm.blocksFor(c.promptTokens + c.outputTokens - 1) * c.blockSize * perToken;
}

// our lesson models' shapes (data/models/*/config.json), written out so no file is read
const TARGET = resolveLlamaConfig({ vocabSize: 8192, hiddenSize: 384, intermediateSize: 1024, numLayers: 8, numHeads: 6, numKvHeads: 2, headDim: 64, maxPositions: 1024, ropeTheta: 10000, tieWordEmbeddings: true });

function kvCases(): Case<KvCase>[] {
  const rng = new Rng(6_001);
  const cases: Case<KvCase>[] = [
    { name: 'Llama-3-8B in BF16, 1000 + 200 tokens, blocks of 16', input: { name: 'Llama-3-8B', config: LLAMA3_8B, bytesPerValue: 2, promptTokens: 1000, outputTokens: 200, blockSize: 16 } },
    { name: 'edge: prompt + output - 1 fills its blocks exactly', input: { name: 'Llama-3-8B', config: LLAMA3_8B, bytesPerValue: 2, promptTokens: 10, outputTokens: 7, blockSize: 16 } },
    { name: 'edge: one token more than a block', input: { name: 'Llama-3.2-1B', config: LLAMA32_1B, bytesPerValue: 2, promptTokens: 16, outputTokens: 2, blockSize: 16 } },
    { name: 'edge: one output token', input: { name: 'Llama-3.2-1B', config: LLAMA32_1B, bytesPerValue: 2, promptTokens: 5, outputTokens: 1, blockSize: 4 } },
    { name: "the lessons' target in float32", input: { name: 'target', config: TARGET, bytesPerValue: 4, promptTokens: 32, outputTokens: 48, blockSize: 16 } },
  ];
  for (let i = 0; i < 10; i++) {
    const numKvHeads = [1, 2, 4, 8][Math.floor(rng.next() * 4)];
    const config = resolveLlamaConfig({
      vocabSize: 1000, hiddenSize: 64 * numKvHeads * 2, intermediateSize: 256, numLayers: 1 + Math.floor(rng.next() * 32),
      numHeads: numKvHeads * [1, 2, 4][Math.floor(rng.next() * 3)], numKvHeads, headDim: [32, 64, 128][Math.floor(rng.next() * 3)], maxPositions: 4096,
    });
    cases.push({
      name: `seeded random ${i + 1}`,
      input: { name: 'random', config, bytesPerValue: [1, 2, 4][Math.floor(rng.next() * 3)], promptTokens: 1 + Math.floor(rng.next() * 500), outputTokens: 1 + Math.floor(rng.next() * 500), blockSize: [1, 8, 16, 32][Math.floor(rng.next() * 4)] },
    });
  }
  return cases;
}

// ---- 2. the roofline price of a step

/** What modeledStepMs prices with (deploymentSizes of lib/bench/costModel.ts). */
export interface StepSizes {
  paramsPerToken: number;
  weightBytes: number;
  kvBytesPerToken: number;
  attentionFlopsPerKey: number;
}

interface StepCase {
  hw: Hardware;
  config: LlamaConfig; // BF16 deployment of these shapes: the learner gets its deploymentSizes
  step: StepCostInput;
}

const sizesOf = (c: StepCase): StepSizes => deploymentSizes(deployment('x', c.config, c.hw));

function stepCases(): Case<StepCase>[] {
  const s8 = LLAMA3_8B;
  const s1 = LLAMA32_1B;
  const decode = (B: number, ctx: number, T = 1): StepCostInput => ({ numScheduledTokens: B * T, numSeqs: B, numContextTokens: B * ctx });
  const cases: Case<StepCase>[] = [
    { name: 'Llama-3-8B, one decode at context 1024 (memory-bound)', input: { hw: H200_BF16, config: s8, step: decode(1, 1024) } },
    { name: 'Llama-3-8B, a prefill of 4096 tokens (compute-bound)', input: { hw: H200_BF16, config: s8, step: { numScheduledTokens: 4096, numSeqs: 1, numContextTokens: 0 } } },
    { name: 'Llama-3-8B, 256 decodes at context 1024', input: { hw: H200_BF16, config: s8, step: decode(256, 1024) } },
    { name: 'Llama-3-8B, 64 verify passes of 5 tokens at context 8192', input: { hw: H200_BF16, config: s8, step: decode(64, 8192, 5) } },
    { name: 'Llama-3.2-1B, one decode at context 128', input: { hw: H200_BF16, config: s1, step: decode(1, 128) } },
    { name: 'edge: an empty step costs nothing', input: { hw: H200_BF16, config: s8, step: { numScheduledTokens: 0, numSeqs: 0, numContextTokens: 0 } } },
  ];
  const rng = new Rng(6_002);
  for (let i = 0; i < 12; i++) {
    const hw: Hardware = {
      ...H200_BF16, name: 'random', peakTflops: 50 + rng.next() * 1500, bandwidthTBps: 0.5 + rng.next() * 6,
      computeEfficiency: 0.3 + rng.next() * 0.6, bandwidthEfficiency: 0.5 + rng.next() * 0.45, stepOverheadMs: rng.next() * 0.2,
    };
    const B = 1 + Math.floor(rng.next() * 300);
    cases.push({ name: `seeded random ${i + 1}`, input: { hw, config: rng.next() < 0.5 ? s8 : s1, step: decode(B, 1 + Math.floor(rng.next() * 8000), 1 + Math.floor(rng.next() * 6)) } });
  }
  return cases;
}

const describeStep = (c: StepCase) =>
  `hw: ${c.hw.peakTflops.toFixed(0)} TFLOP/s x ${c.hw.computeEfficiency.toFixed(2)}, ${c.hw.bandwidthTBps.toFixed(2)} TB/s x ${c.hw.bandwidthEfficiency.toFixed(2)}, ` +
  `${c.hw.stepOverheadMs.toFixed(3)} ms/step; sizes ${short(sizesOf(c))}; step ${short(c.step)}`;

// ---- 3. the gamma that pays best

interface GammaCase {
  alpha: number;
  c: number;
  /** verify[g]: a verify pass over g + 1 tokens, in target decode steps (g = 0..maxGamma) */
  verify: number[];
  maxGamma: number;
}

function gammaCases(): Case<GammaCase>[] {
  const flat = (max: number) => Array.from({ length: max + 1 }, () => 1);
  const linear = (max: number, a: number) => Array.from({ length: max + 1 }, (_, g) => 1 + a * g);
  // the cost model: a verify pass of Llama-3-8B over gamma + 1 tokens at batch B, context 1024
  const d = deployment();
  const modeled = (B: number, max: number) => Array.from({ length: max + 1 }, (_, g) => modeledStepMs(d, { numScheduledTokens: B * (g + 1), numSeqs: B, numContextTokens: B * 1024 }) / modeledStepMs(d, { numScheduledTokens: B, numSeqs: B, numContextTokens: B * 1024 }));
  const cases: Case<GammaCase>[] = [
    { name: 'the textbook: verify costs one step, alpha 0.8, c 0.05', input: { alpha: 0.8, c: 0.05, verify: flat(8), maxGamma: 8 } },
    { name: 'a CPU-like verify pass (cost grows with gamma)', input: { alpha: 0.7, c: 0.1, verify: linear(8, 0.35), maxGamma: 8 } },
    { name: 'Llama-3-8B on an H200 at batch 1 (modeled)', input: { alpha: 0.7, c: 0.15, verify: modeled(1, 8), maxGamma: 8 } },
    { name: 'Llama-3-8B on an H200 at batch 256 (modeled, compute-bound)', input: { alpha: 0.7, c: 0.15, verify: modeled(256, 8), maxGamma: 8 } },
    { name: 'edge: alpha 0 (ties: the smallest gamma)', input: { alpha: 0, c: 0, verify: flat(6), maxGamma: 6 } },
    { name: 'edge: a free draft that is always right', input: { alpha: 1, c: 0, verify: flat(5), maxGamma: 5 } },
    { name: 'edge: maxGamma 1', input: { alpha: 0.9, c: 0.01, verify: flat(1), maxGamma: 1 } },
  ];
  const rng = new Rng(6_003);
  for (let i = 0; i < 16; i++) {
    const max = 1 + Math.floor(rng.next() * 10);
    cases.push({ name: `seeded random ${i + 1}`, input: { alpha: Number(rng.next().toFixed(3)), c: Number((rng.next() * 0.5).toFixed(3)), verify: linear(max, Number((rng.next() * 0.6).toFixed(3))), maxGamma: max } });
  }
  return cases;
}

// ---- the predict exercise's measurement

/**
 * Output tokens per second of one decode step of `batch` sequences, as a multiple of a step of
 * one sequence (both at `context` tokens; best of `repeats` timings each). 1 = batching buys
 * nothing; `batch` = a step costs the same whatever the batch (memory-bound, as on a GPU).
 */
export async function measureBatchGain(model: LlamaModel, batch: number, context = 64, repeats = 5): Promise<number> {
  const ids = (n: number, off: number) => Array.from({ length: n }, (_, i) => 1 + ((i * 37 + off) % (model.config.vocabSize - 1)));
  const sizes = [1, batch];
  const caches = sizes.map((B) => new ContiguousKVCache(model.kvShape, B));
  try {
    sizes.forEach((B, i) => tf.dispose(model.forward(Array.from({ length: B }, (_, b) => ids(context, b)), caches[i]))); // [B, 1, V]
    const best = sizes.map(() => Infinity);
    // interleaved rounds, best of each: a busy machine slows both sizes alike
    for (let r = 0; r < 3; r++) {
      for (let i = 0; i < sizes.length; i++) {
        const B = sizes[i];
        const st = await timeIt(async () => {
          const out = model.forward(Array.from({ length: B }, (_, b) => [1 + b]), caches[i]); // [B, 1, V]
          await out.data();
          out.dispose();
          caches[i].truncate(new Array(B).fill(context));
        }, { warmup: r === 0 ? 1 : 0, repeats });
        best[i] = Math.min(best[i], st.minMs);
      }
    }
    return (batch * best[0]) / best[1];
  } finally {
    for (const c of caches) c.dispose();
  }
}

// ---- the exercises

const requestKvBytes: BuildExercise<(config: LlamaConfig, bytesPerValue: number, promptTokens: number, outputTokens: number, blockSize: number) => number> = {
  kind: 'build',
  id: 'l6.request-kv-bytes',
  lesson: 6,
  title: 'KV bytes a request holds at its peak',
  signature: '(config: LlamaConfig, bytesPerValue: number, promptTokens: number, outputTokens: number, blockSize: number) => number',
  run: (fn) =>
    runCases(fn, {
      id: 'l6.request-kv-bytes',
      cases: kvCases,
      reference: kvReference,
      call: (f, c) => (f as (cfg: LlamaConfig, b: number, p: number, o: number, bs: number) => number)(c.config, c.bytesPerValue, c.promptTokens, c.outputTokens, c.blockSize),
      compare: closeNumber(1e-9),
      describe: (c) =>
        `${c.name}: ${c.config.numLayers} layers, ${c.config.numHeads} heads / ${c.config.numKvHeads} KV heads of ${c.config.headDim}, ${c.bytesPerValue} bytes per value; ` +
        `${c.promptTokens} prompt + ${c.outputTokens} output tokens, blocks of ${c.blockSize}`,
      hint: (c, e, g) => {
        const general =
          'Per token the cache stores a key and a value per layer and per KV head (numKvHeads, not numHeads: grouped-query attention). At the end the newest token has been sampled ' +
          'but never fed, so prompt + output - 1 tokens are stored, in whole blocks.';
        if (typeof g !== 'number' || e === 0) return general;
        const ratio = g / e;
        const near = (x: number) => Math.abs(ratio - x) < 1e-9;
        const perToken = 2 * c.config.numLayers * c.config.numKvHeads * c.config.headDim * c.bytesPerValue;
        const stored = c.promptTokens + c.outputTokens - 1;
        if (c.config.numHeads !== c.config.numKvHeads && near(c.config.numHeads / c.config.numKvHeads)) return `You counted query heads: only the KV heads are cached. ${general}`;
        if (near(0.5)) return `Half of it: both the key and the value are stored. ${general}`;
        if (Math.abs(g - Math.ceil((stored + 1) / c.blockSize) * c.blockSize * perToken) < 1e-6 && ratio > 1) return `One token too many: the newest token has no keys and values yet. ${general}`;
        if (Math.abs(g - stored * perToken) < 1e-6 || Math.abs(g - (stored + 1) * perToken) < 1e-6) return `Exact tokens: the engine holds whole blocks. ${general}`;
        return general;
      },
    }),
};

const stepMs: BuildExercise<(hw: Hardware, sizes: StepSizes, step: StepCostInput) => number> = {
  kind: 'build',
  id: 'l6.step-ms',
  lesson: 6,
  title: 'the roofline price of one step',
  signature:
    '(hw: Hardware, sizes: { paramsPerToken; weightBytes; kvBytesPerToken; attentionFlopsPerKey }, step: { numScheduledTokens; numSeqs; numContextTokens }) => number /* ms */',
  run: (fn) =>
    runCases(fn, {
      id: 'l6.step-ms',
      cases: stepCases,
      reference: (c) => modeledStepMs(deployment('x', c.config, c.hw), c.step),
      call: (f, c) => (f as (h: Hardware, s: StepSizes, st: StepCostInput) => number)(c.hw, sizesOf(c), c.step),
      compare: closeNumber(1e-9),
      describe: describeStep,
      hint: (c, e, g) => {
        const general =
          'A step takes the longer of its compute time, FLOPs / (peak x computeEfficiency), and its memory time, bytes / (bandwidth x bandwidthEfficiency), plus the fixed overhead. ' +
          'FLOPs: 2 per parameter per token, plus attentionFlopsPerKey per token per key it attends to (context / seqs on average). ' +
          'Bytes: the weights once, plus the KV of every context and new token. Watch the units (TFLOP/s, TB/s, ms); an empty step costs 0.';
        if (typeof g !== 'number' || c.step.numScheduledTokens <= 0) return general;
        const z = sizesOf(c);
        const s = c.step;
        const flops = 2 * z.paramsPerToken * s.numScheduledTokens + z.attentionFlopsPerKey * s.numScheduledTokens * (s.numContextTokens / Math.max(1, s.numSeqs));
        const kv = (s.numContextTokens + s.numScheduledTokens) * z.kvBytesPerToken;
        const compute = (eff: number) => (flops / (c.hw.peakTflops * 1e12 * eff)) * 1e3;
        const memory = (eff: number, withKv = true) => ((z.weightBytes + (withKv ? kv : 0)) / (c.hw.bandwidthTBps * 1e12 * eff)) * 1e3;
        const near = (x: number) => Math.abs(g - x) <= 1e-9 * Math.max(1, Math.abs(x));
        const o = c.hw.stepOverheadMs;
        if (near(compute(c.hw.computeEfficiency) + memory(c.hw.bandwidthEfficiency) + o)) return `You added compute and memory time: they overlap, the step takes the longer one. ${general}`;
        if (near(Math.max(compute(1), memory(1)) + o)) return `Real kernels reach only part of the peaks: divide by peak x efficiency. ${general}`;
        if (near(Math.max(compute(c.hw.computeEfficiency), memory(c.hw.bandwidthEfficiency, false)) + o)) return `The step also reads the KV cache of every context token (and writes the new ones). ${general}`;
        if (near(e - o)) return `Add the fixed overhead per step (stepOverheadMs). ${general}`;
        return general;
      },
    }),
};

const pickGamma: BuildExercise<(alpha: number, c: number, verifyCost: (gamma: number) => number, maxGamma: number) => number> = {
  kind: 'build',
  id: 'l6.best-gamma',
  lesson: 6,
  title: 'the gamma that pays best',
  signature: '(alpha: number, c: number, verifyCost: (gamma: number) => number /* in target steps */, maxGamma: number) => number',
  run: (fn) =>
    runCases(fn, {
      id: 'l6.best-gamma',
      cases: gammaCases,
      reference: (g) => bestGamma(g.alpha, g.c, 1, g.maxGamma, (k) => g.verify[k]),
      call: (f, g) => (f as (a: number, c: number, v: (k: number) => number, m: number) => number)(g.alpha, g.c, (k) => g.verify[k], g.maxGamma),
      compare: sameValue<number>(),
      describe: (g) => `alpha = ${g.alpha}, c = ${g.c}, maxGamma = ${g.maxGamma}, verifyCost(0..${g.maxGamma}) = ${short(g.verify.map((v) => Number(v.toFixed(4))), 12)}`,
      hint: (c, e, g) => {
        const general =
          "Try gamma = 1..maxGamma; the speedup of gamma is (tokens emitted per step) / (gamma c + verifyCost(gamma)), with lesson 4's expected tokens per step. " +
          'Keep the first gamma that is strictly best (ties go to the smaller gamma).';
        if (typeof g !== 'number' || !Number.isInteger(g) || g < 1 || g > c.maxGamma) return `Return a gamma between 1 and maxGamma. ${general}`;
        const value = (k: number) => expectedTokensPerStep(c.alpha, k) / (k * c.c + c.verify[k]);
        if (Math.abs(value(g) - value(e)) <= 1e-12) return `A tie: keep the smaller gamma (fewer drafts wasted for the same speedup). ${general}`;
        if (g === bestGamma(c.alpha, c.c, 1, c.maxGamma)) return `You priced the verify pass at one step: use verifyCost(gamma). ${general}`;
        if (g === c.maxGamma && e < g) return `Longer drafts only pay while their extra tokens outweigh their cost: the draft steps and this verify pass. ${general}`;
        return general;
      },
    }),
};

const predictBatchGain: PredictExercise & { measure: typeof measureBatchGain } = {
  kind: 'predict',
  id: 'l6.predict-batch-gain',
  lesson: 6,
  title: 'what a batch of 16 buys here',
  question:
    'One decode step of 16 sequences (context 64) on this machine: how many times the output tokens per second of a step of one sequence? (16 = free batching, as on a GPU; 1 = none)',
  tolerance: 0.25,
  measure: measureBatchGain,
};

/** Lesson 6's exercises, one field per exercise, in the order the notebook poses them. */
export const lesson6 = { requestKvBytes, stepMs, pickGamma, predictBatchGain };

/** Lesson 6's exercises, in the order the notebook poses them. */
export const lesson6Exercises: Exercise[] = Object.values(lesson6);
