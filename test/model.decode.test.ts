// The fused wasm decode step (lib/model/kernels/wasmDecode.ts: one call into wasm per layer) gives
// the logits of the op-by-op path (its baseline and oracle), on random models, f32 and bf16
// weights (the GEMV's tiled copies), batch 1 and small batches of different lengths (masked
// slots), over steps that grow the cache; it runs only where it applies, writes the cache the op
// path then reads, and frees all.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import type { KVCache } from '../lib/kv/cache';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { PagedKVCache } from '../lib/kv/paged';
import { useWasmDecodeStep, wasmDecodeStepAvailable } from '../lib/model/kernels/wasmDecode';
import { LlamaModel, type CpuWeightFormat } from '../lib/model/llama';
import { makeWeights, maxAbsDiff, tinyConfig, weightSource } from './model.helpers';

const DECODE_LAYER = 'InferenceLabDecodeLayers'; // wasmDecode.ts's DECODE_LAYERS, spelled out: a rename must fail here
/** the two paths differ only in the softmax's exp (a polynomial here, tfjs-wasm's there) */
const TOL = 1e-4;

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
  expect(wasmDecodeStepAvailable(32, 8, 48)).toBe(true);
});

// a random model whose sizes the kernels take: GQA (G = 3), D = 16, untied head; and a tied one
const configs = {
  untied: tinyConfig({ hiddenSize: 48, intermediateSize: 72, numHeads: 6, numKvHeads: 2, headDim: 16, vocabSize: 200, numLayers: 3 }),
  tied: tinyConfig({ hiddenSize: 32, intermediateSize: 40, numHeads: 4, numKvHeads: 4, vocabSize: 96, tieWordEmbeddings: true }),
};

// a seeded stream of token ids
let state = 7;
const token = (V: number) => {
  state = (state * 1103515245 + 12345) % 2 ** 31;
  return state % V;
};

// prefill `prompts`, then `steps` decode steps of random tokens: every step's logits, and whether
// each decode step ran the fused layer kernel
async function decode(
  model: LlamaModel,
  cache: KVCache,
  prompts: number[][],
  steps: number[][][],
): Promise<{ logits: Float32Array[]; fused: boolean[] }> {
  const logits: Float32Array[] = [];
  const fused: boolean[] = [];
  const first = model.forward(prompts, cache);
  logits.push((await first.data()) as Float32Array);
  first.dispose();
  for (const tokens of steps) {
    let out: tf.Tensor | null = null;
    const info = await tf.profile(() => {
      out = model.forward(tokens, cache);
      return out;
    });
    fused.push(info.kernelNames.includes(DECODE_LAYER));
    logits.push((await out!.data()) as Float32Array);
    out!.dispose();
  }
  return { logits, fused };
}

describe('the fused decode step = the op-by-op path', () => {
  for (const [name, config] of Object.entries(configs)) {
    for (const format of ['f32', 'bf16'] as CpuWeightFormat[]) {
      it(`${name} model, ${format} weights: batch 1, 3 and 8 of different lengths, 20 steps across cache growth`, async () => {
        const start = tf.memory().numTensors;
        const model = LlamaModel.fromWeights(config, weightSource(config, makeWeights(config, 11)), name, { cpuWeights: format });
        const V = config.vocabSize;
        try {
          for (const B of [1, 3, 8]) {
            const prompts = Array.from({ length: B }, (_, b) => Array.from({ length: 3 + 4 * b }, () => token(V)));
            const steps = Array.from({ length: 20 }, () => Array.from({ length: B }, () => [token(V)]));
            // growBy 8: the cache grows every 8 slots, so some steps write into a fresh tensor
            const run = async (on: boolean) => {
              useWasmDecodeStep(on);
              const cache = new ContiguousKVCache(model.kvShape, B, { growBy: 8 });
              try {
                return await decode(model, cache, prompts, steps);
              } finally {
                cache.dispose();
                useWasmDecodeStep(true);
              }
            };
            const fused = await run(true);
            const ops = await run(false);
            expect(fused.fused.every(Boolean), 'every decode step fused').toBe(true);
            expect(ops.fused.some(Boolean), 'no step fused when switched off').toBe(false);
            let worst = 0;
            fused.logits.forEach((row, i) => (worst = Math.max(worst, maxAbsDiff(row, ops.logits[i]))));
            console.log(
              `[decode step] ${name} ${format} B=${B}: max |fused - ops| = ${worst.toExponential(2)} over ${fused.logits.length} steps`,
            );
            expect(worst, `B = ${B}`).toBeLessThan(TOL);
          }
        } finally {
          model.dispose();
        }
        expect(tf.memory().numTensors).toBe(start);
      }, 60_000);
    }
  }

  it('fused steps write the cache the op path reads: mixing the two, and a prefill after fused steps', async () => {
    const config = configs.untied;
    const model = LlamaModel.fromWeights(config, weightSource(config, makeWeights(config, 5)));
    const V = config.vocabSize;
    const prompt = Array.from({ length: 5 }, () => token(V));
    const steps = Array.from({ length: 12 }, () => [[token(V)]]);
    const run = async (fusedAt: (i: number) => boolean) => {
      const cache = new ContiguousKVCache(model.kvShape, 1, { growBy: 4 });
      const out: Float32Array[] = [];
      const first = model.forward([prompt], cache);
      out.push((await first.data()) as Float32Array);
      first.dispose();
      for (let i = 0; i < steps.length; i++) {
        useWasmDecodeStep(fusedAt(i));
        const l = model.forward(steps[i], cache);
        out.push((await l.data()) as Float32Array);
        l.dispose();
      }
      useWasmDecodeStep(true);
      // then a 3-token step (the op path) over what the decode steps stored
      const more = model.forward([[token(V), token(V), token(V)]], cache, { logits: 'all' });
      out.push((await more.data()) as Float32Array);
      more.dispose();
      cache.dispose();
      return out;
    };
    state = 99;
    const alternating = await run((i) => i % 2 === 0);
    state = 99;
    const ops = await run(() => false);
    let worst = 0;
    alternating.forEach((row, i) => (worst = Math.max(worst, maxAbsDiff(row, ops[i]))));
    expect(worst).toBeLessThan(TOL);
    model.dispose();
  });

  it('applies only where it can: not to prefill, nor a concat-mode or paged cache, nor with an attention observer', async () => {
    const config = configs.untied;
    const model = LlamaModel.fromWeights(config, weightSource(config, makeWeights(config, 3)));
    const fusedIn = async (cache: KVCache, tokens: number[][], onAttention?: () => void) => {
      const info = await tf.profile(() => model.forward(tokens, cache, { onAttention }));
      if (info.result instanceof tf.Tensor) info.result.dispose();
      return info.kernelNames.includes(DECODE_LAYER);
    };
    const inplace = new ContiguousKVCache(model.kvShape, 1);
    expect(await fusedIn(inplace, [[1, 2, 3]])).toBe(false); // prefill
    expect(await fusedIn(inplace, [[4]])).toBe(true);
    expect(await fusedIn(inplace, [[5]], () => {})).toBe(false);
    const concat = new ContiguousKVCache(model.kvShape, 1, { mode: 'concat' });
    expect(await fusedIn(concat, [[1, 2, 3]])).toBe(false);
    expect(await fusedIn(concat, [[4]])).toBe(false);
    const paged = new PagedKVCache(model.kvShape, { numBlocks: 4, blockSize: 4 });
    paged.setBatch([{ blockTable: [0, 1], numCachedTokens: 0 }]);
    expect(await fusedIn(paged, [[1, 2, 3]])).toBe(false);
    paged.setBatch([{ blockTable: [0, 1], numCachedTokens: 3 }]);
    expect(await fusedIn(paged, [[4]])).toBe(false);
    for (const c of [inplace, concat, paged]) c.dispose();
    model.dispose();
  });
});
