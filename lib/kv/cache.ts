// The KV cache interface: what the model needs from any cache (contiguous, none, and later
// quantized and paged). Bookkeeping is plain numbers; tensors only go in and out of update().
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
 * A per-layer store of keys and values (lesson: "the KV cache"). Per forward step the model
 * calls `beginStep(counts)` once, then `update(layer, k, v)` for every layer in order; if the
 * step fails in between, it calls `truncate(lengths before the step)`, which must also cancel
 * the step. A cache may rewrite its tensors in place between steps.
 */
export interface KVCache {
  readonly shape: KVShape;
  readonly batchSize: number;
  /** Tokens held per sequence. */
  lengths(): number[];
  /** Start a step in which sequence b gets counts[b] new tokens (see the batching rule). */
  beginStep(counts: readonly number[]): StepPlan;
  /**
   * Store this step's keys and values of one layer, k and v [B, Hkv, T, D] (k already
   * rotated by RoPE), and return what to attend over: k and v [B, Hkv, S, D]. The returned
   * tensors belong to the cache: do not dispose them, and use them only within the step.
   */
  update(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): { k: tf.Tensor4D; v: tf.Tensor4D };
  /** Forget every token of sequence b past lengths[b] (speculative decoding's rollback). */
  truncate(lengths: readonly number[]): void;
  /** Bytes of tensor memory the cache holds now. */
  bytes(): number;
  dispose(): void;
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
