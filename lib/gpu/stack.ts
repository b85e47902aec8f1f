// The whole layer stack of a small model in ONE dispatch (lesson 4: a draft model cheap enough to
// draft with). The captured step (kernels.ts) runs 5 dispatches a layer, each over many small
// workgroups. For a model as small as our draft (160 wide, 2 layers) each of those dispatches
// does almost nothing: a draft step of 13 dispatches is ~4.5 us of GPU time apiece, most of it
// the GPU waiting between dependent dispatches, and ~6 us of CPU time apiece to encode. Here one
// workgroup per sequence carries its tokens through every layer, keeping the activations in
// workgroup memory:
//
//   x = E[id]                                                 (the embedding row)
//   for each layer:
//     q, k, v = rmsnorm(x) @ Wqkv^T, RoPE; k, v into the pool  (GEMV, pairs rotated)
//     att     = softmax(q k^T) v over the pool (GQA)           (8 groups of 32 lanes, one head each)
//     x      += att @ Wo^T
//     act     = silu(g) * u, [g|u] = rmsnorm(x) @ Wgu^T
//     x      += act @ Wdown^T
//   X[token] = x                                              (the LM head's input)
//
// A sequence's tokens go one after another, each through all layers (a later token attends to
// the K/V an earlier one wrote). The LM head and argmax stay the step's usual dispatches, so a
// decode step of a small model is 3 dispatches. One workgroup streams each layer's weights alone,
// so this pays only for small layers (STACK_MAX_LAYER_BYTES).
//
// Weights use the captured step's own layouts (Wqkv rows in ropeRowPairs order, gate/up rows
// interleaved), packed per layer into one buffer (packStackLayers); the K and V pools of all
// layers are one buffer each, [L, slots, Hkv, D].

import type { WeightFormat } from './kernels';

/** Threads of the stack kernel's workgroup (8 groups of 32 lanes in attention). */
export const STACK_WG = 256;

/**
 * The largest layer (its weights' bytes) the stack kernel takes by default: a workgroup streams a
 * layer from L2 at about 64 bytes a clock (one SM), ~8 us for 1 MB at 2 GHz, against ~22 us for
 * 5 dispatches of a small layer on the H200. The draft's layer is 1.07 MB in fp32; the target's 6.3 MB.
 */
export const STACK_MAX_LAYER_BYTES = 2 * 1024 * 1024;

/** Sizes of the stack kernel, and where the step's inputs sit in the step buffer (word offsets). */
export interface StackSpec {
  Dm: number;
  H: number;
  Hkv: number;
  D: number;
  F: number;
  L: number;
  eps: number;
  format: WeightFormat;
  blockSize: number;
  maxBlocks: number;
  /** slots of one layer's pool: numBlocks * blockSize */
  slots: number;
  /** rows of the cos table; the sin table follows it */
  maxPositions: number;
  /** word offsets in the step buffer of params [n, m, sequences, 0], ids [N], meta [N, 2], tables [B, maxBlocks] */
  at: { params: number; ids: number; meta: number; table: number };
  /** reduce with subgroup operations (32-lane subgroups) */
  subgroups32: boolean;
}

/** Offsets (in 16-byte vectors) of one layer's parts in the packed buffer, and a layer's stride. */
export function stackLayout(s: Pick<StackSpec, 'Dm' | 'H' | 'Hkv' | 'D' | 'F' | 'format'>): {
  attnNorm: number;
  mlpNorm: number;
  qkv: number;
  o: number;
  gateUp: number;
  down: number;
  stride: number;
} {
  const { Dm, H, Hkv, D, F } = s;
  const per = s.format === 'f32' ? 4 : 8; // weights per 16-byte vector
  const attnNorm = 0;
  const mlpNorm = Dm / 4;
  const qkv = 2 * (Dm / 4);
  const o = qkv + ((H + 2 * Hkv) * D * Dm) / per;
  const gateUp = o + (Dm * H * D) / per;
  const down = gateUp + (2 * F * Dm) / per;
  const stride = down + (Dm * F) / per;
  return { attnNorm, mlpNorm, qkv, o, gateUp, down, stride };
}

/** One layer's weights in the captured step's layouts (Wqkv in ropeRowPairs order, gate/up interleaved). */
export interface StackLayerWeights {
  attnNorm: Float32Array;
  mlpNorm: Float32Array;
  wqkv: Float32Array;
  wo: Float32Array;
  wgu: Float32Array;
  wdown: Float32Array;
}

/** All layers packed for the stack kernel: norms as f32 bits, matrices f32 or bf16 pairs. [L * stride * 4] words */
export function packStackLayers(
  layers: readonly StackLayerWeights[],
  s: Pick<StackSpec, 'Dm' | 'H' | 'Hkv' | 'D' | 'F' | 'format'>,
  packBf16: (w: Float32Array) => Uint32Array,
): Uint32Array {
  const lay = stackLayout(s);
  const out = new Uint32Array(layers.length * lay.stride * 4);
  const asWords = (w: Float32Array) => new Uint32Array(w.buffer, w.byteOffset, w.length);
  const matrix = (w: Float32Array) => (s.format === 'f32' ? asWords(w) : packBf16(w));
  layers.forEach((l, i) => {
    const base = i * lay.stride * 4;
    out.set(asWords(l.attnNorm), base + 4 * lay.attnNorm);
    out.set(asWords(l.mlpNorm), base + 4 * lay.mlpNorm);
    out.set(matrix(l.wqkv), base + 4 * lay.qkv);
    out.set(matrix(l.wo), base + 4 * lay.o);
    out.set(matrix(l.wgu), base + 4 * lay.gateUp);
    out.set(matrix(l.wdown), base + 4 * lay.down);
  });
  return out;
}

/** Workgroup memory the stack kernel needs, in bytes (it must fit the device's limit). */
export function stackSharedBytes(s: Pick<StackSpec, 'Dm' | 'H' | 'D' | 'F'>): number {
  const { Dm, H, D, F } = s;
  return 4 * (Dm + Math.max(Dm, H * D) + Math.max(H * D, F)) + 16 * STACK_WG + 4 * STACK_WG + 4 * 128 + 16;
}

// f32 literal: WGSL wants a decimal point or exponent
const f = (x: number) => (Number.isInteger(x) ? `${x}.0` : x.toExponential());

// GEMV tile: LANES lanes per weight row, 4 rows per thread, so 128 rows per pass of 256 threads
const LANES = 8;
const ROWS_PER_PASS = (STACK_WG / LANES) * 4;

/**
 * The stack kernel's WGSL. Dispatch (sequences). Bindings: E [V, Dm] (embedding), LW (packed
 * layers), the step buffer (params, ids, meta, tables), cos/sin tables, the K and V pools of all
 * layers, X [N, Dm] (out: each token's last hidden state).
 */
export function stackKernel(s: StackSpec): string {
  const { Dm, H, Hkv, D, F, L, format, blockSize, maxBlocks, slots, maxPositions, at, subgroups32 } = s;
  const lay = stackLayout(s);
  const HD = H * D;
  const QKVR = (H + 2 * Hkv) * D;
  if (Dm % 8 !== 0 || HD % 8 !== 0 || F % 8 !== 0 || D % 4 !== 0) throw new Error(`stack kernel: Dm, H*D and F must be multiples of 8, D of 4`);
  if (H % Hkv !== 0) throw new Error(`stack kernel: ${H} heads do not share ${Hkv} KV heads evenly`);
  if (ROWS_PER_PASS % D !== 0 && D % ROWS_PER_PASS !== 0) throw new Error(`stack kernel: head dim ${D} must divide ${ROWS_PER_PASS}`);
  const per = format === 'f32' ? 4 : 8;
  const DV = D / 4;
  const XN = Math.max(Dm, HD) / 4; // vec4s of the normed input / attention output
  const QA = Math.max(HD, F) / 4; // vec4s of q / the MLP's activations

  // y[r] = in . W[r] over one pass of 128 rows: 8 lanes a row, 4 rows a thread; `epilogue` sees
  // the row's sum in shared `rowv[j]` (row r0 + j) after the barrier
  const gemv = (name: string, base: string, R: number, K: number, input: string, epilogue: string) => {
    const KV = K / per;
    const load = (j: number) =>
      format === 'f32'
        ? `a[${j}] += dot(bitcast<vec4f>(LW[${base} + r${j} * ${KV}u + kv]), ${input}[kv]);`
        : `{ let u = LW[${base} + r${j} * ${KV}u + kv];
          a[${j}] += dot(vec4f(bf16lo(u.x), bf16hi(u.x), bf16lo(u.y), bf16hi(u.y)), ${input}[2u * kv])
                   + dot(vec4f(bf16lo(u.z), bf16hi(u.z), bf16lo(u.w), bf16hi(u.w)), ${input}[2u * kv + 1u]); }`;
    return /* wgsl */ `
    // ---- ${name}: ${R} rows x ${K}
    for (var r0 = 0u; r0 < ${R}u; r0 += ${ROWS_PER_PASS}u) {
      {
        let rb = r0 + (lid / ${LANES}u) * 4u;
${[0, 1, 2, 3].map((j) => `        let r${j} = min(rb + ${j}u, ${R - 1}u);`).join('\n')}
        var a = vec4f(0.0);
        for (var kv = lid % ${LANES}u; kv < ${KV}u; kv += ${LANES}u) {
${[0, 1, 2, 3].map((j) => `          ${load(j)}`).join('\n')}
        }
        part[lid] = a;
      }
      workgroupBarrier();
      if (lid < ${ROWS_PER_PASS}u) {
        // row r0 + lid: thread group lid / 4 (its lanes side by side), component lid % 4
        var t = 0.0;
        for (var q = 0u; q < ${LANES}u; q++) { t += part[(lid / 4u) * ${LANES}u + q][lid % 4u]; }
        rowv[lid] = t;
      }
      workgroupBarrier();
      ${epilogue}
      workgroupBarrier();
    }`;
  };
  const norm = (gainAt: string) => /* wgsl */ `
    {
      var v = 0.0;
      if (lid < ${Dm / 4}u) { v = dot(xs[lid], xs[lid]); }
      let inv = inverseSqrt(wgSum(lid, v) / ${f(Dm)} + ${f(s.eps)});
      if (lid < ${Dm / 4}u) { xn[lid] = xs[lid] * bitcast<vec4f>(LW[${gainAt} + lid]) * inv; }
      workgroupBarrier();
    }`;
  // the lanes of a 32-lane group combined: max / sum of a scalar, sum of a vec4 (to lane 0)
  const groupOps = subgroups32
    ? /* wgsl */ `
fn groupMax(lid: u32, v: f32) -> f32 { return subgroupMax(v); }
fn groupSum(lid: u32, v: f32) -> f32 { return subgroupAdd(v); }
fn groupSum4(lid: u32, v: vec4f) -> vec4f { return subgroupAdd(v); }
fn wgSum(lid: u32, v: f32) -> f32 {
  let s = subgroupAdd(v);
  if (lid % 32u == 0u) { red[lid / 32u] = s; }
  workgroupBarrier();
  var t = 0.0;
  for (var g = 0u; g < ${STACK_WG / 32}u; g++) { t += red[g]; }
  workgroupBarrier();
  return t;
}`
    : /* wgsl */ `
fn groupMax(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  var t = red[lid & ~31u];
  for (var q = 1u; q < 32u; q++) { t = max(t, red[(lid & ~31u) + q]); }
  workgroupBarrier();
  return t;
}
fn groupSum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  var t = 0.0;
  for (var q = 0u; q < 32u; q++) { t += red[(lid & ~31u) + q]; }
  workgroupBarrier();
  return t;
}
fn groupSum4(lid: u32, v: vec4f) -> vec4f {
  part[lid] = v;
  workgroupBarrier();
  var t = vec4f(0.0);
  for (var q = 0u; q < 32u; q++) { t += part[(lid & ~31u) + q]; }
  workgroupBarrier();
  return t;
}
fn wgSum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var h = ${STACK_WG / 2}u; h > 0u; h >>= 1u) {
    if (lid < h) { red[lid] += red[lid + h]; }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}`;
  const embedLoad =
    format === 'f32' ? 'E[row + k]' : 'select(bf16lo(E[(row + k) >> 1u]), bf16hi(E[(row + k) >> 1u]), ((row + k) & 1u) == 1u)';

  return /* wgsl */ `
${subgroups32 ? 'enable subgroups;' : ''}
fn bf16lo(u: u32) -> f32 { return bitcast<f32>(u << 16u); }
fn bf16hi(u: u32) -> f32 { return bitcast<f32>(u & 0xffff0000u); }
const H: u32 = ${H}u;
const HKV: u32 = ${Hkv}u;
const D: u32 = ${D}u;
const HALF: u32 = ${D / 2}u;
const G: u32 = ${H / Hkv}u;
const POOL: u32 = ${slots * Hkv * D}u; // floats of one layer's pool
@group(0) @binding(0) var<storage, read> E: array<${format === 'f32' ? 'f32' : 'u32'}>;
@group(0) @binding(1) var<storage, read> LW: array<vec4u>;
@group(0) @binding(2) var<storage, read> stepw: array<u32>;
@group(0) @binding(3) var<storage, read> CS: array<f32>; // cos [maxPositions, D/2], then sin
@group(0) @binding(4) var<storage, read_write> Kp: array<f32>; // [L, slots, Hkv, D]
@group(0) @binding(5) var<storage, read_write> Vp: array<f32>;
@group(0) @binding(6) var<storage, read_write> X: array<f32>; // [N, Dm]
var<workgroup> xs: array<vec4f, ${Dm / 4}>; // the residual stream
var<workgroup> xn: array<vec4f, ${XN}>; // rmsnorm(x), then the attention output
var<workgroup> qa: array<vec4f, ${QA}>; // q (rotated, scaled), then silu(g) * u
var<workgroup> part: array<vec4f, ${STACK_WG}>;
var<workgroup> red: array<f32, ${STACK_WG}>;
var<workgroup> rowv: array<f32, ${ROWS_PER_PASS}>;
var<workgroup> tokSpan: array<u32, 2>; // this sequence's first token, and its count
${groupOps}

@compute @workgroup_size(${STACK_WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let seq = wg.x;
  // this sequence's tokens: those before it, and its own (a sequence's tokens are contiguous)
  let n = stepw[${at.params}u];
  var before = 0.0;
  var mine = 0.0;
  for (var t = lid; t < n; t += ${STACK_WG}u) {
    let sq = stepw[${at.meta}u + 2u * t];
    before += select(0.0, 1.0, sq < seq);
    mine += select(0.0, 1.0, sq == seq);
  }
  let first = u32(wgSum(lid, before));
  let count = u32(wgSum(lid, mine));
  if (lid == 0u) { tokSpan[0] = first; tokSpan[1] = count; }
  let t0 = workgroupUniformLoad(&tokSpan[0]);
  let tn = workgroupUniformLoad(&tokSpan[1]);
  for (var t = t0; t < t0 + tn; t++) {
    let pos = stepw[${at.meta}u + 2u * t + 1u];
    // ---- x = E[id]
    {
      let row = stepw[${at.ids}u + t] * ${Dm}u;
      for (var k = lid; k < ${Dm}u; k += ${STACK_WG}u) { xs[k / 4u][k % 4u] = ${embedLoad}; }
      workgroupBarrier();
    }
    for (var l = 0u; l < ${L}u; l++) {
      let lw = l * ${lay.stride}u;
      let kvBase = l * POOL;
${norm(`lw + ${lay.attnNorm}u`)}
${gemv(
  'q, k, v with RoPE',
  `lw + ${lay.qkv}u`,
  QKVR,
  Dm,
  'xn',
  /* wgsl */ `if (lid < ${ROWS_PER_PASS / 2}u) {
        let r = r0 + 2u * lid; // rows r, r + 1: dims i, i + D/2 of a q or k head, or two v dims
        if (r < ${(H + Hkv) * D}u) {
          let h = r / D;
          let i = (r % D) / 2u;
          let c = CS[pos * HALF + i];
          let sn = CS[${maxPositions * (D / 2)}u + pos * HALF + i];
          let x1 = rowv[2u * lid];
          let x2 = rowv[2u * lid + 1u];
          let y1 = x1 * c - x2 * sn;
          let y2 = x2 * c + x1 * sn;
          if (h < H) {
            let scale = ${f(Math.fround(1 / Math.sqrt(D)))};
            qa[(h * D + i) / 4u][(h * D + i) % 4u] = y1 * scale;
            qa[(h * D + i + HALF) / 4u][(h * D + i + HALF) % 4u] = y2 * scale;
          } else {
            let o = kvBase + (slotOf(seq, pos) * HKV + h - H) * D;
            Kp[o + i] = y1;
            Kp[o + i + HALF] = y2;
          }
        } else if (r < ${QKVR}u) {
          let o = kvBase + slotOf(seq, pos) * HKV * D + r - ${(H + Hkv) * D}u;
          Vp[o] = rowv[2u * lid];
          Vp[o + 1u] = rowv[2u * lid + 1u];
        }
      }
      storageBarrier(); // this token's k, v, read by attention below`,
)}
      // ---- attention: 8 groups of 32 lanes, one query head a group; each lane keeps an online
      // softmax over keys lane, lane + 32, ...; the lanes are combined at the end
      for (var h0 = 0u; h0 < H; h0 += ${STACK_WG / 32}u) {
        let h = min(h0 + lid / 32u, H - 1u);
        let live = h0 + lid / 32u < H;
        let kvh = h / G;
        var mRun = -3.0e38;
        var lRun = 0.0;
        var acc: array<vec4f, ${DV}>;
        if (live) {
          for (var s = lid % 32u; s <= pos; s += 32u) {
            let slot = slotOf(seq, s);
            let kb = kvBase + (slot * HKV + kvh) * D;
            var dv4 = vec4f(0.0);
            for (var d = 0u; d < ${DV}u; d++) {
              dv4 += qa[h * ${DV}u + d] * vec4f(Kp[kb + 4u * d], Kp[kb + 4u * d + 1u], Kp[kb + 4u * d + 2u], Kp[kb + 4u * d + 3u]);
            }
            let score = dv4.x + dv4.y + dv4.z + dv4.w;
            let mNew = max(mRun, score);
            let c = exp(mRun - mNew);
            let e = exp(score - mNew);
            lRun = lRun * c + e;
            for (var d = 0u; d < ${DV}u; d++) {
              acc[d] = acc[d] * c + e * vec4f(Vp[kb + 4u * d], Vp[kb + 4u * d + 1u], Vp[kb + 4u * d + 2u], Vp[kb + 4u * d + 3u]);
            }
            mRun = mNew;
          }
        }
        let mAll = groupMax(lid, mRun);
        let sc = exp(mRun - mAll);
        let lAll = groupSum(lid, lRun * sc);
        for (var d = 0u; d < ${DV}u; d++) {
          let o = groupSum4(lid, acc[d] * sc);
          if (live && lid % 32u == 0u) { xn[h * ${DV}u + d] = o / lAll; }
        }
      }
      workgroupBarrier();
${gemv('o, residual', `lw + ${lay.o}u`, Dm, HD, 'xn', `if (lid < ${ROWS_PER_PASS}u && r0 + lid < ${Dm}u) { xs[(r0 + lid) / 4u][(r0 + lid) % 4u] += rowv[lid]; }`)}
${norm(`lw + ${lay.mlpNorm}u`)}
${gemv(
  'gate, up, silu(g) * u',
  `lw + ${lay.gateUp}u`,
  2 * F,
  Dm,
  'xn',
  `if (lid < ${ROWS_PER_PASS / 2}u && r0 + 2u * lid < ${2 * F}u) {
        let g = rowv[2u * lid];
        let p = r0 / 2u + lid;
        qa[p / 4u][p % 4u] = g / (1.0 + exp(-g)) * rowv[2u * lid + 1u];
      }`,
)}
${gemv('down, residual', `lw + ${lay.down}u`, Dm, F, 'qa', `if (lid < ${ROWS_PER_PASS}u && r0 + lid < ${Dm}u) { xs[(r0 + lid) / 4u][(r0 + lid) % 4u] += rowv[lid]; }`)}
    }
    // ---- this token's hidden state, for the LM head
    for (var k = lid; k < ${Dm}u; k += ${STACK_WG}u) { X[t * ${Dm}u + k] = xs[k / 4u][k % 4u]; }
    workgroupBarrier();
  }
}

fn slotOf(seq: u32, pos: u32) -> u32 {
  return stepw[${at.table}u + seq * ${maxBlocks}u + pos / ${blockSize}u] * ${blockSize}u + pos % ${blockSize}u;
}`;
}
