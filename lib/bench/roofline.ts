/**
 * Roofline: why decode is memory-bound.
 *
 * Lesson: "Decode is memory-bound" (roofline). Pure arithmetic first (bytes and FLOPs per step,
 * predicted tokens/s, arithmetic intensity); the measuring functions after, which time a
 * read-dominated kernel (GEMV) and a big matmul on the current tfjs backend.
 *
 * Units: bytes, FLOPs, seconds; GB = 1e9 bytes, GFLOP = 1e9 FLOPs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { summarize, type TimingStats } from './harness';

// ---- pure model: bytes and FLOPs of one forward step

export interface DecodeTraffic {
  /** bytes of weights read per forward step (all of them, once, shared by the batch) */
  weightBytes: number;
  /** K and V bytes stored per token (all layers): see kvBytesPerToken() */
  kvBytesPerToken: number;
  /** tokens whose K/V each sequence reads at this step (including the new one) */
  contextLength: number;
  /** sequences decoded together (default 1) */
  batch?: number;
}

/** K+V bytes one token adds to the cache: 2 (K and V) x layers x kvHeads x headDim x bytes. */
export function kvBytesPerToken(args: {
  layers: number;
  kvHeads: number;
  headDim: number;
  bytesPerElement?: number;
}): number {
  const { layers, kvHeads, headDim, bytesPerElement = 4 } = args;
  checkNonNegative({ layers, kvHeads, headDim, bytesPerElement });
  return 2 * layers * kvHeads * headDim * bytesPerElement;
}

/** Bytes one decode step reads: the weights once + each sequence's KV cache. */
export function bytesPerDecodeStep(t: DecodeTraffic): number {
  const batch = t.batch ?? 1;
  checkNonNegative({ weightBytes: t.weightBytes, kvBytesPerToken: t.kvBytesPerToken, contextLength: t.contextLength });
  checkPositive({ batch });
  return t.weightBytes + batch * t.contextLength * t.kvBytesPerToken;
}

/** Bytes read per generated token: one step's bytes shared by the `batch` tokens it makes. */
export function bytesPerDecodedToken(t: DecodeTraffic): number {
  return bytesPerDecodeStep(t) / (t.batch ?? 1);
}

export interface DecodePrediction extends DecodeTraffic {
  /** achievable memory bandwidth, GB/s (measureBandwidth().bestGBps) */
  bandwidthGBps: number;
  /** optional compute roof: FLOPs per token and peak GFLOP/s; the step takes the slower of both */
  flopsPerToken?: number;
  peakGflops?: number;
}

/**
 * Predicted decode speed, tokens/s summed over the batch: B x bandwidth / bytes-per-step
 * (memory roof); with flopsPerToken and peakGflops, limited by the compute roof as well.
 */
export function predictDecodeTokensPerSecond(p: DecodePrediction): number {
  checkPositive({ bandwidthGBps: p.bandwidthGBps });
  const batch = p.batch ?? 1;
  const memorySeconds = bytesPerDecodeStep(p) / (p.bandwidthGBps * 1e9);
  let computeSeconds = 0;
  if (p.flopsPerToken !== undefined && p.peakGflops !== undefined) {
    checkPositive({ peakGflops: p.peakGflops });
    computeSeconds = (batch * p.flopsPerToken) / (p.peakGflops * 1e9);
  }
  return batch / Math.max(memorySeconds, computeSeconds);
}

/** What one forward step costs, for placing it on a roofline chart. */
export interface ModelCost {
  /** weights used in matmuls per token (linear layers and LM head, not the embedding lookup) */
  params: number;
  /** bytes of weights read per step */
  weightBytes: number;
  kvBytesPerToken: number;
  /** attention FLOPs per (query token, key) pair: see attentionFlopsPerKey(); 0 ignores attention */
  attentionFlopsPerKey?: number;
}

/** 4 x layers x heads x headDim: QK^T and softmax(.)V, 2 FLOPs per multiply-add each. */
export function attentionFlopsPerKey(args: { layers: number; heads: number; headDim: number }): number {
  checkNonNegative(args);
  return 4 * args.layers * args.heads * args.headDim;
}

export interface StepCost {
  flops: number;
  bytes: number;
  /** FLOPs per byte read: the x axis of a roofline chart */
  intensity: number;
}

/**
 * FLOPs and bytes of one step that appends `newTokens` to each of `batch` sequences that
 * already hold `pastLength` tokens (causal attention; KV read once per step, new KV written).
 * Activations are ignored: they are small next to weights and KV.
 */
export function stepCost(model: ModelCost, shape: { batch: number; newTokens: number; pastLength: number }): StepCost {
  const { batch, newTokens, pastLength } = shape;
  checkPositive({ batch, newTokens });
  checkNonNegative({ pastLength, params: model.params, weightBytes: model.weightBytes });
  const tokens = batch * newTokens;
  // new token i (1-based) attends to pastLength + i keys
  const keysPerSequence = newTokens * pastLength + (newTokens * (newTokens + 1)) / 2;
  const flops = 2 * model.params * tokens + (model.attentionFlopsPerKey ?? 0) * batch * keysPerSequence;
  const bytes = model.weightBytes + batch * (pastLength + newTokens) * model.kvBytesPerToken;
  return { flops, bytes, intensity: flops / bytes };
}

/** Prefill of `promptLength` tokens per sequence from an empty cache. */
export function prefillCost(model: ModelCost, args: { batch?: number; promptLength: number }): StepCost {
  return stepCost(model, { batch: args.batch ?? 1, newTokens: args.promptLength, pastLength: 0 });
}

/** One decode step: each sequence adds 1 token and attends to `contextLength` (incl. itself). */
export function decodeCost(model: ModelCost, args: { batch?: number; contextLength: number }): StepCost {
  checkPositive({ contextLength: args.contextLength });
  return stepCost(model, { batch: args.batch ?? 1, newTokens: 1, pastLength: args.contextLength - 1 });
}

export interface Roofs {
  peakGflops: number;
  bandwidthGBps: number;
}

/** GFLOP/s reachable at a given intensity: min(compute roof, intensity x bandwidth). */
export function attainableGflops(intensity: number, roofs: Roofs): number {
  return Math.min(roofs.peakGflops, intensity * roofs.bandwidthGBps);
}

/** The intensity (FLOPs/byte) where the two roofs meet: below it a kernel is memory-bound. */
export function ridgeIntensity(roofs: Roofs): number {
  return roofs.peakGflops / roofs.bandwidthGBps;
}

function checkPositive(values: Record<string, number>): void {
  for (const [name, v] of Object.entries(values)) {
    if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`${name} must be a finite number > 0; got ${v}`);
  }
}

function checkNonNegative(values: Record<string, number>): void {
  for (const [name, v] of Object.entries(values)) {
    if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`${name} must be a finite number >= 0; got ${v}`);
  }
}

// ---- measurement on the current backend

export interface BandwidthOptions {
  /** bytes of the matrix read each time (default by backend: larger than its caches) */
  bytes?: number;
  /** timed rounds (default 10) */
  repeats?: number;
  /** 'gemv' (default, the decode pattern: x[1,K] @ W[K,N]) or 'sum' (reduce W to a scalar) */
  kernel?: 'gemv' | 'sum';
}

export interface BandwidthResult {
  backend: string;
  kernel: string;
  /** bytes read per kernel call */
  bytes: number;
  /** kernels queued back-to-back per timed round (GPU queues are async); time is per kernel */
  perRound: number;
  bestGBps: number;
  medianGBps: number;
  timing: TimingStats;
}

/** Default matrix size per backend: past the CPU's L3 / the GPU's L2, quick to time. */
const DEFAULT_BYTES: Record<string, number> = {
  webgpu: 1 << 30,
  tensorflow: 256 << 20,
  wasm: 128 << 20,
  cpu: 32 << 20,
};

/**
 * Achievable memory bandwidth: time a kernel that reads a large float32 matrix once and writes
 * almost nothing. GEMV is what decode does, so its GB/s is the honest roof for decode on tfjs.
 */
export async function measureBandwidth(options: BandwidthOptions = {}): Promise<BandwidthResult> {
  const backend = tf.getBackend();
  const kernel = options.kernel ?? 'gemv';
  const repeats = options.repeats ?? 10;
  const perRound = backend === 'webgpu' ? 10 : 1;
  const K = 4096;
  const bytes = clampToGpuLimits(options.bytes ?? DEFAULT_BYTES[backend] ?? 64 << 20);
  const N = Math.max(1, Math.floor(bytes / 4 / K));
  const W = tf.fill([K, N], 0.5); // [K, N]
  const x = tf.fill([1, K], 1e-3); // [1, K]
  const run = kernel === 'gemv' ? () => tf.matMul(x, W) : () => tf.sum(W);
  try {
    const timing = await timeKernel(run, { repeats, perRound });
    const read = K * N * 4;
    const [bestGBps, medianGBps] = perSecond(read, timing);
    const name = kernel === 'gemv' ? `gemv x[1,${K}] @ W[${K},${N}] float32` : `sum W[${K},${N}] float32`;
    return { backend, kernel: name, bytes: read, perRound, bestGBps, medianGBps, timing };
  } finally {
    W.dispose();
    x.dispose();
  }
}

export interface MatmulFlopsOptions {
  /** square size n of [n,n] @ [n,n] (default by backend) */
  n?: number;
  repeats?: number;
}

export interface MatmulFlopsResult {
  backend: string;
  n: number;
  flops: number;
  perRound: number;
  bestGflops: number;
  medianGflops: number;
  timing: TimingStats;
}

const DEFAULT_N: Record<string, number> = { webgpu: 4096, tensorflow: 2048, wasm: 1024, cpu: 256 };

/** The compute roof: GFLOP/s of a big square float32 matmul (2n^3 FLOPs). */
export async function measureMatmulFlops(options: MatmulFlopsOptions = {}): Promise<MatmulFlopsResult> {
  const backend = tf.getBackend();
  const n = options.n ?? DEFAULT_N[backend] ?? 512;
  const repeats = options.repeats ?? 5;
  const perRound = backend === 'webgpu' ? 5 : 1;
  const a = tf.fill([n, n], 0.5); // [n, n]
  const b = tf.fill([n, n], 0.25); // [n, n]
  try {
    const timing = await timeKernel(() => tf.matMul(a, b), { repeats, perRound });
    const flops = 2 * n * n * n;
    const [bestGflops, medianGflops] = perSecond(flops, timing);
    return { backend, n, flops, perRound, bestGflops, medianGflops, timing };
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** `amount` (bytes or FLOPs per call) as a rate in units of 1e9 per second (GB/s, GFLOP/s), at the best and the median time. */
function perSecond(amount: number, timing: TimingStats): [best: number, median: number] {
  return [amount / timing.minMs / 1e6, amount / timing.medianMs / 1e6];
}

/**
 * Time one kernel: a warm-up, then `repeats` rounds of `perRound` calls queued back-to-back and
 * synchronised by reading the last result back. Returns milliseconds per call.
 */
async function timeKernel(run: () => tf.Tensor, opts: { repeats: number; perRound: number }): Promise<TimingStats> {
  const round = async (): Promise<void> => {
    let last: tf.Tensor | null = null;
    for (let i = 0; i < opts.perRound; i++) {
      last?.dispose();
      last = run();
    }
    try {
      await last!.data();
    } finally {
      last!.dispose();
    }
  };
  await round(); // warm-up: compiles shaders, packs weights, grows pools
  const samples: number[] = [];
  for (let r = 0; r < opts.repeats; r++) {
    const t0 = performance.now();
    await round();
    samples.push((performance.now() - t0) / opts.perRound);
  }
  return summarize(samples, { warmup: 1 });
}

function clampToGpuLimits(bytes: number): number {
  if (tf.getBackend() !== 'webgpu') return bytes;
  const limits = (tf.backend() as tf.KernelBackend & { device?: { limits: GPUSupportedLimits } }).device?.limits;
  if (!limits) return bytes;
  return Math.min(bytes, limits.maxStorageBufferBindingSize, limits.maxBufferSize);
}
