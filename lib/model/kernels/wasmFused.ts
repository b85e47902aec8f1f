// Fused tfjs-wasm kernels for the decode step's small ops. A decode step of a small model is
// mostly tiny kernels, each costing ~6 us of dispatch whatever it computes; these replace
// chains of them with one call each. Hand-assembled WebAssembly SIMD (f32x4) in tfjs-wasm's own
// memory, built and registered like wasmAttention.ts's:
//   addRmsNorm(x [N, Dm], delta [N, Dm] | none, w [Dm]) -> sum = x + delta, out = rmsnorm(sum) * w
//     (vLLM's fused_add_rms_norm; HF's order: w * (sum * 1/sqrt(mean(sum^2) + eps)))
//   rope(qkv [B*T, (H + 2*Hkv) * D], cos, sin [B*T, D]) -> q [B*T, H, D] rotated,
//     k [B, Hkv, T, D] rotated, v [B, Hkv, T, D] (HF's x*cos + rotate_half(x)*sin, no D x D
//     product; k and v come out head-major, as the KV cache takes them)
//   siluMul(gu [N, 2F]) -> [N, F] = silu(gate) * up, gu = [gate | up] (the fused gate and up
//     projection); silu(g) = g / (1 + exp(-g)), exp a degree-6 polynomial (rel. error ~2e-7)
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

// ---- rope(qkv, cos, sin, q, k, v, B, T, H, Hkv, D)

const IF_I32 = [0x04, I32];
const IF = [0x04, 0x40];
const LT_U = [0x49];
const DIV_U = [0x6e];
const REM_U = [0x70];
const SUB = [0x6b];
const F32X4_SUB = [0xfd, 0xe5, 0x01];

// prettier-ignore
function ropeBody(): number[] {
  const [QKV, COS, SIN, Q, K, V, BB, T, H, HKV, D] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const [n, j, i, src, dst, cs, half, rowBytes, heads, b, t, nn, tmp] = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];
  const [x1, x2, c, sn] = [24, 25, 26, 27];
  const at = (base: number, off: number[]) => [...get(base), ...off, ...ADD];
  // dst of a k or v head: base + ((b*Hkv + head)*T + t) * rowBytes, head on the stack
  const headMajor = (base: number) => [
    ...set(tmp), ...get(b), ...get(HKV), ...MUL, ...get(tmp), ...ADD, ...get(T), ...MUL, ...get(t), ...ADD,
    ...get(rowBytes), ...MUL, ...get(base), ...ADD,
  ];
  return [
    ...vec([[13, I32], [4, V128]]),
    ...get(D), ...i32(4), ...MUL, ...set(rowBytes),
    ...get(D), ...i32(2), ...MUL, ...set(half),
    ...get(H), ...get(HKV), ...i32(2), ...MUL, ...ADD, ...set(heads),
    ...get(BB), ...get(T), ...MUL, ...set(nn),
    ...forLoop(n, nn, 1, [
      ...get(n), ...get(T), ...DIV_U, ...set(b),
      ...get(n), ...get(T), ...REM_U, ...set(t),
      // this token's cos/sin row: the first D/2 of its D (the halves repeat)
      ...get(n), ...get(rowBytes), ...MUL, ...set(cs),
      ...forLoop(j, heads, 1, [
        ...get(n), ...get(heads), ...MUL, ...get(j), ...ADD, ...get(rowBytes), ...MUL, ...get(QKV), ...ADD, ...set(src),
        // q: token-major; k, v: head-major
        ...get(j), ...get(H), ...LT_U, ...IF_I32,
        ...get(n), ...get(H), ...MUL, ...get(j), ...ADD, ...get(rowBytes), ...MUL, ...get(Q), ...ADD,
        ...ELSE,
        ...get(j), ...get(H), ...get(HKV), ...ADD, ...LT_U, ...IF_I32,
        ...get(j), ...get(H), ...SUB, ...headMajor(K),
        ...ELSE,
        ...get(j), ...get(H), ...SUB, ...get(HKV), ...SUB, ...headMajor(V),
        ...END,
        ...END,
        ...set(dst),
        ...get(j), ...get(H), ...get(HKV), ...ADD, ...LT_U, ...IF,
        // out1 = x1*c - x2*s, out2 = x2*c + x1*s
        ...forLoop(i, half, 16, [
          ...at(src, get(i)), ...V_LOAD, ...set(x1),
          ...at(src, [...get(half), ...get(i), ...ADD]), ...V_LOAD, ...set(x2),
          ...at(COS, [...get(cs), ...get(i), ...ADD]), ...V_LOAD, ...set(c),
          ...at(SIN, [...get(cs), ...get(i), ...ADD]), ...V_LOAD, ...set(sn),
          ...at(dst, get(i)),
          ...get(x1), ...get(c), ...F32X4_MUL, ...get(x2), ...get(sn), ...F32X4_MUL, ...F32X4_SUB, ...V_STORE,
          ...at(dst, [...get(half), ...get(i), ...ADD]),
          ...get(x2), ...get(c), ...F32X4_MUL, ...get(x1), ...get(sn), ...F32X4_MUL, ...F32X4_ADD, ...V_STORE,
        ]),
        ...ELSE,
        ...forLoop(i, rowBytes, 16, [...at(dst, get(i)), ...at(src, get(i)), ...V_LOAD, ...V_STORE]),
        ...END,
      ]),
    ]),
    0x0b,
  ];
}

// ---- siluMul(gu, out, N, F)

const F32X4_DIV = [0xfd, 0xe7, 0x01];
const F32X4_MIN = [0xfd, 0xe8, 0x01];
const F32X4_MAX = [0xfd, 0xe9, 0x01];
const F32X4_NEG = [0xfd, 0xe1, 0x01];
const F32X4_NEAREST = [0xfd, 0x6a];
const I32X4_TRUNC_SAT_F32X4 = [0xfd, 0xf8, 0x01];
const I32X4_ADD = [0xfd, 0xae, 0x01];
const I32X4_SHL = [0xfd, 0xab, 0x01];
// v128.const of four equal f32 lanes
const splat = (x: number): number[] => {
  const bytes = new Uint8Array(new Float32Array([x, x, x, x]).buffer);
  return [0xfd, 0x0c, ...bytes];
};
const splatI32 = (x: number): number[] => [0xfd, 0x0c, ...new Uint8Array(new Int32Array([x, x, x, x]).buffer)];

// exp(x) of the v128 on the stack (x in [-88, 88] after clamping): x = n ln2 + r, |r| <= ln2/2,
// exp(x) = 2^n * p(r), p the Taylor polynomial of degree 6 (Horner); 2^n built in the exponent bits
// prettier-ignore
function expF32x4(x: number, n: number, r: number): number[] {
  const coeffs = [1 / 720, 1 / 120, 1 / 24, 1 / 6, 1 / 2, 1, 1];
  return [
    ...splat(88), ...F32X4_MIN, ...splat(-88), ...F32X4_MAX, ...set(x),
    ...get(x), ...splat(Math.LOG2E), ...F32X4_MUL, ...F32X4_NEAREST, ...set(n),
    // r = x - n*ln2_hi - n*ln2_lo
    ...get(x), ...get(n), ...splat(0.693359375), ...F32X4_MUL, ...F32X4_SUB,
    ...get(n), ...splat(-2.12194440e-4), ...F32X4_MUL, ...F32X4_SUB, ...set(r),
    ...splat(coeffs[0]),
    ...coeffs.slice(1).flatMap((c) => [...get(r), ...F32X4_MUL, ...splat(c), ...F32X4_ADD]),
    // * 2^n: (n + 127) << 23 as f32 bits
    ...get(n), ...I32X4_TRUNC_SAT_F32X4, ...splatI32(127), ...I32X4_ADD, ...i32(23), ...I32X4_SHL,
    ...F32X4_MUL,
  ];
}

// prettier-ignore
function siluMulBody(): number[] {
  const [GU, OUT, N, F] = [0, 1, 2, 3];
  const [row, f, g, o, fBytes] = [4, 5, 6, 7, 8];
  const [vg, x, n, r] = [9, 10, 11, 12];
  return [
    ...vec([[5, I32], [4, V128]]),
    ...get(F), ...i32(4), ...MUL, ...set(fBytes),
    ...forLoop(row, N, 1, [
      // g = gu + row * 2F * 4 (up at g + F*4), o = out + row * F * 4
      ...get(GU), ...get(row), ...get(fBytes), ...MUL, ...i32(2), ...MUL, ...ADD, ...set(g),
      ...get(OUT), ...get(row), ...get(fBytes), ...MUL, ...ADD, ...set(o),
      ...forLoop(f, fBytes, 16, [
        ...get(o), ...get(f), ...ADD,
        ...get(g), ...get(f), ...ADD, ...V_LOAD, ...TEE(vg),
        ...splat(1), ...get(vg), ...F32X4_NEG, ...expF32x4(x, n, r), ...F32X4_ADD, ...F32X4_DIV,
        ...get(g), ...get(fBytes), ...ADD, ...get(f), ...ADD, ...V_LOAD, ...F32X4_MUL,
        ...V_STORE,
      ]),
    ]),
    0x0b,
  ];
}

/** The module's bytes: imports env.memory, exports addRmsNorm, rope and siluMul. */
export function fusedWasmBytes(): Uint8Array<ArrayBuffer> {
  const type = section(
    1,
    vec([
      [0x60, ...vec([...new Array(8).fill([I32]), [F32]]), 0],
      [0x60, ...vec(new Array(11).fill([I32])), 0],
      [0x60, ...vec(new Array(4).fill([I32])), 0],
    ]),
  );
  const imports = section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, 0x01]]));
  const funcs = section(3, vec([[0], [1], [2]]));
  const exports = section(
    7,
    vec([
      [...name('addRmsNorm'), 0x00, 0],
      [...name('rope'), 0x00, 1],
      [...name('siluMul'), 0x00, 2],
    ]),
  );
  const code = section(10, vec([addRmsNormBody(), ropeBody(), siluMulBody()].map((b) => [...uleb(b.length), ...b])));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...type, ...imports, ...funcs, ...exports, ...code]);
}

// ---- tfjs kernels

interface FusedKernels {
  rope(
    qkv: number,
    cos: number,
    sin: number,
    q: number,
    k: number,
    v: number,
    B: number,
    T: number,
    H: number,
    Hkv: number,
    D: number,
  ): void;
  siluMul(gu: number, out: number, N: number, F: number): void;
  addRmsNorm(x: number, delta: number, w: number, sum: number, out: number, N: number, Dm: number, hasDelta: number, eps: number): void;
}

const ADD_RMS_NORM = 'InferenceLabAddRmsNorm';
const ROPE = 'InferenceLabRope';
const SILU_MUL = 'InferenceLabSiluMul';
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
  const at = (t: tf.TensorInfo) => be.dataIdMap.get(t.dataId).memoryOffset;
  kernelsFor(be).rope(at(qkv), at(cos), at(sin), at(q), at(k), at(v), B, T, H, Hkv, D);
  return [q, k, v];
};

const siluMulKernel: tf.KernelFunc = ({ inputs, backend }) => {
  const be = backend as unknown as WasmBackendLike;
  const { gu } = inputs as { gu: tf.TensorInfo };
  const [N, F2] = gu.shape;
  if (gu.shape.length !== 2 || F2 % 8 !== 0 || gu.dtype !== 'float32') throw new Error(`siluMul: bad operand [${gu.shape}] ${gu.dtype}`);
  const out = be.makeOutput([N, F2 / 2], 'float32');
  const at = (t: tf.TensorInfo) => be.dataIdMap.get(t.dataId).memoryOffset;
  kernelsFor(be).siluMul(at(gu), at(out), N, F2 / 2);
  return out;
};

/** Can the fused kernels run here (wasm backend, SIMD WebAssembly, Dm and F multiples of 4, D of 8)? */
export function wasmFusedAvailable(hiddenSize: number, headDim: number, intermediateSize: number): boolean {
  const shapesOk = hiddenSize % 4 === 0 && headDim % 8 === 0 && intermediateSize % 4 === 0;
  if (!enabled || unavailable || !shapesOk || tf.getBackend() !== 'wasm') return false;
  try {
    kernelsFor(tf.backend() as unknown as WasmBackendLike);
  } catch {
    unavailable = true;
    return false;
  }
  if (!tf.getKernel(ADD_RMS_NORM, 'wasm'))
    tf.registerKernel({ kernelName: ADD_RMS_NORM, backendName: 'wasm', kernelFunc: addRmsNormKernel });
  if (!tf.getKernel(SILU_MUL, 'wasm')) tf.registerKernel({ kernelName: SILU_MUL, backendName: 'wasm', kernelFunc: siluMulKernel });
  if (!tf.getKernel(ROPE, 'wasm')) tf.registerKernel({ kernelName: ROPE, backendName: 'wasm', kernelFunc: ropeKernel });
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
