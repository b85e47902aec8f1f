// Speculative decoding with the shipped target and draft: sampled output follows the target's
// distribution (and does not without the correction step), both KV caches are rolled back
// exactly, streaming matches the final output, nothing leaks, bad input is a clear error.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { generate, type LanguageModel } from '../lib/generate/generate';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import type { KVCache } from '../lib/kv/cache';
import { LlamaModel } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';
import { logitsToProbs, resolveSamplingParams, Rng } from '../lib/generate/sampling';
import { SpeculativeDecoder } from '../lib/spec/decoder';
import { ModelDrafter } from '../lib/spec/drafter';
import { speculativeGenerate, speculativeGenerateStream } from '../lib/spec/generate';
import type { SpecRow } from '../lib/spec/speculative';
import { loadTokenizer, type Tokenizer } from '../lib/generate/tokenizer';
import { yieldToEventLoop } from './golden';
import { makeWeights, maxAbsDiff, tinyConfig, weightSource } from './model.helpers';

let tokenizer: Tokenizer;
let lm: LanguageModel;
let draft: LlamaModel;

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
  tokenizer = await loadTokenizer('data/models/target');
  lm = { model: await loadModel('data/models/target'), tokenizer };
  draft = await loadModel('data/models/draft');
});
afterAll(() => {
  lm.model.dispose();
  draft.dispose();
});

async function lastLogits(model: LlamaModel, ids: number[]): Promise<Float32Array> {
  const cache = new ContiguousKVCache(model.kvShape, 1);
  const t = model.forward([ids], cache);
  const data = (await t.data()) as Float32Array;
  t.dispose();
  cache.dispose();
  return data;
}

// the K and V of the first n slots of every layer of a contiguous cache (batch of one)
async function cacheContents(cache: KVCache, n: number): Promise<Float32Array[]> {
  const c = cache as unknown as { k: tf.Tensor4D[]; v: tf.Tensor4D[] };
  const out: Float32Array[] = [];
  for (const t of [...c.k, ...c.v]) {
    const s = tf.slice(t, [0, 0, 0, 0], [-1, -1, n, -1]); // [1, Hkv, n, D]
    out.push((await s.data()) as Float32Array);
    s.dispose();
  }
  return out;
}

// plain decoding of `ids`: the prompt in one step, then one token per step, as generate() does
function plainCache(model: LlamaModel, prompt: readonly number[], rest: readonly number[]): ContiguousKVCache {
  const cache = new ContiguousKVCache(model.kvShape, 1);
  tf.dispose(model.forward([[...prompt]], cache));
  for (const t of rest) tf.dispose(model.forward([[t]], cache));
  return cache;
}

describe('sampled speculative decoding preserves the target distribution', () => {
  // Short context, temperature 1, no filter: the first token of a speculative step (gamma = 1:
  // the draft's token, or the resampled correction) over many seeded steps, binned as the
  // target's 8 most likely tokens + "other". Test: Pearson chi-square against the target's
  // softmax, df = 8, threshold 26.12 (p = 0.001). The law without the correction step is known
  // exactly (min(p, q) + beta p, beta = 1 - sum min(p, q)); the test checks it has power (expected
  // statistic > 3x the threshold) and that the same threshold rejects it empirically. The prompt is
  // the candidate where that law is furthest from p (a well-matched draft leaves little to correct).
  const TRIALS = 2400;
  const CHI2_CRITICAL = 26.12; // chi-square, 8 degrees of freedom, p = 0.001
  const CANDIDATES = ['The LORD is my', 'In the beginning', 'And Jesus said unto them,', 'Blessed are the', 'For God so loved the', 'And it came to pass'];
  const params = resolveSamplingParams({ temperature: 1, seed: 0 });

  async function counts(text: string, unsafeSkipCorrection: boolean, bins: number[]): Promise<number[]> {
    const prompt = tokenizer.encode(text);
    const rows: SpecRow[] = [{ prompt, output: [] }];
    const rngs = [new Rng(0)];
    const drafter = new ModelDrafter(draft, 1);
    const dec = new SpeculativeDecoder({ target: lm.model, drafter, rows, params, rngs, gamma: 1, unsafeSkipCorrection, keepTraces: false });
    const out = new Array(bins.length + 1).fill(0);
    try {
      for (let trial = 0; trial < TRIALS; trial++) {
        if (trial % 64 === 0) await yieldToEventLoop();
        rngs[0] = new Rng(1000 + trial); // one seed per run
        await dec.step([2]);
        const bin = bins.indexOf(rows[0].output[0]);
        out[bin < 0 ? bins.length : bin]++;
        // back to the bare prompt: both caches forget the step
        rows[0].output.length = 0;
        dec.targetCache.truncate([prompt.length - 1]);
        drafter.cache.truncate([Math.min(prompt.length - 1, drafter.cache.lengths()[0])]);
      }
    } finally {
      dec.dispose();
    }
    return out;
  }

  it(`first speculative token: chi-square vs the target softmax < ${CHI2_CRITICAL}; without correction it fails`, async () => {
    const start = tf.memory().numTensors;
    // per candidate prompt: the target's law p binned as its 8 most likely tokens + "other", and the
    // expected statistic of the law without the correction (the draft kept with min(p, q), else a
    // fresh draw from p)
    const setups = [];
    for (const text of CANDIDATES) {
      const prompt = tokenizer.encode(text);
      const p = logitsToProbs(await lastLogits(lm.model, prompt), params);
      const q = logitsToProbs(await lastLogits(draft, prompt), params);
      const bins = Array.from(p.keys()).sort((a, b) => p[b] - p[a]).slice(0, 8);
      const binned = (x: ArrayLike<number>) => {
        const inBins = bins.map((i) => x[i]);
        return [...inBins, 1 - inBins.reduce((a, b) => a + b, 0)];
      };
      const expected = binned(p);
      let beta = 1;
      for (let i = 0; i < p.length; i++) beta -= Math.min(p[i], q[i]);
      const biased = binned(Float64Array.from(p, (pi, i) => Math.min(pi, q[i]) + beta * pi));
      const power = biased.reduce((s, b, i) => s + (TRIALS * (b - expected[i]) ** 2) / expected[i], 0);
      setups.push({ text, bins, expected, power });
    }
    const { text, bins, expected, power } = setups.reduce((a, b) => (b.power > a.power ? b : a));
    expect(power, 'the test has power: the wrong law is far from p').toBeGreaterThan(3 * CHI2_CRITICAL);
    const chi2 = (observed: number[]) => observed.reduce((s, o, i) => s + (o - TRIALS * expected[i]) ** 2 / (TRIALS * expected[i]), 0);
    const tv = (c: number[]) => c.reduce((s, o, i) => s + Math.abs(o / TRIALS - expected[i]), 0) / 2;

    const good = await counts(text, false, bins);
    const bad = await counts(text, true, bins);
    console.log(
      `[spec distribution] "${text}", ${TRIALS} runs each: chi-square with correction ${chi2(good).toFixed(1)} (TV ${tv(good).toFixed(3)}), ` +
        `without ${chi2(bad).toFixed(1)} (TV ${tv(bad).toFixed(3)}; expected statistic ${power.toFixed(0)}); threshold ${CHI2_CRITICAL}`,
    );
    expect(chi2(good)).toBeLessThan(CHI2_CRITICAL);
    expect(chi2(bad)).toBeGreaterThan(CHI2_CRITICAL);
    expect(tf.memory().numTensors).toBe(start);
  });
});

describe('KV caches', () => {
  for (const temperature of [0, 0.9]) {
    it(`are rolled back exactly: after speculation they equal plain decoding of the accepted tokens (temperature ${temperature})`, async () => {
      const start = tf.memory().numTensors;
      const prompt = tokenizer.encode('And God said, Let there be light: and there was');
      const rows: SpecRow[] = [{ prompt, output: [] }];
      const drafter = new ModelDrafter(draft, 1);
      const dec = new SpeculativeDecoder({ target: lm.model, drafter, rows, params: resolveSamplingParams({ temperature }), rngs: [new Rng(11)], gamma: 4 });
      let rejected = 0;
      for (let s = 0; s < 8; s++) {
        const [r] = await dec.step([100]);
        if (r!.trace.accepted < r!.trace.drafted.length) rejected++;
      }
      const out = rows[0].output;
      const committed = prompt.length + out.length;
      // the cache rule: the target holds every committed token but the newest; the draft at most that
      expect(dec.targetCache.lengths()).toEqual([committed - 1]);
      const dLen = drafter.cache.lengths()[0];
      expect(dLen === committed - 1 || dLen === committed - 2).toBe(true);
      expect(rejected, 'some drafts were rejected, so something was rolled back').toBeGreaterThan(0);

      let worst = 0;
      for (const [model, cache, n] of [[lm.model, dec.targetCache, committed - 1], [draft, drafter.cache, dLen]] as const) {
        const seq = [...prompt, ...out];
        const plain = plainCache(model, prompt, seq.slice(prompt.length, n));
        expect(plain.lengths()).toEqual([n]);
        const a = await cacheContents(cache, n);
        const b = await cacheContents(plain, n);
        a.forEach((x, i) => (worst = Math.max(worst, maxAbsDiff(x, b[i]))));
        // and the next step sees the same thing
        const next = seq[n];
        const l1 = model.forward([[next]], cache);
        const l2 = model.forward([[next]], plain);
        worst = Math.max(worst, maxAbsDiff((await l1.data()) as Float32Array, (await l2.data()) as Float32Array));
        tf.dispose([l1, l2]);
        plain.dispose();
      }
      console.log(`[spec kv] temperature ${temperature}: ${out.length} tokens in 8 steps; max |speculative - plain| over both caches and next logits = ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(1e-4);
      dec.dispose();
      expect(tf.memory().numTensors).toBe(start);
    });
  }
});

describe('speculativeGenerate', () => {
  it('greedy equals generate() greedy for a batch of prompts (draft and prompt lookup), adaptive gamma too', async () => {
    const prompts = ['In the beginning', 'And the LORD spake unto Moses, saying,', 'Blessed are the'];
    const plain = await generate(lm, prompts, { temperature: 0, maxTokens: 24, ignoreEos: true });
    for (const options of [{ draft, gamma: 3 }, { draft: 'prompt-lookup' as const, gamma: 5 }, { draft, gamma: 'adaptive' as const, adaptive: { c: 0.15 } }]) {
      const spec = await speculativeGenerate(lm, prompts, { temperature: 0, maxTokens: 24, ignoreEos: true }, options);
      expect(spec.map((o) => o.tokenIds)).toEqual(plain.map((o) => o.tokenIds));
      expect(spec.map((o) => o.text)).toEqual(plain.map((o) => o.text));
      spec.forEach((o, i) => o.logprobs.forEach((lp, j) => expect(lp).toBeCloseTo(plain[i].logprobs[j], 3)));
    }
  });

  it('seeded sampling is reproducible; streaming matches the final output; stop strings work; traces add up', async () => {
    const sp = { temperature: 0.9, topP: 0.95, seed: 4, maxTokens: 40 };
    const a = await speculativeGenerate(lm, 'And Jesus said unto them,', sp, { draft: { model: draft, tokenizer } });
    const b = await speculativeGenerate(lm, 'And Jesus said unto them,', sp, { draft });
    expect(a[0].tokenIds).toEqual(b[0].tokenIds);
    const stream = speculativeGenerateStream(lm, 'And Jesus said unto them,', sp, { draft });
    const tokens: number[] = [];
    let text = '';
    let r = await stream.next();
    while (!r.done) {
      tokens.push(r.value.token);
      text += r.value.text;
      r = await stream.next();
    }
    expect(tokens).toEqual(a[0].tokenIds);
    expect(text).toBe(a[0].text);
    const trace = a[0].trace;
    expect(trace.reduce((n, t) => n + t.accepted + 1, 0)).toBeGreaterThanOrEqual(a[0].tokenIds.length);
    expect(a[0].spec.steps).toBe(trace.length);
    // a stop string ends the text even in the middle of a step's tokens
    const [stopped] = await speculativeGenerate(lm, 'In the beginning', { temperature: 0, maxTokens: 60, stopStrings: [' and'] }, { draft });
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.text.includes(' and')).toBe(false);
  });

  it('abandoning the stream frees everything', async () => {
    const start = tf.memory().numTensors;
    for await (const ev of speculativeGenerateStream(lm, 'In the beginning', { temperature: 0, maxTokens: 30 }, { draft })) {
      if (ev.token >= 0) break;
    }
    expect(tf.memory().numTensors).toBe(start);
  });

  it('clear errors: gamma <= 0, a draft of another vocabulary or tokenizer, no draft; nothing leaks', async () => {
    const start = tf.memory().numTensors;
    const run = (options: Parameters<typeof speculativeGenerate>[3], sp = {}) => speculativeGenerate(lm, 'In the beginning', { temperature: 0, maxTokens: 4, ...sp }, options);
    await expect(run({ draft, gamma: 0 })).rejects.toThrow(/gamma must be an integer >= 1 \(tokens drafted per step\), got 0/);
    await expect(run({ draft, gamma: -2 })).rejects.toThrow(/gamma must be an integer >= 1/);
    await expect(run({ draft, gamma: 2.5 })).rejects.toThrow(/gamma must be an integer >= 1/);
    const c = tinyConfig();
    const other = LlamaModel.fromWeights(c, weightSource(c, makeWeights(c, 1)), 'tiny');
    await expect(run({ draft: other })).rejects.toThrow(/draft model 'tiny' has a vocabulary of 96 tokens, the target 'target' 8192: .*same tokenizer/);
    other.dispose();
    const fakeTok: Tokenizer = { ...tokenizer, encode: (t: string) => tokenizer.encode(t).map((x) => (x + 1) % 8192) };
    await expect(run({ draft: { model: draft, tokenizer: fakeTok } })).rejects.toThrow(/draft tokenizer encodes differently/);
    await expect(run(undefined as never)).rejects.toThrow(/options.draft is required/);
    await expect(run({ draft: 'ngram' as never })).rejects.toThrow(/options.draft must be a LlamaModel/);
    await expect(run({ draft }, { n: 2 })).rejects.toThrow(/n must be 1/);
    await expect(run({ draft: 'prompt-lookup', promptLookup: { maxNgram: 0 } })).rejects.toThrow(/maxNgram must be an integer/);
    await expect(run({ draft, gamma: 'adaptive', adaptive: { max: 0 } })).rejects.toThrow(/adaptive max must be an integer >= 1/);
    expect(tf.memory().numTensors).toBe(start);
  });
});
