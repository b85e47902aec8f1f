// Decode matmuls (AssemblyScript, wasm SIMD): the GEMV of batch 1 and the skinny GEMM of a few
// rows, x [M, K] @ W [K, N] -> out [M, N], W as tfjs holds the model's weights ([in, out]). Decode
// reads every weight once per step, so these are bound by weight bytes; the bf16 variant halves
// them and widens to f32 in registers.
//
// Loop order: k in blocks of 4 rows of W, then N in chunks that stay in L1, then the M rows: W is
// streamed front to back (4 rows at a time, contiguous, what the prefetcher likes) and read from
// memory once whatever M; out[m, :] is the accumulator. out[m, n] sums k in order, 4 at a time:
// ((out + x0 w0) + x1 w1) + ... K % 4 == 0, N % 8 == 0.

// columns of a chunk: 4 rows of W's chunk (4 x 4 KB) stay in L1 while the M rows use them
const CHUNK: i32 = 1024;

// gemv: x [M, K], w [K, N] f32 -> out [M, N]
export function gemv(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32): void {
  const rowBytes = <usize>N << 2; // of W and of out
  memory.fill(out, 0, <usize>M * rowBytes);
  for (let k = 0; k < K; k += 4) {
    const w0 = w + <usize>k * rowBytes; // W[k, :]
    for (let n0 = 0; n0 < N; n0 += CHUNK) {
      const end = <usize>min(n0 + CHUNK, N) << 2;
      for (let m = 0; m < M; m++) {
        const xk = x + (<usize>(m * K + k) << 2); // x[m, k..k+3]
        const x0 = f32x4.splat(load<f32>(xk));
        const x1 = f32x4.splat(load<f32>(xk, 4));
        const x2 = f32x4.splat(load<f32>(xk, 8));
        const x3 = f32x4.splat(load<f32>(xk, 12));
        const o = out + <usize>m * rowBytes; // out[m, :]
        for (let n = <usize>n0 << 2; n < end; n += 16) {
          const wn = w0 + n;
          let acc = f32x4.add(v128.load(o + n), f32x4.mul(x0, v128.load(wn)));
          acc = f32x4.add(acc, f32x4.mul(x1, v128.load(wn + rowBytes)));
          acc = f32x4.add(acc, f32x4.mul(x2, v128.load(wn + 2 * rowBytes)));
          acc = f32x4.add(acc, f32x4.mul(x3, v128.load(wn + 3 * rowBytes)));
          v128.store(o + n, acc);
        }
      }
    }
  }
}

// gemvBf16: x [M, K] f32, w [K, N/2] u32 of bf16 pairs -> out [M, N] f32. Within each group of 8
// columns, u32 lane j (j < 4) holds column j in its low half and column 4 + j in its high half
// (packBf16Columns in gemv's TypeScript side), so one load widens to two f32x4 of adjacent
// columns: low halves << 16, high halves & 0xffff0000.
export function gemvBf16(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32): void {
  const rowBytes = <usize>N << 2; // of out
  const wRowBytes = <usize>N << 1; // of W
  const high = i32x4.splat(0xffff0000);
  memory.fill(out, 0, <usize>M * rowBytes);
  for (let k = 0; k < K; k += 4) {
    const w0 = w + <usize>k * wRowBytes; // W[k, :]
    for (let n0 = 0; n0 < N; n0 += CHUNK) {
      const end = <usize>min(n0 + CHUNK, N) << 1; // in W's bytes
      for (let m = 0; m < M; m++) {
        const xk = x + (<usize>(m * K + k) << 2); // x[m, k..k+3]
        const x0 = f32x4.splat(load<f32>(xk));
        const x1 = f32x4.splat(load<f32>(xk, 4));
        const x2 = f32x4.splat(load<f32>(xk, 8));
        const x3 = f32x4.splat(load<f32>(xk, 12));
        const o = out + <usize>m * rowBytes; // out[m, :]
        for (let n = <usize>n0 << 1; n < end; n += 16) {
          // 8 columns: out[m, c..c+3] (low halves) and out[m, c+4..c+7] (high halves), c = n / 2
          const wn = w0 + n;
          const r0 = v128.load(wn);
          const r1 = v128.load(wn + wRowBytes);
          const r2 = v128.load(wn + 2 * wRowBytes);
          const r3 = v128.load(wn + 3 * wRowBytes);
          const oLo = o + (n << 1);
          let lo = f32x4.add(v128.load(oLo), f32x4.mul(x0, i32x4.shl(r0, 16)));
          lo = f32x4.add(lo, f32x4.mul(x1, i32x4.shl(r1, 16)));
          lo = f32x4.add(lo, f32x4.mul(x2, i32x4.shl(r2, 16)));
          lo = f32x4.add(lo, f32x4.mul(x3, i32x4.shl(r3, 16)));
          v128.store(oLo, lo);
          let hi = f32x4.add(v128.load(oLo, 16), f32x4.mul(x0, v128.and(r0, high)));
          hi = f32x4.add(hi, f32x4.mul(x1, v128.and(r1, high)));
          hi = f32x4.add(hi, f32x4.mul(x2, v128.and(r2, high)));
          hi = f32x4.add(hi, f32x4.mul(x3, v128.and(r3, high)));
          v128.store(oLo, hi, 16);
        }
      }
    }
  }
}
