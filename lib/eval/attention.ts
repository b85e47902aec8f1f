// Attention measured through the model's attention observer (lesson 3, "KV-cache optimizations"):
// how spread out each layer's and head's attention is (entropy, which sizes per-layer KV budgets in
// lib/kv/budget.ts), and how far a cache moves the attention probabilities from the float32 cache's
// (error, for quantized caches).

import type * as tf from '@tensorflow/tfjs-core';

import type { KVCache } from '../kv/cache';
import { ContiguousKVCache } from '../kv/contiguous';
import type { LlamaModel } from '../model/llama';
import type { CacheFactory } from './quality';

// ---- attention entropy

/** Per-layer attention entropy (nats) of calibration text, and per head [layer][head] (lesson 3). */
export interface AttentionEntropy {
  layers: number[];
  heads: number[][];
  /** query rows measured per layer and head */
  rows: number;
}

/**
 * Mean attention entropy -sum p log p per layer and head over every query of `windows` windows
 * of `window` tokens of `ids`, fed in chunks of `chunk` (lesson 3).
 */
export function attentionEntropy(
  model: LlamaModel,
  ids: readonly number[],
  options: { window?: number; windows?: number; chunk?: number } = {},
): AttentionEntropy {
  const W = options.window ?? 512;
  const nWin = options.windows ?? 2;
  const C = options.chunk ?? 128;
  const { numLayers: Lc, numHeads: H } = model.config;
  const sums = Array.from({ length: Lc }, () => new Float64Array(H));
  let rows = 0;
  for (let w = 0; w < nWin && (w + 1) * W <= ids.length; w++) {
    const cache = new ContiguousKVCache(model.kvShape, 1);
    try {
      for (let c0 = 0; c0 < W; c0 += C) {
        const chunk = ids.slice(w * W + c0, w * W + Math.min(c0 + C, W));
        const onAttention = (layer: number, probs: tf.Tensor4D) => {
          const [, Hh, T, S] = probs.shape;
          const p = probs.dataSync();
          for (let h = 0; h < Hh; h++) {
            let e = 0;
            for (let i = h * T * S; i < (h + 1) * T * S; i++) if (p[i] > 0) e -= p[i] * Math.log(p[i]);
            sums[layer][h] += e;
          }
        };
        model.forward([chunk], cache, { onAttention }).dispose();
        rows += chunk.length;
      }
    } finally {
      cache.dispose();
    }
  }
  if (rows === 0) throw new Error(`attentionEntropy: need at least ${W} calibration tokens`);
  const heads = sums.map((hs) => [...hs].map((x) => x / rows));
  return { layers: heads.map((hs) => hs.reduce((a, b) => a + b, 0) / H), heads, rows };
}

// ---- attention error

/**
 * Error of each layer's and head's attention probabilities with a cache against the float32
 * cache, on the same tokens fed in chunks (lesson 3): mean total variation 0.5 * sum |p - p^| per
 * query row, [layer][head]. Caches whose layers keep other tokens (eviction) are not comparable.
 */
export function attentionError(
  model: LlamaModel,
  ids: readonly number[],
  makeCache: CacheFactory,
  options: { chunk?: number } = {},
): number[][] {
  const C = options.chunk ?? 128;
  const { numLayers: L, numHeads: H } = model.config;
  const run = (cache: KVCache): Float32Array[][] => {
    const rows: Float32Array[][] = Array.from({ length: L }, () => []);
    try {
      for (let c0 = 0; c0 < ids.length; c0 += C) {
        const onAttention = (layer: number, probs: tf.Tensor4D) => void rows[layer].push(probs.dataSync() as Float32Array);
        model.forward([ids.slice(c0, c0 + C)], cache, { onAttention }).dispose();
      }
    } finally {
      cache.dispose();
    }
    return rows;
  };
  const ref = run(new ContiguousKVCache(model.kvShape, 1, { mode: 'concat' }));
  const got = run(makeCache(model.kvShape, 1));
  const err = Array.from({ length: L }, () => new Array<number>(H).fill(0));
  for (let l = 0; l < L; l++) {
    ref[l].forEach((p, c) => {
      const q = got[l][c];
      if (q.length !== p.length) throw new Error('attentionError: the cache attends over other slots than the float32 cache');
      const per = p.length / H;
      for (let h = 0; h < H; h++) {
        let tv = 0;
        for (let i = h * per; i < (h + 1) * per; i++) tv += Math.abs(p[i] - q[i]);
        err[l][h] += tv / 2;
      }
    });
  }
  return err.map((hs) => hs.map((x) => x / ids.length)); // mean over query rows
}
