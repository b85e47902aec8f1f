// Decode matmuls (AssemblyScript, wasm SIMD): the GEMV of batch 1 and the skinny GEMM of a few
// rows, x [M, K] @ W [K, N] -> out [M, N], W as tfjs holds the model's weights ([in, out]). Decode
// reads every weight once per step, so these are bound by weight bytes; the bf16 variant halves
// them and widens to f32 in registers.
//
// Two loops over the same sums: gemv/gemvBf16 stream W (best at 1-2 rows, where the step reads
// bytes), gemm/gemmBf16 below hold a tile of 4 rows x 8 columns in registers (best at more rows,
// where it computes); wasmGemv.ts picks one by M. Both give the same bits.
//
// gemv's loop order: k in blocks of 4 rows of W, then N in chunks that stay in L1, then the M rows: W is
// streamed front to back (4 rows at a time, contiguous, what the prefetcher likes) and read from
// memory once whatever M; out[m, :] is the accumulator. out[m, n] sums k in order, 4 at a time:
// ((out + x0 w0) + x1 w1) + ... K % 4 == 0, N % 8 == 0. Each call computes the columns [n0, n1)
// (multiples of 8): threads.ts splits a GEMV by columns across threads; one thread takes [0, N).

// columns of a chunk: 4 rows of W's chunk (4 x 4 KB) stay in L1 while the M rows use them
const CHUNK: i32 = 1024;

// gemv: x [M, K], w [K, N] f32 -> out[:, n0:n1] of [M, N]. Rows go two at a time (each W vector
// loaded once for both), then the odd one alone.
export function gemv(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  const rowBytes = <usize>N << 2; // of W and of out
  zeroColumns(out, M, rowBytes, n0, n1);
  for (let k = 0; k < K; k += 4) {
    const w0 = w + <usize>k * rowBytes; // W[k, :]
    for (let c0 = n0; c0 < n1; c0 += CHUNK) {
      const start = <usize>c0 << 2;
      const end = <usize>min(c0 + CHUNK, n1) << 2;
      let m = 0;
      for (; m + 2 <= M; m += 2) {
        const xa = x + (<usize>(m * K + k) << 2); // x[m, k..k+3]
        const xb = xa + (<usize>K << 2); // x[m + 1, k..k+3]
        const a0 = f32x4.splat(load<f32>(xa));
        const a1 = f32x4.splat(load<f32>(xa, 4));
        const a2 = f32x4.splat(load<f32>(xa, 8));
        const a3 = f32x4.splat(load<f32>(xa, 12));
        const b0 = f32x4.splat(load<f32>(xb));
        const b1 = f32x4.splat(load<f32>(xb, 4));
        const b2 = f32x4.splat(load<f32>(xb, 8));
        const b3 = f32x4.splat(load<f32>(xb, 12));
        const oa = out + <usize>m * rowBytes; // out[m, :]
        const ob = oa + rowBytes; // out[m + 1, :]
        for (let n = start; n < end; n += 16) {
          const wn = w0 + n;
          const r0 = v128.load(wn);
          const r1 = v128.load(wn + rowBytes);
          const r2 = v128.load(wn + 2 * rowBytes);
          const r3 = v128.load(wn + 3 * rowBytes);
          v128.store(oa + n, madd4(v128.load(oa + n), a0, a1, a2, a3, r0, r1, r2, r3));
          v128.store(ob + n, madd4(v128.load(ob + n), b0, b1, b2, b3, r0, r1, r2, r3));
        }
      }
      if (m < M) {
        const xa = x + (<usize>(m * K + k) << 2); // x[m, k..k+3]
        const a0 = f32x4.splat(load<f32>(xa));
        const a1 = f32x4.splat(load<f32>(xa, 4));
        const a2 = f32x4.splat(load<f32>(xa, 8));
        const a3 = f32x4.splat(load<f32>(xa, 12));
        const oa = out + <usize>m * rowBytes; // out[m, :]
        for (let n = start; n < end; n += 16) {
          const wn = w0 + n;
          const r0 = v128.load(wn);
          const r1 = v128.load(wn + rowBytes);
          const r2 = v128.load(wn + 2 * rowBytes);
          const r3 = v128.load(wn + 3 * rowBytes);
          v128.store(oa + n, madd4(v128.load(oa + n), a0, a1, a2, a3, r0, r1, r2, r3));
        }
      }
    }
  }
}

// out[m, n0:n1] = 0 for every row m
@inline
function zeroColumns(out: usize, M: i32, rowBytes: usize, n0: i32, n1: i32): void {
  for (let m = 0; m < M; m++) memory.fill(out + <usize>m * rowBytes + (<usize>n0 << 2), 0, <usize>(n1 - n0) << 2);
}

// ((acc + x0 w0) + x1 w1) + x2 w2) + x3 w3, lane by lane
@inline
function madd4(acc: v128, x0: v128, x1: v128, x2: v128, x3: v128, w0: v128, w1: v128, w2: v128, w3: v128): v128 {
  acc = f32x4.add(acc, f32x4.mul(x0, w0));
  acc = f32x4.add(acc, f32x4.mul(x1, w1));
  acc = f32x4.add(acc, f32x4.mul(x2, w2));
  return f32x4.add(acc, f32x4.mul(x3, w3));
}

// gemvBf16: x [M, K] f32, w [K, N/2] u32 of bf16 pairs -> out[:, n0:n1] of [M, N] f32. Within each group of 8
// columns, u32 lane j (j < 4) holds column j in its low half and column 4 + j in its high half
// (packBf16Columns in wasmGemv.ts), so one load widens to two f32x4 of adjacent columns: low
// halves << 16, high halves & 0xffff0000. Rows two at a time, as gemv.
export function gemvBf16(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  const rowBytes = <usize>N << 2; // of out
  const wRowBytes = <usize>N << 1; // of W
  const high = i32x4.splat(0xffff0000);
  zeroColumns(out, M, rowBytes, n0, n1);
  for (let k = 0; k < K; k += 4) {
    const w0 = w + <usize>k * wRowBytes; // W[k, :]
    for (let c0 = n0; c0 < n1; c0 += CHUNK) {
      const start = <usize>c0 << 1; // in W's bytes
      const end = <usize>min(c0 + CHUNK, n1) << 1;
      for (let m = 0; m < M; m += 2) {
        const two = m + 1 < M;
        const xa = x + (<usize>(m * K + k) << 2); // x[m, k..k+3]
        const xb = two ? xa + (<usize>K << 2) : xa; // x[m + 1, k..k+3] (row m again when M is odd)
        const a0 = f32x4.splat(load<f32>(xa));
        const a1 = f32x4.splat(load<f32>(xa, 4));
        const a2 = f32x4.splat(load<f32>(xa, 8));
        const a3 = f32x4.splat(load<f32>(xa, 12));
        const b0 = f32x4.splat(load<f32>(xb));
        const b1 = f32x4.splat(load<f32>(xb, 4));
        const b2 = f32x4.splat(load<f32>(xb, 8));
        const b3 = f32x4.splat(load<f32>(xb, 12));
        const oa = out + <usize>m * rowBytes; // out[m, :]
        const ob = two ? oa + rowBytes : oa;
        for (let n = start; n < end; n += 16) {
          // 8 columns c..c+7, c = n / 2: out[., c..c+3] from the low halves, out[., c+4..c+7] the high
          const wn = w0 + n;
          const r0 = v128.load(wn);
          const r1 = v128.load(wn + wRowBytes);
          const r2 = v128.load(wn + 2 * wRowBytes);
          const r3 = v128.load(wn + 3 * wRowBytes);
          const l0 = i32x4.shl(r0, 16);
          const l1 = i32x4.shl(r1, 16);
          const l2 = i32x4.shl(r2, 16);
          const l3 = i32x4.shl(r3, 16);
          const h0 = v128.and(r0, high);
          const h1 = v128.and(r1, high);
          const h2 = v128.and(r2, high);
          const h3 = v128.and(r3, high);
          const c = n << 1; // out's byte offset of column c
          if (two) {
            v128.store(ob + c, madd4(v128.load(ob + c), b0, b1, b2, b3, l0, l1, l2, l3));
            v128.store(ob + c, madd4(v128.load(ob + c, 16), b0, b1, b2, b3, h0, h1, h2, h3), 16);
          }
          v128.store(oa + c, madd4(v128.load(oa + c), a0, a1, a2, a3, l0, l1, l2, l3));
          v128.store(oa + c, madd4(v128.load(oa + c, 16), a0, a1, a2, a3, h0, h1, h2, h3), 16);
        }
      }
    }
  }
}

// ---- skinny GEMM: 3 to 8 rows, register-blocked
//
// With a few rows, the streaming loop above is bound by its out[m, :] read-modify-writes and
// compute, not by W's bytes. Here a tile of 4 rows x 8 columns sums in 8 registers: each W vector
// load serves 4 rows, each x[m, k] splat 8 columns, and out is touched once per block of KB rows of
// W. Loop order: column chunks of CHUNK_COLS, then blocks of KB rows of W, then 8-column tiles,
// then groups of 4 rows (the second group of an 8-row step reads the tile's W from L1 again).
// out[m, n] still sums k in order from 0 (a tile starts from out's partial sum), so both kernels
// give the same bits for any M and any split of the columns.

// a block of KB rows x CHUNK_COLS columns of W (32 KB f32) stays in L1 while every tile and row
// group uses it. Measured on the target at M = 4 and 8 (2-core Zen 1, medians of 9 interleaved
// runs, machine shared): 32 x 256 at or near the best of 8-128 rows x 64-1024 columns; a k loop
// unrolled by 2 ran 25% slower (register pressure), so it stays rolled.
const KB: i32 = 32;
const CHUNK_COLS: i32 = 256;

// gemm: x [M, K], w [K, N] f32 -> out[:, n0:n1] of [M, N], as gemv
export function gemm(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  tiled(x, w, out, M, K, N, n0, n1, false);
}

// gemmBf16: x [M, K] f32, w [K, N/2] u32 of bf16 pairs (packBf16Columns) -> out[:, n0:n1], as gemvBf16
export function gemmBf16(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  tiled(x, w, out, M, K, N, n0, n1, true);
}

@inline
function tiled(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32, bf16: bool): void {
  const rowBytes = <usize>N << 2; // of out
  const wRowBytes = bf16 ? <usize>N << 1 : rowBytes; // of W
  const xRowBytes = <usize>K << 2;
  zeroColumns(out, M, rowBytes, n0, n1);
  for (let c0 = n0; c0 < n1; c0 += CHUNK_COLS) {
    const c1 = min(c0 + CHUNK_COLS, n1);
    for (let k0 = 0; k0 < K; k0 += KB) {
      const kn = min(KB, K - k0);
      const wk = w + <usize>k0 * wRowBytes; // W[k0, :]
      const xk = x + (<usize>k0 << 2); // x[0, k0]
      for (let c = c0; c < c1; c += 8) {
        const wc = wk + (bf16 ? <usize>c << 1 : <usize>c << 2); // W[k0, c..c+7]
        const oc = out + (<usize>c << 2); // out[0, c]
        let m = 0;
        for (; m + 4 <= M; m += 4) tile(xk, wc, oc, m, kn, rowBytes, wRowBytes, xRowBytes, 4, bf16);
        const left = M - m;
        if (left == 3) tile(xk, wc, oc, m, kn, rowBytes, wRowBytes, xRowBytes, 3, bf16);
        else if (left == 2) tile(xk, wc, oc, m, kn, rowBytes, wRowBytes, xRowBytes, 2, bf16);
        else if (left == 1) tile(xk, wc, oc, m, kn, rowBytes, wRowBytes, xRowBytes, 1, bf16);
      }
    }
  }
}

// out[m:m+R, c..c+7] += x[m:m+R, k0:k0+kn] @ W[k0:k0+kn, c..c+7] for R = 1..4 rows (a constant:
// the unused rows compile away). Accumulators: a (row m), b, c, d; 0 = columns c..c+3, 1 = c+4..c+7.
@inline
function tile(x: usize, w: usize, out: usize, m: i32, kn: i32, rowBytes: usize, wRowBytes: usize, xRowBytes: usize, R: i32, bf16: bool): void {
  const o = out + <usize>m * rowBytes; // out[m, c]
  let a0 = v128.load(o), a1 = v128.load(o, 16);
  let b0 = a0, b1 = a1, c0 = a0, c1 = a1, d0 = a0, d1 = a1;
  if (R > 1) { b0 = v128.load(o + rowBytes); b1 = v128.load(o + rowBytes, 16); }
  if (R > 2) { c0 = v128.load(o + 2 * rowBytes); c1 = v128.load(o + 2 * rowBytes, 16); }
  if (R > 3) { d0 = v128.load(o + 3 * rowBytes); d1 = v128.load(o + 3 * rowBytes, 16); }
  const high = i32x4.splat(0xffff0000);
  let wp = w; // W[k, c..c+7]
  let xp = x + <usize>m * xRowBytes; // x[m, k]
  const xEnd = xp + (<usize>kn << 2);
  for (; xp < xEnd; xp += 4) {
    let w0: v128, w1: v128;
    if (bf16) {
      const r = v128.load(wp); // 8 bf16: columns c..c+3 in the low halves, c+4..c+7 in the high
      w0 = i32x4.shl(r, 16);
      w1 = v128.and(r, high);
    } else {
      w0 = v128.load(wp);
      w1 = v128.load(wp, 16);
    }
    const xa = v128.load32_splat(xp); // x[m, k] in every lane
    a0 = f32x4.add(a0, f32x4.mul(xa, w0));
    a1 = f32x4.add(a1, f32x4.mul(xa, w1));
    if (R > 1) {
      const xb = v128.load32_splat(xp + xRowBytes); // x[m + 1, k]
      b0 = f32x4.add(b0, f32x4.mul(xb, w0));
      b1 = f32x4.add(b1, f32x4.mul(xb, w1));
    }
    if (R > 2) {
      const xc = v128.load32_splat(xp + 2 * xRowBytes);
      c0 = f32x4.add(c0, f32x4.mul(xc, w0));
      c1 = f32x4.add(c1, f32x4.mul(xc, w1));
    }
    if (R > 3) {
      const xd = v128.load32_splat(xp + 3 * xRowBytes);
      d0 = f32x4.add(d0, f32x4.mul(xd, w0));
      d1 = f32x4.add(d1, f32x4.mul(xd, w1));
    }
    wp += wRowBytes;
  }
  v128.store(o, a0);
  v128.store(o, a1, 16);
  if (R > 1) { v128.store(o + rowBytes, b0); v128.store(o + rowBytes, b1, 16); }
  if (R > 2) { v128.store(o + 2 * rowBytes, c0); v128.store(o + 2 * rowBytes, c1, 16); }
  if (R > 3) { v128.store(o + 3 * rowBytes, d0); v128.store(o + 3 * rowBytes, d1, 16); }
}
