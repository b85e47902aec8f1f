// A sequence: one completion being generated, with everything the scheduler and block manager
// read (tokens, how many of them are in the KV cache, its block table), the per-sequence
// sampling state (seeded Rng, speculative decoding's gamma policy) and its output (an
// OutputRecorder: tokens, logprobs, stop checks, text, timestamps). Plain numbers and arrays: no
// tensors here (lesson 5, "continuous batching").
//
// A request (one prompt, `n` completions) owns one sequence per completion. With n > 1 only the
// first sequence prefills; when its prompt is done the others fork from it, sharing its blocks.

import { OutputRecorder, type CompletionFinishReason } from '../generate/output';
import { Rng, type SamplingParams } from '../generate/sampling';
import type { GammaPolicy } from '../spec/adaptive';
import type { Tokenizer } from '../generate/tokenizer';

/** Where a sequence is: waiting (queued or preempted), running (holds blocks), finished. */
export type SequenceStatus = 'waiting' | 'running' | 'finished';

/** Times of one sequence on the engine's clock (ms); null until it happens. */
export interface SequenceTimes {
  arrival: number;
  /** first time it was scheduled (the end of its queueing) */
  firstScheduled: number | null;
  /** start of the step that computed its last prompt chunk (and sampled the first token) */
  lastPrefillStepStart: number | null;
  finished: number | null;
  // when each output token was sampled: output.times
}

/**
 * One completion being generated (lesson 5, "continuous batching"): tokens, how many have their
 * keys/values in the cache (`numComputedTokens`), and the block table mapping its logical blocks
 * to physical ones (lesson 3, "PagedAttention").
 */
export class Sequence {
  readonly seqId: number;
  readonly requestId: string;
  /** which of the request's n completions */
  readonly index: number;
  status: SequenceStatus = 'waiting';
  /** tokens whose keys and values are in the cache */
  numComputedTokens = 0;
  /**
   * speculative decoding with a draft model: tokens whose keys and values are in the draft's
   * cache (same block table, the draft's own pool); it may lag numComputedTokens by a token or
   * more, and catches up at its next draft
   */
  numDraftComputedTokens = 0;
  /** prompt tokens served from the prefix cache at the last admission */
  numCachedTokens = 0;
  /** physical block of each logical block */
  blockTable: number[] = [];
  /** chained hash of each full, computed block (prefix caching) */
  blockHashes: number[] = [];
  /** sequences still to fork from this one when its prompt is done (parallel sampling) */
  pendingForks = 0;
  numPreemptions = 0;

  readonly params: SamplingParams;
  readonly seed: number;
  readonly rng: Rng;
  /** speculative decoding (lesson 4): how many drafts it asks for each step; null when off */
  readonly gammaPolicy: GammaPolicy | null;
  /** its tokens (prompt then output), logprobs, text, timestamps and finish reason */
  readonly output: OutputRecorder;
  readonly times: SequenceTimes;

  constructor(opts: {
    seqId: number;
    requestId: string;
    index: number;
    promptTokenIds: readonly number[];
    params: SamplingParams;
    seed: number;
    eosTokenIds: readonly number[];
    tokenizer?: Pick<Tokenizer, 'decode'>;
    arrival: number;
    /** the longest it may get (prompt + output); it finishes with 'length' there (default: no limit) */
    maxLength?: number;
    gammaPolicy?: GammaPolicy | null;
  }) {
    this.seqId = opts.seqId;
    this.requestId = opts.requestId;
    this.index = opts.index;
    this.params = opts.params;
    this.seed = opts.seed;
    this.rng = new Rng(opts.seed);
    this.gammaPolicy = opts.gammaPolicy ?? null;
    this.output = new OutputRecorder({
      promptTokenIds: opts.promptTokenIds,
      params: opts.params,
      eosTokenIds: opts.eosTokenIds,
      tokenizer: opts.tokenizer,
      maxLength: opts.maxLength,
      index: opts.index,
      requestId: opts.requestId,
    });
    this.times = { arrival: opts.arrival, firstScheduled: null, lastPrefillStepStart: null, finished: null };
  }

  /** prompt then output tokens (the output recorder's) */
  get tokenIds(): number[] {
    return this.output.tokenIds;
  }

  get numPromptTokens(): number {
    return this.output.numPromptTokens;
  }

  get numTokens(): number {
    return this.output.tokenIds.length;
  }

  get numOutputTokens(): number {
    return this.output.numOutputTokens;
  }

  get promptTokenIds(): number[] {
    return this.output.tokenIds.slice(0, this.numPromptTokens);
  }

  get outputTokenIds(): number[] {
    return this.output.outputTokenIds;
  }

  /** why it finished (null while it runs) */
  get finishReason(): CompletionFinishReason | null {
    return this.output.finishReason;
  }

  /** Output tokens picked on the GPU and fed on, not read back yet (overlapped steps; OutputRecorder.hold). */
  get numPendingTokens(): number {
    return this.output.pending;
  }

  /**
   * Whether its last tokens are decided already: picks are pending and, once read, they reach its
   * maxTokens or its longest length (it then finishes with 'length'). Nothing to schedule for it.
   */
  get waitsForLastPick(): boolean {
    return this.output.pending > 0 && (this.numOutputTokens >= this.params.maxTokens || this.numTokens >= this.output.maxLength);
  }

  /** Tokens not yet in the cache: the (rest of the) prompt, or the last sampled token. */
  get numUncomputedTokens(): number {
    return this.tokenIds.length - this.numComputedTokens;
  }

  /** True while the prompt (or, after a preemption, prompt + output) is still being computed. */
  get isPrefill(): boolean {
    return this.numUncomputedTokens > 1;
  }

  get isFinished(): boolean {
    return this.status === 'finished';
  }
}
