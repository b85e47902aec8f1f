// The model runner (lesson 5, "continuous batching"): the one place where the scheduler's
// numbers become tensors. It owns the paged KV cache, applies copy-on-write block copies, lays
// out each step's inputs, runs the model and reads back the logits rows to sample from.
//
// A step's sequences run as forward calls of similar length, since the model pads every
// sequence of a call to the longest (left padding): all decodes (1 token each) in one call, and
// each prefill chunk in its own call (no padding wasted on mixed lengths).
//
// Speculative decoding (lesson 4, batched): the decodes of a step run as one speculative group
// instead: the drafter proposes gamma_b tokens per sequence (a draft model: gamma forward calls
// over the whole group; prompt lookup: none), then ONE target call verifies 1 + gamma_b tokens
// per sequence and returns the gamma_b + 1 logits rows. Accept/reject is not tensor work: the
// engine does it (lib/spec's acceptReject, per row).
//
// The draft model's KV cache shares the block manager: the same block tables index a second
// pool of the same numBlocks x blockSize, sized for the draft (vLLM v0 did the same). One
// allocator, one preemption and prefix-cache policy for both models; the draft pool costs
// (draft KV bytes per token) / (target KV bytes per token) of the target's. Prefill chunks run
// through the draft too, so both caches hold the same prompt tokens.

import { greedyFastPath, type SampledToken, type SamplingParams } from '../generate/sampling';
import type { PagedWriteMode } from '../kv/paged';
import { promptLookup, type PromptLookupOptions } from '../spec/promptLookup';
import { draftAndVerifyGreedy, draftTokens, verify, verifyGreedy, type BatchForward, type DraftProposal, type SpecRow } from '../spec/speculative';
import { pagedModel, type EngineModel, type PagedModel } from './pagedModel';
import type { ScheduledSequence } from './scheduler';
import type { Sequence } from './sequence';

/** Options of ModelRunner. */
export interface ModelRunnerOptions {
  numBlocks: number;
  blockSize: number;
  cacheMode?: PagedWriteMode;
  /** speculative decoding: a draft model (its pool shares the block tables) or prompt lookup */
  draft?: EngineModel | 'prompt-lookup' | null;
  promptLookup?: PromptLookupOptions;
}

/** One forward call's inputs. */
export interface PreparedCall {
  entries: ScheduledSequence[];
  /** new tokens per sequence (ragged) */
  tokens: number[][];
}

/** A speculative decode's result for one sequence: its drafts and the target's verdict inputs. */
export interface SpeculativeRowOutput {
  proposal: DraftProposal;
  /** target logits [gamma + 1][V]: row i scores the token after draft i (0: after the newest token) */
  logits: Float32Array[];
  /** instead of logits, for greedy rows on a model that picks tokens itself: the gamma + 1 argmax tokens */
  picks?: SampledToken[];
  /** tokens in the draft cache after drafting (the engine rolls it back to the accepted ones) */
  numDraftComputedTokens: number;
}

/** What one step's run returns. */
export interface RunnerOutput {
  /** the logits row [V] of each non-speculative sequence whose step ends at its last token */
  logits: Map<Sequence, Float32Array>;
  /** instead of the row, the token itself, for greedy sequences on a model that picks it (the captured GPU step) */
  greedy: Map<Sequence, SampledToken>;
  /** speculative decodes */
  spec: Map<Sequence, SpeculativeRowOutput>;
  /** tokens in the draft cache after a prefill chunk (draft model only) */
  draftComputed: Map<Sequence, number>;
  /** wall ms of the speculative group's draft and verify phases (0 without one) */
  draftMs: number;
  verifyMs: number;
}

/** The engine's view of a sequence as lib/spec's row (prompt + output; penalties read it). */
export function specRowOf(seq: Sequence): SpecRow {
  return { prompt: seq.promptTokenIds, output: seq.outputTokenIds };
}

/**
 * Runs scheduled sequences through the model over a paged KV cache (lesson 5; the cache is
 * lesson 3's PagedAttention), speculatively when a drafter is given (lesson 4). Owns tensors:
 * call dispose().
 */
export class ModelRunner {
  /** the target model with its KV pool (eager tfjs, or the captured GPU step) */
  readonly target: PagedModel;
  /** the draft model with its pool (same block tables), when drafting with a model */
  readonly draft: PagedModel | null;
  /** forward calls made so far (target and draft) */
  numForwardCalls = 0;
  private readonly lookup: PromptLookupOptions | null;

  constructor(model: EngineModel, options: ModelRunnerOptions) {
    const pool = { numBlocks: options.numBlocks, blockSize: options.blockSize, cacheMode: options.cacheMode };
    this.target = pagedModel(model, pool);
    this.draft = options.draft && options.draft !== 'prompt-lookup' ? pagedModel(options.draft, pool) : null;
    this.lookup = options.draft === 'prompt-lookup' ? (options.promptLookup ?? {}) : null;
  }

  /** Whether decodes run speculatively. */
  get speculative(): boolean {
    return this.draft !== null || this.lookup !== null;
  }

  /**
   * Group a step's sequences into forward calls: decodes together, each prefill chunk alone
   * (eager: a call pads to its longest sequence); a captured model takes them all in one call.
   */
  prepare(batch: readonly ScheduledSequence[]): PreparedCall[] {
    const plain = batch.filter((e) => (e.numNewTokens === 1 && e.numLookaheadTokens === undefined) || e.numNewTokens > 1);
    if (this.target.ragged) return plain.length > 0 ? [{ entries: plain, tokens: plain.map((e) => this.newTokens(e)) }] : [];
    const calls: PreparedCall[] = [];
    const decodes = batch.filter((e) => e.numNewTokens === 1 && e.numLookaheadTokens === undefined);
    if (decodes.length > 0) calls.push({ entries: decodes, tokens: decodes.map((e) => this.newTokens(e)) });
    for (const e of batch) if (e.numNewTokens > 1) calls.push({ entries: [e], tokens: [this.newTokens(e)] });
    return calls;
  }

  /**
   * Run one step: copy blocks (copy-on-write), then every forward call, then the speculative
   * group. Returns the logits row [V] of each sequence whose step ends at its last token (it
   * samples next) and, per speculative decode, its drafts and their gamma + 1 logits rows.
   */
  async run(batch: readonly ScheduledSequence[], copies: readonly [number, number][]): Promise<RunnerOutput> {
    this.target.copyBlocks(copies);
    this.draft?.copyBlocks(copies);
    const out = emptyRunnerOutput();
    for (const call of this.prepare(batch)) {
      const fwd = this.target.batch(call.entries.map(cachedIn('target')));
      const ones = call.tokens.map(() => 1);
      const samplesNext = (e: ScheduledSequence) => e.seq.numComputedTokens + e.numNewTokens === e.seq.numTokens;
      // greedy rows need only their argmax and its logprob: the captured step picks them on the GPU
      if (picksOnModel(fwd, call.entries)) {
        const picked = await fwd.forwardGreedy(call.tokens, ones);
        call.entries.forEach((e, b) => samplesNext(e) && out.greedy.set(e.seq, picked[b][0]));
      } else {
        const rows = await fwd.forward(call.tokens, ones); // per sequence [1][V]: its last position
        call.entries.forEach((e, b) => samplesNext(e) && out.logits.set(e.seq, rows[b][0]));
      }
      this.numForwardCalls++;
      await this.draftPrefill(call, out.draftComputed);
    }
    const spec = batch.filter((e) => e.numLookaheadTokens !== undefined);
    if (spec.length > 0) await this.runSpeculative(spec, out);
    return out;
  }

  /**
   * An overlapped step (the engine's `overlapSteps`): when every sequence is greedy on a model that
   * picks tokens itself (the captured GPU step) and no draft runs, submit the step and return
   * without waiting. `rows` holds, per sequence whose step ends at its last token, its logits row:
   * the next step feeds its pick as -(row + 1) before it is read. null when the step cannot be
   * overlapped (then `run` it).
   */
  submitGreedy(batch: readonly ScheduledSequence[], copies: readonly [number, number][]): { rows: Map<Sequence, number>; read: () => Promise<RunnerOutput> } | null {
    if (this.speculative || !this.target.submitGreedy) return null;
    const calls = this.prepare(batch);
    if (calls.length !== 1 || !allGreedy(calls[0].entries)) return null;
    const [call] = calls;
    this.target.copyBlocks(copies);
    // (before the commit: which sequences' steps end at their last token)
    const rows = new Map<Sequence, number>();
    call.entries.forEach((e, b) => e.seq.numComputedTokens + e.numNewTokens === e.seq.numTokens && rows.set(e.seq, b));
    const read = this.target.submitGreedy(call.entries.map(cachedIn('target')), call.tokens);
    this.numForwardCalls++;
    return {
      rows,
      read: async () => {
        const picked = await read();
        const out = emptyRunnerOutput();
        for (const [seq, b] of rows) out.greedy.set(seq, picked[b]);
        return out;
      },
    };
  }

  /** Bytes of the KV pools (target, and the draft's). */
  kvBytes(): number {
    return this.target.bytes() + (this.draft?.bytes() ?? 0);
  }

  dispose(): void {
    this.target.dispose();
    this.draft?.dispose();
  }

  // ---- speculative decoding

  // the draft computes what the target just computed (it may lag: it feeds what it lacks)
  private async draftPrefill(call: PreparedCall, computed: Map<Sequence, number>): Promise<void> {
    if (!this.draft) return;
    const feed = call.entries.map((e) => e.seq.tokenIds.slice(e.seq.numDraftComputedTokens, e.seq.numComputedTokens + e.numNewTokens));
    if (feed.every((f) => f.length === 0)) return;
    const draft = this.draft.batch(call.entries.map(cachedIn('draft')));
    await draft.forward(
      feed,
      feed.map(() => 0),
    ); // keys and values only; the logits are not needed
    this.numForwardCalls++;
    const lengths = draft.lengths();
    call.entries.forEach((e, b) => computed.set(e.seq, lengths[b]));
  }

  // 1. draft gamma_b tokens per sequence, 2. verify all of them in one target call
  private async runSpeculative(entries: readonly ScheduledSequence[], out: RunnerOutput): Promise<void> {
    const rows = entries.map((e) => specRowOf(e.seq));
    const gammas = entries.map((e) => e.numLookaheadTokens ?? 0);
    const t0 = performance.now();
    const draft = this.draft?.batch(entries.map(cachedIn('draft')));
    const target = this.target.batch(entries.map(cachedIn('target')));
    // greedy rows on the captured step: the target's argmax tokens, not its logits rows
    const picked = picksOnModel(target, entries);
    // ... and on two captured models: draft and verify in one go, no readback in between
    const fused = draft && picked ? await draftAndVerifyGreedy(draft, target, rows, gammas) : null;
    if (draft && fused) {
      this.numForwardCalls += Math.max(0, ...gammas) + 1;
      out.draftMs = 0; // not separable: the draft's steps and the verify run back to back on the GPU
      out.verifyMs = performance.now() - t0;
      const lens = draft.lengths();
      entries.forEach((e, b) => out.spec.set(e.seq, { proposal: fused.proposals[b], logits: [], picks: fused.picks[b], numDraftComputedTokens: lens[b] }));
      return;
    }
    let proposals: DraftProposal[];
    let draftLens: number[];
    if (draft) {
      const params = entries.map((e) => e.seq.params);
      const rngs = entries.map((e) => e.seq.rng);
      proposals = await draftTokens(draft, rows, gammas, params, rngs);
      this.numForwardCalls += Math.max(0, ...gammas);
      draftLens = draft.lengths();
    } else {
      proposals = rows.map((row, b) => ({ tokens: gammas[b] > 0 ? promptLookup([...row.prompt, ...row.output], gammas[b], this.lookup!) : [], probs: null }));
      draftLens = entries.map(() => 0);
    }
    const t1 = performance.now();
    const picks = picked ? await verifyGreedy(target, rows, proposals) : null; // per row [gamma_b + 1]
    const logits = picked ? null : await verify(target, rows, proposals); // per row [gamma_b + 1][V]
    this.numForwardCalls++;
    out.draftMs = t1 - t0;
    out.verifyMs = performance.now() - t1;
    entries.forEach((e, b) => out.spec.set(e.seq, { proposal: proposals[b], logits: logits?.[b] ?? [], picks: picks?.[b], numDraftComputedTokens: draftLens[b] }));
  }

  private newTokens(e: ScheduledSequence): number[] {
    const from = e.seq.numComputedTokens;
    return e.seq.tokenIds.slice(from, from + e.numNewTokens);
  }
}

/** A step's output with nothing in it yet. */
export function emptyRunnerOutput(): RunnerOutput {
  return { logits: new Map(), greedy: new Map(), spec: new Map(), draftComputed: new Map(), draftMs: 0, verifyMs: 0 };
}

// a scheduled sequence's place in the target's or the draft's pool
function cachedIn(which: 'target' | 'draft') {
  return (e: ScheduledSequence) => ({ blockTable: e.seq.blockTable, numCached: which === 'target' ? e.seq.numComputedTokens : e.seq.numDraftComputedTokens });
}

// whether the model picks the tokens itself: it can (the captured step), and every sequence is
// greedy with nothing else asked and no forks sharing its row
function picksOnModel(fwd: BatchForward, entries: readonly ScheduledSequence[]): fwd is BatchForward & Required<Pick<BatchForward, 'forwardGreedy'>> {
  return fwd.forwardGreedy !== undefined && allGreedy(entries);
}

function allGreedy(entries: readonly ScheduledSequence[]): boolean {
  return entries.every((e) => modelPicks(e.seq.params));
}

/**
 * Whether the model can pick a sequence's tokens where its logits are (the captured step): greedy
 * with nothing else asked, and not forked (forks share its row). Otherwise the CPU samples them.
 */
export function modelPicks(params: SamplingParams): boolean {
  return greedyFastPath(params) && params.n === 1;
}
