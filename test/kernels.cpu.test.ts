// The CPU kernels (AssemblyScript, lib/model/kernels/assembly/): the committed generated module is
// what the sources compile to, and each kernel equals its plain tfjs op chain on random shapes.
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { wasmPV, wasmQKT, wasmAttentionAvailable } from '../lib/model/kernels/wasmAttention';
import { wasmAddRmsNorm, wasmEmbedColumns, wasmFusedAvailable, wasmRope, wasmSiluMul } from '../lib/model/kernels/wasmFused';
import {
  GEMV_MAX_ROWS,
  gemvKernelName,
  gemvWeights,
  packTilesBf16,
  packTilesF32,
  wasmGemv,
  wasmGemvAvailable,
} from '../lib/model/kernels/wasmGemv';
import { cpuKernelsFor, offsetOf, plainCpuKernelsFor, wasmFmaOf, wasmMemoryOf, type WasmBackendLike } from '../lib/model/kernels/cpu';
import { relaxedSimdSupported } from '../lib/model/kernels/relaxedSimd';
import { bf16ToF32, f32ToBf16 } from '../lib/formats/dtype';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { NoKVCache } from '../lib/kv/none';
import { ropeInvFreq, ropeTables } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';
import { ascVersion, compileKernels, GENERATED_FILE, generatedSource, KERNEL_BUILDS } from '../scripts/kernels/compile';

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
  expect(wasmAttentionAvailable(8)).toBe(true);
  expect(wasmFusedAvailable(8, 8, 8)).toBe(true);
  expect(wasmGemvAvailable(4, 8)).toBe(true);
  expect(wasmGemvAvailable(4, 12)).toBe(false); // N not a multiple of 8
});

// a seeded uniform in [lo, hi): a different stream per call site
let seed = 1;
const rand = (shape: number[], lo = -1, hi = 1) => tf.randomUniform(shape, lo, hi, 'float32', seed++);
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
// random sizes: n in [lo, hi], a multiple of `of`
let state = 12345;
const size = (lo: number, hi: number, of = 1) => {
  state = (state * 1103515245 + 12345) % 2 ** 31;
  return of * Math.ceil((lo + (state % (hi - lo + 1))) / of);
};

// fl32(a * b + c) with one rounding, as a fused multiply-add gives: a * b of two floats is exact in
// a double (24 + 24 bits); the double sum s may round, and when s then lands exactly halfway between
// two floats, the part of the sum it lost (TwoSum's error) decides the side
function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb);
  const r = Math.fround(s);
  if (err === 0 || r === s || r === 0) return r;
  const bits = new Float32Array([r]);
  const i = new Int32Array(bits.buffer);
  i[0] += (s > r) === (r > 0) ? 1 : -1; // the float next to r on s's side
  const other = bits[0];
  if (Math.abs(s - r) !== Math.abs(other - s)) return r; // not halfway: s's rounding is the sum's
  return (err > 0) === (other > r) ? other : r;
}

describe('the generated kernels module', () => {
  it('is what the AssemblyScript sources compile to (run `npm run kernels` if not)', () => {
    const fresh = generatedSource(KERNEL_BUILDS.map((b) => compileKernels(process.cwd(), b)), ascVersion());
    expect(fs.readFileSync(GENERATED_FILE, 'utf8') === fresh).toBe(true);
  }, 180_000);
});

describe('attention kernels = tf.matMul', () => {
  it('qkT and pv over random shapes, reading the first span of C slots', () => {
    const start = tf.memory().numTensors;
    for (let i = 0; i < 8; i++) {
      const [P, R, D, C] = [size(1, 6), size(1, 9), size(4, 128, 4), size(1, 150)];
      const span = size(1, C);
      tf.tidy(() => {
        const a = rand([P, R, D]) as tf.Tensor3D;
        const b = rand([P, C, D]) as tf.Tensor3D;
        const head = tf.slice(b, [0, 0, 0], [P, span, D]); // [P, span, D]
        const p = tf.softmax(rand([P, R, span], -4, 4)) as tf.Tensor3D;
        const shape = `P=${P} R=${R} D=${D} C=${C} span=${span}`;
        expect(maxDiff(wasmQKT(a, b, span), tf.matMul(a, head, false, true)), `qkT ${shape}`).toBeLessThan(1e-4);
        expect(maxDiff(wasmPV(p, b), tf.matMul(p, head)), `pv ${shape}`).toBeLessThan(1e-5);
      });
    }
    expect(tf.memory().numTensors).toBe(start);
  });
});

describe('fused kernels = their tfjs op chains', () => {
  it('addRmsNorm, with and without delta', () => {
    const start = tf.memory().numTensors;
    for (let i = 0; i < 6; i++) {
      const [N, Dm] = [size(1, 9), size(4, 300, 4)];
      const eps = 1e-5;
      tf.tidy(() => {
        const x = rand([N, Dm], -3, 3) as tf.Tensor2D;
        const delta = rand([N, Dm], -3, 3) as tf.Tensor2D;
        const w = rand([Dm], 0.5, 1.5) as tf.Tensor1D;
        for (const d of [delta, null]) {
          const sum = d ? tf.add(x, d) : x;
          const ref = tf.mul(tf.mul(sum, tf.rsqrt(tf.add(tf.mean(tf.square(sum), 1, true), eps))), w); // [N, Dm]
          const [gotSum, got] = wasmAddRmsNorm(x, d, w, eps);
          expect(maxDiff(gotSum, sum), `sum N=${N} Dm=${Dm}`).toBe(0);
          expect(maxDiff(got, ref), `norm N=${N} Dm=${Dm} delta=${!!d}`).toBeLessThan(1e-5);
        }
      });
    }
    expect(tf.memory().numTensors).toBe(start);
  });

  it('rope: q rotated token-major, k rotated and v copied head-major', () => {
    const start = tf.memory().numTensors;
    for (let i = 0; i < 6; i++) {
      const [B, T, Hkv, G, D] = [size(1, 3), size(1, 7), size(1, 3), size(1, 3), size(8, 64, 8)];
      const H = Hkv * G;
      const N = B * T;
      const positions = Int32Array.from({ length: N }, () => size(0, 500));
      const { cos, sin } = ropeTables(positions, ropeInvFreq(D, 10000)); // [N, D] each
      tf.tidy(() => {
        const qkv = rand([N, (H + 2 * Hkv) * D], -2, 2) as tf.Tensor2D;
        const c = tf.tensor2d(cos, [N, D]);
        const s = tf.tensor2d(sin, [N, D]);
        // x*cos + rotate_half(x)*sin, rotate_half([x1, x2]) = [-x2, x1]
        const ropeRef = (x: tf.Tensor3D) => {
          const [x1, x2] = tf.split(x, 2, 2);
          const rotated = tf.concat([tf.neg(x2), x1], 2);
          return tf.add(tf.mul(x, tf.expandDims(c, 1)), tf.mul(rotated, tf.expandDims(s, 1)));
        };
        const [q, k, v] = tf.split(tf.reshape(qkv, [N, H + 2 * Hkv, D]), [H, Hkv, Hkv], 1) as tf.Tensor3D[]; // [N, H|Hkv|Hkv, D]
        const headMajor = (x: tf.Tensor) => tf.transpose(tf.reshape(x, [B, T, Hkv, D]), [0, 2, 1, 3]); // [B, Hkv, T, D]
        const [gq, gk, gv] = wasmRope(qkv, c, s, B, T, H, Hkv);
        const shape = `B=${B} T=${T} H=${H} Hkv=${Hkv} D=${D}`;
        expect(gq.shape).toEqual([N, H, D]);
        expect(gk.shape).toEqual([B, Hkv, T, D]);
        expect(maxDiff(gq, ropeRef(q)), `q ${shape}`).toBeLessThan(1e-5);
        expect(maxDiff(gk, headMajor(ropeRef(k))), `k ${shape}`).toBeLessThan(1e-5);
        expect(maxDiff(gv, headMajor(v)), `v ${shape}`).toBe(0);
      });
    }
    expect(tf.memory().numTensors).toBe(start);
  });

  it("embedColumns = a column gather of the tied LM head, transposed; an id outside the vocabulary is refused by name", () => {
    const start = tf.memory().numTensors;
    for (let i = 0; i < 4; i++) {
      const [Dm, V, N] = [size(4, 64, 4), size(8, 300), size(1, 40)];
      tf.tidy(() => {
        const w = rand([Dm, V]) as tf.Tensor2D;
        const ids = tf.tensor1d(Array.from({ length: N }, (_, n) => (n * 37 + i) % V).concat(V - 1).slice(0, N), 'int32');
        const got = wasmEmbedColumns(w, ids);
        expect(got.shape).toEqual([N, Dm]);
        expect(maxDiff(got, tf.transpose(tf.gather(w, ids, 1))), `Dm=${Dm} V=${V} N=${N}`).toBe(0); // a copy: the same bits
      });
    }
    const w = rand([8, 10]) as tf.Tensor2D;
    for (const bad of [10, -1]) {
      const ids = tf.tensor1d([1, bad], 'int32');
      expect(() => wasmEmbedColumns(w, ids)).toThrow(`embedColumns: token id ${bad} is not in [0, 10)`);
      ids.dispose();
    }
    w.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });

  it('siluMul = silu(gate) * up, also where exp over- and underflows', () => {
    const start = tf.memory().numTensors;
    for (let i = 0; i < 6; i++) {
      const [N, F] = [size(1, 9), size(4, 400, 4)];
      tf.tidy(() => {
        const gu = rand([N, 2 * F], -12, 12) as tf.Tensor2D;
        const [gate, up] = tf.split(gu, 2, 1); // [N, F] each
        const ref = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up);
        const got = wasmSiluMul(gu);
        // relative to the magnitude: exp is a polynomial (relative error ~2e-7)
        expect(maxDiff(got, ref) / tf.max(tf.abs(ref)).dataSync()[0], `N=${N} F=${F}`).toBeLessThan(1e-6);
      });
    }
    const extremes = tf.tensor2d([-200, -90, -20, 0, 20, 90, 200, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 16]);
    const got = wasmSiluMul(extremes);
    const want = [-0, -0, -20 / (1 + Math.exp(20)), 0, 20 / (1 + Math.exp(-20)), 90, 200, 1 / (1 + Math.exp(-1))]; // gate lanes; up = 1
    Array.from(got.dataSync()).forEach((x, j) => expect(x, `lane ${j}`).toBeCloseTo(want[j], 6));
    tf.dispose([extremes, got]);
    expect(tf.memory().numTensors).toBe(start);
  });
});

describe('decode GEMV = tf.matMul', () => {
  const be = () => tf.backend() as unknown as WasmBackendLike;
  // out[:, n0:n1] of x @ W by one kernel, W its tiles (gemvWeights); out's other columns stay 0
  const run = (name: 'gemm' | 'gemmBf16', x: tf.Tensor2D, w: tf.Tensor2D, N: number, n0 = 0, n1 = N, kernels = cpuKernelsFor(be())): tf.Tensor2D => {
    const [M, K] = x.shape;
    const out = be().makeOutput([M, N], 'float32');
    new Float32Array(wasmMemoryOf(be()).buffer, offsetOf(be(), out), M * N).fill(0);
    kernels[name](offsetOf(be(), x), offsetOf(be(), w), offsetOf(be(), out), M, K, N, n0, n1);
    return tf.engine().makeTensorFromTensorInfo(out) as tf.Tensor2D;
  };

  // both formats at every M of a decode step, through wasmGemv and the kernels called directly
  it('f32 tiles, and bf16 tiles = tf.matMul over the bf16-rounded weights, every M in 1..8', () => {
    const start = tf.memory().numTensors;
    for (let M = 1; M <= 8; M++) {
      const [K, N] = [size(4, 300, 4), size(8, 2100, 8)];
      tf.tidy(() => {
        const x = rand([M, K]) as tf.Tensor2D;
        const w = rand([K, N]) as tf.Tensor2D;
        const values = w.dataSync() as Float32Array;
        const rounded = tf.tensor2d(bf16ToF32(f32ToBf16(values)), [K, N]); // [K, N]
        const tiles = gemvWeights(values, K, N, 'f32'); // [K/4, 4N]
        const packed = gemvWeights(values, K, N, 'bf16'); // [K/4, 2N] int32
        const shape = `M=${M} K=${K} N=${N}`;
        const tol = 1e-6 * K;
        const f32 = tf.matMul(x, w);
        const bf16 = tf.matMul(x, rounded);
        expect(maxDiff(wasmGemv(x, tiles), f32), `f32 ${shape}`).toBeLessThan(tol);
        expect(maxDiff(wasmGemv(x, packed), bf16), `bf16 ${shape}`).toBeLessThan(tol);
        expect(maxDiff(run('gemm', x, tiles, N), f32), `f32 gemm ${shape}`).toBeLessThan(tol);
        expect(maxDiff(run('gemmBf16', x, packed, N), bf16), `bf16 gemm ${shape}`).toBeLessThan(tol);
      });
    }
    expect(tf.memory().numTensors).toBe(start);
  });

  // the summation order the kernels keep, written out in JS: out[m, n] sums k in order from 0, one
  // rounding per product and per add (the plain build), or per fused multiply-add (the relaxed
  // build on a CPU with FMA: in tiles of 3 or 4 rows, so rows 0..M - M % 4 - 1, and the rest when
  // M % 4 = 3; gemv.ts, madd). The kernels' bits exactly, so the tiled layout changed no sum.
  const orderedSum = (x: Float32Array, w: Float32Array, M: number, K: number, N: number, fused = false): Float32Array => {
    const out = new Float32Array(M * N);
    for (let m = 0; m < M; m++) {
      const fma = fused && (m < M - (M % 4) || M % 4 >= 3);
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) {
          const [a, b] = [x[m * K + k], w[k * N + n]];
          acc = fma ? fmaF32(a, b, acc) : Math.fround(acc + Math.fround(a * b));
        }
        out[m * N + n] = acc;
      }
    }
    return out;
  };

  it('fmaF32 rounds once: the cases where rounding the double sum again would not', () => {
    const e = 2 ** -12;
    // (1 + e)^2 = 1 + 2e + e^2 is halfway between two floats: two roundings give 1 + 2e, the sum
    // with -(1 + 2e) gives 0, one rounding gives e^2
    expect(fmaF32(1 + e, 1 + e, -(1 + 2 * e))).toBe(e * e);
    expect(Math.fround(Math.fround((1 + e) * (1 + e)) - (1 + 2 * e))).toBe(0);
    // a double sum exactly halfway between two floats, with a tiny rest: the rest picks the side
    const half = 1 + 2 ** -24; // halfway between 1 and 1 + 2^-23
    expect(Math.fround(half)).toBe(1); // ties to even
    expect(fmaF32(2 ** -30, 2 ** -30, half)).toBe(1 + 2 ** -23); // just above halfway: up
    expect(fmaF32(-(2 ** -30), 2 ** -30, half)).toBe(1); // just below: down
    expect(fmaF32(3, 5, 7)).toBe(22);
  });

  it("every kernel gives the bits of the k-ordered sum, every M in 1..8, the models' shapes and column splits", () => {
    const start = tf.memory().numTensors;
    const builds = [{ name: 'plain', kernels: plainCpuKernelsFor(be()), fused: false }];
    const fma = wasmFmaOf(be());
    if (fma !== 'off') builds.push({ name: `relaxed (${fma})`, kernels: cpuKernelsFor(be()), fused: fma === 'fused' });
    // where relaxed SIMD runs (Node 20 through V8's flag, Node 22 and Chrome by default), the lib uses it
    expect(fma !== 'off').toBe(relaxedSimdSupported());
    // [K, N]: the target's qkv, o, gate-up and down; random-125m's qkv and down; the test models' odd sizes
    const shapes = [[384, 640], [384, 384], [384, 2048], [1024, 384], [576, 960], [1536, 576], [48, 160], [72, 48], [40, 136]];
    for (let M = 1; M <= 8; M++) {
      const [K, N] = shapes[M % shapes.length];
      tf.tidy(() => {
        const x = rand([M, K]) as tf.Tensor2D;
        const w = rand([K, N]) as tf.Tensor2D;
        const values = w.dataSync() as Float32Array;
        const xs = x.dataSync() as Float32Array;
        const tiles = gemvWeights(values, K, N, 'f32');
        const packed = gemvWeights(values, K, N, 'bf16');
        const rounded = bf16ToF32(f32ToBf16(values));
        // the thread pool's split: [0, N) in 3 shares of whole 8-column groups
        const cuts = [0, 1, 2, 3].map((i) => 8 * Math.floor((N / 8) * (i / 3)));
        for (const build of builds) {
          const want = { f32: orderedSum(xs, values, M, K, N, build.fused), bf16: orderedSum(xs, rounded, M, K, N, build.fused) };
          for (const name of ['gemm', 'gemmBf16'] as const) {
            const shape = `${build.name} ${name} M=${M} K=${K} N=${N}`;
            const w = name.endsWith('Bf16') ? packed : tiles;
            const expected = name.endsWith('Bf16') ? want.bf16 : want.f32;
            expect(Array.from(run(name, x, w, N, 0, N, build.kernels).dataSync()), shape).toEqual(Array.from(expected));
            const parts = cuts.slice(1).map((n1, i) => run(name, x, w, N, cuts[i], n1, build.kernels)); // [M, N] each, its columns only
            expect(Array.from(tf.addN(parts).dataSync()), `${shape}, split at ${cuts}`).toEqual(Array.from(expected));
          }
        }
      });
    }
    expect(tf.memory().numTensors).toBe(start);
  });

  it('gemvKernelName picks the kernel by format; steps of up to 8 rows take it', () => {
    expect(gemvKernelName(false)).toBe('gemm');
    expect(gemvKernelName(true)).toBe('gemmBf16');
    expect(GEMV_MAX_ROWS).toBeLessThanOrEqual(8);
  });

  it('the tiles: blocks of 4 rows, each tile 4 rows x one vector (4 f32 columns, 8 bf16), tiles in column order', () => {
    const w = Float32Array.from({ length: 8 * 16 }, (_, i) => i + 1); // W [8, 16], W[k, n] = 16k + n + 1: exact in bf16
    const tiles = packTilesF32(w, 8, 16);
    // block 0, tile 0: rows 0..3 of columns 0..3; tile 1: columns 4..7
    expect(Array.from(tiles.slice(0, 20))).toEqual([1, 2, 3, 4, 17, 18, 19, 20, 33, 34, 35, 36, 49, 50, 51, 52, 5, 6, 7, 8]);
    expect(tiles[64]).toBe(65); // block 1 starts at W[4, 0]
    const packed = packTilesBf16(w, 8, 16);
    const lo = Array.from(packed, (u) => bf16ToF32(Uint16Array.of(u & 0xffff))[0]);
    const hi = Array.from(packed, (u) => bf16ToF32(Uint16Array.of(u >>> 16))[0]);
    // block 0, tile 0 row 0: columns 0..3 low, 4..7 high; row 1 next; tile 1 (columns 8..15) after 4 rows
    expect(lo.slice(0, 8)).toEqual([1, 2, 3, 4, 17, 18, 19, 20]);
    expect(hi.slice(0, 8)).toEqual([5, 6, 7, 8, 21, 22, 23, 24]);
    expect(lo.slice(16, 20)).toEqual([9, 10, 11, 12]);
    expect(lo[32]).toBe(65); // block 1
    expect(() => packTilesF32(w, 8, 12)).toThrow(/multiple/);
  });
});

describe("cpuWeights 'bf16'", () => {
  it('decodes through the packed GEMV as the plain path over the rounded weights does, and frees all', async () => {
    const start = tf.memory().numTensors;
    const f32 = await loadModel('data/models/draft');
    const bf16 = await loadModel('data/models/draft', { cpuWeights: 'bf16' });
    expect(bf16.weights.layers[0].packed).toBeDefined();
    const prompt = [5, 17, 99, 3, 250, 7, 42, 8, 61];
    const next = [11, 12, 13];
    // cached decode: one row per step, the bf16 GEMV; naive: the whole prefix (> GEMV_MAX_ROWS rows), XNNPACK
    expect(prompt.length).toBeGreaterThan(GEMV_MAX_ROWS);
    const cache = new ContiguousKVCache(bf16.kvShape, 1);
    bf16.forward([prompt], cache).dispose();
    for (let i = 0; i < next.length; i++) {
      const decoded = bf16.forward([[next[i]]], cache);
      const naive = bf16.forward([[...prompt, ...next.slice(0, i + 1)]], new NoKVCache(bf16.kvShape, 1));
      const exact = f32.forward([[...prompt, ...next.slice(0, i + 1)]], new NoKVCache(f32.kvShape, 1));
      expect(maxDiff(decoded, naive), `step ${i}: packed GEMV vs rounded weights`).toBeLessThan(1e-4);
      // bf16 rounding moves the logits, a little
      const moved = maxDiff(decoded, exact);
      expect(moved).toBeGreaterThan(0);
      expect(moved).toBeLessThan(0.5);
      tf.dispose([decoded, naive, exact]);
    }
    cache.dispose();
    f32.dispose();
    bf16.dispose();
    expect(tf.memory().numTensors).toBe(start);
  }, 60_000);
});

