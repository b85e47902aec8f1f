// A KV cache that keeps at most `budgets[layer]` tokens per layer and evicts the rest (lesson 3,
// "KV-cache optimizations"). What it keeps, per layer:
//   - attention sinks: the first `sinks` positions, never evicted (StreamingLLM)
//   - a recent window: the newest `recent` tokens (StreamingLLM)
//   - heavy hitters: the tokens with the largest accumulated attention (H2O), with policy 'h2o';
//     with policy 'streaming' the remaining room goes to the next most recent tokens instead.
// Heavy-hitter scores come from the model's attention observer: pass `cache.observe` as
// ForwardOptions.onAttention (the quality evaluator does). Scores are summed over heads and
// queries (one token set per layer, shared by its heads, since a layer's mask is one [B, T, S]).
//
// Eviction runs in update(), before a layer stores the step's T new tokens: the layer keeps
// budget - T old tokens, so it never holds or attends over more than its budget. The layers keep
// different tokens, so update() returns the layer's own key positions (LayerKV.keyPositions: the
// model masks each layer with them). One sequence per cache (B = 1).

import * as tf from '@tensorflow/tfjs-core';

import { checkCounts, checkTruncate, stepPositions, type KVCache, type KVShape, type LayerKV, type StepPlan } from './cache';

export type EvictionPolicy = 'streaming' | 'h2o';

/** Configuration of an EvictingKVCache (lesson 3). */
export interface EvictingKVCacheConfig {
  /** tokens kept per layer (see lib/kv/budget.ts for uniform and entropy-based allocations) */
  budgets: number[];
  /** first positions never evicted (default 4) */
  sinks: number;
  /** newest tokens never evicted (default 16) */
  recent: number;
  policy: EvictionPolicy;
}

export type EvictingKVCacheInput = Partial<EvictingKVCacheConfig> & { budgets: number[] };

/** Check an eviction configuration (lesson 3): one budget per layer, each above sinks + recent. */
export function resolveEvictingConfig(input: EvictingKVCacheInput, numLayers: number): EvictingKVCacheConfig {
  const sinks = input.sinks ?? 4;
  const recent = input.recent ?? 16;
  const policy = input.policy ?? 'h2o';
  if (policy !== 'streaming' && policy !== 'h2o') throw new Error(`eviction policy must be 'streaming' or 'h2o', got '${String(policy)}'`);
  if (!Number.isInteger(sinks) || sinks < 0) throw new Error(`sinks must be a non-negative integer, got ${sinks}`);
  if (!Number.isInteger(recent) || recent < 0) throw new Error(`recent must be a non-negative integer, got ${recent}`);
  if (input.budgets.length !== numLayers) throw new Error(`${input.budgets.length} budgets for ${numLayers} layers`);
  input.budgets.forEach((b, l) => {
    if (!Number.isInteger(b) || b <= sinks + recent) {
      throw new Error(`layer ${l}: budget ${b} must be an integer above sinks + recent = ${sinks} + ${recent} (room for new tokens)`);
    }
  });
  return { budgets: [...input.budgets], sinks, recent, policy };
}

interface LayerStore {
  k: tf.Tensor4D | null;
  v: tf.Tensor4D | null;
  /** position of each slot */
  pos: number[];
  /** accumulated attention of each slot (H2O) */
  score: number[];
}

/**
 * A per-layer budgeted KV cache with sink + recent + heavy-hitter eviction (lesson 3,
 * "KV-cache optimizations"). Batch size 1.
 */
export class EvictingKVCache implements KVCache {
  readonly config: EvictingKVCacheConfig;
  readonly batchSize = 1;
  private readonly layers: LayerStore[];
  private len = 0;
  private T = 0;
  /** positions evicted so far per layer (for tests and tables) */
  readonly evicted: number[][];

  constructor(
    readonly shape: KVShape,
    batchSize: number,
    config: EvictingKVCacheInput,
  ) {
    if (batchSize !== 1) throw new Error(`EvictingKVCache holds one sequence, got batchSize ${batchSize}`);
    this.config = resolveEvictingConfig(config, shape.numLayers);
    this.layers = Array.from({ length: shape.numLayers }, () => ({ k: null, v: null, pos: [], score: [] }));
    this.evicted = Array.from({ length: shape.numLayers }, () => []);
  }

  lengths(): number[] {
    return [this.len];
  }

  beginStep(counts: readonly number[]): StepPlan {
    const T = checkCounts(counts, 1);
    const { sinks, recent } = this.config;
    const room = Math.min(...this.config.budgets) - sinks - recent;
    if (T > room)
      throw new Error(
        `a step of ${T} tokens does not fit the smallest layer budget (${room} tokens above sinks + recent): feed smaller chunks`,
      );
    const positions = stepPositions([this.len], counts, T);
    this.len += T;
    this.T = T;
    // every layer returns its own key positions; this plan only covers the new tokens
    return { batchSize: 1, T, S: T, queryPositions: positions, keyPositions: positions };
  }

  update(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): LayerKV {
    const { numKvHeads: Hkv, headDim: D } = this.shape;
    const T = this.T;
    if (k.shape.join() !== [1, Hkv, T, D].join() || v.shape.join() !== [1, Hkv, T, D].join()) {
      throw new Error(`KV cache layer ${layer}: expected k, v of shape [1,${Hkv},${T},${D}], got [${k.shape}] and [${v.shape}]`);
    }
    const L = this.layers[layer];
    this.evict(layer, this.config.budgets[layer] - T);
    for (let i = 0; i < T; i++) {
      L.pos.push(this.len - T + i);
      L.score.push(0);
    }
    for (const key of ['k', 'v'] as const) {
      const x = key === 'k' ? k : v;
      const old = L[key];
      L[key] = tf.keep(old ? tf.concat([old, x], 2) : x.clone()) as tf.Tensor4D; // [1, Hkv, S, D]
      old?.dispose();
    }
    return { k: L.k!, v: L.v!, keyPositions: Int32Array.from(L.pos) };
  }

  /** Attention observer: accumulate each slot's attention (sum over heads and queries). probs [1, H, T, S] */
  observe(layer: number, probs: tf.Tensor4D, keyPositions: Int32Array): void {
    const L = this.layers[layer];
    const [, H, T, S] = probs.shape;
    if (S !== L.pos.length || keyPositions[0] !== L.pos[0])
      throw new Error(`observe: layer ${layer} holds ${L.pos.length} slots, probabilities cover ${S}`);
    const p = probs.dataSync();
    for (let r = 0; r < H * T; r++) for (let s = 0; s < S; s++) L.score[s] += p[r * S + s];
  }

  /** Tokens held per layer. */
  held(): number[] {
    return this.layers.map((L) => L.pos.length);
  }

  /** Positions held by a layer. */
  positions(layer: number): number[] {
    return [...this.layers[layer].pos];
  }

  truncate(lengths: readonly number[]): void {
    checkTruncate(lengths, [this.len]);
    this.len = lengths[0];
    this.layers.forEach((L) => {
      const keep = L.pos.map((p, i) => (p < this.len ? i : -1)).filter((i) => i >= 0);
      this.gather(L, keep);
    });
  }

  bytes(): number {
    let n = 0;
    for (const L of this.layers) n += ((L.k?.size ?? 0) + (L.v?.size ?? 0)) * 4;
    return n;
  }

  dispose(): void {
    for (const L of this.layers) {
      L.k?.dispose();
      L.v?.dispose();
      L.k = L.v = null;
      L.pos = [];
      L.score = [];
    }
    this.len = 0;
  }

  // keep at most `keep` slots of a layer (keptSlots), the rest recorded as evicted
  private evict(layer: number, keep: number): void {
    const L = this.layers[layer];
    if (L.pos.length <= keep) return;
    const kept = keptSlots(L.pos, L.score, keep, this.config);
    const held = new Set(kept);
    L.pos.forEach((p, i) => held.has(i) || this.evicted[layer].push(p));
    this.gather(L, kept);
  }

  private gather(L: LayerStore, kept: number[]): void {
    if (kept.length === L.pos.length) return;
    L.pos = kept.map((i) => L.pos[i]);
    L.score = kept.map((i) => L.score[i]);
    for (const key of ['k', 'v'] as const) {
      const old = L[key];
      if (!old) continue;
      L[key] = kept.length ? (tf.keep(tf.tidy(() => tf.gather(old, tf.tensor1d(kept, 'int32'), 2))) as tf.Tensor4D) : null; // [1, Hkv, kept, D]
      old.dispose();
    }
  }
}

/**
 * The slots a layer keeps when it holds more than `keep` (lesson 3): attention sinks (positions
 * below `sinks`), the newest `recent`, then by accumulated attention score (h2o; ties: the newer)
 * or by recency (streaming). `pos[i]` and `score[i]` describe slot i, oldest first. Returns the
 * kept slot indices in order.
 */
export function keptSlots(pos: readonly number[], score: readonly number[], keep: number, o: { sinks: number; recent: number; policy: EvictionPolicy }): number[] {
  const n = pos.length;
  if (n <= keep) return [...Array(n).keys()];
  const chosen = new Uint8Array(n);
  let count = 0;
  for (let i = 0; i < n; i++) {
    if (pos[i] < o.sinks || i >= n - o.recent) {
      chosen[i] = 1;
      count++;
    }
  }
  const rest = [...Array(n).keys()].filter((i) => !chosen[i]);
  if (o.policy === 'h2o') rest.sort((a, b) => score[b] - score[a] || b - a);
  else rest.reverse(); // most recent first
  for (const i of rest) {
    if (count >= keep) break;
    chosen[i] = 1;
    count++;
  }
  return [...Array(n).keys()].filter((i) => chosen[i]);
}
