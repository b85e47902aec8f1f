// CPU threads: tfjs-wasm's threaded build in Node (lib/wasmThreads.ts) and our kernels split over
// its threads (lib/model/kernels/threads.ts). The split must not move a bit: a GEMM's columns and
// a decode step's layers give the same numbers on 3 threads as on one, generation gives the same
// tokens, and bad thread counts or a switch under live tensors are refused by name.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';

import { initBackend, shutdownBackend } from '../lib/backend';
import { generate, type LanguageModel } from '../lib/generate/generate';
import { loadTokenizer } from '../lib/generate/tokenizer';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { cpuKernelsFor, offsetOf, plainCpuKernelsFor, wasmMemoryOf, type WasmBackendLike } from '../lib/model/kernels/cpu';
import { relaxedSimdSupported } from '../lib/model/kernels/relaxedSimd';
import { CpuThreadPool } from '../lib/model/kernels/threads';
import { useWasmDecodeStep } from '../lib/model/kernels/wasmDecode';
import { gemvWeights, wasmGemv, wasmGemvAvailable } from '../lib/model/kernels/wasmGemv';
import { loadModel } from '../lib/model/load';
import { onWasmThreads } from './golden';

afterAll(() => shutdownBackend());

// prefill 3 prompts of different lengths (the decode steps then need the mask), then 6 decode
// steps: every step's logits
async function decodeRun(dir: string): Promise<Float32Array[]> {
  const model = await loadModel(dir);
  const cache = new ContiguousKVCache(model.kvShape, 3);
  const out: Float32Array[] = [];
  try {
    let logits = model.forward([[5, 17, 99, 4], [3, 250], [7, 7, 7, 7, 7, 7]], cache);
    for (let step = 0; step < 6; step++) {
      out.push((await logits.data()) as Float32Array);
      logits.dispose();
      logits = model.forward([[11 + step], [12 + step], [13 + step]], cache);
    }
    out.push((await logits.data()) as Float32Array);
    logits.dispose();
  } finally {
    cache.dispose();
    model.dispose();
  }
  return out;
}

describe('tfjs-wasm on several threads in Node', () => {
  it('starts the threaded build with the threads asked for, its memory shared, our pool over it', async () => {
    const info = await initBackend({ prefer: 'wasm', wasmThreads: 3 });
    expect(info.facts.wasm?.threads).toBe(3);
    expect(info.facts.wasm?.multithreadSupported).toBe(true);
    expect(info.reason).toContain('on 3 threads');
    const be = tf.backend() as unknown as WasmBackendLike;
    expect(wasmMemoryOf(be).buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(CpuThreadPool.of(be)?.threads).toBe(3);
    // and back on one: tfjs's own build, no pool
    const one = await initBackend({ prefer: 'wasm', wasmThreads: 1 });
    expect(one.facts.wasm?.threads).toBe(1);
    expect(CpuThreadPool.of(tf.backend() as unknown as WasmBackendLike)).toBeNull();
  });

  it('refuses a bad thread count, and a switch while tensors live, naming the problem', async () => {
    await expect(initBackend({ prefer: 'wasm', wasmThreads: 0 })).rejects.toThrow(/wasmThreads must be an integer in \[1, 64\]/);
    await expect(initBackend({ prefer: 'wasm', wasmThreads: 2.5 })).rejects.toThrow(/wasmThreads/);
    await initBackend({ prefer: 'wasm', wasmThreads: 1 });
    const alive = tf.zeros([2]);
    await expect(initBackend({ prefer: 'wasm', wasmThreads: 2 })).rejects.toThrow(/while 1 tensors live on it/);
    alive.dispose();
    expect((await initBackend({ prefer: 'wasm', wasmThreads: 1 })).facts.wasm?.threads).toBe(1); // still usable
  });

  it('wasmFma picks the kernels build when the backend starts: plain with false, and a switch on a live backend is refused', async () => {
    await shutdownBackend();
    const off = await initBackend({ prefer: 'wasm', wasmThreads: 2, wasmFma: false });
    expect(off.facts.wasm?.fma).toBe('off');
    expect(off.reason).not.toContain('fused multiply-adds');
    await expect(initBackend({ prefer: 'wasm', wasmThreads: 2, wasmFma: true })).rejects.toThrow(/wasmFma is read when the wasm backend starts.*shutdownBackend/);
    await shutdownBackend();
    const on = await initBackend({ prefer: 'wasm', wasmThreads: 2, wasmFma: true });
    // where the engine runs relaxed SIMD (Node 20 through V8's flag, Node 22): the fused build on this FMA CPU
    expect(on.facts.wasm?.fma).toBe(relaxedSimdSupported() ? 'fused' : 'off');
    if (on.facts.wasm?.fma === 'fused') expect(on.reason).toContain('fused multiply-adds');
    // the two builds' outputs on a 4-row GEMM: close, not equal (one rounding per multiply-add, not two)
    const be = tf.backend() as unknown as WasmBackendLike;
    const [M, K, N] = [4, 256, 64];
    const x = tf.randomUniform([M, K], -1, 1, 'float32', 3) as tf.Tensor2D;
    const w = gemvWeights(tf.randomUniform([K, N], -1, 1, 'float32', 4).dataSync() as Float32Array, K, N, 'f32');
    const outs = [cpuKernelsFor(be), plainCpuKernelsFor(be)].map((k) => {
      const out = be.makeOutput([M, N], 'float32');
      new Float32Array(wasmMemoryOf(be).buffer, offsetOf(be, out), M * N).fill(0);
      k.gemm(offsetOf(be, x), offsetOf(be, w), offsetOf(be, out), M, K, N, 0, N);
      return tf.engine().makeTensorFromTensorInfo(out);
    });
    const [a, b] = outs.map((t) => t.dataSync() as Float32Array);
    const differ = a.filter((v, i) => v !== b[i]).length;
    const maxDiff = Math.max(...a.map((v, i) => Math.abs(v - b[i])));
    if (on.facts.wasm?.fma === 'fused') expect(differ).toBeGreaterThan(0);
    expect(maxDiff).toBeLessThan(1e-4);
    tf.dispose([x, w, ...outs]);
    await shutdownBackend();
  });

  it('the GEMM split over 3 threads has the bits of one thread, f32 and bf16, every M in 1..8', () =>
    onWasmThreads(3, async () => {
      expect(wasmGemvAvailable(4, 8)).toBe(true);
      const be = tf.backend() as unknown as WasmBackendLike;
      const k = cpuKernelsFor(be);
      const pool = CpuThreadPool.of(be)!;
      // N = 8 x groups; 3 threads split 5 and 13 groups unevenly, 1 group leaves two threads idle
      const shapes = [[12, 8], [64, 40], [200, 104], [388, 512]];
      for (let M = 1; M <= 8; M++) {
        for (const [K, N] of shapes) {
          tf.tidy(() => {
            const x = tf.randomUniform([M, K], -1, 1, 'float32', M * K) as tf.Tensor2D;
            const w = tf.randomUniform([K, N], -1, 1, 'float32', K + N);
            for (const format of ['f32', 'bf16'] as const) {
              const tiles = gemvWeights(w.dataSync() as Float32Array, K, N, format);
              const split = tf.zeros([M, N]); // through the pool's GEMM job (the fused decode step's split)
              pool.gemm(format === 'bf16' ? 'gemmBf16' : 'gemm', offsetOf(be, x), offsetOf(be, tiles), offsetOf(be, split), M, K, N);
              const one = tf.zeros([M, N]);
              k[format === 'bf16' ? 'gemmBf16' : 'gemm'](offsetOf(be, x), offsetOf(be, tiles), offsetOf(be, one), M, K, N, 0, N);
              expect(Array.from(split.dataSync()), `${format} M=${M} K=${K} N=${N}`).toEqual(Array.from(one.dataSync()));
              if (format === 'f32') expect(tf.max(tf.abs(tf.sub(split, tf.matMul(x, w)))).dataSync()[0]).toBeLessThan(1e-6 * K);
              // the op-by-op GEMV kernel (this thread alone: see wasmGemv.ts) has the same bits
              expect(Array.from(wasmGemv(x, tiles).dataSync()), `wasmGemv ${format} M=${M}`).toEqual(Array.from(one.dataSync()));
            }
          });
        }
      }
    }));

  it("a worker's kernel that fails makes the call throw, and every later job, instead of hanging", () =>
    onWasmThreads(2, async () => {
      expect(wasmGemvAvailable(4, 8)).toBe(true);
      const be = tf.backend() as unknown as WasmBackendLike;
      const pool = CpuThreadPool.of(be)!;
      const end = wasmMemoryOf(be).buffer.byteLength;
      const [x, out] = [tf.zeros([1, 4]), tf.zeros([1, 16])];
      // K = 4, N = 16: one block of W, 256 bytes; thread 0 reads its first 128, the worker the
      // last 128, which lie past the end of the memory: only the worker traps
      expect(() => pool.gemm('gemm', offsetOf(be, x), end - 128, offsetOf(be, out), 1, 4, 16)).toThrow(/a CPU kernel thread failed/);
      const tiles = gemvWeights(new Float32Array(64), 4, 16, 'f32');
      expect(() => pool.gemm('gemm', offsetOf(be, x), offsetOf(be, tiles), offsetOf(be, out), 1, 4, 16)).toThrow(/restart the backend/);
      tf.dispose([x, out, tiles]);
    }));

  it('a decode step on 3 threads gives the bits of one thread (fused step), and the op path agrees', async () => {
    await initBackend({ prefer: 'wasm', wasmThreads: 1 });
    const one = await decodeRun('data/models/target');
    const [three, ops] = await onWasmThreads(3, async () => {
      const fused = await decodeRun('data/models/target');
      useWasmDecodeStep(false);
      try {
        return [fused, await decodeRun('data/models/target')];
      } finally {
        useWasmDecodeStep(true);
      }
    });
    expect(three.length).toBe(one.length);
    three.forEach((row, i) => expect(Array.from(row), `step ${i}`).toEqual(Array.from(one[i])));
    let worst = 0;
    ops.forEach((row, i) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - three[i][j])))));
    expect(worst).toBeLessThan(1e-3); // the op path's softmax exp is tfjs's, not the step's exp4
  }, 120_000);

  it('generate() on 2 threads gives the tokens of one thread, greedy and seeded sampling', async () => {
    const prompts = ['In the beginning', 'And the LORD spake unto Moses, saying,'];
    const run = async () => {
      const lm: LanguageModel = { model: await loadModel('data/models/draft'), tokenizer: await loadTokenizer('data/models/draft') };
      try {
        const greedy = await generate(lm, prompts, { temperature: 0, maxTokens: 24 });
        const sampled = await generate(lm, prompts, { temperature: 1, topP: 0.9, seed: 5, maxTokens: 24 });
        return [...greedy, ...sampled].map((o) => o.tokenIds);
      } finally {
        lm.model.dispose();
      }
    };
    await initBackend({ prefer: 'wasm', wasmThreads: 1 });
    const one = await run();
    const two = await onWasmThreads(2, run);
    expect(two).toEqual(one);
    expect(one.every((ids) => ids.length > 0)).toBe(true);
  }, 120_000);
});
