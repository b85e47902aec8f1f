// Plausible wrong answers to lesson 2's exercises: each must fail its check with a hint
// (test/exercises.test.ts).
import type { LlamaConfig } from '../../lib';

type Shape = { H: number; Hkv: number; S: number; D: number };

/** Attention of one token over its cache, with switches for each mistake. */
function attend(q: Float32Array, k: Float32Array, v: Float32Array, shape: Shape, bug: 'no-scale' | 'head-modulo' | 'skip-last' | 'scale-by-D'): Float32Array {
  const { H, Hkv, S, D } = shape;
  const out = new Float32Array(H * D);
  const keys = bug === 'skip-last' ? Math.max(1, S - 1) : S;
  for (let h = 0; h < H; h++) {
    const g = bug === 'head-modulo' ? h % Hkv : Math.floor(h / (H / Hkv));
    const w = new Float64Array(keys);
    let max = -Infinity;
    for (let s = 0; s < keys; s++) {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[h * D + d] * k[(g * S + s) * D + d];
      w[s] = bug === 'no-scale' ? dot : bug === 'scale-by-D' ? dot / D : dot / Math.sqrt(D);
      max = Math.max(max, w[s]);
    }
    let sum = 0;
    for (let s = 0; s < keys; s++) sum += w[s] = Math.exp(w[s] - max);
    for (let s = 0; s < keys; s++) for (let d = 0; d < D; d++) out[h * D + d] += (w[s] / sum) * v[(g * S + s) * D + d];
  }
  return out;
}

export const wrong: Record<string, { name: string; fn: unknown }[]> = {
  'l2.kv-bytes': [
    { name: 'K or V forgotten (no factor 2)', fn: (c: LlamaConfig, b: number) => c.numLayers * c.numKvHeads * c.headDim * b },
    { name: 'query heads instead of KV heads (GQA ignored)', fn: (c: LlamaConfig, b: number) => 2 * c.numLayers * c.numHeads * c.headDim * b },
    { name: 'hiddenSize per layer (query width, not KV width)', fn: (c: LlamaConfig, b: number) => 2 * c.numLayers * c.hiddenSize * b },
    { name: 'one layer only', fn: (c: LlamaConfig, b: number) => 2 * c.numKvHeads * c.headDim * b },
  ],
  'l2.max-context': [
    { name: 'not rounded down', fn: (c: LlamaConfig, budget: number, b: number, B: number) => budget / (B * 2 * c.numLayers * c.numKvHeads * c.headDim * b) },
    { name: 'the batch forgotten', fn: (c: LlamaConfig, budget: number, b: number) => Math.floor(budget / (2 * c.numLayers * c.numKvHeads * c.headDim * b)) },
    { name: 'K or V forgotten', fn: (c: LlamaConfig, budget: number, b: number, B: number) => Math.floor(budget / (B * c.numLayers * c.numKvHeads * c.headDim * b)) },
    { name: 'rounded to the nearest', fn: (c: LlamaConfig, budget: number, b: number, B: number) => Math.round(budget / (B * 2 * c.numLayers * c.numKvHeads * c.headDim * b)) },
  ],
  'l2.attend-step': [
    { name: 'no 1/sqrt(D) scale', fn: (q: Float32Array, k: Float32Array, v: Float32Array, s: Shape) => attend(q, k, v, s, 'no-scale') },
    { name: 'scaled by 1/D', fn: (q: Float32Array, k: Float32Array, v: Float32Array, s: Shape) => attend(q, k, v, s, 'scale-by-D') },
    { name: 'query head h reads KV head h % Hkv', fn: (q: Float32Array, k: Float32Array, v: Float32Array, s: Shape) => attend(q, k, v, s, 'head-modulo') },
    { name: 'the newest key left out (off by one)', fn: (q: Float32Array, k: Float32Array, v: Float32Array, s: Shape) => attend(q, k, v, s, 'skip-last') },
  ],
  'l2.token-passes': [
    { name: 'cached: one pass per token after the prompt pass', fn: (p: number, n: number) => ({ naive: n * p + (n * (n - 1)) / 2, cached: p + n }) },
    { name: 'naive: the new token counted in its own step', fn: (p: number, n: number) => ({ naive: n * p + (n * (n + 1)) / 2, cached: p + n - 1 }) },
    { name: 'naive: n^2 / 2', fn: (p: number, n: number) => ({ naive: (n * n) / 2, cached: p + n - 1 }) },
  ],
};
