// A small factory over the cache implementations, so callers pick a cache by name.

import type { KVCache, KVShape } from './cache';
import { ContiguousKVCache, type ContiguousKVCacheOptions } from './contiguous';
import { NoKVCache } from './none';

/** Cache kinds available by name. */
export type KVCacheKind = 'contiguous' | 'none';

/** Make a cache of the given kind for `batchSize` sequences of a model with this KV shape. */
export function createKVCache(kind: KVCacheKind, shape: KVShape, batchSize: number, options: ContiguousKVCacheOptions = {}): KVCache {
  switch (kind) {
    case 'contiguous':
      return new ContiguousKVCache(shape, batchSize, options);
    case 'none':
      return new NoKVCache(shape, batchSize);
    default:
      throw new Error(`unknown KV cache kind '${String(kind)}' (known: contiguous, none)`);
  }
}
