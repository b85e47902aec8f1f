// Generation: prompts in, tokens out, in two modes (lesson 2, "KV caching"):
//   naive  - every step feeds each sequence's whole prefix again (no cache: O(T^2) work per token);
//   cached - the prompt once (prefill), then one token per step against the KV cache (decode).
// Both go through the same model.forward and sampling code, so they must produce the same tokens.
// A batch of prompts of different lengths runs as one static batch (everyone steps together, a
// finished sequence just stops receiving tokens), like plain HF generate.

import type { KVCache, KVShape } from './kv/cache';
import { ContiguousKVCache, type ContiguousKVCacheOptions } from './kv/contiguous';
import { NoKVCache } from './kv/none';
import type { LlamaModel } from './model/llama';
import { IncrementalDecoder } from './detokenizer';
import {
  resolveSamplingParams,
  Rng,
  sampleToken,
  StopChecker,
  type FinishReason,
  type SamplingParams,
  type SamplingParamsInput,
  type StopStatus,
  type TokenLogprob,
} from './sampling';
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

/** Timings of one sequence, in the vocabulary of serving benchmarks (all times in ms). */
export interface GenerationMetrics {
  promptTokens: number;
  outputTokens: number;
  /** time to first token: call start -> first token sampled (prefill included) */
  ttftMs: number;
  /** time per output token after the first: (e2e - ttft) / (outputTokens - 1) */
  tpotMs: number;
  /** inter-token latencies: gaps between consecutive tokens */
  itlMs: number[];
  /** call start -> last token */
  e2eMs: number;
  /** decode speed: (outputTokens - 1) / (e2e - ttft) */
  decodeTokensPerSecond: number;
  /** peak tensor bytes held by the whole batch's KV cache */
  kvBytes: number;
}

/** One finished sequence. */
export interface GenerationOutput {
  index: number;
  promptTokenIds: number[];
  text: string;
  tokenIds: number[];
  /** log-probability of each generated token under the model's raw distribution */
  logprobs: number[];
  /** the top `params.logprobs` alternatives per token, when asked for */
  topLogprobs?: TokenLogprob[][];
  finishReason: FinishReason;
  /** the stop token id or stop string that ended it, if any */
  stopReason: number | string | null;
  seed: number;
  metrics: GenerationMetrics;
}

/** One streamed token. */
export interface StreamEvent {
  /** which prompt of the batch */
  index: number;
  token: number;
  /** text this token makes final (may be '' while a character or a possible stop string is pending) */
  text: string;
  logprob: number;
  topLogprobs?: TokenLogprob[];
  finished: boolean;
  finishReason: FinishReason | null;
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

/** A sequence's text as tokens arrive: stop conditions, incremental decoding, the finish. */
export interface TextProgress {
  stop: StopChecker;
  decoder: IncrementalDecoder | null;
  text: string;
  finish: FinishReason | null;
  stopReason: number | string | null;
}

/**
 * Feeds one generated token to a sequence's stop checker and detokenizer and records the text it
 * releases; `contextFull` ends the sequence with 'length' (the model has no position left). Shared by
 * generate() and speculativeGenerate().
 */
export function appendToken(s: TextProgress, token: number, contextFull: boolean): StopStatus {
  let status = s.stop.push(token, s.decoder?.push(token) ?? '');
  if (!status.finished && contextFull) {
    // release what the stop checker held back for a possible stop string
    status = { ...status, finished: true, finishReason: 'length', delta: status.delta + s.stop.text.slice(s.text.length + status.delta.length) };
  }
  s.text += status.delta;
  if (status.finished) {
    s.finish = status.finishReason;
    s.stopReason = status.stopReason;
    s.text = s.stop.text;
  }
  return status;
}

// ---- the loop

interface SequenceState {
  prompt: number[];
  out: number[];
  logprobs: number[];
  topLogprobs: TokenLogprob[][];
  rng: Rng;
  stop: StopChecker;
  decoder: IncrementalDecoder | null;
  text: string;
  finish: FinishReason | null;
  stopReason: number | string | null;
  times: number[];
}

/**
 * Streams tokens as they are sampled, for one prompt or a batch (lesson 2). Breaking out of the
 * loop stops generation and frees the cache. Returns the finished outputs when iterated to the end.
 */
export async function* generateStream(
  lm: LanguageModel,
  prompts: Prompt | readonly Prompt[],
  samplingParams: SamplingParamsInput = {},
  options: GenerateOptions = {},
): AsyncGenerator<StreamEvent, GenerationOutput[], undefined> {
  const params: SamplingParams = resolveSamplingParams(samplingParams);
  if (params.n !== 1) throw new Error(`generate: n must be 1 here (got ${params.n}); parallel sampling is the engine's job (LLM.generate)`);
  const mode = options.mode ?? 'cached';
  if (mode !== 'cached' && mode !== 'naive') throw new Error(`generate: mode must be 'cached' or 'naive', got '${String(mode)}'`);
  const { model, tokenizer } = lm;
  const promptIds = preparePrompts(lm, prompts);
  const eos = tokenizer?.eosTokenIds ?? model.config.eosTokenIds;
  const B = promptIds.length;
  const seqs: SequenceState[] = promptIds.map((prompt) => ({
    prompt,
    out: [],
    logprobs: [],
    topLogprobs: [],
    rng: new Rng(params.seed), // one stream per sequence: batched = alone, also when sampling
    stop: new StopChecker(params, eos),
    decoder: tokenizer ? new IncrementalDecoder(tokenizer) : null,
    text: '',
    finish: null,
    stopReason: null,
    times: [],
  }));

  const cache: KVCache =
    mode === 'naive'
      ? new NoKVCache(model.kvShape, B)
      : options.makeCache?.(model.kvShape, B) ?? new ContiguousKVCache(model.kvShape, B, options.cacheOptions);
  const t0 = performance.now();
  let kvBytes = 0;
  try {
    const V = model.config.vocabSize;
    while (seqs.some((s) => !s.finish)) {
      // naive: every running sequence feeds its whole prefix; cached: the prompt, then the last token
      const tokens = seqs.map((s) => {
        if (s.finish) return [];
        if (mode === 'naive') return [...s.prompt, ...s.out];
        return s.out.length === 0 ? s.prompt : [s.out[s.out.length - 1]];
      });
      const logitsTensor = model.forward(tokens, cache); // [B, 1, V]
      kvBytes = Math.max(kvBytes, cache.bytes());
      const logits = (await logitsTensor.data()) as Float32Array;
      logitsTensor.dispose();
      const now = performance.now() - t0;

      for (let b = 0; b < B; b++) {
        const s = seqs[b];
        if (s.finish) continue;
        const row = logits.subarray(b * V, (b + 1) * V);
        const picked = sampleToken(row, params, s.rng, { promptTokenIds: s.prompt, outputTokenIds: s.out });
        s.out.push(picked.token);
        s.logprobs.push(picked.logprob);
        if (picked.topLogprobs) s.topLogprobs.push(picked.topLogprobs);
        s.times.push(now);
        const status = appendToken(s, picked.token, s.prompt.length + s.out.length >= model.config.maxPositions);
        yield {
          index: b,
          token: picked.token,
          text: status.delta,
          logprob: picked.logprob,
          topLogprobs: picked.topLogprobs,
          finished: status.finished,
          finishReason: status.finishReason,
        };
      }
    }
  } finally {
    cache.dispose();
  }

  return seqs.map((s, index) => {
    const n = s.out.length;
    const e2e = s.times[n - 1];
    const ttft = s.times[0];
    return {
      index,
      promptTokenIds: s.prompt,
      text: s.text,
      tokenIds: s.out,
      logprobs: s.logprobs,
      topLogprobs: params.logprobs > 0 ? s.topLogprobs : undefined,
      finishReason: s.finish as FinishReason,
      stopReason: s.stopReason,
      seed: params.seed,
      metrics: {
        promptTokens: s.prompt.length,
        outputTokens: n,
        ttftMs: ttft,
        tpotMs: n > 1 ? (e2e - ttft) / (n - 1) : 0,
        itlMs: s.times.slice(1).map((t, i) => t - s.times[i]),
        e2eMs: e2e,
        decodeTokensPerSecond: n > 1 ? ((n - 1) * 1000) / (e2e - ttft) : 0,
        kvBytes,
      },
    };
  });
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
