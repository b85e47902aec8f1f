// Attention over the KV cache for decode (AssemblyScript, compiled to wasm SIMD by
// scripts/kernels/build.ts). tfjs-wasm sends a batched matMul (one product per sequence and kv
// head) to a scalar loop at ~1-2 GB/s; these two run f32x4 over the tensors where they lie in
// tfjs-wasm's memory. Pointers are byte offsets into that memory; P = (sequence, kv head) pairs,
// R = query rows of a pair (the G heads of its group times T), C = b's slots per pair, of which
// the first S are read (a cache with spare capacity is read without a copy). D % 4 == 0.

// qkT: a [P, R, D], b [P, C, D] -> out [P, R, S], out[p,r,s] = sum_d a[p,r,d] b[p,s,d]
// Loop order p, then 4 keys at a time, then r: the 4 key rows are read from memory once and stay
// in L1 while the R query rows of their group use them, and each query load serves 4 keys (4
// independent sums in flight, where one key's sum is a chain of dependent adds). Lanes sum
// d = 4i + lane; the lanes are added last, 0 + 1 + 2 + 3: each key's sum in the same order however
// many keys go together.
export function qkT(a: usize, b: usize, out: usize, P: i32, R: i32, S: i32, D: i32, C: i32): void {
  const rowBytes = <usize>D << 2;
  for (let p = 0; p < P; p++) {
    const keys = b + <usize>(p * C) * rowBytes; // b[p, :, :]
    let s = 0;
    for (; s + 4 <= S; s += 4) {
      const k0 = keys + <usize>s * rowBytes; // b[p, s, :]; s + 1.. s + 3 follow
      for (let r = 0; r < R; r++) {
        const row = p * R + r;
        const query = a + <usize>row * rowBytes; // a[p, r, :]
        let acc0 = f32x4.splat(0), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (let d: usize = 0; d < rowBytes; d += 16) {
          const x = v128.load(query + d);
          acc0 = f32x4.add(acc0, f32x4.mul(x, v128.load(k0 + d)));
          acc1 = f32x4.add(acc1, f32x4.mul(x, v128.load(k0 + rowBytes + d)));
          acc2 = f32x4.add(acc2, f32x4.mul(x, v128.load(k0 + 2 * rowBytes + d)));
          acc3 = f32x4.add(acc3, f32x4.mul(x, v128.load(k0 + 3 * rowBytes + d)));
        }
        const o = out + (<usize>(row * S + s) << 2); // out[p, r, s]
        store<f32>(o, hsum(acc0));
        store<f32>(o, hsum(acc1), 4);
        store<f32>(o, hsum(acc2), 8);
        store<f32>(o, hsum(acc3), 12);
      }
    }
    for (; s < S; s++) {
      const key = keys + <usize>s * rowBytes; // b[p, s, :]
      for (let r = 0; r < R; r++) {
        const row = p * R + r;
        const query = a + <usize>row * rowBytes;
        let acc = f32x4.splat(0);
        for (let d: usize = 0; d < rowBytes; d += 16) acc = f32x4.add(acc, f32x4.mul(v128.load(query + d), v128.load(key + d)));
        store<f32>(out + (<usize>(row * S + s) << 2), hsum(acc));
      }
    }
  }
}

// pv: a [P, R, S], b [P, C, D] -> out [P, R, D], out[p,r,:] = sum_s a[p,r,s] b[p,s,:]
// Loop order p, then 4 value rows at a time, then r: the value rows are read once and stay in L1;
// each output vector is loaded once per 4 value rows and takes their 4 products in turn (s in
// order, so the same sums as one row at a time).
export function pv(a: usize, b: usize, out: usize, P: i32, R: i32, S: i32, D: i32, C: i32): void {
  const rowBytes = <usize>D << 2;
  memory.fill(out, 0, <usize>(P * R) * rowBytes);
  for (let p = 0; p < P; p++) {
    const values = b + <usize>(p * C) * rowBytes; // b[p, :, :]
    let s = 0;
    for (; s + 4 <= S; s += 4) {
      const v0 = values + <usize>s * rowBytes; // b[p, s, :]; s + 1.. s + 3 follow
      for (let r = 0; r < R; r++) {
        const row = p * R + r;
        const w = a + (<usize>(row * S + s) << 2); // a[p, r, s..s+3]
        const w0 = v128.load32_splat(w), w1 = v128.load32_splat(w + 4), w2 = v128.load32_splat(w + 8), w3 = v128.load32_splat(w + 12);
        const o = out + <usize>row * rowBytes; // out[p, r, :]
        for (let d: usize = 0; d < rowBytes; d += 16) {
          let acc = v128.load(o + d);
          acc = f32x4.add(acc, f32x4.mul(w0, v128.load(v0 + d)));
          acc = f32x4.add(acc, f32x4.mul(w1, v128.load(v0 + rowBytes + d)));
          acc = f32x4.add(acc, f32x4.mul(w2, v128.load(v0 + 2 * rowBytes + d)));
          acc = f32x4.add(acc, f32x4.mul(w3, v128.load(v0 + 3 * rowBytes + d)));
          v128.store(o + d, acc);
        }
      }
    }
    for (; s < S; s++) {
      const value = values + <usize>s * rowBytes; // b[p, s, :]
      for (let r = 0; r < R; r++) {
        const row = p * R + r;
        const weight = f32x4.splat(load<f32>(a + (<usize>(row * S + s) << 2))); // a[p, r, s]
        const o = out + <usize>row * rowBytes;
        for (let d: usize = 0; d < rowBytes; d += 16) v128.store(o + d, f32x4.add(v128.load(o + d), f32x4.mul(weight, v128.load(value + d))));
      }
    }
  }
}

// lane 0 + lane 1 + lane 2 + lane 3, in that order
@inline
export function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}
