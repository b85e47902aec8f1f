// Correct answers to lesson 4's build-it exercises (the same code as notebooks/solutions/04-*.ipynb).

function draw(w: ArrayLike<number>, u: number): number {
  let total = 0;
  for (let i = 0; i < w.length; i++) total += w[i];
  let cum = 0;
  let last = -1;
  for (let i = 0; i < w.length; i++) {
    if (w[i] <= 0) continue;
    cum += w[i];
    last = i;
    if (u * total < cum) return i;
  }
  return last;
}

export const right: Record<string, unknown> = {
  'l4.accept-reject': (p: Float32Array[], q: Float32Array[], drafted: number[], random: () => number) => {
    const gamma = drafted.length;
    for (let i = 0; i < gamma; i++) {
      const x = drafted[i];
      const a = Math.min(1, p[i][x] / q[i][x]);
      if (a >= 1 || random() < a) continue;
      const residual = p[i].map((pv, v) => Math.max(0, pv - q[i][v]));
      return { accepted: i, token: draw(residual, random()) };
    }
    return { accepted: gamma, token: draw(p[gamma], random()) };
  },
  'l4.expected-tokens': (alpha: number, gamma: number) => {
    let e = 0;
    for (let k = 0; k <= gamma; k++) e += alpha ** k;
    return e;
  },
  'l4.prompt-lookup': (context: number[], gamma: number, maxNgram: number) => {
    const L = context.length;
    for (let n = Math.min(maxNgram, L - 1); n >= 1; n--) {
      for (let j = L - n - 1; j >= 0; j--) {
        let k = 0;
        while (k < n && context[j + k] === context[L - n + k]) k++;
        if (k === n) return context.slice(j + n, j + n + gamma);
      }
    }
    return [];
  },
  'l4.greedy-accept': (targetTokens: number[], drafted: number[]) => {
    let n = 0;
    while (n < drafted.length && drafted[n] === targetTokens[n]) n++;
    return { accepted: n, token: targetTokens[n] };
  },
};
