// Statistics of measured samples (lesson 5's serving figures, every benchmark's timings): one
// percentile definition for the whole project, the one numpy uses by default.

/**
 * The p-th percentile (p in 0..100) by linear interpolation between the closest ranks (numpy's
 * default; p = 50 is the median); NaN for no values.
 */
export function percentile(values: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be in [0, 100], got ${p}`);
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const x = (p / 100) * (s.length - 1);
  const lo = Math.floor(x);
  const hi = Math.ceil(x);
  return s[lo] + (s[hi] - s[lo]) * (x - lo);
}
