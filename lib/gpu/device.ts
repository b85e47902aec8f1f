// A WebGPU device for the captured decode path (lib/gpu): Dawn's `webgpu` package in Node, or
// the page's navigator.gpu in a browser. The captured path talks to WebGPU directly (its own
// device, pipelines and buffers) rather than through tfjs, so nothing here depends on the tfjs
// backend in use: the same kernels run on an H200, on a laptop GPU, and on Chromium's SwiftShader
// (a CPU Vulkan driver) in CI.

/** What the kernels need to know about the device they run on. */
export interface GpuDeviceInfo {
  /** adapter vendor / architecture / device or description, as the adapter reports them */
  adapter: string;
  /** 'subgroups' is enabled and every subgroup has 32 lanes (NVIDIA): reductions use subgroupAdd */
  subgroups32: boolean;
  /** timestamp queries are enabled (GPU time per step) */
  timestamps: boolean;
  /** Dawn's bounds checks on storage-buffer accesses are on (always on in a browser) */
  robust: boolean;
  /** a CPU implementation (SwiftShader): correct, slow, not for timing */
  software: boolean;
}

/** A device and what it can do. Call `destroy()` when done (Node exits only then). */
export interface GpuContext {
  device: GPUDevice;
  info: GpuDeviceInfo;
  /** errors the device reported outside a call (kept, so a test can assert there were none) */
  errors: string[];
  destroy(): void;
}

// Dawn's instance must outlive its devices: if the GPU object from create() is garbage-
// collected, Dawn's threads die under the device (seen as futex aborts and segfaults)
const liveInstances = new Set<GPU>();

/** Options of acquireGpu. */
export interface AcquireGpuOptions {
  /**
   * Node only: keep Dawn's robustness (bounds checks on every storage-buffer index). Default
   * false: the kernels index within the buffers they were sized for, and the checks cost about
   * half the bandwidth of a GEMV on an H200 (NOTES.md). Browsers always keep them.
   */
  robust?: boolean;
}

/** Find a GPU adapter and open a device with the limits and features the kernels use. */
export async function acquireGpu(options: AcquireGpuOptions = {}): Promise<GpuContext> {
  const robust = options.robust ?? false;
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  let gpu: GPU;
  let inNode = false;
  if (typeof process !== 'undefined' && typeof process.versions?.node === 'string') {
    // a fresh Dawn instance with our toggles (tfjs' own device, if any, stays as it is)
    let dawn: { create: (flags: string[]) => GPU; globals: object };
    try {
      dawn = await import('webgpu');
    } catch (e) {
      throw new Error(`captured GPU path: the 'webgpu' package (Dawn) did not load: ${(e as Error).message}`);
    }
    Object.assign(globalThis, dawn.globals);
    const flags = ['disable-dawn-features=timestamp_quantization'];
    if (!robust) flags.push('enable-dawn-features=allow_unsafe_apis,disable_robustness');
    gpu = dawn.create(flags);
    liveInstances.add(gpu);
    inNode = true;
  } else if (nav?.gpu) {
    gpu = nav.gpu;
  } else {
    throw new Error('captured GPU path: this browser has no WebGPU (navigator.gpu is missing)');
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('captured GPU path: no WebGPU adapter (no Vulkan/Metal/D3D12 GPU, and no SwiftShader)');
  const ai = (adapter as GPUAdapter & { info?: GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number } }).info;
  const features = (['subgroups', 'timestamp-query'] as const).filter((f) => adapter.features.has(f));
  // the largest buffers the adapter allows: a 1B model's embedding alone is 262 MB in fp32
  const limits = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: features as GPUFeatureName[],
    requiredLimits: {
      maxBufferSize: limits.maxBufferSize,
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxStorageBuffersPerShaderStage: limits.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
    },
  });
  const errors: string[] = [];
  device.addEventListener('uncapturederror', (e) => {
    if (errors.length < 20) errors.push(String((e as GPUUncapturedErrorEvent).error?.message ?? e));
  });
  const description = [ai?.vendor, ai?.architecture, ai?.device || ai?.description].filter(Boolean).join(' ');
  const software = /swiftshader|llvmpipe|lavapipe/i.test(`${description} ${ai?.description ?? ''}`);
  const info: GpuDeviceInfo = {
    adapter: description || 'unknown adapter',
    subgroups32: device.features.has('subgroups') && ai?.subgroupMinSize === 32 && ai?.subgroupMaxSize === 32,
    timestamps: device.features.has('timestamp-query'),
    robust: robust || !inNode,
    software,
  };
  return {
    device,
    info,
    errors,
    destroy: () => {
      device.destroy();
      liveInstances.delete(gpu);
    },
  };
}

let shared: Promise<GpuContext> | null = null;

/**
 * The process's GPU context for the captured path, acquired on first use (LLM.load and the
 * benchmarks share it). `releaseSharedGpu()` destroys it (shutdownBackend calls it).
 */
export function sharedGpu(): Promise<GpuContext> {
  if (!shared) {
    shared = acquireGpu();
    shared.catch(() => (shared = null));
  }
  return shared;
}

/** Destroy the shared context, if one was acquired. */
export async function releaseSharedGpu(): Promise<void> {
  const s = shared;
  shared = null;
  if (s) (await s.catch(() => null))?.destroy();
}

/**
 * GPU microseconds of each of `passes` compute passes, from timestamp queries (the adapter's
 * 'timestamp-query'): one command buffer, pass i encoded by `fill(pass, i)`.
 */
export async function timePasses(ctx: GpuContext, passes: number, fill: (pass: GPUComputePassEncoder, i: number) => void): Promise<number[]> {
  if (!ctx.info.timestamps) throw new Error("timePasses: this adapter has no 'timestamp-query'");
  const d = ctx.device;
  const querySet = d.createQuerySet({ type: 'timestamp', count: 2 * passes });
  const resolved = d.createBuffer({ size: 16 * passes, usage: 0x200 | 0x4 }); // QUERY_RESOLVE | COPY_SRC
  const read = d.createBuffer({ size: 16 * passes, usage: 0x1 | 0x8 }); // MAP_READ | COPY_DST
  try {
    const e = d.createCommandEncoder();
    for (let i = 0; i < passes; i++) {
      const pass = e.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
      fill(pass, i);
      pass.end();
    }
    e.resolveQuerySet(querySet, 0, 2 * passes, resolved, 0);
    e.copyBufferToBuffer(resolved, 0, read, 0, 16 * passes);
    d.queue.submit([e.finish()]);
    await read.mapAsync(0x1);
    const t = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    return Array.from({ length: passes }, (_, i) => Number(t[2 * i + 1] - t[2 * i]) / 1000);
  } finally {
    for (const x of [querySet, resolved, read]) x.destroy();
  }
}
