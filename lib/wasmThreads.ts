// tfjs-wasm's multithreaded build in Node.
//
// tfjs-backend-wasm ships three builds: plain, SIMD, and SIMD + threads (Emscripten pthreads over a
// shared WebAssembly.Memory; XNNPACK splits each op over a pthreadpool). In a browser it picks the
// threaded one by itself when the page is cross-origin isolated. In Node it never does: its feature
// test answers "no threads" for Node (tfjs issue 3830), and forcing it fails with ERR_WORKER_PATH,
// because the pthread workers' script is handed over as a blob: URL, which Node's Worker refuses.
//
// The build itself runs in Node (Emscripten's glue has Node code paths): useThreadedWasm registers
// it as the 'wasm' backend, with the pthread worker script written to a file. Two more details:
//   - tfjs's C side sizes its threadpool as min(asked, logical cores / 2, 8): it assumes two
//     hyperthreads per core, so a 2-core machine without SMT got one thread. Emscripten asks Node
//     for the logical cores through os.cpus().length, so for the backend's start we answer twice
//     the threads asked for, and the pool gets exactly `threads` (up to tfjs's 8; our kernels'
//     pool takes all of them).
//   - the memory is then shared (a SharedArrayBuffer), so our own kernels (model/kernels/cpu.ts)
//     instantiate their shared-memory build over it, and worker threads can run them on tensors
//     where they lie (model/kernels/threads.ts).
// Everything else (kernels, tensors, the BackendWasm class) is tfjs's own.

import * as tf from '@tensorflow/tfjs-core';
import { BackendWasm, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';

import type { WasmBackendLike } from './model/kernels/cpu';
import { CpuThreadPool, disposeCpuThreadPools } from './model/kernels/threads';

/** The threads the current 'wasm' backend was registered for (1 = tfjs's own registration). */
let registered = 1;
/** tfjs's own factory for 'wasm', kept to put back for threads = 1 */
let original: (() => tf.KernelBackend | Promise<tf.KernelBackend>) | null = null;

/** Threads of the registered 'wasm' backend: 1 unless useThreadedWasm registered the threaded build. */
export function wasmThreadsRegistered(): number {
  return registered;
}

/**
 * Register tfjs-wasm's threaded build as the 'wasm' backend with `threads` XNNPACK threads (Node
 * only; call before tf.setBackend('wasm')). threads = 1 puts tfjs's single-threaded registration
 * back. Throws, naming the problem, where it cannot: outside Node, without SIMD or shared memory,
 * or while tensors live and the wasm backend has started (re-registering would drop its tensors).
 */
export async function useThreadedWasm(threads: number): Promise<void> {
  if (!Number.isInteger(threads) || threads < 1 || threads > 64) throw new Error(`wasm threads must be an integer in [1, 64], got ${threads}`);
  if (threads === registered) return;
  if (typeof process === 'undefined' || !process.versions?.node) throw new Error('useThreadedWasm is for Node; in a browser tfjs-wasm picks its threaded build itself');
  if (typeof SharedArrayBuffer === 'undefined') throw new Error('wasm threads need SharedArrayBuffer, which this runtime lacks');
  if (!(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'))) throw new Error("wasm threads need WebAssembly SIMD (tfjs ships no threaded build without it)");
  if (tf.findBackend('wasm') !== null && tf.memory().numTensors > 0) {
    throw new Error(
      `cannot switch the wasm backend from ${registered} to ${threads} threads while ${tf.memory().numTensors} tensors live on it: ` +
        'dispose them (shutdownBackend()) first, or pick the threads before the first model loads',
    );
  }
  original ??= tf.findBackendFactory('wasm') as unknown as typeof original; // null when the package was never imported
  if (!original) throw new Error("tfjs-backend-wasm is not registered (import '@tensorflow/tfjs-backend-wasm' first)");
  disposeCpuThreadPools();
  tf.removeBackend('wasm');
  setThreadsCount(threads);
  const threaded = async () => {
    const backend = new BackendWasm(await threadedModule(threads));
    await CpuThreadPool.start(backend as unknown as WasmBackendLike, threads); // our kernels' threads, over the same memory
    return backend;
  };
  tf.registerBackend('wasm', threads === 1 ? original : threaded, 2);
  registered = threads;
}

/**
 * In a page: our kernels' threads (Web Workers) over tfjs-wasm's memory, when tfjs picked its
 * threaded build there (it does in cross-origin isolated pages, whose memory is shared; call once
 * the 'wasm' backend is set). Returns the threads they run on: 1 where the memory is not shared.
 */
export async function startPageThreads(threads: number): Promise<number> {
  const pool = await CpuThreadPool.start(tf.backend() as unknown as WasmBackendLike, threads);
  return pool?.threads ?? 1;
}

type WasmModule = ConstructorParameters<typeof BackendWasm>[0];
type Factory = (config: object) => Promise<WasmModule & { cwrap: (...args: unknown[]) => unknown }>;

// the threaded build's Emscripten module, with the `tfjs` entry points BackendWasm calls
async function threadedModule(threads: number): Promise<WasmModule> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const fs = require('fs') as typeof import('fs');
  const os = require('os') as typeof import('os');
  const path = require('path') as typeof import('path');
  const factoryFile = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js');
  const factory = require(factoryFile) as Factory;
  const { wasmWorkerContents } = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js') as {
    wasmWorkerContents: string;
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
  // the pthread worker script: tfjs keeps it as a JS string whose '\n' escapes became newlines
  // inside string literals; undo that as tfjs does before making its blob
  const workerFile = path.join(os.tmpdir(), `inference-lab-tfjs-wasm-${process.pid}.worker.js`);
  fs.writeFileSync(workerFile, wasmWorkerContents.replace(/\n/g, '\\n'));
  process.once('exit', () => fs.rmSync(workerFile, { force: true }));
  const dir = path.dirname(factoryFile);
  const host = os as { cpus: typeof os.cpus };
  const cpus = host.cpus;
  host.cpus = () => Array.from({ length: 2 * threads }, () => cpus()[0]); // see the header: the pool gets `threads`
  let module;
  try {
    module = await factory({
      locateFile: (file: string) => (file.endsWith('.worker.js') ? workerFile : path.join(dir, file)),
      mainScriptUrlOrBlob: factoryFile, // each pthread worker loads the glue from here
    });
  } finally {
    host.cpus = cpus;
  }
  const m = module as WasmModule & { cwrap: (name: string, ret: string | null, args: string[]) => unknown };
  (m as unknown as { tfjs: object }).tfjs = {
    init: m.cwrap('init', null, []),
    initWithThreadsCount: m.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: m.cwrap('get_threads_count', 'number', []),
    registerTensor: m.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: m.cwrap('dispose_data', null, ['number']),
    dispose: m.cwrap('dispose', null, []),
  };
  return m;
}
