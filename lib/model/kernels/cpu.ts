// The CPU kernels' wasm module (AssemblyScript sources in ./assembly/, compiled by
// scripts/kernels/build.ts into cpuKernels.generated.ts), instantiated over tfjs-wasm's own
// memory so the kernels read and write tensors where they lie, with no copy. One instance per
// memory (a re-created backend gets its own). tfjs-wasm's threaded build (wasmThreads.ts) has a
// shared memory: over it the kernels' shared-memory build is used. wasmAttention.ts, wasmFused.ts, wasmGemv.ts and
// wasmDecode.ts register the kernels with tfjs.

import * as tf from '@tensorflow/tfjs-core';

import { CPU_KERNELS_SHARED_WASM, CPU_KERNELS_WASM } from './cpuKernels.generated';

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
}

/** What the kernels use of tfjs-wasm's backend object. */
export interface WasmBackendLike {
  /** the memory: exported by the single-threaded builds (asm.memory), imported by the threaded one (wasmMemory) */
  wasm: { asm?: { memory?: WebAssembly.Memory }; wasmMemory?: WebAssembly.Memory };
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: 'float32' | 'int32'): tf.TensorInfo;
}

const modules = new Map<boolean, WebAssembly.Module>();
const instances = new WeakMap<WebAssembly.Memory, CpuKernels>();

/** The kernels' compiled module: for a plain memory, or (shared) for a shared one. */
export function cpuKernelsModule(shared: boolean): WebAssembly.Module {
  let m = modules.get(shared);
  if (!m) {
    const base64 = shared ? CPU_KERNELS_SHARED_WASM : CPU_KERNELS_WASM;
    m = new WebAssembly.Module(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
    modules.set(shared, m);
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
    const module = cpuKernelsModule(memory.buffer instanceof SharedArrayBuffer);
    k = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as CpuKernels;
    instances.set(memory, k);
  }
  return k;
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
