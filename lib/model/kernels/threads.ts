// The decode GEMV over several cores (Node's worker_threads). tfjs-wasm runs on one thread in
// Node, and its memory is not shared, so this pool keeps its own shared WebAssembly.Memory: each
// weight matrix is copied into it once (on first use), every thread instantiates the kernels
// module over it (cpuKernels.generated.ts, the shared-memory build), and a GEMV is split by output
// columns, the calling thread taking the first share. A thread's columns are whole tiles of the
// GEMV's weight layout (assembly/gemv.ts), so each reads its own contiguous runs of each block. Per call: x is copied in, the workers are
// woken through Atomics (no messages), out is copied back.
//
// Control words (Int32Array at byte 0 of the shared memory):
//   [0] generation (bumped per job; -1 = exit)   [1] workers done   [2] kernel (index in KERNELS)
//   [3..8] x, w, out (byte offsets), M, K, N      [16 + 2i], [17 + 2i] columns [n0, n1) of thread i

import { Worker } from 'node:worker_threads';

import type { CpuKernels } from './cpu';
import { CPU_KERNELS_SHARED_WASM } from './cpuKernels.generated';
import { gemvKernelName } from './wasmGemv';

// the kernels a job may name, by index (control word 2); gemvKernelName picks one by format
const KERNELS = ['gemm', 'gemmBf16'] as const;

const CONTROL_BYTES = 1024;
const PAGE = 65536;

// each worker: instantiate over the shared memory, then wait for a generation bump, run its share
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { memory, module, index } = workerData;
const k = new WebAssembly.Instance(module, { env: { memory } }).exports;
const c = new Int32Array(memory.buffer, 0, ${CONTROL_BYTES / 4});
const kernels = ${JSON.stringify(KERNELS)}.map((name) => k[name]);
let seen = 0;
for (;;) {
  Atomics.wait(c, 0, seen);
  seen = Atomics.load(c, 0);
  if (seen === -1) break;
  const n0 = c[16 + 2 * index], n1 = c[17 + 2 * index];
  if (n1 > n0) kernels[c[2]](c[3], c[4], c[5], c[6], c[7], c[8], n0, n1);
  Atomics.add(c, 1, 1);
  Atomics.notify(c, 1);
}
`;

/** A weight matrix [K, N] held in the pool's memory in the GEMV's tiles (gemvWeights): f32, or bf16 pairs. */
export interface SharedMatrix {
  offset: number;
  K: number;
  N: number;
  bf16: boolean;
}

/** The decode GEMV split across `threads` threads (this one included). dispose() ends the workers. */
export class CpuThreadPool {
  readonly threads: number;
  private readonly memory: WebAssembly.Memory;
  private readonly kernels: CpuKernels;
  private readonly workers: Worker[];
  private readonly control: Int32Array;
  private readonly matrices = new WeakMap<object, SharedMatrix>();
  /** bump allocator: the next free byte */
  private top = CONTROL_BYTES;
  /** staging for x and out, grown as needed */
  private scratch = { offset: 0, bytes: 0 };

  constructor(threads: number) {
    if (!Number.isInteger(threads) || threads < 1 || threads > 64) throw new Error(`threads must be an integer in [1, 64], got ${threads}`);
    this.threads = threads;
    this.memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
    const module = new WebAssembly.Module(Uint8Array.from(atob(CPU_KERNELS_SHARED_WASM), (ch) => ch.charCodeAt(0)));
    this.kernels = new WebAssembly.Instance(module, { env: { memory: this.memory } }).exports as unknown as CpuKernels;
    this.control = new Int32Array(this.memory.buffer, 0, CONTROL_BYTES / 4);
    this.workers = Array.from({ length: threads - 1 }, (_, i) => {
      const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { memory: this.memory, module, index: i + 1 } });
      w.unref();
      return w;
    });
  }

  /** Copy a weight matrix in once (keyed by `key`, e.g. its tensor); later calls return the same. */
  matrix(key: object, data: () => Float32Array | Int32Array, K: number, N: number, bf16: boolean): SharedMatrix {
    let m = this.matrices.get(key);
    if (!m) {
      const values = data();
      const offset = this.alloc(values.byteLength);
      new Uint8Array(this.memory.buffer, offset, values.byteLength).set(
        new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
      );
      m = { offset, K, N, bf16 };
      this.matrices.set(key, m);
    }
    return m;
  }

  /** x [M, K] @ w -> [M, N], split by columns across the threads. */
  gemv(x: Float32Array, M: number, w: SharedMatrix): Float32Array {
    const { K, N } = w;
    if (x.length !== M * K) throw new Error(`gemv: x has ${x.length} values, expected ${M} x ${K}`);
    const xBytes = M * K * 4;
    const outBytes = M * N * 4;
    if (this.scratch.bytes < xBytes + outBytes)
      this.scratch = { offset: this.alloc(2 * (xBytes + outBytes)), bytes: 2 * (xBytes + outBytes) };
    const xAt = this.scratch.offset;
    const outAt = xAt + xBytes;
    new Float32Array(this.memory.buffer, xAt, M * K).set(x);
    // columns in groups of 8, as even as they go: whole tiles of W (4 columns f32, 8 bf16) and of
    // the kernel's 4 x 8 register block
    const groups = N / 8;
    const c = this.control;
    for (let i = 0; i < this.threads; i++) {
      c[16 + 2 * i] = 8 * Math.floor((groups * i) / this.threads);
      c[17 + 2 * i] = 8 * Math.floor((groups * (i + 1)) / this.threads);
    }
    const kernel = gemvKernelName(w.bf16);
    c.set([KERNELS.indexOf(kernel), xAt, w.offset, outAt, M, K, N], 2);
    Atomics.store(c, 1, 0);
    Atomics.add(c, 0, 1);
    Atomics.notify(c, 0);
    this.kernels[kernel](xAt, w.offset, outAt, M, K, N, c[16], c[17]);
    // wait for the workers
    for (let done = Atomics.load(c, 1); done < this.workers.length; done = Atomics.load(c, 1)) Atomics.wait(c, 1, done);
    return new Float32Array(this.memory.buffer, outAt, M * N).slice();
  }

  /** End the workers (the memory goes with the pool). */
  dispose(): void {
    Atomics.store(this.control, 0, -1);
    Atomics.notify(this.control, 0);
    for (const w of this.workers) void w.terminate();
    this.workers.length = 0;
  }

  // bytes at a 64-byte boundary, growing the memory
  private alloc(bytes: number): number {
    const offset = Math.ceil(this.top / 64) * 64;
    this.top = offset + bytes;
    const need = Math.ceil(this.top / PAGE) - this.memory.buffer.byteLength / PAGE;
    if (need > 0) this.memory.grow(need);
    return offset;
  }
}
