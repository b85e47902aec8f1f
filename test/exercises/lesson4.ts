// Plausible wrong answers to lesson 4's build-it exercises: each must fail its check, with a hint
// (test/exercises.test.ts). Keyed by exercise id.
type Out = { accepted: number; token: number };

// inverse-CDF draw from non-negative weights with one uniform number
function draw(w: ArrayLike<number>, u: number): number {
  let total = 0;
  for (let i = 0; i < w.length; i++) total += Math.max(0, w[i]);
  let cum = 0;
  let last = 0;
  for (let i = 0; i < w.length; i++) {
    if (w[i] <= 0) continue;
    cum += w[i];
    last = i;
    if (u * total < cum) return i;
  }
  return last;
}

// the accept rule, with switches for each mistake
function rule(mistake: 'no-residual' | 'always-keep' | 'inverted-ratio' | 'no-bonus' | 'keep-if-likelier') {
  return (p: Float32Array[], q: Float32Array[], drafted: number[], random: () => number): Out => {
    const gamma = drafted.length;
    for (let i = 0; i < gamma; i++) {
      const x = drafted[i];
      if (mistake === 'always-keep') continue;
      const a = mistake === 'inverted-ratio' ? Math.min(1, q[i][x] / p[i][x]) : Math.min(1, p[i][x] / q[i][x]);
      if (mistake === 'keep-if-likelier' ? p[i][x] >= q[i][x] : random() < a) continue;
      if (mistake === 'no-residual') return { accepted: i, token: draw(p[i], random()) };
      const res = Array.from(p[i], (pv, v) => Math.max(0, pv - q[i][v]));
      return { accepted: i, token: draw(res, random()) };
    }
    if (mistake === 'no-bonus') return { accepted: gamma, token: draw(p[gamma - 1], random()) };
    return { accepted: gamma, token: draw(p[gamma], random()) };
  };
}

export const wrong: Record<string, { name: string; fn: unknown }[]> = {
  'l4.accept-reject': [
    { name: 'resamples from p instead of the residual after a rejection', fn: rule('no-residual') },
    { name: 'keeps every draft', fn: rule('always-keep') },
    { name: 'accepts with min(1, q/p) instead of min(1, p/q)', fn: rule('inverted-ratio') },
    { name: 'keeps a draft exactly when p >= q (no coin)', fn: rule('keep-if-likelier') },
    { name: 'draws the bonus token from p_gamma instead of p_{gamma+1}', fn: rule('no-bonus') },
  ],
  'l4.expected-tokens': [
    { name: 'counts the kept drafts only (forgets the target\'s own token)', fn: (a: number, g: number) => (a === 1 ? g : (a * (1 - a ** g)) / (1 - a)) },
    { name: 'exponent gamma instead of gamma + 1', fn: (a: number, g: number) => (a === 1 ? g : (1 - a ** g) / (1 - a)) },
    { name: 'the closed form without the alpha = 1 case', fn: (a: number, g: number) => (1 - a ** (g + 1)) / (1 - a) },
  ],
  'l4.prompt-lookup': [
    {
      name: 'takes the earliest occurrence instead of the most recent',
      fn: (c: number[], g: number, m: number) => {
        for (let n = Math.min(m, c.length - 1); n >= 1; n--) {
          for (let j = 0; j <= c.length - n - 1; j++) if (c.slice(j, j + n).every((t, k) => t === c[c.length - n + k])) return c.slice(j + n, j + n + g);
        }
        return [];
      },
    },
    {
      name: 'matches maxNgram only (no back-off to shorter n-grams)',
      fn: (c: number[], g: number, m: number) => {
        const n = Math.min(m, c.length - 1);
        if (n < 1) return [];
        for (let j = c.length - n - 1; j >= 0; j--) if (c.slice(j, j + n).every((t, k) => t === c[c.length - n + k])) return c.slice(j + n, j + n + g);
        return [];
      },
    },
    {
      name: 'off by one: drops the first token after the match',
      fn: (c: number[], g: number, m: number) => {
        for (let n = Math.min(m, c.length - 1); n >= 1; n--) {
          for (let j = c.length - n - 1; j >= 0; j--) if (c.slice(j, j + n).every((t, k) => t === c[c.length - n + k])) return c.slice(j + n + 1, j + n + 1 + g);
        }
        return [];
      },
    },
  ],
  'l4.greedy-accept': [
    {
      name: 'emits the rejected draft instead of the target\'s token',
      fn: (t: number[], d: number[]) => {
        let n = 0;
        while (n < d.length && t[n] === d[n]) n++;
        return { accepted: n, token: n < d.length ? d[n] : t[n] };
      },
    },
    {
      name: 'off by one: the target\'s token one position later',
      fn: (t: number[], d: number[]) => {
        let n = 0;
        while (n < d.length && t[n] === d[n]) n++;
        return { accepted: n, token: t[Math.min(n + 1, d.length)] };
      },
    },
    {
      name: 'counts every matching draft, not only the prefix',
      fn: (t: number[], d: number[]) => {
        const n = d.filter((x, i) => x === t[i]).length;
        return { accepted: n, token: t[n] };
      },
    },
  ],
};

