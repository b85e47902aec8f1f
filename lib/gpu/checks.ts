// Kernel checks for the captured path (lesson 2's "correct before fast"): every WGSL kernel of
// kernels.ts runs alone on random inputs of random (small) shapes and is compared with the
// same computation written as plain tfjs ops. Runs wherever WebGPU does: on SwiftShader in CI,
// on the H200 for the committed record.

import * as tf from '@tensorflow/tfjs-core';

import { bf16ToF32, f32ToBf16 } from '../formats/dtype';
import { Rng } from '../generate/sampling';
import type { GpuContext } from './device';
import {
  argmaxKernel,
  embedKernel,
  PREVIOUS_PICK,
  MATMUL_TILE,
  MATMUL_TILE_SHARED,
  MATMUL_TILE_SHARED_UNSPLIT,
  matmulKernel,
  pagedAttentionKernel,
  ropeRowPairs,
  type MatmulSpec,
  type MatmulTile,
  type WeightFormat,
} from './kernels';
import { ropeInvFreq } from '../model/llama';
import { packBf16, ropeCosSin, ropeHalfTables } from './llama';

/** One kernel's verdict. */
export interface KernelCheck {
  kernel: string;
  /** the shape it ran at, in words */
  shape: string;
  maxAbsError: number;
  tolerance: number;
  ok: boolean;
}

const STORAGE = 0x80;
const COPY_DST = 0x8;
const COPY_SRC = 0x4;
const UNIFORM = 0x40;
const MAP_READ = 0x1;

// ---- a tiny harness: one kernel, its buffers, one dispatch, read one buffer back

type Binding = Float32Array | Uint32Array | { size: number } | undefined;

async function runKernel(
  ctx: GpuContext,
  code: string,
  bindings: Record<number, Binding>,
  workgroups: number | [number, number],
  readBinding: number,
): Promise<Float32Array | Uint32Array> {
  const d = ctx.device;
  const pipeline = d.createComputePipeline({ layout: 'auto', compute: { module: d.createShaderModule({ code }), entryPoint: 'main' } });
  const buffers: GPUBuffer[] = [];
  const entries: GPUBindGroupEntry[] = [];
  let readSize = 0;
  let readBuf: GPUBuffer | null = null;
  let readAsU32 = false;
  for (const [k, v] of Object.entries(bindings)) {
    if (v === undefined) continue;
    const binding = Number(k);
    const size = 'size' in v && !(v instanceof Float32Array) && !(v instanceof Uint32Array) ? v.size : (v as Float32Array).byteLength;
    const padded = Math.max(16, Math.ceil(size / 16) * 16);
    const usage = (binding === 0 && code.includes('var<uniform>') ? UNIFORM : STORAGE) | COPY_DST | COPY_SRC;
    const buf = d.createBuffer({ size: padded, usage });
    if (v instanceof Float32Array || v instanceof Uint32Array) d.queue.writeBuffer(buf, 0, v.buffer, v.byteOffset, v.byteLength);
    buffers.push(buf);
    entries.push({ binding, resource: { buffer: buf } });
    if (binding === readBinding) {
      readBuf = buf;
      readSize = size;
      readAsU32 = v instanceof Uint32Array;
    }
  }
  const bindGroup = d.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  const staging = d.createBuffer({ size: Math.max(16, Math.ceil(readSize / 16) * 16), usage: MAP_READ | COPY_DST });
  const enc = d.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  const [wx, wy] = typeof workgroups === 'number' ? [workgroups, 1] : workgroups;
  pass.dispatchWorkgroups(wx, wy);
  pass.end();
  enc.copyBufferToBuffer(readBuf!, 0, staging, 0, Math.ceil(readSize / 4) * 4);
  d.queue.submit([enc.finish()]);
  await staging.mapAsync(MAP_READ);
  const raw = staging.getMappedRange().slice(0, readSize);
  staging.unmap();
  for (const b of [...buffers, staging]) b.destroy();
  if (ctx.errors.length > 0) throw new Error(`GPU error in a kernel check: ${ctx.errors[0]}`);
  return readAsU32 ? new Uint32Array(raw) : new Float32Array(raw);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function verdict(kernel: string, shape: string, err: number, tolerance: number): KernelCheck {
  return { kernel, shape, maxAbsError: err, tolerance, ok: err <= tolerance };
}

// bf16-rounded copy (what the packed weights hold)
const roundBf16 = (x: Float32Array): Float32Array => bf16ToF32(f32ToBf16(x));

// attention workgroups checked beside the default one
const ATTENTION_CHECK_WGS = [16, 32, 64];

// every matmul tile, named as the checks print them
const MATMUL_TILES = [
  ['', MATMUL_TILE],
  [' shared', MATMUL_TILE_SHARED_UNSPLIT],
  [' shared split-K', MATMUL_TILE_SHARED],
] as const;

/** Options of checkKernels. */
export interface CheckKernelsOptions {
  seed?: number;
  /** shape cases per kernel (default 2) */
  cases?: number;
  /** keep shapes small (SwiftShader); default true */
  small?: boolean;
  onCheck?: (c: KernelCheck) => void;
}

/**
 * Run every captured-path kernel against its plain tfjs op chain on random shapes (seeded).
 * tfjs runs on whatever backend is current (cpu or wasm in the tests).
 */
export async function checkKernels(ctx: GpuContext, options: CheckKernelsOptions = {}): Promise<KernelCheck[]> {
  const gen = new Rng(options.seed ?? 1);
  const rng = () => gen.next();
  const rand = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (rng() * 2 - 1) * scale);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
  const small = options.small ?? true;
  const out: KernelCheck[] = [];
  const push = (c: KernelCheck) => {
    out.push(c);
    options.onCheck?.(c);
  };
  const sg = ctx.info.subgroups32;
  for (let c = 0; c < (options.cases ?? 2); c++) {
    // ---- matmuls: every epilogue, both weight formats, with and without the norm prologue
    // (the decode tile and the shared-memory one)
    for (const [tileName, tile] of MATMUL_TILES) {
      for (const format of ['f32', 'bf16'] as WeightFormat[]) {
        for (const epilogue of ['store', 'residual', 'siluMul'] as MatmulSpec['epilogue'][]) {
          const K = pick(small ? [32, 48, 64, 96] : [256, 384, 432, 1024]); // (432: a K of 16-wide chunks on the shared tile)
          const R = (epilogue === 'siluMul' ? Math.max(8, tile.rows) : 4) * pick(small ? [3, 8, 13] : [64, 96, 300]); // (siluMul: whole (gate, up) pairs per workgroup)
          const N = pick(tile.kind === 'shared' ? [1, 20, 37, 70] : [1, 3, 5, 9, 20]); // (the shared tile: several tiles of 32 tokens)
          const norm = epilogue !== 'residual';
          const spec: MatmulSpec = {
            K,
            R,
            format,
            norm: norm ? { eps: 1e-5 } : undefined,
            rows: c === 1 && epilogue === 'store' ? 'logitRows' : 'tokens',
            epilogue,
            subgroups32: sg,
            tile,
          };
          const W = rand(R * K, 0.2);
          const X = rand(N * K);
          const gain = rand(K, 1);
          const Y0 = rand(N * (epilogue === 'siluMul' ? R / 2 : R));
          const M = spec.rows === 'logitRows' ? Math.max(1, N - 1) : N;
          const rows = Uint32Array.from({ length: M + tile.tokens }, (_, i) => (i < M ? (i * 7 + 1) % N : 0));
          const got = await runKernel(
            ctx,
            matmulKernel(spec),
            {
              0: new Uint32Array([N, M, 0, 0]),
              1: format === 'f32' ? W : packBf16(W),
              2: X,
              3: Y0.slice(),
              ...(norm ? { 4: gain } : {}),
              ...(spec.rows === 'logitRows' ? { 5: rows } : {}),
            },
            [Math.ceil(R / tile.rows), Math.ceil(M / tile.tokens)],
            3,
          );
          const want = tf.tidy(() => {
            const w = tf.tensor2d(format === 'f32' ? W : roundBf16(W), [R, K]);
            let x: tf.Tensor2D = tf.tensor2d(X, [N, K]);
            if (spec.rows === 'logitRows') x = tf.gather(x, tf.tensor1d(Array.from(rows.subarray(0, M)), 'int32'));
            if (norm) x = tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), 1, true), 1e-5))), tf.tensor1d(gain));
            const y = tf.matMul(x, w, false, true); // [M, R]
            if (epilogue === 'residual') return tf.add(tf.tensor2d(Y0, [N, R]), y);
            if (epilogue === 'store') return y;
            const pairs = tf.reshape(y, [M, R / 2, 2]); // interleaved (gate, up) rows
            const [g, u] = tf.split(pairs, 2, 2);
            return tf.reshape(tf.mul(tf.mul(g, tf.sigmoid(g)), u), [M, R / 2]);
          });
          const w = await want.data(); // async: webgpu cannot read synchronously in Node
          want.dispose();
          const rowsOut = spec.rows === 'logitRows' ? M : N;
          const width = epilogue === 'siluMul' ? R / 2 : R;
          // fp32 rounding grows with K and with the outputs' size (siluMul multiplies two dot products)
          const size = Array.from(w, Math.abs).reduce((a, v) => Math.max(a, v), 1); // (not a spread: the shared tile's cases hold ~300k outputs)
          push(
            verdict(
              `matmul${tileName} ${epilogue}${norm ? ' + rmsnorm' : ''}${spec.rows === 'logitRows' ? ' (row gather)' : ''}, ${format}`,
              `N=${rowsOut} K=${K} R=${R}`,
              maxAbsDiff(got.subarray(0, rowsOut * width), w),
              1e-5 * Math.max(1, Math.sqrt(K) / 8) * size,
            ),
          );
        }
      }
    }

    // ---- paged: the qkv matmul with its RoPE + store epilogue, then attention, over a shuffled block table
    const Hkv = pick([1, 2]);
    const H = Hkv * pick([1, 3]);
    const D = c === 0 ? 32 : pick(small ? [16, 32] : [64, 128]); // (the first case fits every tile)
    const blockSize = pick([2, 4]);
    const maxPos = 32;
    const maxBlocks = maxPos / blockSize;
    const B = 2;
    const numBlocks = B * maxBlocks;
    const perm = Array.from({ length: numBlocks }, (_, i) => i).sort(() => rng() - 0.5);
    const table = Uint32Array.from(perm);
    const lens = [c === 0 ? 17 : pick([3, 9, 17]), pick([1, 6, 12])]; // (17: two chunks of a 16-thread workgroup)
    // every token of both sequences in one step (a prefill), token-major
    const tokens: [number, number][] = [];
    lens.forEach((n, b) => {
      for (let p = 0; p < n; p++) tokens.push([b, p]);
    });
    const N = tokens.length;
    const W = (H + 2 * Hkv) * D;
    const K = pick(small ? [32, 64] : [256, 384]);
    const format: WeightFormat = c % 2 === 0 ? 'f32' : 'bf16';
    const Wqkv = rand(W * K, 0.2);
    const X = rand(N * K);
    const gain = rand(K, 1);
    const meta = Uint32Array.from(tokens.flat());
    const half = D / 2;
    const invFreq = ropeInvFreq(D, 10000);
    const { cos, sin } = ropeHalfTables(maxPos, invFreq);
    const spec = { H, Hkv, D, blockSize, maxBlocks };
    const poolSize = numBlocks * blockSize * Hkv * D;
    const mmSpec: MatmulSpec = {
      K,
      R: W,
      format,
      norm: { eps: 1e-5 },
      rows: 'tokens',
      epilogue: 'rope',
      rope: { ...spec, metaAt: 0, tableAt: meta.length, maxPositions: maxPos },
      subgroups32: sg,
    };
    const wRows = ropeRowPairs(Wqkv, spec, K);
    const wStored = format === 'f32' ? wRows : packBf16(wRows);
    const cosSin = ropeCosSin(maxPos, invFreq);
    const runTile = (tile: MatmulTile, attentionWg?: number) =>
      runQkvAttention(ctx, matmulKernel({ ...mmSpec, tile }), pagedAttentionKernel(spec, attentionWg), {
        W: wStored,
        X,
        gain,
        meta,
        table,
        cosSin,
        poolSize,
        N,
        H,
        D,
        R: W,
        tile,
      });
    // reference: plain tfjs
    const scale = Math.fround(1 / Math.sqrt(D));
    const refT = tf.tidy(() => {
      const w = tf.tensor2d(format === 'f32' ? Wqkv : roundBf16(Wqkv), [W, K]);
      let xn: tf.Tensor2D = tf.tensor2d(X, [N, K]);
      xn = tf.mul(tf.mul(xn, tf.rsqrt(tf.add(tf.mean(tf.square(xn), 1, true), 1e-5))), tf.tensor1d(gain));
      const x = tf.reshape(tf.matMul(xn, w, false, true), [N, H + 2 * Hkv, D]);
      const pos = tf.tensor1d(
        Array.from(tokens, ([, p]) => p),
        'int32',
      );
      const c = tf.gather(tf.tensor2d(cos, [maxPos, half]), pos); // [N, D/2]
      const s = tf.gather(tf.tensor2d(sin, [maxPos, half]), pos);
      const cc = tf.expandDims(tf.concat([c, c], 1), 1); // [N, 1, D]
      const ss = tf.expandDims(tf.concat([s, s], 1), 1);
      const [x1, x2] = tf.split(x, 2, 2);
      const rotated = tf.concat([tf.neg(x2), x1], 2);
      const roped = tf.add(tf.mul(x, cc), tf.mul(rotated, ss)); // [N, H+2Hkv, D]
      const q = tf.mul(tf.slice(roped, [0, 0, 0], [N, H, D]), scale); // [N, H, D]
      const k = tf.slice(roped, [0, H, 0], [N, Hkv, D]);
      const v = tf.slice(x, [0, H + Hkv, 0], [N, Hkv, D]);
      // causal attention within each sequence
      const outs: tf.Tensor[] = [];
      let start = 0;
      lens.forEach((n) => {
        const qs = tf.slice(q, [start, 0, 0], [n, H, D]);
        const ks = tf.slice(k, [start, 0, 0], [n, Hkv, D]);
        const vs = tf.slice(v, [start, 0, 0], [n, Hkv, D]);
        const rep = (t: tf.Tensor) =>
          tf.reshape(tf.tile(tf.reshape(tf.transpose(t, [1, 0, 2]), [Hkv, 1, n, D]), [1, H / Hkv, 1, 1]), [H, n, D]); // [H, n, D]
        const scores = tf.matMul(tf.transpose(qs, [1, 0, 2]), rep(ks), false, true); // [H, n, n]
        const mask = tf.tensor2d(
          Array.from({ length: n * n }, (_, i) => (i % n <= Math.floor(i / n) ? 0 : -1e9)),
          [n, n],
        );
        const p = tf.softmax(tf.add(scores, mask));
        outs.push(tf.reshape(tf.transpose(tf.matMul(p, rep(vs)), [1, 0, 2]), [n, H * D])); // [n, H*D]
        start += n;
      });
      return [tf.reshape(q, [N, H * D]), k, v, tf.concat(outs, 0)];
    });
    const [refQ, refK, refV, refAtt] = await Promise.all(refT.map((t) => t.data()));
    tf.dispose(refT);
    const ref = { q: refQ, k: refK, v: refV, att: refAtt };
    for (const [tileName, tile] of MATMUL_TILES) {
      if (D % tile.rows !== 0) continue; // (a workgroup's rows must be whole heads' pairs: the shared tile needs D >= 32)
      const rope = await runTile(tile);
      // q rotated in place, k and v at their slots
      const qGot = new Float32Array(N * H * D);
      const kGot = new Float32Array(N * Hkv * D);
      const vGot = new Float32Array(N * Hkv * D);
      tokens.forEach(([b, p], n) => {
        qGot.set(rope.qkv.subarray(n * W, n * W + H * D), n * H * D);
        const slot = table[b * maxBlocks + Math.floor(p / blockSize)] * blockSize + (p % blockSize);
        kGot.set(rope.k.subarray(slot * Hkv * D, (slot + 1) * Hkv * D), n * Hkv * D);
        vGot.set(rope.v.subarray(slot * Hkv * D, (slot + 1) * Hkv * D), n * Hkv * D);
      });
      const shape = `B=2 lengths ${lens.join(',')} K=${K} H=${H} Hkv=${Hkv} D=${D} blockSize=${blockSize}`;
      const tol = 1e-5 * Math.max(1, Math.sqrt(K) / 8);
      push(
        verdict(
          `matmul${tileName} rope + rmsnorm, paged KV store, ${format}`,
          shape,
          Math.max(maxAbsDiff(qGot, ref.q), maxAbsDiff(kGot, ref.k), maxAbsDiff(vGot, ref.v)),
          tol,
        ),
      );
      push(verdict(`paged attention (prefill + GQA), after the${tileName} qkv`, shape, maxAbsDiff(rope.att, ref.att), tol));
    }
    // attention on narrower workgroups (GpuLlama's attentionNarrowWg); 16 threads walk a
    // sequence of 17 keys in two chunks, so the online softmax's rescaling is checked too
    for (const wg of ATTENTION_CHECK_WGS) {
      if (wg % (D / 4) !== 0) continue;
      const narrow = await runTile(MATMUL_TILE, wg);
      const shape = `B=2 lengths ${lens.join(',')} H=${H} Hkv=${Hkv} D=${D} blockSize=${blockSize}, ${wg} threads`;
      push(verdict(`paged attention (prefill + GQA), ${wg}-thread workgroup`, shape, maxAbsDiff(narrow.att, ref.att), 1e-5 * Math.max(1, Math.sqrt(K) / 8)));
    }

    // ---- embed and argmax
    const V = pick([50, 300, 1000]);
    const Dm = pick([16, 40]);
    const E = rand(V * Dm);
    // the last two ids name rows 2 and 0 of the previous step's picks (PREVIOUS_PICK)
    const prev = Uint32Array.from({ length: 3 }, () => Math.floor(rng() * V));
    const given = Uint32Array.from({ length: 5 }, (_, i) => (i === 3 ? PREVIOUS_PICK | 2 : i === 4 ? PREVIOUS_PICK : Math.floor(rng() * V)) >>> 0);
    const ids = given.map((id) => (id & PREVIOUS_PICK ? prev[id & 0x7fffffff] : id));
    for (const format of ['f32', 'bf16'] as WeightFormat[]) {
      const got = await runKernel(
        ctx,
        embedKernel(Dm, format),
        { 0: format === 'f32' ? E : packBf16(E), 1: given, 2: { size: 4 * ids.length * Dm }, 3: prev },
        ids.length,
        2,
      );
      const table2 = format === 'f32' ? E : roundBf16(E);
      const want = Float32Array.from({ length: ids.length * Dm }, (_, i) => table2[ids[Math.floor(i / Dm)] * Dm + (i % Dm)]);
      push(verdict(`embed, ${format}`, `V=${V} Dm=${Dm}`, maxAbsDiff(got, want), 0));
    }
    const L = rand(3 * V);
    L[V + 7] = L[V + 9] = 5; // a tie: the first index wins, as torch.argmax
    const got = await runKernel(ctx, argmaxKernel(V), { 0: L, 1: new Uint32Array(3), 2: new Float32Array(3) }, 3, 1);
    const gotLp = await runKernel(ctx, argmaxKernel(V), { 0: L, 1: new Uint32Array(3), 2: new Float32Array(3) }, 3, 2);
    // the first index of each row's max, as torch.argmax picks (tf.argMax leaves ties to the
    // backend: its webgpu kernel picked the later index on the H200)
    const want = Array.from({ length: 3 }, (_, r) => {
      let best = 0;
      for (let v = 1; v < V; v++) if (L[r * V + v] > L[r * V + best]) best = v;
      return best;
    });
    const lpT = tf.tidy(() => {
      const l = tf.tensor2d(L, [3, V]);
      return tf.sub(tf.max(l, 1), tf.logSumExp(l, 1));
    });
    const wantLp = await lpT.data();
    lpT.dispose();
    push(verdict('argmax (ties: first index)', `M=3 V=${V}`, maxAbsDiff(got, want), 0));
    push(verdict('argmax logprob (log-sum-exp)', `M=3 V=${V}`, maxAbsDiff(gotLp, wantLp), 1e-5));
  }
  return out;
}

// the qkv matmul (RoPE epilogue: q into qkv, k and v into the pools), then paged attention
async function runQkvAttention(
  ctx: GpuContext,
  qkvCode: string,
  attCode: string,
  a: {
    W: Float32Array | Uint32Array;
    X: Float32Array;
    gain: Float32Array;
    meta: Uint32Array;
    table: Uint32Array;
    cosSin: Float32Array;
    poolSize: number;
    N: number;
    H: number;
    D: number;
    R: number;
    tile: MatmulTile;
  },
): Promise<{ qkv: Float32Array; k: Float32Array; v: Float32Array; att: Float32Array }> {
  const d = ctx.device;
  const mk = (data: Float32Array | Uint32Array | number, usage = STORAGE) => {
    const size = typeof data === 'number' ? data : data.byteLength;
    const b = d.createBuffer({ size: Math.max(16, Math.ceil(size / 16) * 16), usage: usage | COPY_DST | COPY_SRC });
    if (typeof data !== 'number') d.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
    return b;
  };
  const params = mk(new Uint32Array([a.N, a.N, 0, 0]), UNIFORM);
  const w = mk(a.W);
  const x = mk(a.X);
  const gain = mk(a.gain);
  const qkv = mk(4 * a.N * a.R);
  const kp = mk(4 * a.poolSize);
  const vp = mk(4 * a.poolSize);
  const stepWords = mk(Uint32Array.from([...a.meta, ...a.table])); // metaAt 0, tableAt meta.length
  const meta = mk(a.meta);
  const table = mk(a.table);
  const cs = mk(a.cosSin);
  const att = mk(4 * a.N * a.H * a.D);
  const pipe = (code: string) =>
    d.createComputePipeline({ layout: 'auto', compute: { module: d.createShaderModule({ code }), entryPoint: 'main' } });
  const pq = pipe(qkvCode);
  const pa = pipe(attCode);
  const bg = (p: GPUComputePipeline, bufs: Record<number, GPUBuffer>) =>
    d.createBindGroup({
      layout: p.getBindGroupLayout(0),
      entries: Object.entries(bufs).map(([binding, buffer]) => ({ binding: Number(binding), resource: { buffer } })),
    });
  const enc = d.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pq);
  pass.setBindGroup(0, bg(pq, { 0: params, 1: w, 2: x, 3: qkv, 4: gain, 6: kp, 7: vp, 8: stepWords, 9: cs }));
  pass.dispatchWorkgroups(Math.ceil(a.R / a.tile.rows), Math.ceil(a.N / a.tile.tokens));
  pass.setPipeline(pa);
  pass.setBindGroup(0, bg(pa, [qkv, kp, vp, meta, table, att]));
  pass.dispatchWorkgroups(a.N * a.H);
  pass.end();
  const read = async (src: GPUBuffer, bytes: number) => {
    const st = d.createBuffer({ size: Math.ceil(bytes / 16) * 16, usage: MAP_READ | COPY_DST });
    const e = d.createCommandEncoder();
    e.copyBufferToBuffer(src, 0, st, 0, Math.ceil(bytes / 16) * 16);
    d.queue.submit([e.finish()]);
    await st.mapAsync(MAP_READ);
    const out = new Float32Array(st.getMappedRange().slice(0, bytes));
    st.unmap();
    st.destroy();
    return out;
  };
  d.queue.submit([enc.finish()]);
  const out = {
    qkv: await read(qkv, 4 * a.N * a.R),
    k: await read(kp, 4 * a.poolSize),
    v: await read(vp, 4 * a.poolSize),
    att: await read(att, 4 * a.N * a.H * a.D),
  };
  for (const b of [params, w, x, gain, qkv, kp, vp, stepWords, meta, table, cs, att]) b.destroy();
  if (ctx.errors.length > 0) throw new Error(`GPU error in a kernel check: ${ctx.errors[0]}`);
  return out;
}
