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
  // activations, GEMV partials and row sums, reductions (and the vec4 ones without subgroups)
  return 4 * (Dm + Math.max(Dm, H * D) + Math.max(H * D, F)) + 4 * PART + 4 * STACK_WG + 4 * STACK_WG + 16 * STACK_WG + 16;
}

// f32 literal: WGSL wants a decimal point or exponent
const f = (x: number) => (Number.isInteger(x) ? `${x}.0` : x.toExponential());

// the GEMV's partial sums: rows of a pass x lanes (at most 8 rows a thread, 256 rows a pass)
const PART = 2048;
// weight loads each thread keeps in flight in a GEMV pass
const LOADS = 40;

/**
 * How a GEMV of R rows x K splits over the workgroup: `lanes` threads a row (each reading every
 * lanes-th weight vector of it), `rows` rows a thread, so rows x K / 4 (or / 8) loads a thread, all
 * issued before any is used; `pass` rows a pass. One workgroup is bound by how many loads it keeps
 * in flight, not by bandwidth, so the fewer round trips to memory the better.
 */
export function stackGemvTile(R: number, K: number, format: WeightFormat): { lanes: number; perLane: number; rows: number; pass: number } {
  const KV = K / (format === 'f32' ? 4 : 8);
  const lanes = KV <= 48 ? 8 : 16;
  const perLane = Math.ceil(KV / lanes);
  const groups = STACK_WG / lanes;
  const rows = Math.max(1, Math.min(PART / STACK_WG, Math.floor(LOADS / perLane), Math.ceil(R / groups)));
  return { lanes, perLane, rows, pass: groups * rows };
}

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
  if (Dm % 8 !== 0 || HD % 8 !== 0 || F % 8 !== 0 || D % 8 !== 0) throw new Error(`stack kernel: Dm, H*D, F and D must be multiples of 8`);
  if (H % Hkv !== 0) throw new Error(`stack kernel: ${H} heads do not share ${Hkv} KV heads evenly`);
  const per = format === 'f32' ? 4 : 8;
  const DV = D / 4;
  const dv = [...Array(DV).keys()];
  const XN = Math.max(Dm, HD) / 4; // vec4s of the normed input / attention output
  const QA = Math.max(HD, F) / 4; // vec4s of q / the MLP's activations
  const maxPass = Math.max(...[[QKVR, Dm], [Dm, HD], [2 * F, Dm], [Dm, F]].map(([R, K]) => stackGemvTile(R, K, format).pass));

  // y[r] = in . W[r], a pass of `pass` rows at a time: every weight load of the pass first, then
  // the dot products, the lanes' sums added through shared memory; `epilogue(pass)` sees the
  // row's sum in rowv[j] (row r0 + j, j < pass) after the barrier
  const gemv = (name: string, base: string, R: number, K: number, input: string, epilogue: (pass: number) => string) => {
    const KV = K / per;
    const t = stackGemvTile(R, K, format);
    const js = [...Array(t.rows).keys()];
    const is = [...Array(t.perLane).keys()];
    const kv = (i: number) => `lane + ${i * t.lanes}u`;
    const loads = js.flatMap((j) => is.map((i) => `        let w${j}_${i} = LW[${base} + min(r0 + rg * ${t.rows}u + ${j}u, ${R - 1}u) * ${KV}u + min(${kv(i)}, ${KV - 1}u)];`));
    const dot = (j: number, i: number) =>
      format === 'f32'
        ? `dot(bitcast<vec4f>(w${j}_${i}), ${input}[min(${kv(i)}, ${KV - 1}u)])`
        : `dot(vec4f(bf16lo(w${j}_${i}.x), bf16hi(w${j}_${i}.x), bf16lo(w${j}_${i}.y), bf16hi(w${j}_${i}.y)), ${input}[2u * min(${kv(i)}, ${KV - 1}u)])
                 + dot(vec4f(bf16lo(w${j}_${i}.z), bf16hi(w${j}_${i}.z), bf16lo(w${j}_${i}.w), bf16hi(w${j}_${i}.w)), ${input}[2u * min(${kv(i)}, ${KV - 1}u) + 1u])`;
    const ragged = KV % t.lanes !== 0; // the last load of some lanes is past the row: masked
    const term = (j: number, i: number) => (ragged && i === t.perLane - 1 ? `select(0.0, ${dot(j, i)}, ${kv(i)} < ${KV}u)` : dot(j, i));
    return /* wgsl */ `
    // ---- ${name}: ${R} rows x ${K}; ${t.lanes} lanes a row, ${t.rows} rows a thread, ${t.pass} rows a pass
    for (var r0 = 0u; r0 < ${R}u; r0 += ${t.pass}u) {
      {
        let rg = lid / ${t.lanes}u;
        let lane = lid % ${t.lanes}u;
${loads.join('\n')}
${js.map((j) => `        part[(rg * ${t.rows}u + ${j}u) * ${t.lanes}u + lane] = ${is.map((i) => term(j, i)).join('\n          + ')};`).join('\n')}
      }
      workgroupBarrier();
      if (lid < ${t.pass}u) {
        var t = 0.0;
        for (var q = 0u; q < ${t.lanes}u; q++) { t += part[lid * ${t.lanes}u + q]; }
        rowv[lid] = t;
      }
      workgroupBarrier();
      ${epilogue(t.pass)}
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
var<workgroup> part4: array<vec4f, ${STACK_WG}>;
fn groupSum4(lid: u32, v: vec4f) -> vec4f {
  part4[lid] = v;
  workgroupBarrier();
  var t = vec4f(0.0);
  for (var q = 0u; q < 32u; q++) { t += part4[(lid & ~31u) + q]; }
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
  const residual = (pass: number) => `if (lid < ${pass}u && r0 + lid < ${Dm}u) { xs[(r0 + lid) / 4u][(r0 + lid) % 4u] += rowv[lid]; }`;
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
@group(0) @binding(4) var<storage, read_write> Kp: array<vec4f>; // [L, slots, Hkv, D]
@group(0) @binding(5) var<storage, read_write> Vp: array<vec4f>;
@group(0) @binding(6) var<storage, read_write> X: array<f32>; // [N, Dm]
var<workgroup> xs: array<vec4f, ${Dm / 4}>; // the residual stream
var<workgroup> xn: array<vec4f, ${XN}>; // rmsnorm(x), then the attention output
var<workgroup> qa: array<vec4f, ${QA}>; // q (rotated, scaled), then silu(g) * u
var<workgroup> part: array<f32, ${PART}>; // a GEMV pass's partial sums [rows][lanes]
var<workgroup> red: array<f32, ${STACK_WG}>;
var<workgroup> rowv: array<f32, ${maxPass}>; // a GEMV pass's row sums
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
  (pass) => /* wgsl */ `if (lid < ${pass / 2}u) {
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
            Kp[(o + i) / 4u][(o + i) % 4u] = y1;
            Kp[(o + i + HALF) / 4u][(o + i + HALF) % 4u] = y2;
          }
        } else if (r < ${QKVR}u) {
          let o = kvBase + slotOf(seq, pos) * HKV * D + r - ${(H + Hkv) * D}u;
          Vp[o / 4u][o % 4u] = rowv[2u * lid];
          Vp[(o + 1u) / 4u][(o + 1u) % 4u] = rowv[2u * lid + 1u];
        }
      }
      storageBarrier(); // this token's k, v, read by attention below`,
)}
      // ---- attention: 8 groups of 32 lanes, one query head a group; each lane keeps an online
      // softmax over keys lane, lane + 32, ... (a key's K and V rows loaded together); the
      // lanes are combined at the end
      for (var h0 = 0u; h0 < H; h0 += ${STACK_WG / 32}u) {
        let h = min(h0 + lid / 32u, H - 1u);
        let live = h0 + lid / 32u < H;
        let kvh = h / G;
${dv.map((d) => `        let q${d} = qa[h * ${DV}u + ${d}u];`).join('\n')}
        var mRun = -3.0e38;
        var lRun = 0.0;
${dv.map((d) => `        var acc${d} = vec4f(0.0);`).join('\n')}
        if (live) {
          for (var s = lid % 32u; s <= pos; s += 32u) {
            let kb = (kvBase + (slotOf(seq, s) * HKV + kvh) * D) / 4u;
${dv.map((d) => `            let k${d} = Kp[kb + ${d}u];\n            let v${d} = Vp[kb + ${d}u];`).join('\n')}
            let dv4 = ${dv.map((d) => `q${d} * k${d}`).join(' + ')};
            let score = dv4.x + dv4.y + dv4.z + dv4.w;
            let mNew = max(mRun, score);
            let c = exp(mRun - mNew);
            let e = exp(score - mNew);
            lRun = lRun * c + e;
${dv.map((d) => `            acc${d} = acc${d} * c + e * v${d};`).join('\n')}
            mRun = mNew;
          }
        }
        let mAll = groupMax(lid, mRun);
        let sc = exp(mRun - mAll);
        let lAll = groupSum(lid, lRun * sc);
${dv.map((d) => `        let o${d} = groupSum4(lid, acc${d} * sc);`).join('\n')}
        if (live && lid % 32u == 0u) {
${dv.map((d) => `          xn[h * ${DV}u + ${d}u] = o${d} / lAll;`).join('\n')}
        }
      }
      workgroupBarrier();
${gemv('o, residual', `lw + ${lay.o}u`, Dm, HD, 'xn', residual)}
${norm(`lw + ${lay.mlpNorm}u`)}
${gemv(
  'gate, up, silu(g) * u',
  `lw + ${lay.gateUp}u`,
  2 * F,
  Dm,
  'xn',
  (pass) => `if (lid < ${pass / 2}u && r0 + 2u * lid < ${2 * F}u) {
        let g = rowv[2u * lid];
        let p = r0 / 2u + lid;
        qa[p / 4u][p % 4u] = g / (1.0 + exp(-g)) * rowv[2u * lid + 1u];
      }`,
)}
${gemv('down, residual', `lw + ${lay.down}u`, Dm, F, 'qa', residual)}
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
