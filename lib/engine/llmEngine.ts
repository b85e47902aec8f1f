// The engine (lesson 5, "continuous batching"): requests in, tokens out, one step at a time.
//
//   step() = schedule    (which sequences compute how many tokens; the scheduler alone changes
//                         the block manager)
//          → run         (the model runner: tensors, one forward per call group)
//          → postprocess (commit the computed tokens, sample, stop, free finished sequences,
//                         record metrics)
//
// With `speculative` set (lesson 4, batched), decodes are speculative steps: the scheduler
// reserves 1 + gamma slots per decoding sequence (gamma from the sequence's gammaPolicy), the
// runner drafts and verifies, postprocess runs lib/spec's acceptReject per sequence, commits
// 1..gamma+1 tokens and has the scheduler give back the rejected drafts' slots (rollbackDrafts).
//
// Every chosen token goes to its sequence's OutputRecorder (lib/generate/output.ts), which runs the stop
// checks and makes the streaming event, as in generate().
//
// Requests are added and aborted between steps; each finished request comes back from the step
// that finished it. Prompts that can never run (longer than the context or the KV pool, or n
// larger than maxNumSeqs) finish at once with an error, alone.

import { GpuLlama } from '../gpu/llama';
import type { CompletionFinishReason, RecordedOutput, TokenEvent } from '../generate/output';
import { isGreedy, resolveSamplingParams, sampleToken, type SampledToken, type SamplingParamsInput } from '../generate/sampling';
import { gammaPolicy } from '../spec/adaptive';
import { acceptGreedy, acceptReject, checkDraftCompatible, scoredToken, targetProbs, type AcceptResult } from '../spec/speculative';
import { SpecStats, type StepTrace } from '../spec/stats';
import type { Tokenizer } from '../generate/tokenizer';
import { BlockManager } from './blockManager';
import { RealClock, type Clock } from './clock';
import { resolveEngineConfig, type EngineConfig, type EngineConfigInput } from './config';
import { sequenceMetrics, type BlockTableSnapshot, type SequenceMetrics, type StepEntry, type StepMetrics, type StepSpecMetrics } from './metrics';
import { emptyRunnerOutput, ModelRunner, modelPicks, specRowOf, type RunnerOutput, type SpeculativeRowOutput } from './modelRunner';
import type { EngineModel } from './pagedModel';
import { Scheduler, type ScheduledSequence, type SchedulerOutput } from './scheduler';
import { Sequence } from './sequence';

/** A prompt: text (needs a tokenizer) or token ids. */
export type EnginePrompt = string | readonly number[];

/** One finished completion: generate()'s output fields, with the engine's finish reasons and metrics. */
export interface CompletionOutput extends RecordedOutput {
  /** which of the request's n completions */
  index: number;
  finishReason: CompletionFinishReason;
  seed: number;
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
  /** called for every token as it is sampled (streaming); events carry the request id */
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
  /** steps submitted while the step before was still on the GPU (config.overlapSteps) */
  numOverlappedSteps = 0;
  /** speculative decoding's counters (and traces, with speculative.trace), or null when off */
  readonly specStats: SpecStats | null;
  private readonly requests = new Map<string, Request>();
  private readonly done: RequestOutput[] = [];
  private nextSeqId = 0;
  /** live sequences that sample on the CPU (not modelPicks: not greedy, or forked): overlapped steps wait while any runs */
  private numSampling = 0;
  private nextRequest = 0;
  private readonly eos: readonly number[];
  /** the overlapped step on the GPU whose picks are not read yet (config.overlapSteps) */
  private inflight: InflightStep | null = null;
  /** when the last step's results were handled (an overlapped step's wall time runs from there) */
  private lastStepEnd: number | null = null;

  constructor(
    readonly model: EngineModel,
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
    if (model instanceof GpuLlama) checkCapturedCapacity(model, c);
    if (spec && spec.draft instanceof GpuLlama) checkCapturedCapacity(spec.draft, c);
    this.scheduler = new Scheduler(c, this.blockManager);
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
      for (let k = 1; k <= seq.pendingForks; k++) this.finishSequence(this.newSequence(req, k, seq.params.seed + k, seq.params, seq.times.arrival), 'abort');
      seq.pendingForks = 0;
      if (seq.isFinished) continue;
      this.scheduler.remove(seq);
      this.finishSequence(seq, 'abort');
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

  /**
   * One engine step: schedule → run → postprocess. Returns the requests it finished.
   *
   * With `overlapSteps` (SGLang's overlap scheduler, vLLM's async scheduling), a step whose every
   * sequence is greedy on the captured GPU step is only submitted: the engine schedules and
   * submits step k+1 while the GPU runs step k, and step k's picks are read and handled after
   * that. Step k+1 feeds step k's picks straight from the GPU (placeholders in the token lists,
   * OutputRecorder.hold), so the CPU's scheduling, encoding and bookkeeping hide behind the GPU.
   * A sequence that stops on step k's pick (a stop token) has run one step too many: that pick is
   * dropped; its maxTokens is known ahead, so it is never scheduled past it.
   */
  async step(): Promise<RequestOutput[]> {
    if (!this.overlaps || this.needsSampling()) {
      // not overlapped: first handle the step still on the GPU, then one step start to end
      const before = this.inflight ? await this.finishInflight() : [];
      const started = this.stepStart();
      const plan = this.scheduler.schedule();
      const out = await this.runner.run(plan.scheduled, plan.blockCopies);
      return [...before, ...this.postprocess(plan, out, started)];
    }
    const started = this.stepStart();
    const plan = this.scheduler.schedule();
    let next: InflightStep | null = null;
    if (plan.scheduled.length > 0) {
      const entries = stepEntries(plan.scheduled); // before the commit: where each computation started
      const submitted = this.runner.submitGreedy(plan.scheduled, plan.blockCopies);
      if (!submitted) throw new Error('overlapped step: the runner could not submit a greedy step (a captured model, no draft)');
      this.scheduler.commit(plan.scheduled, new Map(), { mark: false });
      for (const [seq, row] of submitted.rows) seq.output.hold(-(row + 1)); // its pick, fed on by the next step
      for (const { seq } of plan.scheduled) seq.times.firstScheduled ??= started.clock;
      next = { plan, entries, started, read: submitted.read };
      if (this.inflight) this.numOverlappedSteps++;
    }
    const done = this.inflight ? await this.finishInflight() : [];
    if (!next && plan.preempted.length > 0) this.recordStep(plan, emptyRunnerOutput(), stepEntries([]), [], { numSeqs: 0, drafted: 0, accepted: 0, emitted: 0 }, started, this.clock.now());
    this.inflight = next;
    return done;
  }

  // read the overlapped step's picks and handle them as postprocess does (its commit came at submit)
  private async finishInflight(): Promise<RequestOutput[]> {
    const { plan, entries, started, read } = this.inflight!;
    this.inflight = null;
    const out = await read();
    this.advanceClock(plan, started);
    const now = this.clock.now();
    const { finished, spec } = this.sampleAll(plan, out, started.clock, now);
    this.scheduler.markComputed(plan.scheduled); // (the placeholders fed are picks now: the blocks can be hashed)
    for (const seq of finished) this.scheduler.remove(seq);
    this.recordStep(plan, out, entries, finished, spec, started, now);
    this.finishRequestsOf(finished);
    return this.done.splice(0);
  }

  // whether steps may overlap: asked for, on the captured GPU step, nothing speculating
  private get overlaps(): boolean {
    return this.config.overlapSteps && this.model instanceof GpuLlama && !this.config.speculative;
  }

  // a sequence that samples on the CPU is live: its next token is needed before the next step
  private needsSampling(): boolean {
    return this.numSampling > 0;
  }

  private stepStart(): StepStart {
    return { clock: this.clock.now(), wall: performance.now(), forwardCalls: this.runner.numForwardCalls };
  }

  // after the run: commit what was computed, sample (or accept drafts), free the finished
  // sequences, record the step, hand out the finished requests
  private postprocess(plan: SchedulerOutput, out: RunnerOutput, started: StepStart): RequestOutput[] {
    const entries = stepEntries(plan.scheduled); // before the commit: where each computation started
    this.scheduler.commit(plan.scheduled, out.draftComputed);
    for (const { seq } of plan.scheduled) seq.times.firstScheduled ??= started.clock;
    this.advanceClock(plan, started);
    const now = this.clock.now();
    const { finished, spec } = this.sampleAll(plan, out, started.clock, now);
    for (const seq of finished) this.scheduler.remove(seq);
    this.recordStep(plan, out, entries, finished, spec, started, now);
    this.finishRequestsOf(finished);
    return this.done.splice(0);
  }

  // a virtual clock advances by the step's modelled cost; a real one ignores this
  private advanceClock(plan: SchedulerOutput, started: StepStart): void {
    if (plan.scheduled.length === 0) return;
    const numContextTokens = plan.scheduled.reduce((a, e) => a + e.seq.numComputedTokens + (e.numLookaheadTokens ?? 0), 0);
    this.clock.onStep({ numScheduledTokens: numScheduledTokens(plan.scheduled), numSeqs: plan.scheduled.length, numContextTokens }, performance.now() - started.wall);
  }

  // the next token of every sequence whose step ended at its last token (forked siblings
  // included); speculative decodes accept or reject their drafts instead
  private sampleAll(plan: SchedulerOutput, out: RunnerOutput, stepStart: number, now: number): { finished: Sequence[]; spec: SpecCounts } {
    const finished: Sequence[] = [];
    const spec: SpecCounts = { numSeqs: 0, drafted: 0, accepted: 0, emitted: 0 };
    for (const { seq } of plan.scheduled) {
      if (seq.isFinished) continue; // (overlapped steps: it stopped on the step before's pick, or was aborted)
      const drafts = out.spec.get(seq);
      if (drafts) {
        const { emitted, accepted } = this.acceptDrafts(seq, drafts, now, out);
        spec.numSeqs++;
        spec.drafted += drafts.proposal.tokens.length;
        spec.accepted += accepted;
        spec.emitted += emitted;
        if (seq.isFinished) finished.push(seq);
        continue;
      }
      const row = out.logits.get(seq);
      const chosen = out.greedy.get(seq); // picked where the logits are (greedy on the captured path)
      if (!row && !chosen) continue;
      for (const s of [seq, ...this.forkChildren(seq)]) {
        if (s.numOutputTokens === s.numPendingTokens) s.times.lastPrefillStepStart = stepStart; // (its first pick)
        const picked = chosen ?? sampleToken(row!, s.params, s.rng, { promptTokenIds: s.promptTokenIds, outputTokenIds: s.outputTokenIds });
        if (this.emit(s, picked, now)) finished.push(s);
      }
    }
    return { finished, spec };
  }

  // the step's metrics (kept when the step did anything)
  private recordStep(plan: SchedulerOutput, out: RunnerOutput, entries: StepEntries, finished: Sequence[], spec: SpecCounts, started: StepStart, now: number): void {
    const c = this.config;
    const { liveTokens, seqTokens } = this.blockManager.liveTokens(this.scheduler.running);
    const used = this.blockManager.numUsedBlocks;
    const metrics: StepMetrics = {
      step: this.steps.length,
      startMs: started.clock,
      endMs: now,
      // an overlapped step shares its time with its neighbours: its wall time runs from the last one's end
      wallMs: performance.now() - (this.overlaps && this.lastStepEnd !== null ? Math.max(started.wall, this.lastStepEnd) : started.wall),
      prefills: entries.prefills,
      decodes: entries.decodes,
      numScheduledTokens: numScheduledTokens(plan.scheduled),
      numForwardCalls: this.runner.numForwardCalls - started.forwardCalls,
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
    if (spec.numSeqs > 0) metrics.spec = { ...spec, draftMs: out.draftMs, verifyMs: out.verifyMs };
    if (c.recordBlockTables) metrics.blockTables = this.blockTableView();
    if (plan.scheduled.length > 0 || plan.preempted.length > 0) this.steps.push(metrics);
    this.lastStepEnd = performance.now();
  }

  // a request is done when all its completions are (and none is still to fork)
  private finishRequestsOf(finished: readonly Sequence[]): void {
    for (const seq of finished) {
      const req = this.requests.get(seq.requestId);
      if (req && req.seqs.every((s) => s.isFinished) && seq.pendingForks === 0) this.finishRequest(req);
    }
  }

  // parallel sampling: when the first sequence's prompt is done, its siblings fork from it
  private forkChildren(parent: Sequence): Sequence[] {
    if (parent.pendingForks === 0) return [];
    const req = this.requests.get(parent.requestId)!;
    const children: Sequence[] = [];
    for (let k = 1; k <= parent.pendingForks; k++) {
      const child = this.newSequence(req, k, parent.params.seed + k, parent.params, parent.times.arrival);
      child.times.firstScheduled = parent.times.firstScheduled;
      this.scheduler.fork(parent, child, children[children.length - 1] ?? parent);
      children.push(child);
    }
    parent.pendingForks = 0;
    return children;
  }

  // ---- speculative decoding

  /**
   * A speculative decode's verdict (lesson 4): lib/spec's acceptReject on the sequence's gamma + 1
   * target distributions, commit the accepted drafts and the resampled or bonus token (up to a
   * stop), then the scheduler rolls both caches back to the committed tokens.
   */
  private acceptDrafts(seq: Sequence, spec: SpeculativeRowOutput, now: number, out: RunnerOutput): { emitted: number; accepted: number } {
    const { proposal, logits, picks } = spec;
    // greedy on the captured step: the target's picks decide (the same verdict, no [V] rows)
    const verdict = picks
      ? acceptGreedy(picks, proposal.tokens)
      : acceptReject(targetProbs(logits, specRowOf(seq), proposal.tokens, seq.params), proposal, seq.rng, { greedy: isGreedy(seq.params) });
    const tokens = [...proposal.tokens.slice(0, verdict.accepted), verdict.token];
    let emitted = 0;
    while (emitted < tokens.length && !seq.isFinished) {
      this.emit(seq, picks ? picks[emitted] : scoredToken(logits[emitted], tokens[emitted], seq.params.logprobs), now);
      emitted++;
    }
    this.scheduler.rollbackDrafts(seq, spec.numDraftComputedTokens);
    seq.gammaPolicy?.observe(proposal.tokens.length, verdict.accepted);
    this.specStats!.record(this.traceOf(seq, proposal.tokens, verdict, out));
    return { emitted, accepted: verdict.accepted };
  }

  private traceOf(seq: Sequence, drafted: number[], verdict: AcceptResult, out: RunnerOutput): StepTrace {
    return {
      step: this.steps.length,
      row: seq.seqId,
      gamma: drafted.length,
      drafted,
      accepted: verdict.accepted,
      acceptProbs: verdict.acceptProbs,
      token: verdict.token,
      kind: verdict.kind,
      draftMs: out.draftMs,
      verifyMs: out.verifyMs,
      acceptMs: 0,
    };
  }

  // append one chosen token to seq (its recorder checks the stops) and stream the event; true when the sequence finished
  private emit(seq: Sequence, picked: SampledToken, now: number): boolean {
    const event: TokenEvent = seq.output.record(picked, now);
    if (event.finished) this.finishSequence(seq);
    this.requests.get(seq.requestId)?.onToken?.(event);
    return event.finished;
  }

  // ---- views

  /** Every running sequence's block table with ref counts (the lesson's block-table view). */
  blockTableView(): BlockTableSnapshot[] {
    return this.blockManager.tableSnapshots(this.scheduler.running);
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
      maxLength: this.scheduler.maxSeqLen,
      gammaPolicy: this.config.speculative ? gammaPolicy(this.config.speculative.gamma, this.config.speculative.adaptive) : null,
    });
    req.seqs.push(seq);
    if (!modelPicks(params)) this.numSampling++;
    return seq;
  }

  // the sequence is done: its recorder saw a stop, or `reason` ('abort') ends it
  private finishSequence(seq: Sequence, reason?: CompletionFinishReason): void {
    if (!modelPicks(seq.params)) this.numSampling--;
    if (reason) seq.output.finish(reason);
    seq.status = 'finished';
    seq.times.finished = this.clock.now();
    this.finishedMetrics.push(sequenceMetrics(seq));
  }

  private finishRequest(req: Request): void {
    this.requests.delete(req.id);
    const outputs: CompletionOutput[] = req.seqs.map((s) => ({
      index: s.index,
      ...s.output.result(),
      finishReason: s.finishReason!,
      seed: s.seed,
      metrics: sequenceMetrics(s),
    }));
    this.done.push({ requestId: req.id, promptTokenIds: req.promptTokenIds, outputs, error: null });
  }
}

// ---- step bookkeeping

// when a step started: engine clock, wall clock, forward calls so far
interface StepStart {
  clock: number;
  wall: number;
  forwardCalls: number;
}

/** An overlapped step on the GPU: what was scheduled, and how to read its picks. */
interface InflightStep {
  plan: SchedulerOutput;
  entries: StepEntries;
  started: StepStart;
  read: () => Promise<RunnerOutput>;
}

interface StepEntries {
  prefills: StepEntry[];
  decodes: StepEntry[];
}

type SpecCounts = Omit<StepSpecMetrics, 'draftMs' | 'verifyMs'>;

// each scheduled sequence's part of the step (read before the commit moves numComputedTokens)
function stepEntries(scheduled: readonly ScheduledSequence[]): StepEntries {
  const out: StepEntries = { prefills: [], decodes: [] };
  for (const { seq, numNewTokens, numLookaheadTokens = 0 } of scheduled) {
    const entry = { seqId: seq.seqId, requestId: seq.requestId, start: seq.numComputedTokens, numTokens: numNewTokens + numLookaheadTokens };
    (numNewTokens === 1 && !seq.isPrefill ? out.decodes : out.prefills).push(entry);
  }
  return out;
}

// tokens the step computes, drafted ones included
function numScheduledTokens(scheduled: readonly ScheduledSequence[]): number {
  return scheduled.reduce((a, e) => a + e.numNewTokens + (e.numLookaheadTokens ?? 0), 0);
}

/**
 * Sizes a captured model (lib/gpu) needs to serve an engine of config `c`: its buffers are made
 * once, for the largest step the scheduler can plan (every batched token may get a logits row
 * when verifying drafts).
 */
export function capturedOptionsFor(c: Pick<EngineConfig, 'maxNumBatchedTokens' | 'maxNumSeqs' | 'blockSize' | 'numBlocks'>) {
  return { maxTokens: c.maxNumBatchedTokens, maxSeqs: c.maxNumSeqs, maxLogitRows: c.maxNumBatchedTokens, blockSize: c.blockSize, numBlocks: c.numBlocks };
}

// a captured model built smaller than the engine's largest step fails now, not mid-run
function checkCapturedCapacity(m: GpuLlama, c: EngineConfig): void {
  const need = capturedOptionsFor(c);
  const have = { maxTokens: m.maxTokens, maxSeqs: m.maxSeqs, maxLogitRows: m.maxLogitRows, blockSize: m.blockSize, numBlocks: m.numBlocks };
  for (const k of Object.keys(need) as (keyof typeof need)[]) {
    const short = k === 'blockSize' ? have[k] !== need[k] : have[k] < need[k];
    if (short) {
      throw new Error(`captured model '${m.name}' was built with ${k} = ${have[k]}, this engine needs ${need[k]}: build it with capturedOptionsFor(engineConfig)`);
    }
  }
}
