// The block manager (lesson 3, "PagedAttention"): the KV cache is a pool of fixed-size blocks;
// each sequence holds a block table (logical block i -> physical block), blocks are reference
// counted so sequences can share them, and freed blocks go to the back of a free list.
//
// - copy-on-write: forked sequences (parallel sampling) share every prompt block; the first
//   one to write into a shared, partly filled block gets a private copy. The copy itself is
//   tensor work: it is queued in `pendingCopies` for the model runner.
// - prefix caching (vLLM style): a full, computed block is named by hash(parent hash, its
//   tokens). A new sequence whose prompt starts with the same blocks reuses them. Freed blocks
//   keep their hash while on the free list, so they can still be hit; allocation takes the
//   least recently freed block first and forgets its hash then (LRU eviction).
//
// Plain numbers, arrays, sets and maps: no tensors.

import type { BlockTableSnapshot } from './metrics';
import type { Sequence } from './sequence';

/** One physical block's bookkeeping. */
export interface Block {
  readonly id: number;
  /** sequences whose block table holds it */
  refCount: number;
  /** prefix-cache hash of its tokens (full, computed blocks only), or null */
  hash: number | null;
  /** the tokens it holds, when hashed (checked on a hit) */
  tokenIds: number[] | null;
}

/** Options of BlockManager. */
export interface BlockManagerOptions {
  numBlocks: number;
  blockSize: number;
  enablePrefixCaching?: boolean;
}

/** Prefix-cache counters since creation (prompt tokens looked up and found). */
export interface PrefixCacheStats {
  queriedTokens: number;
  hitTokens: number;
}

// ---- hashing

/** Hash of a block: its parent's hash chained with its tokens (53-bit, cyrb53-style mixing). */
export function hashBlockTokens(parent: number | null, tokenIds: readonly number[]): number {
  let h1 = 0xdeadbeef ^ (parent === null ? 0 : parent % 2 ** 32);
  let h2 = 0x41c6ce57 ^ (parent === null ? 0x12345 : Math.floor(parent / 2 ** 32));
  for (const t of tokenIds) {
    h1 = Math.imul(h1 ^ t, 2654435761);
    h2 = Math.imul(h2 ^ t, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

const sameTokens = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((t, i) => t === b[i]);

/**
 * Fixed-size KV blocks with a free list, reference counts, per-sequence block tables,
 * copy-on-write and a hash-chained prefix cache with LRU eviction
 * (lesson 3, "PagedAttention"; used by lesson 5's scheduler).
 */
export class BlockManager {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
  readonly blocks: Block[];
  /** free blocks, least recently freed first (a Set keeps insertion order) */
  readonly freeBlockIds = new Set<number>();
  /** prefix cache: hash -> block holding those tokens */
  readonly hashToBlock = new Map<number, number>();
  /** copy-on-write work for the model runner: [source block, destination block] */
  pendingCopies: [number, number][] = [];
  readonly stats: PrefixCacheStats = { queriedTokens: 0, hitTokens: 0 };
  // liveTokens' per-block fill, all zero between calls
  private filledScratch: Int32Array | null = null;

  constructor(options: BlockManagerOptions) {
    const { numBlocks, blockSize } = options;
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new Error(`numBlocks must be a positive integer, got ${numBlocks}`);
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new Error(`blockSize must be a positive integer, got ${blockSize}`);
    this.numBlocks = numBlocks;
    this.blockSize = blockSize;
    this.enablePrefixCaching = options.enablePrefixCaching ?? true;
    this.blocks = Array.from({ length: numBlocks }, (_, id) => ({ id, refCount: 0, hash: null, tokenIds: null }));
    for (let i = 0; i < numBlocks; i++) this.freeBlockIds.add(i);
  }

  get numFreeBlocks(): number {
    return this.freeBlockIds.size;
  }

  get numUsedBlocks(): number {
    return this.numBlocks - this.freeBlockIds.size;
  }

  /** Blocks needed to hold n tokens. */
  blocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  // ---- the free list

  private takeFreeBlock(): Block {
    const first = this.freeBlockIds.values().next();
    if (first.done) throw new Error('block manager: out of free blocks (the scheduler should have checked)');
    const block = this.blocks[first.value];
    this.freeBlockIds.delete(block.id);
    // evict: the block's old contents are about to be overwritten
    if (block.hash !== null && this.hashToBlock.get(block.hash) === block.id) this.hashToBlock.delete(block.hash);
    block.hash = null;
    block.tokenIds = null;
    block.refCount = 1;
    return block;
  }

  private release(id: number): void {
    const block = this.blocks[id];
    if (block.refCount <= 0) throw new Error(`block manager: block ${id} released with ref count ${block.refCount}`);
    block.refCount--;
    if (block.refCount === 0) this.freeBlockIds.add(id);
  }

  // ---- prefix cache

  /**
   * The leading blocks of the sequence's tokens found in the prefix cache. At least one token is
   * always left to compute (the last one's logits are needed), so a fully cached prompt reuses
   * all but its last block.
   */
  private cachedPrefix(seq: Sequence): { ids: number[]; hashes: number[] } {
    const ids: number[] = [];
    const hashes: number[] = [];
    if (!this.enablePrefixCaching) return { ids, hashes };
    const bs = this.blockSize;
    const maxBlocks = Math.floor((seq.numTokens - 1) / bs);
    let parent: number | null = null;
    for (let i = 0; i < maxBlocks; i++) {
      const tokens = seq.tokenIds.slice(i * bs, (i + 1) * bs);
      const h = hashBlockTokens(parent, tokens);
      const id = this.hashToBlock.get(h);
      if (id === undefined || !sameTokens(this.blocks[id].tokenIds ?? [], tokens)) break;
      ids.push(id);
      hashes.push(h);
      parent = h;
    }
    return { ids, hashes };
  }

  // ---- admission

  /** Prompt tokens of `seq` the prefix cache would serve now. */
  numCachedTokensFor(seq: Sequence): number {
    return this.cachedPrefix(seq).ids.length * this.blockSize;
  }

  /** Whether `seq` can be admitted now, reserving room for `reserveTokens` tokens and leaving `keepFree` blocks free. */
  canAllocate(seq: Sequence, reserveTokens = seq.numTokens, keepFree = 0): boolean {
    const { ids } = this.cachedPrefix(seq);
    const inUseHits = ids.filter((id) => this.blocks[id].refCount > 0).length;
    return this.blocksFor(reserveTokens) - inUseHits + keepFree <= this.numFreeBlocks;
  }

  /**
   * Give a waiting sequence its block table: cached prefix blocks first (shared), then fresh
   * blocks up to `reserveTokens` tokens. Sets numComputedTokens to the cached prefix.
   */
  allocate(seq: Sequence, reserveTokens = seq.numTokens): void {
    if (seq.blockTable.length > 0) throw new Error(`block manager: sequence ${seq.seqId} already has blocks`);
    if (!this.canAllocate(seq, reserveTokens)) throw new Error(`block manager: not enough free blocks for sequence ${seq.seqId}`);
    const { ids, hashes } = this.cachedPrefix(seq);
    for (const id of ids) {
      const block = this.blocks[id];
      if (block.refCount === 0) this.freeBlockIds.delete(id); // revive a free cached block
      block.refCount++;
    }
    seq.blockTable = [...ids];
    seq.blockHashes = [...hashes];
    while (seq.blockTable.length < this.blocksFor(reserveTokens)) seq.blockTable.push(this.takeFreeBlock().id);
    seq.numCachedTokens = ids.length * this.blockSize;
    seq.numComputedTokens = seq.numCachedTokens;
    seq.numDraftComputedTokens = seq.numCachedTokens;
    if (this.enablePrefixCaching) {
      this.stats.queriedTokens += seq.numTokens;
      this.stats.hitTokens += seq.numCachedTokens;
    }
  }

  // ---- growth

  // blocks in [first, first + numNew) that the sequence shares: it must not write into them
  private sharedTargets(seq: Sequence, numNew: number): number[] {
    const bs = this.blockSize;
    const first = seq.numComputedTokens;
    const out: number[] = [];
    const end = Math.min(seq.blockTable.length, this.blocksFor(first + numNew));
    for (let i = Math.floor(first / bs); i < end; i++) if (this.blocks[seq.blockTable[i]].refCount > 1) out.push(i);
    return out;
  }

  // blocks `append(seq, n)` would take from the free list
  private blocksToAppend(seq: Sequence, numNew: number): number {
    const grow = Math.max(0, this.blocksFor(seq.numComputedTokens + numNew) - seq.blockTable.length);
    return grow + this.sharedTargets(seq, numNew).length;
  }

  /** Whether the sequence can get slots for `numNew` more tokens. */
  canAppend(seq: Sequence, numNew: number): boolean {
    return this.blocksToAppend(seq, numNew) <= this.numFreeBlocks;
  }

  /**
   * Make room for `numNew` more tokens: new blocks at the end, and a private copy of any shared
   * block the new tokens would land in (copy-on-write; the copy is queued for the model runner).
   */
  append(seq: Sequence, numNew: number): void {
    if (!this.canAppend(seq, numNew)) throw new Error(`block manager: not enough free blocks to grow sequence ${seq.seqId}`);
    const bs = this.blockSize;
    const first = seq.numComputedTokens;
    for (const i of this.sharedTargets(seq, numNew)) {
      const src = seq.blockTable[i];
      const dst = this.takeFreeBlock();
      if (i * bs < first) this.pendingCopies.push([src, dst.id]); // it holds computed tokens: copy them
      this.release(src);
      seq.blockTable[i] = dst.id;
    }
    while (seq.blockTable.length < this.blocksFor(first + numNew)) seq.blockTable.push(this.takeFreeBlock().id);
  }

  /**
   * After a step: name the sequence's newly full, computed blocks in the prefix cache. With a
   * draft model (speculative decoding) a block is named only once both caches hold it: `upTo`
   * = min(target, draft) computed tokens, so a prefix-cache hit serves both models.
   */
  markComputed(seq: Sequence, upTo = seq.numComputedTokens): void {
    if (!this.enablePrefixCaching) return;
    const bs = this.blockSize;
    const full = Math.floor(Math.min(upTo, seq.numComputedTokens, seq.numTokens) / bs);
    for (let i = seq.blockHashes.length; i < full; i++) {
      const tokens = seq.tokenIds.slice(i * bs, (i + 1) * bs);
      const h = hashBlockTokens(i === 0 ? null : seq.blockHashes[i - 1], tokens);
      const block = this.blocks[seq.blockTable[i]];
      if (block.hash === null) {
        block.hash = h;
        block.tokenIds = tokens;
        if (!this.hashToBlock.has(h)) this.hashToBlock.set(h, block.id);
      }
      seq.blockHashes.push(h);
    }
  }

  // ---- sharing and freeing

  /** Parallel sampling: `child` starts as a copy of `parent`, sharing the blocks that hold its computed tokens. */
  fork(parent: Sequence, child: Sequence): void {
    if (child.blockTable.length > 0) throw new Error(`block manager: sequence ${child.seqId} already has blocks`);
    const shared = parent.blockTable.slice(0, this.blocksFor(parent.numComputedTokens));
    for (const id of shared) this.blocks[id].refCount++;
    child.blockTable = shared;
    child.blockHashes = [...parent.blockHashes];
    child.numComputedTokens = parent.numComputedTokens;
    child.numDraftComputedTokens = parent.numDraftComputedTokens;
    child.numCachedTokens = parent.numCachedTokens;
  }

  /**
   * Speculative decoding's rollback (lesson 4): the step reserved slots for gamma drafts, fewer
   * were accepted. Give back the blocks past those holding the computed tokens (newest first,
   * to the free list). Returns how many blocks were freed.
   */
  trim(seq: Sequence): number {
    const keep = this.blocksFor(seq.numComputedTokens);
    let freed = 0;
    while (seq.blockTable.length > keep) {
      this.release(seq.blockTable.pop()!);
      freed++;
    }
    seq.blockHashes.length = Math.min(seq.blockHashes.length, keep);
    return freed;
  }

  /** Give back a sequence's blocks (finished, aborted or preempted). Its tail goes to the free list first. */
  free(seq: Sequence): void {
    for (let i = seq.blockTable.length - 1; i >= 0; i--) this.release(seq.blockTable[i]);
    seq.blockTable = [];
    seq.blockHashes = [];
    seq.numComputedTokens = 0;
    seq.numDraftComputedTokens = 0;
  }

  /** Take the copy-on-write work queued since the last call. */
  takeCopies(): [number, number][] {
    const out = this.pendingCopies;
    this.pendingCopies = [];
    return out;
  }

  // ---- views

  /**
   * How full the blocks of `seqs` are: tokens in their blocks with each shared block counted once
   * (`liveTokens`), and summed per sequence (`seqTokens`). liveTokens / (used blocks x blockSize)
   * is the live-token share of lesson 3.
   */
  liveTokens(seqs: readonly Sequence[]): { liveTokens: number; seqTokens: number } {
    // (the engine records this every step: typed scratch per block, not a Map, and only the
    // blocks touched are cleared again)
    const bs = this.blockSize;
    const filled = (this.filledScratch ??= new Int32Array(this.numBlocks));
    const touched: number[] = [];
    let seqTokens = 0;
    for (const s of seqs) {
      const computed = s.numComputedTokens;
      seqTokens += computed;
      const table = s.blockTable;
      for (let i = 0; i < table.length; i++) {
        const n = Math.max(0, Math.min(bs, computed - i * bs));
        const id = table[i];
        if (n > filled[id]) {
          if (filled[id] === 0) touched.push(id);
          filled[id] = n;
        }
      }
    }
    let liveTokens = 0;
    for (const id of touched) {
      liveTokens += filled[id];
      filled[id] = 0;
    }
    return { liveTokens, seqTokens };
  }

  /** Each sequence's block table with the blocks' ref counts (the lesson's block-table view). */
  tableSnapshots(seqs: readonly Sequence[]): BlockTableSnapshot[] {
    return seqs.map((s) => ({
      seqId: s.seqId,
      requestId: s.requestId,
      numTokens: s.numComputedTokens,
      blocks: [...s.blockTable],
      refCounts: s.blockTable.map((id) => this.blocks[id].refCount),
    }));
  }

  /** Prefix-cache hit rate so far (hit prompt tokens / looked-up prompt tokens). */
  hitRate(): number {
    return this.stats.queriedTokens === 0 ? 0 : this.stats.hitTokens / this.stats.queriedTokens;
  }

  // ---- checks

  /**
   * Invariants against the live sequences (tests, and a lesson's sanity check); returns the
   * violations found, empty when all hold: ref count = number of tables holding the block; no
   * block twice in one table; free list = blocks with ref count 0; sharers of a block agree on
   * its computed tokens; the prefix cache points at blocks carrying that hash.
   */
  checkInvariants(seqs: readonly Sequence[]): string[] {
    const errors: string[] = [];
    const refs = new Array<number>(this.numBlocks).fill(0);
    const firstHolder = new Map<number, { seq: Sequence; index: number }>();
    const bs = this.blockSize;
    for (const seq of seqs) {
      const seen = new Set<number>();
      seq.blockTable.forEach((id, index) => {
        if (id < 0 || id >= this.numBlocks) errors.push(`seq ${seq.seqId}: block id ${id} out of range`);
        if (seen.has(id)) errors.push(`seq ${seq.seqId}: block ${id} twice in one table`);
        seen.add(id);
        refs[id]++;
        const other = firstHolder.get(id);
        if (!other) {
          firstHolder.set(id, { seq, index });
        } else {
          if (other.index !== index) errors.push(`block ${id}: logical block ${other.index} of seq ${other.seq.seqId} but ${index} of seq ${seq.seqId}`);
          const end = Math.min(other.seq.numComputedTokens, seq.numComputedTokens, (index + 1) * bs);
          for (let p = index * bs; p < end; p++) {
            if (other.seq.tokenIds[p] !== seq.tokenIds[p]) {
              errors.push(`block ${id}: shared by seqs ${other.seq.seqId} and ${seq.seqId} holding different tokens at ${p}`);
              break;
            }
          }
        }
      });
      if (seq.blockTable.length * bs < seq.numComputedTokens) errors.push(`seq ${seq.seqId}: ${seq.numComputedTokens} computed tokens in ${seq.blockTable.length} blocks`);
    }
    for (const block of this.blocks) {
      if (block.refCount !== refs[block.id]) errors.push(`block ${block.id}: ref count ${block.refCount}, held by ${refs[block.id]} tables`);
      if ((block.refCount === 0) !== this.freeBlockIds.has(block.id)) errors.push(`block ${block.id}: ref count ${block.refCount} but ${this.freeBlockIds.has(block.id) ? '' : 'not '}on the free list`);
    }
    for (const [h, id] of this.hashToBlock) {
      if (this.blocks[id].hash !== h) errors.push(`prefix cache: hash ${h} points at block ${id} holding hash ${this.blocks[id].hash}`);
    }
    return errors;
  }
}
