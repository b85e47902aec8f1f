// Paged KV cache (lesson 3, "PagedAttention"): per layer one pool of blocks for K and one for V,
// [numBlocks, Hkv, blockSize, D]. A sequence's keys live in the blocks its block table names,
// in order; nothing is reserved past its last block.
//
// Within a block the layout is head-major (as vLLM's first paged-attention kernel): one head's
// keys of a block are one contiguous run of blockSize * D floats, so reading a block is one copy
// per head instead of one per token and head (measured: ~6x less copy time at batch 16).
//
//   write: each new token goes to slot blockTable[pos / blockSize] * blockSize + pos % blockSize
//          (the "slot mapping"); in place on wasm and cpu, else a scatter that makes a new pool.
//   read:  gather the sequence's blocks, [B, maxBlocks, Hkv, blockSize, D] -> [B, Hkv, S, D]
//          with S = maxBlocks * blockSize; slots past a sequence's length are masked (-1).
//
// The block tables come from the engine (lib/engine/blockManager.ts). The batch changes every
// step, so before each forward the engine calls setBatch() with the step's sequences (the
// PerStepBatchKVCache contract of cache.ts); then the model drives the cache through the ordinary
// KVCache calls (beginStep, update).

import * as tf from '@tensorflow/tfjs-core';

import { checkCounts, checkTruncate, type KVShape, type LayerKV, type PerStepBatchKVCache, type StepPlan, type StepSequence } from './cache';
import { inPlaceSupported, memoryOf } from './memory';

/** How the paged cache writes: in place in the pool's memory (wasm, cpu) or by scatter (any backend). */
export type PagedWriteMode = 'auto' | 'inplace' | 'scatter';

/** Options of PagedKVCache. */
export interface PagedKVCacheOptions {
  numBlocks: number;
  /** tokens per block (default 16) */
  blockSize?: number;
  mode?: PagedWriteMode;
}


// ---- reading blocks out: [numBlocks, Hkv, blockSize, D] -> [B, Hkv, S, D]

interface PagedReadPlan {
  B: number;
  Hkv: number;
  D: number;
  blockSize: number;
  maxBlocks: number;
  /** [B * maxBlocks] block ids */
  gather: Int32Array;
  /** tokens per sequence (after this step's writes) */
  lens: readonly number[];
}

// copy each sequence's blocks into its rows of out (offsets in floats into src and dst); zero
// the slots past its length
function copyBlocksOut(p: PagedReadPlan, src: Float32Array, srcBase: number, dst: Float32Array, dstBase: number): void {
  const { B, Hkv, D, blockSize: bs, maxBlocks, gather, lens } = p;
  const S = maxBlocks * bs;
  for (let b = 0; b < B; b++) {
    const len = lens[b];
    for (let h = 0; h < Hkv; h++) {
      const row = dstBase + (b * Hkv + h) * S * D;
      for (let j = 0; j * bs < len; j++) {
        const from = srcBase + (gather[b * maxBlocks + j] * Hkv + h) * bs * D;
        const n = Math.min(bs, len - j * bs) * D;
        dst.set(src.subarray(from, from + n), row + j * bs * D); // (faster than copyWithin in V8)
      }
      dst.fill(0, row + len * D, row + S * D);
    }
  }
}

interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
}

const PAGED_READ = 'InferenceLabPagedRead';

// a wasm kernel: the output is allocated uninitialized and written once, in the backend's heap
function registerPagedRead(): void {
  if (tf.getKernel(PAGED_READ, 'wasm')) return;
  tf.registerKernel({
    kernelName: PAGED_READ,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as WasmBackendLike;
      const { pool } = inputs as { pool: tf.TensorInfo };
      const p = (attrs as unknown as { plan: PagedReadPlan }).plan;
      const out = be.makeOutput([p.B, p.Hkv, p.maxBlocks * p.blockSize, p.D], 'float32');
      const heap = new Float32Array(be.wasm.HEAPU8.buffer); // after makeOutput: the heap may have grown
      copyBlocksOut(p, heap, be.dataIdMap.get(pool.dataId).memoryOffset / 4, heap, be.dataIdMap.get(out.dataId).memoryOffset / 4);
      return out;
    },
  });
}

/**
 * KV cache in fixed-size blocks addressed through block tables (lesson 3, "PagedAttention").
 * Its batch is set per step: call `setBatch()` before a forward to say which sequences (block
 * tables) form it (see PerStepBatchKVCache).
 */
export class PagedKVCache implements PerStepBatchKVCache {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly mode: 'inplace' | 'scatter';
  /** per layer [numBlocks, Hkv, blockSize, D] */
  private readonly k: tf.Tensor4D[];
  private readonly v: tf.Tensor4D[];
  private tables: number[][] = [];
  private lens: number[] = [];
  /** the current step: slot of each new token ([B*T], -1 = padding), blocks to gather ([B*maxBlocks]) */
  private step: { T: number; slots: Int32Array; gather: Int32Array; maxBlocks: number } | null = null;

  constructor(
    readonly shape: KVShape,
    options: PagedKVCacheOptions,
  ) {
    this.numBlocks = options.numBlocks;
    this.blockSize = options.blockSize ?? 16;
    if (!Number.isInteger(this.numBlocks) || this.numBlocks < 1) throw new Error(`numBlocks must be a positive integer, got ${this.numBlocks}`);
    if (!Number.isInteger(this.blockSize) || this.blockSize < 1) throw new Error(`blockSize must be a positive integer, got ${this.blockSize}`);
    const mode = options.mode ?? 'auto';
    if (mode === 'inplace' && !inPlaceSupported()) {
      throw new Error(`in-place paged KV writes need the wasm or cpu backend (current: ${tf.getBackend()})`);
    }
    this.mode = mode === 'auto' ? (inPlaceSupported() ? 'inplace' : 'scatter') : mode;
    const { numLayers, numKvHeads: Hkv, headDim: D } = shape;
    const pool = () => tf.keep(tf.zeros([this.numBlocks, Hkv, this.blockSize, D])) as tf.Tensor4D;
    this.k = Array.from({ length: numLayers }, pool);
    this.v = Array.from({ length: numLayers }, pool);
  }

  get batchSize(): number {
    return this.tables.length;
  }

  /** Set the sequences of the next steps (engine-facing; the model sees an ordinary KVCache). */
  setBatch(seqs: readonly StepSequence[]): void {
    this.tables = seqs.map((s) => [...s.blockTable]);
    this.lens = seqs.map((s, b) => {
      if (!Number.isInteger(s.numCachedTokens) || s.numCachedTokens < 0 || s.numCachedTokens > s.blockTable.length * this.blockSize) {
        throw new Error(`paged cache: sequence ${b} has ${s.numCachedTokens} cached tokens but ${s.blockTable.length} blocks`);
      }
      for (const id of s.blockTable) {
        if (!Number.isInteger(id) || id < 0 || id >= this.numBlocks) throw new Error(`paged cache: block id ${id} out of range [0, ${this.numBlocks})`);
      }
      return s.numCachedTokens;
    });
    this.step = null;
  }

  lengths(): number[] {
    return [...this.lens];
  }

  beginStep(counts: readonly number[]): StepPlan {
    const T = checkCounts(counts, this.batchSize);
    const B = this.batchSize;
    const bs = this.blockSize;
    let maxBlocks = 1;
    counts.forEach((n, b) => {
      const need = Math.ceil((this.lens[b] + n) / bs);
      if (need > this.tables[b].length) {
        throw new Error(`paged cache: sequence ${b} needs ${need} blocks for ${this.lens[b] + n} tokens, its block table has ${this.tables[b].length}`);
      }
      maxBlocks = Math.max(maxBlocks, need);
    });
    const S = maxBlocks * bs;
    const queryPositions = new Int32Array(B * T).fill(-1);
    const keyPositions = new Int32Array(B * S).fill(-1);
    const slots = new Int32Array(B * T).fill(-1);
    const gather = new Int32Array(B * maxBlocks); // padding rows gather block 0, masked below
    for (let b = 0; b < B; b++) {
      const n = counts[b];
      const table = this.tables[b];
      for (let i = 0; i < n; i++) {
        const pos = this.lens[b] + i;
        queryPositions[b * T + (T - n) + i] = pos;
        slots[b * T + (T - n) + i] = table[Math.floor(pos / bs)] * bs + (pos % bs);
      }
      const len = this.lens[b] + n;
      for (let s = 0; s < len; s++) keyPositions[b * S + s] = s;
      for (let j = 0; j < Math.ceil(len / bs); j++) gather[b * maxBlocks + j] = table[j];
      this.lens[b] = len;
    }
    this.step = { T, slots, gather, maxBlocks };
    return { batchSize: B, T, S, queryPositions, keyPositions };
  }

  update(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): LayerKV {
    if (!this.step) throw new Error('paged KV cache update() before beginStep()');
    const { numKvHeads: Hkv, headDim: D } = this.shape;
    const B = this.batchSize;
    const { T, maxBlocks } = this.step;
    const want = [B, Hkv, T, D];
    if (k.shape.join() !== want.join() || v.shape.join() !== want.join()) {
      throw new Error(`paged KV cache layer ${layer}: expected k, v of shape [${want}], got [${k.shape}] and [${v.shape}]`);
    }
    // ---- write by slot mapping
    if (this.mode === 'inplace') {
      this.writeInPlace(this.k[layer], k);
      this.writeInPlace(this.v[layer], v);
    } else {
      this.k[layer] = this.writeScatter(this.k[layer], k);
      this.v[layer] = this.writeScatter(this.v[layer], v);
    }
    // ---- read by block table
    if (this.mode === 'inplace') return { k: this.readInPlace(this.k[layer]), v: this.readInPlace(this.v[layer]) };
    const S = maxBlocks * this.blockSize;
    const idx = tf.tensor1d(this.step.gather, 'int32');
    const read = (pool: tf.Tensor4D): tf.Tensor4D => {
      const blocks = tf.gather(pool, idx); // [B*maxBlocks, Hkv, blockSize, D]
      const perSeq = tf.transpose(tf.reshape(blocks, [B, maxBlocks, Hkv, this.blockSize, D]), [0, 2, 1, 3, 4]); // [B, Hkv, maxBlocks, blockSize, D]
      return tf.reshape(perSeq, [B, Hkv, S, D]);
    };
    const out = { k: read(this.k[layer]), v: read(this.v[layer]) };
    idx.dispose();
    return out;
  }

  /** Copy whole blocks (copy-on-write): dst gets src's keys and values in every layer. */
  copyBlocks(pairs: readonly (readonly [number, number])[]): void {
    if (pairs.length === 0) return;
    for (const [src, dst] of pairs) {
      for (const id of [src, dst]) if (!Number.isInteger(id) || id < 0 || id >= this.numBlocks) throw new Error(`paged cache: block id ${id} out of range`);
    }
    const stride = this.blockSize * this.shape.numKvHeads * this.shape.headDim;
    for (const store of [this.k, this.v]) {
      store.forEach((pool, layer) => {
        if (this.mode === 'inplace') {
          const mem = memoryOf(pool);
          for (const [src, dst] of pairs) mem.copyWithin(dst * stride, src * stride, (src + 1) * stride);
        } else {
          const next = tf.tidy(() => {
            const rows = tf.gather(pool, pairs.map((p) => p[0])); // [P, Hkv, blockSize, D]
            const at = tf.tensor2d(pairs.map((p) => p[1]), [pairs.length, 1], 'int32');
            return tf.tensorScatterUpdate(pool, at, rows) as tf.Tensor4D;
          });
          pool.dispose();
          store[layer] = tf.keep(next);
        }
      });
    }
  }

  truncate(lengths: readonly number[]): void {
    checkTruncate(lengths, this.lens);
    this.lens = [...lengths];
    this.step = null;
  }

  bytes(): number {
    let n = 0;
    for (const t of [...this.k, ...this.v]) n += t.size * 4;
    return n;
  }

  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
    this.k.length = 0;
    this.v.length = 0;
    this.tables = [];
    this.lens = [];
    this.step = null;
  }

  // ---- reading and writing in place

  // gather by block table with plain copies: pool [numBlocks, Hkv, blockSize, D] ->
  // out [B, Hkv, S, D], one run of (tokens in block) * D floats per (block, head); slots past a
  // sequence's length are zeroed (masked). tfjs-wasm's gather + transpose are scalar loops, ~8x
  // slower at batch 16; on wasm this runs as a kernel that leaves the output uninitialized but
  // for those tails, so each float is written once.
  private readInPlace(pool: tf.Tensor4D): tf.Tensor4D {
    const { gather, maxBlocks } = this.step!;
    const read: PagedReadPlan = { B: this.batchSize, Hkv: this.shape.numKvHeads, D: this.shape.headDim, blockSize: this.blockSize, maxBlocks, gather, lens: this.lens };
    if (tf.getBackend() === 'wasm') {
      registerPagedRead();
      return tf.engine().runKernel(PAGED_READ, { pool }, { plan: read } as unknown as tf.NamedAttrMap) as tf.Tensor4D;
    }
    const out = tf.zeros([read.B, read.Hkv, maxBlocks * this.blockSize, read.D]) as tf.Tensor4D;
    const src = memoryOf(pool);
    copyBlocksOut(read, src, 0, memoryOf(out), 0);
    return out;
  }

  // x [B, Hkv, T, D]: token (b, t) of head h goes to block slot / blockSize, head h, row slot % blockSize
  private writeInPlace(pool: tf.Tensor4D, x: tf.Tensor4D): void {
    const { slots, T } = this.step!;
    const [B, Hkv, , D] = x.shape;
    const dst = memoryOf(pool);
    const src = memoryOf(x);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const slot = slots[b * T + t];
        if (slot < 0) continue;
        for (let h = 0; h < Hkv; h++) {
          const from = ((b * Hkv + h) * T + t) * D;
          dst.set(src.subarray(from, from + D), this.rowOf(slot, h) * D);
        }
      }
    }
  }

  private writeScatter(pool: tf.Tensor4D, x: tf.Tensor4D): tf.Tensor4D {
    const { slots, T } = this.step!;
    const [B, Hkv, , D] = x.shape;
    const rows: number[] = [];
    const at: number[] = [];
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < Hkv; h++) {
        for (let t = 0; t < T; t++) {
          const slot = slots[b * T + t];
          if (slot < 0) continue;
          rows.push((b * Hkv + h) * T + t);
          at.push(this.rowOf(slot, h));
        }
      }
    }
    const next = tf.tidy(() => {
      const updates = tf.gather(tf.reshape(x, [B * Hkv * T, D]), rows); // [n, D]
      const flat = tf.reshape(pool, [this.numBlocks * Hkv * this.blockSize, D]); // [rows, D]
      const written = tf.tensorScatterUpdate(flat, tf.tensor2d(at, [at.length, 1], 'int32'), updates);
      return tf.reshape(written, pool.shape) as tf.Tensor4D; // [numBlocks, Hkv, blockSize, D]
    });
    pool.dispose();
    return tf.keep(next);
  }

  // row (of D floats) of the pool holding slot `slot`, head h
  private rowOf(slot: number, h: number): number {
    const block = Math.floor(slot / this.blockSize);
    return (block * this.shape.numKvHeads + h) * this.blockSize + (slot % this.blockSize);
  }
}
