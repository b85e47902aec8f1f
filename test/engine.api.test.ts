// The LLM API: text in/out like generate(), parallel sampling sharing prompt blocks (copy-on-write)
// with one seed stream per completion, streaming, abort, requests that can never fit, bad params,
// per-request metrics, the deterministic virtual clock, and no tensor leaks.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { VirtualClock } from '../lib/engine/clock';
import { LLM } from '../lib/engine/llm';
import { LLMEngine } from '../lib/engine/llmEngine';
import { generate, type LanguageModel } from '../lib/generate/generate';
import { loadModel } from '../lib/model/load';
import { loadTokenizer } from '../lib/generate/tokenizer';

let lm: LanguageModel;
let llm: LLM;
const prompts = ['In the beginning', 'And the LORD spake unto Moses, saying, Speak unto the children of Israel, and say unto them,', 'Blessed'];

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
  lm = { model: await loadModel('data/models/draft'), tokenizer: await loadTokenizer('data/models/draft') };
  llm = await LLM.load({ model: lm.model, tokenizer: lm.tokenizer, blockSize: 8, numBlocks: 64, maxNumSeqs: 8 });
});
afterAll(() => {
  llm.dispose();
  lm.model.dispose();
});

describe('LLM', () => {
  it('LLM.load from a directory; generate() gives what generate() gives, text and stop strings included', async () => {
    const before = tf.memory().numTensors;
    const own = await LLM.load({ model: 'data/models/draft', maxNumSeqs: 4 });
    const params = { temperature: 0, maxTokens: 40, stopStrings: ['LORD'] };
    const outs = await own.generate(prompts, params);
    for (let i = 0; i < prompts.length; i++) {
      const [ref] = await generate(lm, prompts[i], params);
      expect(outs[i].outputs[0].tokenIds).toEqual(ref.tokenIds);
      expect(outs[i].outputs[0].text).toEqual(ref.text);
      expect(outs[i].outputs[0].finishReason).toEqual(ref.finishReason);
    }
    own.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a request added with addRequest that finishes during generate() is handed out by the next step(), not lost', async () => {
    const side = llm.addRequest('Blessed', { temperature: 0, maxTokens: 3 });
    const [main] = await llm.generate('In the beginning', { temperature: 0, maxTokens: 24 });
    expect(main.outputs[0].tokenIds.length).toBe(24);
    const later = await llm.step();
    const got = later.find((o) => o.requestId === side);
    expect(got, 'the side request finished during generate() and must not be dropped').toBeDefined();
    const [ref] = await generate(lm, 'Blessed', { temperature: 0, maxTokens: 3 });
    expect(got!.outputs[0].tokenIds).toEqual(ref.tokenIds);
    expect(await llm.step()).toEqual([]);
  });

  it('seeded sampling: completion k of n uses seed + k, equals generate() with that seed; prompt blocks are shared, then copied on write', async () => {
    const params = { temperature: 1, topP: 0.95, seed: 11, maxTokens: 20, ignoreEos: true };
    const engine = llm.engine;
    const id = engine.addRequest(prompts[1], { ...params, n: 3 });
    let sawShared = false;
    let out;
    while (!out) {
      for (const o of await engine.step()) if (o.requestId === id) out = o;
      const view = engine.blockTableView();
      if (view.length === 3 && view[0].refCounts[0] === 3) sawShared = true;
      expect(engine.blockManager.checkInvariants(engine.liveSequences())).toEqual([]);
    }
    expect(sawShared).toBe(true);
    expect(engine.steps.at(-1)!.numForwardCalls).toBe(1); // the last step: one decode call for the 3 completions
    expect(out.outputs.map((o) => o.seed)).toEqual([11, 12, 13]);
    for (const o of out.outputs) {
      const [ref] = await generate(lm, prompts[1], { ...params, seed: o.seed });
      expect(o.tokenIds, `completion ${o.index}`).toEqual(ref.tokenIds);
    }
    expect(new Set(out.outputs.map((o) => o.text)).size).toBeGreaterThan(1);
    expect(engine.blockManager.numFreeBlocks).toBe(engine.config.numBlocks);
  });

  it('streams tokens per request; the deltas add up to the final text; breaking out aborts and frees', async () => {
    const before = tf.memory().numTensors;
    let text = '';
    let n = 0;
    const stream = llm.stream(prompts[0], { temperature: 0, maxTokens: 16, ignoreEos: true });
    let r = await stream.next();
    while (!r.done) {
      text += r.value.text;
      n++;
      r = await stream.next();
    }
    expect(n).toBe(16);
    expect(text).toBe(r.value.outputs[0].text);
    for await (const ev of llm.stream(prompts[1], { temperature: 0, maxTokens: 50 })) if (ev.token >= 0) break;
    expect(llm.engine.numUnfinished()).toBe(0);
    expect(llm.engine.blockManager.numFreeBlocks).toBe(llm.engine.config.numBlocks);
    while (llm.hasUnfinished()) await llm.step();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('abort mid-flight frees its blocks; the other requests finish unchanged', async () => {
    const engine = llm.engine;
    const params = { temperature: 0, maxTokens: 24, ignoreEos: true };
    const ids = prompts.map((p) => engine.addRequest(p, params));
    await engine.step();
    await engine.step();
    const held = engine.blockManager.numUsedBlocks;
    expect(engine.abort(ids[1])).toBe(true);
    expect(engine.blockManager.numUsedBlocks).toBeLessThan(held);
    expect(engine.abort('no-such-request')).toBe(false);
    const outs = new Map<string, import('../lib/engine/llmEngine').RequestOutput>();
    while (engine.hasUnfinished()) for (const o of await engine.step()) outs.set(o.requestId, o);
    expect(outs.get(ids[1])!.outputs[0].finishReason).toBe('abort');
    for (const i of [0, 2]) {
      const [ref] = await generate(lm, prompts[i], params);
      expect(outs.get(ids[i])!.outputs[0].tokenIds).toEqual(ref.tokenIds);
    }
    expect(engine.blockManager.numFreeBlocks).toBe(engine.config.numBlocks);
  });

  it('a request that can never fit fails alone with a clear error; the others finish', async () => {
    const tooLongForContext = Array.from({ length: 1024 }, (_, i) => (i * 7) % 8000);
    const tooLongForPool = Array.from({ length: 600 }, (_, i) => (i * 5) % 8000); // pool: 64 x 8 = 512 tokens
    const outs = await llm.generate([prompts[0], tooLongForContext, tooLongForPool, prompts[2]], { temperature: 0, maxTokens: 8 });
    expect(outs[1].error).toMatch(/1024 tokens but maxModelLen \(the context\) is 1024/);
    expect(outs[2].error).toMatch(/whole KV pool holds 512 .*can never fit/);
    expect(outs[1].outputs).toEqual([]);
    for (const i of [0, 3]) {
      expect(outs[i].error).toBeNull();
      expect(outs[i].outputs[0].tokenIds.length).toBeGreaterThan(0);
    }
    const [many] = await llm.generate(prompts[0], { n: 9, maxTokens: 2, seed: 1 });
    expect(many.error).toMatch(/n = 9 completions exceed maxNumSeqs = 8/);
  });

  it('bad sampling params, prompts and engine options are clear errors and queue nothing', async () => {
    await expect(llm.generate(prompts, { temperature: -1 })).rejects.toThrow(/temperature must be a finite number >= 0/);
    await expect(llm.generate(prompts, { topP: 0 })).rejects.toThrow(/topP must be/);
    await expect(llm.generate(prompts, { temprature: 1 } as never)).rejects.toThrow(/unknown sampling parameter 'temprature'/);
    await expect(llm.generate([prompts[0], [1, 99999]], {})).rejects.toThrow(/token id 99999/);
    await expect(llm.generate([prompts[0], ''], {})).rejects.toThrow(/prompt is empty/);
    expect(llm.engine.numUnfinished()).toBe(0);
    expect(() => new LLMEngine(lm.model, null, { blockSize: 0 })).toThrow(/blockSize must be a positive integer/);
    expect(() => new LLMEngine(lm.model, null, { maxModelLen: 5000 })).toThrow(/exceeds the model's context/);
    expect(() => new LLMEngine(lm.model, null, { watermark: 1 })).toThrow(/watermark must be a number in \[0, 1\), got 1/);
    expect(() => new LLMEngine(lm.model, null, { maxNumSeq: 3 } as never)).toThrow(/unknown engine option 'maxNumSeq'/);
  });

  it('metrics: TTFT = queue + prefill + first-token step; the virtual clock gives the same timeline every run', async () => {
    const run = async () => {
      const engine = new LLMEngine(lm.model, lm.tokenizer!, { maxNumBatchedTokens: 16, maxNumSeqs: 2, blockSize: 4 }, new VirtualClock());
      prompts.forEach((p, i) => engine.addRequest(p, { temperature: 0, maxTokens: 6, ignoreEos: true }, { arrivalTime: i * 5 }));
      const outs = [];
      while (engine.hasUnfinished()) outs.push(...(await engine.step()));
      engine.dispose();
      return { outs, steps: engine.steps };
    };
    const a = await run();
    const b = await run();
    expect(a.steps.map((s) => [s.startMs, s.endMs, s.numScheduledTokens])).toEqual(b.steps.map((s) => [s.startMs, s.endMs, s.numScheduledTokens]));
    for (const o of a.outs) {
      const m = o.outputs[0].metrics;
      expect(m.ttftQueueMs + m.ttftPrefillMs + m.ttftFirstTokenMs).toBeCloseTo(m.ttftMs, 6);
      expect(m.itlMs.length).toBe(5);
      expect(m.e2eMs).toBeGreaterThanOrEqual(m.ttftMs);
    }
    // the long prompt (two chunks or more) waited behind the budget: a non-zero prefill part
    const long = a.outs.find((o) => o.promptTokenIds.length > 16)!;
    expect(long.outputs[0].metrics.ttftPrefillMs).toBeGreaterThan(0);
    expect(a.steps.every((s) => s.liveTokenShare > 0 && s.liveTokenShare <= 1)).toBe(true);
  });
});
