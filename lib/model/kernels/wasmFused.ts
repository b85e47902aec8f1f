// Fused tfjs-wasm kernels for the decode step's small ops. A decode step of a small model is
// mostly tiny kernels, each costing ~6 us of dispatch whatever it computes; these replace
// chains of them with one call each. Wasm SIMD (f32x4) written in AssemblyScript
// (assembly/fused.ts), run in tfjs-wasm's own memory (cpu.ts), registered like wasmAttention.ts's:
//   addRmsNorm(x [N, Dm], delta [N, Dm] | none, w [Dm]) -> sum = x + delta, out = rmsnorm(sum) * w
//     (vLLM's fused_add_rms_norm; HF's order: w * (sum * 1/sqrt(mean(sum^2) + eps)))
//   rope(qkv [B*T, (H + 2*Hkv) * D], cos, sin [B*T, D]) -> q [B*T, H, D] rotated,
//     k [B, Hkv, T, D] rotated, v [B, Hkv, T, D] (HF's x*cos + rotate_half(x)*sin, no D x D
//     product; k and v come out head-major, as the KV cache takes them)
//   siluMul(gu [N, 2F]) -> [N, F] = silu(gate) * up, gu = [gate | up] (the fused gate and up
//     projection); silu(g) = g / (1 + exp(-g)), exp a degree-6 polynomial (rel. error ~2e-7)
//   embedColumns(W [Dm, V], ids [N]) -> [N, Dm]: a tied model's embeddings, columns of its LM
//     head (tf.gather along axis 1 and a transpose were two kernels and ~0.2 ms of a target step)
// Registered for the wasm backend only; llama.ts keeps the plain tfjs path for the others.

import * as tf from '@tensorflow/tfjs-core';

import { cpuKernelsFor, offsetOf, registerCpuKernels, type WasmBackendLike } from './cpu';

// ---- tfjs kernels

const ADD_RMS_NORM = 'InferenceLabAddRmsNorm';
const ROPE = 'InferenceLabRope';
const SILU_MUL = 'InferenceLabSiluMul';
const EMBED_COLUMNS = 'InferenceLabEmbedColumns';
let enabled = true;

/** Turn the fused kernels off (or back on) to compare with the plain tfjs ops; on by default. */
export function useWasmFused(on: boolean): void {
  enabled = on;
}

const addRmsNormKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as WasmBackendLike;
  const { x, delta, w } = inputs as { x: tf.TensorInfo; delta?: tf.TensorInfo; w: tf.TensorInfo };
  const [N, Dm] = x.shape;
  const ok = x.shape.length === 2 && Dm % 4 === 0 && w.shape.join() === `${Dm}` && (!delta || delta.shape.join() === x.shape.join());
  if (!ok || [x, w, delta ?? x].some((t) => t.dtype !== 'float32')) {
    throw new Error(`addRmsNorm: bad operands [${x.shape}], [${delta?.shape ?? ''}], [${w.shape}]`);
  }
  const sum = be.makeOutput([N, Dm], 'float32');
  const out = be.makeOutput([N, Dm], 'float32');
  const at = (t: tf.TensorInfo) => offsetOf(be, t);
  const { eps } = attrs as { eps: number };
  cpuKernelsFor(be).addRmsNorm(at(x), at(delta ?? x), at(w), at(sum), at(out), N, Dm, delta ? 1 : 0, eps);
  return [sum, out];
};

const ropeKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as WasmBackendLike;
  const { qkv, cos, sin } = inputs as { qkv: tf.TensorInfo; cos: tf.TensorInfo; sin: tf.TensorInfo };
  const { B, T, H, Hkv } = attrs as { B: number; T: number; H: number; Hkv: number };
  const [N, width] = qkv.shape;
  const D = cos.shape[1];
  const heads = width / D;
  const ok =
    qkv.shape.length === 2 &&
    N === B * T &&
    heads === H + 2 * Hkv &&
    D % 8 === 0 &&
    cos.shape.join() === `${N},${D}` &&
    sin.shape.join() === `${N},${D}`;
  if (!ok || [qkv, cos, sin].some((t) => t.dtype !== 'float32')) {
    throw new Error(`rope: bad operands [${qkv.shape}], [${cos.shape}], [${sin.shape}] for B ${B}, T ${T}, H ${H}, Hkv ${Hkv}`);
  }
  const q = be.makeOutput([N, H, D], 'float32');
  const k = be.makeOutput([B, Hkv, T, D], 'float32');
  const v = be.makeOutput([B, Hkv, T, D], 'float32');
  const at = (t: tf.TensorInfo) => offsetOf(be, t);
  cpuKernelsFor(be).rope(at(qkv), at(cos), at(sin), at(q), at(k), at(v), B, T, H, Hkv, D);
  return [q, k, v];
};

const siluMulKernel: tf.KernelFunc = ({ inputs, backend }) => {
  const be = backend as unknown as WasmBackendLike;
  const { gu } = inputs as { gu: tf.TensorInfo };
  const [N, F2] = gu.shape;
  if (gu.shape.length !== 2 || F2 % 8 !== 0 || gu.dtype !== 'float32') throw new Error(`siluMul: bad operand [${gu.shape}] ${gu.dtype}`);
  const out = be.makeOutput([N, F2 / 2], 'float32');
  const at = (t: tf.TensorInfo) => offsetOf(be, t);
  cpuKernelsFor(be).siluMul(at(gu), at(out), N, F2 / 2);
  return out;
};

const embedColumnsKernel: tf.KernelFunc = ({ inputs, backend }) => {
  const be = backend as unknown as WasmBackendLike & { readSync(dataId: tf.DataId): Int32Array };
  const { w, ids } = inputs as { w: tf.TensorInfo; ids: tf.TensorInfo };
  const [Dm, V] = w.shape;
  const N = ids.shape[0];
  if (w.shape.length !== 2 || w.dtype !== 'float32' || ids.shape.length !== 1 || ids.dtype !== 'int32') {
    throw new Error(`embedColumns: bad operands [${w.shape}] ${w.dtype}, [${ids.shape}] ${ids.dtype}`);
  }
  const bad = be.readSync(ids.dataId).find((t) => !(t >= 0 && t < V));
  if (bad !== undefined) throw new Error(`embedColumns: token id ${bad} is not in [0, ${V})`);
  const out = be.makeOutput([N, Dm], 'float32');
  cpuKernelsFor(be).embedColumns(offsetOf(be, w), offsetOf(be, ids), offsetOf(be, out), N, Dm, V);
  return out;
};

const KERNELS = { [ADD_RMS_NORM]: addRmsNormKernel, [SILU_MUL]: siluMulKernel, [ROPE]: ropeKernel, [EMBED_COLUMNS]: embedColumnsKernel };

/** Can the fused kernels run here (wasm backend, SIMD WebAssembly, Dm and F multiples of 4, D of 8)? */
export function wasmFusedAvailable(hiddenSize: number, headDim: number, intermediateSize: number): boolean {
  const shapesOk = hiddenSize % 4 === 0 && headDim % 8 === 0 && intermediateSize % 4 === 0;
  return enabled && shapesOk && registerCpuKernels(KERNELS);
}

/**
 * [x + delta, rmsnorm(x + delta) * w] for x, delta [N, Dm], w [Dm]; without delta, [x's copy,
 * rmsnorm(x) * w]. Wasm only.
 */
export function wasmAddRmsNorm(x: tf.Tensor2D, delta: tf.Tensor2D | null, w: tf.Tensor1D, eps: number): [tf.Tensor2D, tf.Tensor2D] {
  const inputs: tf.NamedTensorMap = delta ? { x, delta, w } : { x, w };
  return tf.engine().runKernel(ADD_RMS_NORM, inputs, { eps }) as unknown as [tf.Tensor2D, tf.Tensor2D];
}

/**
 * RoPE over the fused q, k, v projection: qkv [B*T, (H + 2*Hkv) * D] and the tables cos, sin
 * [B*T, D] (ropeTables) -> q [B*T, H, D], k and v [B, Hkv, T, D], q and k rotated. Wasm only.
 */
export function wasmRope(
  qkv: tf.Tensor2D,
  cos: tf.Tensor2D,
  sin: tf.Tensor2D,
  B: number,
  T: number,
  H: number,
  Hkv: number,
): [tf.Tensor3D, tf.Tensor4D, tf.Tensor4D] {
  return tf.engine().runKernel(ROPE, { qkv, cos, sin }, { B, T, H, Hkv }) as unknown as [tf.Tensor3D, tf.Tensor4D, tf.Tensor4D];
}

/** silu(gate) * up for gu = [gate | up] [N, 2F] (F a multiple of 4) -> [N, F]. Wasm only. */
export function wasmSiluMul(gu: tf.Tensor2D): tf.Tensor2D {
  return tf.engine().runKernel(SILU_MUL, { gu }, {}) as tf.Tensor2D;
}

/** A tied model's embeddings: the columns `ids` [N] of its LM head W [Dm, V] -> [N, Dm] (wasmFusedAvailable first). */
export function wasmEmbedColumns(w: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor2D {
  return tf.engine().runKernel(EMBED_COLUMNS, { w, ids }, {}) as tf.Tensor2D;
}
