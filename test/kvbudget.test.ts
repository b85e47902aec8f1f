// Per-layer KV budgets and eviction (lesson 3): allocations sum to the total, eviction never drops
// sink tokens nor exceeds a layer's budget, H2O keeps what attention points at, no leaks, clear errors.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { generate } from '../lib/generate/generate';
import { attentionEntropy } from '../lib/eval/attention';
import { compareTeacherForced } from '../lib/eval/quality';
import { proportionalBudgets, uniformBudgets } from '../lib/kv/budget';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { EvictingKVCache, resolveEvictingConfig } from '../lib/kv/evicting';
import type { LlamaModel } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';
import { loadGolden } from './golden';

describe('budget allocation', () => {
  it('uniform and proportional budgets sum to the total, respect the minimum, follow the weights', () => {
    expect(uniformBudgets(100, 8)).toEqual([13, 13, 13, 13, 12, 12, 12, 12]);
    const b = proportionalBudgets([4, 2, 1, 1], 200, 20);
    expect(b.reduce((a, x) => a + x, 0)).toBe(200);
    expect(Math.min(...b)).toBeGreaterThanOrEqual(20);
    expect(b[0]).toBeGreaterThan(b[1]);
    expect(b[1]).toBeGreaterThan(b[2]);
    expect(() => proportionalBudgets([1, 1], 10, 8)).toThrow(/below 2 layers x minimum 8/);
  });

  it('bad eviction configs give clear errors', () => {
    expect(() => resolveEvictingConfig({ budgets: [4, 64], sinks: 4, recent: 8 }, 2)).toThrow(
      /layer 0: budget 4 must be an integer above sinks \+ recent/,
    );
    expect(() => resolveEvictingConfig({ budgets: [64] }, 2)).toThrow(/1 budgets for 2 layers/);
    expect(() => resolveEvictingConfig({ budgets: [64, 64], policy: 'lru' as never }, 2)).toThrow(/policy/);
    expect(() => new EvictingKVCache({ numLayers: 1, numKvHeads: 1, headDim: 8 }, 2, { budgets: [32] })).toThrow(/one sequence/);
  });
});

describe('EvictingKVCache on the draft model', () => {
  let draft: LlamaModel;
  let ids: number[];
  beforeAll(async () => {
    await initBackend({ prefer: 'wasm' });
    draft = await loadModel('data/models/draft');
    ids = loadGolden()
      .prompts.find((p) => p.ids.length >= 300)!
      .ids.slice(0, 300);
  });
  afterAll(() => draft?.dispose());

  it('never drops sinks, never exceeds a layer budget, no leaks; H2O and streaming keep different tokens', () => {
    const before = tf.memory().numTensors;
    const budgets = [40, 72];
    const held: Record<string, number[][]> = {};
    for (const policy of ['h2o', 'streaming'] as const) {
      const cache = new EvictingKVCache(draft.kvShape, 1, { budgets, sinks: 4, recent: 8, policy });
      for (let c0 = 0; c0 < ids.length; c0 += 16) {
        draft.forward([ids.slice(c0, c0 + 16)], cache, { onAttention: cache.observe.bind(cache) }).dispose();
        cache.held().forEach((n, l) => expect(n).toBeLessThanOrEqual(budgets[l]));
        for (let l = 0; l < 2; l++) {
          const pos = cache.positions(l);
          for (let s = 0; s < 4; s++) expect(pos).toContain(s); // sinks
          for (let p = cache.lengths()[0] - 8; p < cache.lengths()[0]; p++) expect(pos).toContain(p); // recent
        }
      }
      expect(cache.evicted[0].length).toBe(ids.length - budgets[0]);
      for (const e of cache.evicted) expect(Math.min(...e)).toBeGreaterThanOrEqual(4);
      expect(cache.bytes()).toBe((budgets[0] + budgets[1]) * 2 * 32 * 4);
      held[policy] = [cache.positions(0), cache.positions(1)];
      cache.dispose();
    }
    // streaming keeps a contiguous recent run; H2O keeps some older heavy hitters
    expect(held.streaming[0].slice(4)).toEqual([...Array(36).keys()].map((i) => ids.length - 36 + i));
    expect(Math.min(...held.h2o[0].slice(4))).toBeLessThan(ids.length - 36);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('with budgets above the sequence length it equals the float32 cache; steps too big are refused', () => {
    const cache = new EvictingKVCache(draft.kvShape, 1, { budgets: [120, 120] });
    const ref = new ContiguousKVCache(draft.kvShape, 1);
    const a = draft.forward([ids.slice(0, 100)], ref, { logits: 'all' });
    const b = draft.forward([ids.slice(0, 100)], cache, { logits: 'all' });
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeLessThan(1e-4);
    a.dispose();
    b.dispose();
    expect(() => draft.forward([ids.slice(100, 201)], cache)).toThrow(/does not fit the smallest layer budget/);
    cache.dispose();
    ref.dispose();
  });

  it('works through generate(makeCache) (streaming eviction without an observer)', async () => {
    const [out] = await generate(
      { model: draft },
      [ids.slice(0, 20)],
      { temperature: 0, maxTokens: 40, ignoreEos: true },
      {
        makeCache: (s, B) => new EvictingKVCache(s, B, { budgets: [48, 48] }),
      },
    );
    expect(out.tokenIds.length).toBe(40);
    expect(out.metrics.kvBytes).toBe(2 * 48 * 2 * 32 * 4); // layers x budget x (K, V) x D x 4
  });

  it('teacher-forced quality scores an evicting cache apart where it evicted, with the reference over the same positions', () => {
    const budgets = [40, 72];
    const { reference, results } = compareTeacherForced(
      draft,
      ids,
      {
        evicting: (s, B) => new EvictingKVCache(s, B, { budgets, sinks: 4, recent: 8, policy: 'streaming' }),
        roomy: (s, B) => new EvictingKVCache(s, B, { budgets: [200, 200], sinks: 4, recent: 8 }),
        full: (s, B) => new ContiguousKVCache(s, B),
      },
      { window: 128, maxWindows: 1, chunk: 16 },
    );
    // layer 0 first evicts when the third chunk of 16 arrives (32 held + 16 > 40): positions 32..127
    const ev = results.evicting.evicted!;
    expect(ev.tokens).toBe(128 - 32);
    expect(results.evicting.tokens).toBe(128);
    expect(ev.heldShare).toBeGreaterThan(0);
    expect(ev.heldShare).toBeLessThan(1);
    expect(ev.referencePpl).toBeGreaterThan(1);
    expect(ev.kl).toBeGreaterThan(results.evicting.kl); // the positions before the budget have KL 0
    expect(results.roomy.evicted!.tokens).toBe(0);
    expect(results.roomy.kl).toBeLessThan(1e-6);
    expect(results.full.evicted).toBeNull();
    expect(reference.evicted).toBeNull();
  });

  it('attention entropy: one finite positive value per layer and head', () => {
    const e = attentionEntropy(draft, ids, { window: 128, windows: 2, chunk: 64 });
    expect(e.layers.length).toBe(2);
    expect(e.heads[0].length).toBe(5);
    for (const x of e.layers) expect(x).toBeGreaterThan(0);
    expect(e.rows).toBe(256);
  });
});
