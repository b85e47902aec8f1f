// The decode matmul on tfjs-wasm: x [M, K] @ W [K, N] for a few rows M (batch-1 decode is M = 1),
// wasm SIMD written in AssemblyScript (assembly/gemv.ts), run in tfjs-wasm's memory (cpu.ts).
// The kernels read W in tiles (assembly/gemv.ts says why): a copy of the model's [in, out] weight
// made once when the weights load (gemvWeights), in one of two formats:
//   f32   [K/4, 4N] float32: [K/4, N/4, 4, 4], each tile 4 rows x 4 columns (packTilesF32)
//   bf16  [K/4, 2N] int32: [K/4, N/8, 4, 4], each tile 4 rows x 8 columns of bf16 pairs
//         (packTilesBf16), widened to f32 inside the GEMV: half the weight bytes a decode step
//         reads (the model's `cpuWeights: 'bf16'` option)
// One register-blocked loop serves every M (gemm, gemmBf16; gemvKernelName picks by format).
// llama.ts uses it for steps of at most GEMV_MAX_ROWS rows on wasm; XNNPACK's matMul over the
// [in, out] tensor stays for larger steps (prefill).

import * as tf from '@tensorflow/tfjs-core';

import { f32ToBf16 } from '../../formats/dtype';
import { cpuKernelsFor, offsetOf, registerCpuKernels, type WasmBackendLike } from './cpu';
import { CpuThreadPool } from './threads';

/**
 * Rows up to which llama.ts sends a matmul to these kernels, f32 and bf16 weights alike (a batch-8
 * decode step is 8 rows). Measured on the target's step matmuls (bench/core.ts --gemm; 2-core Zen 1,
 * medians of interleaved runs while another process used about one core), 1 thread, ms per step,
 * XNNPACK / ours f32 / ours bf16:
 *   M = 1: 7.3 / 5.8 / 4.6   M = 4: 9.6 / 10.5 / 9.4   M = 8: 16.7 / 16.2 / 16.8
 * ours is ahead or level at every M on one thread and splits over the thread pool's threads
 * (XNNPACK runs on one in Node), so every decode step up to 8 rows takes it. (Measured with W in
 * [K, N]; over the tiles ours is further ahead: M = 1 7.5-9.2 / 5.5-5.8 / 4.1-4.4, M = 8
 * 17.7-22.2 / 14.2-14.4 / 14.6-14.7.)
 */
export const GEMV_MAX_ROWS = 8;
/** Rows up to which the bf16 GEMV runs (the same measurement). */
export const GEMV_BF16_MAX_ROWS = 8;

/** The kernel of the CPU module for W's tiles in this format (threads.ts hands the name to its workers). */
export function gemvKernelName(bf16: boolean): 'gemm' | 'gemmBf16' {
  return bf16 ? 'gemmBf16' : 'gemm';
}

const GEMV = 'InferenceLabGemv';
let enabled = true;

/** Turn the GEMV off (or back on) to compare with tf.matMul (XNNPACK); on by default. */
export function useWasmGemv(on: boolean): void {
  enabled = on;
}

/**
 * W [K, N] f32 (row-major, [in, out]) -> the f32 GEMV's tiles [K/4, N/4, 4, 4]: tile (b, t) holds
 * W[4b..4b+3, 4t..4t+3] row by row, 64 contiguous bytes. K % 4 == 0, N % 8 == 0.
 */
export function packTilesF32(w: Float32Array, K: number, N: number): Float32Array {
  checkTileable('packTilesF32', w, K, N);
  const out = new Float32Array(K * N);
  let i = 0;
  for (let b = 0; b < K; b += 4) {
    for (let t = 0; t < N; t += 4) {
      for (let r = 0; r < 4; r++) {
        for (let j = 0; j < 4; j++) out[i++] = w[(b + r) * N + t + j];
      }
    }
  }
  return out;
}

/**
 * W [K, N] f32 -> the bf16 GEMV's tiles, int32 [K/4, N/8, 4, 4] of bf16 pairs (round to nearest
 * even): tile (b, t) row r, lane j holds W[4b + r, 8t + j] in its low half and W[4b + r, 8t + 4 + j]
 * in its high half, so one load widens to two f32x4 of adjacent columns. K % 4 == 0, N % 8 == 0.
 */
export function packTilesBf16(w: Float32Array, K: number, N: number): Int32Array {
  checkTileable('packTilesBf16', w, K, N);
  const bits = f32ToBf16(w);
  const out = new Int32Array((K * N) / 2);
  let i = 0;
  for (let b = 0; b < K; b += 4) {
    for (let t = 0; t < N; t += 8) {
      for (let r = 0; r < 4; r++) {
        const row = (b + r) * N + t; // W[4b + r, 8t]
        for (let j = 0; j < 4; j++) out[i++] = bits[row + j] | (bits[row + 4 + j] << 16);
      }
    }
  }
  return out;
}

function checkTileable(name: string, w: Float32Array, K: number, N: number): void {
  if (K % 4 !== 0 || N % 8 !== 0 || w.length !== K * N)
    throw new Error(`${name}: [${K}, ${N}] with ${w.length} values (K must be a multiple of 4, N of 8)`);
}

/**
 * A layer's matrices as the wasm GEMV reads them (gemvWeights below): f32 tiles [in/4, 4 out], or with
 * cpuWeights 'bf16' int32 tiles of bf16 pairs [in/4, 2 out]. A second copy of each matrix beside
 * the [in, out] one that prefill's tf.matMul (XNNPACK) reads.
 */
export interface PackedMatrices {
  wqkv: tf.Tensor2D;
  wo: tf.Tensor2D;
  wGateUp: tf.Tensor2D;
  wDown: tf.Tensor2D;
}

/**
 * W [K, N] f32 -> the GEMV's copy: f32 tiles [K/4, 4N], or bf16 pair tiles int32 [K/4, 2N]. The
 * caller disposes it.
 */
export function gemvWeights(w: Float32Array, K: number, N: number, format: 'f32' | 'bf16'): tf.Tensor2D {
  return format === 'bf16'
    ? tf.tensor2d(packTilesBf16(w, K, N), [K / 4, 2 * N], 'int32')
    : tf.tensor2d(packTilesF32(w, K, N), [K / 4, 4 * N]);
}

/** The sizes of W [K, N] that a GEMV copy (gemvWeights) holds, and its format. */
export function gemvWeightShape(w: tf.TensorInfo): { K: number; N: number; bf16: boolean } {
  const bf16 = w.dtype === 'int32';
  return { K: 4 * w.shape[0], N: w.shape[1] / (bf16 ? 2 : 4), bf16 };
}

const gemvKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as WasmBackendLike;
  const { x, w } = inputs as { x: tf.TensorInfo; w: tf.TensorInfo };
  const [M, K] = x.shape;
  const { K: wK, N, bf16 } = gemvWeightShape(w);
  const ok = x.shape.length === 2 && w.shape.length === 2 && wK === K && N % 8 === 0 && x.dtype === 'float32';
  if (!ok) throw new Error(`gemv: bad operands [${x.shape}] ${x.dtype} and [${w.shape}] ${w.dtype}`);
  const out = be.makeOutput([M, N], 'float32');
  const args = [offsetOf(be, x), offsetOf(be, w), offsetOf(be, out), M, K, N] as const;
  // over the pool's threads only when asked (attrs.threads: the LM head after the fused decode
  // step, whose workers are still awake from it); else on this thread alone, also when the
  // backend has several. A step op by op runs tfjs-wasm's XNNPACK ops between its matmuls, and
  // XNNPACK's own threads then compete with our pool's for the cores. Measured (target, one
  // sequence after 64 tokens, 2-core machine, 2 threads, best of 12): with the matmuls split over
  // our pool a 1-token op-by-op step took 23 ms and a 5-token one 32 ms, against 9.1 and 12.3 on
  // this thread (8.2 and 12.8 on a 1-thread backend).
  const pool = (attrs as { threads?: boolean }).threads ? CpuThreadPool.of(be) : null; // null on one thread
  if (pool) pool.gemm(gemvKernelName(bf16), ...args);
  else cpuKernelsFor(be)[gemvKernelName(bf16)](...args, 0, N);
  return out;
};

const KERNELS = { [GEMV]: gemvKernel };

/** Can the GEMV run here (wasm backend, SIMD) for W with K rows and N columns? */
export function wasmGemvAvailable(K: number, N: number): boolean {
  return enabled && K % 4 === 0 && N % 8 === 0 && registerCpuKernels(KERNELS);
}

/**
 * x [M, K] @ W -> [M, N], w W's GEMV copy (gemvWeights): f32 tiles [K/4, 4N], or bf16 pair tiles
 * int32 [K/4, 2N]. Wasm only; K % 4 == 0, N % 8 == 0. `threads`: split over the backend's kernel
 * threads (threads.ts), for a matmul between our own kernels only (see the kernel above).
 */
export function wasmGemv(x: tf.Tensor2D, w: tf.Tensor2D, threads = false): tf.Tensor2D {
  return tf.engine().runKernel(GEMV, { x, w }, { threads }) as tf.Tensor2D;
}
