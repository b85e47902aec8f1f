// WGSL kernels of the captured decode step (lesson 2, "eager vs captured"). One function per
// kernel, each returning the shader's source for fixed sizes (sizes are compile-time constants,
// so loops have known bounds). A Llama layer is five dispatches:
//
//   q, k, v = rmsnorm(x) @ Wqkv^T, then RoPE      matmul, norm prologue, RoPE epilogue: q into
//                                                   qkv [N, H*D], k and v into the paged pool
//   att     = softmax(q k^T) v over the pool       paged attention (GQA)          [N, H*D]
//   x      += att @ Wo^T                           matmul, residual epilogue      [N, Dm]
//   act     = silu(g) * u, [g|u] = rmsnorm(x) @ Wgu^T  matmul, norm + SiLU·mul     [N, F]
//   x      += act @ Wdown^T                        matmul, residual epilogue      [N, Dm]
//
// plus embed (gather) before the layers and rmsnorm(x) @ lm_head^T, argmax after: 5L + 3
// dispatches a step (capturedDispatches). Weights are HF's [out, in] rows, fp32 or bf16 packed two per u32.
//
// Shape letters as in lib/model/config.ts; N = tokens in the step, M = rows that get logits.

/** Dispatches of one captured step of an L-layer model: 5 per layer, plus embed, lm head, argmax. */
export function capturedDispatches(numLayers: number): number {
  return 5 * numLayers + 3;
}

/** How weights are stored: fp32, or bf16 packed two per u32 (element 2i in the low half). */
export type WeightFormat = 'f32' | 'bf16';

/** The step's sizes, written once per step into one uniform buffer that every kernel reads. */
export const STEP_PARAMS_WGSL = /* wgsl */ `
struct StepParams {
  n: u32,      // tokens in the step
  m: u32,      // rows that get logits
  pad0: u32,
  pad1: u32,
}`;

// f32 literal: WGSL wants a decimal point or exponent
const f = (x: number) => (Number.isInteger(x) ? `${x}.0` : x.toExponential());

// bf16 halves of a u32 as f32: the low half is element 2i, the high half 2i+1
const BF16_HELPERS = /* wgsl */ `
fn bf16lo(u: u32) -> f32 { return bitcast<f32>(u << 16u); }
fn bf16hi(u: u32) -> f32 { return bitcast<f32>(u & 0xffff0000u); }`;

// ---- embed: x[n] = E[ids[n]]

/** An input id with this bit set names a row of the previous step's argmax instead (PREVIOUS_PICK | row). */
export const PREVIOUS_PICK = 0x80000000;

/**
 * Gather embedding rows. An id with the PREVIOUS_PICK bit is the previous step's argmax of that
 * logits row, read from its `next` buffer: a step can be encoded before the previous one's picks
 * are read back (the engine's overlapped steps). Dispatch (N). E [V, Dm], ids [N], prev [M] -> x [N, Dm]
 */
export function embedKernel(Dm: number, format: WeightFormat): string {
  const load = format === 'f32' ? 'E[i]' : 'select(bf16lo(E[i >> 1u]), bf16hi(E[i >> 1u]), (i & 1u) == 1u)';
  return /* wgsl */ `
${BF16_HELPERS}
const DM: u32 = ${Dm}u;
@group(0) @binding(0) var<storage, read> E: array<${format === 'f32' ? 'f32' : 'u32'}>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<storage, read> prev: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = wg.x;
  let raw = ids[n];
  let id = select(raw, prev[raw & 0x7fffffffu], (raw & ${PREVIOUS_PICK >>> 0}u) != 0u);
  let row = id * DM;
  for (var k = lid; k < DM; k += 64u) {
    let i = row + k;
    X[n * DM + k] = ${load};
  }
}`;
}

// ---- matmul: y[m, r] = a(m) . W[r], the decode GEMV / skinny GEMM

/** What a matmul does around its dot products. */
export interface MatmulSpec {
  /** K: input width (a multiple of 8) */
  K: number;
  /** R: weight rows (output width, or 2F for the SiLU pair) */
  R: number;
  format: WeightFormat;
  /** rmsnorm the input row first (gain [K]); eps */
  norm?: { eps: number };
  /** the input rows: 'tokens' (m < n, row m) or 'logitRows' (m < params.m, row rows[m]) */
  rows: 'tokens' | 'logitRows';
  /**
   * store y; add y into the output (residual); SiLU·mul of interleaved (gate, up) row pairs; or
   * RoPE (the qkv projection, rows laid out by ropeRowPairs): q rotated and scaled into Y, k
   * rotated and v as they are into the layer's pool slots
   */
  epilogue: 'store' | 'residual' | 'siluMul' | 'rope';
  /** with epilogue 'rope': the attention sizes and where the step's inputs sit */
  rope?: RopeEpilogue;
  /** the workgroup's tile (default MATMUL_TILE) */
  tile?: MatmulTile;
  /** reduce with subgroupAdd (32-lane subgroups) instead of a shared-memory tree */
  subgroups32: boolean;
}

/** Weight loads each lane keeps in flight in the matmul's inner loop. */
const UNROLL = 4;

/** A matmul workgroup's tile: weight rows, lanes per row, and tokens sharing each weight load. */
export interface LaneTile {
  kind: 'lanes';
  rows: number;
  lanes: number;
  tokens: number;
}

/** A shared-memory tile: weight rows x tokens, each thread computing 4 x 4 of them (sharedMatmulKernel). */
export interface SharedTile {
  kind: 'shared';
  rows: number;
  tokens: number;
  /** slices of K walked side by side (each by its own threads, summed at the end); default 1 */
  splitK?: number;
}

/** How a matmul's workgroups split the work; the grid is (ceil(R / rows), ceil(M / tokens)) for both kinds. */
export type MatmulTile = LaneTile | SharedTile;

/** The decode tile: 4 rows x 4 tokens, many small workgroups (a step of a few tokens). */
export const MATMUL_TILE: LaneTile = { kind: 'lanes', rows: 4, lanes: 32, tokens: 4 };

/**
 * The shared-memory tile, for steps of many tokens (prefill chunks, big batches): 32 weight rows x
 * 32 tokens per workgroup. Each weight and input value is read from memory once per workgroup
 * (staged in shared memory), and each thread's 4 x 4 results take 16 multiply-adds per two vec4
 * reads of shared memory, where the decode tile loads a weight vector per 4 tokens. K is split in
 * 4 slices of 64 threads each (256 a workgroup): a step of 64-256 tokens has only a few hundred
 * of these workgroups, and one slice walking all of K left the GPU waiting on each chunk's loads.
 * bench:captured's tileCompare on the H200 (1f50a24, whole-step GPU time): 2 x 64 tokens 554 us
 * split in 4 against 700 on the decode tile (the unsplit tile: 815 in the same run), 4 x 64
 * tokens 829 against 958 unsplit. Needs sharedTileBytes = 24 KB of workgroup memory (GpuLlama falls
 * back to MATMUL_TILE_SHARED_UNSPLIT on a device with less; WebGPU promises 16 KB).
 */
export const MATMUL_TILE_SHARED: SharedTile = { kind: 'shared', rows: 32, tokens: 32, splitK: 4 };

/** The shared-memory tile with K walked by one slice of 64 threads (14 KB of workgroup memory). */
export const MATMUL_TILE_SHARED_UNSPLIT: SharedTile = { kind: 'shared', rows: 32, tokens: 32, splitK: 1 };

/**
 * The most workgroup memory the shared tile's kernel declares, for any K: per slice a chunk of
 * inputs and of weights (xs, ws) and the norm's partial sums (ssp), plus the results (res). The
 * chunk is 16 deep when K is split, else up to 32 (sharedMatmulKernel).
 */
export function sharedTileBytes(tile: SharedTile): number {
  const S = tile.splitK ?? 1;
  const BK = S > 1 ? 16 : 32;
  const staging = 16 * S * BK * (tile.tokens / 4 + 1 + tile.rows / 4 + 1); // vec4f, with a vec4 of padding per k row
  return staging + 4 * S * tile.tokens * (BK / 4) + 4 * tile.rows * tile.tokens;
}

/**
 * y = a @ W^T with W [R, K] (HF's [out, in]): `lanes` lanes per weight row stream the row in
 * vec4 (fp32) or 8-value (bf16) loads; each lane keeps `tokens` accumulators (vec4s of 4), so
 * one read of the weights serves a tile of tokens. Tiles of tokens run side by side (the grid's
 * y), so a batch of 32 keeps many workgroups busy rather than looping. A norm prologue costs
 * nothing extra: sum(x^2) comes from the same loads, and
 * rmsnorm(x) . w = (x * gain) . w * rsqrt(mean(x^2) + eps).
 * Dispatch (ceil(R / rows), ceil(M / tokens)). X [rows, K], gain [K], rows [M] -> Y [M, R] (or [M, R/2] for siluMul)
 */
export function matmulKernel(s: MatmulSpec): string {
  const { K, R, format, norm, epilogue, subgroups32 } = s;
  const tile = s.tile ?? MATMUL_TILE;
  if (tile.kind === 'shared') return sharedMatmulKernel(s, tile);
  const TM = tile.tokens;
  const RPW = tile.rows;
  const L = tile.lanes;
  const TV = TM / 4; // accumulator vec4s per lane
  if (K % 8 !== 0) throw new Error(`matmul: K = ${K} must be a multiple of 8`);
  if (TM % 4 !== 0 || RPW % 2 !== 0 || (subgroups32 && L !== 32))
    throw new Error(`matmul: tile ${JSON.stringify(tile)} needs tokens a multiple of 4, even rows (and 32 lanes with subgroups)`);
  if (epilogue === 'siluMul' && R % RPW !== 0) throw new Error(`matmul: 2F = ${R} must be a multiple of ${RPW}`);
  const count = s.rows === 'tokens' ? 'P.n' : 'P.m';
  const rowOf = s.rows === 'tokens' ? 'm' : 'rows[m]';
  const js = [...Array(TM).keys()];
  const vs = [...Array(TV).keys()];
  const acc = (j: number) => `acc${j >> 2}[${j & 3}]`;
  const ssj = (j: number) => `ss${j >> 2}[${j & 3}]`;
  // the dot products of one weight load with the tile's token rows
  const body =
    format === 'f32'
      ? `let w = W[r * KV + kx];${norm ? '\n          let g = gain[kx];' : ''}
${js.map((j) => dotLines(j, norm ? 'w * g' : 'w', ['X[xr' + j + ' * KV + kx]'], !!norm)).join('\n')}`
      : `let u = W[r * KV + kx];
          let w0 = vec4f(bf16lo(u.x), bf16hi(u.x), bf16lo(u.y), bf16hi(u.y));
          let w1 = vec4f(bf16lo(u.z), bf16hi(u.z), bf16lo(u.w), bf16hi(u.w));${
            norm ? '\n          let g0 = gain[2u * kx];\n          let g1 = gain[2u * kx + 1u];' : ''
          }
${js.map((j) => dotLines(j, norm ? ['w0 * g0', 'w1 * g1'] : ['w0', 'w1'], [`X[xr${j} * K4 + 2u * kx]`, `X[xr${j} * K4 + 2u * kx + 1u]`], !!norm)).join('\n')}`;
  const sums = [...vs.map((v) => `acc${v}`), ...(norm ? vs.map((v) => `ss${v}`) : [])];
  // each row's lanes summed: by subgroupAdd, or a tree in shared memory, one vec4 at a time
  const reduce = subgroups32
    ? sums.map((a) => `${a} = subgroupAdd(${a});`).join('\n    ')
    : sums
        .map(
          (a) => `part[lid] = ${a};
    workgroupBarrier();
    for (var h = ${L / 2}u; h > 0u; h >>= 1u) {
      if (lane < h) { part[lid] += part[lid + h]; }
      workgroupBarrier();
    }
    ${a} = part[lid];
    workgroupBarrier();`,
        )
        .join('\n    ');
  const scale = (j: number) => (norm ? ` * inverseSqrt(${ssj(j)} / ${f(K)} + ${f(norm.eps)})` : '');
  const store = storeCode(s, tile);
  return /* wgsl */ `
${subgroups32 ? 'enable subgroups;' : ''}
${matmulBindings(s)}
${subgroups32 ? '' : `var<workgroup> part: array<vec4f, ${RPW * L}>;`}
var<workgroup> res: array<f32, ${RPW * TM}>;
@compute @workgroup_size(${RPW * L})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let lane = lid % ${L}u;
  let r = wg.x * ${RPW}u + lid / ${L}u;
  let M = ${count};
  let m0 = wg.y * ${TM}u;
  {
${sums.map((a) => `    var ${a} = vec4f(0.0);`).join('\n')}
    // input rows of this tile (a row past M repeats row 0 and is never stored)
${js.map((j) => `    let xr${j} = select(0u, ${rowOf.replace('m', `(m0 + ${j}u)`)}, m0 + ${j}u < M);`).join('\n')}
    if (r < R) {
      // ${UNROLL} weight loads in flight per lane, then the remainder one at a time
      var kv = lane;
      for (; kv + ${(UNROLL - 1) * L}u < KV; kv += ${UNROLL * L}u) {
${[...Array(UNROLL).keys()].map((u) => `        {\n          let kx = kv + ${u * L}u;\n          ${body}\n        }`).join('\n')}
      }
      for (; kv < KV; kv += ${L}u) {
        let kx = kv;
        ${body}
      }
    }
    ${reduce}
    if (lane == 0u) {
${js.map((j) => `      res[(lid / ${L}u) * ${TM}u + ${j}u] = ${acc(j)}${scale(j)};`).join('\n')}
    }
    workgroupBarrier();
    ${store}
  }
}`;
}

/**
 * y = a @ W^T on the shared-memory tile (MATMUL_TILE_SHARED): a workgroup computes `rows` weight
 * rows x `tokens` tokens. K is walked in chunks of BK: the workgroup copies the chunk of its token
 * rows and of its weight rows into shared memory (k-major, so a thread's 4 tokens or 4 rows are
 * one vec4), then each thread adds its 4 rows x 4 tokens from there. The next chunk's loads are
 * issued before the current chunk's math, so their latency hides behind it. The norm prologue
 * scales the inputs by the gain on the way into shared memory and sums x^2 from the same loads
 * (one partial per loading thread, added at the end). The results go through shared memory to
 * the same epilogues as the lane tiles (storeCode), each thread storing several elements.
 * Dispatch (ceil(R / rows), ceil(M / tokens)); bindings as matmulKernel's.
 */
function sharedMatmulKernel(s: MatmulSpec, tile: SharedTile): string {
  const { K, R, format, norm, epilogue } = s;
  const TR = tile.rows;
  const TT = tile.tokens;
  if (K % 16 !== 0) throw new Error(`matmul (shared tile): K = ${K} must be a multiple of 16`);
  const want = tile.splitK ?? 1;
  if (!Number.isInteger(want) || want < 1) throw new Error(`matmul: shared tile splitK must be a positive integer, got ${want}`);
  const BK = want > 1 || K % 32 !== 0 ? 16 : 32; // K per chunk
  const chunks = K / BK;
  // K slices, each walked by T threads of its own: the most up to splitK that share the chunks evenly
  let S = want;
  while (chunks % S !== 0) S--;
  const T = (TR / 4) * (TT / 4); // threads of a slice: 4 rows x 4 tokens each
  const VX = BK / 4; // vec4s of a token row in a chunk
  const VW = format === 'f32' ? BK / 4 : BK / 8; // weight vectors (vec4f, or vec4u of 8 bf16) of a row in a chunk
  const XQ = (TT * VX) / T; // input vec4s each thread loads per chunk
  const WQ = (TR * VW) / T; // weight vectors each thread loads per chunk
  if (TR % 4 !== 0 || TT % 4 !== 0 || !Number.isInteger(XQ) || !Number.isInteger(WQ) || XQ < 1 || WQ < 1 || T % VX !== 0 || T % VW !== 0)
    throw new Error(`matmul: shared tile ${JSON.stringify(tile)} does not split into whole loads per thread`);
  if (epilogue === 'siluMul' && R % TR !== 0) throw new Error(`matmul: 2F = ${R} must be a multiple of ${TR}`);
  const XS = TT / 4 + 1; // vec4 stride of a k row of xs (one vec4 of padding against bank conflicts)
  const WS = TR / 4 + 1;
  if (S > 1 && 2 * (S - 1) * T > S * BK * Math.min(XS, WS)) throw new Error(`matmul: shared tile ${JSON.stringify(tile)}: the slices' sums do not fit the staging`);
  const rowOf = s.rows === 'tokens' ? (m: string) => m : (m: string) => `rows[${m}]`;
  const xq = [...Array(XQ).keys()];
  const wq = [...Array(WQ).keys()];
  const rr = [...Array(4).keys()];
  // one chunk's loads into registers (chunk index `c`)
  const loads = (c: string) =>
    [...xq.map((q) => `xv${q} = X[xr${q} * K4 + ${c} * ${VX}u + xk];`), ...wq.map((q) => `wv${q} = W[wr${q} * KV + ${c} * ${VW}u + wk];`)].join(
      '\n      ',
    );
  // registers into this slice's shared memory: xs[k][token], ws[k][row], as vec4 components
  const put = (arr: string, stride: number, k: string, at: string, v: string) =>
    `${arr}[${S > 1 ? `${arr === 'xs' ? 'xb' : 'wb'} + ` : ''}(${k}) * ${stride}u + ${at} / 4u][${at} % 4u] = ${v};`;
  const xStore = xq
    .map((q) => {
      const x = norm ? `(xv${q} * gain[c * ${VX}u + xk])` : `xv${q}`;
      return [
        `{\n        let v = ${x};`,
        ...rr.map((i) => `        ${put('xs', XS, `4u * xk + ${i}u`, `xt${q}`, `v[${i}]`)}`),
        ...(norm ? [`        ss${q} += dot(xv${q}, xv${q});`] : []),
        '      }',
      ].join('\n');
    })
    .join('\n      ');
  const wStore = wq
    .map((q) =>
      format === 'f32'
        ? rr.map((i) => put('ws', WS, `4u * wk + ${i}u`, `wt${q}`, `wv${q}[${i}]`)).join('\n      ')
        : rr
            .flatMap((i) => [
              put('ws', WS, `8u * wk + ${2 * i}u`, `wt${q}`, `bf16lo(wv${q}[${i}])`),
              put('ws', WS, `8u * wk + ${2 * i + 1}u`, `wt${q}`, `bf16hi(wv${q}[${i}])`),
            ])
            .join('\n      '),
    )
    .join('\n      ');
  // x^2 of token 4 tt + j: the loaders' partial sums, over every slice
  const scaleOf = (j: number) =>
    norm
      ? `inverseSqrt((${[...Array(S).keys()]
          .flatMap((q) => [...Array(VX).keys()].map((v) => `ssp[${q * TT * VX}u + (4u * tt + ${j}u) * ${VX}u + ${v}u]`))
          .join(' + ')}) / ${f(K)} + ${f(norm.eps)})`
      : '1.0';
  // slices past the first leave their sums in the staging memory (rows 0-1 in xs, 2-3 in ws); the first adds them
  const sliceSums =
    S > 1
      ? `if (q > 0u) {
    let o = ((q - 1u) * ${T}u + lt) * 2u;
    xs[o] = a0;
    xs[o + 1u] = a1;
    ws[o] = a2;
    ws[o + 1u] = a3;
  }
  workgroupBarrier();
  if (q == 0u) {
    for (var p = 0u; p < ${S - 1}u; p++) {
      let o = (p * ${T}u + lt) * 2u;
      a0 += xs[o];
      a1 += xs[o + 1u];
      a2 += ws[o];
      a3 += ws[o + 1u];
    }
  }`
      : '';
  return /* wgsl */ `
${matmulBindings(s)}
var<workgroup> xs: array<vec4f, ${S * BK * XS}>; // per slice: [BK][tokens] (+ padding)
var<workgroup> ws: array<vec4f, ${S * BK * WS}>; // per slice: [BK][rows] (+ padding)
${norm ? `var<workgroup> ssp: array<f32, ${S * TT * VX}>; // partial sums of x^2 [slices][tokens][loaders]` : ''}
var<workgroup> res: array<f32, ${TR * TT}>; // [rows][tokens]
@compute @workgroup_size(${T * S})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let M = ${s.rows === 'tokens' ? 'P.n' : 'P.m'};
  let m0 = wg.y * ${TT}u;
  let q = lid / ${T}u; // this thread's slice of K: chunks q, q + ${S}, ...
  let lt = lid % ${T}u; // and its place in the slice
${S > 1 ? `  let xb = q * ${BK * XS}u; // the slice's staging
  let wb = q * ${BK * WS}u;
` : ''}  // what this thread loads: token rows xt_q and weight rows wt_q, at vector ${'`'}lt % V${'`'} of each chunk row
  let xk = lt % ${VX}u;
  let wk = lt % ${VW}u;
${xq.map((i) => `  let xt${i} = lt / ${VX}u + ${(T / VX) * i}u;\n  let xr${i} = select(0u, ${rowOf(`(m0 + xt${i})`)}, m0 + xt${i} < M); // a token past M reads row 0, never stored`).join('\n')}
${wq.map((i) => `  let wt${i} = lt / ${VW}u + ${(T / VW) * i}u;\n  let wr${i} = min(wg.x * ${TR}u + wt${i}, R - 1u);`).join('\n')}
  // what this thread computes: rows 4 tr .. 4 tr + 3, tokens 4 tt .. 4 tt + 3
  let tt = lt % ${TT / 4}u;
  let tr = lt / ${TT / 4}u;
${rr.map((i) => `  var a${i} = vec4f(0.0); // row 4 tr + ${i}, 4 tokens`).join('\n')}
${norm ? xq.map((i) => `  var ss${i} = 0.0;`).join('\n') : ''}
${xq.map((i) => `  var xv${i}: vec4f;`).join('\n')}
${wq.map((i) => `  var wv${i}: ${format === 'f32' ? 'vec4f' : 'vec4u'};`).join('\n')}
  var c = q;
  ${loads('c')}
  for (var it = 0u; it < ${chunks / S}u; it++) {
    {
      ${xStore}
      ${wStore}
    }
    workgroupBarrier();
    if (it + 1u < ${chunks / S}u) {
      ${loads(`(c + ${S}u)`)} // the next chunk's, in flight during this chunk's math
    }
    for (var k = 0u; k < ${BK}u; k++) {
      let x = xs[${S > 1 ? 'xb + ' : ''}k * ${XS}u + tt];
      let w = ws[${S > 1 ? 'wb + ' : ''}k * ${WS}u + tr];
${rr.map((i) => `      a${i} += w[${i}] * x;`).join('\n')}
    }
    workgroupBarrier();
    c += ${S}u;
  }
${norm ? xq.map((i) => `  ssp[q * ${TT * VX}u + xt${i} * ${VX}u + xk] = ss${i};`).join('\n') : ''}
  ${sliceSums}
  workgroupBarrier();
  if (q == 0u) {
${[0, 1, 2, 3].map((j) => `    let s${j} = ${scaleOf(j)};`).join('\n')}
${rr.map((i) => [0, 1, 2, 3].map((j) => `    res[(4u * tr + ${i}u) * ${TT}u + 4u * tt + ${j}u] = a${i}[${j}] * s${j};`).join('\n')).join('\n')}
  }
  workgroupBarrier();
  for (var e = lid; e < ${TR * TT}u; e += ${T * S}u) {
    ${storeCode(s, tile).replace(/\blid\b/g, 'e')}
  }
}`;
}

// Both matmul kernels' sizes and bindings: params, W (vec4 of f32, or of 8 bf16), X rows,
// Y, and what the prologue and epilogue read (gain, the logits rows, RoPE's tables and pools)
function matmulBindings(s: MatmulSpec): string {
  const { K, R, format } = s;
  return /* wgsl */ `${STEP_PARAMS_WGSL}
${BF16_HELPERS}
const K: u32 = ${K}u;
const K4: u32 = ${K / 4}u;
const KV: u32 = ${format === 'f32' ? K / 4 : K / 8}u; // weight vectors per row
const R: u32 = ${R}u;
@group(0) @binding(0) var<uniform> P: StepParams;
@group(0) @binding(1) var<storage, read> W: array<${format === 'f32' ? 'vec4f' : 'vec4u'}>;
@group(0) @binding(2) var<storage, read> X: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
${s.norm ? '@group(0) @binding(4) var<storage, read> gain: array<vec4f>;' : ''}
${s.rows === 'logitRows' ? '@group(0) @binding(5) var<storage, read> rows: array<u32>;' : ''}
${s.epilogue === 'rope' ? ropeBindings(s) : ''}`;
}

// The epilogue for the tile's result res [rows][tokens] in shared memory: thread `lid` stores
// element lid (res's row lid / tokens, token lid % tokens), or a pair's result (siluMul, RoPE)
function storeCode(s: MatmulSpec, tile: MatmulTile): string {
  const { R, epilogue } = s;
  const TM = tile.tokens;
  const RPW = tile.rows;
  if (epilogue === 'siluMul') {
    return `if (lid < ${(RPW / 2) * TM}u) {
      let p = lid / ${TM}u;
      let j = lid % ${TM}u;
      let m = m0 + j;
      if (m < M) {
        let g = res[(2u * p) * ${TM}u + j];
        let u = res[(2u * p + 1u) * ${TM}u + j];
        Y[m * ${R / 2}u + wg.x * ${RPW / 2}u + p] = g / (1.0 + exp(-g)) * u;
      }
    }`;
  }
  if (epilogue === 'rope') return ropeStore(s, R, tile);
  const write = epilogue === 'residual' ? 'Y[m * R + r2] += res[lid];' : 'Y[m * R + r2] = res[lid];';
  return `if (lid < ${RPW * TM}u) {
      let r2 = wg.x * ${RPW}u + lid / ${TM}u;
      let m = m0 + lid % ${TM}u;
      if (r2 < R && m < M) { ${write} }
    }`;
}

// acc[j] += w . x (and ss[j] += x . x for the norm), for one or two weight vectors
function dotLines(j: number, w: string | string[], x: string[], norm: boolean): string {
  const ws = Array.isArray(w) ? w : [w];
  const lines: string[] = [];
  x.forEach((xe, i) => {
    lines.push(`          let x${j}_${i} = ${xe};`);
    lines.push(`          acc${j >> 2}[${j & 3}] += dot(${ws[i]}, x${j}_${i});`);
    if (norm) lines.push(`          ss${j >> 2}[${j & 3}] += dot(x${j}_${i}, x${j}_${i});`);
  });
  return lines.join('\n');
}

// ---- the qkv matmul's RoPE epilogue

/** Where the RoPE epilogue finds its inputs: attention sizes, and the step's (seq, pos) and block tables. */
export interface RopeEpilogue extends AttentionSpec {
  /** word offsets in the bound step words of meta [N, 2] = (seq, pos) and the block tables [B, maxBlocks] */
  metaAt: number;
  tableAt: number;
  /** rows of the cos table; the sin table follows it in the same buffer */
  maxPositions: number;
}

/**
 * The row order the RoPE epilogue wants of Wqkv [(H + 2Hkv) * D, K]: within each q and k head,
 * dims i and i + D/2 (the pair RoPE rotates together) become rows 2i and 2i + 1, so a
 * workgroup's rows hold whole pairs; v rows stay as they are. Returns a new array.
 */
export function ropeRowPairs(w: Float32Array, a: Pick<AttentionSpec, 'H' | 'Hkv' | 'D'>, K: number): Float32Array {
  const { H, Hkv, D } = a;
  const out = w.slice();
  for (let h = 0; h < H + Hkv; h++) {
    for (let i = 0; i < D / 2; i++) {
      out.set(w.subarray((h * D + i) * K, (h * D + i + 1) * K), (h * D + 2 * i) * K);
      out.set(w.subarray((h * D + i + D / 2) * K, (h * D + i + D / 2 + 1) * K), (h * D + 2 * i + 1) * K);
    }
  }
  return out;
}

function ropeBindings(s: MatmulSpec): string {
  const a = s.rope!;
  return /* wgsl */ `const H: u32 = ${a.H}u;
const HKV: u32 = ${a.Hkv}u;
const D: u32 = ${a.D}u;
const HALF: u32 = ${a.D / 2}u;
@group(0) @binding(6) var<storage, read_write> Kp: array<f32>;
@group(0) @binding(7) var<storage, read_write> Vp: array<f32>;
@group(0) @binding(8) var<storage, read> stepw: array<u32>;
@group(0) @binding(9) var<storage, read> CS: array<f32>; // cos [maxPositions, D/2], then sin
fn slotOf(m: u32) -> u32 {
  let seq = stepw[${a.metaAt}u + 2u * m];
  let pos = stepw[${a.metaAt}u + 2u * m + 1u];
  return stepw[${a.tableAt}u + seq * ${a.maxBlocks}u + pos / ${a.blockSize}u] * ${a.blockSize}u + pos % ${a.blockSize}u;
}`;
}

// RoPE as HF applies it (x*cos + rotate_half(x)*sin, fp32 tables per position) on the workgroup's
// results: rows (2i, 2i+1) of a q or k head are dims (i, i + D/2). q is scaled by 1/sqrt(D) and
// stored in Y in HF's dim order; k and v go to slot table[seq][pos / blockSize] * blockSize +
// pos % blockSize of the pools [blocks * blockSize, Hkv, D]. A workgroup's rows are all q/k or
// all v (D is a multiple of its row count).
function ropeStore(s: MatmulSpec, R: number, tile: MatmulTile): string {
  const a = s.rope;
  const TM = tile.tokens;
  const RPW = tile.rows;
  if (!a || !s.norm || s.rows !== 'tokens' || a.D % RPW !== 0 || R !== (a.H + 2 * a.Hkv) * a.D) {
    throw new Error(`matmul rope: needs the attention sizes, a norm prologue, token rows, D a multiple of ${RPW} and R = (H + 2Hkv) * D`);
  }
  return /* wgsl */ `let r0 = wg.x * ${RPW}u;
    if (r0 >= (H + HKV) * D) {
      if (lid < ${RPW * TM}u) {
        let m = m0 + lid % ${TM}u;
        if (m < M) { Vp[slotOf(m) * HKV * D + r0 + lid / ${TM}u - (H + HKV) * D] = res[lid]; }
      }
    } else if (lid < ${(RPW / 2) * TM}u) {
      let p = lid / ${TM}u;
      let j = lid % ${TM}u;
      let m = m0 + j;
      if (m < M) {
        let r2 = r0 + 2u * p;
        let h = r2 / D;
        let i = (r2 % D) / 2u;
        let pos = stepw[${a.metaAt}u + 2u * m + 1u];
        let x1 = res[(2u * p) * ${TM}u + j];
        let x2 = res[(2u * p + 1u) * ${TM}u + j];
        let c = CS[pos * HALF + i];
        let sn = CS[${a.maxPositions * (a.D / 2)}u + pos * HALF + i];
        let y1 = x1 * c - x2 * sn;
        let y2 = x2 * c + x1 * sn;
        if (h < H) {
          let scale = ${f(Math.fround(1 / Math.sqrt(a.D)))};
          Y[m * R + h * D + i] = y1 * scale;
          Y[m * R + h * D + i + HALF] = y2 * scale;
        } else {
          let o = (slotOf(m) * HKV + h - H) * D;
          Kp[o + i] = y1;
          Kp[o + i + HALF] = y2;
        }
      }
    }`;
}

// ---- paged attention

/** Sizes of the attention kernels. */
export interface AttentionSpec {
  H: number;
  Hkv: number;
  D: number;
  blockSize: number;
  /** block-table row length: ceil(maxPositions / blockSize) */
  maxBlocks: number;
}

/** Threads per attention workgroup by default: one key per thread per chunk of scores. */
export const ATTENTION_WG = 256;

/**
 * Causal GQA attention for each (token, query head), reading keys and values straight from
 * the block pool through the sequence's block table (no gathered copy): token n at position
 * pos sees its sequence's positions 0..pos. Online softmax over chunks of 256 keys: each thread
 * scores one key (vec4 loads of its K row); then the values, D/4 threads per key (a vec4 of
 * dims each) and WG / (D/4) keys side by side, their partial sums added at the end.
 * `wg` threads a workgroup (a power of two, default ATTENTION_WG = 256): a narrower workgroup
 * walks a long context in more chunks, but each chunk's reductions take fewer barrier rounds and
 * more workgroups fit on the GPU at once (a step with many tokens: GpuLlama.attentionNarrowFrom).
 * Dispatch (N * H). qkv (q rotated and scaled), pools, meta, table -> O [N, H*D]
 */
export function pagedAttentionKernel(a: AttentionSpec, wg = ATTENTION_WG): string {
  const { H, Hkv, D, blockSize, maxBlocks } = a;
  const WG = wg;
  const DV = D / 4; // vec4s per head row
  if (!Number.isInteger(Math.log2(WG)) || WG > 256) throw new Error(`attention: workgroup of ${WG} threads is not a power of two up to 256`);
  if (D % 4 !== 0 || WG % DV !== 0) throw new Error(`attention: head dim ${D} must be a multiple of 4 dividing ${4 * WG}`);
  const KG = WG / DV; // keys side by side in the value phase
  return /* wgsl */ `
const H: u32 = ${H}u;
const HKV: u32 = ${Hkv}u;
const D: u32 = ${D}u;
const W: u32 = ${(H + 2 * Hkv) * D}u; // qkv row width
@group(0) @binding(0) var<storage, read> QKV: array<f32>;
@group(0) @binding(1) var<storage, read> Kp: array<vec4f>;
@group(0) @binding(2) var<storage, read> Vp: array<vec4f>;
@group(0) @binding(3) var<storage, read> tokmeta: array<u32>;
@group(0) @binding(4) var<storage, read> table: array<u32>;
const G: u32 = ${H / Hkv}u;
const DV: u32 = ${DV}u;
const KG: u32 = ${KG}u;
@group(0) @binding(5) var<storage, read_write> O: array<f32>;
var<workgroup> q: array<vec4f, ${DV}>;
var<workgroup> red: array<f32, ${WG}>;
var<workgroup> p: array<f32, ${WG}>;
var<workgroup> slots: array<u32, ${WG}>;
var<workgroup> part: array<vec4f, ${WG}>;

fn reduceMax(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var h = ${WG / 2}u; h > 0u; h >>= 1u) {
    if (lid < h) { red[lid] = max(red[lid], red[lid + h]); }
    workgroupBarrier();
  }
  let out = red[0];
  workgroupBarrier();
  return out;
}

fn reduceSum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var h = ${WG / 2}u; h > 0u; h >>= 1u) {
    if (lid < h) { red[lid] = red[lid] + red[lid + h]; }
    workgroupBarrier();
  }
  let out = red[0];
  workgroupBarrier();
  return out;
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = wg.x / H;
  let h = wg.x % H;
  let kvh = h / G;
  let seq = tokmeta[2u * n];
  let S = tokmeta[2u * n + 1u] + 1u; // keys 0..pos
  let qb = n * W + h * D;
  if (lid < DV) { q[lid] = vec4f(QKV[qb + 4u * lid], QKV[qb + 4u * lid + 1u], QKV[qb + 4u * lid + 2u], QKV[qb + 4u * lid + 3u]); }
  workgroupBarrier();
  let dv = lid % DV; // this thread's vec4 of dims in the value phase
  let kg = lid / DV; // and its key lane
  var mRun = -3.0e38;
  var lRun = 0.0;
  var acc = vec4f(0.0);
  for (var c0 = 0u; c0 < S; c0 += ${WG}u) {
    // one key per thread: its score
    let s = c0 + lid;
    var score = -3.0e38;
    if (s < S) {
      let slot = table[seq * ${maxBlocks}u + s / ${blockSize}u] * ${blockSize}u + s % ${blockSize}u;
      slots[lid] = slot;
      let kb = (slot * HKV + kvh) * DV;
      var dotv = vec4f(0.0);
      for (var d = 0u; d < DV; d++) { dotv += q[d] * Kp[kb + d]; }
      score = dotv.x + dotv.y + dotv.z + dotv.w;
    }
    let cm = reduceMax(lid, score);
    let mNew = max(mRun, cm);
    var e = 0.0;
    if (s < S) { e = exp(score - mNew); }
    p[lid] = e;
    let cs = reduceSum(lid, e); // (the barriers inside also publish p and slots)
    let rescale = exp(mRun - mNew);
    lRun = lRun * rescale + cs;
    mRun = mNew;
    acc *= rescale;
    let cn = min(${WG}u, S - c0);
    for (var t = kg; t < cn; t += KG) {
      acc += p[t] * Vp[(slots[t] * HKV + kvh) * DV + dv];
    }
    workgroupBarrier();
  }
  // add the key lanes' partial sums
  part[lid] = acc;
  workgroupBarrier();
  if (lid < DV) {
    var o = vec4f(0.0);
    for (var g = 0u; g < KG; g++) { o += part[g * DV + lid]; }
    o = o / lRun;
    let ob = n * H * D + h * D + 4u * lid;
    O[ob] = o.x;
    O[ob + 1u] = o.y;
    O[ob + 2u] = o.z;
    O[ob + 3u] = o.w;
  }
}`;
}

// ---- greedy: argmax over each logits row

/**
 * Index of the largest logit per row (the first on ties, as torch.argmax) and its log-
 * probability, -log(sum_v exp(x_v - max)): greedy decoding needs nothing else from the row, so
 * the logits never leave the GPU. Dispatch (M). logits [M, V] -> next [M], logprob [M]
 */
export function argmaxKernel(V: number): string {
  const WG = 256;
  return /* wgsl */ `
const V: u32 = ${V}u;
@group(0) @binding(0) var<storage, read> Lg: array<f32>;
@group(0) @binding(1) var<storage, read_write> next: array<u32>;
@group(0) @binding(2) var<storage, read_write> logprob: array<f32>;
var<workgroup> bv: array<f32, ${WG}>;
var<workgroup> bi: array<u32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let m = wg.x;
  var best = -3.4e38;
  var idx = 0xffffffffu;
  for (var v = lid; v < V; v += ${WG}u) {
    let x = Lg[m * V + v];
    if (x > best) { best = x; idx = v; }
  }
  bv[lid] = best;
  bi[lid] = idx;
  workgroupBarrier();
  for (var h = ${WG / 2}u; h > 0u; h >>= 1u) {
    if (lid < h) {
      let ov = bv[lid + h];
      let oi = bi[lid + h];
      if (ov > bv[lid] || (ov == bv[lid] && oi < bi[lid])) { bv[lid] = ov; bi[lid] = oi; }
    }
    workgroupBarrier();
  }
  let top = bv[0];
  let id = bi[0];
  workgroupBarrier();
  // log-sum-exp around the max
  var sum = 0.0;
  for (var v = lid; v < V; v += ${WG}u) { sum += exp(Lg[m * V + v] - top); }
  bv[lid] = sum;
  workgroupBarrier();
  for (var h = ${WG / 2}u; h > 0u; h >>= 1u) {
    if (lid < h) { bv[lid] = bv[lid] + bv[lid + h]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    next[m] = id;
    logprob[m] = -log(bv[0]);
  }
}`;
}
