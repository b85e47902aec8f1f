// A speculative decoding session over a batch of rows (lesson 4): owns the target KV cache and a
// drafter, and runs one speculative step at a time: draft, verify, accept/reject, rollback.
// speculativeGenerate (generate.ts) drives it; a notebook or a test can drive it step by step.

import type { KVCache } from '../kv/cache';
import { ContiguousKVCache } from '../kv/contiguous';
import type { LlamaModel } from '../model/llama';
import { isGreedy, type Rng } from '../generate/sampling';
import { gammaPolicy, type AdaptiveGammaOptions, type GammaPolicy } from './adaptive';
import type { Drafter } from './drafter';
import { acceptReject, capGamma, modelForward, rollback, targetProbs, verify, type DraftProposal, type SpecRow, type SpecSamplingParams } from './speculative';
import { SpecStats, type StepTrace } from './stats';

/** Configuration of a SpeculativeDecoder (lesson 4). */
export interface SpeculativeDecoderConfig {
  target: LlamaModel;
  drafter: Drafter;
  /** the sequences; the decoder appends accepted tokens to their `output` */
  rows: SpecRow[];
  params: SpecSamplingParams;
  /** one random stream per row */
  rngs: Rng[];
  /** drafts per step: a number, or 'adaptive' (one AdaptiveGamma per row) */
  gamma?: number | 'adaptive';
  adaptive?: AdaptiveGammaOptions;
  /** the target's cache (default contiguous) */
  targetCache?: KVCache;
  /** @internal distribution test only: skip the residual correction (see acceptReject) */
  unsafeSkipCorrection?: boolean;
  /** keep every StepTrace in `stats.traces` (default true) */
  keepTraces?: boolean;
}

/** What one step gave one row. */
export interface RowStep {
  /** tokens appended to the row: accepted drafts, then the resampled or bonus token */
  tokens: number[];
  /** target logits [V] that scored each of `tokens` */
  logits: Float32Array[];
  trace: StepTrace;
}

/** Speculative decoding over a batch of rows, one step at a time (lesson 4). Call dispose(). */
export class SpeculativeDecoder {
  readonly target: LlamaModel;
  readonly drafter: Drafter;
  readonly rows: SpecRow[];
  readonly targetCache: KVCache;
  readonly stats: SpecStats;
  private readonly params: SpecSamplingParams;
  private readonly rngs: Rng[];
  /** how many drafts each row asks for (fixed or adaptive) */
  private readonly gammas: GammaPolicy[];
  private readonly greedy: boolean;
  private readonly unsafeSkipCorrection: boolean;
  private steps = 0;

  constructor(config: SpeculativeDecoderConfig) {
    const { target, rows } = config;
    if (rows.length === 0) throw new Error('speculative decoding needs at least one row');
    if (config.rngs.length !== rows.length) throw new Error(`${rows.length} rows need ${rows.length} rngs, got ${config.rngs.length}`);
    this.gammas = rows.map(() => gammaPolicy(config.gamma ?? 4, config.adaptive));
    this.target = target;
    this.drafter = config.drafter;
    this.rows = rows;
    this.params = config.params;
    this.rngs = config.rngs;
    this.greedy = isGreedy(config.params);
    this.unsafeSkipCorrection = config.unsafeSkipCorrection ?? false;
    this.targetCache = config.targetCache ?? new ContiguousKVCache(target.kvShape, rows.length);
    if (this.targetCache.batchSize !== rows.length) {
      throw new Error(`target cache holds ${this.targetCache.batchSize} sequences, there are ${rows.length} rows`);
    }
    this.stats = new SpecStats(config.keepTraces ?? true);
  }

  /** gamma the next step would use for row b (before capping to `limit` and the context) */
  gammaOf(b: number): number {
    return this.gammas[b].gamma;
  }

  /**
   * One speculative step for every row b with limits[b] !== null; limits[b] = tokens still
   * wanted (drafts are capped at limits[b] - 1: the step always adds one more). Appends the
   * emitted tokens to the rows and rolls both caches back to them.
   */
  async step(limits: readonly (number | null)[]): Promise<(RowStep | null)[]> {
    const { rows, target } = this;
    const maxPositions = target.config.maxPositions;
    const active = limits.map((l) => l !== null);
    if (!active.some(Boolean)) throw new Error('step: no active row');
    const gammas = rows.map((row, b) => {
      if (!active[b]) return 0;
      const len = row.prompt.length + row.output.length;
      if (len >= maxPositions) throw new Error(`row ${b}: the sequence fills the context (${maxPositions} tokens)`);
      // the target cache will hold len + gamma tokens after verify
      return capGamma(this.gammaOf(b), { tokensLeft: limits[b]!, room: maxPositions - len });
    });
    const stepIndex = this.steps++;

    // 1. draft
    const t0 = performance.now();
    const proposals: (DraftProposal | null)[] = await this.drafter.propose(rows, gammas, this.params, this.rngs);
    const t1 = performance.now();
    // 2. verify: gamma + 1 target distributions per row in one forward pass
    const logits = await verify(modelForward(target, this.targetCache), rows, proposals.map((p, b) => (active[b] ? p : null)));
    const t2 = performance.now();
    // 3. accept / reject, row by row
    const results = rows.map((row, b) => {
      if (!active[b]) return null;
      const prop = proposals[b]!;
      const p = targetProbs(logits[b], row, prop.tokens, this.params); // [gamma + 1][V]
      return acceptReject(p, prop, this.rngs[b], { greedy: this.greedy, unsafeSkipCorrection: this.unsafeSkipCorrection });
    });
    const t3 = performance.now();

    // commit, then 4. rollback both caches to the committed tokens
    const out = results.map((r, b): RowStep | null => {
      if (!r) return null;
      const prop = proposals[b]!;
      const tokens = [...prop.tokens.slice(0, r.accepted), r.token];
      rows[b].output.push(...tokens);
      this.gammas[b].observe(prop.tokens.length, r.accepted);
      const trace: StepTrace = {
        step: stepIndex,
        row: b,
        gamma: gammas[b],
        drafted: prop.tokens,
        accepted: r.accepted,
        acceptProbs: r.acceptProbs,
        token: r.token,
        kind: r.kind,
        draftMs: t1 - t0,
        verifyMs: t2 - t1,
        acceptMs: t3 - t2,
      };
      this.stats.record(trace);
      return { tokens, logits: logits[b].slice(0, tokens.length), trace };
    });
    const committed = rows.map((row, b) => (active[b] ? row.prompt.length + row.output.length : null));
    rollback(this.targetCache, committed);
    this.drafter.rollback(rows.map((row, b) => (active[b] ? row : null)));
    return out;
  }

  /** Tensor bytes held by both caches. */
  kvBytes(): number {
    return this.targetCache.bytes() + this.drafter.bytes();
  }

  /** Free the target cache and the drafter (not the models). */
  dispose(): void {
    this.targetCache.dispose();
    this.drafter.dispose();
  }
}
