// Fused tfjs-wasm kernels for the decode step's small ops. A decode step of a small model is
// mostly tiny kernels, each costing ~6 us of dispatch whatever it computes; these replace
// chains of them with one call each. Hand-assembled WebAssembly SIMD (f32x4) in tfjs-wasm's own
// memory, built and registered like wasmAttention.ts's:
//   addRmsNorm(x [N, Dm], delta [N, Dm] | none, w [Dm]) -> sum = x + delta, out = rmsnorm(sum) * w
//     (vLLM's fused_add_rms_norm; HF's order: w * (sum * 1/sqrt(mean(sum^2) + eps)))
// Registered for the wasm backend only; llama.ts keeps the plain tfjs path for the others.

import * as tf from '@tensorflow/tfjs-core';

import {
  ADD,
  F32_ADD,
  F32X4_ADD,
  F32X4_MUL,
  F32X4_SPLAT,
  forLoop,
  get,
  I32,
  i32,
  LANE,
  MUL,
  name,
  section,
  set,
  V128,
  V_LOAD,
  V_STORE,
  V_ZERO,
  vec,
  uleb,
  type WasmBackendLike,
} from './wasmAttention';

const F32 = 0x7d;
const TEE = (i: number) => [0x22, i];
const IF_V128 = [0x04, V128];
const ELSE = [0x05];
const END = [0x0b];
const F32_DIV = [0x95];
const F32_SQRT = [0x91];
const F32_CONVERT_I32 = [0xb2];
const F32_ONE = [0x43, 0x00, 0x00, 0x80, 0x3f];

// ---- addRmsNorm(x, delta, w, sum, out, N, Dm, hasDelta, eps)

// prettier-ignore
function addRmsNormBody(): number[] {
  const [X, DELTA, W, SUM, OUT, N, DM, HAS_DELTA, EPS] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [n, d, rowBytes, xr, dr, sr, or] = [9, 10, 11, 12, 13, 14, 15];
  const [vacc, v] = [16, 17];
  const inv = 18;
  return [
    ...vec([[7, I32], [2, V128], [1, F32]]),
    ...get(DM), ...i32(4), ...MUL, ...set(rowBytes),
    ...forLoop(n, N, 1, [
      // row pointers: base + n * rowBytes
      ...get(n), ...get(rowBytes), ...MUL, ...set(or),
      ...get(X), ...get(or), ...ADD, ...set(xr),
      ...get(DELTA), ...get(or), ...ADD, ...set(dr),
      ...get(SUM), ...get(or), ...ADD, ...set(sr),
      ...get(OUT), ...get(or), ...ADD, ...set(or),
      // sum = x + delta, stored; vacc += sum^2
      ...V_ZERO, ...set(vacc),
      ...forLoop(d, rowBytes, 16, [
        ...get(sr), ...get(d), ...ADD,
        ...get(HAS_DELTA), ...IF_V128,
        ...get(xr), ...get(d), ...ADD, ...V_LOAD, ...get(dr), ...get(d), ...ADD, ...V_LOAD, ...F32X4_ADD,
        ...ELSE,
        ...get(xr), ...get(d), ...ADD, ...V_LOAD,
        ...END,
        ...TEE(v), ...V_STORE,
        ...get(vacc), ...get(v), ...get(v), ...F32X4_MUL, ...F32X4_ADD, ...set(vacc),
      ]),
      // inv = 1 / sqrt(sum(sum^2) / Dm + eps)
      ...F32_ONE,
      ...get(vacc), ...LANE(0), ...get(vacc), ...LANE(1), ...F32_ADD,
      ...get(vacc), ...LANE(2), ...F32_ADD, ...get(vacc), ...LANE(3), ...F32_ADD,
      ...get(DM), ...F32_CONVERT_I32, ...F32_DIV, ...get(EPS), ...F32_ADD, ...F32_SQRT, ...F32_DIV,
      ...set(inv),
      ...get(inv), ...F32X4_SPLAT, ...set(vacc),
      // out = (sum * inv) * w
      ...forLoop(d, rowBytes, 16, [
        ...get(or), ...get(d), ...ADD,
        ...get(sr), ...get(d), ...ADD, ...V_LOAD, ...get(vacc), ...F32X4_MUL,
        ...get(W), ...get(d), ...ADD, ...V_LOAD, ...F32X4_MUL,
        ...V_STORE,
      ]),
    ]),
    0x0b,
  ];
}

/** The module's bytes: imports env.memory, exports addRmsNorm. */
export function fusedWasmBytes(): Uint8Array<ArrayBuffer> {
  const type = section(1, vec([[0x60, ...vec([...new Array(8).fill([I32]), [F32]]), 0]]));
  const imports = section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, 0x01]]));
  const funcs = section(3, vec([[0]]));
  const exports = section(7, vec([[...name('addRmsNorm'), 0x00, 0]]));
  const code = section(10, vec([addRmsNormBody()].map((b) => [...uleb(b.length), ...b])));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...type, ...imports, ...funcs, ...exports, ...code]);
}

// ---- tfjs kernels

interface FusedKernels {
  addRmsNorm(x: number, delta: number, w: number, sum: number, out: number, N: number, Dm: number, hasDelta: number, eps: number): void;
}

const ADD_RMS_NORM = 'InferenceLabAddRmsNorm';
const instances = new WeakMap<WebAssembly.Memory, FusedKernels>();
let unavailable = false;
let enabled = true;

/** Turn the fused kernels off (or back on) to compare with the plain tfjs ops; on by default. */
export function useWasmFused(on: boolean): void {
  enabled = on;
}

function kernelsFor(backend: WasmBackendLike): FusedKernels {
  const memory = backend.wasm.asm?.memory;
  if (!memory) throw new Error('tfjs-wasm memory is not reachable');
  let k = instances.get(memory);
  if (!k) {
    const module = new WebAssembly.Module(fusedWasmBytes());
    k = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as FusedKernels;
    instances.set(memory, k);
  }
  return k;
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
  const at = (t: tf.TensorInfo) => be.dataIdMap.get(t.dataId).memoryOffset;
  const { eps } = attrs as { eps: number };
  kernelsFor(be).addRmsNorm(at(x), at(delta ?? x), at(w), at(sum), at(out), N, Dm, delta ? 1 : 0, eps);
  return [sum, out];
};

/** Can the fused kernels run here (wasm backend, SIMD WebAssembly, Dm a multiple of 4)? */
export function wasmFusedAvailable(hiddenSize: number): boolean {
  if (!enabled || unavailable || hiddenSize % 4 !== 0 || tf.getBackend() !== 'wasm') return false;
  try {
    kernelsFor(tf.backend() as unknown as WasmBackendLike);
  } catch {
    unavailable = true;
    return false;
  }
  if (!tf.getKernel(ADD_RMS_NORM, 'wasm'))
    tf.registerKernel({ kernelName: ADD_RMS_NORM, backendName: 'wasm', kernelFunc: addRmsNormKernel });
  return true;
}

/**
 * [x + delta, rmsnorm(x + delta) * w] for x, delta [N, Dm], w [Dm]; without delta, [x's copy,
 * rmsnorm(x) * w]. Wasm only.
 */
export function wasmAddRmsNorm(x: tf.Tensor2D, delta: tf.Tensor2D | null, w: tf.Tensor1D, eps: number): [tf.Tensor2D, tf.Tensor2D] {
  const inputs: tf.NamedTensorMap = delta ? { x, delta, w } : { x, w };
  return tf.engine().runKernel(ADD_RMS_NORM, inputs, { eps }) as unknown as [tf.Tensor2D, tf.Tensor2D];
}
