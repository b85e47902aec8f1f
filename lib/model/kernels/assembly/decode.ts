// The fused decode layer (AssemblyScript, wasm SIMD): one decoder layer of a decode step (one new
// token for each of M sequences) in one call, made of the kernels of gemv.ts, fused.ts and
// attention.ts. The op-by-op path dispatches 15 tfjs kernels per layer (already fused ones) at
// ~6-10 us each; this is one call. The keys and values go straight into the contiguous KV cache's tensors (slot `slot` of
// [M, Hkv, C, D]), and attention reads the cache's first S slots in place.
//
// Pointers are byte offsets into tfjs-wasm's memory (cpu.ts). Shape letters as in config.ts;
// M = sequences (one token each), G = H / Hkv, QKV = (H + 2*Hkv) * D.

import { pv, qkT } from './attention';
import { addRmsNorm, exp4, rope, siluMul } from './fused';
import { gemm, gemmBf16 } from './gemv';

// ---- scratch: the layer's intermediates, one buffer (no allocation: the module has no heap of
// its own in tfjs-wasm's memory), laid out as
//   h [M, Dm] | qkv [M, QKV] | q [M, H, D] | kNew, vNew [M, Hkv, D] | att [M, H*D] | delta [M, Dm]
//   | gu [M, 2F] | act [M, F] | scores [M, H, S]

// decodeScratchBytes: the bytes of the scratch buffer decodeLayer needs for S key slots
export function decodeScratchBytes(M: i32, Dm: i32, H: i32, Hkv: i32, D: i32, F: i32, S: i32): i32 {
  const f32s = M * (2 * Dm + (H + 2 * Hkv) * D + 2 * H * D + 2 * Hkv * D + 3 * F + H * S);
  return f32s << 2;
}

// ---- the layer

// decodeLayer: x [M, Dm] -> out [M, Dm], one pre-norm decoder layer (HF Llama):
//   h = rmsnorm(x) * attnNorm; qkv = h @ Wqkv; q, k = RoPE(q, k)        (q pre-scaled by 1/sqrt(D))
//   kCache[:, :, slot] = k; vCache[:, :, slot] = v                     (the cache [M, Hkv, C, D])
//   att = softmax(q k^T + mask) v over the cache's first S slots       (GQA: head h reads h / G)
//   x1 = x + att @ Wo; h2 = rmsnorm(x1) * mlpNorm
//   out = x1 + (silu(h2 @ Wgate) * (h2 @ Wup)) @ Wdown
// Weights [in, out] are in gemv.ts's tiles: f32 [in/4, out/4, 4, 4], or with bf16 = 1 u32 bf16
// pairs [in/4, out/8, 4, 4] (gemvWeights in wasmGemv.ts). cos, sin [M, D] are the RoPE tables of
// each sequence's position; mask [M, S] is additive (0 or MASKED), or 0 for none.
// The scratch buffer holds decodeScratchBytes(M, ..., S) bytes. out may not be x.
export function decodeLayer(
  x: usize,
  out: usize,
  attnNorm: usize,
  wqkv: usize,
  wo: usize,
  mlpNorm: usize,
  wGateUp: usize,
  wDown: usize,
  kCache: usize,
  vCache: usize,
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

  // ---- attention
  addRmsNorm(x, 0, attnNorm, out, h, M, Dm, 0, eps); // out = x, h = rmsnorm(x) * attnNorm [M, Dm]
  matmul(h, wqkv, qkv, M, Dm, (H + 2 * Hkv) * D, bf16); // [M, QKV]
  rope(qkv, cos, sin, q, kNew, vNew, M, 1, H, Hkv, D); // q [M, H, D], kNew, vNew [M, Hkv, 1, D]
  appendKV(kNew, vNew, kCache, vCache, P, C, D, slot);
  qkT(q, kCache, scores, P, G, S, D, C); // [P, G, S] = [M, H, S]
  if (mask) addMask(scores, mask, M, H, S);
  softmaxRows(scores, M * H, S);
  pv(scores, vCache, att, P, G, S, D, C); // [P, G, D] = [M, H*D]
  matmul(att, wo, delta, M, H * D, Dm, bf16); // [M, Dm]
  addRmsNorm(out, delta, mlpNorm, out, h, M, Dm, 1, eps); // out = x1 = x + delta, h = rmsnorm(x1) * mlpNorm

  // ---- MLP
  matmul(h, wGateUp, gu, M, Dm, 2 * F, bf16); // [M, 2F] = [gate | up]
  siluMul(gu, act, M, F); // [M, F]
  matmul(act, wDown, delta, M, F, Dm, bf16); // [M, Dm]
  addInPlace(out, delta, M * Dm); // out = x1 + delta
}

// x [M, K] @ W [K, N] -> out [M, N], W's f32 or bf16 tiles (all columns, one thread)
@inline
function matmul(x: usize, w: usize, out: usize, M: i32, K: i32, N: i32, bf16: i32): void {
  if (bf16) gemmBf16(x, w, out, M, K, N, 0, N);
  else gemm(x, w, out, M, K, N, 0, N);
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

// addMask: scores [M, H, S] += mask [M, 1, S] (one row of the mask per sequence, for all its heads)
export function addMask(scores: usize, mask: usize, M: i32, H: i32, S: i32): void {
  for (let m = 0; m < M; m++) {
    const row = mask + (<usize>(m * S) << 2); // mask[m, :]
    for (let h = 0; h < H; h++) {
      const s0 = scores + (<usize>((m * H + h) * S) << 2); // scores[m, h, :]
      for (let s = 0; s < S; s++) {
        const at = <usize>s << 2;
        store<f32>(s0 + at, load<f32>(s0 + at) + load<f32>(row + at));
      }
    }
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
