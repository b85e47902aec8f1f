/**
 * Core benchmark (issue 3, item 8; lessons "KV caching" and "Decode is memory-bound"). Not a test:
 * it prints figures and writes JSON for the charts, and asserts no timing.
 *
 *   1. roofs: achievable bandwidth (GEMV over a matrix larger than the caches) and matmul GFLOP/s
 *   2. naive vs cached generation with the target model at generated lengths 64 / 256 / 1024
 *   3. measured vs roofline-predicted decode tok/s (batch 1), target and a random-weight preset
 *   4. where the time of one decode step goes: matmuls by kind, attention, elementwise, data
 *      movement (per-kernel times from tf.profile), engine/JS dispatch, logits readback, sampling
 *
 *   here:          npm run bench:core [-- --full] [-- --backend wasm]
 *   GPU machine:   bash ../shared/gpu/pack.sh bench/core.ts   (from the project root), then
 *                  bash .gpu/run.sh node .gpu/bundle/core.mjs --backend webgpu --out $OUT/core-webgpu.json
 *
 * Flags: --backend auto|webgpu|wasm|tensorflow|cpu (default auto); --threads N|all (wasm: CPU threads,
 * default every core); --quick (default: naive at
 * 64/256 only) or --full (every cell, naive at 1024 included: many minutes on 2 cores);
 * --out PATH (default data/bench/core.json); --model DIR (default data/models/target);
 * --preset NAME|PATH (default random-125m); --lengths 64,256,1024; --prompt-tokens 16;
 * --preset-tokens N[,N] (preset decode lengths; default 128, --full 128,1024);
 * --breakdown-steps N (default 12); --cpu-weights f32|bf16 (wasm: how the models hold weights, default
 * f32); --gemv on|off (wasm: the AssemblyScript decode GEMV, default on; off = XNNPACK's matMul);
 * --decode-step on|off (wasm: the fused decode step, one wasm call for all decoder layers, default on;
 * off = tfjs ops one by one, the baseline).
 * --gemm (wasm, alone): only the decode-matmul sweep: the model's matmuls of one step at M = 1..8
 * rows (--rows), XNNPACK vs our register-blocked GEMM over the tiled weights, f32 and bf16, on one
 * thread and on the thread pool (--threads 2; medians of --repeats 15 interleaved rounds)
 * -> data/bench/core-gemm.json.
 * Paths resolve from the working directory, never the bundle.
 * Numbers are only ever measured: a cell that did not run is null, with the reason beside it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

import { initBackend, type BackendInfo, type BackendPreference } from '../lib/backend';
import { progressBar, writeBenchJson, benchFlags, runBench } from '../lib/bench/harness';
import { percentile } from '../lib/eval/stats';
import { generateStream, type GenerateMode, type GenerationOutput } from '../lib/generate/generate';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { llamaSizes, type LlamaConfig } from '../lib/model/config';
import type { LlamaModel } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';
import type { CpuWeightFormat } from '../lib/model/llama';
import { GEMV_MAX_ROWS, gemvKernelName, gemvWeights, useWasmGemv } from '../lib/model/kernels/wasmGemv';
import { DECODE_LAYERS, useWasmDecodeStep } from '../lib/model/kernels/wasmDecode';
import { cpuKernelsFor, offsetOf, plainCpuKernelsFor, wasmFmaOf, type WasmBackendLike } from '../lib/model/kernels/cpu';
import { CpuThreadPool } from '../lib/model/kernels/threads';
import {
  bytesPerDecodedToken,
  measureBandwidth,
  measureMatmulFlops,
  predictDecodeTokensPerSecond,
  type BandwidthResult,
  type MatmulFlopsResult,
} from '../lib/bench/roofline';
import { resolveSamplingParams, Rng, sampleToken } from '../lib/generate/sampling';
import { capturedCore, type CapturedCoreRow } from './coreCaptured';
import { loadTokenizer } from '../lib/generate/tokenizer';

// ---- flags

const argv = process.argv.slice(2);
const flags = benchFlags(argv);
const flag = flags.value;

function intList(name: string, fallback: number[]): number[] {
  const v = flag(name);
  if (v === undefined) return fallback;
  const out = v.split(',').map(Number);
  if (!out.length || out.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`--${name} must be positive integers separated by commas; got '${v}'`);
  }
  return out;
}

interface Options {
  backend: BackendPreference;
  full: boolean;
  out: string;
  model: string;
  preset: string;
  lengths: number[];
  promptTokens: number;
  presetTokens: number[];
  breakdownSteps: number;
  cpuWeights: CpuWeightFormat;
  gemv: boolean;
  decodeStep: boolean;
}

function parseOptions(): Options {
  if (argv.includes('--quick') && argv.includes('--full')) throw new Error('give --quick or --full, not both');
  const full = argv.includes('--full');
  return {
    backend: (flag('backend') ?? 'auto') as BackendPreference,
    full,
    out: path.resolve(flag('out') ?? path.join('data', 'bench', 'core.json')),
    model: path.resolve(flag('model') ?? path.join('data', 'models', 'target')),
    preset: resolvePreset(flag('preset') ?? 'random-125m'),
    lengths: intList('lengths', [64, 256, 1024]),
    promptTokens: intList('prompt-tokens', [16])[0],
    presetTokens: intList('preset-tokens', full ? [128, 1024] : [128]),
    breakdownSteps: intList('breakdown-steps', [12])[0],
    cpuWeights: (flag('cpu-weights') ?? 'f32') as CpuWeightFormat,
    gemv: (flag('gemv') ?? 'on') !== 'off',
    decodeStep: (flag('decode-step') ?? 'on') !== 'off',
  };
}

// a preset name becomes data/presets/<name>.json under the working directory
function resolvePreset(p: string): string {
  if (/[\\/]/.test(p) || p.endsWith('.json')) return path.resolve(p);
  const file = path.resolve('data', 'presets', `${p}.json`);
  if (!fs.existsSync(file)) throw new Error(`preset '${p}': ${file} not found (run from the project root, or pass a path)`);
  return file;
}

/** Naive cells at this many generated tokens run only with --full. */
const NAIVE_QUICK_MAX = 256;

// ---- result schema (what data/bench/core.json holds under "result")

interface Roofs {
  /** the best GEMV bandwidth of every check in this run: the memory roof */
  bandwidthGBps: number;
  bandwidthKernel: string;
  /** checks at the start, before the preset and at the end (a busy CPU moves them) */
  bandwidthChecks: { when: string; bestGBps: number; medianGBps: number }[];
  matmulGflops: number;
  matmulMedianGflops: number;
  matmulN: number;
  /** wall time of one tiny op (add of two [1, 8] tensors), dispatch included: median and best */
  smallOpUs: number;
  smallOpMinUs: number;
}

interface NaiveVsCachedRow {
  model: string;
  /** generated tokens asked for */
  length: number;
  mode: GenerateMode;
  promptTokens: number;
  ran: boolean;
  /** why not run, or why fewer tokens came out; null when nothing to say */
  note: string | null;
  /** tokens actually generated (the model's context can cap it) */
  generatedTokens: number | null;
  /** token forwards the model computed: naive recomputes the prefix every step */
  tokenForwards: number;
  /** generated tokens / e2e (TTFT included) */
  tokensPerSecond: number | null;
  /** tokens after the first / time after the first */
  decodeTokensPerSecond: number | null;
  /** 1000 / median inter-token latency: robust to other processes stealing the CPU */
  decodeTokensPerSecondMedian: number | null;
  ttftMs: number | null;
  tpotMs: number | null;
  e2eMs: number | null;
  kvBytes: number | null;
}

interface RooflineRow {
  model: string;
  params: number;
  /** fp32 bytes of all weights */
  weightBytes: number;
  /** weight bytes read per decoded token (layers + LM head; the embedding lookup reads one row) */
  weightBytesPerToken: number;
  kvBytesPerToken: number;
  /** mean context over the measured decode (prompt + half the generated tokens) */
  contextLength: number;
  /** weights + KV at contextLength */
  bytesPerToken: number;
  generatedTokens: number;
  predictedTokS: number;
  /** decode tok/s of the whole run, (generated - 1) / (e2e - TTFT) */
  measuredTokS: number;
  fractionOfRoofline: number;
  /** 1000 / median inter-token latency, and its fraction: robust to CPU contention */
  measuredMedianTokS: number;
  fractionOfRooflineMedian: number;
  /** 1000 / 10th-percentile inter-token latency: the steps a shared CPU left alone */
  measuredP10TokS: number;
  fractionOfRooflineP10: number;
  /** bytesPerToken x measured tok/s: the bandwidth the decode actually used */
  achievedGBps: number;
}

interface BreakdownPart {
  part: string;
  ms: number | null;
  /** share of the step */
  percent: number | null;
  /** kernels (ops) of this part per step */
  ops: number | null;
  /** weight matmuls: weight bytes / time */
  gbps?: number | null;
}

interface Breakdown {
  model: string;
  /** contexts the timed steps attended over (first..last) */
  contextLength: [number, number];
  /** plain steps timed, and as many profiled steps between them */
  steps: number;
  /** median wall time of a whole step: forward + logits readback + sampling */
  stepMs: number;
  tokensPerSecond: number;
  /** the fastest plain step, which the parts below split (least disturbed by other processes) */
  fastestStepMs: number;
  /** of that step: model.forward returned (on wasm every kernel has run by then; on webgpu
   * only dispatched), the logits were read back, a token was sampled */
  forwardMs: number;
  readbackMs: number;
  sampleMs: number;
  /** kernel time of the fastest profiled step; null where the backend gives none */
  kernelMs: number | null;
  /** forwardMs - kernelMs (>= 0): tfjs engine bookkeeping and our JS between kernels */
  engineOverheadMs: number | null;
  /** the difference as measured (negative when noise exceeded it) */
  engineOverheadRawMs: number | null;
  opsPerStep: number;
  engineOverheadUsPerOp: number | null;
  /** kernels other than weight matmuls (attention, elementwise, data movement): the
   * dispatch-bound part of the step, and its mean cost per kernel, engine overhead included */
  smallKernels: { ops: number; ms: number | null; usPerOp: number | null };
  /** the fastest step split into parts; percent of fastestStepMs */
  parts: BreakdownPart[];
  /** per kernel name: count and ms in the fastest profiled step */
  byKernel: { kernel: string; count: number; ms: number | null }[];
  /** wrapper entries tf.profile also lists (op scopes with no kernel, e.g. fused matMul's
   * customGrad scope); their time includes the kernels inside, so they are not summed */
  wrappers: { name: string; count: number }[];
}

interface CoreResult {
  mode: 'quick' | 'full';
  backend: { name: string; reason: string };
  /** os.loadavg() (1, 5, 15 min) before and after, beside the core count: other processes
   * sharing the CPU slow every figure here */
  load: { cores: number; start: number[]; end: number[] };
  roofs: Roofs;
  naiveVsCached: NaiveVsCachedRow[];
  roofline: RooflineRow[];
  breakdown: Breakdown[];
  /** webgpu only: the same decode on the captured step (bench/coreCaptured.ts) */
  captured: CapturedCoreRow[] | null;
  notes: string[];
}

// ---- roofs

async function measureRoofs(): Promise<Roofs> {
  const bw: BandwidthResult = await measureBandwidth({ repeats: BANDWIDTH_REPEATS });
  const mm: MatmulFlopsResult = await measureMatmulFlops();
  const small = await smallOpMicros();
  return {
    bandwidthGBps: bw.bestGBps,
    bandwidthKernel: bw.kernel,
    bandwidthChecks: [{ when: 'start', bestGBps: bw.bestGBps, medianGBps: bw.medianGBps }],
    matmulGflops: mm.bestGflops,
    matmulMedianGflops: mm.medianGflops,
    matmulN: mm.n,
    smallOpUs: small.median,
    smallOpMinUs: small.min,
  };
}

// best of many short GEMVs: one quiet moment of a shared CPU is enough to see the roof
const BANDWIDTH_REPEATS = 40;

async function checkBandwidth(roofs: Roofs, when: string): Promise<void> {
  const bw = await measureBandwidth({ repeats: BANDWIDTH_REPEATS });
  roofs.bandwidthChecks.push({ when, bestGBps: bw.bestGBps, medianGBps: bw.medianGBps });
  roofs.bandwidthGBps = Math.max(roofs.bandwidthGBps, bw.bestGBps);
}

// wall time of one small op: a chain of adds of two [1, 8] tensors, read back at the end
async function smallOpMicros(): Promise<{ median: number; min: number }> {
  const a = tf.fill([1, 8], 1e-3);
  const b = tf.fill([1, 8], 1e-3);
  const chain = 200;
  const samples: number[] = [];
  for (let r = 0; r < 11; r++) {
    const t0 = performance.now();
    const out = tf.tidy(() => {
      let x = a;
      for (let i = 0; i < chain; i++) x = tf.add(x, b);
      return x;
    });
    await out.data(); // async read: webgpu in Node has no synchronous readback (no OffscreenCanvas)
    out.dispose();
    samples.push(((performance.now() - t0) * 1000) / chain);
  }
  a.dispose();
  b.dispose();
  const timed = samples.slice(1); // the first is a warm-up
  return { median: median(timed), min: Math.min(...timed) };
}

// ---- generation runs

const GREEDY = { temperature: 0, ignoreEos: true };

/** Token forwards of `generated` steps from a `prompt`-token prompt (naive: the prefix each time). */
function tokenForwards(mode: GenerateMode, prompt: number, generated: number): number {
  if (mode === 'cached') return prompt + generated - 1;
  return generated * prompt + (generated * (generated - 1)) / 2;
}

async function runGeneration(
  model: LlamaModel,
  prompt: number[],
  mode: GenerateMode,
  maxTokens: number,
  label: string,
): Promise<GenerationOutput> {
  const bar = progressBar(maxTokens, label);
  const stream = generateStream({ model }, [prompt], { ...GREEDY, maxTokens }, { mode });
  for (;;) {
    const r = await stream.next();
    if (r.done) {
      const out = r.value[0];
      bar.done(`${out.metrics.decodeTokensPerSecond.toFixed(1)} tok/s`);
      return out;
    }
    bar.tick();
  }
}

function cellRow(
  model: string,
  length: number,
  mode: GenerateMode,
  prompt: number,
  out: GenerationOutput,
  capNote: string | null,
): NaiveVsCachedRow {
  const m = out.metrics;
  return {
    model,
    length,
    mode,
    promptTokens: prompt,
    ran: true,
    note: capNote,
    generatedTokens: m.outputTokens,
    tokenForwards: tokenForwards(mode, prompt, m.outputTokens),
    tokensPerSecond: (m.outputTokens * 1000) / m.e2eMs,
    decodeTokensPerSecond: m.decodeTokensPerSecond,
    decodeTokensPerSecondMedian: m.itlMs.length ? 1000 / median(m.itlMs) : null,
    ttftMs: m.ttftMs,
    tpotMs: m.tpotMs,
    e2eMs: m.e2eMs,
    kvBytes: m.kvBytes,
  };
}

function skippedRow(model: string, length: number, mode: GenerateMode, prompt: number, generated: number, note: string): NaiveVsCachedRow {
  return {
    model,
    length,
    mode,
    promptTokens: prompt,
    ran: false,
    note,
    generatedTokens: null,
    tokenForwards: tokenForwards(mode, prompt, generated),
    tokensPerSecond: null,
    decodeTokensPerSecond: null,
    decodeTokensPerSecondMedian: null,
    ttftMs: null,
    tpotMs: null,
    e2eMs: null,
    kvBytes: null,
  };
}

/** The tokens that fit: the context holds prompt + generated (generate stops at maxPositions). */
function fitLength(config: LlamaConfig, prompt: number, length: number): { generated: number; note: string | null } {
  const room = config.maxPositions - prompt;
  if (length <= room) return { generated: length, note: null };
  return {
    generated: room,
    note: `capped by the model's context: max_position_embeddings ${config.maxPositions} = ${prompt} prompt + ${room} generated`,
  };
}

function rooflineRow(name: string, config: LlamaConfig, roofs: Roofs, promptTokens: number, out: GenerationOutput): RooflineRow {
  const sizes = llamaSizes(config);
  const generated = out.metrics.outputTokens;
  // decode steps attend over prompt+1 .. prompt+generated-1 tokens: the mean
  const contextLength = promptTokens + generated / 2;
  const traffic = { weightBytes: (sizes.weightBytesPerToken * bytesPerWeight) / 4, kvBytesPerToken: sizes.kvBytesPerToken, contextLength };
  const bytesPerToken = bytesPerDecodedToken(traffic);
  const predictedTokS = predictDecodeTokensPerSecond({ ...traffic, bandwidthGBps: roofs.bandwidthGBps });
  const measuredTokS = out.metrics.decodeTokensPerSecond;
  const measuredMedianTokS = 1000 / median(out.metrics.itlMs);
  const measuredP10TokS = 1000 / percentile(out.metrics.itlMs, 10);
  return {
    model: name,
    params: sizes.params,
    weightBytes: sizes.weightBytes,
    weightBytesPerToken: (sizes.weightBytesPerToken * bytesPerWeight) / 4,
    kvBytesPerToken: sizes.kvBytesPerToken,
    contextLength,
    bytesPerToken,
    generatedTokens: generated,
    predictedTokS,
    measuredTokS,
    fractionOfRoofline: measuredTokS / predictedTokS,
    measuredMedianTokS,
    fractionOfRooflineMedian: measuredMedianTokS / predictedTokS,
    measuredP10TokS,
    fractionOfRooflineP10: measuredP10TokS / predictedTokS,
    achievedGBps: (bytesPerToken * measuredTokS) / 1e9,
  };
}

// ---- where the time of a decode step goes

type Kind = 'qkv' | 'o' | 'gateUp' | 'down' | 'lmHead' | 'ropeMatmul' | 'normMatmul';

const PART_LABELS: [string, string][] = [
  ['layers', 'decoder layers, fused (one wasm call each)'],
  ['qkv', 'matmul q,k,v (fused)'],
  ['o', 'matmul o_proj'],
  ['gateUp', 'matmul gate + up'],
  ['down', 'matmul down'],
  ['lmHead', 'matmul LM head'],
  ['matmulOther', 'matmul, other'],
  ['attention', 'attention (qk^T, mask, softmax, pv)'],
  ['elementwise', 'norms, RoPE, SwiGLU, residual'],
  ['dataMovement', 'reshape/split/slice/gather/concat'],
  ['engine', 'engine + JS between kernels'],
  ['readback', 'logits readback (await data())'],
  ['sampling', 'sampling (JS, over V logits)'],
];

const MATMULS = new Set(['BatchMatMul', '_FusedMatMul', 'MatMul', 'InferenceLabGemv']);

// bytes per weight the decode matmuls read (--cpu-weights bf16: 2)
let bytesPerWeight = 4;
const ATTENTION = new Set(['InferenceLabQKT', 'InferenceLabPV', 'Softmax']);
const DATA_MOVEMENT = new Set([
  'Reshape',
  'SplitV',
  'Slice',
  'StridedSlice',
  'Concat',
  'Transpose',
  'GatherV2',
  'Pack',
  'Unpack',
  'Identity',
  'Cast',
  'Fill',
  'Tile',
  'Reverse',
  'ZerosLike',
  'OnesLike',
  'Unique',
  'MirrorPad',
  'PadV2',
]);

// weight shape [in, out] -> what it is; the first match wins
function weightKinds(c: LlamaConfig): Map<string, Kind> {
  const { hiddenSize: Dm, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F, vocabSize: V } = c;
  const kinds = new Map<string, Kind>();
  const add = (k: number, n: number, kind: Kind) => {
    const key = `${k}x${n}`;
    if (!kinds.has(key)) kinds.set(key, kind);
  };
  add(Dm, (H + 2 * Hkv) * D, 'qkv');
  add(H * D, Dm, 'o');
  add(Dm, 2 * F, 'gateUp'); // gate and up side by side
  add(Dm, F, 'gateUp');
  add(F, Dm, 'down');
  add(Dm, V, 'lmHead');
  add(D, D, 'ropeMatmul');
  add(Dm, 1, 'normMatmul');
  return kinds;
}

interface ProfiledKernel {
  name: string;
  inputShapes: number[][];
  kernelTimeMs: number | { error: string };
}

// which part of the step a kernel belongs to
function classify(k: ProfiledKernel, kinds: Map<string, Kind>): string {
  if (MATMULS.has(k.name)) {
    const b = k.inputShapes[1] ?? [];
    // a weight is [in, out] (or [1, in, out] inside fused matMul); attention's K/V have batch dims
    const isWeight = b.length === 2 || (b.length === 3 && b[0] === 1);
    // (the GEMV's bf16 weights are int32 pairs [in, out/2])
    const kind = isWeight
      ? (kinds.get(`${b[b.length - 2]}x${b[b.length - 1]}`) ?? kinds.get(`${b[b.length - 2]}x${2 * b[b.length - 1]}`))
      : undefined;
    if (!isWeight) return 'attention';
    if (kind === 'ropeMatmul' || kind === 'normMatmul') return 'elementwise';
    return kind ?? 'matmulOther';
  }
  if (ATTENTION.has(k.name)) return 'attention';
  if (k.name === DECODE_LAYERS) return 'layers';
  // the additive mask: an add on [B, Hkv, G, T, S] scores
  if (k.name === 'Add' && k.inputShapes.some((s) => s.length === 5)) return 'attention';
  if (DATA_MOVEMENT.has(k.name)) return 'dataMovement';
  return 'elementwise';
}

// weight bytes read per step by each matmul kind
function weightBytesByPart(c: LlamaConfig): Record<string, number> {
  const { hiddenSize: Dm, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F, vocabSize: V, numLayers: L } = c;
  const w = bytesPerWeight;
  return {
    layers: w * L * (Dm * (H + 2 * Hkv) * D + H * D * Dm + 3 * Dm * F),
    qkv: w * L * Dm * (H + 2 * Hkv) * D,
    o: w * L * H * D * Dm,
    gateUp: w * L * 2 * Dm * F,
    down: w * L * F * Dm,
    lmHead: w * Dm * V,
  };
}

// prompt ids cycled to n tokens
function cycled(ids: number[], n: number): number[] {
  return Array.from({ length: n }, (_, i) => ids[i % ids.length]);
}

/**
 * Time decode steps at a context: unprofiled steps split into forward / readback / sampling, then
 * profiled steps (tf.profile) for kernel times by part. Engine overhead = forward - kernels.
 */
async function decodeBreakdown(name: string, model: LlamaModel, ids: number[], context: number, steps: number): Promise<Breakdown> {
  const c = model.config;
  const kinds = weightKinds(c);
  const cache = new ContiguousKVCache(model.kvShape, 1);
  const params = resolveSamplingParams({ temperature: 0 });
  const rng = new Rng(0);
  const bar = progressBar(2 + 2 * steps, `breakdown ${name} @${context}`);
  try {
    // prefill to context - 1 tokens, so the first timed step attends over `context`
    const prefill = model.forward([cycled(ids, context - 1)], cache);
    await prefill.data();
    prefill.dispose();
    let token = ids[0];
    const step = async () => {
      const t0 = performance.now();
      const logits = model.forward([[token]], cache); // [1, 1, V]
      const t1 = performance.now();
      const row = (await logits.data()) as Float32Array;
      const t2 = performance.now();
      logits.dispose();
      token = sampleToken(row, params, rng).token;
      const t3 = performance.now();
      return { forward: t1 - t0, readback: t2 - t1, sample: t3 - t2, total: t3 - t0 };
    };
    for (let i = 0; i < 2; i++) {
      await step(); // warm-up
      bar.tick();
    }
    const firstContext = cache.lengths()[0] + 1;
    const timed: Awaited<ReturnType<typeof step>>[] = [];
    // plain and profiled steps alternate, so a busy CPU slows both alike
    const perStep: Map<string, { count: number; ms: number }>[] = [];
    const perKernel: Map<string, { count: number; ms: number }>[] = [];
    const wrappers = new Map<string, number>();
    let timesAvailable = true;
    for (let i = 0; i < steps; i++) {
      timed.push(await step());
      bar.tick();
      const info = await tf.profile(async () => {
        const logits = model.forward([[token]], cache);
        const row = (await logits.data()) as Float32Array;
        logits.dispose();
        token = sampleToken(row, params, rng).token;
        return 0;
      });
      const parts = new Map<string, { count: number; ms: number }>();
      const kernels = new Map<string, { count: number; ms: number }>();
      for (const k of info.kernels as unknown as ProfiledKernel[]) {
        if (!tf.getKernel(k.name, tf.getBackend())) {
          wrappers.set(k.name, (wrappers.get(k.name) ?? 0) + (i === 0 ? 1 : 0));
          continue;
        }
        const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : NaN;
        if (!Number.isFinite(ms)) timesAvailable = false;
        for (const [map, key] of [
          [parts, classify(k, kinds)],
          [kernels, k.name],
        ] as const) {
          const e = map.get(key) ?? { count: 0, ms: 0 };
          e.count++;
          e.ms += ms;
          map.set(key, e);
        }
      }
      perStep.push(parts);
      perKernel.push(kernels);
      bar.tick();
    }
    const lastContext = cache.lengths()[0];
    bar.done();

    // the parts come from the fastest plain step and the fastest profiled step: the ones least
    // disturbed by other processes, so that the parts add up to one step's cost
    const kernelTotals = perStep.map((m) => [...m.values()].reduce((sum, e) => sum + e.ms, 0));
    const best = timed.reduce((b, t) => (t.total < b.total ? t : b));
    const bestProfiled = kernelTotals.indexOf(Math.min(...kernelTotals));
    const partsOf = perStep[timesAvailable ? bestProfiled : 0];
    const kernelsOf = perKernel[timesAvailable ? bestProfiled : 0];
    const stepMs = median(timed.map((t) => t.total));
    const kernelMs = timesAvailable ? kernelTotals[bestProfiled] : null;
    const opsPerStep = [...partsOf.values()].reduce((sum, e) => sum + e.count, 0);
    // two separately timed steps: noise can make the difference negative; shown as 0
    const engineOverheadRawMs = kernelMs === null ? null : best.forward - kernelMs;
    const engineOverheadMs = engineOverheadRawMs === null ? null : Math.max(0, engineOverheadRawMs);
    const bytes = weightBytesByPart(c);
    const pct = (ms: number | null) => (ms === null ? null : (100 * ms) / best.total);
    const partMs = (key: string) => ({ count: partsOf.get(key)?.count ?? 0, ms: timesAvailable ? (partsOf.get(key)?.ms ?? 0) : null });
    const parts: BreakdownPart[] = PART_LABELS.map(([key, label]) => {
      if (key === 'engine') return { part: label, ms: engineOverheadMs, percent: pct(engineOverheadMs), ops: null };
      if (key === 'readback') return { part: label, ms: best.readback, percent: pct(best.readback), ops: null };
      if (key === 'sampling') return { part: label, ms: best.sample, percent: pct(best.sample), ops: null };
      const { count, ms } = partMs(key);
      const row: BreakdownPart = { part: label, ms, percent: pct(ms), ops: count };
      if (key in bytes) row.gbps = ms ? bytes[key] / ms / 1e6 : null;
      return row;
    }).filter((p) => p.ops !== 0);
    const small = ['attention', 'elementwise', 'dataMovement'].map(partMs);
    const smallOps = small.reduce((sum, e) => sum + e.count, 0);
    const smallMs = timesAvailable ? small.reduce((sum, e) => sum + (e.ms ?? 0), 0) : null;
    const smallWithEngine = smallMs === null || engineOverheadMs === null ? null : smallMs + (engineOverheadMs * smallOps) / opsPerStep;
    const byKernel = [...kernelsOf]
      .map(([kernel, e]) => ({ kernel, count: e.count, ms: timesAvailable ? e.ms : null }))
      .sort((a, b) => (b.ms ?? 0) - (a.ms ?? 0));
    return {
      model: name,
      contextLength: [firstContext, lastContext],
      steps,
      stepMs,
      tokensPerSecond: 1000 / stepMs,
      fastestStepMs: best.total,
      forwardMs: best.forward,
      readbackMs: best.readback,
      sampleMs: best.sample,
      kernelMs,
      engineOverheadMs,
      engineOverheadRawMs,
      opsPerStep,
      engineOverheadUsPerOp: engineOverheadMs === null ? null : (1000 * engineOverheadMs) / opsPerStep,
      smallKernels: { ops: smallOps, ms: smallMs, usPerOp: smallWithEngine === null ? null : (1000 * smallWithEngine) / smallOps },
      parts,
      byKernel,
      wrappers: [...wrappers].map(([n, count]) => ({ name: n, count })),
    };
  } finally {
    cache.dispose();
  }
}

// ---- printing

const median = (xs: readonly number[]) => percentile(xs, 50);

const fmt = (x: number | null | undefined, digits = 1) => (x === null || x === undefined ? '-' : x.toFixed(digits));
const pad = (s: string, n: number) => (s.length >= n ? s : ' '.repeat(n - s.length) + s);
const padR = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
const millions = (n: number) => `${(n / 1e6).toFixed(1)}M`;

function printTable(r: CoreResult): void {
  const out: string[] = [];
  const o = r.roofs;
  out.push(`bench:core (${r.mode}) on ${r.backend.name}: ${r.backend.reason}`);
  const busy = Math.max(r.load.start[0], r.load.end[0]) > r.load.cores;
  out.push(
    `load average ${r.load.start[0].toFixed(1)} -> ${r.load.end[0].toFixed(1)} on ${r.load.cores} cores` +
      (busy ? ': other processes shared the CPU, so these figures are low and noisy' : ''),
  );
  out.push(
    `roofs: bandwidth ${fmt(o.bandwidthGBps)} GB/s (best ${o.bandwidthKernel}; checks ` +
      `${o.bandwidthChecks.map((c) => `${c.when} ${fmt(c.bestGBps)}/${fmt(c.medianGBps)}`).join(', ')} best/median), ` +
      `matmul ${fmt(o.matmulGflops)} GFLOP/s (${o.matmulN}^3), small op ${fmt(o.smallOpUs)} us (best ${fmt(o.smallOpMinUs)})`,
  );
  out.push('');
  out.push('naive vs cached (greedy, batch 1; decode = mean decode tok/s, dec.med = 1000 / median inter-token latency)');
  out.push(
    `${padR('model', 14)}${pad('length', 7)}  ${padR('mode', 7)}${pad('gen', 6)}${pad('tok/s', 9)}${pad('decode', 9)}${pad('dec.med', 9)}${pad('TTFT ms', 9)}${pad('TPOT ms', 9)}${pad('e2e s', 9)}  note`,
  );
  for (const x of r.naiveVsCached) {
    out.push(
      `${padR(x.model, 14)}${pad(String(x.length), 7)}  ${padR(x.mode, 7)}${pad(x.generatedTokens === null ? '-' : String(x.generatedTokens), 6)}` +
        `${pad(fmt(x.tokensPerSecond), 9)}${pad(fmt(x.decodeTokensPerSecond), 9)}${pad(fmt(x.decodeTokensPerSecondMedian), 9)}${pad(fmt(x.ttftMs), 9)}${pad(fmt(x.tpotMs, 2), 9)}` +
        `${pad(x.e2eMs === null ? '-' : (x.e2eMs / 1000).toFixed(2), 9)}  ${x.ran ? (x.note ?? '') : `not run: ${x.note}`}`,
    );
  }
  out.push('');
  out.push(
    `decode vs roofline (batch 1; predicted = ${fmt(o.bandwidthGBps)} GB/s / bytes per token; measured = mean decode tok/s, ` +
      `median and p10 from inter-token latencies)`,
  );
  out.push(
    `${padR('model', 14)}${pad('params', 8)}${pad('weights MB', 11)}${pad('ctx', 6)}${pad('MB/token', 10)}${pad('predicted', 11)}${pad('measured', 10)}${pad('GB/s', 7)}${pad('roofline', 10)}${pad('median', 9)}${pad('roofline', 10)}${pad('p10 ITL', 9)}${pad('roofline', 10)}`,
  );
  for (const x of r.roofline) {
    out.push(
      `${padR(x.model, 14)}${pad(millions(x.params), 8)}${pad(mb(x.weightBytes), 11)}${pad(fmt(x.contextLength, 0), 6)}${pad(mb(x.bytesPerToken), 10)}` +
        `${pad(fmt(x.predictedTokS), 11)}${pad(fmt(x.measuredTokS), 10)}${pad(fmt(x.achievedGBps), 7)}${pad(`${(100 * x.fractionOfRoofline).toFixed(0)}%`, 10)}` +
        `${pad(fmt(x.measuredMedianTokS), 9)}${pad(`${(100 * x.fractionOfRooflineMedian).toFixed(0)}%`, 10)}` +
        `${pad(fmt(x.measuredP10TokS), 9)}${pad(`${(100 * x.fractionOfRooflineP10).toFixed(0)}%`, 10)}`,
    );
  }
  for (const b of r.breakdown) {
    out.push('');
    out.push(
      `where a decode step goes: ${b.model} at context ${b.contextLength[0]}..${b.contextLength[1]}: median step ${fmt(b.stepMs, 2)} ms ` +
        `(${fmt(b.tokensPerSecond)} tok/s), fastest of ${b.steps} ${fmt(b.fastestStepMs, 2)} ms split below; ${b.opsPerStep} kernels/step` +
        (b.engineOverheadUsPerOp === null ? '' : `, ${fmt(b.engineOverheadUsPerOp)} us engine overhead per kernel`) +
        (b.smallKernels.usPerOp === null ? '' : `; ${b.smallKernels.ops} small kernels at ${fmt(b.smallKernels.usPerOp)} us each`),
    );
    out.push(`  ${padR('part', 38)}${pad('ms', 8)}${pad('%', 6)}${pad('ops', 6)}${pad('GB/s', 7)}`);
    for (const p of b.parts) {
      out.push(
        `  ${padR(p.part, 38)}${pad(fmt(p.ms, 2), 8)}${pad(fmt(p.percent, 0), 6)}${pad(p.ops === null ? '' : String(p.ops), 6)}${pad(p.gbps === undefined ? '' : fmt(p.gbps), 7)}`,
      );
    }
    const top = b.byKernel.slice(0, 8).map((k) => `${k.kernel} x${k.count} ${fmt(k.ms, 2)}`);
    out.push(`  top kernels (ms/step): ${top.join(', ')}`);
  }
  if (r.notes.length) {
    out.push('');
    for (const n of r.notes) out.push(`note: ${n}`);
  }
  console.log(out.join('\n'));
}

// ---- main

// ---- decode-matmul sweep (--gemm)

interface GemmSweepRow {
  rows: number;
  /** ms for one decode step's matmuls (every layer's four and the LM head), median of the rounds */
  ms: Record<string, number>;
}

/**
 * One decode step's matmuls at M rows, every way we have: XNNPACK (tf.matMul), our kernel called
 * directly over the tiled weights (gemm f32, gemmBf16 bf16), and the thread pool (columns split
 * over the backend's threads, in place). Rounds interleave the variants, so a busy moment hits them all.
 */
async function gemmSweep(model: LlamaModel, rows: number[], repeats: number): Promise<GemmSweepRow[]> {
  const be = tf.backend() as unknown as WasmBackendLike;
  const k = cpuKernelsFor(be);
  // with fused multiply-adds (the relaxed build), the plain build too: what the FMA buys
  const plain = wasmFmaOf(be) === 'off' ? null : plainCpuKernelsFor(be);
  const w = model.weights;
  // each matrix [K, N] three ways: [K, N] f32 for XNNPACK, the GEMV's f32 tiles (made here: the
  // model holds bf16 ones) and its bf16 tiles
  const mat = (f32: tf.Tensor2D, bf16: tf.Tensor2D | undefined) => {
    const [K, N] = f32.shape;
    if (!bf16) throw new Error('--gemm needs the bf16 packed weights (wasm backend)');
    return { f32, tiles: gemvWeights(f32.dataSync() as Float32Array, K, N, 'f32'), bf16, K, N };
  };
  const mats = [
    ...w.layers.flatMap((L) => [
      mat(L.wqkv, L.packed?.wqkv),
      mat(L.wo, L.packed?.wo),
      mat(L.wGateUp, L.packed?.wGateUp),
      mat(L.wDown, L.packed?.wDown),
    ]),
    mat(w.lmHead, w.lmHeadPacked),
  ];
  const pool = CpuThreadPool.of(be); // null on one thread
  const out: GemmSweepRow[] = [];
  try {
    for (const M of rows) {
      const xs = new Map<number, tf.Tensor2D>();
      const x = (K: number) => {
        let t = xs.get(K);
        if (!t) xs.set(K, (t = tf.randomUniform([M, K], -1, 1, 'float32', K) as tf.Tensor2D)); // [M, K]
        return t;
      };
      // every matrix through `name`'s kernel: on this thread alone, or split over the pool's threads
      const step = (name: 'gemm' | 'gemmBf16', p: CpuThreadPool | null, kernels = k) => () => {
        for (const m of mats) {
          const W = name.endsWith('Bf16') ? m.bf16 : m.tiles;
          const { K, N } = m;
          const o = be.makeOutput([M, N], 'float32');
          const args = [offsetOf(be, x(K)), offsetOf(be, W), offsetOf(be, o), M, K, N] as const;
          if (p) p.gemm(name, ...args);
          else kernels[name](...args, 0, N);
          tf.engine().disposeTensor(tf.engine().makeTensorFromTensorInfo(o));
        }
      };
      const variants: Record<string, () => void> = {
        xnnpack: () => mats.forEach((m) => tf.matMul(x(m.f32.shape[0]), m.f32).dispose()),
        gemm: step('gemm', null),
        gemmBf16: step('gemmBf16', null),
      };
      if (plain) {
        variants['gemm nofma'] = step('gemm', null, plain);
        variants['gemmBf16 nofma'] = step('gemmBf16', null, plain);
      }
      if (pool) {
        variants[`${pool.threads}t ${gemvKernelName(false)}`] = step(gemvKernelName(false), pool);
        variants[`${pool.threads}t ${gemvKernelName(true)}`] = step(gemvKernelName(true), pool);
      }
      const times: Record<string, number[]> = {};
      for (const [name, run] of Object.entries(variants)) {
        run(); // warm-up: XNNPACK packs, V8 tiers the kernels up
        times[name] = [];
      }
      for (let r = 0; r < repeats; r++) {
        for (const [name, run] of Object.entries(variants)) {
          const t0 = performance.now();
          run();
          times[name].push(performance.now() - t0);
        }
      }
      xs.forEach((t) => t.dispose());
      const row = { rows: M, ms: Object.fromEntries(Object.entries(times).map(([n, t]) => [n, percentile(t, 50)])) };
      console.log(
        `M = ${M}: ` +
          Object.entries(row.ms)
            .map(([n, ms]) => `${n} ${ms.toFixed(2)}`)
            .join('  '),
      );
      out.push(row);
    }
  } finally {
    mats.forEach((m) => m.tiles.dispose());
  }
  return out;
}

async function gemmMain(opt: Options): Promise<void> {
  const loadStart = os.loadavg();
  const threads = intList('threads', [2])[0];
  const info = await initBackend({ prefer: 'wasm', log: true, wasmThreads: threads });
  const model = await loadModel(opt.model, { cpuWeights: 'bf16' });
  const rows = intList('rows', [1, 2, 3, 4, 5, 6, 7, 8]);
  const repeats = intList('repeats', [15])[0];
  console.log(`decode-matmul sweep, ${path.basename(opt.model)}: ms per step's matmuls, median of ${repeats} interleaved rounds`);
  const sweep = await gemmSweep(model, rows, repeats);
  model.dispose();
  const result = {
    backend: { name: info.name, reason: info.reason },
    load: { cores: os.cpus().length, start: loadStart, end: os.loadavg() },
    model: path.basename(opt.model),
    repeats,
    sweep,
    notes: [
      "ms = one decode step's matmuls (each layer's qkv, o, gate-up, down and the LM head) at M rows; xnnpack = tf.matMul (on the backend's threads); gemm, gemmBf16 = our kernels called directly on one thread (with fused multiply-adds where the engine has relaxed SIMD; 'nofma' = the plain build, every product rounded before the add); Nt = the same split by columns over the backend's N threads (in place)",
    ],
  };
  const file = writeBenchJson('core-gemm', result, { dir: path.dirname(opt.out) });
  console.error(
    `load average ${loadStart[0].toFixed(1)} -> ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores; wrote ${path.relative(process.cwd(), file) || file}`,
  );
}

async function main(): Promise<void> {
  const opt = parseOptions();
  if (flags.has('gemm')) return gemmMain(opt);
  const loadStart = os.loadavg();
  const info: BackendInfo = await initBackend({ prefer: opt.backend, log: true, wasmThreads: flags.threads(), wasmFma: flags.fma() });
  if (opt.cpuWeights !== 'f32' && opt.cpuWeights !== 'bf16') throw new Error(`--cpu-weights must be f32 or bf16, got '${opt.cpuWeights}'`);
  bytesPerWeight = opt.cpuWeights === 'bf16' ? 2 : 4;
  useWasmGemv(opt.gemv);
  useWasmDecodeStep(opt.decodeStep);
  const notes: string[] = [];
  const label = (p: string) => path.basename(p).replace(/\.json$/, '');
  const modelName = label(opt.model);
  const presetName = label(opt.preset);

  console.error('measuring roofs...');
  const roofs = await measureRoofs();

  // ---- target: naive vs cached, roofline, breakdown
  const model = await loadModel(opt.model, { cpuWeights: opt.cpuWeights });
  const tokenizer = await loadTokenizer(opt.model);
  const text = fs.readFileSync(path.resolve('data', 'corpus', 'test.txt'), 'utf8');
  const prompt = tokenizer.encode(text).slice(0, opt.promptTokens); // a short test-split prompt
  if (prompt.length < opt.promptTokens) throw new Error(`data/corpus/test.txt gave only ${prompt.length} tokens`);
  const naiveVsCached: NaiveVsCachedRow[] = [];
  // cached runs, placed against the roofline once every bandwidth check is in
  const decodes: { name: string; config: LlamaConfig; out: GenerationOutput }[] = [];
  const breakdown: Breakdown[] = [];
  // warm-up: packs weights for XNNPACK, compiles shaders; both modes' shapes
  await runGeneration(model, prompt, 'cached', 8, 'warm-up cached');
  await runGeneration(model, prompt, 'naive', 8, 'warm-up naive');
  for (const length of opt.lengths) {
    const { generated, note } = fitLength(model.config, prompt.length, length);
    for (const mode of ['naive', 'cached'] as const) {
      if (mode === 'naive' && !opt.full && length > NAIVE_QUICK_MAX) {
        const forwards = tokenForwards('naive', prompt.length, generated);
        naiveVsCached.push(
          skippedRow(
            modelName,
            length,
            mode,
            prompt.length,
            generated,
            `--quick skips naive above ${NAIVE_QUICK_MAX} tokens: it would recompute ${(forwards / 1e6).toFixed(2)}M token forwards ` +
              `(many minutes on a 2-core CPU); run with --full`,
          ),
        );
        continue;
      }
      const out = await runGeneration(model, prompt, mode, generated, `${modelName} ${mode} ${length}`);
      naiveVsCached.push(cellRow(modelName, length, mode, prompt.length, out, note));
      if (mode === 'cached') decodes.push({ name: modelName, config: model.config, out });
    }
  }
  const maxContext = model.config.maxPositions - 2 * opt.breakdownSteps - 4;
  for (const context of [prompt.length + 64, Math.min(1000, maxContext)]) {
    breakdown.push(await decodeBreakdown(modelName, model, prompt, context, opt.breakdownSteps));
  }
  model.dispose();

  // ---- preset (larger than the CPU caches): roofline and breakdown
  console.error(`loading ${presetName} (weights generated from the seed)...`);
  const preset = await loadModel(opt.preset, { cpuWeights: opt.cpuWeights });
  await checkBandwidth(roofs, `before ${presetName}`);
  // a longer warm-up: the first steps after generating 0.5 GB of weights run slow
  await runGeneration(preset, prompt, 'cached', 48, `warm-up ${presetName}`);
  for (const length of opt.presetTokens) {
    const { generated, note } = fitLength(preset.config, prompt.length, length);
    const out = await runGeneration(preset, prompt, 'cached', generated, `${presetName} cached ${length}`);
    if (note) notes.push(`${presetName}: ${note}`);
    decodes.push({ name: presetName, config: preset.config, out });
  }
  breakdown.push(await decodeBreakdown(presetName, preset, prompt, prompt.length + 64, opt.breakdownSteps));
  if (opt.full) breakdown.push(await decodeBreakdown(presetName, preset, prompt, 1000, opt.breakdownSteps));
  preset.dispose();
  await checkBandwidth(roofs, 'end');
  const roofline = decodes.map((d) => rooflineRow(d.name, d.config, roofs, prompt.length, d.out));
  let captured: CapturedCoreRow[] | null = null;
  if (info.name === 'webgpu') {
    console.error('captured path: the same decode, one command buffer per step...');
    captured = await capturedCore(
      [
        { name: modelName, dir: opt.model },
        { name: presetName, dir: opt.preset },
      ],
      prompt,
      128,
      roofs.bandwidthGBps,
    );
    for (const r of captured) {
      console.log(
        `captured ${r.model} ${r.weights}: ${r.measuredTokS.toFixed(0)} tok/s (${r.stepMsMedian.toFixed(3)} ms/step, ${r.dispatchesPerStep} dispatches, ` +
          `encode ${r.encodeMsMedian.toFixed(3)} ms) = ${(100 * r.fractionOfRoofline).toFixed(1)}% of the roofline ${r.predictedTokS.toFixed(0)} tok/s`,
      );
    }
    notes.push(
      'captured: GpuLlama.greedyGenerate at batch 1 (ids chained on the GPU), 128 steps after 8 of warm-up; median step; same prompt and roofline bandwidth as the eager rows; weight bytes as stored (fp32 or bf16)',
    );
  }

  notes.push(
    `wasm decode: weights ${opt.cpuWeights}, AssemblyScript GEMV ${opt.gemv ? `on (steps of up to ${GEMV_MAX_ROWS} rows)` : 'off (XNNPACK matMul)'}, ` +
      `fused decode step ${opt.decodeStep && opt.gemv ? 'on (a decoder layer = one wasm call)' : 'off (tfjs ops one by one)'}`,
  );
  notes.push(
    'measured decode tok/s = (generated - 1) / (e2e - TTFT) from generate(): every step includes forward, logits readback and sampling',
    'roofline: predicted = bandwidth / (weight bytes per token + KV bytes per token x mean context); bandwidth is the best GEMV over a matrix larger than the caches, over every check of the run',
    'breakdown: medians over alternating plain and profiled steps; kernel times from tf.profile, engine overhead = plain forward wall time - kernel time (shown as 0 when noise makes it negative)',
  );
  if (info.name === 'webgpu') {
    notes.push(
      'webgpu: forward() only dispatches; GPU execution waits show up in the readback; kernel times come from GPU timestamp queries when tfjs provides them',
    );
  }
  const result: CoreResult = {
    mode: opt.full ? 'full' : 'quick',
    backend: { name: info.name, reason: info.reason },
    load: { cores: os.cpus().length, start: loadStart, end: os.loadavg() },
    roofs,
    naiveVsCached,
    roofline,
    breakdown,
    captured,
    notes,
  };
  printTable(result);
  const file = writeBenchJson(path.basename(opt.out).replace(/\.json$/, ''), result, { dir: path.dirname(opt.out) });
  console.error(`wrote ${path.relative(process.cwd(), file) || file}`);
}

runBench(main);
