// Correct answers to lesson 3's build-it exercises (the same code as notebooks/solutions/03-kv-cache-optimizations.ipynb).

function myQuantizeInt8PerChannel(x: Float32Array, n: number, D: number): { codes: Int8Array; scales: Float32Array } {
  const codes = new Int8Array(n * D); // [n, D]
  const scales = new Float32Array(D); // [D]
  for (let d = 0; d < D; d++) {
    let absMax = 0;
    for (let t = 0; t < n; t++) absMax = Math.max(absMax, Math.abs(x[t * D + d]));
    scales[d] = absMax > 0 ? absMax / 127 : 1; // stored as float32, like the library's
  }
  for (let t = 0; t < n; t++) {
    for (let d = 0; d < D; d++) codes[t * D + d] = Math.max(-127, Math.min(127, Math.round(x[t * D + d] / scales[d])));
  }
  return { codes: codes, scales: scales };
}

function myDequantizeInt8PerChannel(codes: Int8Array, scales: Float32Array, n: number, D: number): Float32Array {
  const out = new Float32Array(n * D); // [n, D]
  for (let i = 0; i < n * D; i++) out[i] = codes[i] * scales[i % D]; // element (t, d) sits at t * D + d
  return out;
}

function myQuantizeInt4Groups(x: Float32Array, n: number, D: number, groupSize: number): { codes: Uint8Array; scales: Float32Array; zeros: Float32Array } {
  const G = D / groupSize; // groups per token
  const codes = new Uint8Array(n * D); // [n, D]
  const scales = new Float32Array(n * G); // [n, G]
  const zeros = new Float32Array(n * G); // [n, G]
  for (let t = 0; t < n; t++) {
    for (let g = 0; g < G; g++) {
      const at = t * D + g * groupSize; // the group's first element
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < groupSize; i++) {
        lo = Math.min(lo, x[at + i]);
        hi = Math.max(hi, x[at + i]);
      }
      const u = t * G + g;
      zeros[u] = lo;
      scales[u] = hi > lo ? (hi - zeros[u]) / 15 : 1; // 16 levels: 15 steps between min and max
      for (let i = 0; i < groupSize; i++) codes[at + i] = Math.max(0, Math.min(15, Math.round((x[at + i] - zeros[u]) / scales[u])));
    }
  }
  return { codes: codes, scales: scales, zeros: zeros };
}

function myEntropyBudgets(entropies: number[], total: number, min: number): number[] {
  const L = entropies.length;
  const free = total - L * min; // what is left after every layer's minimum
  const sum = entropies.reduce((a, b) => a + b, 0);
  const exact = entropies.map((e) => (free * e) / sum);
  const out = exact.map((x) => min + Math.floor(x));
  let left = total - out.reduce((a, b) => a + b, 0);
  // largest remainders first; a stable sort keeps the lower layer first on ties
  const order = exact.map((x, l) => ({ frac: x - Math.floor(x), l: l })).sort((a, b) => b.frac - a.frac);
  for (let i = 0; left > 0; i++, left--) out[order[i].l]++;
  return out;
}

function myKeepSlots(scores: number[], budget: number, sinks: number, recent: number): number[] {
  const n = scores.length;
  if (n <= budget) return scores.map((_, i) => i);
  const kept = new Set<number>();
  for (let i = 0; i < n; i++) if (i < sinks || i >= n - recent) kept.add(i); // sinks and the recent window
  const others = scores.map((_, i) => i).filter((i) => !kept.has(i));
  others.sort((a, b) => scores[b] - scores[a] || b - a); // heavy hitters first; on a tie the newer token
  for (const i of others) {
    if (kept.size >= budget) break;
    kept.add(i);
  }
  return [...kept].sort((a, b) => a - b);
}

export const right: Record<string, unknown> = {
  'l3.int8-channel': myQuantizeInt8PerChannel,
  'l3.int8-channel-dequant': myDequantizeInt8PerChannel,
  'l3.int4-groups': myQuantizeInt4Groups,
  'l3.entropy-budgets': myEntropyBudgets,
  'l3.h2o-keep': myKeepSlots,
};
