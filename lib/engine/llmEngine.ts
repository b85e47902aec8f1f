// The engine (lesson 5, "continuous batching"): requests in, tokens out, one step at a time.
//
//   step() = schedule (which sequences compute how many tokens)
//          → run      (the model runner: tensors, one forward per call group)
//          → postprocess (sample, stop, free finished sequences, record metrics)
//
// With `speculative` set (lesson 4, batched), decodes are speculative steps: the scheduler
// reserves 1 + gamma slots per decoding sequence, the runner drafts and verifies, postprocess
// runs lib/spec's acceptReject per sequence, commits 1..gamma+1 tokens and gives back the
// rejected drafts' slots (numComputedTokens rolls back; BlockManager.trim frees emptied blocks).
//
// Requests are added and aborted between steps; each finished request comes back from the step
// that finished it. Prompts that can never run (longer than the context or the KV pool, or n
// larger than maxNumSeqs) finish at once with an error, alone.

import type { GenerationOutput } from '../generate';
import type { LlamaModel } from '../model/llama';
import { isGreedy, logitsToLogprobs, resolveSamplingParams, sampleToken, topKIndices, type SamplingParamsInput, type TokenLogprob } from '../sampling';
import { AdaptiveGamma } from '../spec/adaptive';
import { acceptReject, checkDraftCompatible, targetProbs } from '../spec/speculative';
import { SpecStats, type StepTrace } from '../spec/stats';
import type { Tokenizer } from '../tokenizer';
import { BlockManager } from './blockManager';
import { RealClock, type Clock } from './clock';
import { resolveEngineConfig, type EngineConfig, type EngineConfigInput } from './config';
import { sequenceMetrics, type BlockTableSnapshot, type SequenceMetrics, type StepEntry, type StepMetrics } from './metrics';
import { ModelRunner, specRowOf, type RunnerOutput, type SpeculativeRowOutput } from './modelRunner';
import { Scheduler, type SchedulerOutput } from './scheduler';
import { Sequence, type CompletionFinishReason } from './sequence';

/** A prompt: text (needs a tokenizer) or token ids. */
export type EnginePrompt = string | readonly number[];

/** One streamed token of one completion. */
export interface TokenEvent {
  requestId: string;
  /** which of the request's n completions */
  index: number;
  token: number;
  /** text this token makes final ('' while a character or possible stop string is pending) */
  text: string;
  logprob: number;
  topLogprobs?: TokenLogprob[];
  finished: boolean;
  finishReason: CompletionFinishReason | null;
}

/** One finished completion: generate()'s output fields, with the engine's finish reasons and metrics. */
export interface CompletionOutput extends Omit<GenerationOutput, 'promptTokenIds' | 'finishReason' | 'metrics'> {
  finishReason: CompletionFinishReason;
  metrics: SequenceMetrics;
}

/** A finished request: its n completions, or the error that stopped it. */
export interface RequestOutput {
  requestId: string;
  promptTokenIds: number[];
  outputs: CompletionOutput[];
  /** why the request could not run (then outputs is empty), else null */
  error: string | null;
}

/** Options of addRequest. */
export interface AddRequestOptions {
  /** default: 'req-<k>' */
  requestId?: string;
  /** arrival time on the engine clock (default: now) */
  arrivalTime?: number;
  /** called for every token as it is sampled (streaming) */
  onToken?: (event: TokenEvent) => void;
}

interface Request {
  id: string;
  promptTokenIds: number[];
  seqs: Sequence[];
  onToken?: (event: TokenEvent) => void;
}

/**
 * A vLLM-style engine over a paged KV cache (lesson 5, "continuous batching"; the cache is
 * lesson 3, "PagedAttention"). Owns its KV pool (dispose()), not the model.
 */
export class LLMEngine {
  readonly config: EngineConfig;
  readonly blockManager: BlockManager;
  readonly scheduler: Scheduler;
  readonly runner: ModelRunner;
  readonly clock: Clock;
  /** every step's metrics, in order */
  readonly steps: StepMetrics[] = [];
  /** metrics of every finished completion, in finishing order */
  readonly finishedMetrics: SequenceMetrics[] = [];
  /** speculative decoding's counters (and traces, with speculative.trace), or null when off */
  readonly specStats: SpecStats | null;
  /** adaptive gamma: one per decoding sequence */
  private readonly adaptive = new Map<Sequence, AdaptiveGamma>();
  private readonly requests = new Map<string, Request>();
  private readonly done: RequestOutput[] = [];
  private nextSeqId = 0;
  private nextRequest = 0;
  private readonly eos: readonly number[];

  constructor(
    readonly model: LlamaModel,
    readonly tokenizer: Tokenizer | null = null,
    config: EngineConfigInput = {},
    clock: Clock = new RealClock(),
  ) {
    this.config = resolveEngineConfig(config, model.config.maxPositions);
    const c = this.config;
    this.blockManager = new BlockManager({ numBlocks: c.numBlocks, blockSize: c.blockSize, enablePrefixCaching: c.enablePrefixCaching });
    const spec = c.speculative;
    if (spec && spec.draft !== 'prompt-lookup') {
      checkDraftCompatible(model, spec.draft);
      if (spec.draft.config.maxPositions < c.maxModelLen) {
        throw new Error(`draft model '${spec.draft.name}' has a context of ${spec.draft.config.maxPositions} tokens, less than maxModelLen ${c.maxModelLen}`);
      }
    }
    this.scheduler = new Scheduler(c, this.blockManager, spec ? (seq) => this.gammaOf(seq) : null);
    this.runner = new ModelRunner(model, { numBlocks: c.numBlocks, blockSize: c.blockSize, cacheMode: c.cacheMode, draft: spec?.draft ?? null, promptLookup: spec?.promptLookup });
    this.specStats = spec ? new SpecStats(spec.trace) : null;
    this.clock = clock;
    this.eos = tokenizer?.eosTokenIds ?? model.config.eosTokenIds;
  }

  // ---- requests

  /**
   * Queue a request; returns its id. Bad sampling params or token ids throw; a prompt that can
   * never fit finishes at once with `error` set (returned by the next step()).
   */
  addRequest(prompt: EnginePrompt, samplingParams: SamplingParamsInput = {}, options: AddRequestOptions = {}): string {
    const params = resolveSamplingParams(samplingParams);
    const id = options.requestId ?? `req-${this.nextRequest++}`;
    if (this.requests.has(id)) throw new Error(`request id '${id}' is already in use`);
    const ids = this.tokenize(prompt);
    const arrival = options.arrivalTime ?? this.clock.now();
    const req: Request = { id, promptTokenIds: ids, seqs: [], onToken: options.onToken };
    const error = this.cannotFit(ids.length, params.n);
    if (error) {
      this.done.push({ requestId: id, promptTokenIds: ids, outputs: [], error });
      return id;
    }
    const seq = this.newSequence(req, 0, params.seed, params, arrival);
    seq.pendingForks = params.n - 1;
    this.requests.set(id, req);
    this.scheduler.add(seq);
    return id;
  }

  /** Stop a request now: its blocks are freed; it comes back (finishReason 'abort') from the next step(). */
  abort(requestId: string): boolean {
    const req = this.requests.get(requestId);
    if (!req) return false;
    for (const seq of [...req.seqs]) {
      // siblings not forked yet still report, as aborted completions
      for (let k = 1; k <= seq.pendingForks; k++) this.finishSequence(this.newSequence(req, k, seq.params.seed + k, seq.params, seq.times.arrival), 'abort', null);
      seq.pendingForks = 0;
      if (seq.isFinished) continue;
      this.scheduler.remove(seq);
      this.finishSequence(seq, 'abort', null);
    }
    this.finishRequest(req);
    return true;
  }

  /** Requests queued or running. */
  numUnfinished(): number {
    return this.requests.size;
  }

  hasUnfinished(): boolean {
    return this.requests.size > 0 || this.done.length > 0;
  }

  // ---- the step

  /** One engine step: schedule → run → postprocess. Returns the requests it finished. */
  async step(): Promise<RequestOutput[]> {
    const t0 = performance.now();
    const start = this.clock.now();
    const plan = this.scheduler.schedule();
    const out = await this.runner.run(plan.scheduled, this.blockManager.takeCopies());
    return this.postprocess(plan, out, start, t0);
  }

  private postprocess(plan: SchedulerOutput, out: RunnerOutput, start: number, t0: number): RequestOutput[] {
    const prefills: StepEntry[] = [];
    const decodes: StepEntry[] = [];
    let contextTokens = 0;
    for (const { seq, numNewTokens, numLookaheadTokens = 0 } of plan.scheduled) {
      const entry = { seqId: seq.seqId, requestId: seq.requestId, start: seq.numComputedTokens, numTokens: numNewTokens + numLookaheadTokens };
      (numNewTokens === 1 && !seq.isPrefill ? decodes : prefills).push(entry);
      seq.numComputedTokens += numNewTokens;
      seq.numDraftComputedTokens = out.draftComputed.get(seq) ?? seq.numDraftComputedTokens;
      contextTokens += seq.numComputedTokens + numLookaheadTokens;
      this.blockManager.markComputed(seq, this.hashableTokens(seq));
      seq.times.firstScheduled ??= start;
    }
    const numScheduledTokens = plan.scheduled.reduce((a, e) => a + e.numNewTokens + (e.numLookaheadTokens ?? 0), 0);
    const forwardCalls = this.runner.numForwardCalls;
    if (plan.scheduled.length > 0) {
      this.clock.onStep({ numScheduledTokens, numSeqs: plan.scheduled.length, numContextTokens: contextTokens }, performance.now() - t0);
    }
    const now = this.clock.now();

    // ---- sample (speculative decodes: accept/reject their drafts)
    const finished: Sequence[] = [];
    const specCounts = { numSeqs: 0, drafted: 0, accepted: 0, emitted: 0 };
    for (const { seq } of plan.scheduled) {
      const spec = out.spec.get(seq);
      if (spec) {
        const { emitted, accepted, finished: done } = this.acceptDrafts(seq, spec, now, out);
        specCounts.numSeqs++;
        specCounts.drafted += spec.proposal.tokens.length;
        specCounts.accepted += accepted;
        specCounts.emitted += emitted;
        if (done) finished.push(seq);
        continue;
      }
      const row = out.logits.get(seq);
      if (!row) continue;
      const group = [seq, ...this.forkChildren(seq)];
      for (const s of group) {
        if (s.numOutputTokens === 0) s.times.lastPrefillStepStart = start;
        if (this.sample(s, row, now)) finished.push(s);
      }
    }
    for (const seq of finished) this.scheduler.remove(seq);

    // ---- metrics
    const c = this.config;
    const step = this.steps.length;
    const { liveTokens, seqTokens } = this.liveTokens();
    const used = this.blockManager.numUsedBlocks;
    const metrics: StepMetrics = {
      step,
      startMs: start,
      endMs: now,
      wallMs: performance.now() - t0,
      prefills,
      decodes,
      numScheduledTokens,
      numForwardCalls: this.runner.numForwardCalls - forwardCalls,
      numRunning: this.scheduler.running.length,
      numWaiting: this.scheduler.waiting.length,
      preempted: plan.preempted.map((s) => s.seqId),
      admitted: plan.admitted.map((s) => s.seqId),
      finished: finished.map((s) => s.seqId),
      prefixCacheHitTokens: plan.admitted.reduce((a, s) => a + s.numCachedTokens, 0),
      kvBlocksUsed: used,
      kvBlocksTotal: c.numBlocks,
      liveTokens,
      seqTokens,
      liveTokenShare: used > 0 ? liveTokens / (used * c.blockSize) : 1,
    };
    if (specCounts.numSeqs > 0) metrics.spec = { ...specCounts, draftMs: out.draftMs, verifyMs: out.verifyMs };
    if (c.recordBlockTables) metrics.blockTables = this.blockTableView();
    if (plan.scheduled.length > 0 || plan.preempted.length > 0) this.steps.push(metrics);

    for (const seq of finished) {
      const req = this.requests.get(seq.requestId);
      if (req && req.seqs.every((s) => s.isFinished) && seq.pendingForks === 0) this.finishRequest(req);
    }
    return this.done.splice(0);
  }

  // parallel sampling: when the first sequence's prompt is done, its siblings fork from it
  private forkChildren(parent: Sequence): Sequence[] {
    if (parent.pendingForks === 0) return [];
    const req = this.requests.get(parent.requestId)!;
    const children: Sequence[] = [];
    for (let k = 1; k <= parent.pendingForks; k++) {
      const child = this.newSequence(req, k, parent.params.seed + k, parent.params, parent.times.arrival);
      child.times.firstScheduled = parent.times.firstScheduled;
      this.blockManager.fork(parent, child);
      this.scheduler.addRunning(child, children[children.length - 1] ?? parent);
      children.push(child);
    }
    parent.pendingForks = 0;
    return children;
  }

  // sample one token for seq from its logits row; true when the sequence finished
  private sample(seq: Sequence, row: Float32Array, now: number): boolean {
    const picked = sampleToken(row, seq.params, seq.rng, { promptTokenIds: seq.promptTokenIds, outputTokenIds: seq.outputTokenIds });
    return this.emit(seq, picked, now);
  }

  // ---- speculative decoding

  // drafts wanted for seq's next step (the scheduler caps them)
  private gammaOf(seq: Sequence): number {
    const g = this.config.speculative!.gamma;
    if (g !== 'adaptive') return g;
    let a = this.adaptive.get(seq);
    if (!a) this.adaptive.set(seq, (a = new AdaptiveGamma(this.config.speculative!.adaptive)));
    return a.gamma;
  }

  // tokens of seq that may be named in the prefix cache: those both models' caches hold
  private hashableTokens(seq: Sequence): number {
    return this.runner.draft ? Math.min(seq.numComputedTokens, seq.numDraftComputedTokens) : seq.numComputedTokens;
  }

  /**
   * A speculative decode's verdict (lesson 4): lib/spec's acceptReject on the sequence's gamma + 1
   * target distributions, commit the accepted drafts and the resampled or bonus token (up to a
   * stop), then roll both caches back to the committed tokens and free the emptied blocks.
   */
  private acceptDrafts(seq: Sequence, spec: SpeculativeRowOutput, now: number, out: RunnerOutput): { emitted: number; accepted: number; finished: boolean } {
    const { proposal, logits } = spec;
    const row = specRowOf(seq);
    const p = targetProbs(logits, row, proposal.tokens, seq.params); // [gamma + 1][V]
    const verdict = acceptReject(p, proposal, seq.rng, { greedy: isGreedy(seq.params) });
    const tokens = [...proposal.tokens.slice(0, verdict.accepted), verdict.token];
    let emitted = 0;
    let finished = false;
    for (let j = 0; j < tokens.length && !finished; j++) {
      const raw = logitsToLogprobs(logits[j]); // [V] the target's raw distribution
      const topLogprobs = seq.params.logprobs > 0 ? Array.from(topKIndices(raw, seq.params.logprobs), (id) => ({ token: id, logprob: raw[id] })) : undefined;
      finished = this.emit(seq, { token: tokens[j], logprob: raw[tokens[j]], topLogprobs }, now);
      emitted++;
    }
    // rollback: the target holds every committed token but the newest, the draft at most that
    seq.numComputedTokens = seq.numTokens - 1;
    seq.numDraftComputedTokens = Math.min(spec.numDraftComputedTokens, seq.numComputedTokens);
    if (!finished && this.config.policy === 'continuous') this.blockManager.trim(seq);
    this.blockManager.markComputed(seq, this.hashableTokens(seq));
    this.adaptive.get(seq)?.observe(proposal.tokens.length, verdict.accepted);
    const trace: StepTrace = {
      step: this.steps.length,
      row: seq.seqId,
      gamma: proposal.tokens.length,
      drafted: proposal.tokens,
      accepted: verdict.accepted,
      acceptProbs: verdict.acceptProbs,
      token: verdict.token,
      kind: verdict.kind,
      draftMs: out.draftMs,
      verifyMs: out.verifyMs,
      acceptMs: 0,
    };
    this.specStats!.record(trace);
    return { emitted, accepted: verdict.accepted, finished };
  }

  // append one chosen token to seq: stop checks, streaming event; true when the sequence finished
  private emit(seq: Sequence, picked: { token: number; logprob: number; topLogprobs?: TokenLogprob[] }, now: number): boolean {
    seq.tokenIds.push(picked.token);
    seq.logprobs.push(picked.logprob);
    if (picked.topLogprobs) seq.topLogprobs.push(picked.topLogprobs);
    seq.times.tokens.push(now);
    let status = seq.stop.push(picked.token, seq.decoder?.push(picked.token) ?? '');
    // out of room: the context (or the whole KV pool) cannot take another position
    if (!status.finished && seq.numTokens >= this.scheduler.maxSeqLen) {
      status = { ...status, finished: true, finishReason: 'length', delta: status.delta + seq.stop.text.slice(seq.text.length + status.delta.length) };
    }
    seq.text += status.delta;
    if (status.finished) {
      seq.text = seq.stop.text;
      this.finishSequence(seq, status.finishReason!, status.stopReason);
    }
    this.requests.get(seq.requestId)?.onToken?.({
      requestId: seq.requestId,
      index: seq.index,
      token: picked.token,
      text: status.delta,
      logprob: picked.logprob,
      topLogprobs: picked.topLogprobs,
      finished: status.finished,
      finishReason: seq.finishReason,
    });
    return status.finished;
  }

  // ---- views

  /** Every running sequence's block table with ref counts (the lesson's block-table view). */
  blockTableView(): BlockTableSnapshot[] {
    return this.scheduler.running.map((s) => ({
      seqId: s.seqId,
      requestId: s.requestId,
      numTokens: s.numComputedTokens,
      blocks: [...s.blockTable],
      refCounts: s.blockTable.map((id) => this.blockManager.blocks[id].refCount),
    }));
  }

  /** Sequences holding blocks now (for invariant checks). */
  liveSequences(): Sequence[] {
    return [...this.scheduler.running];
  }

  /** Free the KV pool. The model is not disposed (it is not the engine's). */
  dispose(): void {
    this.runner.dispose();
  }

  // ---- helpers

  private tokenize(prompt: EnginePrompt): number[] {
    let ids: number[];
    if (typeof prompt === 'string') {
      if (!this.tokenizer) throw new Error('prompt is text but the engine has no tokenizer: pass token ids');
      ids = this.tokenizer.encode(prompt);
    } else if (Array.isArray(prompt)) {
      ids = [...prompt];
    } else {
      throw new Error(`a prompt must be a string or an array of token ids, got ${typeof prompt}`);
    }
    if (ids.length === 0) throw new Error('prompt is empty: give at least one token');
    const V = this.model.config.vocabSize;
    const bad = ids.find((t) => !Number.isInteger(t) || t < 0 || t >= V);
    if (bad !== undefined) throw new Error(`prompt: token id ${bad} is not an integer in [0, ${V})`);
    return ids;
  }

  // why a request can never run here, or null
  private cannotFit(promptTokens: number, n: number): string | null {
    const c = this.config;
    if (promptTokens >= c.maxModelLen) {
      return `prompt has ${promptTokens} tokens but maxModelLen (the context) is ${c.maxModelLen}: at most ${c.maxModelLen - 1} leave room to generate`;
    }
    const pool = c.numBlocks * c.blockSize;
    if (promptTokens >= pool) {
      return `prompt has ${promptTokens} tokens but the whole KV pool holds ${pool} (numBlocks ${c.numBlocks} x blockSize ${c.blockSize}): it can never fit`;
    }
    if (n > c.maxNumSeqs) return `n = ${n} completions exceed maxNumSeqs = ${c.maxNumSeqs}: they can never run together`;
    return null;
  }

  private newSequence(req: Request, index: number, seed: number, params: Sequence['params'], arrival: number): Sequence {
    const seq = new Sequence({
      seqId: this.nextSeqId++,
      requestId: req.id,
      index,
      promptTokenIds: req.promptTokenIds,
      params,
      seed,
      eosTokenIds: this.eos,
      tokenizer: this.tokenizer ?? undefined,
      arrival,
    });
    req.seqs.push(seq);
    return seq;
  }

  private finishSequence(seq: Sequence, reason: CompletionFinishReason, stopReason: number | string | null): void {
    this.adaptive.delete(seq);
    seq.status = 'finished';
    seq.finishReason = reason;
    seq.stopReason = stopReason;
    seq.times.finished = this.clock.now();
    this.finishedMetrics.push(sequenceMetrics(seq));
  }

  private finishRequest(req: Request): void {
    this.requests.delete(req.id);
    const outputs: CompletionOutput[] = req.seqs.map((s) => ({
      index: s.index,
      text: s.text,
      tokenIds: s.outputTokenIds,
      logprobs: s.logprobs,
      topLogprobs: s.params.logprobs > 0 ? s.topLogprobs : undefined,
      finishReason: s.finishReason!,
      stopReason: s.stopReason,
      seed: s.seed,
      metrics: sequenceMetrics(s),
    }));
    this.done.push({ requestId: req.id, promptTokenIds: req.promptTokenIds, outputs, error: null });
  }

  // tokens in used blocks (shared blocks once) and summed over running sequences
  private liveTokens(): { liveTokens: number; seqTokens: number } {
    const bs = this.config.blockSize;
    const filled = new Map<number, number>();
    let seqTokens = 0;
    for (const s of this.scheduler.running) {
      seqTokens += s.numComputedTokens;
      s.blockTable.forEach((id, i) => {
        const n = Math.max(0, Math.min(bs, s.numComputedTokens - i * bs));
        filled.set(id, Math.max(filled.get(id) ?? 0, n));
      });
    }
    let liveTokens = 0;
    for (const n of filled.values()) liveTokens += n;
    return { liveTokens, seqTokens };
  }
}
