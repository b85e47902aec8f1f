// KV-cache quantization maths (lesson 3, "KV-cache optimizations"): pure functions over typed
// arrays, no tensors. The caches that use them (quantized.ts, later paged) come after.
//
// A block of keys or values is x [R, n, D]: R = B*Hkv rows (sequence, kv head), n tokens, D
// channels. Values are quantized in groups; each group has a scale s (and, asymmetric, a zero
// point z) and every element becomes an unsigned b-bit code c:
//   asymmetric: s = (max - min) / (2^b - 1), z = min,  c = round((x - z) / s),    x^ = z + c*s
//   symmetric:  s = absmax / (2^(b-1) - 1),            c = round(x / s) + 2^(b-1), x^ = (c - 2^(b-1))*s
// Rounding to the nearest level gives the analytic bound |x - x^| <= s / 2 for every element.
//
// Groups (granularity):
//   'tensor'  one (s, z) for the whole block: the tutorial's naive global min/max
//   'token'   per token, channels in groups of `groupSize` (divides D): KIVI's values
//   'channel' per channel, tokens in groups of `tokenGroup`: KIVI's / KVQuant's keys (outlier
//             channels get their own range instead of stretching every token's)
//
// Storage: codes are packed 4 x int8 or 8 x int4 per int32 (lossless), along D within a token, so
// a packed block is [R, n, D*b/32] and blocks concatenate along tokens. Scales and zero points
// ("meta") are float32 or float16 (two per int32), packed per unit: [units, M] int32 words.

import { f16ToF32, f32ToF16 } from '../formats/dtype';

// ---- schemes

export type QuantBits = 4 | 8;
export type QuantGranularity = 'tensor' | 'token' | 'channel';

/** How one of K or V is quantized (lesson 3, "KV-cache optimizations"). */
export interface QuantScheme {
  bits: QuantBits;
  symmetric: boolean;
  granularity: QuantGranularity;
  /** 'token': channels per group; must divide D (default D: one group per token) */
  groupSize: number;
  /** 'channel': tokens per group (KIVI's G); the cache keeps a partial group in full precision */
  tokenGroup: number;
  /** bits of each stored scale and zero point: 16 (float16, as KIVI) or 32 */
  metaBits: 16 | 32;
}

export type QuantSchemeInput = Omit<Partial<QuantScheme>, 'bits'> & { bits: number };

/** Check a scheme against the head dimension D and fill defaults (lesson 3). */
export function resolveQuantScheme(input: QuantSchemeInput, headDim: number): QuantScheme {
  const bits = input.bits;
  if (bits !== 4 && bits !== 8) throw new Error(`quantization bits must be 4 or 8, got ${bits}`);
  const granularity = input.granularity ?? 'token';
  if (!['tensor', 'token', 'channel'].includes(granularity)) {
    throw new Error(`quantization granularity must be 'tensor', 'token' or 'channel', got '${String(granularity)}'`);
  }
  if ((headDim * bits) % 32 !== 0) throw new Error(`head dim ${headDim} x ${bits} bits does not fill whole int32 words`);
  const groupSize = input.groupSize ?? headDim;
  if (!Number.isInteger(groupSize) || groupSize < 1 || headDim % groupSize !== 0) {
    throw new Error(`group size ${groupSize} must be a positive integer that divides the head dim ${headDim}`);
  }
  const tokenGroup = input.tokenGroup ?? 32;
  if (!Number.isInteger(tokenGroup) || tokenGroup < 1) throw new Error(`tokenGroup must be a positive integer, got ${tokenGroup}`);
  const metaBits = input.metaBits ?? 16;
  if (metaBits !== 16 && metaBits !== 32) throw new Error(`metaBits must be 16 or 32, got ${metaBits}`);
  return { bits, symmetric: input.symmetric ?? false, granularity, groupSize, tokenGroup, metaBits };
}

/** A short name: int4-channel-t32-asym, int8-token-g64-sym, int4-tensor-asym. */
export function schemeName(s: QuantScheme): string {
  const g = s.granularity === 'token' ? `-g${s.groupSize}` : s.granularity === 'channel' ? `-t${s.tokenGroup}` : '';
  return `int${s.bits}-${s.granularity}${g}-${s.symmetric ? 'sym' : 'asym'}${s.metaBits === 32 ? '-f32meta' : ''}`;
}

/** Codes per int32 word. */
export function codesPerWord(bits: QuantBits): number {
  return 32 / bits;
}

/** Groups per unit (G) and units (U) of a block of n tokens: what carries one (s, z) each. */
export function groupLayout(s: QuantScheme, R: number, n: number, D: number): { units: number; groupsPerUnit: number } {
  if (s.granularity === 'tensor') return { units: 1, groupsPerUnit: 1 };
  if (s.granularity === 'token') return { units: R * n, groupsPerUnit: D / s.groupSize };
  return { units: R * Math.ceil(n / s.tokenGroup), groupsPerUnit: D };
}

/** int32 words of meta per unit: G scales (+ G zero points), 16 or 32 bits each. */
export function metaWordsPerUnit(s: QuantScheme, groupsPerUnit: number): number {
  const values = groupsPerUnit * (s.symmetric ? 1 : 2);
  return s.metaBits === 32 ? values : Math.ceil(values / 2);
}

/**
 * The a-priori bound on |x - x^| for a group whose values lie in [min, max] (lesson 3): half a
 * quantization step. Float16 meta rounds the step up by at most one float16 ulp (factor 1 + 2^-10).
 */
export function analyticErrorBound(s: QuantScheme, min: number, max: number): number {
  const levels = s.symmetric ? 2 ** (s.bits - 1) - 1 : 2 ** s.bits - 1;
  const range = s.symmetric ? Math.max(Math.abs(min), Math.abs(max)) : max - min;
  const slack = s.metaBits === 16 ? 1 + 2 ** -9 : 1;
  return ((range / levels) * slack) / 2;
}

// ---- packing (lossless)

/** Pack unsigned b-bit codes into int32 words, 32/b per word, code i at bits (i % per) * b. */
export function packCodes(codes: Uint8Array, bits: QuantBits): Int32Array {
  const per = codesPerWord(bits);
  if (codes.length % per !== 0) throw new Error(`packCodes: ${codes.length} codes do not fill whole words of ${per}`);
  const out = new Int32Array(codes.length / per);
  const mask = (1 << bits) - 1;
  for (let w = 0; w < out.length; w++) {
    let word = 0;
    for (let j = 0; j < per; j++) word |= (codes[w * per + j] & mask) << (j * bits);
    out[w] = word;
  }
  return out;
}

/** Inverse of packCodes. */
export function unpackCodes(words: Int32Array, bits: QuantBits, out = new Uint8Array(words.length * codesPerWord(bits))): Uint8Array {
  const per = codesPerWord(bits);
  const mask = (1 << bits) - 1;
  for (let w = 0; w < words.length; w++) {
    const word = words[w];
    for (let j = 0; j < per; j++) out[w * per + j] = (word >>> (j * bits)) & mask;
  }
  return out;
}

// float16 bits one ulp up / down (toward +inf / -inf)
const halfUp = (h: number) => (h & 0x8000 ? (h === 0x8000 ? 0x0001 : h - 1) : h + 1);
const halfDown = (h: number) => (h & 0x8000 ? h + 1 : h === 0 ? 0x8001 : h - 1);

/** Round to float16 in the given direction ('up' >= x, 'down' <= x); returns the float16 values. */
export function roundHalf(x: Float32Array, dir: 'up' | 'down'): Float32Array {
  const h = f32ToF16(x);
  const back = f16ToF32(h);
  for (let i = 0; i < x.length; i++) {
    if (dir === 'up' && back[i] < x[i]) h[i] = halfUp(h[i]);
    if (dir === 'down' && back[i] > x[i]) h[i] = halfDown(h[i]);
  }
  const out = f16ToF32(h);
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) throw new Error(`quantization scale or zero point ${x[i]} overflows float16: use metaBits 32`);
  }
  return out;
}

/** Pack per-unit scales [U, G] and zero points [U, G] (or null) into [U, M] int32 words. */
export function packMeta(scales: Float32Array, zeros: Float32Array | null, groupsPerUnit: number, metaBits: 16 | 32): Int32Array {
  const G = groupsPerUnit;
  const U = scales.length / G;
  const per = zeros ? 2 * G : G;
  const M = metaBits === 32 ? per : Math.ceil(per / 2);
  const vals = new Float32Array(U * per);
  for (let u = 0; u < U; u++) {
    vals.set(scales.subarray(u * G, (u + 1) * G), u * per);
    if (zeros) vals.set(zeros.subarray(u * G, (u + 1) * G), u * per + G);
  }
  if (metaBits === 32) return new Int32Array(vals.buffer);
  const halves = f32ToF16(vals);
  const out = new Int32Array(U * M);
  const out16 = new Uint16Array(out.buffer);
  for (let u = 0; u < U; u++) out16.set(halves.subarray(u * per, (u + 1) * per), u * 2 * M);
  return out;
}

/** Inverse of packMeta: scales [U, G] and zero points [U, G] (null when symmetric). */
export function unpackMeta(
  words: Int32Array,
  units: number,
  groupsPerUnit: number,
  symmetric: boolean,
  metaBits: 16 | 32,
): { scales: Float32Array; zeros: Float32Array | null } {
  const G = groupsPerUnit;
  const per = symmetric ? G : 2 * G;
  const M = metaBits === 32 ? per : Math.ceil(per / 2);
  if (words.length !== units * M) throw new Error(`unpackMeta: ${words.length} words, expected ${units} x ${M}`);
  let vals: Float32Array;
  if (metaBits === 32) {
    vals = new Float32Array(words.buffer, words.byteOffset, words.length);
  } else {
    const all = f16ToF32(new Uint16Array(words.buffer, words.byteOffset, words.length * 2));
    vals = new Float32Array(units * per);
    for (let u = 0; u < units; u++) vals.set(all.subarray(u * 2 * M, u * 2 * M + per), u * per);
  }
  const scales = new Float32Array(units * G);
  const zeros = symmetric ? null : new Float32Array(units * G);
  for (let u = 0; u < units; u++) {
    scales.set(vals.subarray(u * per, u * per + G), u * G);
    zeros?.set(vals.subarray(u * per + G, u * per + 2 * G), u * G);
  }
  return { scales, zeros };
}

// ---- quantize / dequantize

/** A quantized block: packed codes [R, n, D*b/32] and packed meta [units, M]. */
export interface PackedBlock {
  R: number;
  n: number;
  D: number;
  codes: Int32Array;
  meta: Int32Array;
}

// the (unit, group) index of element (r, t, d), as a flat group id
function groupIdFn(s: QuantScheme, n: number, D: number): (r: number, t: number, d: number) => number {
  if (s.granularity === 'tensor') return () => 0;
  if (s.granularity === 'token') {
    const G = D / s.groupSize;
    return (r, t, d) => (r * n + t) * G + Math.floor(d / s.groupSize);
  }
  const nb = Math.ceil(n / s.tokenGroup);
  return (r, t, d) => (r * nb + Math.floor(t / s.tokenGroup)) * D + d;
}

/**
 * Quantize x [R, n, D] (lesson 3). `valid` [R, n] (optional) marks real tokens: padding is left
 * out of the ranges (and clamped into them). Scales are rounded up and zero points down when stored
 * as float16, so every in-range value keeps |x - x^| <= s/2 with the stored s.
 */
export function quantize(x: Float32Array, R: number, n: number, D: number, s: QuantScheme, valid?: Uint8Array): PackedBlock {
  if (x.length !== R * n * D) throw new Error(`quantize: ${x.length} values, expected ${R} x ${n} x ${D}`);
  const { units, groupsPerUnit } = groupLayout(s, R, n, D);
  const nGroups = units * groupsPerUnit;
  const lo = new Float32Array(nGroups).fill(Infinity);
  const hi = new Float32Array(nGroups).fill(-Infinity);
  const gid = groupIdFn(s, n, D);
  // ranges over valid tokens
  for (let r = 0; r < R; r++) {
    for (let t = 0; t < n; t++) {
      if (valid && !valid[r * n + t]) continue;
      const base = (r * n + t) * D;
      for (let d = 0; d < D; d++) {
        const g = gid(r, t, d);
        const v = x[base + d];
        if (v < lo[g]) lo[g] = v;
        if (v > hi[g]) hi[g] = v;
      }
    }
  }
  // scales (and zero points)
  const half = 2 ** (s.bits - 1);
  const qmax = s.symmetric ? half - 1 : 2 ** s.bits - 1;
  let zeros: Float32Array | null = null as Float32Array | null;
  let scales: Float32Array = new Float32Array(nGroups);
  if (s.symmetric) {
    for (let g = 0; g < nGroups; g++) scales[g] = lo[g] > hi[g] ? 0 : Math.max(Math.abs(lo[g]), Math.abs(hi[g])) / qmax;
  } else {
    zeros = new Float32Array(nGroups);
    for (let g = 0; g < nGroups; g++) zeros[g] = lo[g] > hi[g] ? 0 : lo[g];
    if (s.metaBits === 16) zeros = roundHalf(zeros, 'down');
    for (let g = 0; g < nGroups; g++) scales[g] = lo[g] > hi[g] ? 0 : (hi[g] - zeros[g]) / qmax;
  }
  for (let g = 0; g < nGroups; g++) if (!(scales[g] > 0)) scales[g] = 1; // an empty or constant group
  if (s.metaBits === 16) scales = roundHalf(scales, 'up');
  // codes
  const codes = new Uint8Array(R * n * D);
  const cmax = 2 ** s.bits - 1;
  for (let r = 0; r < R; r++) {
    for (let t = 0; t < n; t++) {
      const base = (r * n + t) * D;
      for (let d = 0; d < D; d++) {
        const g = gid(r, t, d);
        const q = s.symmetric ? Math.round(x[base + d] / scales[g]) + half : Math.round((x[base + d] - zeros![g]) / scales[g]);
        codes[base + d] = q < 0 ? 0 : q > cmax ? cmax : q;
      }
    }
  }
  return { R, n, D, codes: packCodes(codes, s.bits), meta: packMeta(scales, zeros, groupsPerUnit, s.metaBits) };
}

/** Per-element bound |x - x^| <= s/2 of a packed block, as the stored scales give it. [R, n, D] */
export function elementErrorBounds(b: PackedBlock, s: QuantScheme): Float32Array {
  const { units, groupsPerUnit } = groupLayout(s, b.R, b.n, b.D);
  const { scales } = unpackMeta(b.meta, units, groupsPerUnit, s.symmetric, s.metaBits);
  const gid = groupIdFn(s, b.n, b.D);
  const out = new Float32Array(b.R * b.n * b.D);
  for (let r = 0; r < b.R; r++) {
    for (let t = 0; t < b.n; t++) for (let d = 0; d < b.D; d++) out[(r * b.n + t) * b.D + d] = scales[gid(r, t, d)] / 2;
  }
  return out;
}

/** Dequantize a packed block to x^ [R, n, D] (lesson 3). */
export function dequantize(b: PackedBlock, s: QuantScheme, out: Float32Array = new Float32Array(b.R * b.n * b.D)): Float32Array {
  const { R, n, D } = b;
  const { units, groupsPerUnit } = groupLayout(s, R, n, D);
  const { scales, zeros } = unpackMeta(b.meta, units, groupsPerUnit, s.symmetric, s.metaBits);
  const codes = unpackCodes(b.codes, s.bits);
  const half = 2 ** (s.bits - 1);
  if (s.granularity === 'channel') {
    const tg = s.tokenGroup;
    const nb = Math.ceil(n / tg);
    for (let r = 0; r < R; r++) {
      for (let t = 0; t < n; t++) {
        const base = (r * n + t) * D;
        const gbase = (r * nb + Math.floor(t / tg)) * D;
        for (let d = 0; d < D; d++) {
          const c = codes[base + d];
          out[base + d] = zeros ? zeros[gbase + d] + c * scales[gbase + d] : (c - half) * scales[gbase + d];
        }
      }
    }
    return out;
  }
  // 'tensor' and 'token': contiguous runs of groupSize (or all) elements share a group
  const run = s.granularity === 'tensor' ? R * n * D : s.groupSize;
  for (let g = 0, i = 0; i < R * n * D; g++) {
    const sc = scales[g];
    const end = i + run;
    if (zeros) for (const z = zeros[g]; i < end; i++) out[i] = z + codes[i] * sc;
    else for (; i < end; i++) out[i] = (codes[i] - half) * sc;
  }
  return out;
}
