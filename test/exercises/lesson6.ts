// Plausible wrong answers to lesson 6's build-it exercises: each must fail its check, with a hint
// (test/exercises.test.ts). Keyed by exercise id.
import type { Hardware, LlamaConfig, StepCostInput } from '../../lib';
import type { StepSizes } from '../../lib/exercises/lesson6';
import { pickGamma, requestKvBytes, stepMs } from './lesson6.right';

type Kv = (c: LlamaConfig, b: number, p: number, o: number, bs: number) => number;
const kv = (m: Parameters<typeof requestKvBytes>[5]): Kv => (c, b, p, o, bs) => requestKvBytes(c, b, p, o, bs, m);
const step = (m: Parameters<typeof stepMs>[3]) => (hw: Hardware, z: StepSizes, s: StepCostInput) => stepMs(hw, z, s, m);
const gamma = (m: Parameters<typeof pickGamma>[4]) => (a: number, c: number, v: (g: number) => number, max: number) => pickGamma(a, c, v, max, m);

export const wrong: Record<string, { name: string; fn: unknown }[]> = {
  'l6.request-kv-bytes': [
    { name: 'counts query heads instead of KV heads', fn: kv({ heads: true }) },
    { name: 'keys only (forgets the values)', fn: kv({ noTwo: true }) },
    { name: 'off by one: stores the newest token too', fn: kv({ allTokens: true }) },
    { name: 'exact tokens, no whole blocks', fn: kv({ noBlocks: true }) },
  ],
  'l6.step-ms': [
    { name: 'adds compute and memory time instead of taking the longer', fn: step({ sum: true }) },
    { name: 'the datasheet peaks, without the efficiencies', fn: step({ noEff: true }) },
    { name: 'reads the weights only (no KV bytes)', fn: step({ noKv: true }) },
    { name: 'forgets the fixed overhead per step', fn: step({ noOverhead: true }) },
  ],
  'l6.best-gamma': [
    { name: 'the textbook verify cost (always one step)', fn: gamma({ textbook: true }) },
    { name: 'maximises tokens per step, ignoring the cost', fn: gamma({ tokensOnly: true }) },
    { name: 'ties go to the larger gamma', fn: gamma({ tiesUp: true }) },
    { name: 'counts kept drafts only (forgets the target\'s own token)', fn: gamma({ noBonus: true }) },
  ],
};
