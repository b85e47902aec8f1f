import { describe, expect, it } from 'vitest';
import {
  applyPenalties,
  applyTemperature,
  argmax,
  logitsToLogprobs,
  logitsToProbs,
  minPFilter,
  resolveSamplingParams,
  Rng,
  sampleFromProbs,
  sampleToken,
  StopChecker,
  topKFilter,
  topKIndices,
  topPFilter,
  xoshiro128ss,
  type SamplingParamsInput,
} from '../lib/generate/sampling';

const f32 = (xs: number[]): Float32Array => Float32Array.from(xs);
const kept = (row: Float32Array): number[] => [...row.keys()].filter((i) => row[i] !== -Infinity);
const params = (p: SamplingParamsInput) => resolveSamplingParams({ seed: 0, ...p });

// logits [2, 1, 0, -1]: Z = e^2 + e + 1 + e^-1 = 11.4752, probs = 0.6439, 0.2369, 0.0871, 0.0321
const L = f32([2, 1, 0, -1]);

describe('logitsToLogprobs', () => {
  it('is log-softmax: logit - log(sum exp)', () => {
    const logZ = Math.log(Math.exp(2) + Math.exp(1) + 1 + Math.exp(-1)); // 2.440189
    const lp = logitsToLogprobs(L);
    [2, 1, 0, -1].forEach((x, i) => expect(lp[i]).toBeCloseTo(x - logZ, 6));
    expect(lp[0]).toBeCloseTo(-0.440189, 5);
  });
  it('is stable for large logits and keeps -Infinity', () => {
    const lp = logitsToLogprobs(f32([1002, 1001, 1000, 999, -Infinity]));
    const ref = logitsToLogprobs(L);
    for (let i = 0; i < 4; i++) expect(lp[i]).toBeCloseTo(ref[i], 4);
    expect(lp[4]).toBe(-Infinity);
  });
  it('rejects NaN and all -Infinity rows', () => {
    expect(() => logitsToLogprobs(f32([0, NaN]))).toThrow(/logits\[1\] is NaN/);
    expect(() => logitsToLogprobs(f32([-Infinity, -Infinity]))).toThrow(/-Infinity/);
  });
});

describe('filters on logits [2, 1, 0, -1]', () => {
  it('topK=2 keeps ids {0, 1} with their logits', () => {
    expect(Array.from(topKFilter(L, 2))).toEqual([2, 1, -Infinity, -Infinity]);
    expect(kept(topKFilter(L, 1))).toEqual([0]);
    expect(kept(topKFilter(L, 0))).toEqual([0, 1, 2, 3]); // off
  });
  it('topK keeps every logit tied with the k-th largest', () => {
    expect(kept(topKFilter(f32([1, 3, 3, 0]), 1))).toEqual([1, 2]);
  });
  it('topP: 0.7 -> {0, 1} (0.644 < 0.7 <= 0.881); 0.6 -> {0}; 0.95 -> {0, 1, 2} (0.968)', () => {
    expect(Array.from(topPFilter(L, 0.7))).toEqual([2, 1, -Infinity, -Infinity]);
    expect(kept(topPFilter(L, 0.6))).toEqual([0]);
    expect(kept(topPFilter(L, 0.95))).toEqual([0, 1, 2]);
    expect(kept(topPFilter(L, 0.99))).toEqual([0, 1, 2, 3]);
    expect(kept(topPFilter(L, 1))).toEqual([0, 1, 2, 3]); // off
  });
  it('topP keeps at least one token', () => {
    expect(kept(topPFilter(L, 1e-9))).toEqual([0]);
  });
  it('minP: 0.3 -> {0, 1} (e^-1 = 0.37 >= 0.3 > e^-2 = 0.14); 0.1 -> {0, 1, 2}', () => {
    expect(Array.from(minPFilter(L, 0.3))).toEqual([2, 1, -Infinity, -Infinity]);
    expect(kept(minPFilter(L, 0.1))).toEqual([0, 1, 2]);
    expect(kept(minPFilter(L, 1))).toEqual([0]);
    expect(kept(minPFilter(L, 0))).toEqual([0, 1, 2, 3]); // off
  });
  it('temperature divides the logits', () => {
    expect(Array.from(applyTemperature(L, 2))).toEqual([1, 0.5, 0, -0.5]);
    expect(() => applyTemperature(L, 0)).toThrow(/temperature/);
  });
  it('filters do not modify their input', () => {
    const copy = Float32Array.from(L);
    topKFilter(L, 1);
    topPFilter(L, 0.5);
    minPFilter(L, 0.5);
    applyTemperature(L, 3);
    expect(L).toEqual(copy);
  });
  it('logitsToProbs renormalises what the filters keep', () => {
    const p = logitsToProbs(L, params({ topK: 2 })); // [e/(e+1), 1/(e+1), 0, 0]
    expect(p[0]).toBeCloseTo(Math.E / (Math.E + 1), 6);
    expect(p[1]).toBeCloseTo(1 / (Math.E + 1), 6);
    expect([p[2], p[3]]).toEqual([0, 0]);
    const t = logitsToProbs(L, params({ temperature: 2 })); // softmax([1, .5, 0, -.5])
    const z = Math.exp(1) + Math.exp(0.5) + 1 + Math.exp(-0.5);
    expect(t[3]).toBeCloseTo(Math.exp(-0.5) / z, 6);
    expect(Array.from(logitsToProbs(L, params({ temperature: 0 })))).toEqual([1, 0, 0, 0]);
    const m = logitsToProbs(L, params({ minP: 0.3 })); // {0, 1} renormalised
    expect(m[0]).toBeCloseTo(Math.E / (Math.E + 1), 6);
    expect(m[2]).toBe(0);
  });
  it('top-p renormalises over what top-k kept (vLLM order): topK=3, topP=0.9 keeps {0, 1}', () => {
    // over {0, 1, 2}: 0.665, 0.245, 0.090 -> cum 0.665, 0.910 >= 0.9; top-p first would keep {0, 1, 2}
    const p = logitsToProbs(L, params({ topK: 3, topP: 0.9 }));
    expect(p[1]).toBeCloseTo(1 / (Math.E + 1), 6);
    expect([p[2], p[3]]).toEqual([0, 0]);
  });
});

// reference implementations with a full sort, for large random rows
function refTopK(x: Float32Array, k: number): number[] {
  const sorted = Array.from(x).sort((a, b) => b - a);
  return [...x.keys()].filter((i) => x[i] >= sorted[k - 1]);
}
function refTopP(x: Float32Array, p: number): number[] {
  const ids = [...x.keys()].sort((a, b) => x[b] - x[a] || a - b);
  const max = x[ids[0]];
  const w = ids.map((i) => Math.exp(x[i] - max));
  const Z = w.reduce((a, b) => a + b, 0);
  let cum = 0;
  for (let r = 0; r < ids.length; r++) {
    cum += w[r] / Z;
    if (cum >= p) return ids.slice(0, r + 1).sort((a, b) => a - b);
  }
  return ids.sort((a, b) => a - b);
}

describe('filters on a large vocabulary match a full sort', () => {
  const rng = new Rng(5);
  const V = 32768;
  const x = Float32Array.from({ length: V }, () => 8 * rng.next() ** 3); // skewed, many near-ties
  it.each([1, 2, 50, 1000, 20000])('topK=%i', (k) => {
    expect(kept(topKFilter(x, k))).toEqual(refTopK(x, k));
  });
  it.each([0.1, 0.5, 0.9, 0.999])('topP=%f', (p) => {
    expect(kept(topPFilter(x, p))).toEqual(refTopP(x, p));
  });
  it('topKIndices sorts by value descending, ties by lowest id', () => {
    expect(Array.from(topKIndices(f32([1, 5, 3, 5, 3]), 4))).toEqual([1, 3, 2, 4]);
    expect(Array.from(topKIndices(f32([1, 5, 3, 5, 3]), 3))).toEqual([1, 3, 2]); // tie cut: lowest id
    expect(kept(topPFilter(f32([1, 1, 1, 1]), 0.5))).toEqual([0, 1]); // nucleus ties: lowest ids
    const ids = topKIndices(x, 100);
    expect(Array.from(ids)).toEqual([...x.keys()].sort((a, b) => x[b] - x[a] || a - b).slice(0, 100));
  });
});

describe('penalties', () => {
  it('repetition over prompt+output, presence and frequency over output', () => {
    const p = { repetitionPenalty: 2, presencePenalty: 0.5, frequencyPenalty: 0.25 };
    const out = applyPenalties(f32([1, -1, 2, 0]), p, { promptTokenIds: [0], outputTokenIds: [1, 1] });
    // id 0: 1 / 2; id 1: -1 * 2 - 0.5 - 0.25 * 2; ids 2, 3 untouched
    expect(Array.from(out)).toEqual([0.5, -3, 2, 0]);
  });
  it('greedy with a repetition penalty avoids the repeated token', () => {
    const sp = params({ temperature: 0, repetitionPenalty: 10 });
    const history = { promptTokenIds: [], outputTokenIds: [0] };
    expect(sampleToken(L, sp, new Rng(0), history).token).toBe(1);
    expect(sampleToken(L, sp, new Rng(0)).token).toBe(0);
  });
});

describe('Rng', () => {
  it('xoshiro128** matches the reference output for state {1, 2, 3, 4}', () => {
    const s = new Uint32Array([1, 2, 3, 4]);
    const ref = [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804];
    expect(ref.map(() => xoshiro128ss(s))).toEqual(ref);
  });
  it('is pinned: Rng(42) gives the stored stream (changing the generator breaks replays)', () => {
    const r = new Rng(42);
    expect([r.next(), r.next(), r.next()]).toEqual([0.6606157250317258, 0.6632236903799482, 0.08399304731575985]);
  });
  it('same seed, same 1000 draws; different seed, different draws; all in [0, 1)', () => {
    const draw = (seed: number) => {
      const r = new Rng(seed);
      return Array.from({ length: 1000 }, () => r.next());
    };
    const a = draw(123);
    expect(draw(123)).toEqual(a);
    expect(draw(124)).not.toEqual(a);
    expect(draw(123 + 2 ** 32)).not.toEqual(a); // the high half of the seed counts too
    expect(a.every((u) => u >= 0 && u < 1)).toBe(true);
    expect(new Set(a).size).toBe(1000);
  });
  it('same seed gives the same 1000 sampled tokens', () => {
    const sp = params({ temperature: 1, topP: 0.95 });
    const run = (seed: number) => {
      const r = new Rng(seed);
      return Array.from({ length: 1000 }, () => sampleToken(L, sp, r).token);
    };
    expect(run(7)).toEqual(run(7));
    expect(run(8)).not.toEqual(run(7));
  });
  it('a request without a seed gets a random one, recorded in the params', () => {
    const a = resolveSamplingParams({});
    const b = resolveSamplingParams({});
    expect(Number.isSafeInteger(a.seed)).toBe(true);
    expect(a.seed).not.toBe(b.seed); // 1 in 2^32 chance of a false failure
    expect(resolveSamplingParams({ seed: 5 }).seed).toBe(5);
  });
});

describe('sampleToken', () => {
  it('greedy takes the argmax, ties to the lowest id, and draws nothing from the rng', () => {
    const rng = new Rng(1);
    const res = sampleToken(f32([0, 5, 5, 1]), params({ temperature: 0 }), rng);
    expect(res.token).toBe(1);
    expect(rng.next()).toBe(new Rng(1).next());
    expect(argmax(f32([3, 1, 3]))).toBe(0);
  });
  it('logprob is the raw (temperature 1, unfiltered) log-softmax; topLogprobs sorted', () => {
    const sp = params({ temperature: 0.5, topK: 2, logprobs: 3 });
    const raw = logitsToLogprobs(L);
    const res = sampleToken(L, sp, new Rng(3));
    expect([0, 1]).toContain(res.token);
    expect(res.logprob).toBe(raw[res.token]);
    expect(res.topLogprobs).toEqual([0, 1, 2].map((t) => ({ token: t, logprob: raw[t] })));
    expect(sampleToken(L, params({}), new Rng(3)).topLogprobs).toBeUndefined();
  });

  // chi-square goodness of fit of N seeded draws against the distribution `probs`
  function chiSquare(counts: number[], probs: number[], N: number): number {
    return probs.reduce((s, p, i) => (p > 0 ? s + (counts[i] - N * p) ** 2 / (N * p) : s), 0);
  }
  function draw(logits: Float32Array, p: SamplingParamsInput, N: number): number[] {
    const sp = params(p);
    const rng = new Rng(2024);
    const counts = new Array<number>(logits.length).fill(0);
    for (let i = 0; i < N; i++) counts[sampleToken(logits, sp, rng).token]++;
    return counts;
  }
  const softmax = (x: number[]) => {
    const w = x.map((v) => Math.exp(v));
    const z = w.reduce((a, b) => a + b, 0);
    return w.map((v) => v / z);
  };
  const N = 20000;
  const X = [1, 0.5, 0, -0.5, -1, 2];
  // chi-square with 5 degrees of freedom: P(chi2 > 20.52) = 0.001
  const CHI2_5_DOF_P001 = 20.52;

  it('empirical distribution over 20000 draws matches softmax(logits / T) (chi2 < 20.52, TV < 0.02)', () => {
    const counts = draw(f32(X), { temperature: 0.8 }, N);
    const expected = softmax(X.map((x) => x / 0.8));
    expect(chiSquare(counts, expected, N)).toBeLessThan(CHI2_5_DOF_P001);
    const tv = 0.5 * expected.reduce((s, p, i) => s + Math.abs(counts[i] / N - p), 0);
    expect(tv).toBeLessThan(0.02);
    // the check has power: the same counts do not fit the temperature-1 distribution
    expect(chiSquare(counts, softmax(X), N)).toBeGreaterThan(CHI2_5_DOF_P001);
  });
  it('with topK=3 it matches softmax over the 3 kept tokens and never draws the others', () => {
    const counts = draw(f32(X), { topK: 3 }, N);
    expect([counts[3], counts[4]]).toEqual([0, 0]);
    expect(counts[2]).toBe(0);
    const top = softmax([1, 0.5, 2]);
    const expected = [top[0], top[1], 0, 0, 0, top[2]];
    // 2 degrees of freedom: P(chi2 > 13.82) = 0.001
    expect(chiSquare(counts, expected, N)).toBeLessThan(13.82);
  });
});

describe('resolveSamplingParams', () => {
  it('fills defaults', () => {
    const p = resolveSamplingParams({ seed: 1 });
    expect(p).toMatchObject({ n: 1, temperature: 1, topK: 0, topP: 1, minP: 0, maxTokens: 16, logprobs: 0 });
    expect(p.stopStrings).toEqual([]);
    expect(resolveSamplingParams({ temperature: undefined, seed: 1 }).temperature).toBe(1);
  });
  const bad: [string, unknown, RegExp][] = [
    ['temperature', -1, /^temperature must be a finite number >= 0.*, got -1$/],
    ['temperature', NaN, /^temperature must be .*, got NaN$/],
    ['temperature', Infinity, /^temperature must be .*, got Infinity$/],
    ['topK', -1, /^topK must be an integer >= 0.*, got -1$/],
    ['topK', 1.5, /^topK must be an integer .*, got 1\.5$/],
    ['topP', 0, /^topP must be a number in \(0, 1\].*, got 0$/],
    ['topP', 1.5, /^topP must be .*, got 1\.5$/],
    ['minP', -0.1, /^minP must be a number in \[0, 1\].*, got -0\.1$/],
    ['minP', 1.1, /^minP must be .*, got 1\.1$/],
    ['maxTokens', 0, /^maxTokens must be an integer >= 1, got 0$/],
    ['logprobs', 21, /^logprobs must be an integer in \[0, 20\], got 21$/],
    ['logprobs', -1, /^logprobs must be .*, got -1$/],
    ['seed', 1.5, /^seed must be a safe integer.*, got 1\.5$/],
    ['stopTokenIds', ['a'], /^stopTokenIds must be an array of integers >= 0, got \["a"\]$/],
    ['stopTokenIds', [-1], /^stopTokenIds must be .*, got \[-1\]$/],
    ['stopStrings', [''], /^stopStrings must be an array of non-empty strings, got \[""\]$/],
    ['stopStrings', 'stop', /^stopStrings must be .*, got "stop"$/],
    ['n', 0, /^n must be an integer >= 1, got 0$/],
    ['repetitionPenalty', 0, /^repetitionPenalty must be a finite number > 0.*, got 0$/],
    ['presencePenalty', 3, /^presencePenalty must be a number in \[-2, 2\].*, got 3$/],
    ['frequencyPenalty', -2.5, /^frequencyPenalty must be .*, got -2\.5$/],
    ['ignoreEos', 1, /^ignoreEos must be a boolean, got 1$/],
    ['temperature', '0.5', /^temperature must be .*, got "0\.5"$/],
  ];
  it.each(bad)('%s = %o is rejected, naming the field, the range and the value', (field, value, message) => {
    expect(() => resolveSamplingParams({ [field]: value } as SamplingParamsInput)).toThrow(message);
  });
  it('rejects unknown fields (typos)', () => {
    expect(() => resolveSamplingParams({ temprature: 0.5 } as SamplingParamsInput)).toThrow(
      /^unknown sampling parameter 'temprature'; known: .*temperature/,
    );
    expect(() => resolveSamplingParams({ top_k: 5 } as SamplingParamsInput)).toThrow(/'top_k'/);
  });
  it('accepts the edges of each range', () => {
    const p = { temperature: 0, topK: 0, topP: 1, minP: 1, maxTokens: 1, logprobs: 20, seed: -3 };
    expect(resolveSamplingParams(p)).toMatchObject(p);
  });
  it('copies the stop lists', () => {
    const stopStrings = ['a'];
    const p = resolveSamplingParams({ stopStrings });
    stopStrings.push('b');
    expect(p.stopStrings).toEqual(['a']);
  });
});

describe('StopChecker', () => {
  const checker = (p: SamplingParamsInput, eos: number[] = []) => new StopChecker(params({ maxTokens: 100, ...p }), eos);
  function feed(c: StopChecker, pieces: string[], ids?: number[]) {
    const statuses = pieces.map((s, i) => c.push(ids?.[i] ?? 100 + i, s));
    return { statuses, streamed: statuses.map((s) => s.delta).join(''), last: statuses[statuses.length - 1] };
  }

  it('stops on a stop string spanning several tokens, excluding it from the text', () => {
    const c = checker({ stopStrings: ['</s>'] });
    const { statuses, streamed, last } = feed(c, ['Hello', ' wor', 'ld', '</', 's', '>']);
    expect(last).toMatchObject({ finished: true, finishReason: 'stop', stopReason: '</s>' });
    expect(statuses.slice(0, -1).every((s) => !s.finished)).toBe(true);
    expect(c.text).toBe('Hello world');
    expect(streamed).toBe('Hello world'); // nothing of the stop string was streamed early
    expect(statuses.some((s) => s.delta.includes('<'))).toBe(false);
    expect(() => c.push(1, 'x')).toThrow(/after the sequence finished/);
  });
  it('drops text after a stop string inside one token and releases a false start', () => {
    const c = checker({ stopStrings: ['STOP', 'END!'] });
    const { streamed, last } = feed(c, ['a S', 'T x', ' ST', 'OP b END!']);
    expect(last).toMatchObject({ finishReason: 'stop', stopReason: 'STOP' }); // the earliest match wins
    expect(c.text).toBe('a ST x ');
    expect(streamed).toBe('a ST x ');
  });
  it('includeStopStrInOutput keeps the stop string', () => {
    const c = checker({ stopStrings: ['</s>'], includeStopStrInOutput: true });
    const { streamed } = feed(c, ['ab</', 's>cd']);
    expect(c.text).toBe('ab</s>');
    expect(streamed).toBe('ab</s>');
  });
  it('stops on a stop token id without its text; EOS unless ignoreEos', () => {
    const c = checker({ stopTokenIds: [7] });
    const { last } = feed(c, ['hi', '<|end|>'], [1, 7]);
    expect(last).toMatchObject({ finished: true, finishReason: 'stop', stopReason: 7 });
    expect(c.text).toBe('hi');
    const e = checker({}, [2]);
    expect(feed(e, ['a', '</s>'], [5, 2]).last.stopReason).toBe(2);
    const ignore = checker({ ignoreEos: true }, [2]);
    expect(feed(ignore, ['a', '</s>'], [5, 2]).last.finished).toBe(false);
  });
  it('finishes with length at maxTokens; a stop string on the last token reports stop', () => {
    const c = checker({ maxTokens: 3 });
    const { statuses, streamed } = feed(c, ['a', 'b', 'c']);
    expect(statuses.map((s) => s.finishReason)).toEqual([null, null, 'length']);
    expect(streamed).toBe('abc');
    expect(c.numTokens).toBe(3);
    const s = checker({ maxTokens: 2, stopStrings: ['bc'] });
    expect(feed(s, ['ab', 'cd']).last).toMatchObject({ finishReason: 'stop', stopReason: 'bc' });
    expect(s.text).toBe('a');
  });
  it('with no stop strings streams every delta at once', () => {
    const { statuses } = feed(checker({}), ['x', 'y']);
    expect(statuses.map((s) => s.delta)).toEqual(['x', 'y']);
  });
});

describe('sampleFromProbs', () => {
  it('accepts unnormalised weights and never picks a zero weight', () => {
    const rng = new Rng(9);
    for (let i = 0; i < 200; i++) expect([1, 3]).toContain(sampleFromProbs(f32([0, 2, 0, 6]), rng));
    expect(() => sampleFromProbs(f32([0, 0]), rng)).toThrow(/every weight is 0/);
  });
});

describe('greedy fast path', () => {
  it('gives the same token and raw logprob as the general path (logprobs requested)', () => {
    const rng = new Rng(1);
    for (let trial = 0; trial < 20; trial++) {
      const logits = Float32Array.from({ length: 5000 }, () => (rng.next() - 0.5) * 20);
      const fast = sampleToken(logits, resolveSamplingParams({ temperature: 0 }), rng);
      const slow = sampleToken(logits, resolveSamplingParams({ temperature: 0, logprobs: 1 }), rng);
      expect(fast.token).toBe(slow.token);
      expect(fast.logprob).toBeCloseTo(slow.logprob, 5);
      expect(fast.logprob).toBeCloseTo(logitsToLogprobs(logits)[fast.token], 5);
      expect(fast.topLogprobs).toBeUndefined();
    }
  });
});
