// Per-layer KV budgets (lesson 3, "KV-cache optimizations"): measure how spread out each layer's
// attention is on calibration text (mean entropy of its attention rows), then split a total token
// budget across layers in proportion (PyramidKV-like: layers that look at many tokens get more
// room), or uniformly. Plain numbers; the measurement uses the model's attention observer.

import * as tf from '@tensorflow/tfjs-core';

import { ContiguousKVCache } from './contiguous';
import type { LlamaModel } from '../model/llama';

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

/** The same budget for every layer: floor(total / L), the remainder to the first layers (lesson 3). */
export function uniformBudgets(total: number, numLayers: number): number[] {
  const base = Math.floor(total / numLayers);
  return Array.from({ length: numLayers }, (_, l) => base + (l < total - base * numLayers ? 1 : 0));
}

/**
 * Split `total` tokens across layers in proportion to `weights` (e.g. attention entropies), each
 * layer at least `min` (largest-remainder rounding; the sum is exactly `total`) (lesson 3).
 */
export function proportionalBudgets(weights: readonly number[], total: number, min: number): number[] {
  const L = weights.length;
  if (weights.some((w) => !(w >= 0))) throw new Error('budget weights must be non-negative numbers');
  if (total < L * min) throw new Error(`total budget ${total} is below ${L} layers x minimum ${min}`);
  const free = total - L * min;
  const sum = weights.reduce((a, b) => a + b, 0) || 1;
  const exact = weights.map((w) => (free * w) / sum);
  const out = exact.map((x) => min + Math.floor(x));
  let left = total - out.reduce((a, b) => a + b, 0);
  const order = exact.map((x, l) => [x - Math.floor(x), l]).sort((a, b) => b[0] - a[0]);
  for (let i = 0; left > 0; i = (i + 1) % L, left--) out[order[i][1]]++;
  return out;
}
