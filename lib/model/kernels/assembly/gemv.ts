// Decode matmuls (AssemblyScript, wasm SIMD): the GEMV of batch 1 and the skinny GEMM of a few
// rows, x [M, K] @ W [K, N] -> out [M, N]. Decode reads every weight once per step, so these are
// bound by weight bytes; the bf16 variant halves them and widens to f32 in registers.
//
// ---- the weights: tiles
//
// W is not the model's [in, out] tensor but a copy in tiles (packTilesF32, packTilesBf16 in
// wasmGemv.ts), made once when the weights load: blocks of 4 rows of W, and within a block,
// tiles of 4 rows x one vector, each tile's 4 vectors one contiguous 64-byte run, tiles in
// column order:
//   f32   [K/4, N/4, 4, 4]  tile (b, t) row r = W[4b + r, 4t..4t+3]
//   bf16  [K/4, N/8, 4, 4]  u32 pairs: tile (b, t) row r lane j = W[4b + r, 8t + j] (low half) and
//                           W[4b + r, 8t + 4 + j] (high half)
// So the 8 columns of rows k..k+3 the loop below reads are 128 contiguous bytes (two f32 tiles)
// or 64 (one bf16 tile), where [K, N] had 4 runs of 32 (or 16) bytes a row apart, and each block
// is read front to back. A block starts where row 4b starts in [K, N] (4 rows of bytes either
// way); column c's tile sits at c x 16 bytes into it (f32) or c x 8 (bf16). Measured against the
// [K, N] layout (a step's matmuls, one thread, 2-core Zen 1, machine shared, best loop of each):
// random-125m's layers at M = 1, f32 37.6 -> 31.3 ms and bf16 38.0 -> 24.3; the target at M = 8,
// f32 16.6 -> 14.3 and bf16 15.4 -> 14.6.
//
// ---- the loop: register-blocked, every M
//
// A tile of 4 rows x 8 columns of out sums in 8 registers: each W vector load serves 4 rows, each
// x[m, k] splat 8 columns, and out is touched once per block of KB rows of W. Loop order: column
// chunks of CHUNK_COLS, then blocks of KB rows of W, then 8-column tiles, then groups of 4 rows
// (the second group of an 8-row step reads the tile's W from L1 again). out[m, n] sums k in order
// from 0 (a tile starts from out's partial sum): ((out + x0 w0) + x1 w1) + ..., one rounding per
// product and per add, or in the relaxed build one per fused multiply-add (madd below). Either
// way the same bits for any split of the columns, so for any thread count.
// K % 4 == 0, N % 8 == 0. Each call computes the columns [n0, n1) (multiples of 8): threads.ts
// splits a GEMV by columns across threads; one thread takes [0, N).
//
// Over the [K, N] layout a streaming loop (4 rows of W at a time into out[m, :], W read once
// whatever M) won at 1-2 rows. Over the tiles it tied or lost at every M (medians of interleaved
// rounds, ms, streaming / this loop): bf16 target M = 1 4.2/4.1 4.8/4.4 4.8/4.1, M = 2
// 5.4/5.1 5.8/5.1 5.8/5.1; random-125m M = 1 23.8/24.3 24.4/23.9; f32 target M = 1 6.9/5.9
// 6.4/6.0 6.9/6.8. So there is one loop: out stays in registers over KB rows of W, where the
// streaming loop read and wrote out[m, :] every 4 rows.

// KB rows of W per pass over out's chunk [M, CHUNK_COLS] (at most 32 KB, kept in cache across the
// passes); within a pass, each 4-row block's chunk is one contiguous run of CHUNK_COLS x 16 bytes
// (f32) or x 8 (bf16), read front to back: KB / 4 streams. Measured over the tiles on random-125m's
// layer matmuls (2-core Zen 1, medians of 7-9 interleaved rounds, machine shared, 3 runs): KB = 32
// at or near the best of 8-128 rows; 1024 columns ahead of 256 at every M in 1..8 (M = 1: f32 2-5%,
// bf16 10-15%) and level with 512-65536. With the [K, N] layout the best was 32 x 256; a k loop
// unrolled by 2 ran 25% slower there (register pressure), so it stays rolled.
const KB: i32 = 32;
const CHUNK_COLS: i32 = 1024;

// gemm: x [M, K], w [K/4, N/4, 4, 4] f32 tiles -> out[:, n0:n1] of [M, N]
export function gemm(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  tiled(x, w, out, M, K, N, n0, n1, false);
}

// gemmBf16: x [M, K] f32, w [K/4, N/8, 4, 4] u32 tiles of bf16 pairs -> out[:, n0:n1] of [M, N] f32.
// Lane j of a tile's row holds column j in its low half and column 4 + j in its high half, so one
// load widens to two f32x4 of adjacent columns: low halves << 16, high halves & 0xffff0000.
export function gemmBf16(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32): void {
  tiled(x, w, out, M, K, N, n0, n1, true);
}

// gemmThreads: thread `thread` of `threads` takes its share of out's columns of x @ W (gemm, or
// gemmBf16 with bf16 = 1): whole groups of 8 (the register block and whole tiles of W), as even
// as they go. threads.ts and decode.ts split every matmul this way.
export function gemmThreads(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32, bf16: i32, thread: i32, threads: i32): void {
  const groups = N >> 3;
  const n0 = share(groups, thread, threads) << 3;
  const n1 = share(groups, thread + 1, threads) << 3;
  if (n1 <= n0) return;
  if (bf16) gemmBf16(x, w, out, M, K, N, n0, n1);
  else gemm(x, w, out, M, K, N, n0, n1);
}

// where thread t's share of n items starts (thread `threads` gives n): as even as they go
export function share(n: i32, t: i32, threads: i32): i32 {
  return <i32>((<i64>n * t) / threads);
}

@inline
function tiled(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32, n0: i32, n1: i32, bf16: bool): void {
  const rowBytes = <usize>N << 2; // of out
  const blockBytes = bf16 ? <usize>N << 3 : <usize>N << 4; // of W's blocks: 4 rows
  const xRowBytes = <usize>K << 2;
  zeroColumns(out, M, rowBytes, n0, n1);
  for (let c0 = n0; c0 < n1; c0 += CHUNK_COLS) {
    const c1 = min(c0 + CHUNK_COLS, n1);
    for (let k0 = 0; k0 < K; k0 += KB) {
      const kn = min(KB, K - k0); // a multiple of 4
      const wk = w + <usize>(k0 >> 2) * blockBytes; // block W[k0..k0+3, :]
      const xk = x + (<usize>k0 << 2); // x[0, k0]
      for (let c = c0; c < c1; c += 8) {
        const wc = wk + (<usize>c << (bf16 ? 3 : 4)); // the tile(s) of W[k0..k0+3, c..c+7]
        const oc = out + (<usize>c << 2); // out[0, c]
        let m = 0;
        for (; m + 4 <= M; m += 4) tile(xk, wc, oc, m, kn, rowBytes, blockBytes, xRowBytes, 4, bf16);
        const left = M - m;
        if (left == 3) tile(xk, wc, oc, m, kn, rowBytes, blockBytes, xRowBytes, 3, bf16);
        else if (left == 2) tile(xk, wc, oc, m, kn, rowBytes, blockBytes, xRowBytes, 2, bf16);
        else if (left == 1) tile(xk, wc, oc, m, kn, rowBytes, blockBytes, xRowBytes, 1, bf16);
      }
    }
  }
}

// out[m, n0:n1] = 0 for every row m
@inline
function zeroColumns(out: usize, M: i32, rowBytes: usize, n0: i32, n1: i32): void {
  for (let m = 0; m < M; m++) memory.fill(out + <usize>m * rowBytes + (<usize>n0 << 2), 0, <usize>(n1 - n0) << 2);
}

// out[m:m+R, c..c+7] += x[m:m+R, k0:k0+kn] @ W[k0:k0+kn, c..c+7] for R = 1..4 rows (a constant:
// the unused rows compile away). Accumulators: a (row m), b, c, d; 0 = columns c..c+3, 1 = c+4..c+7.
// w points at the tile(s) of rows k0..k0+3; within a block, row k + 1 is 16 bytes after row k,
// and the next block is blockBytes after this one.
@inline
function tile(x: usize, w: usize, out: usize, m: i32, kn: i32, rowBytes: usize, blockBytes: usize, xRowBytes: usize, R: i32, bf16: bool): void {
  const o = out + <usize>m * rowBytes; // out[m, c]
  let a0 = v128.load(o), a1 = v128.load(o, 16);
  let b0 = a0, b1 = a1, c0 = a0, c1 = a1, d0 = a0, d1 = a1;
  if (R > 1) { b0 = v128.load(o + rowBytes); b1 = v128.load(o + rowBytes, 16); }
  if (R > 2) { c0 = v128.load(o + 2 * rowBytes); c1 = v128.load(o + 2 * rowBytes, 16); }
  if (R > 3) { d0 = v128.load(o + 3 * rowBytes); d1 = v128.load(o + 3 * rowBytes, 16); }
  const high = i32x4.splat(0xffff0000);
  let wb = w; // the block's tile(s)
  let xp = x + <usize>m * xRowBytes; // x[m, k]
  const xEnd = xp + (<usize>kn << 2);
  while (xp < xEnd) {
    // rows k..k+3 of the block, in order
    const wEnd = wb + 64;
    for (let wp = wb; wp < wEnd; wp += 16) {
      let w0: v128, w1: v128;
      if (bf16) {
        const r = v128.load(wp); // W[k, c..c+7]: columns c..c+3 in the low halves, c+4..c+7 in the high
        w0 = i32x4.shl(r, 16);
        w1 = v128.and(r, high);
      } else {
        w0 = v128.load(wp); // W[k, c..c+3]
        w1 = v128.load(wp, 64); // W[k, c+4..c+7], in the next tile
      }
      const xa = v128.load32_splat(xp); // x[m, k] in every lane
      a0 = madd(a0, xa, w0, R);
      a1 = madd(a1, xa, w1, R);
      if (R > 1) {
        const xb = v128.load32_splat(xp + xRowBytes); // x[m + 1, k]
        b0 = madd(b0, xb, w0, R);
        b1 = madd(b1, xb, w1, R);
      }
      if (R > 2) {
        const xc = v128.load32_splat(xp + 2 * xRowBytes);
        c0 = madd(c0, xc, w0, R);
        c1 = madd(c1, xc, w1, R);
      }
      if (R > 3) {
        const xd = v128.load32_splat(xp + 3 * xRowBytes);
        d0 = madd(d0, xd, w0, R);
        d1 = madd(d1, xd, w1, R);
      }
      xp += 4;
    }
    wb += blockBytes;
  }
  v128.store(o, a0);
  v128.store(o, a1, 16);
  if (R > 1) { v128.store(o + rowBytes, b0); v128.store(o + rowBytes, b1, 16); }
  if (R > 2) { v128.store(o + 2 * rowBytes, c0); v128.store(o + 2 * rowBytes, c1, 16); }
  if (R > 3) { v128.store(o + 3 * rowBytes, d0); v128.store(o + 3 * rowBytes, d1, 16); }
}

// ---- fused multiply-add
//
// acc + x * w. The kernels are compiled twice (scripts/kernels/compile.ts): plain SIMD, and with
// relaxed SIMD, where f32x4.relaxed_madd is one fused multiply-add on CPUs that have one (x86 FMA3,
// every ARM64; cpu.ts picks that build where the engine validates it). A tile of 3-4 rows is
// bound by instructions, not bytes, and the FMA halves its arithmetic: one step's matmuls of the
// target, one thread, 2-core Zen 1, medians of 5 interleaved rounds: M = 3 5.6 -> 4.8 ms, M = 4
// 6.7 -> 5.2, M = 8 13.4 -> 10.0. Rows of a 1- or 2-row tile keep the multiply, then the add: each
// accumulator is one chain of dependent adds, and an FMA's latency (5 cycles on Zen, against 3 for
// an add) made M = 1 4.0 -> 4.1 ms slower and M = 2 no faster. R is a constant, so this compiles
// to one of the two.
@inline
function madd(acc: v128, x: v128, w: v128, R: i32): v128 {
  if (ASC_FEATURE_RELAXED_SIMD && R >= 3) return f32x4.relaxed_madd(x, w, acc);
  return f32x4.add(acc, f32x4.mul(x, w));
}

// fusedMaddProbe: (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24, minus its f32 rounding (a tie, to even:
// 1 + 2^-11): 2^-24 when relaxed_madd fuses (one rounding), 0 when it multiplies, rounds and adds. cpu.ts asks it once, so the tests' reference
// sums know which this CPU does.
export function fusedMaddProbe(): f32 {
  const a = f32x4.splat(<f32>1.000244140625); // 1 + 2^-12
  const c = f32x4.splat(<f32>-1.00048828125); // -(1 + 2^-11)
  if (!ASC_FEATURE_RELAXED_SIMD) return f32x4.extract_lane(f32x4.add(c, f32x4.mul(a, a)), 0);
  return f32x4.extract_lane(f32x4.relaxed_madd(a, a, c), 0);
}
