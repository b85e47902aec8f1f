// Drafters: who proposes the gamma tokens of a speculative step (lesson 4). One interface, two
// implementations: a small draft model with its own KV cache (here) and prompt lookup
// (promptLookup.ts), which needs no model at all.

import type { KVCache } from '../kv/cache';
import { ContiguousKVCache } from '../kv/contiguous';
import type { LlamaModel } from '../model/llama';
import type { Rng } from '../generate/sampling';
import { draftTokens, modelForward, rollback, type DraftProposal, type SpecRow, type SpecSamplingParams } from './speculative';

/** Proposes draft tokens for a batch of rows (lesson 4). */
export interface Drafter {
  readonly name: string;
  /** Propose gammas[b] tokens for row b (0 = none: the row is idle or finished). */
  propose(rows: readonly SpecRow[], gammas: readonly number[], params: SpecSamplingParams, rngs: readonly Rng[]): Promise<DraftProposal[]>;
  /** The rows' outputs changed (tokens accepted): forget what no longer matches. */
  rollback(rows: readonly (SpecRow | null)[]): void;
  /** Tensor bytes the drafter holds (its KV cache). */
  bytes(): number;
  dispose(): void;
}

/**
 * Drafting with a small model of the same tokenizer (lesson 4). Owns the draft KV cache, made by
 * `makeCache` (default contiguous); the model itself belongs to the caller.
 */
export class ModelDrafter implements Drafter {
  readonly name: string;
  readonly cache: KVCache;

  constructor(
    readonly model: LlamaModel,
    batchSize: number,
    makeCache?: (model: LlamaModel, batchSize: number) => KVCache,
  ) {
    this.name = `draft model '${model.name}'`;
    this.cache = makeCache ? makeCache(model, batchSize) : new ContiguousKVCache(model.kvShape, batchSize);
  }

  propose(rows: readonly SpecRow[], gammas: readonly number[], params: SpecSamplingParams, rngs: readonly Rng[]): Promise<DraftProposal[]> {
    return draftTokens(modelForward(this.model, this.cache), rows, gammas, params, rngs);
  }

  rollback(rows: readonly (SpecRow | null)[]): void {
    rollback(
      this.cache,
      rows.map((r) => (r ? r.prompt.length + r.output.length : null)),
    );
  }

  bytes(): number {
    return this.cache.bytes();
  }

  dispose(): void {
    this.cache.dispose();
  }
}
