// Contiguous KV cache: per layer one K and one V tensor [B, Hkv, C, D], slots 0..C-1 shared by
// all sequences of the batch (see the batching rule in cache.ts).
//
// tfjs tensors are immutable, so "append" has two implementations:
// - 'inplace' (wasm and cpu backends): C grows in chunks of `growBy` slots; each step's K/V
//   are copied into the tensor's own memory, O(new tokens) per step. Slots past the used ones
//   are empty: masked, or not read at all by the wasm attention kernels.
// - 'concat' (any backend): every step concatenates, C = slots used; O(S) copy per step.
// In 'inplace' mode writableLayer() also hands a layer's tensors to a caller that writes the step's
// keys and values itself (the fused wasm decode step, lib/model/kernels/wasmDecode.ts).

import * as tf from '@tensorflow/tfjs-core';

import { checkCounts, type KVCache, type KVShape, type LayerKV, type StepPlan, type WritableLayerKV } from './cache';
import { inPlaceSupported, memoryOf } from './memory';
import { SlotTable } from './slots';

/** How a contiguous cache appends; 'auto' picks 'inplace' on wasm and cpu, else 'concat'. */
export type AppendMode = 'auto' | 'inplace' | 'concat';

/** Options of ContiguousKVCache. */
export interface ContiguousKVCacheOptions {
  mode?: AppendMode;
  /** in-place mode: capacity grows to a multiple of this many slots (default 64) */
  growBy?: number;
}

/**
 * KV cache with one contiguous [B, Hkv, C, D] tensor per layer for K and for V
 * (lesson: "the KV cache").
 */
export class ContiguousKVCache implements KVCache {
  readonly mode: 'inplace' | 'concat';
  private readonly growBy: number;
  private readonly k: (tf.Tensor4D | null)[];
  private readonly v: (tf.Tensor4D | null)[];
  /** per sequence, the position held by each slot in use (a prefix of the capacity) */
  private readonly slots: SlotTable;
  /** capacity every layer must have after the current step */
  private capacity = 0;
  /** the current step: first slot and slot count */
  private step: { start: number; T: number } | null = null;

  constructor(
    readonly shape: KVShape,
    readonly batchSize: number,
    options: ContiguousKVCacheOptions = {},
  ) {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
    const mode = options.mode ?? 'auto';
    if (mode === 'inplace' && !inPlaceSupported()) {
      throw new Error(`in-place KV cache needs the wasm or cpu backend (current: ${tf.getBackend()})`);
    }
    this.mode = mode === 'auto' ? (inPlaceSupported() ? 'inplace' : 'concat') : mode;
    this.growBy = options.growBy ?? 64;
    if (!Number.isInteger(this.growBy) || this.growBy < 1) throw new Error(`growBy must be a positive integer, got ${this.growBy}`);
    this.k = new Array(shape.numLayers).fill(null);
    this.v = new Array(shape.numLayers).fill(null);
    this.slots = new SlotTable(batchSize);
  }

  lengths(): number[] {
    return this.slots.lengths();
  }

  beginStep(counts: readonly number[]): StepPlan {
    const T = checkCounts(counts, this.batchSize);
    const start = this.slots.used;
    const queryPositions = this.slots.append(counts, T);
    const used = this.slots.used;
    if (this.mode === 'concat') this.capacity = used;
    else if (used > this.capacity) this.capacity = Math.ceil(used / this.growBy) * this.growBy;
    this.step = { start, T };
    const S = this.capacity;
    return { batchSize: this.batchSize, T, S, queryPositions, keyPositions: this.slots.keyPositions(S) };
  }

  update(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): LayerKV {
    if (!this.step) throw new Error('KV cache update() before beginStep()');
    const { numKvHeads: Hkv, headDim: D } = this.shape;
    const want = [this.batchSize, Hkv, this.step.T, D];
    if (k.shape.join() !== want.join() || v.shape.join() !== want.join()) {
      throw new Error(`KV cache layer ${layer}: expected k, v of shape [${want}], got [${k.shape}] and [${v.shape}]`);
    }
    if (this.mode === 'concat') {
      this.k[layer] = this.appendConcat(this.k[layer], k);
      this.v[layer] = this.appendConcat(this.v[layer], v);
    } else {
      this.k[layer] = this.writeInPlace(this.k[layer], k);
      this.v[layer] = this.writeInPlace(this.v[layer], v);
    }
    return { k: this.k[layer]!, v: this.v[layer]! };
  }

  writableLayer(layer: number): WritableLayerKV | null {
    if (!this.step) throw new Error('KV cache writableLayer() before beginStep()');
    if (this.mode !== 'inplace') return null;
    this.k[layer] = this.grown(this.k[layer]);
    this.v[layer] = this.grown(this.v[layer]);
    return { k: this.k[layer]!, v: this.v[layer]!, start: this.step.start };
  }

  truncate(lengths: readonly number[]): void {
    // trailing slots empty in every sequence are given back
    const used = this.slots.truncate(lengths);
    this.step = null;
    if (this.mode === 'concat') {
      this.capacity = used;
      for (const store of [this.k, this.v]) {
        store.forEach((t, i) => {
          if (!t || t.shape[2] === used) return;
          store[i] = used === 0 ? null : tf.keep(tf.slice(t, [0, 0, 0, 0], [-1, -1, used, -1]));
          t.dispose();
        });
      }
    }
  }

  bytes(): number {
    let n = 0;
    for (const t of [...this.k, ...this.v]) if (t) n += t.size * 4;
    return n;
  }

  dispose(): void {
    for (const store of [this.k, this.v]) {
      store.forEach((t, i) => {
        t?.dispose();
        store[i] = null;
      });
    }
    this.slots.clear();
    this.capacity = 0;
    this.step = null;
  }

  // ---- appending

  private appendConcat(old: tf.Tensor4D | null, x: tf.Tensor4D): tf.Tensor4D {
    const out = old ? tf.concat([old, x], 2) : x.clone(); // [B, Hkv, S, D]
    old?.dispose();
    return tf.keep(out);
  }

  private writeInPlace(old: tf.Tensor4D | null, x: tf.Tensor4D): tf.Tensor4D {
    const { start, T } = this.step!;
    const C = this.capacity;
    const t = this.grown(old);
    // copy x [B, Hkv, T, D] into slots [start, start + T) of every (b, head) row
    const D = x.shape[3];
    const rows = x.shape[0] * x.shape[1];
    const dst = memoryOf(t);
    const src = memoryOf(x);
    for (let r = 0; r < rows; r++) {
      dst.set(src.subarray(r * T * D, (r + 1) * T * D), (r * C + start) * D);
    }
    return t;
  }

  // the layer's tensor with room for this step's capacity C: a new one with the old slots copied
  // in and the rest zero when it is smaller, else itself
  private grown(old: tf.Tensor4D | null): tf.Tensor4D {
    const C = this.capacity;
    if (old && old.shape[2] >= C) return old;
    const { numKvHeads: Hkv, headDim: D } = this.shape;
    const grown = tf.tidy(() => {
      const pad = tf.zeros([this.batchSize, Hkv, C - (old ? old.shape[2] : 0), D]);
      return old ? tf.concat([old, pad], 2) : pad;
    }) as tf.Tensor4D; // [B, Hkv, C, D]
    old?.dispose();
    return tf.keep(grown);
  }
}
