// A model together with its paged KV pool, as the model runner drives it (lesson 5). Two kinds:
//   - eager: the tfjs model (lib/model/llama.ts) over PagedKVCache: ~370 tfjs ops per step, each
//     forward call padded to its longest sequence, so the runner keeps prefill chunks apart;
//   - captured: the WebGPU step (lib/gpu/llama.ts) over its own pool: one command buffer per
//     step, ragged batches natively, so a step's prefill chunks and decodes run as ONE call.
// Both read the block manager's tables as they are; only here do they differ.

import { PagedKVCache, type PagedWriteMode } from '../kv/paged';
import type { SampledToken } from '../generate/sampling';
import { GpuLlama, type GpuStepResult } from '../gpu/llama';
import type { LlamaConfig } from '../model/config';
import type { LlamaModel } from '../model/llama';
import { modelForward, type BatchForward } from '../spec/speculative';

/** A sequence's place in the pool: its block table and the tokens already computed into it. */
export interface PagedSequence {
  blockTable: readonly number[];
  numCached: number;
}

// the captured batches alive, so a draft batch can find its target's model, tables and lengths
const capturedBatches = new WeakMap<BatchForward, { gpu: GpuLlama; seqs: readonly PagedSequence[]; lengths: number[] }>();

/** A model the engine can run: the eager tfjs model or the captured GPU model. */
export type EngineModel = LlamaModel | GpuLlama;

/** A model and its KV pool (see the file comment). */
export interface PagedModel {
  readonly name: string;
  readonly config: LlamaConfig;
  /** one forward call may mix sequences of any lengths at no padding cost */
  readonly ragged: boolean;
  /** A forward batch over these sequences (see BatchForward); valid until the next batch(). */
  batch(seqs: readonly PagedSequence[]): BatchForward;
  /**
   * (the captured step; the engine's overlapped steps) One step over these sequences, each feeding
   * `feed[b]` (at least one token) and getting one logits row, submitted now without waiting:
   * `read()` gives each row's greedy pick later. Meanwhile the next step may feed row b's pick as
   * -(b + 1). Absent where a step cannot be left on the device (eager tfjs).
   */
  submitGreedy?(seqs: readonly PagedSequence[], feed: readonly (readonly number[])[]): () => Promise<SampledToken[]>;
  /** Copy whole blocks src -> dst (copy-on-write). */
  copyBlocks(copies: readonly (readonly [number, number])[]): void;
  /** Bytes the KV pool holds. */
  bytes(): number;
  dispose(): void;
}

/** The pool's geometry. */
export interface PoolOptions {
  numBlocks: number;
  blockSize: number;
  cacheMode?: PagedWriteMode;
}

/** The engine's model with a pool of `pool` blocks: eager over PagedKVCache, or captured. */
export function pagedModel(model: EngineModel, pool: PoolOptions): PagedModel {
  return model instanceof GpuLlama ? new CapturedPagedModel(model, pool) : new EagerPagedModel(model, pool);
}

class EagerPagedModel implements PagedModel {
  readonly ragged = false;
  readonly cache: PagedKVCache;

  constructor(
    readonly model: LlamaModel,
    pool: PoolOptions,
  ) {
    this.cache = new PagedKVCache(model.kvShape, { numBlocks: pool.numBlocks, blockSize: pool.blockSize, mode: pool.cacheMode });
  }

  get name(): string {
    return this.model.name;
  }

  get config(): LlamaConfig {
    return this.model.config;
  }

  batch(seqs: readonly PagedSequence[]): BatchForward {
    this.cache.setBatch(seqs.map((s) => ({ blockTable: s.blockTable, numCachedTokens: s.numCached })));
    return modelForward(this.model, this.cache);
  }

  copyBlocks(copies: readonly (readonly [number, number])[]): void {
    this.cache.copyBlocks(copies as [number, number][]);
  }

  bytes(): number {
    return this.cache.bytes();
  }

  dispose(): void {
    this.cache.dispose();
  }
}

class CapturedPagedModel implements PagedModel {
  readonly ragged = true;

  constructor(
    readonly gpu: GpuLlama,
    pool: PoolOptions,
  ) {
    if (pool.blockSize !== gpu.blockSize) {
      throw new Error(`the engine's blockSize is ${pool.blockSize}, the captured model '${gpu.name}' was built with ${gpu.blockSize}: build it with the same blockSize`);
    }
    if (pool.numBlocks > gpu.numBlocks) {
      throw new Error(`the engine wants ${pool.numBlocks} KV blocks, the captured model '${gpu.name}' has ${gpu.numBlocks}: build it with numBlocks >= ${pool.numBlocks}`);
    }
  }

  get name(): string {
    return this.gpu.name;
  }

  get config(): LlamaConfig {
    return this.gpu.config;
  }

  batch(seqs: readonly PagedSequence[]): BatchForward {
    const gpu = this.gpu;
    const V = gpu.config.vocabSize;
    const lengths = seqs.map((s) => s.numCached);
    // one captured step over the rows with tokens to feed; `pick(res, r)` reads logits row r's result
    async function run<T>(feed: readonly (readonly number[])[], logits: readonly number[], read: 'ids' | 'logits', pick: (res: GpuStepResult, r: number) => T): Promise<T[][]> {
      const live = feed.map((_, b) => b).filter((b) => feed[b].length > 0);
      const step = gpu.submit(
        live.map((b) => ({ tokens: feed[b], start: lengths[b], blockTable: seqs[b].blockTable, logits: logits[b] })),
        read,
      );
      for (const b of live) lengths[b] += feed[b].length;
      const res = await step.read();
      const out: T[][] = feed.map(() => []);
      let r = 0;
      for (const b of live) for (let i = 0; i < logits[b]; i++, r++) out[b].push(pick(res, r));
      return out;
    }
    const greedyPick = (res: GpuStepResult, r: number): SampledToken => ({ token: res.ids[r], logprob: res.logprobs[r] });
    const fwd: BatchForward = {
      vocabSize: V,
      lengths: () => [...lengths],
      forward: (feed, logits) => run(feed, logits, 'logits', (res, r) => res.logits!.subarray(r * V, (r + 1) * V)),
      forwardGreedy: (feed, logits) => run(feed, logits, 'ids', greedyPick),
      async greedyChain(feed, steps) {
        const live = feed.map((_, b) => b).filter((b) => feed[b].length > 0);
        const res = await gpu.greedyChain(
          live.map((b) => ({ tokens: feed[b], start: lengths[b], blockTable: seqs[b].blockTable, logits: 1 })),
          steps,
        );
        const out: number[][] = feed.map(() => []);
        live.forEach((b, i) => {
          lengths[b] += feed[b].length + steps - 1; // the last token is not fed
          out[b] = res.ids[i];
        });
        return out;
      },
      async greedyChainThenVerify(feed, steps, target, verifyFeed, counts) {
        const t = capturedBatches.get(target);
        if (!t || t.gpu === gpu || t.gpu.config.vocabSize !== V) return null;
        const drafting = feed.map((_, b) => b).filter((b) => feed[b].length > 0);
        const verifying = verifyFeed.map((_, b) => b).filter((b) => verifyFeed[b].length > 0);
        const drafts = (b: number) => (feed[b].length > 0 ? steps : 0);
        // the verify step's tokens: row b's pending tokens, then placeholders its drafts overwrite
        const draftedAt = new Map<number, number>();
        let at = 0;
        const verify = verifying.map((b) => {
          if (counts[b] !== drafts(b) + 1) throw new Error(`greedyChainThenVerify: row ${b} asks ${counts[b]} picks for ${drafts(b)} drafts`);
          draftedAt.set(b, at + verifyFeed[b].length);
          at += verifyFeed[b].length + drafts(b);
          return { tokens: [...verifyFeed[b], ...new Array<number>(drafts(b)).fill(0)], start: t.lengths[b], blockTable: t.seqs[b].blockTable, logits: counts[b] };
        });
        const res = await gpu.draftThenVerify(
          drafting.map((b) => ({ tokens: feed[b], start: lengths[b], blockTable: seqs[b].blockTable, logits: 1 })),
          steps,
          t.gpu,
          verify,
          drafting.map((b) => draftedAt.get(b)!),
        );
        const drafted: number[][] = feed.map(() => []);
        drafting.forEach((b, i) => {
          lengths[b] += feed[b].length + steps - 1; // the last draft is not fed
          drafted[b] = res.drafted[i];
        });
        const picks: SampledToken[][] = verifyFeed.map(() => []);
        let r = 0;
        verify.forEach((v, i) => {
          const b = verifying[i];
          t.lengths[b] += v.tokens.length;
          for (let j = 0; j < counts[b]; j++, r++) picks[b].push({ token: res.target.ids[r], logprob: res.target.logprobs[r] });
        });
        return { drafted, picks };
      },
    };
    capturedBatches.set(fwd, { gpu, seqs, lengths });
    return fwd;
  }

  submitGreedy(seqs: readonly PagedSequence[], feed: readonly (readonly number[])[]): () => Promise<SampledToken[]> {
    const step = this.gpu.submit(
      seqs.map((s, b) => {
        if (feed[b].length === 0) throw new Error(`submitGreedy: row ${b} feeds no tokens`);
        return { tokens: feed[b], start: s.numCached, blockTable: s.blockTable, logits: 1 };
      }),
      'ids',
    );
    return async () => {
      const res = await step.read();
      return seqs.map((_, b) => ({ token: res.ids[b], logprob: res.logprobs[b] }));
    };
  }

  copyBlocks(copies: readonly (readonly [number, number])[]): void {
    this.gpu.copyBlocks(copies);
  }

  bytes(): number {
    return this.gpu.stats.kvPoolBytes;
  }

  dispose(): void {
    // the captured model owns its pool; the caller owns the model
  }
}
