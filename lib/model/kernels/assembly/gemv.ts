// Decode matmuls (AssemblyScript, wasm SIMD): the GEMV of batch 1 and the skinny GEMM of a few
// rows, x [M, K] @ W [K, N] -> out [M, N], W as tfjs holds the model's weights ([in, out]). Decode
// reads every weight once per step, so these are bound by weight bytes; the bf16 variant halves
// them and widens to f32 in registers.
//
// Loop order: k in blocks of 4 rows of W, then N in chunks that stay in L1, then the M rows: W is
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
