// The decode matmul on tfjs-wasm: x [M, K] @ W [K, N] for a few rows M (batch-1 decode is M = 1),
// wasm SIMD written in AssemblyScript (assembly/gemv.ts), run in tfjs-wasm's memory (cpu.ts).
// Two weight formats:
//   f32   W is the model's own [in, out] weight tensor, read where it lies
//   bf16  W packed two bf16 per int32 [K, N/2] (packBf16Columns), widened to f32 inside the GEMV:
//         half the weight bytes a decode step reads (the model's `cpuWeights: 'bf16'` option)
// Two loops over the same sums (same bits): the streaming GEMV for 1-2 rows, the register-blocked
// skinny GEMM from TILED_FROM_ROWS rows (gemvKernelName). llama.ts uses them for steps of at most
// GEMV_MAX_ROWS rows on wasm; XNNPACK's matMul stays for larger steps (prefill).

import * as tf from '@tensorflow/tfjs-core';

import { f32ToBf16 } from '../../formats/dtype';
import { cpuKernelsFor, offsetOf, registerCpuKernels, type WasmBackendLike } from './cpu';

/**
 * Rows up to which llama.ts sends a matmul to these kernels, f32 and bf16 weights alike (a batch-8
 * decode step is 8 rows). Measured on the target's step matmuls (bench/core.ts --gemm; 2-core Zen 1,
 * medians of interleaved runs while another process used about one core), 1 thread, ms per step,
 * XNNPACK / ours f32 / ours bf16:
 *   M = 1: 7.3 / 5.8 / 4.6   M = 4: 9.6 / 10.5 / 9.4   M = 8: 16.7 / 16.2 / 16.8
 * ours is ahead or level at every M on one thread and splits over the thread pool's threads
 * (XNNPACK runs on one in Node), so every decode step up to 8 rows takes it.
 */
export const GEMV_MAX_ROWS = 8;
/** Rows up to which the bf16 GEMV runs (the same measurement). */
export const GEMV_BF16_MAX_ROWS = 8;

/**
 * Rows from which the register-blocked GEMM (gemm, gemmBf16) beats the streaming GEMV: the same
 * measurement, M = 3..8 f32 GEMV / GEMM 8.8/10.1 12.7/14.1 14.5/14.2 16.5/15.3 18.1/16.2, bf16
 * 9.0/8.1 10.6/9.4 13.6/13.8 15.5/14.3 18.2/15.4 20.1/16.8 ms.
 */
export const TILED_FROM_ROWS = { f32: 6, bf16: 3 } as const;

/** The kernel of the CPU module that computes a matmul of M rows (threads.ts hands the name to its workers). */
export function gemvKernelName(M: number, bf16: boolean): 'gemv' | 'gemvBf16' | 'gemm' | 'gemmBf16' {
  const tiled = M >= (bf16 ? TILED_FROM_ROWS.bf16 : TILED_FROM_ROWS.f32);
  return bf16 ? (tiled ? 'gemmBf16' : 'gemvBf16') : tiled ? 'gemm' : 'gemv';
}

const GEMV = 'InferenceLabGemv';
let enabled = true;

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
  k[gemvKernelName(M, bf16)](offsetOf(be, x), offsetOf(be, w), offsetOf(be, out), M, K, N, 0, N);
  return out;
};

const KERNELS = { [GEMV]: gemvKernel };

/** Can the GEMV run here (wasm backend, SIMD) for W with K rows and N columns? */
export function wasmGemvAvailable(K: number, N: number): boolean {
  return enabled && K % 4 === 0 && N % 8 === 0 && registerCpuKernels(KERNELS);
}

/**
 * x [M, K] @ w -> [M, N]: w f32 [K, N], or int32 [K, N/2] from packBf16Columns (bf16 weights).
 * Wasm only; K % 4 == 0, N % 8 == 0.
 */
export function wasmGemv(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  return tf.engine().runKernel(GEMV, { x, w }, {}) as tf.Tensor2D;
}
