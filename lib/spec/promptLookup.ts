// Prompt lookup (n-gram) drafting (lesson 4): no draft model. The draft for the next gamma tokens
// is whatever followed the most recent earlier occurrence of the sequence's last n tokens. Free to
// compute, and right surprisingly often when the output copies its input (summaries, code edits,
// quoting) or repeats itself; useless on free text, where it usually finds nothing to propose.
// The drafter is deterministic: q is one-hot at each proposed token, so the accept rule becomes
// "accept d with probability p(d)" and a rejection resamples from p with d removed.

import type { Rng } from '../generate/sampling';
import type { Drafter } from './drafter';
import { sequenceOf, type DraftProposal, type SpecRow, type SpecSamplingParams } from './speculative';

/** Options of prompt-lookup drafting. */
export interface PromptLookupOptions {
  /** longest n-gram to match (tried first); default 3 */
  maxNgram?: number;
  /** shortest n-gram to match; default 1 */
  minNgram?: number;
}

function resolveLookup(options: PromptLookupOptions): Required<PromptLookupOptions> {
  const maxNgram = options.maxNgram ?? 3;
  const minNgram = options.minNgram ?? 1;
  if (!Number.isInteger(minNgram) || minNgram < 1) throw new Error(`minNgram must be an integer >= 1, got ${String(minNgram)}`);
  if (!Number.isInteger(maxNgram) || maxNgram < minNgram) {
    throw new Error(`maxNgram must be an integer >= minNgram (${minNgram}), got ${String(maxNgram)}`);
  }
  return { maxNgram, minNgram };
}

/**
 * Up to `gamma` tokens proposed from `context` itself (lesson 4): for n = maxNgram down to
 * minNgram, find the most recent earlier occurrence of the last n tokens and return what followed
 * it. [] when nothing matches.
 */
export function promptLookup(context: readonly number[], gamma: number, options: PromptLookupOptions = {}): number[] {
  const { maxNgram, minNgram } = resolveLookup(options);
  const L = context.length;
  for (let n = Math.min(maxNgram, L - 1); n >= minNgram; n--) {
    // the pattern is context[L-n, L); candidates start at j <= L-n-1 (an earlier occurrence)
    for (let j = L - n - 1; j >= 0; j--) {
      let k = 0;
      while (k < n && context[j + k] === context[L - n + k]) k++;
      if (k === n) return context.slice(j + n, Math.min(j + n + gamma, L));
    }
  }
  return [];
}

/** A Drafter that proposes by prompt lookup (lesson 4); holds no tensors. */
export class PromptLookupDrafter implements Drafter {
  readonly name = 'prompt lookup';
  private readonly options: Required<PromptLookupOptions>;

  constructor(options: PromptLookupOptions = {}) {
    this.options = resolveLookup(options);
  }

  async propose(rows: readonly SpecRow[], gammas: readonly number[], _params: SpecSamplingParams, _rngs: readonly Rng[]): Promise<DraftProposal[]> {
    return rows.map((row, b) => ({ tokens: gammas[b] > 0 ? promptLookup(sequenceOf(row), gammas[b], this.options) : [], probs: null }));
  }

  rollback(): void {}

  bytes(): number {
    return 0;
  }

  dispose(): void {}
}
