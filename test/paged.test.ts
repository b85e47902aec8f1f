// Paged KV cache: the same forward steps through a paged cache (scattered block tables, any
// block size, in-place or scatter writes, copied blocks) give the logits of the contiguous cache.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { PagedKVCache, type PagedWriteMode } from '../lib/kv/paged';
import type { LlamaModel } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';

let model: LlamaModel;
beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
  model = await loadModel('data/models/draft');
});
afterAll(() => model.dispose());

async function logitsOf(t: tf.Tensor): Promise<Float32Array> {
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// a shuffled set of block ids, so logical order != physical order
function tables(numBlocks: number, perSeq: number[], seed: number): number[][] {
  const ids = Array.from({ length: numBlocks }, (_, i) => i);
  let x = seed;
  for (let i = ids.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const j = x % (i + 1);
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  let at = 0;
  return perSeq.map((n) => ids.slice(at, (at += n)));
}

const prompts = [
  [5, 17, 300, 42, 9, 81, 1000, 7, 7, 64, 2, 900, 33],
  [11, 12, 13],
  [400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 419, 420, 421],
];

describe('paged KV cache', () => {
  for (const [blockSize, mode] of [[16, 'inplace'], [1, 'inplace'], [5, 'inplace'], [4, 'scatter']] as [number, PagedWriteMode][]) {
    it(`equals the contiguous cache: ragged prefill, chunked prefill, decode (blockSize ${blockSize}, ${mode})`, async () => {
      const before = tf.memory().numTensors;
      const steps = 6;
      const maxLen = Math.max(...prompts.map((p) => p.length)) + steps;
      const blocksPer = Math.ceil(maxLen / blockSize);
      const numBlocks = blocksPer * prompts.length + 3;
      const bt = tables(numBlocks, prompts.map(() => blocksPer), blockSize * 7 + 1);
      const paged = new PagedKVCache(model.kvShape, { numBlocks, blockSize, mode });
      const contiguous = new ContiguousKVCache(model.kvShape, prompts.length);
      const lens = prompts.map(() => 0);
      const setBatch = () => paged.setBatch(bt.map((blockTable, b) => ({ blockTable, numCachedTokens: lens[b] })));
      // step 1: the first half of each prompt (chunked prefill); step 2: the rest; then decodes
      const feeds: number[][][] = [prompts.map((p) => p.slice(0, Math.ceil(p.length / 2))), prompts.map((p) => p.slice(Math.ceil(p.length / 2)))];
      for (let s = 0; s < steps; s++) feeds.push(prompts.map((_, b) => [(b * 31 + s * 7) % 8000]));
      for (const tokens of feeds) {
        setBatch();
        const a = await logitsOf(model.forward(tokens, contiguous, { logits: 'last' }));
        const b = await logitsOf(model.forward(tokens, paged, { logits: 'last' }));
        expect(maxDiff(a, b)).toBeLessThan(1e-4);
        tokens.forEach((t, i) => (lens[i] += t.length));
      }
      expect(paged.lengths()).toEqual(lens);
      expect(paged.bytes()).toBe(2 * model.config.numLayers * numBlocks * blockSize * model.config.numKvHeads * model.config.headDim * 4);
      paged.dispose();
      contiguous.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('equals the contiguous cache with 2 kv heads (target model, GQA 6/2), in place and by scatter', async () => {
    const target = await loadModel('data/models/target');
    for (const mode of ['inplace', 'scatter'] as PagedWriteMode[]) {
      const paged = new PagedKVCache(target.kvShape, { numBlocks: 24, blockSize: 4, mode });
      const contiguous = new ContiguousKVCache(target.kvShape, 2);
      const bt = tables(24, [10, 10], 5);
      const lens = [0, 0];
      for (const tokens of [[prompts[0], prompts[1]], [[7], [8]], [[9, 10, 11], [12]]]) {
        paged.setBatch(bt.map((blockTable, b) => ({ blockTable, numCachedTokens: lens[b] })));
        const a = await logitsOf(target.forward(tokens, contiguous, { logits: 'last' }));
        const b = await logitsOf(target.forward(tokens, paged, { logits: 'last' }));
        expect(maxDiff(a, b)).toBeLessThan(1e-4);
        tokens.forEach((t, i) => (lens[i] += t.length));
      }
      paged.dispose();
      contiguous.dispose();
    }
    target.dispose();
  });

  it('a sequence attends only over its own blocks, whatever other blocks hold', async () => {
    const numBlocks = 12;
    const paged = new PagedKVCache(model.kvShape, { numBlocks, blockSize: 4 });
    const alone = new PagedKVCache(model.kvShape, { numBlocks, blockSize: 4 });
    // fill every block of `paged` with another sequence's keys first
    paged.setBatch([{ blockTable: Array.from({ length: numBlocks }, (_, i) => i), numCachedTokens: 0 }]);
    (await logitsOf(model.forward([Array.from({ length: 48 }, (_, i) => i + 100)], paged))).fill(0);
    const p = prompts[0];
    paged.setBatch([{ blockTable: [7, 2, 9, 4], numCachedTokens: 0 }]);
    alone.setBatch([{ blockTable: [0, 1, 2, 3], numCachedTokens: 0 }]);
    const a = await logitsOf(model.forward([p], paged));
    const b = await logitsOf(model.forward([p], alone));
    expect(maxDiff(a, b)).toBeLessThan(1e-5);
    paged.dispose();
    alone.dispose();
  });

  it('copyBlocks copies a block in every layer (copy-on-write): a forked sequence continues identically', async () => {
    for (const mode of ['inplace', 'scatter'] as PagedWriteMode[]) {
      const cache = new PagedKVCache(model.kvShape, { numBlocks: 8, blockSize: 4, mode });
      const p = prompts[1].concat([1, 2, 3]); // 6 tokens: block 0 full, block 1 partial
      cache.setBatch([{ blockTable: [3, 5], numCachedTokens: 0 }]);
      (await logitsOf(model.forward([p], cache))).fill(0);
      cache.copyBlocks([[5, 6]]);
      cache.setBatch([
        { blockTable: [3, 5], numCachedTokens: 6 },
        { blockTable: [3, 6], numCachedTokens: 6 },
      ]);
      const out = await logitsOf(model.forward([[77], [77]], cache)); // [2, 1, V]
      const V = model.config.vocabSize;
      expect(maxDiff(out.subarray(0, V), out.subarray(V))).toBeLessThan(1e-6);
      cache.dispose();
    }
  });

  it('rejects a block table too short for the step and out-of-range block ids', () => {
    const cache = new PagedKVCache(model.kvShape, { numBlocks: 4, blockSize: 4 });
    cache.setBatch([{ blockTable: [0], numCachedTokens: 3 }]);
    expect(() => model.forward([[1, 2]], cache)).toThrow(/needs 2 blocks/);
    expect(() => cache.setBatch([{ blockTable: [9], numCachedTokens: 0 }])).toThrow(/out of range/);
    expect(() => cache.setBatch([{ blockTable: [0], numCachedTokens: 5 }])).toThrow(/5 cached tokens but 1 blocks/);
    cache.dispose();
  });
});
