// The fused CPU decode step on tfjs-wasm: each decoder layer of a decode step (one new token per
// sequence, a few sequences) is one call into wasm, decodeLayer in assembly/decode.ts, instead of
// the 15 tfjs kernels per layer of LlamaModel's op-by-op path (each ~6-10 us of dispatch, whatever
// it computes; a target decode step: 13 kernels instead of 125, counted with tf.profile):
//   decodeLayer(x [M, Dm], the layer's weights, the layer's KV cache [M, Hkv, C, D], cos, sin [M, D],
//               mask [M, S] | none) -> [M, Dm]
//   rmsnorm -> qkv GEMV -> RoPE -> k, v written into the cache at slot `slot` -> attention over the
//   cache's first S slots -> o GEMV + residual -> rmsnorm -> gate/up GEMV -> silu * up -> down GEMV
//   + residual
// The same kernels as the op path's (wasmGemv.ts, wasmFused.ts, wasmAttention.ts), so the same
// sums but for the softmax (exp4's polynomial here, tfjs-wasm's own exp in tf.softmax). The cache
// is written in place: a cache hands its layer tensors through KVCache.writableLayer (the
// contiguous cache in 'inplace' mode does). llama.ts takes this path on wasm when it applies
// (decodeStepApplies) and keeps the op path as baseline and oracle; useWasmDecodeStep(false)
// turns it off.

import * as tf from '@tensorflow/tfjs-core';

import { cpuKernelsFor, offsetOf, registerCpuKernels, type WasmBackendLike } from './cpu';
import { gemvWeightShape, type PackedMatrices } from './wasmGemv';

/** The fused decode step's tfjs kernel name (tf.profile lists a decoder layer under it). */
export const DECODE_LAYER = 'InferenceLabDecodeLayer';
let enabled = true;

/** Turn the fused decode step off (or back on) to compare with the op-by-op path; on by default. */
export function useWasmDecodeStep(on: boolean): void {
  enabled = on;
}

/** Whether the fused decode step is switched on (useWasmDecodeStep). */
export function wasmDecodeStepEnabled(): boolean {
  return enabled;
}

/** One layer's weights as decodeLayer reads them: the norms' gains, and the four matrices as the GEMV's tiles, in one format. */
export interface DecodeLayerWeights extends PackedMatrices {
  attnNorm: tf.Tensor1D;
  mlpNorm: tf.Tensor1D;
}

/** The sizes and the step's place in the cache. */
export interface DecodeLayerAttrs {
  H: number;
  Hkv: number;
  eps: number;
  /** the cache slot this step's keys and values go to */
  slot: number;
  /** key slots attended over: the cache's first `span` */
  span: number;
}

type Attrs = DecodeLayerAttrs & tf.NamedAttrMap;

const decodeLayerKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as WasmBackendLike & { disposeData(dataId: tf.DataId): boolean };
  const t = inputs as unknown as DecodeLayerWeights & {
    x: tf.TensorInfo;
    k: tf.TensorInfo;
    v: tf.TensorInfo;
    cos: tf.TensorInfo;
    sin: tf.TensorInfo;
    mask?: tf.TensorInfo;
  };
  const { H, Hkv, eps, slot, span } = attrs as unknown as Attrs;
  const [M, Dm] = t.x.shape;
  const [, , C, D] = t.k.shape;
  const bf16 = t.wqkv.dtype === 'int32';
  const [qkv, o, gateUp, down] = [t.wqkv, t.wo, t.wGateUp, t.wDown].map(gemvWeightShape); // [K, N] of each
  const F = down.K;
  const ok =
    t.k.shape.join() === `${M},${Hkv},${C},${D}` &&
    t.v.shape.join() === t.k.shape.join() &&
    t.cos.shape.join() === `${M},${D}` &&
    t.sin.shape.join() === `${M},${D}` &&
    (!t.mask || t.mask.shape.join() === `${M},${span}`) &&
    qkv.K === Dm &&
    qkv.N === (H + 2 * Hkv) * D &&
    o.K === H * D &&
    o.N === Dm &&
    gateUp.K === Dm &&
    gateUp.N === 2 * F &&
    down.N === Dm &&
    [t.wo, t.wGateUp, t.wDown].every((w) => w.dtype === t.wqkv.dtype) &&
    slot < span &&
    span <= C;
  if (!ok)
    throw new Error(
      `decodeLayer: bad operands x [${t.x.shape}], k [${t.k.shape}], wqkv [${t.wqkv.shape}] for H ${H}, Hkv ${Hkv}, slot ${slot}, span ${span}`,
    );
  const k = cpuKernelsFor(be);
  const out = be.makeOutput([M, Dm], 'float32');
  const scratch = be.makeOutput([k.decodeScratchBytes(M, Dm, H, Hkv, D, F, span) / 4], 'float32');
  const at = (x: tf.TensorInfo) => offsetOf(be, x);
  k.decodeLayer(
    at(t.x),
    at(out),
    at(t.attnNorm),
    at(t.wqkv),
    at(t.wo),
    at(t.mlpNorm),
    at(t.wGateUp),
    at(t.wDown),
    at(t.k),
    at(t.v),
    at(t.cos),
    at(t.sin),
    t.mask ? at(t.mask) : 0,
    at(scratch),
    M,
    Dm,
    H,
    Hkv,
    D,
    F,
    C,
    slot,
    span,
    eps,
    bf16 ? 1 : 0,
  );
  be.disposeData(scratch.dataId);
  return out;
};

const KERNELS = { [DECODE_LAYER]: decodeLayerKernel };

/**
 * Can the fused decode step run here: switched on, wasm backend with SIMD, and shapes the kernels
 * take (Dm, F multiples of 4 and of 8 as GEMV columns, D of 8)?
 */
export function wasmDecodeStepAvailable(hiddenSize: number, headDim: number, intermediateSize: number): boolean {
  const shapesOk = hiddenSize % 8 === 0 && headDim % 8 === 0 && intermediateSize % 8 === 0;
  return enabled && shapesOk && registerCpuKernels(KERNELS);
}

/**
 * One decoder layer for M sequences of one new token each: x [M, Dm] -> [M, Dm]. Writes the
 * token's key and value into k, v [M, Hkv, C, D] (the cache's own tensors) at `attrs.slot`, then
 * attends over their first `attrs.span` slots, masked by `mask` [M, span] (additive) when given.
 * cos, sin [M, D]: the RoPE tables at each sequence's position (ropeTables). Wasm only.
 */
export function wasmDecodeLayer(
  x: tf.Tensor2D,
  w: DecodeLayerWeights,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  cos: tf.Tensor2D,
  sin: tf.Tensor2D,
  mask: tf.Tensor2D | null,
  attrs: DecodeLayerAttrs,
): tf.Tensor2D {
  const inputs: tf.NamedTensorMap = { x, ...w, k, v, cos, sin };
  if (mask) inputs.mask = mask;
  return tf.engine().runKernel(DECODE_LAYER, inputs, attrs as Attrs) as tf.Tensor2D;
}
