// The KV cache interface: everything the model needs from a cache. Five implementations:
// contiguous.ts, none.ts (no cache: the naive path), quantized.ts, evicting.ts (per-layer
// budgets) and paged.ts (block tables; its batch is set per step). Bookkeeping is plain numbers;
// tensors only go in and out of update().
//
// Batching rule (one for every cache): a forward step gives sequence b `counts[b]` new tokens.
// The step has T = max(counts) slots per sequence; sequence b's tokens fill the LAST counts[b]
// of them (left padding), so "the last position" is slot T-1 for every sequence. Each key slot
// carries the position of the token it holds, or -1 when empty (padding, or a token rolled
// back); attention masks a key slot unless 0 <= keyPosition <= queryPosition.

import type * as tf from '@tensorflow/tfjs-core';

/** The sizes a cache needs from the model. */
export interface KVShape {
  numLayers: number;
  /** Hkv */
  numKvHeads: number;
  /** D */
  headDim: number;
}

/** One forward step as a cache lays it out: positions of the new tokens and of every key slot. */
export interface StepPlan {
  batchSize: number;
  /** new slots per sequence this step: max(counts) */
  T: number;
  /** key slots per sequence that update() returns (new ones included) */
  S: number;
  /** [B, T] position of each new token, -1 for padding */
  queryPositions: Int32Array;
  /** [B, S] position of the token in each key slot, -1 for an empty slot */
  keyPositions: Int32Array;
}

/**
 * What `update()` returns for one layer: the keys and values to attend over, k and v
 * [B, Hkv, S, D], and, from a cache whose layers keep different tokens (the evicting cache),
 * this layer's own key positions [B, S]. Without `keyPositions` the step plan's hold for every
 * layer; with them the model builds this layer's mask from them (and S may differ from the plan's).
 */
export interface LayerKV {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
  /** [B, S] position of the token in each of this layer's key slots, -1 for an empty slot */
  keyPositions?: Int32Array;
}

/** What `writableLayer()` returns: the layer's tensors, to be written in place at slots start..start+T-1. */
export interface WritableLayerKV {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
  start: number;
}

/**
 * A per-layer store of keys and values (lesson: "the KV cache"). The model drives a forward
 * step in this order:
 *   1. `beginStep(counts)` once: sequence b gets counts[b] new tokens (`counts.length` must be
 *      `batchSize`);
 *   2. `update(layer, k, v)` for every layer in order;
 *   3. if the step fails in between, `truncate(lengths before the step)`, which must also cancel
 *      the step.
 * The batch is fixed when the cache is made, except for a cache whose batch is set per step by
 * its caller before the forward (`PerStepBatchKVCache`: the paged cache). A cache may rewrite its
 * tensors in place between steps.
 */
export interface KVCache {
  readonly shape: KVShape;
  /** Sequences of each forward step. */
  readonly batchSize: number;
  /** Tokens held per sequence. */
  lengths(): number[];
  /** Start a step in which sequence b gets counts[b] new tokens (see the batching rule). */
  beginStep(counts: readonly number[]): StepPlan;
  /**
   * Store this step's keys and values of one layer, k and v [B, Hkv, T, D] (k already
   * rotated by RoPE), and return what to attend over (see LayerKV). The returned tensors belong
   * to the cache: do not dispose them, and use them only within the step.
   */
  update(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): LayerKV;
  /** Forget every token of sequence b past lengths[b] (speculative decoding's rollback). */
  truncate(lengths: readonly number[]): void;
  /** Bytes of tensor memory the cache holds now. */
  bytes(): number;
  dispose(): void;
  /**
   * Optional, for a cache that decides what to keep from attention (H2O eviction): pass it as
   * `ForwardOptions.onAttention` (lib/eval does) to receive each layer's probabilities [B, H, T, S].
   */
  observe?(layer: number, probs: tf.Tensor4D, keyPositions: Int32Array): void;
  /**
   * Optional, for a cache whose tensors can be written in place (the contiguous cache on wasm and
   * cpu): instead of `update(layer, k, v)`, the caller writes this step's keys and values itself
   * (the fused wasm decode step, lib/model/kernels/wasmDecode.ts). Returns the layer's k and v
   * [B, Hkv, S, D], grown to the step plan's S, and `start`, the first of the step's T slots, which
   * the caller must fill for every (sequence, kv head) row before it reads them; null when this
   * cache cannot hand them out now (the caller then uses update()). Called for every layer in order,
   * as update() is.
   */
  writableLayer?(layer: number): WritableLayerKV | null;
  /** Optional, for a packed cache: the bytes its formula says it should hold (tables compare them with bytes()). */
  theoreticalBytes?(): number;
  /**
   * Optional, for a cache that keeps fewer tokens than it was given (eviction, lesson 3): tokens
   * held per layer for its one sequence. Where a layer holds fewer than `lengths()[0]`, something
   * was evicted (lib/eval scores those positions apart).
   */
  held?(): number[];
}

/** One sequence of a per-step batch: where its keys live and how many of its tokens are stored. */
export interface StepSequence {
  /** ids of the blocks that hold its keys and values, in order */
  blockTable: readonly number[];
  /** tokens of this sequence whose keys and values are already in its blocks */
  numCachedTokens: number;
}

/**
 * A KV cache whose batch is chosen before each forward rather than when it is made (lesson 5,
 * "continuous batching": the paged cache, whose sequences the engine's scheduler picks every step
 * and whose blocks its block manager assigns). The caller calls `setBatch()` before a forward;
 * `batchSize` is then the number of sequences given, and the forwards that follow extend them
 * (speculative drafting runs several) until the next `setBatch()`. The model sees a plain KVCache.
 */
export interface PerStepBatchKVCache extends KVCache {
  /** Name the sequences of the next forward steps, in batch order. */
  setBatch(seqs: readonly StepSequence[]): void;
}

/** Additive mask value for a masked key slot (finite, so an all-masked pad row stays finite). */
export const MASKED = -1e9;

/** Check counts for a step: one non-negative integer per sequence, at least one token. */
export function checkCounts(counts: readonly number[], batchSize: number): number {
  if (counts.length !== batchSize) {
    throw new Error(`step has ${counts.length} sequences, cache was made for ${batchSize}`);
  }
  let T = 0;
  for (const c of counts) {
    if (!Number.isInteger(c) || c < 0) throw new Error(`token count ${c} is not a non-negative integer`);
    T = Math.max(T, c);
  }
  if (T === 0) throw new Error('step has no tokens');
  return T;
}

/** Check truncate() lengths: one per sequence, 0 <= lengths[b] <= current length. */
export function checkTruncate(lengths: readonly number[], current: readonly number[]): void {
  if (lengths.length !== current.length) {
    throw new Error(`truncate got ${lengths.length} lengths for ${current.length} sequences`);
  }
  lengths.forEach((n, b) => {
    if (!Number.isInteger(n) || n < 0 || n > current[b]) {
      throw new Error(`truncate: length ${n} for sequence ${b} must be an integer in [0, ${current[b]}]`);
    }
  });
}

/**
 * Positions of a step's new tokens under the batching rule: sequence b holding `lengths[b]`
 * tokens gets lengths[b], lengths[b]+1, ... in its last counts[b] slots; -1 before. [B, T]
 */
export function stepPositions(lengths: readonly number[], counts: readonly number[], T: number): Int32Array {
  const out = new Int32Array(counts.length * T).fill(-1);
  counts.forEach((n, b) => {
    for (let i = 0; i < n; i++) out[b * T + (T - n) + i] = lengths[b] + i;
  });
  return out;
}

/**
 * The additive attention mask of a step over its first `span` key slots, [B, T, span]: 0 where
 * query t of sequence b may see key slot s (0 <= keyPos <= queryPos), MASKED elsewhere. Null
 * when nothing is masked.
 */
export function attentionMask(plan: StepPlan, span = plan.S): Float32Array | null {
  const { batchSize: B, T, S, queryPositions: qp, keyPositions: kp } = plan;
  const mask = new Float32Array(B * T * span);
  let any = false;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const q = qp[b * T + t];
      const row = (b * T + t) * span;
      for (let s = 0; s < span; s++) {
        const k = kp[b * S + s];
        if (k < 0 || k > q) {
          mask[row + s] = MASKED;
          any = true;
        }
      }
    }
  }
  return any ? mask : null;
}

/** Key slots up to the last one that holds a token in any sequence: slots past it are empty. */
export function usedSpan(plan: StepPlan): number {
  const { batchSize: B, S, keyPositions: kp } = plan;
  let span = 0;
  for (let b = 0; b < B; b++) {
    for (let s = S - 1; s >= span; s--) {
      if (kp[b * S + s] >= 0) {
        span = s + 1;
        break;
      }
    }
  }
  return span;
}
