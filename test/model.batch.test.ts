// Batching and the KV cache: a batch of prompts of different lengths gives the logits and
// greedy tokens of each prompt alone; ragged steps (different token counts, 0 included),
// rollback with truncate(), both append modes, the no-cache path, and tensor leaks.
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import type { KVCache } from '../lib/kv/cache';
import { ContiguousKVCache, type AppendMode } from '../lib/kv/contiguous';
import { NoKVCache } from '../lib/kv/none';
import { ATTENTION_LIMITS, LlamaModel, type ForwardOptions } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';
import { useWasmAttention, wasmAttentionAvailable, wasmPV, wasmQKT } from '../lib/model/kernels/wasmAttention';
import { argmax, makeWeights, maxAbsDiff, referenceLogits, tinyConfig, weightSource } from './model.helpers';

/** batched and alone differ only in summation order: allow float32 rounding noise */
const TOL = 1e-4;
const golden = JSON.parse(fs.readFileSync('data/golden/golden.json', 'utf8')) as {
  prompts: { name: string; ids: number[] }[];
};
// 1, 7, 24 and 65 tokens
const PROMPTS = [0, 2, 6, 9].map((i) => golden.prompts[i].ids);
const DECODE_STEPS = 10;

async function rows(logits: tf.Tensor3D): Promise<Float32Array[]> {
  const [B, n, V] = logits.shape;
  const data = (await logits.data()) as Float32Array;
  logits.dispose();
  const out: Float32Array[] = [];
  for (let i = 0; i < B * n; i++) out.push(data.slice(i * V, (i + 1) * V));
  return out; // row b*n + j = sequence b, j-th returned slot
}

async function step(model: LlamaModel, tokens: number[][], cache: KVCache, options?: ForwardOptions) {
  return rows(model.forward(tokens, cache, options));
}

/** greedy decode of one prompt alone: the prefill logits row and each step's row, and tokens */
async function alone(model: LlamaModel, ids: number[], steps: number, mode: AppendMode) {
  const cache = new ContiguousKVCache(model.kvShape, 1, { mode });
  const logits = [(await step(model, [ids], cache))[0]];
  const tokens = [argmax(logits[0])];
  for (let s = 0; s < steps; s++) {
    logits.push((await step(model, [[tokens[tokens.length - 1]]], cache))[0]);
    tokens.push(argmax(logits[logits.length - 1]));
  }
  cache.dispose();
  return { logits, tokens };
}

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
});

for (const which of ['target', 'draft'] as const) {
  describe(`batch of different lengths: ${which}`, () => {
    let model: LlamaModel;
    let baseline = 0;
    beforeAll(async () => {
      model = await loadModel(`data/models/${which}`);
      baseline = tf.memory().numTensors;
    });
    afterAll(() => {
      model?.dispose();
    });

    for (const mode of ['inplace', 'concat'] as const) {
      it(`batched prefill + ${DECODE_STEPS} greedy steps equal each prompt alone (${mode} append)`, async () => {
        const solo: { logits: Float32Array[]; tokens: number[] }[] = [];
        for (const ids of PROMPTS) solo.push(await alone(model, ids, DECODE_STEPS, mode));
        const cache = new ContiguousKVCache(model.kvShape, PROMPTS.length, { mode });
        let worst = 0;
        let r = await step(model, PROMPTS, cache);
        for (let s = 0; s <= DECODE_STEPS; s++) {
          const next = r.map((row, b) => {
            worst = Math.max(worst, maxAbsDiff(row, solo[b].logits[s]));
            return argmax(row);
          });
          expect(next).toEqual(solo.map((x) => x.tokens[s]));
          if (s < DECODE_STEPS)
            r = await step(
              model,
              next.map((t) => [t]),
              cache,
            );
        }
        expect(cache.lengths()).toEqual(PROMPTS.map((p) => p.length + DECODE_STEPS));
        expect(cache.bytes()).toBeGreaterThan(0);
        console.log(
          `[batch ${which} ${mode}] B=${PROMPTS.length}, lengths ${PROMPTS.map((p) => p.length)}: max |batched - alone| = ${worst.toExponential(2)}`,
        );
        expect(worst).toBeLessThanOrEqual(TOL);
        cache.dispose();
        expect(cache.bytes()).toBe(0);
        expect(tf.memory().numTensors).toBe(baseline);
      });
    }

    it('ragged steps (2, 0, 3, 1 new tokens) and last-n logits equal each sequence alone', async () => {
      const extra = [[5, 6], [], [7, 8, 9], [10]];
      const cache = new ContiguousKVCache(model.kvShape, PROMPTS.length);
      await step(model, PROMPTS, cache);
      const batched = await step(model, extra, cache, { logits: 3 }); // [B, 3, V]
      const after = await step(model, [[11], [12], [13], [14]], cache);
      let worst = 0;
      for (let b = 0; b < PROMPTS.length; b++) {
        const c = new ContiguousKVCache(model.kvShape, 1);
        await step(model, [PROMPTS[b]], c);
        if (extra[b].length > 0) {
          const solo = await step(model, [extra[b]], c, { logits: 'all' });
          // the sequence's tokens are the last extra[b].length of the 3 returned slots
          solo.forEach((row, j) => {
            worst = Math.max(worst, maxAbsDiff(batched[b * 3 + (3 - extra[b].length) + j], row));
          });
        }
        const next = await step(model, [[11 + b]], c);
        worst = Math.max(worst, maxAbsDiff(after[b], next[0]));
        expect(c.lengths()).toEqual([cache.lengths()[b]]);
        c.dispose();
      }
      console.log(`[batch ${which}] ragged steps: max |batched - alone| = ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(TOL);
      cache.dispose();
      expect(tf.memory().numTensors).toBe(baseline);
    });

    for (const mode of ['inplace', 'concat'] as const) {
      it(`truncate rolls back per sequence: append, truncate, append others = never appended (${mode})`, async () => {
        const two = [PROMPTS[1], PROMPTS[3]];
        const cache = new ContiguousKVCache(model.kvShape, 2, { mode });
        await step(model, two, cache);
        await step(model, [[100, 101, 102], [103]], cache); // rejected drafts
        expect(cache.lengths()).toEqual([two[0].length + 3, two[1].length + 1]);
        cache.truncate([two[0].length + 1, two[1].length]); // keep 100 on sequence 0
        expect(cache.lengths()).toEqual([two[0].length + 1, two[1].length]);
        const got = await step(model, [[7, 8], [9]], cache, { logits: 2 });
        // reference: the same tokens without the rejected ones, each alone, no cache
        const ref0 = await step(model, [[...two[0], 100, 7, 8]], new NoKVCache(model.kvShape, 1), { logits: 2 });
        const ref1 = await step(model, [[...two[1], 9]], new NoKVCache(model.kvShape, 1));
        const worst = Math.max(maxAbsDiff(got[0], ref0[0]), maxAbsDiff(got[1], ref0[1]), maxAbsDiff(got[3], ref1[0]));
        console.log(`[batch ${which} ${mode}] truncate then append: max |cached - recomputed| = ${worst.toExponential(2)}`);
        expect(worst).toBeLessThanOrEqual(TOL);
        expect(() => cache.truncate([two[0].length + 10, 0])).toThrow(/truncate: length/);
        cache.truncate([0, 0]);
        expect(cache.lengths()).toEqual([0, 0]);
        const fresh = await step(model, [PROMPTS[0], PROMPTS[2]], cache);
        const alone0 = await step(model, [PROMPTS[0]], new NoKVCache(model.kvShape, 1));
        expect(maxAbsDiff(fresh[0], alone0[0])).toBeLessThanOrEqual(TOL);
        cache.dispose();
        expect(tf.memory().numTensors).toBe(baseline);
      });
    }

    it('no-cache batch (full sequences, recomputed) equals the cached batch', async () => {
      const contiguous = new ContiguousKVCache(model.kvShape, PROMPTS.length);
      const cached = await step(model, PROMPTS, contiguous);
      const none = new NoKVCache(model.kvShape, PROMPTS.length);
      const naive = await step(model, PROMPTS, none);
      expect(none.lengths()).toEqual([0, 0, 0, 0]);
      expect(none.bytes()).toBe(0);
      for (let b = 0; b < PROMPTS.length; b++) expect(maxAbsDiff(naive[b], cached[b])).toBeLessThanOrEqual(TOL);
      contiguous.dispose();
      none.dispose();
      expect(tf.memory().numTensors).toBe(baseline);
    });

    it('prefill in blocks of attention scores (long-prompt memory cap) equals the unblocked one', async () => {
      const prompts = [PROMPTS[2], PROMPTS[3]];
      const run = async () => {
        const cache = new ContiguousKVCache(model.kvShape, 2);
        const out = await step(model, prompts, cache, { logits: 'all' });
        cache.dispose();
        return out;
      };
      const whole = await run();
      const saved = ATTENTION_LIMITS.maxScores;
      ATTENTION_LIMITS.maxScores = 500; // a few query rows per block
      try {
        const blocked = await run();
        let worst = 0;
        // compare real (non-padding) slots only
        prompts.forEach((p, b) => {
          for (let t = 65 - p.length; t < 65; t++) worst = Math.max(worst, maxAbsDiff(blocked[b * 65 + t], whole[b * 65 + t]));
        });
        expect(worst).toBeLessThanOrEqual(TOL);
      } finally {
        ATTENTION_LIMITS.maxScores = saved;
      }
      expect(tf.memory().numTensors).toBe(baseline);
    });

    it('errors are clear and leave no tensors behind', async () => {
      const cache = new ContiguousKVCache(model.kvShape, 2);
      expect(() => model.forward([[1]], cache)).toThrow(/1 sequences, the cache holds 2/);
      expect(() => model.forward([[1], [model.config.vocabSize]], cache)).toThrow(/token id 8192 is not an integer in \[0, 8192\)/);
      expect(() => model.forward([[], []], cache)).toThrow(/no tokens/);
      expect(() => model.forward([[1, 2], [3]], cache, { logits: 3 })).toThrow(/logits: expected/);
      const long = new Array(model.config.maxPositions + 1).fill(1);
      expect(() => model.forward([long, [1]], cache)).toThrow(/exceed the context length \(max_position_embeddings = 1024\)/);
      cache.dispose();
      expect(tf.memory().numTensors).toBe(baseline);
    });

    it('a forward that fails inside a layer frees its tensors and gives the cache its slots back', async () => {
      const inner = new ContiguousKVCache(model.kvShape, 2);
      let failAt = -1;
      const flaky: KVCache = {
        shape: inner.shape,
        batchSize: inner.batchSize,
        lengths: () => inner.lengths(),
        beginStep: (counts) => inner.beginStep(counts),
        update: (layer, k, v) => {
          if (layer === failAt) throw new Error('injected failure');
          return inner.update(layer, k, v);
        },
        truncate: (lengths) => inner.truncate(lengths),
        bytes: () => inner.bytes(),
        dispose: () => inner.dispose(),
      };
      await step(model, [PROMPTS[1], PROMPTS[2]], flaky);
      const before = flaky.lengths();
      const tensors = tf.memory().numTensors;
      failAt = model.config.numLayers - 1;
      expect(() => model.forward([[5, 6], [7]], flaky)).toThrow(/injected failure/);
      expect(tf.memory().numTensors).toBe(tensors);
      expect(flaky.lengths()).toEqual(before);
      failAt = -1;
      const got = await step(model, [[5, 6], [7]], flaky);
      const ref = await step(
        model,
        [
          [...PROMPTS[1], 5, 6],
          [...PROMPTS[2], 7],
        ],
        new NoKVCache(model.kvShape, 2),
      );
      expect(maxAbsDiff(got[0], ref[0])).toBeLessThanOrEqual(TOL);
      expect(maxAbsDiff(got[1], ref[1])).toBeLessThanOrEqual(TOL);
      flaky.dispose();
      expect(tf.memory().numTensors).toBe(baseline);
    });
  });
}

describe('wasm SIMD attention kernels', () => {
  it('equal tf.matMul for q k^T and p v over odd sizes', async () => {
    expect(wasmAttentionAvailable(64)).toBe(true);
    expect(wasmAttentionAvailable(30)).toBe(false); // head dim not a multiple of 4
    const start = tf.memory().numTensors;
    for (const [P, R, S, D] of [
      [1, 1, 1, 4],
      [3, 5, 7, 8],
      [2, 3, 129, 64],
      [4, 1, 33, 128],
    ]) {
      const err = tf.tidy(() => {
        const a = tf.randomNormal([P, R, D], 0, 1, 'float32', 1) as tf.Tensor3D;
        const b = tf.randomNormal([P, S, D], 0, 1, 'float32', 2) as tf.Tensor3D;
        const p = tf.softmax(tf.randomNormal([P, R, S], 0, 1, 'float32', 3)) as tf.Tensor3D;
        const e1 = tf.max(tf.abs(tf.sub(wasmQKT(a, b), tf.matMul(a, b, false, true))));
        const e2 = tf.max(tf.abs(tf.sub(wasmPV(p, b), tf.matMul(p, b))));
        return [e1.dataSync()[0], e2.dataSync()[0]];
      });
      expect(err[0], `qkT P=${P} R=${R} S=${S} D=${D}`).toBeLessThan(1e-4);
      expect(err[1], `pv P=${P} R=${R} S=${S} D=${D}`).toBeLessThan(1e-5);
    }
    // over the first `span` of C slots, read in place (a cache with spare capacity)
    const [P, R, C, D, span] = [3, 2, 40, 16, 29];
    const err = tf.tidy(() => {
      const a = tf.randomNormal([P, R, D], 0, 1, 'float32', 4) as tf.Tensor3D;
      const b = tf.randomNormal([P, C, D], 0, 1, 'float32', 5) as tf.Tensor3D;
      const head = tf.slice(b, [0, 0, 0], [P, span, D]);
      const p = tf.softmax(tf.randomNormal([P, R, span], 0, 1, 'float32', 6)) as tf.Tensor3D;
      const s = wasmQKT(a, b, span);
      expect(s.shape).toEqual([P, R, span]);
      const e1 = tf.max(tf.abs(tf.sub(s, tf.matMul(a, head, false, true))));
      const e2 = tf.max(tf.abs(tf.sub(wasmPV(p, b), tf.matMul(p, head))));
      return [e1.dataSync()[0], e2.dataSync()[0]];
    });
    expect(err[0]).toBeLessThan(1e-4);
    expect(err[1]).toBeLessThan(1e-5);
    expect(tf.memory().numTensors).toBe(start);
  });

  it('decode with the kernels off (plain tfjs path) gives the same logits', async () => {
    const model = await loadModel('data/models/draft');
    // batch 2, and batch 1 (one sequence x one kv head: the in-place-safe p @ v form)
    const run = async () => {
      const out: Float32Array[] = [];
      for (const prompts of [[PROMPTS[1], PROMPTS[3]], [PROMPTS[2]]]) {
        const cache = new ContiguousKVCache(model.kvShape, prompts.length);
        out.push(...(await step(model, prompts, cache)));
        for (let i = 0; i < 5; i++)
          out.push(
            ...(await step(
              model,
              prompts.map((_, b) => [7 + i + b]),
              cache,
            )),
          );
        cache.dispose();
      }
      return out;
    };
    const withKernels = await run();
    useWasmAttention(false);
    try {
      const plain = await run();
      withKernels.forEach((row, i) => expect(maxAbsDiff(row, plain[i])).toBeLessThanOrEqual(TOL));
    } finally {
      useWasmAttention(true);
      model.dispose();
    }
  });
});

describe('tensor accounting', () => {
  it('numTensors is back to its start after load, prefill, decode, both caches and dispose', async () => {
    const start = tf.memory().numTensors;
    const model = await loadModel('data/models/draft');
    const caches = [
      new ContiguousKVCache(model.kvShape, 2, { mode: 'inplace' }),
      new ContiguousKVCache(model.kvShape, 2, { mode: 'concat' }),
      new NoKVCache(model.kvShape, 2),
    ];
    for (const cache of caches) {
      model.forward([PROMPTS[1], PROMPTS[2]], cache).dispose();
      for (let i = 0; i < 48; i++) model.forward([[3], [4]], cache, { logits: 'all' }).dispose(); // crosses growBy
      cache.truncate(cache.lengths().map((n) => Math.max(0, n - 5)));
      model.forward([[5, 6], [7]], cache).dispose();
      cache.dispose();
    }
    model.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });
});

describe('in-place cache on the cpu backend', () => {
  afterAll(async () => {
    await initBackend({ prefer: 'wasm' });
  });

  it('equals the concat cache and the float64 reference on a tiny random model', async () => {
    await initBackend({ prefer: 'cpu' });
    expect(tf.getBackend()).toBe('cpu');
    const config = tinyConfig();
    const weights = makeWeights(config, 7);
    const start = tf.memory().numTensors;
    const model = LlamaModel.fromWeights(config, weightSource(config, weights));
    const ids = [3, 1, 4, 1, 5, 9, 2, 6];
    const results: Float32Array[][] = [];
    for (const mode of ['inplace', 'concat'] as const) {
      const cache = new ContiguousKVCache(model.kvShape, 1, { mode, growBy: 4 });
      expect(cache.mode).toBe(mode);
      const out = await step(model, [ids.slice(0, 3)], cache, { logits: 'all' });
      for (const id of ids.slice(3)) out.push(...(await step(model, [[id]], cache)));
      results.push(out);
      cache.dispose();
    }
    const ref = referenceLogits(config, weights, ids);
    let worst = 0;
    for (let t = 0; t < ids.length; t++) {
      expect(maxAbsDiff(results[0][t], results[1][t])).toBeLessThanOrEqual(TOL);
      worst = Math.max(worst, maxAbsDiff(results[0][t], ref[t]));
    }
    console.log(`[cpu backend] in-place vs float64 reference: max abs diff ${worst.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(TOL);
    model.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });
});
