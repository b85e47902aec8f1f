// Randomized add / step / abort against a tiny KV pool (preemption, prefix-cache hits, forks,
// copy-on-write all happen): after every step the block manager's invariants hold (no block
// owned twice, ref counts = table holders, free list = unreferenced blocks); when idle every
// block is free; no tensor leaks; finished greedy requests equal generate().
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { LLMEngine, type RequestOutput } from '../lib/engine/llmEngine';
import { generate } from '../lib/generate/generate';
import type { LlamaModel } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';
import { Rng } from '../lib/generate/sampling';

let model: LlamaModel;
beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
  model = await loadModel('data/models/draft');
});
afterAll(() => model.dispose());

const reference = new Map<string, number[]>();
async function greedyReference(prompt: number[], maxTokens: number): Promise<number[]> {
  const key = `${prompt.join(',')}|${maxTokens}`;
  if (!reference.has(key)) {
    const [out] = await generate({ model }, prompt, { temperature: 0, maxTokens, ignoreEos: true });
    reference.set(key, out.tokenIds);
  }
  return reference.get(key)!;
}

describe('engine fuzz', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`random add/step/abort keeps the block manager consistent (seed ${seed})`, async () => {
      const rng = new Rng(seed);
      const int = (lo: number, hi: number) => lo + Math.floor(rng.next() * (hi - lo + 1));
      const blockSize = [1, 4, 16, 5][seed - 1];
      const before = tf.memory().numTensors;
      const engine = new LLMEngine(model, null, {
        blockSize,
        numBlocks: Math.ceil(80 / blockSize),
        maxNumSeqs: int(3, 6),
        maxNumBatchedTokens: int(8, 64),
        enablePrefixCaching: true,
      });
      const prefixes = [0, 1, 2].map(() => Array.from({ length: int(5, 24) }, () => int(1, 8000)));
      type Spec = { prompt: number[]; maxTokens: number; greedy: boolean; n: number };
      const live = new Map<string, Spec>();
      const added = new Map<string, Spec>();
      const outputs: RequestOutput[] = [];
      let aborted = 0;
      for (let iter = 0; iter < 120; iter++) {
        const r = rng.next();
        if (r < 0.35 && iter < 90) {
          const prompt = [...(rng.next() < 0.6 ? prefixes[int(0, 2)] : []), ...Array.from({ length: int(1, 20) }, () => int(1, 8000))];
          const greedy = rng.next() < 0.6;
          const n = greedy ? 1 : int(1, 3);
          const maxTokens = int(1, 16);
          const id = engine.addRequest(prompt, { temperature: greedy ? 0 : 1, seed: iter, n, maxTokens, ignoreEos: true });
          live.set(id, { prompt, maxTokens, greedy, n });
          added.set(id, { prompt, maxTokens, greedy, n });
        } else if (r < 0.33 && live.size > 0) {
          const ids = [...live.keys()];
          const id = ids[int(0, ids.length - 1)];
          expect(engine.abort(id)).toBe(true);
          live.delete(id);
          aborted++;
        } else {
          outputs.push(...(await engine.step()));
        }
        expect(engine.blockManager.checkInvariants(engine.liveSequences())).toEqual([]);
        for (const o of outputs) live.delete(o.requestId);
      }
      while (engine.hasUnfinished()) {
        outputs.push(...(await engine.step()));
        expect(engine.blockManager.checkInvariants(engine.liveSequences())).toEqual([]);
      }
      expect(engine.blockManager.numFreeBlocks).toBe(engine.config.numBlocks);
      expect(engine.blockManager.checkInvariants([])).toEqual([]);
      // every request came back once; greedy ones that were not aborted equal generate()
      expect(new Set(outputs.map((o) => o.requestId)).size).toBe(outputs.length);
      expect(outputs.length).toBe(added.size);
      let checked = 0;
      for (const o of outputs) {
        expect(o.error).toBeNull();
        const spec = added.get(o.requestId)!;
        expect(o.outputs.length).toBe(spec.n);
        if (!spec.greedy || o.outputs[0].finishReason === 'abort') continue;
        expect(o.outputs[0].tokenIds, `request ${o.requestId}`).toEqual(await greedyReference(spec.prompt, spec.maxTokens));
        checked++;
      }
      expect(checked).toBeGreaterThanOrEqual(2);
      console.log(`seed ${seed}: ${outputs.length} requests, ${checked} greedy checked, ${aborted} aborted, ${engine.steps.reduce((a, s) => a + s.preempted.length, 0)} preemptions, ${engine.blockManager.stats.hitTokens} prefix-cache hit tokens`);
      expect(engine.steps.reduce((a, s) => a + s.preempted.length, 0)).toBeGreaterThan(0);
      expect(aborted).toBeGreaterThan(0);
      engine.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
