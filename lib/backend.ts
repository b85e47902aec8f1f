/**
 * Backends: pick where the maths runs, say why, and describe the device.
 *
 * Lesson: "Where the maths runs" (backends, device facts) and the roofline lesson, which reads
 * `facts` to label its charts.
 *
 * Auto order, first that works: `tensorflow` (only when the user installed @tensorflow/tfjs-node
 * or -node-gpu themselves) > `webgpu` (a GPU adapter exists: Dawn's `webgpu` package in Node,
 * `navigator.gpu` in a browser) > `wasm` (XNNPACK, SIMD; in Node on `wasmThreads` threads, through
 * tfjs-wasm's threaded build: wasmThreads.ts) > `cpu` (pure JS, last resort).
 *
 * An explicit `prefer` that cannot be used is an error (`BackendUnavailableError`) naming the
 * backend and why; it never falls back silently, so a benchmark labelled "webgpu" ran on webgpu.
 * Use `prefer: 'auto'` to get whatever is available.
 */
import { releaseSharedGpu } from './gpu/device';
import * as tf from '@tensorflow/tfjs-core';
import { version_cpu } from '@tensorflow/tfjs-backend-cpu';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { useWasmFma, wasmFmaOf, type WasmBackendLike } from './model/kernels/cpu';
import { CpuThreadPool, disposeCpuThreadPools } from './model/kernels/threads';
import { startPageThreads, useThreadedWasm, wasmThreadsRegistered } from './wasmThreads';

export type BackendName = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
export type BackendPreference = 'auto' | BackendName;

/** The order `prefer: 'auto'` tries. */
export const AUTO_ORDER: readonly BackendName[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

export interface BackendOptions {
  /** 'auto' (default) or one backend; an unavailable explicit choice throws. */
  prefer?: BackendPreference;
  /** true: progress lines to stderr; a function: receives them. */
  log?: boolean | ((line: string) => void);
  /**
   * wasm in Node: threads for XNNPACK and our CPU kernels (tfjs-wasm's threaded build, see
   * wasmThreads.ts); 'all' = os.availableParallelism(), at most 8. Default: DEFAULT_WASM_THREADS. Read when
   * the wasm backend starts: changing it restarts the backend, which needs no live tensors.
   * In a page: threads for our CPU kernels where tfjs-wasm runs its threaded build (cross-origin
   * isolated pages; XNNPACK's are tfjs's choice); 'all' = navigator.hardwareConcurrency, at most 8.
   * Read when the wasm backend first starts.
   */
  wasmThreads?: number | 'all';
  /**
   * wasm: our CPU kernels' matmuls with fused multiply-adds (their relaxed SIMD build, where the
   * engine has it; model/kernels/cpu.ts). Default true; false = the plain build (each product
   * rounded, then added). Read when the wasm backend starts: to change it on a live one,
   * shutdownBackend() first.
   */
  wasmFma?: boolean;
}

/**
 * wasm threads in Node when initBackend is not told (see BackendOptions.wasmThreads): every core.
 * On this project's 2-core machine two threads decoded the target 1.4-1.7x faster than one
 * (median step) and prefilled it 1.0-1.2x faster, over four bench:peers runs
 * (data/bench/peers.json holds the last).
 */
export const DEFAULT_WASM_THREADS: number | 'all' = 'all';

/** 'all' threads means every core up to this many: tfjs caps XNNPACK's pool at 8 (a larger count still splits our kernels). */
const ALL_THREADS_MAX = 8;

export interface AdapterFacts {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
}

export interface GpuLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

export interface GpuFeatures {
  subgroups: boolean;
  timestampQuery: boolean;
  shaderF16: boolean;
  /** every feature name the adapter reports */
  all: string[];
}

export interface BackendFacts {
  backend: BackendName;
  tfjsVersion: string;
  runtime: 'node' | 'browser' | 'other';
  /** Node version (process.versions.node), OS and CPU: absent in a browser */
  node?: string;
  os?: string;
  cpuModel?: string;
  cpuCores?: number;
  totalMemoryBytes?: number;
  /** webgpu only */
  adapter?: AdapterFacts;
  limits?: GpuLimits;
  features?: GpuFeatures;
  /**
   * wasm only. fma: how our kernels multiply-add: 'fused' (relaxed SIMD on a CPU with FMA),
   * 'unfused' (relaxed SIMD without), 'off' (the plain build)
   */
  wasm?: { simd: boolean; multithreadSupported: boolean; threads: number; fma: 'fused' | 'unfused' | 'off' };
  /** tensorflow only: which package provided it */
  tfjsNodePackage?: string;
}

export interface SkippedBackend {
  name: BackendName;
  reason: string;
}

export interface BackendInfo {
  name: BackendName;
  /** one sentence: why this backend */
  reason: string;
  /** backends tried before it, each with why it was not used */
  skipped: SkippedBackend[];
  facts: BackendFacts;
}

/** An explicit `prefer` that cannot run here. */
export class BackendUnavailableError extends Error {
  constructor(
    readonly backend: BackendName,
    readonly why: string,
  ) {
    super(`backend '${backend}' is not available: ${why}`);
    this.name = 'BackendUnavailableError';
  }
}

// ---- state: one current backend, probes cached

type Probe = { ok: true; facts: Partial<BackendFacts>; note: string } | { ok: false; reason: string };

let current: BackendInfo | null = null;
let pending: Promise<BackendInfo> | null = null;
const probes = new Map<BackendName, Promise<Probe>>();
/** what we put on globalThis for Dawn, so shutdown can take it back */
let installedGpu: { navigatorCreated: boolean; device: GPUDevice | null } | null = null;

/** The backend chosen by the last `initBackend`, or null before the first. */
export function backendInfo(): BackendInfo | null {
  return current;
}

/**
 * Initialise a tfjs backend and report what was picked and why.
 * Cheap on a second call: 'auto' returns the current backend; an explicit name switches to it.
 */
export async function initBackend(options: BackendOptions = {}): Promise<BackendInfo> {
  const prefer = options.prefer ?? 'auto';
  if (prefer !== 'auto' && !AUTO_ORDER.includes(prefer)) {
    throw new Error(`initBackend: prefer must be one of auto, ${AUTO_ORDER.join(', ')}; got '${String(prefer)}'`);
  }
  // serialise concurrent callers
  while (pending) await pending.catch(() => undefined);
  const threads = wasmThreadsWanted(options.wasmThreads);
  if (options.wasmFma !== undefined) {
    const live = current?.name === 'wasm' && tf.getBackend() === 'wasm' ? current.facts.wasm?.fma : undefined;
    if (live !== undefined && (live !== 'off') !== options.wasmFma) {
      throw new Error(
        `initBackend: wasmFma is read when the wasm backend starts, and this one started with it ${live === 'off' ? 'off' : 'on'}: call shutdownBackend() first`,
      );
    }
    useWasmFma(options.wasmFma);
  }
  const sameThreads = !isNode() || current?.name !== 'wasm' || options.wasmThreads === undefined || threads === wasmThreadsRegistered();
  if (current && (prefer === 'auto' || prefer === current.name) && tf.getBackend() === current.name && sameThreads) {
    return current;
  }
  pending = choose(prefer, logger(options.log), threads, options.wasmThreads !== undefined);
  try {
    current = await pending;
    return current;
  } finally {
    pending = null;
  }
}

/** A `--threads` flag's value (the CLI's and the benches'): a count in [1, 64] or 'all'; else an error naming it. */
export function parseThreadsFlag(v: string): number | 'all' {
  if (v === 'all') return v;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`--threads must be an integer in [1, 64] or 'all', got '${v}'`);
  return n;
}

// the wasm threads asked for, as a number
function wasmThreadsWanted(asked: BackendOptions['wasmThreads']): number {
  const want = asked ?? DEFAULT_WASM_THREADS;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cores = () => (isNode() ? (require('os') as typeof import('os')).availableParallelism() : (globalThis.navigator?.hardwareConcurrency ?? 1));
  const n = want === 'all' ? Math.min(ALL_THREADS_MAX, cores()) : want;
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`initBackend: wasmThreads must be an integer in [1, 64] or 'all'; got ${String(asked)}`);
  return n;
}

async function choose(prefer: BackendPreference, log: (line: string) => void, wasmThreads: number, threadsAsked: boolean): Promise<BackendInfo> {
  const skipped: SkippedBackend[] = [];
  const candidates = prefer === 'auto' ? AUTO_ORDER : [prefer];
  for (const name of candidates) {
    const probe = await probeOnce(name);
    if (!probe.ok) {
      log(`backend ${name}: skipped (${probe.reason})`);
      skipped.push({ name, reason: probe.reason });
      continue;
    }
    let threadsNote = '';
    if (name === 'wasm' && isNode()) {
      try {
        await useThreadedWasm(wasmThreads);
      } catch (e) {
        if (threadsAsked) throw e;
        threadsNote = `; default threads not applied (${errorText(e)})`; // the wasm backend keeps the threads it has
      }
    }
    let ok = await tf.setBackend(name);
    if (!ok && name === 'wasm' && isNode() && wasmThreads > 1 && !threadsAsked) {
      // the threaded build did not start here: the default falls back to one thread, saying so
      threadsNote = `; tfjs-wasm's threaded build failed to start, so 1 thread`;
      await useThreadedWasm(1);
      ok = await tf.setBackend(name);
    }
    if (!ok) {
      const reason = `tf.setBackend('${name}') failed to initialise it`;
      probes.set(name, Promise.resolve({ ok: false, reason }));
      skipped.push({ name, reason });
      continue;
    }
    await tf.ready();
    if (name === 'cpu') muteCpuBanner();
    if (name === 'wasm' && !isNode()) {
      try {
        await startPageThreads(wasmThreads); // our kernels' Web Workers, where the memory is shared
      } catch (e) {
        threadsNote = `; our kernels' Web Workers did not start (${errorText(e)}), so they run on 1 thread`;
      }
    }
    const facts: BackendFacts = { ...(await hostFacts()), ...probe.facts, backend: name };
    let note = probe.note;
    if (name === 'wasm') {
      facts.wasm = await wasmFacts();
      note += ` on ${facts.wasm.threads} thread${facts.wasm.threads === 1 ? '' : 's'}${threadsNote}`;
      if (facts.wasm.fma === 'fused') note += '; our kernels with fused multiply-adds (relaxed SIMD)';
    }
    const reason =
      prefer === 'auto'
        ? `auto: first available of ${AUTO_ORDER.join(' > ')}; ${note}` +
          (skipped.length ? `; skipped ${skipped.map((s) => `${s.name} (${s.reason})`).join(', ')}` : '')
        : `requested explicitly; ${note}`;
    log(`backend ${name}: ${reason}`);
    return { name, reason, skipped, facts };
  }
  if (prefer !== 'auto') throw new BackendUnavailableError(prefer, skipped[0].reason);
  throw new Error(`no tfjs backend available: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`);
}

function probeOnce(name: BackendName): Promise<Probe> {
  let p = probes.get(name);
  if (!p) {
    p = PROBES[name]().catch((e: unknown): Probe => ({ ok: false, reason: errorText(e) }));
    probes.set(name, p);
  }
  return p;
}

const PROBES: Record<BackendName, () => Promise<Probe>> = {
  tensorflow: probeTensorflow,
  webgpu: probeWebgpu,
  wasm: probeWasm,
  cpu: async () => ({ ok: true, facts: {}, note: `pure-JS tfjs-backend-cpu ${version_cpu} (slow, always works)` }),
};

// ---- tensorflow: only if the user installed tfjs-node(-gpu)

async function probeTensorflow(): Promise<Probe> {
  if (!isNode()) return { ok: false, reason: 'only exists in Node' };
  const { createRequire } = await import('node:module');
  const path = await import('node:path');
  // resolve from the user's project (cwd), where they would have installed it
  const req = createRequire(path.join(process.cwd(), 'package.json'));
  const tried: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      req.resolve(pkg);
    } catch {
      tried.push(pkg);
      continue;
    }
    try {
      req(pkg);
    } catch (e) {
      return { ok: false, reason: `${pkg} is installed but failed to load: ${errorText(e)}` };
    }
    if (!tf.findBackendFactory('tensorflow')) {
      return {
        ok: false,
        reason: `${pkg} loaded but registered its backend with another copy of @tensorflow/tfjs-core; install it at version ${tf.version_core}`,
      };
    }
    return { ok: true, facts: { tfjsNodePackage: pkg }, note: `${pkg} (libtensorflow) is installed` };
  }
  return { ok: false, reason: `${tried.join(' / ')} not installed (optional; npm i @tensorflow/tfjs-node to use it)` };
}

// ---- webgpu: Dawn in Node, navigator.gpu in a browser

/** Whether libvulkan.so.1 is in the usual library folders or on LD_LIBRARY_PATH (Linux). */
function vulkanLoaderPresent(): boolean {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require('fs') as typeof import('fs');
  const dirs = [
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu', '/usr/local/lib',
  ];
  return dirs.some((d) => fs.existsSync(`${d}/libvulkan.so.1`));
}

async function probeWebgpu(): Promise<Probe> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  let gpu: GPU | undefined = nav?.gpu;
  let viaDawn = false;
  if (!gpu) {
    if (!isNode()) return { ok: false, reason: 'navigator.gpu is missing (this browser has no WebGPU)' };
    // on Linux Dawn needs the Vulkan loader; without it Dawn only prints a native warning
    if (process.platform === 'linux' && !vulkanLoaderPresent()) {
      return { ok: false, reason: 'no Vulkan loader (libvulkan.so.1) on this machine, so Dawn cannot reach a GPU' };
    }
    let dawn: { create: (flags: string[]) => GPU; globals: object };
    try {
      dawn = await import('webgpu');
    } catch (e) {
      return { ok: false, reason: `the 'webgpu' package (Dawn) did not load: ${errorText(e)}` };
    }
    Object.assign(globalThis, dawn.globals);
    gpu = dawn.create([]);
    viaDawn = true;
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    // nothing installed stays behind: Node can exit, tfjs-backend-webgpu is never imported
    return {
      ok: false,
      reason: viaDawn
        ? 'Dawn found no GPU adapter (no Vulkan/Metal/D3D12 device usable here)'
        : 'navigator.gpu.requestAdapter() returned null',
    };
  }
  const facts = adapterFacts(adapter);
  if (viaDawn) {
    // tfjs-backend-webgpu registers only if navigator.gpu exists when it is first imported
    installedGpu = { navigatorCreated: installNavigatorGpu(gpu), device: null };
  }
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!tf.findBackendFactory('webgpu')) {
    return { ok: false, reason: 'tfjs-backend-webgpu did not register (was it imported before navigator.gpu was set?)' };
  }
  const a = facts.adapter;
  return { ok: true, facts, note: `GPU adapter: ${[a?.vendor, a?.architecture, a?.device || a?.description].filter(Boolean).join(' ')}` };
}

function adapterFacts(adapter: GPUAdapter): Partial<BackendFacts> {
  const info = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  const all = [...adapter.features].map(String).sort();
  return {
    adapter: {
      vendor: info?.vendor ?? '',
      architecture: info?.architecture ?? '',
      device: info?.device ?? '',
      description: info?.description ?? '',
    },
    limits: {
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    },
    features: {
      subgroups: all.includes('subgroups'),
      timestampQuery: all.includes('timestamp-query'),
      shaderF16: all.includes('shader-f16'),
      all,
    },
  };
}

/** Put `gpu` on navigator; true when navigator itself had to be created. */
function installNavigatorGpu(gpu: GPU): boolean {
  const g = globalThis as { navigator?: object };
  if (g.navigator) {
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
    return false;
  }
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  return true;
}

// ---- cpu

/**
 * tfjs-backend-cpu prints "Hi, looks like you are running TensorFlow.js in Node.js ... install our
 * node backend" through tfjs's warn() on the first tensor it stores in Node. Our `reason` and
 * `skipped` already say whether tfjs-node is installed and how to get it, so make that first
 * write here, with tfjs's warnings off (its PROD flag) for that one tensor only.
 */
function muteCpuBanner(): void {
  const prod = tf.env().getBool('PROD');
  tf.env().set('PROD', true);
  try {
    tf.scalar(0).dispose();
  } finally {
    tf.env().set('PROD', prod);
  }
}

// ---- wasm

async function probeWasm(): Promise<Probe> {
  // in an ES-module bundle (esbuild) there is no __dirname: Emscripten looks for the .wasm files
  // there, so they must be copied beside the bundle
  if (isNode() && typeof __dirname === 'undefined' && process.argv[1]) {
    const path = await import('node:path');
    (globalThis as { __dirname?: string }).__dirname = path.dirname(path.resolve(process.argv[1]));
  }
  return { ok: true, facts: {}, note: 'WebAssembly + XNNPACK' };
}

async function wasmFacts(): Promise<NonNullable<BackendFacts['wasm']>> {
  const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
  // tfjs's own test says no for Node; our threaded registration says yes
  const multithreadSupported = wasmThreadsRegistered() > 1 || Boolean(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'));
  let threads = 1;
  try {
    threads = getThreadsCount(); // XNNPACK's, at most 8
  } catch {
    // not reported before init; single-threaded
  }
  const backend = tf.backend() as unknown as WasmBackendLike;
  threads = Math.max(threads, wasmThreadsRegistered(), CpuThreadPool.of(backend)?.threads ?? 1); // our kernels' pool may have more
  let fma: 'fused' | 'unfused' | 'off' = 'off';
  try {
    fma = wasmFmaOf(backend); // starts our kernels: the build is fixed from here
  } catch {
    // no SIMD or no reachable memory: tfjs's kernels only
  }
  return { simd, multithreadSupported, threads, fma };
}

// ---- host facts

async function hostFacts(): Promise<Omit<BackendFacts, 'backend'>> {
  const base = { tfjsVersion: tf.version_core };
  if (!isNode()) return { ...base, runtime: typeof window !== 'undefined' ? 'browser' : 'other' };
  const os = await import('node:os');
  const cpus = os.cpus();
  return {
    ...base,
    runtime: 'node',
    node: process.versions.node,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCores: cpus.length,
    totalMemoryBytes: os.totalmem(),
  };
}

// ---- shutdown

/**
 * Free the backend and let Node exit: disposes every tensor (tf.engine().reset()), destroys a
 * WebGPU device and removes the navigator.gpu that initBackend installed. A later initBackend
 * starts afresh.
 */
export async function shutdownBackend(): Promise<void> {
  while (pending) await pending.catch(() => undefined);
  await releaseSharedGpu(); // the captured path's device (lib/gpu), if one was made
  disposeCpuThreadPools(); // our kernels' worker threads over tfjs-wasm's memory, if any
  if (current?.name === 'webgpu') {
    const backend = tf.findBackend('webgpu') as (tf.KernelBackend & { device?: GPUDevice }) | null;
    if (backend?.device && installedGpu) installedGpu.device = backend.device;
  }
  tf.engine().reset();
  if (installedGpu) {
    installedGpu.device?.destroy();
    const g = globalThis as { navigator?: { gpu?: unknown } };
    if (installedGpu.navigatorCreated) delete g.navigator;
    else if (g.navigator) delete g.navigator.gpu;
    installedGpu = null;
    probes.delete('webgpu');
  }
  current = null;
}

// ---- helpers

function isNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

function logger(log: BackendOptions['log']): (line: string) => void {
  if (typeof log === 'function') return log;
  if (log) return (line) => console.error(line);
  return () => undefined;
}

function errorText(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split('\n')[0];
}
