// The decode matmul on tfjs-wasm: x [M, K] @ W [K, N] for a few rows M (batch-1 decode is M = 1),
// wasm SIMD written in AssemblyScript (assembly/gemv.ts), run in tfjs-wasm's memory (cpu.ts).
// Two weight formats:
//   f32   W is the model's own [in, out] weight tensor, read where it lies
//   bf16  W packed two bf16 per int32 [K, N/2] (packBf16Columns), widened to f32 inside the GEMV:
//         half the weight bytes a decode step reads (the model's `cpuWeights: 'bf16'` option)
// llama.ts uses it for steps of at most GEMV_MAX_ROWS rows on wasm; XNNPACK's matMul stays for
// larger steps (prefill), where compute, not weight bytes, bounds the time.

import * as tf from '@tensorflow/tfjs-core';

import { f32ToBf16 } from '../../formats/dtype';
import { cpuKernelsFor, offsetOf, type WasmBackendLike } from './cpu';

/**
 * Rows up to which llama.ts sends a matmul to the GEMV. Measured on the target (2-core machine, best
 * of interleaved runs): ahead of XNNPACK at 1-2 rows, even at 4, behind at 8 (21.1 vs 19.5 ms a step).
 */
export const GEMV_MAX_ROWS = 2;
/** Rows up to which the bf16 GEMV runs (the same measurement: ahead at 1-2 rows, behind from 4). */
export const GEMV_BF16_MAX_ROWS = 2;

const GEMV = 'InferenceLabGemv';
let enabled = true;
let unavailable = false;

/** Turn the GEMV off (or back on) to compare with tf.matMul (XNNPACK); on by default. */
export function useWasmGemv(on: boolean): void {
  enabled = on;
}

/**
 * W [K, N] f32 (row-major, [in, out]) -> [K, N/2] int32 of bf16 pairs (round to nearest even),
 * in the GEMV's order: in each group of 8 columns, int32 j holds column j (low half) and 4 + j
 * (high half). N % 8 == 0.
 */
export function packBf16Columns(w: Float32Array, K: number, N: number): Int32Array {
  if (N % 8 !== 0 || w.length !== K * N)
    throw new Error(`packBf16Columns: [${K}, ${N}] with ${w.length} values (N must be a multiple of 8)`);
  const bits = f32ToBf16(w);
  const out = new Int32Array((K * N) / 2);
  for (let i = 0; i < (K * N) / 8; i++) {
    for (let j = 0; j < 4; j++) out[4 * i + j] = bits[8 * i + j] | (bits[8 * i + 4 + j] << 16);
  }
  return out;
}

const gemvKernel: tf.KernelFunc = ({ inputs, backend }) => {
  const be = backend as unknown as WasmBackendLike;
  const { x, w } = inputs as { x: tf.TensorInfo; w: tf.TensorInfo };
  const [M, K] = x.shape;
  const bf16 = w.dtype === 'int32';
  const N = bf16 ? 2 * w.shape[1] : w.shape[1];
  const ok = x.shape.length === 2 && w.shape.length === 2 && w.shape[0] === K && K % 4 === 0 && N % 8 === 0 && x.dtype === 'float32';
  if (!ok) throw new Error(`gemv: bad operands [${x.shape}] ${x.dtype} and [${w.shape}] ${w.dtype}`);
  const out = be.makeOutput([M, N], 'float32');
  const k = cpuKernelsFor(be);
  (bf16 ? k.gemvBf16 : k.gemv)(offsetOf(be, x), offsetOf(be, w), offsetOf(be, out), M, K, N, 0, N);
  return out;
};

/** Can the GEMV run here (wasm backend, SIMD) for W with K rows and N columns? */
export function wasmGemvAvailable(K: number, N: number): boolean {
  if (!enabled || unavailable || K % 4 !== 0 || N % 8 !== 0 || tf.getBackend() !== 'wasm') return false;
  try {
    cpuKernelsFor(tf.backend() as unknown as WasmBackendLike);
  } catch {
    unavailable = true;
    return false;
  }
  if (!tf.getKernel(GEMV, 'wasm')) tf.registerKernel({ kernelName: GEMV, backendName: 'wasm', kernelFunc: gemvKernel });
  return true;
}

/**
 * x [M, K] @ w -> [M, N]: w f32 [K, N], or int32 [K, N/2] from packBf16Columns (bf16 weights).
 * Wasm only; K % 4 == 0, N % 8 == 0.
 */
export function wasmGemv(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  return tf.engine().runKernel(GEMV, { x, w }, {}) as tf.Tensor2D;
}
