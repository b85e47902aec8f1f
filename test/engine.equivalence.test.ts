// The engine's greedy outputs equal single-sequence generate() for every request, whatever the
// batch mix, chunked prefill, preemption, prefix caching, block size or scheduling policy.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import type { EngineConfigInput } from '../lib/engine/config';
import { LLMEngine } from '../lib/engine/llmEngine';
import { generate } from '../lib/generate/generate';
import type { LlamaModel } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';
import { loadGolden } from './golden';

const golden = loadGolden();
let model: LlamaModel;
const MAX_TOKENS = 24;
// ragged prompts: golden prompts of 1..97 tokens, plus three sharing a 40-token "system prompt"
const system = golden.prompts[11].ids.slice(0, 40);
const prompts: number[][] = [
  ...[0, 1, 2, 4, 5, 6, 7, 9, 10].map((i) => golden.prompts[i].ids),
  [...system, ...golden.prompts[3].ids],
  [...system, ...golden.prompts[4].ids],
  [...system, ...golden.prompts[2].ids, 9],
];
let reference: number[][];

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
  model = await loadModel('data/models/draft');
  reference = [];
  for (const p of prompts) {
    const [out] = await generate({ model }, p, { temperature: 0, maxTokens: MAX_TOKENS, ignoreEos: true });
    reference.push(out.tokenIds);
  }
});
afterAll(() => model.dispose());

// run every prompt through one engine, arrivals spread over the first steps
async function runEngine(config: EngineConfigInput, order: number[] = prompts.map((_, i) => i)) {
  const before = tf.memory().numTensors;
  const engine = new LLMEngine(model, null, config);
  const got = new Map<string, number[]>();
  let k = 0;
  const addSome = (n: number) => {
    for (; n > 0 && k < order.length; n--, k++) {
      engine.addRequest(prompts[order[k]], { temperature: 0, maxTokens: MAX_TOKENS, ignoreEos: true }, { requestId: String(order[k]) });
    }
  };
  addSome(4);
  while (engine.hasUnfinished() || k < order.length) {
    for (const out of await engine.step()) {
      expect(out.error).toBeNull();
      got.set(out.requestId, out.outputs[0].tokenIds);
    }
    expect(engine.blockManager.checkInvariants(engine.liveSequences())).toEqual([]);
    addSome(2);
  }
  expect(engine.blockManager.numFreeBlocks).toBe(engine.config.numBlocks);
  const steps = engine.steps;
  engine.dispose();
  expect(tf.memory().numTensors).toBe(before);
  return { got, steps, engine };
}

function expectSame(got: Map<string, number[]>) {
  prompts.forEach((_, i) => expect(got.get(String(i)), `prompt ${i} (${prompts[i].length} tokens)`).toEqual(reference[i]));
}

describe('engine greedy outputs equal generate()', () => {
  it('continuous batching, default blocks, whole prompts in one step', async () => {
    const { got, steps } = await runEngine({ maxNumSeqs: 8 });
    expectSame(got);
    // requests joined a running batch: some step mixes a prefill with decodes
    expect(steps.some((s) => s.prefills.length > 0 && s.decodes.length > 0)).toBe(true);
  });

  it('chunked prefill with a small token budget (prompts split over many steps)', async () => {
    const { got, steps } = await runEngine({ maxNumBatchedTokens: 10, maxNumSeqs: 6, blockSize: 8 });
    expectSame(got);
    expect(steps.some((s) => s.prefills.some((p) => p.start > 0 && p.start % 8 !== 0))).toBe(true);
    expect(Math.max(...steps.map((s) => s.numScheduledTokens))).toBeLessThanOrEqual(10);
  });

  it('preemption by recompute when the pool runs out (tiny pool, block size 4)', async () => {
    const { got, steps } = await runEngine({ blockSize: 4, numBlocks: 40, maxNumSeqs: 8, maxNumBatchedTokens: 64 });
    expectSame(got);
    expect(steps.reduce((a, s) => a + s.preempted.length, 0)).toBeGreaterThan(0);
  });

  it('a watermark of free blocks on admission: fewer preemptions, the same outputs', async () => {
    const config = { blockSize: 4, numBlocks: 40, maxNumSeqs: 8, maxNumBatchedTokens: 64 };
    const preemptions = (steps: { preempted: number[] }[]) => steps.reduce((a, s) => a + s.preempted.length, 0);
    const none = await runEngine({ ...config, watermark: 0 });
    const kept = await runEngine({ ...config, watermark: 0.25 });
    expectSame(kept.got);
    expect(preemptions(kept.steps)).toBeLessThan(preemptions(none.steps));
  });

  it('prefix caching: requests sharing a system prompt hit the cache and still match', async () => {
    // the shared-prefix prompts arrive after the first of them has finished its prefill
    const { got, steps } = await runEngine({ blockSize: 8, maxNumSeqs: 4 }, [9, 0, 1, 2, 10, 11, 3, 4, 5, 6, 7, 8]);
    expectSame(got);
    expect(steps.reduce((a, s) => a + s.prefixCacheHitTokens, 0)).toBeGreaterThanOrEqual(2 * 40 - 16);
  });

  it('block size 1 and 5, prefix caching off', async () => {
    for (const blockSize of [1, 5]) {
      const { got } = await runEngine({ blockSize, enablePrefixCaching: false, maxNumSeqs: 5, maxNumBatchedTokens: 48 });
      expectSame(got);
    }
  });

  it('static batching baseline', async () => {
    const { got, steps } = await runEngine({ policy: 'static', maxNumSeqs: 4 });
    expectSame(got);
    // no admission while a batch runs: every admitting step starts with an empty batch
    for (let i = 1; i < steps.length; i++) if (steps[i].admitted.length > 0) expect(steps[i - 1].numRunning).toBe(0);
  });
});
