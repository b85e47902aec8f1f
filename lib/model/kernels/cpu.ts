// The CPU kernels' wasm module (AssemblyScript sources in ./assembly/, compiled by
// scripts/kernels/build.ts into cpuKernels.generated.ts), instantiated over tfjs-wasm's own
// memory so the kernels read and write tensors where they lie, with no copy. One instance per
// memory (a re-created backend gets its own). tfjs-wasm's threaded build (wasmThreads.ts) has a
// shared memory: over it the kernels' shared-memory build is used. Where the engine has relaxed
// SIMD (relaxedSimd.ts), the relaxed build is, whose matmuls use fused multiply-adds (gemv.ts,
// madd); useWasmFma(false) keeps the plain one. wasmAttention.ts, wasmFused.ts, wasmGemv.ts and
// wasmDecode.ts register the kernels with tfjs.

import * as tf from '@tensorflow/tfjs-core';

import { CPU_KERNELS_RELAXED_WASM, CPU_KERNELS_SHARED_RELAXED_WASM, CPU_KERNELS_SHARED_WASM, CPU_KERNELS_WASM } from './cpuKernels.generated';
import { relaxedSimdSupported } from './relaxedSimd';

/** The exports of the module: pointers are byte offsets into the memory it was given. */
export interface CpuKernels {
  qkT(a: number, b: number, out: number, P: number, R: number, S: number, D: number, C: number): void;
  pv(a: number, b: number, out: number, P: number, R: number, S: number, D: number, C: number): void;
  addRmsNorm(x: number, delta: number, w: number, sum: number, out: number, N: number, Dm: number, hasDelta: number, eps: number): void;
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
  /** out [N, Dm] = the columns ids [N] of W [Dm, V] (a tied model's embeddings from its LM head) */
  embedColumns(w: number, ids: number, out: number, N: number, Dm: number, V: number): void;
  /** out[:, n0:n1] of x [M, K] @ W [K, N] (n0, n1 multiples of 8), w W's f32 tiles (wasmGemv.ts) */
  gemm(x: number, w: number, out: number, M: number, K: number, N: number, n0: number, n1: number): void;
  /** the same with w W's bf16 tiles */
  gemmBf16(x: number, w: number, out: number, M: number, K: number, N: number, n0: number, n1: number): void;
  /** thread `thread`'s share of out's columns (gemm, or gemmBf16 with bf16 = 1), split as threads.ts splits a matmul */
  gemmThreads(x: number, w: number, out: number, M: number, K: number, N: number, bf16: number, thread: number, threads: number): void;
  /** a decode step's decoder layers in one call (assembly/decode.ts; wasmDecode.ts registers it) */
  decodeLayers(
    table: number,
    L: number,
    x: number,
    out: number,
    spare: number,
    cos: number,
    sin: number,
    mask: number,
    scratch: number,
    M: number,
    Dm: number,
    H: number,
    Hkv: number,
    D: number,
    F: number,
    C: number,
    slot: number,
    S: number,
    eps: number,
    bf16: number,
    thread: number,
    threads: number,
    sync: number,
  ): void;
  /** the bytes of decodeLayers' scratch buffer for S key slots */
  decodeScratchBytes(M: number, Dm: number, H: number, Hkv: number, D: number, F: number, S: number): number;
  /** 2^-24 where this build's multiply-add is fused (one rounding), 0 where it rounds the product first (gemv.ts) */
  fusedMaddProbe(): number;
}

/** What the kernels use of tfjs-wasm's backend object. */
export interface WasmBackendLike {
  /** the memory: exported by the single-threaded builds (asm.memory), imported by the threaded one (wasmMemory) */
  wasm: { asm?: { memory?: WebAssembly.Memory }; wasmMemory?: WebAssembly.Memory };
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: 'float32' | 'int32'): tf.TensorInfo;
}

const modules = new Map<string, WebAssembly.Module>();
const instances = new WeakMap<WebAssembly.Memory, { relaxed: boolean; kernels: CpuKernels }>();
let fmaWanted = true;

/**
 * Whether the CPU kernels use fused multiply-adds (their relaxed SIMD build) where the engine has
 * them: on by default. Read when a backend's kernels start (its first kernel call, or its thread
 * pool), so set it before initBackend; `initBackend({ wasmFma })` does. Off gives the plain
 * build's sums: every product rounded, then added.
 */
export function useWasmFma(on: boolean): void {
  fmaWanted = on;
}

/** The kernels' compiled module: for a plain memory, or (shared) for a shared one; relaxed SIMD or not. */
export function cpuKernelsModule(shared: boolean, relaxed: boolean): WebAssembly.Module {
  const key = `${shared}:${relaxed}`;
  let m = modules.get(key);
  if (!m) {
    const base64 = relaxed ? (shared ? CPU_KERNELS_SHARED_RELAXED_WASM : CPU_KERNELS_RELAXED_WASM) : shared ? CPU_KERNELS_SHARED_WASM : CPU_KERNELS_WASM;
    m = new WebAssembly.Module(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
    modules.set(key, m);
  }
  return m;
}

/** tfjs-wasm's memory (throws when this build keeps it out of reach). */
export function wasmMemoryOf(backend: WasmBackendLike): WebAssembly.Memory {
  const memory = backend.wasm.asm?.memory ?? backend.wasm.wasmMemory;
  if (!memory) throw new Error('tfjs-wasm memory is not reachable');
  return memory;
}

/** The kernels over this backend's memory (throws without SIMD or a reachable memory). */
export function cpuKernelsFor(backend: WasmBackendLike): CpuKernels {
  const memory = wasmMemoryOf(backend);
  let k = instances.get(memory);
  if (!k) {
    const relaxed = fmaWanted && relaxedSimdSupported();
    k = { relaxed, kernels: instantiate(memory, relaxed) };
    instances.set(memory, k);
  }
  return k.kernels;
}

/**
 * The plain build over this backend's memory, whatever cpuKernelsFor uses: every product rounded,
 * then added (the tests' k-ordered sums, and bench:core's comparison). Not cached.
 */
export function plainCpuKernelsFor(backend: WasmBackendLike): CpuKernels {
  return instantiate(wasmMemoryOf(backend), false);
}

/** How this backend's kernels multiply-add: 'fused' (relaxed SIMD on a CPU with FMA), 'unfused' (relaxed SIMD without), 'off' (the plain build). */
export function wasmFmaOf(backend: WasmBackendLike): 'fused' | 'unfused' | 'off' {
  if (!relaxedKernelsFor(backend)) return 'off';
  return cpuKernelsFor(backend).fusedMaddProbe() !== 0 ? 'fused' : 'unfused';
}

/** Whether this backend's kernels are the relaxed SIMD build (threads.ts starts its workers on the same build). */
export function relaxedKernelsFor(backend: WasmBackendLike): boolean {
  cpuKernelsFor(backend);
  return instances.get(wasmMemoryOf(backend))?.relaxed ?? false;
}

function instantiate(memory: WebAssembly.Memory, relaxed: boolean): CpuKernels {
  const module = cpuKernelsModule(memory.buffer instanceof SharedArrayBuffer, relaxed);
  return new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as CpuKernels;
}

/** A tensor's byte offset in the backend's memory. */
export function offsetOf(backend: WasmBackendLike, t: tf.TensorInfo): number {
  return backend.dataIdMap.get(t.dataId).memoryOffset;
}

let unavailable = false;

/**
 * Register `kernels` (name -> kernel function) for tfjs-wasm when this module can run on the
 * current backend: the wasm backend, SIMD WebAssembly and a reachable memory (once found missing,
 * never asked again). Returns whether they can run. The callers (wasmAttention.ts, wasmFused.ts,
 * wasmGemv.ts, wasmDecode.ts) keep their own on/off switch and shape rules.
 */
export function registerCpuKernels(kernels: Record<string, tf.KernelFunc>): boolean {
  if (unavailable || tf.getBackend() !== 'wasm') return false;
  try {
    cpuKernelsFor(tf.backend() as unknown as WasmBackendLike);
  } catch {
    unavailable = true; // no SIMD, or a tfjs-wasm build without an exported memory
    return false;
  }
  for (const [kernelName, kernelFunc] of Object.entries(kernels)) {
    if (!tf.getKernel(kernelName, 'wasm')) tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
  }
  return true;
}
