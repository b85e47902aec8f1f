// generate(): naive (recompute) and cached modes give the same tokens; a batch of different-length
// prompts gives what each prompt gives alone; seeded sampling is reproducible; streaming matches the
// final output and frees everything when abandoned; bad input is a clear error and leaks nothing.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { generate, generateStream, type LanguageModel } from '../lib/generate/generate';
import { loadModel } from '../lib/model/load';
import { OutputRecorder, tokenLatencies } from '../lib/generate/output';
import { resolveSamplingParams } from '../lib/generate/sampling';
import { loadTokenizer } from '../lib/generate/tokenizer';
import { agreement, loadGolden } from './golden';

const golden = loadGolden();
let lm: LanguageModel;
let draft: LanguageModel;

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
  lm = { model: await loadModel('data/models/target'), tokenizer: await loadTokenizer('data/models/target') };
  draft = { model: await loadModel('data/models/draft'), tokenizer: await loadTokenizer('data/models/draft') };
});
afterAll(() => {
  lm.model.dispose();
  draft.model.dispose();
});

const prompts = ['In the beginning', 'And the LORD spake unto Moses, saying, Speak unto the children of Israel, and say unto them,', 'Blessed'];

describe('generate', () => {
  it('cached greedy decoding reproduces the HF oracle continuations (generate level)', async () => {
    for (const i of [0, 5, 12]) {
      const p = golden.prompts[i];
      const [out] = await generate(lm, p.ids, { temperature: 0, maxTokens: 64, ignoreEos: true });
      const a = agreement(out.tokenIds, golden.models.target.entries[i]);
      expect(a.prefix === 64 || a.tie, `${p.name} diverges at ${a.prefix}`).toBe(true);
    }
  });

  it('naive and cached modes give identical tokens, greedy and seeded sampling', async () => {
    for (const params of [{ temperature: 0 }, { temperature: 0.9, topP: 0.95, seed: 7 }]) {
      const cached = await generate(draft, prompts, { ...params, maxTokens: 24, ignoreEos: true }, { mode: 'cached' });
      const naive = await generate(draft, prompts, { ...params, maxTokens: 24, ignoreEos: true }, { mode: 'naive' });
      expect(naive.map((o) => o.tokenIds)).toEqual(cached.map((o) => o.tokenIds));
      expect(naive.map((o) => o.text)).toEqual(cached.map((o) => o.text));
      expect(cached[0].metrics.kvBytes).toBeGreaterThan(0);
      expect(naive[0].metrics.kvBytes).toBe(0);
    }
  });

  it('a batch of different-length prompts equals each prompt alone', async () => {
    for (const params of [{ temperature: 0 }, { temperature: 1, topK: 50, seed: 3 }]) {
      const batch = await generate(lm, prompts, { ...params, maxTokens: 20, ignoreEos: true });
      for (let i = 0; i < prompts.length; i++) {
        const [alone] = await generate(lm, prompts[i], { ...params, maxTokens: 20, ignoreEos: true });
        expect(batch[i].tokenIds, `prompt ${i}`).toEqual(alone.tokenIds);
      }
    }
  });

  it('a seeded sampled run is reproducible and another seed differs', async () => {
    const run = (seed: number) => generate(lm, prompts[0], { temperature: 1, seed, maxTokens: 32, ignoreEos: true });
    const [a] = await run(11);
    const [b] = await run(11);
    const [c] = await run(12);
    expect(b.tokenIds).toEqual(a.tokenIds);
    expect(c.tokenIds).not.toEqual(a.tokenIds);
    expect(a.seed).toBe(11);
  });

  it('streams the same text and tokens as the final output', async () => {
    const stream = generateStream(lm, prompts, { temperature: 0.8, seed: 5, maxTokens: 30 });
    const texts = prompts.map(() => '');
    const tokens: number[][] = prompts.map(() => []);
    let r = await stream.next();
    while (!r.done) {
      texts[r.value.index] += r.value.text;
      tokens[r.value.index].push(r.value.token);
      r = await stream.next();
    }
    const outs = r.value;
    expect(texts).toEqual(outs.map((o) => o.text));
    expect(tokens).toEqual(outs.map((o) => o.tokenIds));
    for (const o of outs) {
      expect(o.metrics.outputTokens).toBe(o.tokenIds.length);
      expect(o.metrics.ttftMs).toBeGreaterThan(0);
      expect(o.metrics.itlMs.length).toBe(o.tokenIds.length - 1);
    }
  });

  it('stops at a stop string (excluded from the text), at eos, and at maxTokens', async () => {
    const [free] = await generate(lm, 'And God said,', { temperature: 0, maxTokens: 40, ignoreEos: true });
    const word = free.text.trim().split(/\s+/)[3];
    const [stopped] = await generate(lm, 'And God said,', { temperature: 0, maxTokens: 40, stopStrings: [word] });
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.stopReason).toBe(word);
    expect(free.text.startsWith(stopped.text)).toBe(true);
    expect(stopped.text).not.toContain(word);
    expect(free.finishReason).toBe('length');
    expect(free.tokenIds.length).toBe(40);
    const stopId = free.tokenIds[2];
    const [byId] = await generate(lm, 'And God said,', { temperature: 0, maxTokens: 40, stopTokenIds: [stopId] });
    expect(byId.finishReason).toBe('stop');
    expect(byId.stopReason).toBe(stopId);
    expect(byId.tokenIds).toEqual(free.tokenIds.slice(0, byId.tokenIds.length));
    expect(byId.tokenIds.at(-1)).toBe(stopId);
  });

  it('bad input is a clear error, leaks no tensors, and does not disturb the next call', async () => {
    const before = tf.memory().numTensors;
    await expect(generate(lm, '', {})).rejects.toThrow(/prompt 0 is empty/);
    await expect(generate(lm, [[1, 2], []], {})).rejects.toThrow(/prompt 1 is empty/);
    await expect(generate(lm, new Array(1024).fill(5), {})).rejects.toThrow(/1024 tokens, but the model's context is 1024/);
    await expect(generate(lm, [1, 99999], {})).rejects.toThrow(/token id 99999/);
    await expect(generate(lm, 'hi', { temperature: -1 })).rejects.toThrow(/temperature/);
    await expect(generate(lm, 'hi', { topP: 2 } as never)).rejects.toThrow(/topP/);
    await expect(generate(lm, 'hi', {}, { mode: 'fast' as never })).rejects.toThrow(/mode must be/);
    await expect(generate({ model: lm.model }, 'text', {})).rejects.toThrow(/no tokenizer/);
    expect(tf.memory().numTensors).toBe(before);
    const [ok] = await generate(lm, 'hi', { temperature: 0, maxTokens: 4 });
    expect(ok.tokenIds.length).toBe(4);
  });

  it('frees the cache when a stream is abandoned mid-way, and at the end of the context', async () => {
    const before = tf.memory().numTensors;
    let n = 0;
    for await (const ev of generateStream(lm, prompts, { temperature: 0, maxTokens: 50 })) {
      if (++n === 10) break;
      expect(ev.index).toBeGreaterThanOrEqual(0);
    }
    expect(tf.memory().numTensors).toBe(before);
    const [edge] = await generate(draft, new Array(1020).fill(7), { temperature: 0, maxTokens: 100, ignoreEos: true });
    expect(edge.tokenIds.length).toBe(4);
    expect(edge.finishReason).toBe('length');
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('OutputRecorder (the per-token bookkeeping of generate, speculativeGenerate and the engine)', () => {
  const letters = { decode: (ids: readonly number[]) => ids.map((i) => String.fromCharCode(96 + i)).join('') }; // 1 -> 'a'
  const params = resolveSamplingParams({ maxTokens: 10, stopStrings: ['cd'], logprobs: 1 });
  const token = (t: number) => ({ token: t, logprob: -t, topLogprobs: [{ token: t, logprob: -t }] });

  it('holds back a possible stop string, cuts it, and reports the stop in the event', () => {
    const rec = new OutputRecorder({ promptTokenIds: [1], params, eosTokenIds: [], tokenizer: letters, index: 2 });
    const events = [2, 3, 4].map((t, i) => rec.record(token(t), 10 * (i + 1)));
    expect(events.map((e) => e.text)).toEqual(['', 'b', '']); // 'c' could start 'cd'
    expect(events[2]).toMatchObject({ index: 2, token: 4, finished: true, finishReason: 'stop' });
    expect(events[2].requestId).toBeUndefined();
    expect(rec.result()).toEqual({ text: 'b', tokenIds: [2, 3, 4], logprobs: [-2, -3, -4], topLogprobs: [[token(2).topLogprobs[0]], [token(3).topLogprobs[0]], [token(4).topLogprobs[0]]], stopReason: 'cd' });
    expect(rec.latencies(0)).toEqual({ ttftMs: 10, tpotMs: 10, itlMs: [10, 10], e2eMs: 30, decodeTokensPerSecond: 100 });
    expect(() => rec.record(token(5), 40)).toThrow(/already finished/);
  });

  it('ends with length at maxLength, releasing the held-back text; events carry a request id when given', () => {
    const rec = new OutputRecorder({ promptTokenIds: [1, 1], params, eosTokenIds: [], tokenizer: letters, maxLength: 4, requestId: 'r' });
    rec.record(token(2), 1);
    const last = rec.record(token(3), 2);
    expect(last).toMatchObject({ requestId: 'r', text: 'bc', finished: true, finishReason: 'length' }); // 'b' was held back
    expect(rec.text).toBe('bc');
    expect(tokenLatencies([], 5, 9)).toEqual({ ttftMs: 4, tpotMs: 0, itlMs: [], e2eMs: 4, decodeTokensPerSecond: 0 });
  });
});
