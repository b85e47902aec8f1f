// Half-precision number formats as raw bits (lesson 3, "KV-cache optimizations", for float16
// scales; loading for BF16/F16 checkpoints): bfloat16 and float16 <-> float32 over typed arrays.
// tfjs tensors are float32, int32 or bool only, so half precision lives in Uint16Array bits.
// Shared by the safetensors reader/writer, the GGUF exporter and the quantized KV cache.

/** bfloat16 bits -> float32 (exact: bf16 is the top half of an f32). */
export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return new Float32Array(out.buffer);
}

/** float32 -> bfloat16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i];
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x40;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

// float16 -> float32 lookup: 65536 entries, built once
let f16Table: Float32Array | null = null;
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const man = h & 0x3ff;
    if (exp === 0) t[h] = sign * man * 2 ** -24;
    else if (exp === 31) t[h] = man ? NaN : sign * Infinity;
    else t[h] = sign * (1 + man / 1024) * 2 ** (exp - 15);
  }
  return (f16Table = t);
}

/** float16 bits -> float32 (exact). */
export function f16ToF32(src: Uint16Array): Float32Array {
  const t = halfTable();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
  return out;
}

/** float32 -> float16 bits, round to nearest even, overflow to infinity. */
export function f32ToF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let man = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (man ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) {
      // subnormal half (or zero): shift the full mantissa, round to nearest even
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      man |= 0x800000;
      const shift = 14 - e;
      const half = man >>> shift;
      const rem = man & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      out[i] = sign | (half + (rem > mid || (rem === mid && half & 1) ? 1 : 0));
    } else {
      const half = (e << 10) | (man >>> 13);
      const rem = man & 0x1fff;
      // a carry out of the mantissa correctly bumps the exponent (up to infinity)
      out[i] = sign | (half + (rem > 0x1000 || (rem === 0x1000 && half & 1) ? 1 : 0));
    }
  }
  return out;
}
