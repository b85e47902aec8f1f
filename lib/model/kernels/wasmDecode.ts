// The fused CPU decode step on tfjs-wasm: all decoder layers of a decode step (one new token per
// sequence, a few sequences) in one call into wasm, decodeLayers in assembly/decode.ts, instead of
// the 15 tfjs kernels per layer of LlamaModel's op-by-op path (each ~6-10 us of dispatch, whatever
// it computes; a target decode step: 5 kernels instead of 125, counted with tf.profile). Each layer:
//   (x [M, Dm], the layer's weights, the layer's KV cache [M, Hkv, C, D], cos, sin [M, D],
//    mask [M, S] | none) -> [M, Dm]
//   rmsnorm -> qkv GEMV -> RoPE -> k, v written into the cache at slot `slot` -> attention over the
//   cache's first S slots -> o GEMV + residual -> rmsnorm -> gate/up GEMV -> silu * up -> down GEMV
//   + residual
// The layers' tensors reach the kernel as a table of their places in memory (decodeLayerTable),
// not as tfjs inputs: they are the model's weights and the cache's tensors, alive for the step.
// Going back to JavaScript between layers cost ~0.15 ms a layer (tfjs's kernel call, checks,
// allocations), a fifth of a target step. On tfjs-wasm's threaded build the step runs on every
// thread (threads.ts): the threads stay in wasm for the whole step, meeting at barriers.
// The same kernels as the op path's (wasmGemv.ts, wasmFused.ts, wasmAttention.ts), so the same
// sums but for the softmax (exp4's polynomial here, tfjs-wasm's own exp in tf.softmax). The cache
// is written in place: a cache hands its layer tensors through KVCache.writableLayer (the
// contiguous cache in 'inplace' mode does). llama.ts takes this path on wasm when it applies
// (decodeStepApplies) and keeps the op path as baseline and oracle; useWasmDecodeStep(false)
// turns it off.

import * as tf from '@tensorflow/tfjs-core';

import { cpuKernelsFor, offsetOf, registerCpuKernels, wasmMemoryOf, type WasmBackendLike } from './cpu';
import { CpuThreadPool } from './threads';
import { gemvWeightShape, type PackedMatrices } from './wasmGemv';

/** The fused decode step's tfjs kernel name (tf.profile lists a step's decoder layers under it). */
export const DECODE_LAYERS = 'InferenceLabDecodeLayers';
let enabled = true;

/** Turn the fused decode step off (or back on) to compare with the op-by-op path; on by default. */
export function useWasmDecodeStep(on: boolean): void {
  enabled = on;
}

/** Whether the fused decode step is switched on (useWasmDecodeStep). */
export function wasmDecodeStepEnabled(): boolean {
  return enabled;
}

/** One layer's weights as decodeLayers reads them: the norms' gains, and the four matrices as the GEMV's tiles, in one format. */
export interface DecodeLayerWeights extends PackedMatrices {
  attnNorm: tf.Tensor1D;
  mlpNorm: tf.Tensor1D;
}

/** One layer's KV cache tensors [M, Hkv, C, D], written at the step's slot (KVCache.writableLayer). */
export interface DecodeLayerKV {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** The sizes and the step's place in the cache. */
export interface DecodeLayersAttrs {
  H: number;
  Hkv: number;
  eps: number;
  /** the cache slot this step's keys and values go to */
  slot: number;
  /** key slots attended over: the cache's first `span` */
  span: number;
  /** [L, 8]: each layer's attnNorm, wqkv, wo, mlpNorm, wGateUp, wDown, k, v as byte offsets (decodeLayerTable) */
  table: number[];
  /** the matrices are bf16 pair tiles */
  bf16: boolean;
  /** the layers' sizes, as decodeLayerTable checked them */
  F: number;
  C: number;
}

type Attrs = DecodeLayersAttrs & tf.NamedAttrMap;

/**
 * The table of a decode step's layers for wasmDecodeLayers: checks every layer's shapes against x
 * [M, Dm] and returns [L, 8] byte offsets with the sizes it found. Throws naming the bad operand.
 */
export function decodeLayerTable(
  x: tf.Tensor2D,
  layers: DecodeLayerWeights[],
  kvs: DecodeLayerKV[],
  H: number,
  Hkv: number,
): Pick<DecodeLayersAttrs, 'table' | 'bf16' | 'F' | 'C'> {
  const be = tf.backend() as unknown as WasmBackendLike;
  const [M, Dm] = x.shape;
  const [, , C, D] = kvs[0].k.shape;
  const bf16 = layers[0].wqkv.dtype === 'int32';
  const F = gemvWeightShape(layers[0].wDown).K;
  const same = (t: tf.Tensor, ...dims: number[]) => t.shape.length === dims.length && t.shape.every((n, i) => n === dims[i]);
  const table: number[] = [];
  layers.forEach((w, l) => {
    const { k, v } = kvs[l];
    const [qkv, o, gateUp, down] = [w.wqkv, w.wo, w.wGateUp, w.wDown].map(gemvWeightShape); // [K, N] of each
    const ok =
      same(k, M, Hkv, C, D) &&
      same(v, M, Hkv, C, D) &&
      same(w.attnNorm, Dm) &&
      same(w.mlpNorm, Dm) &&
      qkv.K === Dm &&
      qkv.N === (H + 2 * Hkv) * D &&
      o.K === H * D &&
      o.N === Dm &&
      gateUp.K === Dm &&
      gateUp.N === 2 * F &&
      down.K === F &&
      down.N === Dm &&
      [w.wqkv, w.wo, w.wGateUp, w.wDown].every((t) => (t.dtype === 'int32') === bf16);
    if (!ok)
      throw new Error(`decodeLayers: layer ${l} does not fit x [${x.shape}]: k [${k.shape}], wqkv [${w.wqkv.shape}] ${w.wqkv.dtype} for H ${H}, Hkv ${Hkv}`);
    for (const t of [w.attnNorm, w.wqkv, w.wo, w.mlpNorm, w.wGateUp, w.wDown, k, v]) table.push(offsetOf(be, t));
  });
  return { table, bf16, F, C };
}

const decodeLayersKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as WasmBackendLike & { disposeData(dataId: tf.DataId): boolean };
  const t = inputs as unknown as { x: tf.TensorInfo; cos: tf.TensorInfo; sin: tf.TensorInfo; mask?: tf.TensorInfo };
  const { H, Hkv, eps, slot, span, table, bf16, F, C } = attrs as unknown as Attrs;
  const [M, Dm] = t.x.shape;
  const D = t.cos.shape[1];
  const L = table.length / 8;
  const ok =
    Number.isInteger(L) &&
    t.cos.shape[0] === M &&
    t.sin.shape.join() === t.cos.shape.join() &&
    (!t.mask || t.mask.shape.join() === `${M},${span}`) &&
    slot < span &&
    span <= C;
  if (!ok) throw new Error(`decodeLayers: bad operands x [${t.x.shape}], cos [${t.cos.shape}], ${table.length / 8} layers, slot ${slot}, span ${span}`);
  const k = cpuKernelsFor(be);
  const out = be.makeOutput([M, Dm], 'float32');
  // one buffer: the layers' scratch, then spare [M, Dm], then the table
  const scratchBytes = k.decodeScratchBytes(M, Dm, H, Hkv, D, F, span);
  const buffer = be.makeOutput([(scratchBytes + M * Dm * 4) / 4 + table.length], 'float32');
  const at = (x: tf.TensorInfo) => offsetOf(be, x);
  const scratch = at(buffer);
  const spare = scratch + scratchBytes;
  const tableAt = spare + M * Dm * 4;
  new Int32Array(wasmMemoryOf(be).buffer, tableAt, table.length).set(table);
  const args = [tableAt, L, at(t.x), at(out), spare, at(t.cos), at(t.sin), t.mask ? at(t.mask) : 0, scratch] as const;
  const sizes = [M, Dm, H, Hkv, D, F, C, slot, span, eps, bf16 ? 1 : 0] as const;
  const pool = CpuThreadPool.of(be); // null on one thread
  if (pool) pool.decodeLayers(...args, ...sizes);
  else k.decodeLayers(...args, ...sizes, 0, 1, 0);
  be.disposeData(buffer.dataId);
  return out;
};

const KERNELS = { [DECODE_LAYERS]: decodeLayersKernel };

/**
 * Can the fused decode step run here: switched on, wasm backend with SIMD, and shapes the kernels
 * take (Dm, F multiples of 4 and of 8 as GEMV columns, D of 8)?
 */
export function wasmDecodeStepAvailable(hiddenSize: number, headDim: number, intermediateSize: number): boolean {
  const shapesOk = hiddenSize % 8 === 0 && headDim % 8 === 0 && intermediateSize % 8 === 0;
  return enabled && shapesOk && registerCpuKernels(KERNELS);
}

/**
 * All decoder layers for M sequences of one new token each: x [M, Dm] -> [M, Dm]. Each layer
 * writes the token's key and value into its cache tensors k, v [M, Hkv, C, D] at `attrs.slot`,
 * then attends over their first `attrs.span` slots, masked by `mask` [M, span] (additive) when
 * given. cos, sin [M, D]: the RoPE tables at each sequence's position (ropeTables). `layers` and
 * `kvs` go in as decodeLayerTable's offsets, so they must stay alive through the call. Wasm only.
 */
export function wasmDecodeLayers(
  x: tf.Tensor2D,
  layers: DecodeLayerWeights[],
  kvs: DecodeLayerKV[],
  cos: tf.Tensor2D,
  sin: tf.Tensor2D,
  mask: tf.Tensor2D | null,
  attrs: Pick<DecodeLayersAttrs, 'H' | 'Hkv' | 'eps' | 'slot' | 'span'>,
): tf.Tensor2D {
  const inputs: tf.NamedTensorMap = { x, cos, sin };
  if (mask) inputs.mask = mask;
  const full: DecodeLayersAttrs = { ...attrs, ...decodeLayerTable(x, layers, kvs, attrs.H, attrs.Hkv) };
  return tf.engine().runKernel(DECODE_LAYERS, inputs, full as Attrs) as tf.Tensor2D;
}
