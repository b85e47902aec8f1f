// Custom tfjs-wasm kernels for decode attention. tfjs-wasm sends a batched matMul (one product
// per sequence and kv head) to a scalar C++ loop that reaches ~1-2 GB/s, which makes attention
// the largest cost of a decode step at long context. These two kernels are wasm SIMD (f32x4),
// written in AssemblyScript (assembly/attention.ts) and run in tfjs-wasm's own memory (cpu.ts),
// so tensors are read where they lie, with no copy:
//   qkT(a [P, R, D], b [P, C, D]) -> [P, R, S]   out[p,r,s] = sum_d a[p,r,d] b[p,s,d]
//   pv (a [P, R, S], b [P, C, D]) -> [P, R, D]   out[p,r,d] = sum_s a[p,r,s] b[p,s,d]
// over the first S <= C slots of b (a KV cache with spare capacity is read without a copy).
// They are registered as tfjs kernels for the wasm backend only; other backends, or D not a
// multiple of 4, use tf.matMul.

import * as tf from '@tensorflow/tfjs-core';

import { cpuKernelsFor, offsetOf, registerCpuKernels, type WasmBackendLike } from './cpu';

// ---- tfjs kernels

const QKT = 'InferenceLabQKT';
const PV = 'InferenceLabPV';
let enabled = true;

/** Turn the SIMD kernels off (or back on) to compare with tf.matMul; on by default. */
export function useWasmAttention(on: boolean): void {
  enabled = on;
}

function kernel(which: 'qkT' | 'pv'): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const be = backend as unknown as WasmBackendLike;
    const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const [Pn, Rn, inner] = a.shape;
    const [Pb, Cn, Dn] = b.shape;
    // qkT: a's last axis is D, S comes from attrs (default all of b's slots); pv: a's last is S
    const Sn = which === 'qkT' ? ((attrs as { span?: number }).span ?? Cn) : inner;
    const ok = Pb === Pn && (which === 'qkT' ? Dn === inner : true) && Sn <= Cn && Dn % 4 === 0;
    if (!ok || a.dtype !== 'float32' || b.dtype !== 'float32') {
      throw new Error(`${which}: bad operands [${a.shape}] ${a.dtype} and [${b.shape}] ${b.dtype} (span ${Sn})`);
    }
    const out = be.makeOutput(which === 'qkT' ? [Pn, Rn, Sn] : [Pn, Rn, Dn], 'float32');
    cpuKernelsFor(be)[which](offsetOf(be, a), offsetOf(be, b), offsetOf(be, out), Pn, Rn, Sn, Dn, Cn);
    return out;
  };
}

const KERNELS = { [QKT]: kernel('qkT'), [PV]: kernel('pv') };

/** Can the SIMD kernels run here (wasm backend, SIMD WebAssembly, head dim a multiple of 4)? */
export function wasmAttentionAvailable(headDim: number): boolean {
  return enabled && headDim % 4 === 0 && registerCpuKernels(KERNELS);
}

/**
 * a [P, R, D] x b [P, C, D] -> [P, R, span], b's first `span` rows as columns (q k^T). Wasm only.
 */
export function wasmQKT(a: tf.Tensor3D, b: tf.Tensor3D, span = b.shape[1]): tf.Tensor3D {
  return tf.engine().runKernel(QKT, { a, b }, { span }) as tf.Tensor3D;
}

/** a [P, R, S] x b [P, C, D] -> [P, R, D] (p v) over b's first S rows. Wasm only. */
export function wasmPV(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  return tf.engine().runKernel(PV, { a, b }, {}) as tf.Tensor3D;
}
