// Generation: prompts in, tokens out, in two modes (lesson 2, "KV caching"):
//   naive  - every step feeds each sequence's whole prefix again (no cache: O(T^2) work per token);
//   cached - the prompt once (prefill), then one token per step against the KV cache (decode).
// Both go through the same model.forward and sampling code, so they must produce the same tokens.
// A batch of prompts of different lengths runs as one static batch (everyone steps together, a
// finished sequence just stops receiving tokens), like plain HF generate. Each sampled token goes to
// the sequence's OutputRecorder (lib/generate/output.ts): stop checks, text, logprobs, timings, the event.

import type { KVCache, KVShape } from '../kv/cache';
import { ContiguousKVCache, type ContiguousKVCacheOptions } from '../kv/contiguous';
import { NoKVCache } from '../kv/none';
import type { LlamaModel } from '../model/llama';
import { OutputRecorder, type RecordedOutput, type TokenEvent, type TokenLatencies } from './output';
import { resolveSamplingParams, Rng, sampleToken, type FinishReason, type SamplingParams, type SamplingParamsInput } from './sampling';
import type { Tokenizer } from './tokenizer';

/** A model and (optionally) its tokenizer; without a tokenizer, prompts must be token ids. */
export interface LanguageModel {
  model: LlamaModel;
  tokenizer?: Tokenizer;
}

/** A prompt: text (needs a tokenizer) or token ids. */
export type Prompt = string | readonly number[];

export type GenerateMode = 'cached' | 'naive';

export interface GenerateOptions {
  /** 'cached' (default) or 'naive' (recompute the whole prefix every step) */
  mode?: GenerateMode;
  /** options of the contiguous cache (cached mode) */
  cacheOptions?: ContiguousKVCacheOptions;
  /** use another cache (quantized, paged, ...) in cached mode */
  makeCache?: (shape: KVShape, batchSize: number) => KVCache;
}

/** Timings of one sequence, in the vocabulary of serving benchmarks (all times in ms from the call's start). */
export interface GenerationMetrics extends TokenLatencies {
  promptTokens: number;
  outputTokens: number;
  /** peak tensor bytes held by the whole batch's KV cache */
  kvBytes: number;
}

/** One finished sequence. */
export interface GenerationOutput extends RecordedOutput {
  index: number;
  promptTokenIds: number[];
  finishReason: FinishReason;
  seed: number;
  metrics: GenerationMetrics;
}

// ---- inputs

function isIdList(x: unknown): x is readonly number[] {
  return Array.isArray(x) && x.length > 0 && x.every((v) => typeof v === 'number');
}

/** Tokenizes and checks prompts: non-empty, valid ids, and room for at least one new token. */
export function preparePrompts(lm: LanguageModel, prompts: Prompt | readonly Prompt[]): number[][] {
  const list: readonly Prompt[] = typeof prompts === 'string' || isIdList(prompts) ? [prompts as Prompt] : (prompts as readonly Prompt[]);
  if (!Array.isArray(list) || list.length === 0) throw new Error('generate: give at least one prompt');
  const { vocabSize, maxPositions } = lm.model.config;
  return list.map((p, i) => {
    let ids: number[];
    if (typeof p === 'string') {
      if (!lm.tokenizer) throw new Error(`prompt ${i} is text but this model has no tokenizer: pass token ids`);
      ids = lm.tokenizer.encode(p);
    } else if (Array.isArray(p)) {
      ids = [...p];
    } else {
      throw new Error(`prompt ${i} must be a string or an array of token ids, got ${typeof p}`);
    }
    if (ids.length === 0) throw new Error(`prompt ${i} is empty: give at least one token`);
    const bad = ids.find((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize);
    if (bad !== undefined) throw new Error(`prompt ${i}: token id ${bad} is not an integer in [0, ${vocabSize})`);
    if (ids.length >= maxPositions) {
      throw new Error(`prompt ${i} has ${ids.length} tokens, but the model's context is ${maxPositions}: at most ${maxPositions - 1} leave room to generate`);
    }
    return ids;
  });
}

// ---- the loop

/**
 * Streams tokens as they are sampled, for one prompt or a batch (lesson 2). Breaking out of the
 * loop stops generation and frees the cache. Returns the finished outputs when iterated to the end.
 */
export async function* generateStream(
  lm: LanguageModel,
  prompts: Prompt | readonly Prompt[],
  samplingParams: SamplingParamsInput = {},
  options: GenerateOptions = {},
): AsyncGenerator<TokenEvent, GenerationOutput[], undefined> {
  const params: SamplingParams = resolveSamplingParams(samplingParams);
  if (params.n !== 1) throw new Error(`generate: n must be 1 here (got ${params.n}); parallel sampling is the engine's job (LLM.generate)`);
  const mode = options.mode ?? 'cached';
  if (mode !== 'cached' && mode !== 'naive') throw new Error(`generate: mode must be 'cached' or 'naive', got '${String(mode)}'`);
  const { model, tokenizer } = lm;
  const promptIds = preparePrompts(lm, prompts);
  const eos = tokenizer?.eosTokenIds ?? model.config.eosTokenIds;
  const B = promptIds.length;
  const seqs = promptIds.map((prompt, index) => ({
    output: new OutputRecorder({ promptTokenIds: prompt, params, eosTokenIds: eos, tokenizer, maxLength: model.config.maxPositions, index }),
    rng: new Rng(params.seed), // one stream per sequence: batched = alone, also when sampling
  }));

  const cache: KVCache =
    mode === 'naive'
      ? new NoKVCache(model.kvShape, B)
      : options.makeCache?.(model.kvShape, B) ?? new ContiguousKVCache(model.kvShape, B, options.cacheOptions);
  const t0 = performance.now();
  let kvBytes = 0;
  try {
    const V = model.config.vocabSize;
    while (seqs.some((s) => !s.output.finished)) {
      // naive: every running sequence feeds its whole prefix; cached: the prompt, then the last token
      const tokens = seqs.map(({ output: o }) => {
        if (o.finished) return [];
        if (mode === 'naive') return [...o.tokenIds];
        return o.numOutputTokens === 0 ? o.tokenIds : [o.tokenIds[o.tokenIds.length - 1]];
      });
      const logitsTensor = model.forward(tokens, cache); // [B, 1, V]
      kvBytes = Math.max(kvBytes, cache.bytes());
      const logits = (await logitsTensor.data()) as Float32Array;
      logitsTensor.dispose();
      const now = performance.now() - t0;

      for (let b = 0; b < B; b++) {
        const { output, rng } = seqs[b];
        if (output.finished) continue;
        const row = logits.subarray(b * V, (b + 1) * V);
        const history = { promptTokenIds: promptIds[b], outputTokenIds: output.outputTokenIds };
        yield output.record(sampleToken(row, params, rng, history), now);
      }
    }
  } finally {
    cache.dispose();
  }

  return seqs.map(({ output }, index) => generationOutput(output, index, params.seed, kvBytes));
}

/**
 * A finished sequence's output from its recorder (token times in ms from the call's start);
 * shared by generate() and speculativeGenerate().
 */
export function generationOutput(output: OutputRecorder, index: number, seed: number, kvBytes: number): GenerationOutput {
  return {
    index,
    promptTokenIds: output.tokenIds.slice(0, output.numPromptTokens),
    ...output.result(),
    finishReason: output.finishReason as FinishReason,
    seed,
    metrics: { promptTokens: output.numPromptTokens, outputTokens: output.numOutputTokens, ...output.latencies(0), kvBytes },
  };
}

/** Generates to completion for one prompt or a batch (lesson 2); see generateStream. */
export async function generate(
  lm: LanguageModel,
  prompts: Prompt | readonly Prompt[],
  samplingParams: SamplingParamsInput = {},
  options: GenerateOptions = {},
): Promise<GenerationOutput[]> {
  const stream = generateStream(lm, prompts, samplingParams, options);
  for (;;) {
    const r = await stream.next();
    if (r.done) return r.value;
  }
}
