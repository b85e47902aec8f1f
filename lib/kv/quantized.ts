// Quantized KV cache (lesson 3, "KV-cache optimizations"): keys and values stored as packed int32
// codes plus scales/zero points, dequantized on read. tfjs has no int8 dtype, so the memory saving
// is real only because codes are packed (quant.ts): 4 x int8 or 8 x int4 per int32 word.
//
// Per layer and for each of K and V, a slot range [0, S) is split in two:
//   [0, Q)  quantized: a PackedKVStore (codes [R, Q, D*b/32] int32, meta int32)
//   [Q, S)  full precision: float32 [B, Hkv, F, D]: KIVI's residual window of the most recent
//           `residual` tokens, plus (per-channel schemes) a partial group of tokenGroup tokens
// Slots are laid out as in the contiguous cache (one slot range shared by the batch, see the
// batching rule in cache.ts). update() quantizes what leaves the window, then returns float k/v
// [B, Hkv, S, D]: the dequantized store followed by the window. That read costs time every step
// (bench/kv.ts measures it); the float copy is a temporary of the step, freed by the model's tidy
// (or by the next step when update() ran outside a tidy).

import * as tf from '@tensorflow/tfjs-core';

import { checkCounts, type KVCache, type KVShape, type LayerKV, type StepPlan } from './cache';
import {
  dequantize,
  groupLayout,
  metaWordsPerUnit,
  quantize,
  resolveQuantScheme,
  schemeName,
  type QuantScheme,
  type QuantSchemeInput,
} from './quant';
import { SlotTable } from './slots';

// ---- a packed store of quantized tokens (reusable by other caches, e.g. paged blocks)

/**
 * Quantized tokens of R rows (sequence, kv head) as int32 tensors (lesson 3): codes [R, Q, D*b/32]
 * and meta ([R, Q, M] per token, [R, Q/tokenGroup, M] per channel, [chunks, M] per tensor).
 * Appends concatenate along tokens; read() dequantizes everything to a host [R, Q, D].
 */
export class PackedKVStore {
  private codes: tf.Tensor3D | null = null;
  private meta: tf.Tensor | null = null;
  /** 'tensor' granularity: tokens of each appended chunk (each has its own scale) */
  private readonly chunks: number[] = [];
  private q = 0;

  constructor(
    readonly scheme: QuantScheme,
    readonly R: number,
    readonly D: number,
  ) {}

  /** Tokens held. */
  get tokens(): number {
    return this.q;
  }

  /** Quantize and append x [R, n, D]; `valid` [R, n] marks real tokens (padding is left out of ranges). */
  append(x: Float32Array, n: number, valid?: Uint8Array): void {
    if (n === 0) return;
    const s = this.scheme;
    if (s.granularity === 'channel' && n % s.tokenGroup !== 0) {
      throw new Error(`per-channel store appends whole groups of ${s.tokenGroup} tokens, got ${n}`);
    }
    const { R, D } = this;
    const block = quantize(x, R, n, D, s, valid);
    const { units, groupsPerUnit } = groupLayout(s, R, n, D);
    const M = metaWordsPerUnit(s, groupsPerUnit);
    const codes = tf.tensor3d(block.codes, [R, n, (D * s.bits) / 32], 'int32');
    const meta =
      s.granularity === 'tensor' ? tf.tensor2d(block.meta, [1, M], 'int32') : tf.tensor3d(block.meta, [R, units / R, M], 'int32');
    this.codes = this.grow(this.codes, codes, 1) as tf.Tensor3D;
    this.meta = this.grow(this.meta, meta, s.granularity === 'tensor' ? 0 : 1);
    if (s.granularity === 'tensor') this.chunks.push(n);
    this.q += n;
  }

  /** Dequantize every token held: host [R, Q, D]. */
  read(): Float32Array {
    const { R, D, q: Q } = this;
    const s = this.scheme;
    if (!this.codes || !this.meta) return new Float32Array(0);
    const codes = this.codes.dataSync() as Int32Array;
    const meta = this.meta.dataSync() as Int32Array;
    if (s.granularity !== 'tensor') return dequantize({ R, n: Q, D, codes, meta }, s);
    // one scale per chunk: gather each chunk's codes, dequantize, scatter back
    const Dp = (D * s.bits) / 32;
    const out = new Float32Array(R * Q * D);
    const M = metaWordsPerUnit(s, 1);
    let t0 = 0;
    this.chunks.forEach((n, c) => {
      const sub = new Int32Array(R * n * Dp);
      for (let r = 0; r < R; r++) sub.set(codes.subarray((r * Q + t0) * Dp, (r * Q + t0 + n) * Dp), r * n * Dp);
      const x = dequantize({ R, n, D, codes: sub, meta: meta.subarray(c * M, (c + 1) * M) }, s);
      for (let r = 0; r < R; r++) out.set(x.subarray(r * n * D, (r + 1) * n * D), (r * Q + t0) * D);
      t0 += n;
    });
    return out;
  }

  /** Bytes of tensor memory held. */
  bytes(): number {
    return ((this.codes?.size ?? 0) + (this.meta?.size ?? 0)) * 4;
  }

  /** Bytes at exactly b bits per code and metaBits per scale/zero point (no word padding). */
  theoreticalBytes(): number {
    const s = this.scheme;
    const groups =
      s.granularity === 'tensor'
        ? this.chunks.length
        : groupLayout(s, this.R, this.q, this.D).units * groupLayout(s, this.R, this.q, this.D).groupsPerUnit;
    return (this.R * this.q * this.D * s.bits) / 8 + (groups * (s.symmetric ? 1 : 2) * s.metaBits) / 8;
  }

  dispose(): void {
    this.codes?.dispose();
    this.meta?.dispose();
    this.codes = this.meta = null;
    this.chunks.length = 0;
    this.q = 0;
  }

  private grow(old: tf.Tensor | null, x: tf.Tensor, axis: number): tf.Tensor {
    if (!old) return tf.keep(x);
    const out = tf.keep(tf.concat([old, x], axis));
    old.dispose();
    x.dispose();
    return out;
  }
}

// ---- configuration

/** Configuration of a QuantizedKVCache (lesson 3): a scheme for K, one for V, the fp window. */
export interface QuantizedKVCacheConfig {
  key: QuantScheme;
  value: QuantScheme;
  /** most recent tokens kept in float32 (KIVI's residual); default 0 */
  residual: number;
}

export interface QuantizedKVCacheInput {
  key: QuantSchemeInput;
  /** default: the key's scheme */
  value?: QuantSchemeInput;
  residual?: number;
}

/** Check a quantized cache configuration against the model's head dim (lesson 3). */
export function resolveQuantizedKVConfig(input: QuantizedKVCacheInput, headDim: number): QuantizedKVCacheConfig {
  const residual = input.residual ?? 0;
  if (!Number.isInteger(residual) || residual < 0) throw new Error(`residual must be a non-negative integer, got ${residual}`);
  return { key: resolveQuantScheme(input.key, headDim), value: resolveQuantScheme(input.value ?? input.key, headDim), residual };
}

/** A readable name of a configuration: "K int4-channel-t32-asym / V int4-token-g32-asym + r32". */
export function quantizedKVName(c: QuantizedKVCacheConfig): string {
  return `K ${schemeName(c.key)} / V ${schemeName(c.value)}${c.residual ? ` + r${c.residual}` : ''}`;
}

/**
 * Named configurations (lesson 3): the tutorial's naive global min/max, per-token, and KIVI-style
 * per-channel keys with per-token values, at 8 and 4 bits.
 */
export const KV_QUANT_PRESETS: Record<string, QuantizedKVCacheInput> = {
  'int8-tensor': { key: { bits: 8, granularity: 'tensor' } },
  'int8-token': { key: { bits: 8, granularity: 'token' } },
  'int8-token-sym': { key: { bits: 8, granularity: 'token', symmetric: true } },
  'int8-channel-t128-sym': { key: { bits: 8, granularity: 'channel', tokenGroup: 128, symmetric: true } },
  'int8-kivi-t128': {
    key: { bits: 8, granularity: 'channel', tokenGroup: 128 },
    value: { bits: 8, granularity: 'token', symmetric: true },
  },
  'int4-tensor': { key: { bits: 4, granularity: 'tensor' } },
  'int4-token': { key: { bits: 4, granularity: 'token' } },
  'int4-token-g32': { key: { bits: 4, granularity: 'token', groupSize: 32 } },
  'int4-kivi-g32': { key: { bits: 4, granularity: 'channel', tokenGroup: 32 }, value: { bits: 4, granularity: 'token', groupSize: 32 } },
  'int4-kivi-t64': { key: { bits: 4, granularity: 'channel', tokenGroup: 64 }, value: { bits: 4, granularity: 'token' } },
  'int4-kivi-t64-r32': { key: { bits: 4, granularity: 'channel', tokenGroup: 64 }, value: { bits: 4, granularity: 'token' }, residual: 32 },
};

// ---- the cache

// one of K or V of one layer: the quantized store and the float window after it
interface Half {
  store: PackedKVStore;
  /** [B, Hkv, F, D] float32, or null when empty */
  window: tf.Tensor4D | null;
}

/**
 * A KV cache that stores keys and values quantized (lesson 3, "KV-cache optimizations"): packed
 * int32 codes with float16/32 scales, an optional float window of recent tokens, dequantized on
 * read. Use it with generate(lm, prompts, params, { makeCache: (shape, B) => new QuantizedKVCache(shape, B, config) }).
 */
export class QuantizedKVCache implements KVCache {
  readonly config: QuantizedKVCacheConfig;
  private readonly layers: { k: Half; v: Half }[];
  private readonly slots: SlotTable;
  /** tokens to move from the window into the store this step, for K and for V */
  private flush: { k: number; v: number } | null = null;
  private T = 0;
  private scratch: tf.Tensor[] = [];

  constructor(
    readonly shape: KVShape,
    readonly batchSize: number,
    config: QuantizedKVCacheInput | QuantizedKVCacheConfig,
  ) {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
    this.config = resolveQuantizedKVConfig(config as QuantizedKVCacheInput, shape.headDim);
    const R = batchSize * shape.numKvHeads;
    const half = (s: QuantScheme): Half => ({ store: new PackedKVStore(s, R, shape.headDim), window: null });
    this.layers = Array.from({ length: shape.numLayers }, () => ({ k: half(this.config.key), v: half(this.config.value) }));
    this.slots = new SlotTable(batchSize);
  }

  lengths(): number[] {
    return this.slots.lengths();
  }

  beginStep(counts: readonly number[]): StepPlan {
    const T = checkCounts(counts, this.batchSize);
    this.freeScratch();
    const queryPositions = this.slots.append(counts, T);
    const S = this.slots.used;
    const keyPositions = this.slots.keyPositions(S);
    // what leaves the window: all but the newest `residual`, in whole token groups per channel
    const first = this.layers[0];
    const due = (h: Half) => {
      const e = Math.max(0, S - h.store.tokens - this.config.residual);
      return h.store.scheme.granularity === 'channel' ? e - (e % h.store.scheme.tokenGroup) : e;
    };
    this.flush = { k: due(first.k), v: due(first.v) };
    this.T = T;
    return { batchSize: this.batchSize, T, S, queryPositions, keyPositions };
  }

  update(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): LayerKV {
    if (!this.flush) throw new Error('KV cache update() before beginStep()');
    const { numKvHeads: Hkv, headDim: D } = this.shape;
    const want = [this.batchSize, Hkv, this.T, D];
    if (k.shape.join() !== want.join() || v.shape.join() !== want.join()) {
      throw new Error(`KV cache layer ${layer}: expected k, v of shape [${want}], got [${k.shape}] and [${v.shape}]`);
    }
    const L = this.layers[layer];
    const out = { k: this.write(L.k, k, this.flush.k), v: this.write(L.v, v, this.flush.v) };
    this.scratch.push(out.k, out.v);
    return out;
  }

  truncate(lengths: readonly number[]): void {
    // rolled-back slots are masked; trailing ones still in the float window are given back
    let stored = 0;
    for (const L of this.layers) for (const h of [L.k, L.v]) stored = Math.max(stored, h.store.tokens);
    const used = this.slots.truncate(lengths, stored);
    this.freeScratch();
    for (const L of this.layers) {
      for (const h of [L.k, L.v]) {
        const keep = used - h.store.tokens;
        if (!h.window || h.window.shape[2] === keep) continue;
        const w = h.window;
        h.window = keep === 0 ? null : tf.keep(tf.slice(w, [0, 0, 0, 0], [-1, -1, keep, -1]));
        w.dispose();
      }
    }
    this.flush = null;
  }

  /** Bytes of tensor memory the cache holds (packed codes, scales, zero points, float window). */
  bytes(): number {
    let n = 0;
    for (const L of this.layers) for (const h of [L.k, L.v]) n += h.store.bytes() + (h.window ? h.window.size * 4 : 0);
    return n;
  }

  /** The same at exactly b bits per code and metaBits per scale (what a custom kernel would hold). */
  theoreticalBytes(): number {
    let n = 0;
    for (const L of this.layers) for (const h of [L.k, L.v]) n += h.store.theoreticalBytes() + (h.window ? h.window.size * 4 : 0);
    return n;
  }

  /** Tokens (slots) held quantized and in float, per layer 0 (every layer is the same). */
  split(): { quantized: { k: number; v: number }; float: { k: number; v: number } } {
    const L = this.layers[0];
    const f = (h: Half) => h.window?.shape[2] ?? 0;
    return { quantized: { k: L.k.store.tokens, v: L.v.store.tokens }, float: { k: f(L.k), v: f(L.v) } };
  }

  dispose(): void {
    this.freeScratch();
    for (const L of this.layers) {
      for (const h of [L.k, L.v]) {
        h.store.dispose();
        h.window?.dispose();
        h.window = null;
      }
    }
    this.slots.clear();
    this.flush = null;
  }

  // append x [B, Hkv, T, D] to the window, move `flush` tokens into the store, return float [B, Hkv, S, D]
  private write(h: Half, x: tf.Tensor4D, flush: number): tf.Tensor4D {
    const { numKvHeads: Hkv, headDim: D } = this.shape;
    const B = this.batchSize;
    const R = B * Hkv;
    const joined = tf.keep(h.window ? tf.concat([h.window, x], 2) : x.clone()); // [B, Hkv, F, D]
    h.window?.dispose();
    const F = joined.shape[2];
    const data = joined.dataSync() as Float32Array; // [R, F, D]
    const Q0 = h.store.tokens;
    if (flush > 0) {
      const block = new Float32Array(R * flush * D);
      const valid = new Uint8Array(R * flush);
      for (let r = 0; r < R; r++) {
        block.set(data.subarray(r * F * D, (r * F + flush) * D), r * flush * D);
        const row = this.slots.rows[Math.floor(r / Hkv)];
        for (let t = 0; t < flush; t++) valid[r * flush + t] = row[Q0 + t] >= 0 ? 1 : 0;
      }
      h.store.append(block, flush, valid);
      h.window = F === flush ? null : tf.keep(tf.slice(joined, [0, 0, flush, 0], [-1, -1, -1, -1]));
      joined.dispose();
    } else {
      h.window = joined;
    }
    // the float copy to attend over: dequantized store, then the window
    const Q = h.store.tokens;
    const S = Q0 + F;
    const deq = h.store.read(); // [R, Q, D]
    const out = new Float32Array(R * S * D);
    for (let r = 0; r < R; r++) {
      out.set(deq.subarray(r * Q * D, (r + 1) * Q * D), r * S * D);
      out.set(data.subarray((r * F + (Q - Q0)) * D, (r + 1) * F * D), (r * S + Q) * D);
    }
    return tf.tensor4d(out, [B, Hkv, S, D]);
  }

  private freeScratch(): void {
    for (const t of this.scratch) if (!t.isDisposed) t.dispose();
    this.scratch = [];
  }
}

/** Bits per stored element of a scheme at long context (codes + meta), for tables (lesson 3). */
export function bitsPerElement(s: QuantScheme): number {
  const perGroup = (s.symmetric ? 1 : 2) * s.metaBits;
  if (s.granularity === 'tensor') return s.bits;
  return s.bits + perGroup / (s.granularity === 'token' ? s.groupSize : s.tokenGroup);
}
