// initBackend: what it picks, why, the facts it reports, and its errors. Runs on CPU; the
// GPU-only checks run only where Dawn finds an adapter and say so in their titles otherwise.
import * as os from 'node:os';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTO_ORDER, BackendUnavailableError, backendInfo, initBackend, shutdownBackend } from '../lib/backend';

// an independent look for an adapter, with the webgpu package directly
async function findAdapter(): Promise<boolean> {
  try {
    const { create } = await import('webgpu');
    return (await create([]).requestAdapter()) !== null;
  } catch {
    return false;
  }
}
let hasAdapter = false;
const tfjsNodeInstalled = ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'].some((p) => {
  try {
    createRequire(path.join(process.cwd(), 'package.json')).resolve(p);
    return true;
  } catch {
    return false;
  }
});
const NO_GPU = 'no WebGPU adapter on this machine (Dawn found none)';
const WITH_GPU = 'this machine has a WebGPU adapter';
const TFJS_NODE = '@tensorflow/tfjs-node is installed here';

beforeAll(async () => {
  hasAdapter = await findAdapter();
  if (!hasAdapter) console.warn(`backend.test: ${NO_GPU}; GPU-only checks are skipped`);
});

afterAll(async () => {
  await shutdownBackend();
});

describe('initBackend on a machine without a GPU adapter', () => {
  it('auto picks wasm and says why webgpu was skipped', async ({ skip }) => {
    skip(hasAdapter, WITH_GPU);
    skip(tfjsNodeInstalled, TFJS_NODE);
    const lines: string[] = [];
    const info = await initBackend({ log: (l) => lines.push(l) });
    expect(info.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(info.skipped.map((s) => s.name)).toEqual(['tensorflow', 'webgpu']);
    expect(info.skipped[0].reason).toMatch(/not installed/);
    expect(info.skipped[1].reason).toMatch(/adapter|Vulkan loader/);
    expect(info.reason).toMatch(/^auto: .*webgpu \(.*(adapter|Vulkan loader)/);
    expect(lines.some((l) => l.startsWith('backend webgpu: skipped'))).toBe(true);
    expect(lines.at(-1)).toMatch(/^backend wasm: /);
    // nothing of Dawn stays installed, so Node can exit
    expect((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu).toBeUndefined();
  });

  it('prefer webgpu is a clear error, and the current backend stays', async ({ skip }) => {
    skip(hasAdapter, WITH_GPU);
    const before = await initBackend({ prefer: 'wasm' });
    const err = await initBackend({ prefer: 'webgpu' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as BackendUnavailableError).backend).toBe('webgpu');
    expect((err as Error).message).toMatch(/^backend 'webgpu' is not available: .*(adapter|Vulkan loader)/);
    expect(tf.getBackend()).toBe('wasm');
    expect(backendInfo()).toBe(before);
  });

  it('prefer tensorflow without tfjs-node installed is a clear error', async ({ skip }) => {
    skip(tfjsNodeInstalled, TFJS_NODE);
    await expect(initBackend({ prefer: 'tensorflow' })).rejects.toThrow(/backend 'tensorflow' is not available: .*not installed/);
  });
});

describe('initBackend, any machine', () => {
  it('reports facts about the host and the wasm backend', async () => {
    const info = await initBackend({ prefer: 'wasm' });
    const f = info.facts;
    expect(f.backend).toBe('wasm');
    expect(f.tfjsVersion).toBe(tf.version_core);
    expect(f.runtime).toBe('node');
    expect(f.node).toBe(process.versions.node);
    expect(f.cpuCores).toBe(os.cpus().length);
    expect(f.cpuModel).toBeTruthy();
    expect(f.os).toContain(os.release());
    expect(f.totalMemoryBytes).toBe(os.totalmem());
    expect(typeof f.wasm?.simd).toBe('boolean');
    expect(f.wasm?.threads).toBeGreaterThanOrEqual(1);
    expect(info.reason).toMatch(/WebAssembly/);
  });

  it('is idempotent: auto after init returns the same record, concurrent calls agree', async () => {
    const a = await initBackend({ prefer: 'wasm' });
    const [b, c] = await Promise.all([initBackend(), initBackend({ prefer: 'wasm' })]);
    expect(b).toBe(a);
    expect(c).toBe(a);
  });

  it('switches on an explicit different prefer, and auto then keeps it', async () => {
    const cpu = await initBackend({ prefer: 'cpu' });
    expect(cpu.name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(await initBackend()).toBe(cpu);
    const wasm = await initBackend({ prefer: 'wasm' });
    expect(wasm.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('rejects an unknown preference naming the allowed ones', async () => {
    await expect(initBackend({ prefer: 'cuda' as never })).rejects.toThrow(
      `prefer must be one of auto, ${AUTO_ORDER.join(', ')}; got 'cuda'`,
    );
  });

  it('shutdownBackend disposes tensors and a later init starts afresh', async () => {
    await initBackend({ prefer: 'wasm' });
    tf.ones([4]);
    expect(tf.engine().state.numTensors).toBeGreaterThan(0);
    await shutdownBackend();
    expect(backendInfo()).toBeNull();
    expect(tf.engine().state.numTensors).toBe(0);
    const info = await initBackend({ prefer: 'wasm' });
    expect(info.name).toBe('wasm');
    expect(info.reason).toMatch(/^requested explicitly/);
    const t = tf.add(tf.scalar(2), tf.scalar(3));
    expect(await t.data()).toEqual(new Float32Array([5]));
    tf.dispose(t);
  });
});

describe('initBackend with a WebGPU adapter', () => {
  it('auto picks webgpu', async ({ skip }) => {
    skip(!hasAdapter, NO_GPU);
    skip(tfjsNodeInstalled, TFJS_NODE);
    await shutdownBackend();
    const info = await initBackend();
    expect(info.name).toBe('webgpu');
    expect(info.skipped.map((s) => s.name)).toEqual(['tensorflow']);
  });

  it('webgpu facts: adapter, limits, features', async ({ skip }) => {
    skip(!hasAdapter, NO_GPU);
    const info = await initBackend({ prefer: 'webgpu' });
    const f = info.facts;
    expect(f.backend).toBe('webgpu');
    expect(f.adapter).toBeDefined();
    expect(f.limits!.maxBufferSize).toBeGreaterThan(0);
    expect(f.limits!.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(typeof f.features!.timestampQuery).toBe('boolean');
    const t = tf.matMul(tf.ones([2, 3]), tf.ones([3, 2]));
    expect(Array.from(await t.data())).toEqual([3, 3, 3, 3]);
    tf.dispose(t);
  });

  it('shutdownBackend removes navigator.gpu', async ({ skip }) => {
    skip(!hasAdapter, NO_GPU);
    await initBackend({ prefer: 'webgpu' });
    expect((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu).toBeDefined();
    await shutdownBackend();
    expect((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu).toBeUndefined();
  });
});
