// Plausible wrong answers to lesson 3's exercises: each must fail its check with a hint
// (test/exercises.test.ts).

/** Symmetric per-channel int8 with switches for each mistake. */
function int8(x: Float32Array, n: number, D: number, bug: 'per-token' | 'div-128' | 'floor' | 'div-255' | 'no-zero-guard') {
  const perToken = bug === 'per-token';
  const scales = new Float32Array(perToken ? n : D);
  for (let i = 0; i < x.length; i++) {
    const g = perToken ? Math.floor(i / D) : i % D;
    scales[g] = Math.max(scales[g], Math.abs(x[i]));
  }
  const levels = bug === 'div-128' ? 128 : bug === 'div-255' ? 255 : 127;
  for (let g = 0; g < scales.length; g++) scales[g] = scales[g] > 0 || bug === 'no-zero-guard' ? scales[g] / levels : 1;
  const codes = new Int8Array(n * D);
  for (let i = 0; i < x.length; i++) {
    const s = scales[perToken ? Math.floor(i / D) : i % D];
    const c = bug === 'floor' ? Math.floor(x[i] / s) : Math.round(x[i] / s);
    codes[i] = Number.isFinite(c) ? Math.max(-127, Math.min(127, c)) : 0;
  }
  return { codes, scales };
}

/** Asymmetric int4 groups with switches for each mistake. */
function int4(x: Float32Array, n: number, D: number, groupSize: number, bug: 'div-16' | 'per-token' | 'floor' | 'zero-zero') {
  const gs = bug === 'per-token' ? D : groupSize;
  const G = D / gs;
  const codes = new Uint8Array(n * D);
  const scales = new Float32Array(n * G);
  const zeros = new Float32Array(n * G);
  for (let u = 0; u < n * G; u++) {
    const at = u * gs;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < gs; i++) {
      lo = Math.min(lo, x[at + i]);
      hi = Math.max(hi, x[at + i]);
    }
    zeros[u] = bug === 'zero-zero' ? 0 : lo;
    scales[u] = hi > lo ? (hi - lo) / (bug === 'div-16' ? 16 : 15) : 1;
    for (let i = 0; i < gs; i++) {
      const c = (x[at + i] - zeros[u]) / scales[u];
      codes[at + i] = Math.max(0, Math.min(15, bug === 'floor' ? Math.floor(c) : Math.round(c)));
    }
  }
  return { codes, scales, zeros };
}

/** proportionalBudgets with switches for each mistake. */
function budgets(e: number[], total: number, min: number, bug: 'no-min' | 'floor-only' | 'round' | 'leftover-to-last') {
  const L = e.length;
  const free = bug === 'no-min' ? total : total - L * min;
  const sum = e.reduce((a, b) => a + b, 0);
  const exact = e.map((w) => (free * w) / sum);
  if (bug === 'round') return exact.map((x) => (bug === 'round' ? min : 0) + Math.round(x));
  const out = exact.map((x) => (bug === 'no-min' ? Math.max(min, Math.floor(x)) : min + Math.floor(x)));
  if (bug === 'floor-only') return out;
  let left = total - out.reduce((a, b) => a + b, 0);
  for (let l = L - 1; left > 0; l = (l - 1 + L) % L, left--) out[l]++;
  return out;
}

/** The H2O keep rule with switches for each mistake. */
function keep(scores: number[], budget: number, sinks: number, recent: number, bug: 'no-sinks' | 'no-recent' | 'ties-older' | 'lowest' | 'off-by-one') {
  const n = scores.length;
  if (n <= budget) return scores.map((_, i) => i);
  const room = bug === 'off-by-one' ? budget - 1 : budget;
  const kept = new Set<number>();
  for (let i = 0; i < n; i++) if ((bug !== 'no-sinks' && i < sinks) || (bug !== 'no-recent' && i >= n - recent)) kept.add(i);
  const others = scores.map((_, i) => i).filter((i) => !kept.has(i));
  if (bug === 'lowest') others.sort((a, b) => scores[a] - scores[b] || b - a);
  else if (bug === 'ties-older') others.sort((a, b) => scores[b] - scores[a] || a - b);
  else others.sort((a, b) => scores[b] - scores[a] || b - a);
  for (const i of others) {
    if (kept.size >= room) break;
    kept.add(i);
  }
  return [...kept].sort((a, b) => a - b);
}

export const wrong: Record<string, { name: string; fn: unknown }[]> = {
  'l3.int8-channel': [
    { name: 'one scale per token instead of per channel', fn: (x: Float32Array, n: number, D: number) => int8(x, n, D, 'per-token') },
    { name: 'divided by 128', fn: (x: Float32Array, n: number, D: number) => int8(x, n, D, 'div-128') },
    { name: 'divided by 255 (the asymmetric level count)', fn: (x: Float32Array, n: number, D: number) => int8(x, n, D, 'div-255') },
    { name: 'floor instead of round', fn: (x: Float32Array, n: number, D: number) => int8(x, n, D, 'floor') },
    { name: 'a zero channel gets scale 0', fn: (x: Float32Array, n: number, D: number) => int8(x, n, D, 'no-zero-guard') },
  ],
  'l3.int8-channel-dequant': [
    { name: 'the token\'s scale instead of the channel\'s', fn: (c: Int8Array, s: Float32Array, n: number, D: number) => Float32Array.from(c, (v, i) => v * s[Math.floor(i / D) % s.length]) },
    { name: 'codes shifted by 128 as if unsigned', fn: (c: Int8Array, s: Float32Array, n: number, D: number) => Float32Array.from(c, (v, i) => (v - 128) * s[i % D]) },
    { name: 'divided by the scale', fn: (c: Int8Array, s: Float32Array, n: number, D: number) => Float32Array.from(c, (v, i) => v / s[i % D]) },
  ],
  'l3.int4-groups': [
    { name: 'step (max - min) / 16', fn: (x: Float32Array, n: number, D: number, g: number) => int4(x, n, D, g, 'div-16') },
    { name: 'one group per token (groupSize ignored)', fn: (x: Float32Array, n: number, D: number, g: number) => int4(x, n, D, g, 'per-token') },
    { name: 'floor instead of round', fn: (x: Float32Array, n: number, D: number, g: number) => int4(x, n, D, g, 'floor') },
    { name: 'the zero point forgotten', fn: (x: Float32Array, n: number, D: number, g: number) => int4(x, n, D, g, 'zero-zero') },
  ],
  'l3.entropy-budgets': [
    { name: 'rounded down, leftovers dropped', fn: (e: number[], t: number, m: number) => budgets(e, t, m, 'floor-only') },
    { name: 'rounded to the nearest', fn: (e: number[], t: number, m: number) => budgets(e, t, m, 'round') },
    { name: 'the minimum clamped afterwards', fn: (e: number[], t: number, m: number) => budgets(e, t, m, 'no-min') },
    { name: 'leftovers to the last layers', fn: (e: number[], t: number, m: number) => budgets(e, t, m, 'leftover-to-last') },
  ],
  'l3.h2o-keep': [
    { name: 'no attention sinks', fn: (s: number[], b: number, k: number, r: number) => keep(s, b, k, r, 'no-sinks') },
    { name: 'no recent window', fn: (s: number[], b: number, k: number, r: number) => keep(s, b, k, r, 'no-recent') },
    { name: 'ties go to the older token', fn: (s: number[], b: number, k: number, r: number) => keep(s, b, k, r, 'ties-older') },
    { name: 'the lowest scores kept', fn: (s: number[], b: number, k: number, r: number) => keep(s, b, k, r, 'lowest') },
    { name: 'one token short of the budget', fn: (s: number[], b: number, k: number, r: number) => keep(s, b, k, r, 'off-by-one') },
  ],
};
