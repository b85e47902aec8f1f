// Per-layer KV budgets (lesson 3, "KV-cache optimizations"): measure how spread out each layer's
// attention is on calibration text (mean entropy of its attention rows), then split a total token
// budget across layers in proportion (PyramidKV-like: layers that look at many tokens get more
// room), or uniformly. Plain numbers; the entropies come from lib/eval/attention.ts.

/** The same budget for every layer: floor(total / L), the remainder to the first layers (lesson 3). */
export function uniformBudgets(total: number, numLayers: number): number[] {
  const base = Math.floor(total / numLayers);
  return Array.from({ length: numLayers }, (_, l) => base + (l < total - base * numLayers ? 1 : 0));
}

/**
 * Split `total` tokens across layers in proportion to `weights` (e.g. attention entropies), each
 * layer at least `min` (largest-remainder rounding; the sum is exactly `total`) (lesson 3).
 */
export function proportionalBudgets(weights: readonly number[], total: number, min: number): number[] {
  const L = weights.length;
  if (weights.some((w) => !(w >= 0))) throw new Error('budget weights must be non-negative numbers');
  if (total < L * min) throw new Error(`total budget ${total} is below ${L} layers x minimum ${min}`);
  const free = total - L * min;
  const sum = weights.reduce((a, b) => a + b, 0) || 1;
  const exact = weights.map((w) => (free * w) / sum);
  const out = exact.map((x) => min + Math.floor(x));
  let left = total - out.reduce((a, b) => a + b, 0);
  const order = exact.map((x, l) => [x - Math.floor(x), l]).sort((a, b) => b[0] - a[0]);
  for (let i = 0; left > 0; i = (i + 1) % L, left--) out[order[i][1]]++;
  return out;
}
