// The model runner (lesson 5, "continuous batching"): the one place where the scheduler's
// numbers become tensors. It owns the paged KV cache, applies copy-on-write block copies, lays
// out each step's inputs, runs the model and reads back the logits rows to sample from.
//
// A step's sequences run as forward calls of similar length, since the model pads every
// sequence of a call to the longest (left padding): all decodes (1 token each) in one call, and
// each prefill chunk in its own call (no padding wasted on mixed lengths).

import { PagedKVCache, type PagedWriteMode } from '../kv/paged';
import type { LlamaModel } from '../model/llama';
import type { ScheduledSequence } from './scheduler';
import type { Sequence } from './sequence';

/** Options of ModelRunner. */
export interface ModelRunnerOptions {
  numBlocks: number;
  blockSize: number;
  cacheMode?: PagedWriteMode;
}

/** One forward call's inputs. */
export interface PreparedCall {
  entries: ScheduledSequence[];
  /** new tokens per sequence (ragged) */
  tokens: number[][];
}

/**
 * Runs scheduled sequences through the model over a paged KV cache (lesson 5; the cache is
 * lesson 3's PagedAttention). Owns tensors: call dispose().
 */
export class ModelRunner {
  readonly cache: PagedKVCache;
  /** forward calls made so far */
  numForwardCalls = 0;

  constructor(
    readonly model: LlamaModel,
    options: ModelRunnerOptions,
  ) {
    this.cache = new PagedKVCache(model.kvShape, { numBlocks: options.numBlocks, blockSize: options.blockSize, mode: options.cacheMode });
  }

  /** Group a step's sequences into forward calls: decodes together, each prefill chunk alone. */
  prepare(batch: readonly ScheduledSequence[]): PreparedCall[] {
    const calls: PreparedCall[] = [];
    const decodes = batch.filter((e) => e.numNewTokens === 1);
    if (decodes.length > 0) calls.push({ entries: decodes, tokens: decodes.map((e) => this.newTokens(e)) });
    for (const e of batch) if (e.numNewTokens > 1) calls.push({ entries: [e], tokens: [this.newTokens(e)] });
    return calls;
  }

  /**
   * Run one step: copy blocks (copy-on-write), then every forward call. Returns the logits row
   * [V] of each sequence whose step ends at its last token (it samples next).
   */
  async run(batch: readonly ScheduledSequence[], copies: readonly [number, number][]): Promise<Map<Sequence, Float32Array>> {
    this.cache.copyBlocks(copies);
    const V = this.model.config.vocabSize;
    const out = new Map<Sequence, Float32Array>();
    for (const call of this.prepare(batch)) {
      this.cache.setBatch(call.entries.map((e) => ({ blockTable: e.seq.blockTable, numCachedTokens: e.seq.numComputedTokens })));
      const logits = this.model.forward(call.tokens, this.cache, { logits: 'last' }); // [B, 1, V]
      this.numForwardCalls++;
      const data = (await logits.data()) as Float32Array;
      logits.dispose();
      call.entries.forEach((e, b) => {
        if (e.seq.numComputedTokens + e.numNewTokens === e.seq.numTokens) out.set(e.seq, data.subarray(b * V, (b + 1) * V));
      });
    }
    return out;
  }

  /** Bytes of the KV pool. */
  kvBytes(): number {
    return this.cache.bytes();
  }

  dispose(): void {
    this.cache.dispose();
  }

  private newTokens(e: ScheduledSequence): number[] {
    const from = e.seq.numComputedTokens;
    return e.seq.tokenIds.slice(from, from + e.numNewTokens);
  }
}
