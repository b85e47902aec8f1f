// Block manager (no tensors): allocation, free list, ref counts, copy-on-write, prefix caching
// with LRU eviction, and the invariants that every other engine test re-checks.
import { describe, expect, it } from 'vitest';

import { BlockManager, hashBlockTokens } from '../lib/engine/blockManager';
import { Sequence } from '../lib/engine/sequence';
import { resolveSamplingParams } from '../lib/generate/sampling';

let nextId = 0;
function seq(tokens: number[]): Sequence {
  const params = resolveSamplingParams({ temperature: 0, seed: 0 });
  return new Sequence({ seqId: nextId++, requestId: 'r', index: 0, promptTokenIds: tokens, params, seed: 0, eosTokenIds: [], arrival: 0 });
}
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

describe('block manager', () => {
  it('allocates ceil(tokens / blockSize) blocks, grows one block per blockSize tokens, frees all', () => {
    const bm = new BlockManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: false });
    const s = seq(range(6));
    bm.allocate(s);
    expect(s.blockTable.length).toBe(2);
    expect(bm.numFreeBlocks).toBe(6);
    s.numComputedTokens = 6;
    s.tokenIds.push(1);
    expect(bm.canAppend(s, 1)).toBe(true);
    bm.append(s, 1); // slot 6: still block 1
    expect(s.blockTable.length).toBe(2);
    s.numComputedTokens = 8;
    s.tokenIds.push(2);
    bm.append(s, 1); // slot 8: a third block
    expect(s.blockTable.length).toBe(3);
    expect(bm.checkInvariants([s])).toEqual([]);
    bm.free(s);
    expect(bm.numFreeBlocks).toBe(8);
    expect(bm.checkInvariants([])).toEqual([]);
  });

  it('refuses what does not fit and says so', () => {
    const bm = new BlockManager({ numBlocks: 2, blockSize: 4 });
    const s = seq(range(9));
    expect(bm.canAllocate(s)).toBe(false);
    expect(() => bm.allocate(s)).toThrow(/not enough free blocks/);
    expect(() => new BlockManager({ numBlocks: 0, blockSize: 4 })).toThrow(/numBlocks/);
  });

  it('fork shares every block; the first writer of a shared partial block gets a copy (copy-on-write)', () => {
    const bm = new BlockManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: false });
    const parent = seq(range(6));
    bm.allocate(parent);
    parent.numComputedTokens = 6;
    const child = seq(range(6));
    bm.fork(parent, child);
    expect(child.blockTable).toEqual(parent.blockTable);
    expect(bm.blocks[parent.blockTable[1]].refCount).toBe(2);
    expect(bm.checkInvariants([parent, child])).toEqual([]);
    child.tokenIds.push(100);
    bm.append(child, 1);
    expect(child.blockTable[0]).toBe(parent.blockTable[0]); // full block still shared
    expect(child.blockTable[1]).not.toBe(parent.blockTable[1]); // partial block copied
    expect(bm.takeCopies()).toEqual([[parent.blockTable[1], child.blockTable[1]]]);
    parent.tokenIds.push(200);
    bm.append(parent, 1); // now sole owner: writes in place, no copy
    expect(bm.takeCopies()).toEqual([]);
    child.numComputedTokens = parent.numComputedTokens = 7;
    expect(bm.checkInvariants([parent, child])).toEqual([]);
    bm.free(parent);
    bm.free(child);
    expect(bm.numFreeBlocks).toBe(8);
  });

  it('prefix caching: a second prompt with the same leading blocks reuses them; at least one token is left to compute', () => {
    const bm = new BlockManager({ numBlocks: 16, blockSize: 4 });
    const a = seq(range(10));
    bm.allocate(a);
    a.numComputedTokens = 10;
    bm.markComputed(a);
    expect(a.blockHashes.length).toBe(2);
    const b = seq([...range(8), 50, 51, 52]);
    bm.allocate(b);
    expect(b.numCachedTokens).toBe(8);
    expect(b.blockTable.slice(0, 2)).toEqual(a.blockTable.slice(0, 2));
    expect(bm.blocks[a.blockTable[0]].refCount).toBe(2);
    const exact = seq(range(8)); // fully cached prompt: its last block is recomputed
    bm.allocate(exact);
    expect(exact.numCachedTokens).toBe(4);
    expect(bm.checkInvariants([a, b, exact])).toEqual([]);
    // a freed cached block stays findable until its slot is reused
    bm.free(a);
    bm.free(b);
    bm.free(exact);
    const c = seq(range(9));
    bm.allocate(c);
    expect(c.numCachedTokens).toBe(8);
    expect(bm.stats.hitTokens).toBe(8 + 4 + 8);
    expect(bm.checkInvariants([c])).toEqual([]);
  });

  it('different parents give different hashes (chained), equal token blocks after different prefixes do not hit', () => {
    expect(hashBlockTokens(null, [1, 2])).toBe(hashBlockTokens(null, [1, 2]));
    expect(hashBlockTokens(1, [1, 2])).not.toBe(hashBlockTokens(2, [1, 2]));
    const bm = new BlockManager({ numBlocks: 16, blockSize: 2 });
    const a = seq([1, 2, 3, 4, 5]);
    bm.allocate(a);
    a.numComputedTokens = 5;
    bm.markComputed(a);
    const b = seq([9, 9, 3, 4, 5]);
    bm.allocate(b);
    expect(b.numCachedTokens).toBe(0);
  });

  it('LRU eviction: allocation takes the least recently freed block and forgets its hash', () => {
    const bm = new BlockManager({ numBlocks: 4, blockSize: 2 });
    const a = seq([1, 2, 3]);
    bm.allocate(a);
    a.numComputedTokens = 3;
    bm.markComputed(a); // block a[0] cached
    const cachedBlock = a.blockTable[0];
    bm.free(a);
    expect(bm.hashToBlock.size).toBe(1);
    // never-used blocks were freed earlier than a's: they go first, the cached block survives
    const b = seq([7, 7, 7]);
    bm.allocate(b);
    expect(b.blockTable).not.toContain(cachedBlock);
    expect(bm.hashToBlock.size).toBe(1);
    const c = seq([8, 8, 8, 8]);
    bm.allocate(c); // needs the last free blocks, the cached one included: evicted
    expect(c.blockTable).toContain(cachedBlock);
    expect(bm.hashToBlock.size).toBe(0);
    expect(bm.checkInvariants([b, c])).toEqual([]);
  });

  it('invariant checks catch a corrupted ref count and a block owned twice', () => {
    const bm = new BlockManager({ numBlocks: 4, blockSize: 2, enablePrefixCaching: false });
    const a = seq([1, 2, 3]);
    bm.allocate(a);
    const b = seq([4]);
    b.blockTable = [a.blockTable[0]]; // stolen without a ref count
    expect(bm.checkInvariants([a, b]).join('\n')).toMatch(/ref count 1, held by 2/);
  });
});
