// Greedy speculative decoding returns the target's greedy tokens: on every golden prompt, with the
// draft model and with prompt lookup, speculativeGenerate agrees with the HF oracle's greedy
// continuation (an fp32 tie at the first difference counts as agreement, see golden.ts).
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import type { LanguageModel } from '../lib/generate/generate';
import { loadModel } from '../lib/model/load';
import type { LlamaModel } from '../lib/model/llama';
import { speculativeGenerate } from '../lib/spec/generate';
import { loadTokenizer } from '../lib/generate/tokenizer';
import { agreement, loadGolden, yieldToEventLoop } from './golden';

const TOKENS = 32;
const golden = loadGolden();
let lm: LanguageModel;
let draft: LlamaModel;

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
  lm = { model: await loadModel('data/models/target'), tokenizer: await loadTokenizer('data/models/target') };
  draft = await loadModel('data/models/draft');
});
afterAll(() => {
  lm.model.dispose();
  draft.dispose();
});

describe('greedy speculative decoding = target greedy, every golden prompt', () => {
  for (const drafter of ['draft model', 'prompt lookup'] as const) {
    it(`${drafter}: ${TOKENS} tokens per prompt agree with the oracle`, async () => {
      const start = tf.memory().numTensors;
      const entries = golden.models.target.entries;
      let accepted = 0;
      let drafted = 0;
      let steps = 0;
      for (let i = 0; i < golden.prompts.length; i++) {
        await yieldToEventLoop();
        const p = golden.prompts[i];
        // gamma varies with the prompt so that several step shapes are exercised
        const gamma = 1 + (i % 6);
        const [out] = await speculativeGenerate(lm, p.ids, { temperature: 0, maxTokens: TOKENS, ignoreEos: true }, {
          draft: drafter === 'draft model' ? draft : 'prompt-lookup',
          gamma,
        });
        expect(out.tokenIds.length).toBe(TOKENS);
        const a = agreement(out.tokenIds, entries[i]);
        expect(a.prefix >= TOKENS || a.tie, `${p.name} (gamma ${gamma}) diverges from the oracle at token ${a.prefix}`).toBe(true);
        accepted += out.spec.accepted;
        drafted += out.spec.drafted;
        steps += out.spec.steps;
      }
      console.log(`[spec golden] ${drafter}: ${golden.prompts.length} prompts agree; ${accepted}/${drafted} drafts accepted, ${((golden.prompts.length * TOKENS) / steps).toFixed(2)} tokens per step`);
      // the drafter did real work: some drafts accepted, some rejected
      expect(accepted).toBeGreaterThan(0);
      expect(accepted).toBeLessThan(drafted);
      expect(tf.memory().numTensors).toBe(start);
    });
  }
});
