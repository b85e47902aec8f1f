// A sequence: one completion being generated, with everything the scheduler and block manager
// read (tokens, how many of them are in the KV cache, its block table) and the per-sequence
// sampling state (seeded Rng, stop checker, incremental detokenizer). Plain numbers and arrays:
// no tensors here (lesson 5, "continuous batching").
//
// A request (one prompt, `n` completions) owns one sequence per completion. With n > 1 only the
// first sequence prefills; when its prompt is done the others fork from it, sharing its blocks.

import { IncrementalDecoder } from '../detokenizer';
import { Rng, StopChecker, type FinishReason, type SamplingParams, type TokenLogprob } from '../sampling';
import type { Tokenizer } from '../tokenizer';

/** Where a sequence is: waiting (queued or preempted), running (holds blocks), finished. */
export type SequenceStatus = 'waiting' | 'running' | 'finished';

/** Why a completion ended: a stop condition, its length, an abort, or an error. */
export type CompletionFinishReason = FinishReason | 'abort' | 'error';

/** Times of one sequence on the engine's clock (ms); null until it happens. */
export interface SequenceTimes {
  arrival: number;
  /** first time it was scheduled (the end of its queueing) */
  firstScheduled: number | null;
  /** start of the step that computed its last prompt chunk (and sampled the first token) */
  lastPrefillStepStart: number | null;
  /** one entry per output token: when it was sampled */
  tokens: number[];
  finished: number | null;
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
  readonly numPromptTokens: number;
  /** prompt then output tokens */
  readonly tokenIds: number[];
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
  readonly stop: StopChecker;
  readonly decoder: IncrementalDecoder | null;
  text = '';
  logprobs: number[] = [];
  topLogprobs: TokenLogprob[][] = [];
  finishReason: CompletionFinishReason | null = null;
  stopReason: number | string | null = null;
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
  }) {
    this.seqId = opts.seqId;
    this.requestId = opts.requestId;
    this.index = opts.index;
    this.numPromptTokens = opts.promptTokenIds.length;
    this.tokenIds = [...opts.promptTokenIds];
    this.params = opts.params;
    this.seed = opts.seed;
    this.rng = new Rng(opts.seed);
    this.stop = new StopChecker(opts.params, opts.eosTokenIds);
    this.decoder = opts.tokenizer ? new IncrementalDecoder(opts.tokenizer) : null;
    this.times = { arrival: opts.arrival, firstScheduled: null, lastPrefillStepStart: null, tokens: [], finished: null };
  }

  get numTokens(): number {
    return this.tokenIds.length;
  }

  get numOutputTokens(): number {
    return this.tokenIds.length - this.numPromptTokens;
  }

  get promptTokenIds(): number[] {
    return this.tokenIds.slice(0, this.numPromptTokens);
  }

  get outputTokenIds(): number[] {
    return this.tokenIds.slice(this.numPromptTokens);
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
