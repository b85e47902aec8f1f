// Roofline arithmetic on hand-computed examples, and the measuring functions on the CPU backend
// (positive, finite, no leaked tensors).
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, shutdownBackend } from '../lib/backend';
import {
  attainableGflops,
  attentionFlopsPerKey,
  bytesPerDecodeStep,
  bytesPerDecodedToken,
  decodeCost,
  kvBytesPerToken,
  measureBandwidth,
  measureMatmulFlops,
  predictDecodeTokensPerSecond,
  prefillCost,
  ridgeIntensity,
  stepCost,
} from '../lib/bench/roofline';

describe('bytes per decoded token', () => {
  it('kvBytesPerToken = 2 x layers x kvHeads x headDim x bytes', () => {
    // TinyLlama-like: 22 layers, 4 KV heads of 64, fp32: 2*22*4*64*4
    expect(kvBytesPerToken({ layers: 22, kvHeads: 4, headDim: 64 })).toBe(45_056);
    expect(kvBytesPerToken({ layers: 22, kvHeads: 4, headDim: 64, bytesPerElement: 2 })).toBe(22_528);
  });

  it('weights once per step, KV once per sequence', () => {
    const t = { weightBytes: 1e9, kvBytesPerToken: 1e5, contextLength: 1000 };
    expect(bytesPerDecodeStep(t)).toBe(1.1e9); // 1e9 + 1000*1e5
    expect(bytesPerDecodedToken(t)).toBe(1.1e9);
    expect(bytesPerDecodeStep({ ...t, batch: 4 })).toBe(1.4e9); // 1e9 + 4*1000*1e5
    expect(bytesPerDecodedToken({ ...t, batch: 4 })).toBe(3.5e8); // 1.4e9 / 4
  });

  it('predicted tokens/s = B x bandwidth / bytes per step', () => {
    const t = { weightBytes: 1e9, kvBytesPerToken: 1e5, contextLength: 1000, bandwidthGBps: 100 };
    expect(predictDecodeTokensPerSecond(t)).toBeCloseTo(100e9 / 1.1e9, 9); // 90.909...
    expect(predictDecodeTokensPerSecond({ ...t, batch: 4 })).toBeCloseTo((4 * 100e9) / 1.4e9, 9); // 285.714...
  });

  it('with a compute roof, the slower roof wins', () => {
    const base = { weightBytes: 1e9, kvBytesPerToken: 0, contextLength: 0, bandwidthGBps: 100 };
    // memory: 1e9 B / 100 GB/s = 10 ms per step; compute: 64 tokens * 2e9 FLOP / 100 GFLOP/s = 1.28 s
    expect(predictDecodeTokensPerSecond({ ...base, batch: 64, flopsPerToken: 2e9, peakGflops: 100 })).toBeCloseTo(50, 9);
    // batch 1: compute 20 ms > memory 10 ms -> 50 tokens/s; without the compute roof 100 tokens/s
    expect(predictDecodeTokensPerSecond({ ...base, flopsPerToken: 2e9, peakGflops: 100 })).toBeCloseTo(50, 9);
    expect(predictDecodeTokensPerSecond(base)).toBeCloseTo(100, 9);
  });

  it('rejects nonsense with the field named', () => {
    const t = { weightBytes: 1e9, kvBytesPerToken: 1e5, contextLength: 1000 };
    expect(() => bytesPerDecodeStep({ ...t, batch: 0 })).toThrow(/batch must be a finite number > 0/);
    expect(() => bytesPerDecodeStep({ ...t, contextLength: -1 })).toThrow(/contextLength/);
    expect(() => predictDecodeTokensPerSecond({ ...t, bandwidthGBps: 0 })).toThrow(/bandwidthGBps/);
  });
});

describe('arithmetic intensity: prefill vs decode', () => {
  const model = { params: 1e6, weightBytes: 4e6, kvBytesPerToken: 1000, attentionFlopsPerKey: 100 };

  it('attentionFlopsPerKey = 4 x layers x heads x headDim', () => {
    expect(attentionFlopsPerKey({ layers: 2, heads: 3, headDim: 5 })).toBe(120);
  });

  it('stepCost by hand', () => {
    // prefill B=2, T=3: matmuls 2*1e6*6; keys per sequence 1+2+3 = 6; bytes 4e6 + 2*3*1000
    expect(prefillCost(model, { batch: 2, promptLength: 3 })).toEqual({
      flops: 12_000_000 + 100 * 2 * 6,
      bytes: 4_006_000,
      intensity: 12_001_200 / 4_006_000,
    });
    // decode B=2, context 3 (2 cached + the new token): matmuls 2*1e6*2, keys 3 each
    const d = decodeCost(model, { batch: 2, contextLength: 3 });
    expect(d.flops).toBe(4_000_000 + 100 * 2 * 3);
    expect(d.bytes).toBe(4_006_000);
    // the decode step reads what bytesPerDecodeStep says it reads
    expect(d.bytes).toBe(bytesPerDecodeStep({ weightBytes: 4e6, kvBytesPerToken: 1000, contextLength: 3, batch: 2 }));
    // appending 2 tokens after 5: keys (5+1) + (5+2) = 13 per sequence
    expect(stepCost(model, { batch: 1, newTokens: 2, pastLength: 5 }).flops).toBe(4_000_000 + 100 * 13);
  });

  it('decode of fp32 weights sits near 0.5 FLOP/byte per sequence; prefill far above', () => {
    const m = { params: 1e9, weightBytes: 4e9, kvBytesPerToken: 0 };
    expect(decodeCost(m, { contextLength: 1 }).intensity).toBe(0.5);
    expect(decodeCost(m, { batch: 8, contextLength: 1 }).intensity).toBe(4);
    expect(prefillCost(m, { promptLength: 512 }).intensity).toBe(256);
  });

  it('roofline: ridge point and attainable GFLOP/s', () => {
    const roofs = { peakGflops: 1000, bandwidthGBps: 100 };
    expect(ridgeIntensity(roofs)).toBe(10);
    expect(attainableGflops(5, roofs)).toBe(500);
    expect(attainableGflops(20, roofs)).toBe(1000);
  });
});

describe('measurement on wasm', () => {
  beforeAll(async () => {
    await initBackend({ prefer: 'wasm' });
  });
  afterAll(async () => {
    await shutdownBackend();
  });

  it('measureBandwidth (gemv): positive, finite, disposes its tensors', async () => {
    const before = tf.memory().numTensors;
    const r = await measureBandwidth({ bytes: 16 << 20, repeats: 3 });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.backend).toBe('wasm');
    expect(r.bytes).toBe(16 << 20); // K=4096 divides it
    expect(r.kernel).toBe('gemv x[1,4096] @ W[4096,1024] float32');
    expect(Number.isFinite(r.bestGBps) && r.bestGBps > 0).toBe(true);
    expect(r.bestGBps).toBeGreaterThanOrEqual(r.medianGBps);
    expect(r.timing.repeats).toBe(3);
    expect(r.bestGBps).toBeCloseTo(r.bytes / r.timing.minMs / 1e6, 6);
  });

  it('measureBandwidth (sum) and measureMatmulFlops: positive, finite, no leaks', async () => {
    const before = tf.memory().numTensors;
    const s = await measureBandwidth({ bytes: 8 << 20, repeats: 2, kernel: 'sum' });
    const m = await measureMatmulFlops({ n: 256, repeats: 2 });
    expect(tf.memory().numTensors).toBe(before);
    expect(s.kernel).toMatch(/^sum W\[4096,512\]/);
    expect(Number.isFinite(s.medianGBps) && s.medianGBps > 0).toBe(true);
    expect(m.flops).toBe(2 * 256 ** 3);
    expect(Number.isFinite(m.bestGflops) && m.bestGflops > 0).toBe(true);
  });

  it('the GEMV computes the right thing (so the timing is of real work)', async () => {
    // same shapes the kernel uses: every output is K * 0.5 * 1e-3
    const W = tf.fill([4096, 8], 0.5);
    const x = tf.fill([1, 4096], 1e-3);
    const y = tf.matMul(x, W);
    const v = await y.data();
    tf.dispose([W, x, y]);
    for (const e of v) expect(e).toBeCloseTo(4096 * 0.5e-3, 3);
  });
});

describe('measurement on webgpu', () => {
  let hasAdapter = false;
  beforeAll(async () => {
    try {
      const { create } = await import('webgpu');
      hasAdapter = (await create([]).requestAdapter()) !== null;
    } catch {
      hasAdapter = false;
    }
    if (hasAdapter) await initBackend({ prefer: 'webgpu' });
  });
  afterAll(async () => {
    await shutdownBackend();
  });

  it('measureBandwidth and measureMatmulFlops: positive, finite, no leaks', async ({ skip }) => {
    skip(!hasAdapter, 'no WebGPU adapter on this machine (Dawn found none)');
    const before = tf.memory().numTensors;
    const b = await measureBandwidth({ bytes: 64 << 20, repeats: 3 });
    const m = await measureMatmulFlops({ n: 1024, repeats: 2 });
    expect(tf.memory().numTensors).toBe(before);
    expect(b.backend).toBe('webgpu');
    expect(Number.isFinite(b.bestGBps) && b.bestGBps > 0).toBe(true);
    expect(Number.isFinite(m.bestGflops) && m.bestGflops > 0).toBe(true);
  });
});
