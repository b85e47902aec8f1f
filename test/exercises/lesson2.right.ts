// Correct answers to lesson 2's build-it exercises (the same code as notebooks/solutions/02-kv-caching.ipynb).
import type { LlamaConfig } from '../../lib';

function myKvBytesPerToken(c: LlamaConfig, bytesPerValue: number): number {
  // a key and a value, in every layer, for each KV head (not each query head), headDim values each
  return 2 * c.numLayers * c.numKvHeads * c.headDim * bytesPerValue;
}

function myMaxContext(c: LlamaConfig, budgetBytes: number, bytesPerValue: number, batch: number): number {
  const perToken = 2 * c.numLayers * c.numKvHeads * c.headDim * bytesPerValue; // one token of one sequence
  return Math.floor(budgetBytes / (batch * perToken)); // whole tokens, in every sequence of the batch
}

function myAttendOneStep(q: Float32Array, k: Float32Array, v: Float32Array, shape: { H: number; Hkv: number; S: number; D: number }): Float32Array {
  const { H, Hkv, S, D } = shape;
  const out = new Float32Array(H * D); // [H, D]
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / (H / Hkv)); // the KV head this query head shares
    const scores = new Float64Array(S); // [S]
    let max = -Infinity;
    for (let s = 0; s < S; s++) {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[h * D + d] * k[(g * S + s) * D + d];
      scores[s] = dot / Math.sqrt(D);
      max = Math.max(max, scores[s]);
    }
    let sum = 0;
    for (let s = 0; s < S; s++) {
      scores[s] = Math.exp(scores[s] - max); // softmax, shifted by the max for safety
      sum += scores[s];
    }
    for (let s = 0; s < S; s++) for (let d = 0; d < D; d++) out[h * D + d] += (scores[s] / sum) * v[(g * S + s) * D + d];
  }
  return out;
}

function myTokenPasses(promptLength: number, newTokens: number): { naive: number; cached: number } {
  // naive: step i (from 0) feeds the prompt and the i tokens made so far
  const naive = newTokens * promptLength + (newTokens * (newTokens - 1)) / 2;
  // cached: the prompt once (that pass already makes the first token), then one token per step
  const cached = promptLength + (newTokens - 1);
  return { naive: naive, cached: cached };
}

export const right: Record<string, unknown> = {
  'l2.kv-bytes': myKvBytesPerToken,
  'l2.max-context': myMaxContext,
  'l2.attend-step': myAttendOneStep,
  'l2.token-passes': myTokenPasses,
};
