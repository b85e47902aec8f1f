// Custom tfjs-wasm kernels for decode attention. tfjs-wasm sends a batched matMul (one product
// per sequence and kv head) to a scalar C++ loop that reaches ~1-2 GB/s, which makes attention
// the largest cost of a decode step at long context. These two kernels are hand-assembled
// WebAssembly SIMD (f32x4) functions that run in tfjs-wasm's own memory, so tensors are read
// where they lie, with no copy:
//   qkT(a [P, R, D], b [P, C, D]) -> [P, R, S]   out[p,r,s] = sum_d a[p,r,d] b[p,s,d]
//   pv (a [P, R, S], b [P, C, D]) -> [P, R, D]   out[p,r,d] = sum_s a[p,r,s] b[p,s,d]
// over the first S <= C slots of b (a KV cache with spare capacity is read without a copy).
// They are registered as tfjs kernels for the wasm backend only; other backends, or D not a
// multiple of 4, use tf.matMul.

import * as tf from '@tensorflow/tfjs-core';

// ---- a minimal WebAssembly encoder (what these kernels and wasmFused.ts's use)

export const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
export const sleb = (n: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
};
export const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
export const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
export const name = (s: string) => vec([...s].map((c) => [c.charCodeAt(0)]));

export const I32 = 0x7f;
export const V128 = 0x7b;
export const get = (i: number) => [0x20, ...uleb(i)];
export const set = (i: number) => [0x21, ...uleb(i)];
export const i32 = (n: number) => [0x41, ...sleb(n)];
export const ADD = [0x6a];
export const MUL = [0x6c];
export const F32_LOAD = [0x2a, 2, 0];
export const F32_STORE = [0x38, 2, 0];
export const F32_ADD = [0x92];
export const V_LOAD = [0xfd, 0x00, 2, 0];
export const V_STORE = [0xfd, 0x0b, 2, 0];
export const V_ZERO = [0xfd, 0x0c, ...new Array<number>(16).fill(0)];
export const F32X4_SPLAT = [0xfd, 0x13];
export const F32X4_ADD = [0xfd, 0xe4, 0x01];
export const F32X4_MUL = [0xfd, 0xe6, 0x01];
export const LANE = (i: number) => [0xfd, 0x1f, i];
export const addTo = (v: number, by: number[]) => [...get(v), ...by, ...ADD, ...set(v)];

// for (v = 0; v < limit; v += step) body
// prettier-ignore
export const forLoop = (v: number, limit: number, step: number, body: number[]) => [
  ...i32(0), ...set(v),
  0x02, 0x40, 0x03, 0x40, // block, loop
  ...get(v), ...get(limit), 0x49, 0x45, 0x0d, 1, // br_if !(v < limit) to the block end
  ...body,
  ...addTo(v, i32(step)),
  0x0c, 0, // br loop
  0x0b, 0x0b,
];

// parameters of both functions: a, b, out (byte offsets), P, R, S, D, C (b's slots per pair)
const [A, B, OUT, P, R, S, D, C] = [0, 1, 2, 3, 4, 5, 6, 7];
// locals: 8 i32 then one v128
const [p, r, s, d, aPtr, bPtr, rowBytes, o, vacc] = [8, 9, 10, 11, 12, 13, 14, 15, 16];
// prettier-ignore
const LOCALS = vec([[8, I32], [1, V128]]);

// out[p,r,s] = dot(a[p,r,:], b[p,s,:]). Loop order p, s, r: each row of b (a key) is read
// from memory once and stays in L1 while all R rows of a (the queries of a kv group) use it.
function qkTBody(): number[] {
  // prettier-ignore
  return [
    ...LOCALS,
    ...get(D), ...i32(4), ...MUL, ...set(rowBytes),
    ...forLoop(p, P, 1, [
      // bPtr = b + p*C*rowBytes
      ...get(B), ...get(p), ...get(C), ...MUL, ...get(rowBytes), ...MUL, ...ADD, ...set(bPtr),
      ...forLoop(s, S, 1, [
        ...forLoop(r, R, 1, [
          // aPtr = a + (p*R + r) * rowBytes, o = out + ((p*R + r)*S + s) * 4
          ...get(p), ...get(R), ...MUL, ...get(r), ...ADD, ...set(o),
          ...get(A), ...get(o), ...get(rowBytes), ...MUL, ...ADD, ...set(aPtr),
          ...get(OUT), ...get(o), ...get(S), ...MUL, ...get(s), ...ADD, ...i32(4), ...MUL, ...ADD, ...set(o),
          ...V_ZERO, ...set(vacc),
          ...forLoop(d, rowBytes, 16, [
            ...get(vacc),
            ...get(aPtr), ...get(d), ...ADD, ...V_LOAD,
            ...get(bPtr), ...get(d), ...ADD, ...V_LOAD,
            ...F32X4_MUL, ...F32X4_ADD, ...set(vacc),
          ]),
          ...get(o),
          ...get(vacc), ...LANE(0), ...get(vacc), ...LANE(1), ...F32_ADD,
          ...get(vacc), ...LANE(2), ...F32_ADD, ...get(vacc), ...LANE(3), ...F32_ADD,
          ...F32_STORE,
        ]),
        ...addTo(bPtr, get(rowBytes)),
      ]),
    ]),
    0x0b,
  ];
}

// out[p,r,:] = sum_s a[p,r,s] * b[p,s,:]. Loop order p, s, r: each row of b (a value) is read
// from memory once; the R output rows of the group stay in L1 as accumulators.
function pvBody(): number[] {
  // prettier-ignore
  return [
    ...LOCALS,
    ...get(D), ...i32(4), ...MUL, ...set(rowBytes),
    // zero the output: P*R rows of D floats
    ...get(P), ...get(R), ...MUL, ...get(rowBytes), ...MUL, ...set(aPtr),
    ...forLoop(d, aPtr, 16, [...get(OUT), ...get(d), ...ADD, ...V_ZERO, ...V_STORE]),
    ...forLoop(p, P, 1, [
      // bPtr = b + p*C*rowBytes
      ...get(B), ...get(p), ...get(C), ...MUL, ...get(rowBytes), ...MUL, ...ADD, ...set(bPtr),
      ...forLoop(s, S, 1, [
        ...forLoop(r, R, 1, [
          // weight a[p,r,s], output row o = out + (p*R + r) * rowBytes
          ...get(p), ...get(R), ...MUL, ...get(r), ...ADD, ...set(o),
          ...get(A), ...get(o), ...get(S), ...MUL, ...get(s), ...ADD, ...i32(4), ...MUL, ...ADD,
          ...F32_LOAD, ...F32X4_SPLAT, ...set(vacc),
          ...get(OUT), ...get(o), ...get(rowBytes), ...MUL, ...ADD, ...set(o),
          ...forLoop(d, rowBytes, 16, [
            ...get(o), ...get(d), ...ADD,
            ...get(o), ...get(d), ...ADD, ...V_LOAD,
            ...get(vacc), ...get(bPtr), ...get(d), ...ADD, ...V_LOAD, ...F32X4_MUL, ...F32X4_ADD,
            ...V_STORE,
          ]),
        ]),
        ...addTo(bPtr, get(rowBytes)),
      ]),
    ]),
    0x0b,
  ];
}

/** The module's bytes: imports env.memory, exports qkT and pv. */
export function attentionWasmBytes(): Uint8Array<ArrayBuffer> {
  const type = section(1, vec([[0x60, ...vec(new Array(8).fill([I32])), 0]]));
  const imports = section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, 0x01]]));
  const funcs = section(3, vec([[0], [0]]));
  const exports = section(
    7,
    vec([
      [...name('qkT'), 0x00, 0],
      [...name('pv'), 0x00, 1],
    ]),
  );
  const code = section(10, vec([qkTBody(), pvBody()].map((b) => [...uleb(b.length), ...b])));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...type, ...imports, ...funcs, ...exports, ...code]);
}

// ---- tfjs kernels

type KernelFn = (a: number, b: number, out: number, P: number, R: number, S: number, D: number, C: number) => void;
export interface WasmBackendLike {
  wasm: { asm?: { memory?: WebAssembly.Memory } };
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
}

const QKT = 'InferenceLabQKT';
const PV = 'InferenceLabPV';
// one instance per wasm memory (a re-created backend gets its own)
const instances = new WeakMap<WebAssembly.Memory, { qkT: KernelFn; pv: KernelFn }>();
let unavailable = false;
let enabled = true;

/** Turn the SIMD kernels off (or back on) to compare with tf.matMul; on by default. */
export function useWasmAttention(on: boolean): void {
  enabled = on;
}

function kernelsFor(backend: WasmBackendLike): { qkT: KernelFn; pv: KernelFn } {
  const memory = backend.wasm.asm?.memory;
  if (!memory) throw new Error('tfjs-wasm memory is not reachable');
  let k = instances.get(memory);
  if (!k) {
    const module = new WebAssembly.Module(attentionWasmBytes());
    k = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as { qkT: KernelFn; pv: KernelFn };
    instances.set(memory, k);
  }
  return k;
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
    const at = (t: tf.TensorInfo) => be.dataIdMap.get(t.dataId).memoryOffset;
    kernelsFor(be)[which](at(a), at(b), at(out), Pn, Rn, Sn, Dn, Cn);
    return out;
  };
}

/** Can the SIMD kernels run here (wasm backend, SIMD WebAssembly, head dim a multiple of 4)? */
export function wasmAttentionAvailable(headDim: number): boolean {
  if (!enabled || unavailable || headDim % 4 !== 0 || tf.getBackend() !== 'wasm') return false;
  try {
    kernelsFor(tf.backend() as unknown as WasmBackendLike);
  } catch {
    unavailable = true; // no SIMD, or a tfjs-wasm build without an exported memory
    return false;
  }
  if (!tf.getKernel(QKT, 'wasm')) tf.registerKernel({ kernelName: QKT, backendName: 'wasm', kernelFunc: kernel('qkT') });
  if (!tf.getKernel(PV, 'wasm')) tf.registerKernel({ kernelName: PV, backendName: 'wasm', kernelFunc: kernel('pv') });
  return true;
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
