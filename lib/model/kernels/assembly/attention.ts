// Attention over the KV cache for decode (AssemblyScript, compiled to wasm SIMD by
// scripts/kernels/build.ts). tfjs-wasm sends a batched matMul (one product per sequence and kv
// head) to a scalar loop at ~1-2 GB/s; these two run f32x4 over the tensors where they lie in
// tfjs-wasm's memory. Pointers are byte offsets into that memory; P = (sequence, kv head) pairs,
// R = query rows of a pair (the G heads of its group times T), C = b's slots per pair, of which
// the first S are read (a cache with spare capacity is read without a copy). D % 4 == 0.

// qkT: a [P, R, D], b [P, C, D] -> out [P, R, S], out[p,r,s] = sum_d a[p,r,d] b[p,s,d]
// Loop order p, s, r: a key row is read from memory once and stays in L1 while the R query
// rows of its group use it. Lanes sum d = 4i + lane; the lanes are added last, 0 + 1 + 2 + 3.
export function qkT(a: usize, b: usize, out: usize, P: i32, R: i32, S: i32, D: i32, C: i32): void {
  const rowBytes = <usize>D << 2;
  for (let p = 0; p < P; p++) {
    let key = b + <usize>(p * C) * rowBytes; // b[p, s, :]
    for (let s = 0; s < S; s++) {
      for (let r = 0; r < R; r++) {
        const row = p * R + r;
        const query = a + <usize>row * rowBytes; // a[p, r, :]
        let acc = f32x4.splat(0);
        for (let d: usize = 0; d < rowBytes; d += 16) {
          acc = f32x4.add(acc, f32x4.mul(v128.load(query + d), v128.load(key + d)));
        }
        store<f32>(out + (<usize>(row * S + s) << 2), hsum(acc));
      }
      key += rowBytes;
    }
  }
}

// pv: a [P, R, S], b [P, C, D] -> out [P, R, D], out[p,r,:] = sum_s a[p,r,s] b[p,s,:]
// Loop order p, s, r: a value row is read once; the R output rows of the group stay in L1 as
// accumulators.
export function pv(a: usize, b: usize, out: usize, P: i32, R: i32, S: i32, D: i32, C: i32): void {
  const rowBytes = <usize>D << 2;
  memory.fill(out, 0, <usize>(P * R) * rowBytes);
  for (let p = 0; p < P; p++) {
    let value = b + <usize>(p * C) * rowBytes; // b[p, s, :]
    for (let s = 0; s < S; s++) {
      for (let r = 0; r < R; r++) {
        const row = p * R + r;
        const weight = f32x4.splat(load<f32>(a + (<usize>(row * S + s) << 2))); // a[p, r, s]
        const o = out + <usize>row * rowBytes; // out[p, r, :]
        for (let d: usize = 0; d < rowBytes; d += 16) {
          v128.store(o + d, f32x4.add(v128.load(o + d), f32x4.mul(weight, v128.load(value + d))));
        }
      }
      value += rowBytes;
    }
  }
}

// lane 0 + lane 1 + lane 2 + lane 3, in that order
@inline
export function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}
