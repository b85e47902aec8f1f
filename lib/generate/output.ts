// Recording a sequence's output (lesson 2, "KV caching"; also lessons 4 and 5). Every loop that
// makes tokens - generate(), speculativeGenerate() and the engine - hands each chosen token to one
// OutputRecorder, which keeps the token, its logprobs and its timestamp, runs the stop checks and
// the incremental detokenizer, and returns the streaming event. The latency metrics (TTFT, TPOT,
// inter-token latencies) come from its timestamps.
//
// Numbers, strings and arrays only: no tensors.

import { IncrementalDecoder } from './detokenizer';
import { StopChecker, type FinishReason, type SampledToken, type SamplingParams, type TokenLogprob } from './sampling';
import type { Tokenizer } from './tokenizer';

/** Why a sequence ended: a stop condition, its length, or (engine only) an abort or an error. */
export type CompletionFinishReason = FinishReason | 'abort' | 'error';

/** One streamed token, from generate(), speculativeGenerate() or the engine (lessons 2, 4, 5). */
export interface TokenEvent {
  /** the engine's request id (absent in generate() and speculativeGenerate()) */
  requestId?: string;
  /** which prompt of the batch (generate) or which of the request's n completions (engine) */
  index: number;
  token: number;
  /** text this token makes final ('' while a character or a possible stop string is pending) */
  text: string;
  logprob: number;
  topLogprobs?: TokenLogprob[];
  finished: boolean;
  finishReason: FinishReason | null;
}

/** Latencies of one sequence from its token timestamps (ms on the caller's clock). */
export interface TokenLatencies {
  /** start -> first token */
  ttftMs: number;
  /** time per output token after the first: (last - first) / (outputTokens - 1) */
  tpotMs: number;
  /** inter-token latencies: gaps between consecutive tokens */
  itlMs: number[];
  /** start -> last token */
  e2eMs: number;
  /** decode speed: (outputTokens - 1) / (last - first), per second; 0 with fewer than 2 tokens */
  decodeTokensPerSecond: number;
}

/**
 * Latencies from token timestamps (lesson 2): `start` is when the clock started for this
 * sequence (call start or request arrival); `endIfNone` stands for the first and last token when
 * there is none (an aborted request).
 */
export function tokenLatencies(tokenTimes: readonly number[], start: number, endIfNone = start): TokenLatencies {
  const n = tokenTimes.length;
  const first = n > 0 ? tokenTimes[0] : endIfNone;
  const last = n > 0 ? tokenTimes[n - 1] : endIfNone;
  return {
    ttftMs: first - start,
    tpotMs: n > 1 ? (last - first) / (n - 1) : 0,
    itlMs: tokenTimes.slice(1).map((t, i) => t - tokenTimes[i]),
    e2eMs: last - start,
    decodeTokensPerSecond: n > 1 && last > first ? ((n - 1) * 1000) / (last - first) : 0,
  };
}

/** What an OutputRecorder needs to know about its sequence. */
export interface OutputRecorderOptions {
  promptTokenIds: readonly number[];
  /** the stop conditions, and `logprobs` (the top alternatives asked for per token) */
  params: Pick<SamplingParams, 'maxTokens' | 'stopTokenIds' | 'stopStrings' | 'includeStopStrInOutput' | 'ignoreEos' | 'logprobs'>;
  eosTokenIds: readonly number[];
  /** decodes the text as tokens arrive; without it the text stays '' */
  tokenizer?: Pick<Tokenizer, 'decode' | 'tokenBytes'>;
  /** the longest the sequence may get (prompt + output: the context); it ends with 'length' there */
  maxLength?: number;
  /** copied into every event: the prompt's place in the batch, or the completion's index */
  index?: number;
  /** copied into every event (the engine's requests) */
  requestId?: string;
}

/** The output fields every finished sequence reports (generate()'s and the engine's outputs). */
export interface RecordedOutput {
  text: string;
  tokenIds: number[];
  /** log-probability of each generated token under the model's raw distribution */
  logprobs: number[];
  /** the top `params.logprobs` alternatives per token, when asked for */
  topLogprobs?: TokenLogprob[][];
  /** the stop token id or stop string that ended it, if any */
  stopReason: number | string | null;
}

/**
 * One sequence's output as it is generated (lesson 2): prompt and output token ids, logprobs,
 * timestamps, the text (stop strings held back and cut), and why it finished. `record()` takes
 * each chosen token and returns its streaming event.
 */
export class OutputRecorder {
  /** prompt then output tokens */
  readonly tokenIds: number[];
  readonly numPromptTokens: number;
  /** per output token: log-probability under the raw distribution, the top alternatives, when it was recorded */
  readonly logprobs: number[] = [];
  readonly topLogprobs: TokenLogprob[][] = [];
  readonly times: number[] = [];
  /** the text so far: final once finished (a stop string is cut) */
  text = '';
  finishReason: CompletionFinishReason | null = null;
  /** the stop token id or stop string that ended it, if any */
  stopReason: number | string | null = null;
  /** tokens held at the end of tokenIds for picks not read yet (hold), filled oldest first by record */
  pending = 0;
  private readonly stop: StopChecker;
  private readonly decoder: IncrementalDecoder | null;
  readonly maxLength: number;
  private readonly wantTopLogprobs: boolean;
  private readonly index: number;
  private readonly requestId: string | undefined;

  constructor(options: OutputRecorderOptions) {
    this.tokenIds = [...options.promptTokenIds];
    this.numPromptTokens = options.promptTokenIds.length;
    this.stop = new StopChecker(options.params, options.eosTokenIds);
    this.decoder = options.tokenizer ? new IncrementalDecoder(options.tokenizer) : null;
    this.maxLength = options.maxLength ?? Infinity;
    this.wantTopLogprobs = options.params.logprobs > 0;
    this.index = options.index ?? 0;
    this.requestId = options.requestId;
  }

  get numOutputTokens(): number {
    return this.tokenIds.length - this.numPromptTokens;
  }

  get outputTokenIds(): number[] {
    return this.tokenIds.slice(this.numPromptTokens, this.tokenIds.length - this.pending);
  }

  /**
   * Hold a place for a token that is picked but not read yet (the engine's overlapped steps: the
   * GPU picked it, and the next step feeds it before the CPU knows it): `placeholder` stands in
   * tokenIds until `record` puts the token there. Counted in numOutputTokens meanwhile.
   */
  hold(placeholder: number): void {
    if (this.finished) throw new Error(`OutputRecorder.hold: the sequence already finished (${this.finishReason})`);
    this.tokenIds.push(placeholder);
    this.pending++;
  }

  get finished(): boolean {
    return this.finishReason !== null;
  }

  /**
   * Append one chosen token at time `now`: keep it with its logprobs, run the stop checks and the
   * detokenizer, and return the event to stream. Reaching `maxLength` ends the sequence with 'length'.
   */
  record(picked: SampledToken, now: number): TokenEvent {
    if (this.finished) throw new Error(`OutputRecorder.record: the sequence already finished (${this.finishReason})`);
    // 1. keep the token (in the oldest held place, if any)
    if (this.pending > 0) this.tokenIds[this.tokenIds.length - this.pending--] = picked.token;
    else this.tokenIds.push(picked.token);
    this.logprobs.push(picked.logprob);
    if (picked.topLogprobs) this.topLogprobs.push(picked.topLogprobs);
    this.times.push(now);
    // 2. stop conditions on the token and its text
    let status = this.stop.push(picked.token, this.decoder?.push(picked.token) ?? '');
    if (!status.finished && this.tokenIds.length - this.pending >= this.maxLength) {
      // out of room: release what the stop checker held back for a possible stop string
      status = { ...status, finished: true, finishReason: 'length', delta: status.delta + this.stop.text.slice(this.text.length + status.delta.length) };
    }
    // 3. the text it makes final
    this.text += status.delta;
    if (status.finished) {
      this.text = this.stop.text;
      this.finish(status.finishReason!, status.stopReason);
    }
    const event: TokenEvent = {
      index: this.index,
      token: picked.token,
      text: status.delta,
      logprob: picked.logprob,
      topLogprobs: picked.topLogprobs,
      finished: status.finished,
      finishReason: status.finishReason,
    };
    return this.requestId === undefined ? event : { requestId: this.requestId, ...event };
  }

  /** End the sequence for a reason of the caller's (the engine: 'abort', 'error'). */
  finish(reason: CompletionFinishReason, stopReason: number | string | null = null): void {
    // places held for picks after the end are dropped: the output is what was recorded
    this.tokenIds.length -= this.pending;
    this.pending = 0;
    this.finishReason = reason;
    this.stopReason = stopReason;
  }

  /** The output fields of a finished sequence; topLogprobs only when `params.logprobs` asked for them. */
  result(): RecordedOutput {
    return {
      text: this.text,
      tokenIds: this.outputTokenIds,
      logprobs: this.logprobs,
      topLogprobs: this.wantTopLogprobs ? this.topLogprobs : undefined,
      stopReason: this.stopReason,
    };
  }

  /** Latencies from the token timestamps; `start` on the same clock (see tokenLatencies). */
  latencies(start: number, endIfNone = start): TokenLatencies {
    return tokenLatencies(this.times, start, endIfNone);
  }
}
