// The fused decode step (AssemblyScript, wasm SIMD): every decoder layer of a decode step (one new
// token for each of M sequences) in one call, made of the kernels of gemv.ts, fused.ts and
// attention.ts. The op-by-op path dispatches 15 tfjs kernels per layer (already fused ones) at
// ~6-10 us each; this is one call. The keys and values go straight into the contiguous KV cache's tensors (slot `slot` of
// [M, Hkv, C, D]), and attention reads the cache's first S slots in place.
//
// Pointers are byte offsets into tfjs-wasm's memory (cpu.ts). Shape letters as in config.ts;
// M = sequences (one token each), G = H / Hkv, QKV = (H + 2*Hkv) * D.

import { pv, qkT } from './attention';
import { addRmsNorm, exp4, rope, siluMul } from './fused';
import { gemmThreads as matmul, share } from './gemv';

// ---- scratch: a layer's intermediates, one buffer (no allocation: the module has no heap of
// its own in tfjs-wasm's memory), laid out as
//   h [M, Dm] | qkv [M, QKV] | q [M, H, D] | kNew, vNew [M, Hkv, D] | att [M, H*D] | delta [M, Dm]
//   | gu [M, 2F] | act [M, F] | scores [M, H, S]
// Every layer reuses it.

// decodeScratchBytes: the bytes of the scratch buffer decodeLayers needs for S key slots
export function decodeScratchBytes(M: i32, Dm: i32, H: i32, Hkv: i32, D: i32, F: i32, S: i32): i32 {
  const f32s = M * (2 * Dm + (H + 2 * Hkv) * D + 2 * H * D + 2 * Hkv * D + 3 * F + H * S);
  return f32s << 2;
}

// ---- the layers

// decodeLayers: all L decoder layers of a decode step in one call, x [M, Dm] -> out [M, Dm]. Each
// is one pre-norm decoder layer (HF Llama), x -> y:
//   h = rmsnorm(x) * attnNorm; qkv = h @ Wqkv; q, k = RoPE(q, k)        (q pre-scaled by 1/sqrt(D))
//   kCache[:, :, slot] = k; vCache[:, :, slot] = v                     (the cache [M, Hkv, C, D])
//   att = softmax(q k^T + mask) v over the cache's first S slots       (GQA: head h reads h / G)
//   x1 = x + att @ Wo; h2 = rmsnorm(x1) * mlpNorm
//   y = x1 + (silu(h2 @ Wgate) * (h2 @ Wup)) @ Wdown
// The layers alternate between out and `spare` [M, Dm] so the last writes out; x is only read.
// table [L, 8] i32 holds each layer's tensors: attnNorm, wqkv, wo, mlpNorm, wGateUp, wDown, kCache,
// vCache. Weights [in, out] are in gemv.ts's tiles: f32 [in/4, out/4, 4, 4], or with bf16 = 1 u32
// bf16 pairs [in/4, out/8, 4, 4] (gemvWeights in wasmGemv.ts). Every layer writes its keys and
// values at `slot` (the contiguous cache: one slot for all layers). cos, sin [M, D] are the RoPE
// tables of each sequence's position; mask [M, S] is additive (0 or MASKED), or 0 for none. The
// scratch buffer holds decodeScratchBytes(M, ..., S) bytes.
//
// Threads (threads.ts): `threads` threads call it at once with the same arguments, each with its
// own `thread` in [0, threads), over one shared memory, and stay in it for the whole step. Each
// matmul is split by output columns, attention by (sequence, kv head) pairs, and the row-wise
// steps (norms, RoPE, SiLU, the residual adds) by sequences; the threads meet at a barrier (words at
// `sync`) after each step. Every output is summed in the same order whatever the split, so any
// thread count gives the same bits. threads = 1 is the one-thread call (no barrier).
export function decodeLayers(
  table: usize,
  L: i32,
  x: usize,
  out: usize,
  spare: usize,
  cos: usize,
  sin: usize,
  mask: usize,
  scratch: usize,
  M: i32,
  Dm: i32,
  H: i32,
  Hkv: i32,
  D: i32,
  F: i32,
  C: i32,
  slot: i32,
  S: i32,
  eps: f32,
  bf16: i32,
  thread: i32,
  threads: i32,
  sync: usize,
): void {
  const h = scratch;
  const qkv = h + (<usize>(M * Dm) << 2);
  const q = qkv + (<usize>(M * (H + 2 * Hkv) * D) << 2);
  const kNew = q + (<usize>(M * H * D) << 2);
  const vNew = kNew + (<usize>(M * Hkv * D) << 2);
  const att = vNew + (<usize>(M * Hkv * D) << 2);
  const delta = att + (<usize>(M * H * D) << 2);
  const gu = delta + (<usize>(M * Dm) << 2);
  const act = gu + (<usize>(M * 2 * F) << 2);
  const scores = act + (<usize>(M * F) << 2);
  const G = H / Hkv;
  const P = M * Hkv; // (sequence, kv head) pairs
  const QKV = (H + 2 * Hkv) * D;
  // this thread's rows [r0, r0 + n) of the row-wise steps, and their byte offsets in each tensor
  const r0 = share(M, thread, threads);
  const n = share(M, thread + 1, threads) - r0;
  const rDm = <usize>(r0 * Dm) << 2; // x, h, delta [M, Dm]
  const rD = <usize>(r0 * D) << 2; // cos, sin [M, D]
  const rKV = <usize>(r0 * Hkv * D) << 2; // kNew, vNew [M, Hkv, D]
  const rF = <usize>(r0 * F) << 2; // act [M, F]; gu [M, 2F] at twice that
  let src = x;
  for (let l = 0; l < L; l++) {
    const dst = (L - l) & 1 ? out : spare; // never src
    const w = table + (<usize>(l * 8) << 2); // table[l, :]
    const attnNorm = <usize>load<i32>(w), wqkv = <usize>load<i32>(w, 4), wo = <usize>load<i32>(w, 8);
    const mlpNorm = <usize>load<i32>(w, 12), wGateUp = <usize>load<i32>(w, 16), wDown = <usize>load<i32>(w, 20);
    const kCache = <usize>load<i32>(w, 24), vCache = <usize>load<i32>(w, 28);

    // ---- attention
    addRmsNorm(src + rDm, 0, attnNorm, dst + rDm, h + rDm, n, Dm, 0, eps); // dst = x, h = rmsnorm(x) * attnNorm [M, Dm]
    barrier(sync, threads, thread);
    matmul(h, wqkv, qkv, M, Dm, QKV, bf16, thread, threads); // [M, QKV]
    barrier(sync, threads, thread);
    // q [M, H, D], kNew, vNew [M, Hkv, 1, D]; then into the cache [M, Hkv, C, D]
    rope(qkv + (<usize>(r0 * QKV) << 2), cos + rD, sin + rD, q + (<usize>(r0 * H * D) << 2), kNew + rKV, vNew + rKV, n, 1, H, Hkv, D);
    const rC = <usize>(r0 * Hkv * C * D) << 2;
    appendKV(kNew + rKV, vNew + rKV, kCache + rC, vCache + rC, n * Hkv, C, D, slot);
    barrier(sync, threads, thread);
    attendPairs(q, kCache, vCache, mask, scores, att, share(P, thread, threads), share(P, thread + 1, threads), Hkv, G, S, D, C);
    barrier(sync, threads, thread);
    matmul(att, wo, delta, M, H * D, Dm, bf16, thread, threads); // [M, Dm]
    barrier(sync, threads, thread);
    addRmsNorm(dst + rDm, delta + rDm, mlpNorm, dst + rDm, h + rDm, n, Dm, 1, eps); // dst = x1 = x + delta, h = rmsnorm(x1) * mlpNorm
    barrier(sync, threads, thread);

    // ---- MLP
    matmul(h, wGateUp, gu, M, Dm, 2 * F, bf16, thread, threads); // [M, 2F] = [gate | up]
    barrier(sync, threads, thread);
    siluMul(gu + 2 * rF, act + rF, n, F); // [M, F]
    barrier(sync, threads, thread);
    matmul(act, wDown, delta, M, F, Dm, bf16, thread, threads); // [M, Dm]
    barrier(sync, threads, thread);
    addInPlace(dst + rDm, delta + rDm, n * Dm); // dst = x1 + delta
    src = dst;
  }
  barrier(sync, threads, thread); // every thread's rows of out are written
}

// attendPairs: attention for the pairs [p0, p1) of P = M * Hkv (sequence m, kv head j) = m * Hkv + j,
// whose G query heads are rows p * G .. p * G + G - 1 of q [M * H, D] and of scores [M * H, S]:
// scores = q k^T (+ mask[m]), softmax over each row, att = scores v
function attendPairs(
  q: usize, kCache: usize, vCache: usize, mask: usize, scores: usize, att: usize,
  p0: i32, p1: i32, Hkv: i32, G: i32, S: i32, D: i32, C: i32,
): void {
  if (p1 <= p0) return;
  const n = p1 - p0;
  const rows = <usize>(p0 * G); // the first query row
  const cacheAt = <usize>(p0 * C * D) << 2; // cache[p0, 0, 0]
  const s0 = scores + ((rows * <usize>S) << 2);
  qkT(q + ((rows * <usize>D) << 2), kCache + cacheAt, s0, n, G, S, D, C); // [n, G, S]
  if (mask) {
    for (let p = p0; p < p1; p++) {
      const row = mask + (<usize>((p / Hkv) * S) << 2); // mask[m, :]
      for (let g = 0; g < G; g++) addRow(scores + (<usize>((p * G + g) * S) << 2), row, S);
    }
  }
  softmaxRows(s0, n * G, S);
  pv(s0, vCache + cacheAt, att + ((rows * <usize>D) << 2), n, G, S, D, C); // [n, G, D]
}

// barrier: wait until all `threads` threads have arrived. sync: [0] threads arrived, [1] the
// barrier's generation, [2] set by a thread that failed (threads.ts), [3] set when thread 0 may not
// sleep (a browser page's main thread, where a wait traps). The last to arrive resets the count
// and bumps the generation; the others spin on it for a while (the other threads are a few
// microseconds away), then sleep on it, waking every 50 ms to look at [2]: a failed thread never
// arrives, so the others trap (unreachable) rather than wait for ever.
export function barrier(sync: usize, threads: i32, thread: i32): void {
  if (threads == 1) return;
  const generation = atomic.load<i32>(sync, 4);
  if (atomic.add<i32>(sync, 1) == threads - 1) {
    atomic.store<i32>(sync, 0);
    atomic.add<i32>(sync, 1, 4);
    atomic.notify(sync + 4, threads);
    return;
  }
  const sleeps = thread != 0 || atomic.load<i32>(sync, 12) == 0;
  for (let spins = 0; atomic.load<i32>(sync, 4) == generation; spins++) {
    if ((spins & 1023) == 0 && atomic.load<i32>(sync, 8) != 0) unreachable();
    if (sleeps && spins >= SPINS) atomic.wait<i32>(sync + 4, generation, 50_000_000);
  }
}

// spins before a thread sleeps at a barrier. Measured on the 2-core machine, target, 2 threads
// (with threads.ts's spins scaled alike): 2^12 made a batch-8 step 16 ms instead of ~10 (every
// wait became a wake-up); 2^22 gave the same steps as 2^18, and neither removed the slow outliers
// (a thread descheduled on the shared machine stalls every barrier after it)
const SPINS = 1 << 18;

// x [n] += row [n]
@inline
function addRow(x: usize, row: usize, n: i32): void {
  for (let s = 0; s < n; s++) {
    const at = <usize>s << 2;
    store<f32>(x + at, load<f32>(x + at) + load<f32>(row + at));
  }
}

// appendKV: kNew, vNew [P, D] -> kCache, vCache [P, C, D] at slot `slot` of every pair
export function appendKV(kNew: usize, vNew: usize, kCache: usize, vCache: usize, P: i32, C: i32, D: i32, slot: i32): void {
  const rowBytes = <usize>D << 2;
  for (let p = 0; p < P; p++) {
    const at = <usize>(p * C + slot) * rowBytes; // cache[p, slot, :]
    memory.copy(kCache + at, kNew + <usize>p * rowBytes, rowBytes);
    memory.copy(vCache + at, vNew + <usize>p * rowBytes, rowBytes);
  }
}

// softmaxRows: x [R, S] -> softmax over each row, in place: e = exp(x - max), e / sum(e).
// exp is fused.ts's exp4 (relative error ~2e-7), four slots at a time, the last S % 4 one by one.
export function softmaxRows(x: usize, R: i32, S: i32): void {
  const S4 = S & ~3;
  for (let r = 0; r < R; r++) {
    const row = x + (<usize>(r * S) << 2); // x[r, :]
    let max = load<f32>(row);
    for (let s = 1; s < S; s++) max = Mathf.max(max, load<f32>(row + (<usize>s << 2)));
    const shift = f32x4.splat(max);
    // e = exp(x - max), stored; sum += e
    let acc = f32x4.splat(0);
    let s = 0;
    for (; s < S4; s += 4) {
      const at = row + (<usize>s << 2);
      const e = exp4(f32x4.sub(v128.load(at), shift));
      v128.store(at, e);
      acc = f32x4.add(acc, e);
    }
    let sum = f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
    for (; s < S; s++) {
      const at = row + (<usize>s << 2);
      const e = f32x4.extract_lane(exp4(f32x4.splat(load<f32>(at) - max)), 0);
      store<f32>(at, e);
      sum += e;
    }
    // e * (1 / sum)
    const inv = f32x4.splat(<f32>1 / sum);
    for (s = 0; s < S4; s += 4) {
      const at = row + (<usize>s << 2);
      v128.store(at, f32x4.mul(v128.load(at), inv));
    }
    for (; s < S; s++) {
      const at = row + (<usize>s << 2);
      store<f32>(at, load<f32>(at) * f32x4.extract_lane(inv, 0));
    }
  }
}

// out [n] += delta [n], n % 4 == 0
@inline
function addInPlace(out: usize, delta: usize, n: i32): void {
  const bytes = <usize>n << 2;
  for (let i: usize = 0; i < bytes; i += 16) v128.store(out + i, f32x4.add(v128.load(out + i), v128.load(delta + i)));
}
