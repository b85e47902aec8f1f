// Fused ops of the decode step (AssemblyScript, wasm SIMD). A decode step of a small model is
// mostly tiny kernels, each costing ~6 us of tfjs dispatch whatever it computes; each of these
// replaces a chain of them. Pointers are byte offsets into tfjs-wasm's memory.

import { hsum } from './attention';

// addRmsNorm: x, delta [N, Dm], w [Dm] -> sum = x + delta [N, Dm], out = rmsnorm(sum) * w [N, Dm]
// (vLLM's fused_add_rms_norm; HF's order: w * (sum * 1/sqrt(mean(sum^2) + eps))). Without delta
// (hasDelta 0) sum is a copy of x. Dm % 4 == 0.
export function addRmsNorm(x: usize, delta: usize, w: usize, sum: usize, out: usize, N: i32, Dm: i32, hasDelta: i32, eps: f32): void {
  const rowBytes = <usize>Dm << 2;
  for (let n = 0; n < N; n++) {
    const row = <usize>n * rowBytes;
    // sum = x + delta, stored; acc += sum^2
    let acc = f32x4.splat(0);
    for (let d: usize = 0; d < rowBytes; d += 16) {
      let v = v128.load(x + row + d);
      if (hasDelta) v = f32x4.add(v, v128.load(delta + row + d));
      v128.store(sum + row + d, v);
      acc = f32x4.add(acc, f32x4.mul(v, v));
    }
    const inv = f32x4.splat(<f32>1 / Mathf.sqrt(hsum(acc) / <f32>Dm + eps));
    // out = (sum * inv) * w
    for (let d: usize = 0; d < rowBytes; d += 16) {
      v128.store(out + row + d, f32x4.mul(f32x4.mul(v128.load(sum + row + d), inv), v128.load(w + d)));
    }
  }
}

// rope: qkv [B*T, (H + 2*Hkv) * D], cos, sin [B*T, D] -> q [B*T, H, D] rotated,
// k [B, Hkv, T, D] rotated, v [B, Hkv, T, D]. HF's x*cos + rotate_half(x)*sin with x = [x1, x2]:
// out1 = x1*cos - x2*sin, out2 = x2*cos + x1*sin (the tables' halves repeat, so the first D/2
// of a row serve both). q stays token-major; k and v come out head-major, as the cache takes
// them. D % 8 == 0.
export function rope(qkv: usize, cos: usize, sin: usize, q: usize, k: usize, v: usize, B: i32, T: i32, H: i32, Hkv: i32, D: i32): void {
  const rowBytes = <usize>D << 2;
  const half = rowBytes >> 1;
  const heads = H + 2 * Hkv;
  for (let n = 0; n < B * T; n++) {
    const b = n / T;
    const t = n % T;
    const cs = <usize>n * rowBytes; // this token's cos/sin row
    for (let j = 0; j < heads; j++) {
      const src = qkv + <usize>(n * heads + j) * rowBytes; // qkv[n, j, :]
      if (j >= H + Hkv) {
        // a v head: copied to v[b, j - H - Hkv, t, :]
        const dst = v + <usize>((b * Hkv + j - H - Hkv) * T + t) * rowBytes;
        for (let i: usize = 0; i < rowBytes; i += 16) v128.store(dst + i, v128.load(src + i));
        continue;
      }
      // a q head to q[n, j, :], or a k head to k[b, j - H, t, :]
      const dst = j < H ? q + <usize>(n * H + j) * rowBytes : k + <usize>((b * Hkv + j - H) * T + t) * rowBytes;
      for (let i: usize = 0; i < half; i += 16) {
        const x1 = v128.load(src + i);
        const x2 = v128.load(src + half + i);
        const c = v128.load(cos + cs + i);
        const s = v128.load(sin + cs + i);
        v128.store(dst + i, f32x4.sub(f32x4.mul(x1, c), f32x4.mul(x2, s)));
        v128.store(dst + half + i, f32x4.add(f32x4.mul(x2, c), f32x4.mul(x1, s)));
      }
    }
  }
}

// siluMul: gu [N, 2F] = [gate | up] (the fused gate and up projection) -> out [N, F],
// out = silu(gate) * up, silu(g) = g / (1 + exp(-g)). F % 4 == 0.
export function siluMul(gu: usize, out: usize, N: i32, F: i32): void {
  const fBytes = <usize>F << 2;
  const one = f32x4.splat(1);
  for (let row = 0; row < N; row++) {
    const gate = gu + <usize>row * (fBytes << 1); // gu[row, :F]
    const up = gate + fBytes; // gu[row, F:]
    const o = out + <usize>row * fBytes;
    for (let f: usize = 0; f < fBytes; f += 16) {
      const g = v128.load(gate + f);
      const silu = f32x4.div(g, f32x4.add(one, exp4(f32x4.neg(g))));
      v128.store(o + f, f32x4.mul(silu, v128.load(up + f)));
    }
  }
}

// embedColumns: the embeddings of a tied model, whose table is the LM head W [Dm, V] (token t's
// embedding is column t): out [N, Dm], out[n, :] = W[:, ids[n]]. ids [N] i32, each in [0, V).
export function embedColumns(w: usize, ids: usize, out: usize, N: i32, Dm: i32, V: i32): void {
  const stride = <usize>V << 2; // one row of W
  for (let n = 0; n < N; n++) {
    let src = w + (<usize>load<i32>(ids + (<usize>n << 2)) << 2); // W[0, ids[n]]
    const o = out + (<usize>(n * Dm) << 2); // out[n, :]
    for (let d = 0; d < Dm; d++) {
      store<f32>(o + (<usize>d << 2), load<f32>(src));
      src += stride;
    }
  }
}

// exp of four lanes, x clamped to [-88, 88]: x = n ln2 + r with |r| <= ln2/2, exp(x) = 2^n p(r),
// p the degree-6 Taylor polynomial (Horner; relative error ~2e-7), 2^n built in the exponent bits
@inline
export function exp4(x: v128): v128 {
  x = f32x4.max(f32x4.min(x, f32x4.splat(88)), f32x4.splat(-88));
  const n = f32x4.nearest(f32x4.mul(x, f32x4.splat(<f32>Math.LOG2E)));
  // r = x - n*ln2_hi - n*ln2_lo
  const r = f32x4.sub(f32x4.sub(x, f32x4.mul(n, f32x4.splat(<f32>0.693359375))), f32x4.mul(n, f32x4.splat(<f32>-2.1219444e-4)));
  let p = f32x4.splat(<f32>(1.0 / 720));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(<f32>(1.0 / 120)));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(<f32>(1.0 / 24)));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(<f32>(1.0 / 6)));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(<f32>0.5));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(<f32>1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(<f32>1));
  // * 2^n: (n + 127) << 23 as f32 bits
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return f32x4.mul(p, scale);
}
