// The KVCache contract (lib/kv/cache.ts) for all five caches, without a model: one step plans
// positions by the batching rule, update() returns [B, Hkv, S, D] (with per-layer key positions
// only from the evicting cache), truncate() rolls back; the paged cache takes its batch from
// setBatch(). Plus SlotTable, the shared-slot bookkeeping of the contiguous and quantized caches.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import type { KVCache, KVShape, PerStepBatchKVCache } from '../lib/kv/cache';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { EvictingKVCache } from '../lib/kv/evicting';
import { NoKVCache } from '../lib/kv/none';
import { PagedKVCache } from '../lib/kv/paged';
import { QuantizedKVCache } from '../lib/kv/quantized';
import { SlotTable } from '../lib/kv/slots';

const SHAPE: KVShape = { numLayers: 2, numKvHeads: 2, headDim: 8 };

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
});

// one step of `count` tokens for a single sequence through every layer; returns each layer's S and key positions
function step(cache: KVCache, count: number): { S: number[]; own: (Int32Array | undefined)[]; planS: number } {
  const plan = cache.beginStep([count]);
  const out = { S: [] as number[], own: [] as (Int32Array | undefined)[], planS: plan.S };
  tf.tidy(() => {
    for (let l = 0; l < SHAPE.numLayers; l++) {
      const kv = tf.randomNormal([1, SHAPE.numKvHeads, plan.T, SHAPE.headDim]) as tf.Tensor4D;
      const r = cache.update(l, kv, kv);
      expect(r.k.shape).toEqual(r.v.shape);
      expect(r.k.shape.slice(0, 2).concat(r.k.shape[3])).toEqual([1, SHAPE.numKvHeads, SHAPE.headDim]);
      out.S.push(r.k.shape[2]);
      out.own.push(r.keyPositions);
    }
  });
  return out;
}

describe('KVCache contract', () => {
  it('every cache plans, stores, reports lengths and rolls back; only the evicting cache returns per-layer key positions', () => {
    const paged = new PagedKVCache(SHAPE, { numBlocks: 4, blockSize: 4 });
    const batchOf = (c: PerStepBatchKVCache, cached: number) => c.setBatch([{ blockTable: [2, 0, 3], numCachedTokens: cached }]);
    const caches: [string, KVCache][] = [
      ['none', new NoKVCache(SHAPE, 1)],
      ['contiguous', new ContiguousKVCache(SHAPE, 1)],
      ['quantized', new QuantizedKVCache(SHAPE, 1, { key: { bits: 8 }, value: { bits: 8 } })],
      ['evicting', new EvictingKVCache(SHAPE, 1, { budgets: [8, 8], sinks: 1, recent: 2, policy: 'streaming' })],
      ['paged', paged],
    ];
    const before = tf.memory().numTensors;
    for (const [name, cache] of caches) {
      if (cache === paged) batchOf(paged, 0);
      const first = step(cache, 3);
      if (cache === paged) batchOf(paged, 3);
      const second = step(cache, 2);
      expect(cache.lengths(), name).toEqual(name === 'none' ? [0] : [5]);
      const perLayer = second.own.filter((p) => p !== undefined);
      expect(perLayer.length, name).toBe(name === 'evicting' ? SHAPE.numLayers : 0);
      if (name === 'evicting') expect([...perLayer[0]!]).toEqual([0, 1, 2, 3, 4]);
      else expect(second.S.every((S) => S === second.planS), name).toBe(true);
      expect(first.S.length).toBe(SHAPE.numLayers);
      if (name !== 'none') {
        cache.truncate([4]);
        expect(cache.lengths(), name).toEqual([4]);
      }
      expect(cache.bytes(), name).toBeGreaterThanOrEqual(0);
      cache.dispose();
    }
    expect(tf.memory().numTensors).toBeLessThanOrEqual(before);
  });

  it('the paged cache has no batch until setBatch() names one', () => {
    const paged = new PagedKVCache(SHAPE, { numBlocks: 2, blockSize: 4 });
    expect(paged.batchSize).toBe(0);
    expect(() => paged.beginStep([1])).toThrow(/1 sequences, cache was made for 0/);
    paged.setBatch([{ blockTable: [1], numCachedTokens: 0 }, { blockTable: [0], numCachedTokens: 0 }]);
    expect(paged.batchSize).toBe(2);
    paged.dispose();
  });
});

describe('SlotTable', () => {
  it('appends left-padded slots, gives positions, empties rolled-back slots and gives back trailing ones', () => {
    const t = new SlotTable(2);
    expect([...t.append([2, 1], 2)]).toEqual([0, 1, -1, 0]); // [B, T]
    expect([...t.append([1, 1], 1)]).toEqual([2, 1]);
    expect(t.used).toBe(3);
    expect(t.lengths()).toEqual([3, 2]);
    expect([...t.keyPositions(4)]).toEqual([0, 1, 2, -1, -1, 0, 1, -1]); // [B, S]
    expect(t.truncate([3, 1])).toBe(3); // sequence 0 still holds slot 2
    expect(t.rows).toEqual([[0, 1, 2], [-1, 0, -1]]);
    expect(t.truncate([1, 1], 3)).toBe(3); // slot 2 is empty everywhere, but the cache still stores it
    expect(t.truncate([1, 1])).toBe(2); // otherwise it is given back
    expect(() => t.truncate([2, 1])).toThrow(/must be an integer in \[0, 1\]/);
    t.clear();
    expect(t.lengths()).toEqual([0, 0]);
  });
});
