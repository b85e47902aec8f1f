/**
 * A roofline cost model of a real deployment: price a measured schedule (engine steps) or a
 * measured acceptance trace (speculative steps) as if an H200 ran Llama-3-8B in BF16. The
 * lessons run tiny models on a CPU, where batching and verify passes are not free; this model
 * shows what the same schedules and traces are worth where decode is bandwidth-bound. Every
 * figure it feeds is labelled "modeled", with costModelAssumptions() printed beside it.
 *
 * Lessons: 4 (speculative decoding, modeled), 5 (continuous batching, modeled).
 *
 * A step that computes `tokens` new tokens over `seqs` sequences attending to `context` keys:
 *   FLOPs = 2 x params x tokens + 4 x L x H x D x tokens x (context / seqs)
 *   bytes = weights + (context + tokens) x KV bytes per token,  KV per token = 2 x L x Hkv x D x bytes
 *   ms    = max(FLOPs / (P x eff_P), bytes / (W x eff_W)) + overhead per step
 * (summed over a batch: B sequences at context ctx read B x ctx x 2 x L x Hkv x D x bytes of KV).
 */
import type { StepCostInput } from '../engine/clock';
import { llamaSizes, resolveLlamaConfig, type LlamaConfig } from '../model/config';

/** An accelerator's roofs and what fraction of them real kernels reach. */
export interface Hardware {
  name: string;
  /** dense peak, TFLOP/s, in the deployment's dtype */
  peakTflops: number;
  /** memory bandwidth, TB/s */
  bandwidthTBps: number;
  /** share of the peak a real matmul reaches */
  computeEfficiency: number;
  /** share of the bandwidth a real decode reaches */
  bandwidthEfficiency: number;
  /** fixed cost per step (launches, scheduling), ms: small with CUDA graphs */
  stepOverheadMs: number;
  /** where the figures come from */
  source: string;
}

/** NVIDIA H200 SXM, BF16 dense (datasheet figures; efficiencies are assumptions, printed). */
export const H200_BF16: Hardware = {
  name: 'NVIDIA H200 SXM, BF16',
  peakTflops: 989,
  bandwidthTBps: 4.8,
  computeEfficiency: 0.6,
  bandwidthEfficiency: 0.8,
  stepOverheadMs: 0.05,
  source: 'NVIDIA H200 datasheet: 989 TFLOP/s BF16 dense, 4.8 TB/s HBM3e, 141 GB',
};

/** Llama-3-8B shapes (meta-llama/Meta-Llama-3-8B config.json). */
export const LLAMA3_8B: LlamaConfig = resolveLlamaConfig({
  vocabSize: 128256, hiddenSize: 4096, intermediateSize: 14336, numLayers: 32, numHeads: 32, numKvHeads: 8, maxPositions: 8192, ropeTheta: 500000,
});

/** Llama-3.2-1B shapes (meta-llama/Llama-3.2-1B config.json; tied embeddings): a draft for Llama-3-8B (same tokenizer). */
export const LLAMA32_1B: LlamaConfig = resolveLlamaConfig({
  vocabSize: 128256, hiddenSize: 2048, intermediateSize: 8192, numLayers: 16, numHeads: 32, numKvHeads: 8, headDim: 64, maxPositions: 8192, ropeTheta: 500000, tieWordEmbeddings: true,
});

/** A model served on a piece of hardware, with the bytes per stored value. */
export interface Deployment {
  hardware: Hardware;
  modelName: string;
  config: LlamaConfig;
  /** bytes per weight and per K/V value (2 for BF16) */
  bytesPerValue: number;
}

/** Llama-3-8B in BF16 on an H200, or another model/hardware. */
export function deployment(modelName = 'Llama-3-8B', config: LlamaConfig = LLAMA3_8B, hardware: Hardware = H200_BF16, bytesPerValue = 2): Deployment {
  return { hardware: hardware, modelName: modelName, config: config, bytesPerValue: bytesPerValue };
}

/** Sizes the model prices with: weight bytes read per step, KV bytes per token, FLOPs. */
export function deploymentSizes(d: Deployment): { paramsPerToken: number; weightBytes: number; kvBytesPerToken: number; attentionFlopsPerKey: number } {
  const c = d.config;
  const s = llamaSizes(c); // float32 byte counts
  const paramsPerToken = s.weightBytesPerToken / 4;
  return {
    paramsPerToken: paramsPerToken,
    weightBytes: paramsPerToken * d.bytesPerValue,
    kvBytesPerToken: 2 * c.numLayers * c.numKvHeads * c.headDim * d.bytesPerValue, // K and V, every layer
    attentionFlopsPerKey: 4 * c.numLayers * c.numHeads * c.headDim,
  };
}

/** Modeled time of one step (ms); same input as the engine's VirtualClock cost. */
export function modeledStepMs(d: Deployment, s: StepCostInput): number {
  if (s.numScheduledTokens <= 0) return 0;
  const z = deploymentSizes(d);
  const hw = d.hardware;
  const seqs = Math.max(1, s.numSeqs);
  const flops = 2 * z.paramsPerToken * s.numScheduledTokens + z.attentionFlopsPerKey * s.numScheduledTokens * (s.numContextTokens / seqs);
  const bytes = z.weightBytes + (s.numContextTokens + s.numScheduledTokens) * z.kvBytesPerToken;
  const computeMs = flops / (hw.peakTflops * 1e12 * hw.computeEfficiency) * 1e3;
  const memoryMs = bytes / (hw.bandwidthTBps * 1e12 * hw.bandwidthEfficiency) * 1e3;
  return Math.max(computeMs, memoryMs) + hw.stepOverheadMs;
}

/** A decode step of `batch` sequences at `context` tokens each (ms). */
export function modeledDecodeMs(d: Deployment, batch: number, context: number, tokensPerSeq = 1): number {
  return modeledStepMs(d, { numScheduledTokens: batch * tokensPerSeq, numSeqs: batch, numContextTokens: batch * context });
}

/** Total modeled time of a measured schedule (e.g. an engine run's steps). */
export function modelSchedule(d: Deployment, steps: readonly StepCostInput[]): { totalMs: number; stepMs: number[] } {
  const stepMs = steps.map((s) => modeledStepMs(d, s));
  return { totalMs: stepMs.reduce((a, b) => a + b, 0), stepMs: stepMs };
}

/** One speculative step of a measured trace: how many drafts were proposed and how many kept. */
export interface AcceptanceStep {
  drafted: number;
  accepted: number;
}

export interface ModeledSpeculation {
  batch: number;
  gamma: number;
  /** tokens emitted per sequence per step in the trace: kept drafts + 1 */
  tokensPerStep: number;
  targetStepMs: number;
  draftStepMs: number;
  verifyMs: number;
  /** verify pass over gamma + 1 tokens, in target decode steps */
  verifyRatio: number;
  /** draft step / target step */
  c: number;
  baselineTokPerS: number;
  speculativeTokPerS: number;
  speedup: number;
}

/**
 * Replay a measured acceptance trace: each step drafts gamma tokens per sequence (gamma draft
 * decode steps), verifies gamma + 1 per sequence in one target pass, and emits kept + 1. The
 * baseline is one target decode step per token; both for `batch` sequences at `context` tokens.
 */
export function modelSpeculative(target: Deployment, draft: Deployment, trace: readonly AcceptanceStep[], args: { batch: number; context: number }): ModeledSpeculation {
  if (trace.length === 0) throw new Error('modelSpeculative: empty trace');
  const { batch, context } = args;
  const gamma = trace.reduce((m, t) => Math.max(m, t.drafted), 0);
  const tokensPerStep = trace.reduce((s, t) => s + t.accepted + 1, 0) / trace.length;
  const targetStepMs = modeledDecodeMs(target, batch, context);
  const draftStepMs = modeledDecodeMs(draft, batch, context);
  const verifyMs = modeledDecodeMs(target, batch, context, gamma + 1);
  const specStepMs = gamma * draftStepMs + verifyMs;
  const baselineTokPerS = (1000 * batch) / targetStepMs;
  const speculativeTokPerS = (1000 * batch * tokensPerStep) / specStepMs;
  return {
    batch: batch, gamma: gamma, tokensPerStep: tokensPerStep, targetStepMs: targetStepMs, draftStepMs: draftStepMs, verifyMs: verifyMs,
    verifyRatio: verifyMs / targetStepMs, c: draftStepMs / targetStepMs,
    baselineTokPerS: baselineTokPerS, speculativeTokPerS: speculativeTokPerS, speedup: speculativeTokPerS / baselineTokPerS,
  };
}

/** The ridge of the modeled hardware (FLOP/byte), with its efficiencies applied. */
export function modeledRidge(hw: Hardware = H200_BF16): number {
  return (hw.peakTflops * hw.computeEfficiency) / (hw.bandwidthTBps * hw.bandwidthEfficiency);
}

/** The model's assumptions, one line each, to print beside every modeled figure. */
export function costModelAssumptions(d: Deployment = deployment(), draft?: Deployment): string[] {
  const z = deploymentSizes(d);
  const hw = d.hardware;
  const lines = [
    `hardware: ${hw.name} (${hw.source}); kernels reach ${Math.round(100 * hw.computeEfficiency)}% of the compute peak and ${Math.round(100 * hw.bandwidthEfficiency)}% of the bandwidth; ridge ${modeledRidge(hw).toFixed(0)} FLOP/byte`,
    `model: ${d.modelName} shapes (${d.config.numLayers} layers, hidden ${d.config.hiddenSize}, ${d.config.numHeads} heads / ${d.config.numKvHeads} KV heads of ${d.config.headDim}), ${d.bytesPerValue} bytes per weight and per K/V value: ${(z.weightBytes / 1e9).toFixed(2)} GB of weights read per step`,
    `KV bytes per token = 2 x L x Hkv x D x bytes = ${(z.kvBytesPerToken / 1024).toFixed(0)} KiB; a step reads B x ctx x that`,
    `a step costs max(FLOPs / compute, bytes / bandwidth) + ${hw.stepOverheadMs} ms fixed (launches captured in a CUDA graph); no other overhead, no communication, one GPU`,
  ];
  if (draft) lines.push(`draft: ${draft.modelName} shapes, same hardware and dtype, ${(deploymentSizes(draft).weightBytes / 1e9).toFixed(2)} GB of weights`);
  lines.push('schedules and acceptance come from this run (measured); only the time of each step is modeled');
  return lines;
}
