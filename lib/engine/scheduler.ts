// The scheduler (lesson 5, "continuous batching"): each step, decide which sequences compute how
// many tokens, within a token budget (maxNumBatchedTokens) and a sequence limit (maxNumSeqs).
//
// continuous (iteration-level) batching, FCFS:
//   1. running sequences first, in admission order: a decode takes 1 token, an unfinished
//      prompt takes the next chunk (chunked prefill) of what is left of the budget. When the
//      block pool cannot give a sequence its slots, the most recently admitted running
//      sequence is preempted (its blocks freed; it recomputes later from its tokens).
//   2. then waiting sequences, oldest first, while the budget, maxNumSeqs and free blocks
//      allow (none after a preemption in the same step), leaving `watermark` of the pool free
//      for the running sequences' next blocks (vLLM's watermark; a lone request always starts).
// speculative decoding (lesson 4, batched): a decode also reserves one slot per drafted token
//   (vLLM's lookahead slots; the sequence's gammaPolicy says how many it wants): the target
//   verifies 1 + gamma tokens, and each counts against the token budget and needs a KV slot.
//   Gamma is capped (capGamma) so the sequence still fits the context, its maxTokens and what is
//   left of the budget; the rejected drafts' slots are given back after the step (rollbackDrafts).
// after the step: the scheduler is the only one that changes the block manager, so committing
//   computed tokens (commit), forks (parallel sampling), speculative rollbacks and frees go
//   through it too.
// static batching (the baseline, like plain HF generate): a batch is admitted only when the
//   previous one has completely finished, each member reserving blocks for its longest possible
//   length; prompts are never chunked; everyone waits for the batch's longest output.
//
// Numbers and arrays only: no tensors.

import { capGamma } from '../spec/speculative';
import type { BlockManager } from './blockManager';
import type { EngineConfig } from './config';
import type { Sequence } from './sequence';

/** One sequence's share of a step. */
export interface ScheduledSequence {
  seq: Sequence;
  /** tokens to compute: a prefill chunk, or 1 for a decode */
  numNewTokens: number;
  /** speculative decodes only: slots reserved for this many drafted tokens (gamma; may be 0) */
  numLookaheadTokens?: number;
}

/** What one schedule() decided. */
export interface SchedulerOutput {
  scheduled: ScheduledSequence[];
  /** sequences preempted (blocks freed, back to the waiting queue) this step */
  preempted: Sequence[];
  /** sequences given blocks this step (first admission or after a preemption) */
  admitted: Sequence[];
  /** copy-on-write block copies [source, destination] the runner makes before the forward */
  blockCopies: [number, number][];
}

/**
 * FCFS scheduler with a per-step token budget, chunked prefill and preemption by recompute
 * (lesson 5), or the static-batching baseline (`policy: 'static'`).
 */
export class Scheduler {
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];
  private readonly policy: EngineConfig['policy'];
  private readonly maxNumSeqs: number;
  private readonly maxNumBatchedTokens: number;
  private readonly chunkedPrefill: boolean;
  /** with a draft model, a block enters the prefix cache only once the draft's cache holds it too */
  private readonly hasDraftCache: boolean;
  /** longest a sequence may get: min(maxModelLen, tokens the pool holds) */
  readonly maxSeqLen: number;
  /** blocks a continuous admission leaves free (EngineConfig.watermark) */
  private readonly watermarkBlocks: number;

  constructor(
    config: EngineConfig,
    private readonly blockManager: BlockManager,
  ) {
    this.policy = config.policy;
    this.hasDraftCache = config.speculative !== null && config.speculative.draft !== 'prompt-lookup';
    this.maxNumSeqs = config.maxNumSeqs;
    this.maxNumBatchedTokens = config.maxNumBatchedTokens;
    this.chunkedPrefill = config.policy === 'continuous' && config.enableChunkedPrefill;
    this.maxSeqLen = Math.min(config.maxModelLen, config.numBlocks * config.blockSize);
    this.watermarkBlocks = config.policy === 'continuous' ? Math.floor(config.watermark * config.numBlocks) : 0;
  }

  /** Queue a new sequence (FCFS: at the back). */
  add(seq: Sequence): void {
    seq.status = 'waiting';
    this.waiting.push(seq);
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  /** Decide the next step. */
  schedule(): SchedulerOutput {
    const out: SchedulerOutput = { scheduled: [], preempted: [], admitted: [], blockCopies: [] };
    let budget = this.maxNumBatchedTokens;
    const batchWasEmpty = this.running.length === 0;

    // ---- 1. running sequences, oldest first
    for (let i = 0; i < this.running.length && budget > 0; i++) {
      const seq = this.running[i];
      if (seq.waitsForLastPick) continue; // (overlapped steps: its last pick is on the GPU, it finishes when read)
      const left = seq.numUncomputedTokens;
      let n = Math.min(left, budget);
      if (n < left && !this.chunkedPrefill) {
        // a whole prompt runs in one step: alone if it is longer than the budget
        if (budget < this.maxNumBatchedTokens || out.scheduled.length > 0) continue;
        n = left;
      }
      // a speculative decode: gamma drafted tokens after the newest one
      const gamma = left === 1 && seq.numOutputTokens > 0 && seq.gammaPolicy ? this.gammaFor(seq, budget) : null;
      const slots = n + (gamma ?? 0);
      // make room, preempting from the back (the most recently admitted) until it fits
      while (!this.blockManager.canAppend(seq, slots)) {
        const victim = this.running[this.running.length - 1];
        this.preempt(victim);
        out.preempted.push(victim);
        if (victim === seq) break;
      }
      if (seq.status !== 'running') break;
      this.blockManager.append(seq, slots);
      out.scheduled.push(gamma === null ? { seq, numNewTokens: n } : { seq, numNewTokens: n, numLookaheadTokens: gamma });
      budget -= slots;
    }

    // ---- 2. waiting sequences, oldest first
    const mayAdmit = out.preempted.length === 0 && (this.policy === 'continuous' || batchWasEmpty);
    while (mayAdmit && this.waiting.length > 0 && budget > 0) {
      const seq = this.waiting[0];
      const seats = 1 + seq.pendingForks;
      if (this.running.length > 0 && this.running.length + seats > this.maxNumSeqs) break;
      const cached = this.blockManager.numCachedTokensFor(seq);
      const left = seq.numTokens - cached;
      let n = Math.min(left, budget);
      if (n < left && !this.chunkedPrefill) {
        if (out.scheduled.length > 0) break; // whole prompts only: it waits for a step with room
        n = left;
      }
      // blocks for what this step computes (later chunks get theirs as they run), or the static reservation
      const reserve = this.policy === 'continuous' ? cached + n : this.reserveTokens(seq);
      if (!this.admit(seq, reserve, out)) break;
      out.scheduled.push({ seq, numNewTokens: n });
      budget -= n;
    }
    // static: admit the rest of the batch now (blocks reserved), to compute in later steps
    if (this.policy === 'static' && mayAdmit) {
      while (this.waiting.length > 0 && this.running.length + 1 + this.waiting[0].pendingForks <= this.maxNumSeqs) {
        const seq = this.waiting[0];
        if (!this.admit(seq, this.reserveTokens(seq), out)) break;
      }
    }
    out.blockCopies = this.blockManager.takeCopies();
    return out;
  }

  // ---- after the step

  /**
   * The step ran: its scheduled tokens are in the cache now (and, with a draft model, the draft's
   * cache holds `draftComputed`). Advance each sequence's computed count and name its newly full
   * blocks in the prefix cache.
   */
  commit(scheduled: readonly ScheduledSequence[], draftComputed: ReadonlyMap<Sequence, number>, options: { mark?: boolean } = {}): void {
    for (const { seq, numNewTokens } of scheduled) {
      seq.numComputedTokens += numNewTokens;
      seq.numDraftComputedTokens = draftComputed.get(seq) ?? seq.numDraftComputedTokens;
    }
    if (options.mark ?? true) this.markComputed(scheduled);
  }

  /**
   * Name the newly full, computed blocks in the prefix cache. An overlapped step commits when it
   * is submitted and marks when its picks are read: a block's hash needs its tokens, and the
   * token fed last may still be a placeholder for the previous step's pick until then.
   */
  markComputed(scheduled: readonly ScheduledSequence[]): void {
    for (const { seq } of scheduled) {
      if (seq.status === 'running' && seq.blockTable.length > 0) this.blockManager.markComputed(seq, this.hashableTokens(seq));
    }
  }

  /**
   * Speculative decoding's rollback (lesson 4), after the accepted tokens were appended: the
   * target's cache holds every committed token but the newest, the draft's at most that (it held
   * `numDraftComputedTokens` after drafting). The blocks past them go back to the free list
   * (continuous batching; static batching keeps its reservation).
   */
  rollbackDrafts(seq: Sequence, numDraftComputedTokens: number): void {
    seq.numComputedTokens = seq.numTokens - 1;
    seq.numDraftComputedTokens = Math.min(numDraftComputedTokens, seq.numComputedTokens);
    if (!seq.isFinished && this.policy === 'continuous') this.blockManager.trim(seq);
    this.blockManager.markComputed(seq, this.hashableTokens(seq));
  }

  /** Parallel sampling: `child` starts as a copy of `parent`, sharing its blocks, and runs right after `after`. */
  fork(parent: Sequence, child: Sequence, after: Sequence = parent): void {
    this.blockManager.fork(parent, child);
    child.status = 'running';
    const i = this.running.indexOf(after);
    this.running.splice(i < 0 ? this.running.length : i + 1, 0, child);
  }

  /** A sequence finished or was aborted: free its blocks, forget it. */
  remove(seq: Sequence): void {
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    if (seq.blockTable.length > 0) this.blockManager.free(seq);
  }

  // drafts for a decode: what its gamma policy wants, capped by its maxTokens, the room left in
  // the context and the budget left
  private gammaFor(seq: Sequence, budget: number): number {
    const tokensLeft = seq.params.maxTokens - seq.numOutputTokens;
    return capGamma(seq.gammaPolicy!.gamma, { tokensLeft, room: this.maxSeqLen - seq.numTokens, budget });
  }

  // tokens of seq that may be named in the prefix cache: those both models' caches hold
  private hashableTokens(seq: Sequence): number {
    return this.hasDraftCache ? Math.min(seq.numComputedTokens, seq.numDraftComputedTokens) : seq.numComputedTokens;
  }

  // tokens to reserve blocks for on admission: what it has (continuous), or its longest (static)
  // the head of the waiting queue starts running with blocks for `reserve` tokens, if they fit
  private admit(seq: Sequence, reserve: number, out: SchedulerOutput): boolean {
    // (into a running batch, leave the watermark free: a lone request always starts)
    if (!this.blockManager.canAllocate(seq, reserve, this.running.length > 0 ? this.watermarkBlocks : 0)) return false;
    this.waiting.shift();
    this.blockManager.allocate(seq, reserve);
    seq.status = 'running';
    this.running.push(seq);
    out.admitted.push(seq);
    return true;
  }

  private reserveTokens(seq: Sequence): number {
    if (this.policy === 'continuous') return seq.numTokens;
    const longest = seq.numPromptTokens + seq.params.maxTokens - 1; // the last token needs no slot
    return Math.max(seq.numTokens, Math.min(this.maxSeqLen, longest));
  }

  // preemption by recompute: free the blocks; the sequence keeps its tokens and starts over
  private preempt(seq: Sequence): void {
    const i = this.running.indexOf(seq);
    if (i >= 0) this.running.splice(i, 1);
    this.blockManager.free(seq);
    seq.status = 'waiting';
    seq.numPreemptions++;
    this.waiting.unshift(seq);
  }
}
