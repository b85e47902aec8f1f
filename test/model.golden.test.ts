// The Llama forward against the HF-transformers fp32 oracle (data/golden): logits at the last
// prompt position and after each of the first 8 greedy tokens within 1e-3, and 64 greedy tokens
// equal to the oracle's, for every golden prompt, target and draft, with the contiguous KV
// cache; the no-cache (full recompute) path for a few prompts.
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { NoKVCache } from '../lib/kv/none';
import type { LlamaModel } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';
import { SafetensorsFile } from '../lib/model/safetensors';

const TOL = 1e-3;
/** an oracle margin below this is a tie: a different argmax there is not an error */
const TIE = 1e-4;
const STEPS = 64;
const ROWS = 9;

interface Golden {
  prompts: { name: string; text: string; ids: number[] }[];
  models: Record<string, { entries: { name: string; logits_key: string; continuation: number[]; margins: number[] }[] }>;
}
const golden: Golden = JSON.parse(fs.readFileSync('data/golden/golden.json', 'utf8'));

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
});

for (const which of ['target', 'draft'] as const) {
  describe(`golden oracle: ${which}`, () => {
    let model: LlamaModel;
    let oracle: SafetensorsFile;
    const entries = golden.models[which].entries;

    beforeAll(async () => {
      model = await loadModel(`data/models/${which}`);
      oracle = SafetensorsFile.open(`data/golden/${which}.logits.safetensors`);
    });
    afterAll(() => {
      model?.dispose();
      oracle?.close();
    });

    it('logits within 1e-3 and greedy 64-token continuations equal the oracle (contiguous cache), every prompt', async () => {
      const startTensors = tf.memory().numTensors;
      let worst = 0;
      let worstWhere = '';
      let rowsChecked = 0;
      let tokensAgreed = 0;
      const ties: string[] = [];
      const failures: string[] = [];
      for (let p = 0; p < golden.prompts.length; p++) {
        const prompt = golden.prompts[p];
        const e = entries[p];
        expect(e.name).toBe(prompt.name);
        const ref = oracle.get(e.logits_key); // [9, V]
        const V = ref.shape[1];
        const cache = new ContiguousKVCache(model.kvShape, 1);
        let logits = model.forward([prompt.ids], cache); // [1, 1, V]
        let diverged = -1;
        for (let step = 0; step < STEPS; step++) {
          const row = (await logits.data()) as Float32Array;
          logits.dispose();
          if (step < ROWS && diverged < 0) {
            const err = maxAbsDiff(row, ref.data.subarray(step * V, (step + 1) * V));
            rowsChecked++;
            if (err > worst) [worst, worstWhere] = [err, `${prompt.name} row ${step}`];
          }
          const next = argmax(row);
          if (next !== e.continuation[step]) {
            if (e.margins[step] < TIE) {
              ties.push(`${prompt.name} step ${step} (margin ${e.margins[step]})`);
            } else {
              failures.push(`${prompt.name} step ${step}: got ${next}, oracle ${e.continuation[step]} (margin ${e.margins[step]})`);
            }
            diverged = step;
            break;
          }
          tokensAgreed++;
          if (step === STEPS - 1) break;
          logits = model.forward([[next]], cache);
        }
        expect(cache.lengths()).toEqual([prompt.ids.length + (diverged < 0 ? STEPS - 1 : diverged)]);
        cache.dispose();
        // after a tie before row 8, the rest of the oracle's rows follow the oracle's tokens
        if (diverged >= 0 && diverged < ROWS - 1) {
          const forced = [...prompt.ids, ...e.continuation.slice(0, ROWS - 1)];
          const all = model.forward([forced], new NoKVCache(model.kvShape, 1), { logits: ROWS });
          const data = (await all.data()) as Float32Array;
          all.dispose();
          for (let r = diverged + 1; r < ROWS; r++) {
            const err = maxAbsDiff(data.subarray(r * V, (r + 1) * V), ref.data.subarray(r * V, (r + 1) * V));
            rowsChecked++;
            if (err > worst) [worst, worstWhere] = [err, `${prompt.name} row ${r} (teacher-forced)`];
          }
        }
      }
      console.log(
        `[golden ${which}] ${golden.prompts.length} prompts, ${rowsChecked} logit rows: max |logit - oracle| = ` +
          `${worst.toExponential(2)} (at ${worstWhere}), tolerance ${TOL}; greedy tokens agreeing: ${tokensAgreed}` +
          (ties.length ? `; ties (oracle margin < ${TIE}), counted as pass: ${ties.join(', ')}` : '; no ties'),
      );
      expect(failures).toEqual([]);
      expect(worst).toBeLessThanOrEqual(TOL);
      expect(tf.memory().numTensors).toBe(startTensors);
    });

    it('no-cache path (full recompute each step) gives the oracle tokens for a few prompts', async () => {
      const startTensors = tf.memory().numTensors;
      for (const p of [1, 2, 4]) {
        const prompt = golden.prompts[p];
        const e = entries[p];
        const seq = [...prompt.ids];
        const cache = new NoKVCache(model.kvShape, 1);
        for (let step = 0; step < STEPS; step++) {
          const logits = model.forward([seq], cache);
          const next = argmax((await logits.data()) as Float32Array);
          logits.dispose();
          if (next !== e.continuation[step]) {
            expect(e.margins[step], `${prompt.name} step ${step}: ${next} vs ${e.continuation[step]}`).toBeLessThan(TIE);
            break;
          }
          seq.push(next);
        }
        expect(cache.bytes()).toBe(0);
      }
      expect(tf.memory().numTensors).toBe(startTensors);
    });

    it('logits for the last 9 positions of one teacher-forced prefill match the 9 oracle rows', async () => {
      let worst = 0;
      for (const p of [0, 3, 9, 21]) {
        const prompt = golden.prompts[p];
        const e = entries[p];
        const ref = oracle.get(e.logits_key);
        const V = ref.shape[1];
        const forced = [...prompt.ids, ...e.continuation.slice(0, ROWS - 1)];
        const cache = new ContiguousKVCache(model.kvShape, 1);
        const all = model.forward([forced], cache, { logits: ROWS });
        expect(all.shape).toEqual([1, ROWS, V]);
        worst = Math.max(worst, maxAbsDiff((await all.data()) as Float32Array, ref.data));
        all.dispose();
        cache.dispose();
      }
      console.log(`[golden ${which}] teacher-forced prefill, 4 prompts x 9 rows: max |logit - oracle| = ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(TOL);
    });
  });
}
