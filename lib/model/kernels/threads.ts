// Our CPU kernels on every thread: worker threads that run the kernels module over tfjs-wasm's own
// memory, when that memory is shared: in Node, tfjs-wasm's threaded build (lib/wasmThreads.ts;
// initBackend's wasmThreads) with Node's worker_threads; in a browser page that is cross-origin
// isolated, the threaded build tfjs-wasm picks itself, with Web Workers. Tensors, weights and the
// KV cache are where tfjs put them; a job hands the workers byte offsets, nothing is copied.
//
// Two kinds of job, one at a time (the calling thread is thread 0 and takes its share too):
//   - a matmul (gemm, gemmBf16): each thread takes its share of the output columns
//     (assembly/gemv.ts's gemmThreads); the caller waits for the workers' done count. The LM head
//     after the fused decode step takes it; the op-by-op GEMV does not (wasmGemv.ts says why);
//   - a decode step's layers (assembly/decode.ts): every thread runs decodeLayers with its own
//     index and each layer splits its steps itself, meeting at barriers (words in the control
//     block).
// A worker waiting for the next job spins on the job counter for a while (a decode step's jobs
// come a few microseconds apart), then sleeps on it (Atomics.wait). A page's main thread may not
// sleep (Atomics.wait throws there), so as thread 0 it only spins.
//
// The control block (malloc'd in the memory, CONTROL_WORDS i32 words at `control`):
//   [0] job counter   [1] workers done   [2] job kind (index in JOBS; -1 = exit)   [3..30] the
//   job's arguments (an f32 argument is stored as its bits)   [32, 33] decodeLayers' barrier
//   [34] a worker's kernel threw (the others stop waiting; the caller throws)   [35] thread 0 may
//   not sleep

import { cpuKernelsFor, cpuKernelsModule, relaxedKernelsFor, wasmMemoryOf, type CpuKernels, type WasmBackendLike } from './cpu';

const JOBS = ['gemmThreads', 'decodeLayers'] as const;
const CONTROL_WORDS = 64;
const ARGS = 3;
const SYNC = 32;
/** set by a worker whose kernel threw: the barrier's third word */
const FAILED = SYNC + 2;
/** set when thread 0 runs on a page's main thread, which may not sleep: the barrier's fourth word */
const NO_SLEEP_0 = SYNC + 3;
/** decodeLayers' f32 argument, eps (the one after it, bf16, is its last before the thread ones) */
const EPS = 18;
/** JS-side spins before a waiting thread sleeps: ~1 ms here (an Atomics.load loop runs ~16 ns a turn); see decode.ts's SPINS */
const SPINS = 1 << 16;

// each worker: instantiate over the memory, then run each job it is handed. Its start (the memory,
// the compiled module, its index) comes as Node's workerData, or as a page's Worker's first message.
const WORKER_SOURCE = `
const node = typeof process !== 'undefined' && !!(process.versions && process.versions.node);
if (node) {
  const { workerData, parentPort } = require('node:worker_threads');
  run(workerData, parentPort);
} else {
  self.onmessage = (e) => { self.onmessage = null; run(e.data, self); };
}
function run({ memory, module, index, threads, control }, port) {
const k = new WebAssembly.Instance(module, { env: { memory } }).exports;
const c = new Int32Array(memory.buffer, control, ${CONTROL_WORDS});
const f = new Float32Array(memory.buffer, control, ${CONTROL_WORDS});
const a = ${ARGS};
const jobs = ${JSON.stringify(JOBS)};
// the job counter before saying ready: the first job may come the moment the pool hears it, and a
// worker that read the counter after that job was posted would wait for the next one, for ever
let seen = Atomics.load(c, 0);
port.postMessage('ready');
for (;;) {
  for (let spins = 0; Atomics.load(c, 0) === seen; spins++) if (spins >= ${SPINS}) Atomics.wait(c, 0, seen);
  seen = Atomics.load(c, 0);
  const job = jobs[c[2]];
  if (job === undefined) break;
  try {
    if (job === 'decodeLayers') {
      k.decodeLayers(${Array.from({ length: EPS }, (_, i) => `c[a + ${i}]`).join(', ')}, f[a + ${EPS}], c[a + ${EPS + 1}], index, threads, control + ${SYNC * 4});
    } else {
      k.gemmThreads(c[a], c[a + 1], c[a + 2], c[a + 3], c[a + 4], c[a + 5], c[a + 6], index, threads);
    }
  } catch (e) {
    // the others must not wait for ever: flag it (decodeLayers' barriers and gemm's caller look)
    Atomics.store(c, ${FAILED}, 1);
    console.error('inference-lab: a CPU kernel thread failed:', e);
  } finally {
    if (job !== 'decodeLayers') {
      Atomics.add(c, 1, 1);
      Atomics.notify(c, 1);
    }
  }
}
}
`;

/** A kernel thread: Node's worker_threads Worker or a page's Web Worker (what the pool uses of either). */
interface KernelWorker {
  postMessage(message: unknown): void;
  terminate(): unknown;
}

/** Whether this code runs in Node (worker_threads) rather than a page (Web Workers). */
const inNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

// start a kernel thread with its start message; resolves once it is waiting for jobs
async function startWorker(init: { memory: WebAssembly.Memory; module: WebAssembly.Module; index: number; threads: number; control: number }): Promise<KernelWorker> {
  if (inNode) {
    // required here, so bundles for a page need not resolve it
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Worker } = require('worker_threads') as typeof import('worker_threads');
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: init });
    w.unref();
    await new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('error', reject);
    });
    return w;
  }
  const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
  const w = new Worker(url);
  URL.revokeObjectURL(url);
  await new Promise<void>((resolve, reject) => {
    w.onmessage = () => resolve();
    w.onerror = (e) => reject(new Error(`a CPU kernel worker failed to start: ${e.message}`));
    w.postMessage(init); // a shared memory and a compiled module both cross to a worker (cross-origin isolated pages)
  });
  w.onmessage = null;
  return w;
}

/** Whether this thread may block in Atomics.wait (not a page's main thread). */
const canSleep = inNode || typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined';

/** The arguments of decodeLayers before its thread ones (CpuKernels.decodeLayers' first 20). */
export type DecodeLayersArgs = Parameters<CpuKernels['decodeLayers']> extends [...infer A, number, number, number] ? A : never;

/**
 * Our kernels split over the threads of tfjs-wasm's threaded build (this thread included). One
 * per memory: CpuThreadPool.start(backend, threads) starts it when the backend starts
 * (wasmThreads.ts), the kernels find it with CpuThreadPool.of(backend).
 */
export class CpuThreadPool {
  readonly threads: number;
  private readonly kernels: CpuKernels;
  private readonly workers: KernelWorker[];
  private readonly c: Int32Array;
  private readonly f: Float32Array;
  private readonly control: number;
  /** why the pool stopped taking jobs, after a kernel thread failed */
  private broken: string | null = null;

  private constructor(backend: WasmBackendLike & { wasm: { _malloc(bytes: number): number } }, threads: number) {
    const memory = wasmMemoryOf(backend);
    this.threads = threads;
    this.kernels = cpuKernelsFor(backend);
    this.control = backend.wasm._malloc(CONTROL_WORDS * 4);
    this.c = new Int32Array(memory.buffer, this.control, CONTROL_WORDS).fill(0);
    this.f = new Float32Array(memory.buffer, this.control, CONTROL_WORDS);
    this.c[NO_SLEEP_0] = canSleep ? 0 : 1;
    this.workers = [];
  }

  /**
   * Start the pool over this backend's memory with `threads` threads; resolves once every worker
   * is waiting for jobs (a worker starts only while this thread's event loop runs, so a pool made
   * inside a kernel call would wait on workers that never come). Nothing for one thread or a
   * memory that is not shared (tfjs-wasm's single-threaded builds, a page that is not
   * cross-origin isolated).
   */
  static async start(backend: WasmBackendLike, threads: number): Promise<CpuThreadPool | null> {
    const memory = wasmMemoryOf(backend);
    pools.get(memory)?.dispose();
    pools.delete(memory);
    if (threads <= 1 || typeof SharedArrayBuffer === 'undefined' || !(memory.buffer instanceof SharedArrayBuffer)) return null;
    const pool = new CpuThreadPool(backend as WasmBackendLike & { wasm: { _malloc(bytes: number): number } }, threads);
    const module = cpuKernelsModule(true, relaxedKernelsFor(backend)); // the build this thread runs
    try {
      for (let i = 1; i < threads; i++) pool.workers.push(await startWorker({ memory, module, index: i, threads, control: pool.control }));
    } catch (e) {
      pool.dispose();
      throw e;
    }
    pools.set(memory, pool);
    return pool;
  }

  /** The started pool over this backend's memory, or null (one thread). */
  static of(backend: WasmBackendLike): CpuThreadPool | null {
    return pools.get(wasmMemoryOf(backend)) ?? null;
  }

  /** x [M, K] @ W [K, N] -> out [M, N] (byte offsets; W in the GEMV's tiles), split by columns. */
  gemm(kernel: 'gemm' | 'gemmBf16', x: number, w: number, out: number, M: number, K: number, N: number): void {
    const { c } = this;
    const bf16 = kernel === 'gemmBf16' ? 1 : 0;
    c.set([x, w, out, M, K, N, bf16], ARGS);
    c[1] = 0;
    this.start(JOBS.indexOf('gemmThreads'));
    let failed = false;
    try {
      this.kernels.gemmThreads(x, w, out, M, K, N, bf16, 0, this.threads); // thread 0's share
    } catch {
      failed = true; // the workers still finish theirs: wait for them first
    }
    // the workers' done count
    for (let spins = 0, done = Atomics.load(c, 1); done < this.workers.length; spins++, done = Atomics.load(c, 1)) {
      if (canSleep && spins >= SPINS) Atomics.wait(c, 1, done);
    }
    if (failed || Atomics.load(c, FAILED) !== 0) this.fail(kernel);
  }

  /** A decode step's layers on every thread (assembly/decode.ts splits them); returns when all are done. */
  decodeLayers(...args: DecodeLayersArgs): void {
    const { c, f } = this;
    for (let i = 0; i < args.length; i++) c[ARGS + i] = args[i];
    f[ARGS + EPS] = args[EPS]; // an f32
    this.start(JOBS.indexOf('decodeLayers'));
    try {
      this.kernels.decodeLayers(...args, 0, this.threads, this.control + SYNC * 4);
    } catch {
      this.fail('decodeLayers'); // a worker failed (this thread trapped at a barrier), or this thread did
    }
  }

  /** End the workers (the control block's bytes stay in the memory, which goes with its backend). */
  dispose(): void {
    this.start(-1);
    for (const w of this.workers) void w.terminate();
    this.workers.length = 0;
  }

  // a kernel thread failed: flag it, so threads still waiting at a barrier leave, and refuse every
  // later job (the threads' state is unknown)
  private fail(job: string): never {
    Atomics.store(this.c, FAILED, 1);
    this.broken = `${job}: a CPU kernel thread failed (a worker's error is on stderr, or in a page's console); its outputs are not valid`;
    throw new Error(this.broken);
  }

  // hand the workers job `kind`: bump the job counter and wake any asleep
  private start(kind: number): void {
    if (this.broken && kind >= 0) throw new Error(`${this.broken}; restart the backend (shutdownBackend, then initBackend) to use the CPU threads again`);
    this.c[2] = kind;
    Atomics.add(this.c, 0, 1);
    Atomics.notify(this.c, 0);
  }
}

const pools = new Map<WebAssembly.Memory, CpuThreadPool>();

/** End every pool's workers: before the backend they run over goes (wasmThreads.ts, shutdownBackend). */
export function disposeCpuThreadPools(): void {
  for (const pool of pools.values()) pool.dispose();
  pools.clear();
}
