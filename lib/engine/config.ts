// The engine's one config: sizes of the KV pool and the scheduler's per-step budget, checked and
// derived in one place (lesson 5, "continuous batching").

import type { PagedWriteMode } from '../kv/paged';
import type { AdaptiveGammaOptions } from '../spec/adaptive';
import type { PromptLookupOptions } from '../spec/promptLookup';
import { checkGamma } from '../spec/speculative';
import type { EngineModel } from './pagedModel';

/** Which scheduler: iteration-level (continuous) batching, or the static-batching baseline. */
export type SchedulerPolicy = 'continuous' | 'static';

/** Engine settings (vLLM's names, camelCased). */
export interface EngineConfig {
  /** tokens per KV block (vLLM's block_size; default 16) */
  blockSize: number;
  /** blocks in the KV pool; the pool holds numBlocks * blockSize tokens of every layer */
  numBlocks: number;
  /** most sequences in one step (default 16) */
  maxNumSeqs: number;
  /** most tokens computed in one step, prefill chunks and decodes together (default 512) */
  maxNumBatchedTokens: number;
  /** longest sequence (prompt + output); default and upper bound: the model's context */
  maxModelLen: number;
  /** split long prompts over several steps (default true; continuous policy only) */
  enableChunkedPrefill: boolean;
  /** reuse KV blocks of identical prompt prefixes (default true) */
  enablePrefixCaching: boolean;
  /** 'continuous' (default) or 'static' (fixed batches, each waits for its longest member) */
  policy: SchedulerPolicy;
  /**
   * share of the pool's blocks a continuous admission leaves free for the running sequences to
   * grow into (vLLM's watermark, default 0.01): admitting into the last free blocks means
   * preempting someone a few steps later, and recomputing them
   */
  watermark: number;
  /** how the paged cache writes (default 'auto': in place on wasm/cpu) */
  cacheMode: PagedWriteMode;
  /** keep a snapshot of every block table in each step's metrics (for the block-table view; default false) */
  recordBlockTables: boolean;
  /**
   * overlap the CPU's work with the GPU's (default true): on the captured GPU step, while every
   * sequence is greedy and nothing speculates, step k+1 is scheduled and submitted before step
   * k's picks are read (LLMEngine.step); elsewhere it changes nothing
   */
  overlapSteps: boolean;
  /** speculative decoding of decode steps (default null: off) */
  speculative: SpeculativeEngineConfig | null;
}

/**
 * Speculative decoding in the engine (lesson 4, "speculative decoding", batched): every decode
 * step drafts gamma tokens per running sequence and verifies them in one target pass. Prefill
 * steps are unchanged. A model directory as `draft` is loaded by LLM.load.
 */
export interface SpeculativeEngineConfig {
  /** a draft model with the target's vocabulary, or 'prompt-lookup' (no model) */
  draft: EngineModel | 'prompt-lookup';
  /** drafts per sequence per step (default 4), or 'adaptive' (one AdaptiveGamma per sequence) */
  gamma: number | 'adaptive';
  adaptive?: AdaptiveGammaOptions;
  promptLookup?: PromptLookupOptions;
  /** keep every StepTrace in engine.specStats.traces (default false: counters only) */
  trace: boolean;
}

/** What a caller may pass as `speculative` (gamma and trace have defaults). */
export type SpeculativeEngineConfigInput = Omit<SpeculativeEngineConfig, 'gamma' | 'trace'> & Partial<Pick<SpeculativeEngineConfig, 'gamma' | 'trace'>>;

/** What a caller may pass. */
export type EngineConfigInput = Partial<Omit<EngineConfig, 'speculative'>> & { speculative?: SpeculativeEngineConfigInput | null };

/** Named configurations used by the lessons and the benchmark. */
export const ENGINE_PRESETS = {
  /** small enough to watch preemption happen */
  tiny: { blockSize: 4, numBlocks: 32, maxNumSeqs: 4, maxNumBatchedTokens: 64 },
  default: {},
} satisfies Record<string, EngineConfigInput>;

const KNOWN: readonly (keyof EngineConfig)[] = [
  'blockSize',
  'numBlocks',
  'maxNumSeqs',
  'maxNumBatchedTokens',
  'maxModelLen',
  'enableChunkedPrefill',
  'enablePrefixCaching',
  'policy',
  'watermark',
  'cacheMode',
  'recordBlockTables',
  'overlapSteps',
  'speculative',
];

/**
 * Fill defaults and check (lesson 5). `modelContext` is the model's max_position_embeddings.
 * Default pool: room for maxNumSeqs sequences of 256 tokens (at least one of maxModelLen).
 */
export function resolveEngineConfig(input: EngineConfigInput, modelContext: number): EngineConfig {
  for (const key of Object.keys(input)) {
    if (!KNOWN.includes(key as keyof EngineConfig)) throw new Error(`unknown engine option '${key}'; known: ${KNOWN.join(', ')}`);
  }
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) as EngineConfigInput;
  const blockSize = given.blockSize ?? 16;
  const maxNumSeqs = given.maxNumSeqs ?? 16;
  const maxModelLen = given.maxModelLen ?? modelContext;
  const c: EngineConfig = {
    blockSize,
    maxNumSeqs,
    maxModelLen,
    numBlocks: given.numBlocks ?? Math.max(Math.ceil((maxNumSeqs * 256) / blockSize), Math.ceil(maxModelLen / blockSize)),
    maxNumBatchedTokens: given.maxNumBatchedTokens ?? 512,
    enableChunkedPrefill: given.enableChunkedPrefill ?? true,
    enablePrefixCaching: given.enablePrefixCaching ?? true,
    policy: given.policy ?? 'continuous',
    watermark: given.watermark ?? 0.01,
    cacheMode: given.cacheMode ?? 'auto',
    recordBlockTables: given.recordBlockTables ?? false,
    overlapSteps: given.overlapSteps ?? true,
    speculative: resolveSpeculative(given.speculative ?? null),
  };
  const posInt = (k: keyof EngineConfig) => {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${k} must be a positive integer, got ${String(v)}`);
  };
  (['blockSize', 'numBlocks', 'maxNumSeqs', 'maxNumBatchedTokens', 'maxModelLen'] as const).forEach(posInt);
  if (c.maxModelLen > modelContext) throw new Error(`maxModelLen ${c.maxModelLen} exceeds the model's context (${modelContext})`);
  if (c.policy !== 'continuous' && c.policy !== 'static') throw new Error(`policy must be 'continuous' or 'static', got '${String(c.policy)}'`);
  if (typeof c.watermark !== 'number' || !(c.watermark >= 0 && c.watermark < 1)) throw new Error(`watermark must be a number in [0, 1), got ${String(c.watermark)}`);
  if (!['auto', 'inplace', 'scatter'].includes(c.cacheMode)) throw new Error(`cacheMode must be 'auto', 'inplace' or 'scatter', got '${String(c.cacheMode)}'`);
  for (const k of ['enableChunkedPrefill', 'enablePrefixCaching', 'recordBlockTables', 'overlapSteps'] as const) {
    if (typeof c[k] !== 'boolean') throw new Error(`${k} must be a boolean, got ${String(c[k])}`);
  }
  if (!c.enableChunkedPrefill && c.maxNumBatchedTokens < c.maxModelLen) {
    throw new Error(`without chunked prefill, maxNumBatchedTokens (${c.maxNumBatchedTokens}) must be >= maxModelLen (${c.maxModelLen}) so every prompt fits in one step`);
  }
  return c;
}

// the speculative option: a draft model or 'prompt-lookup', gamma >= 1 or 'adaptive'
function resolveSpeculative(input: SpeculativeEngineConfigInput | null): SpeculativeEngineConfig | null {
  if (input === null) return null;
  if (typeof input !== 'object') throw new Error(`speculative must be an object { draft, gamma }, got ${String(input)}`);
  const { draft } = input;
  if (typeof draft === 'string' && draft !== 'prompt-lookup') {
    throw new Error(`speculative.draft '${draft}': the engine takes a loaded draft model or 'prompt-lookup' (LLM.load loads a model directory)`);
  }
  if (draft !== 'prompt-lookup' && (typeof draft !== 'object' || draft === null || !('config' in draft) || typeof draft.dispose !== 'function')) {
    throw new Error("speculative.draft must be a loaded model (LlamaModel or GpuLlama) or 'prompt-lookup'");
  }
  const gamma = input.gamma ?? 4;
  if (gamma !== 'adaptive') checkGamma(gamma, 'speculative.gamma');
  return { ...input, draft, gamma, trace: input.trace ?? false };
}
