// Serving metrics (lesson 5, "continuous batching"): per sequence (queueing, TTFT and its parts,
// TPOT, inter-token latencies, end-to-end) and per step (batch composition, tokens, KV blocks,
// live-token share, preemptions, prefix-cache hits). Steps feed the scheduler timeline (a Gantt
// of prefill chunks / decodes / preemptions per step) and the block-table view.

import { percentile } from '../eval/stats';
import type { Sequence } from './sequence';

/** Latencies of one completion, in ms on the engine's clock. */
export interface SequenceMetrics {
  arrivalMs: number;
  promptTokens: number;
  outputTokens: number;
  /** prompt tokens served by the prefix cache (at its last admission) */
  cachedPromptTokens: number;
  numPreemptions: number;
  /** arrival -> first scheduled */
  queueMs: number;
  /** arrival -> first token: ttftQueueMs + ttftPrefillMs + ttftFirstTokenMs */
  ttftMs: number;
  /** waiting to be scheduled */
  ttftQueueMs: number;
  /** first scheduled -> start of the step that finishes the prompt (earlier chunks, waits between them) */
  ttftPrefillMs: number;
  /** the step that computes the last prompt chunk and samples the first token */
  ttftFirstTokenMs: number;
  /** (e2e - ttft) / (outputTokens - 1) */
  tpotMs: number;
  /** gaps between consecutive tokens */
  itlMs: number[];
  /** arrival -> last token */
  e2eMs: number;
}

/** One sequence's part in a step. */
export interface StepEntry {
  seqId: number;
  requestId: string;
  /** first position computed */
  start: number;
  numTokens: number;
}

/** One sequence's block table after a step (block-table view). */
export interface BlockTableSnapshot {
  seqId: number;
  requestId: string;
  numTokens: number;
  blocks: number[];
  refCounts: number[];
}

/** What one engine step did. */
export interface StepMetrics {
  step: number;
  /** engine clock at the start and end of the step (ms) */
  startMs: number;
  endMs: number;
  /** measured wall time of schedule + run + postprocess (ms) */
  wallMs: number;
  prefills: StepEntry[];
  decodes: StepEntry[];
  numScheduledTokens: number;
  numForwardCalls: number;
  numRunning: number;
  numWaiting: number;
  preempted: number[];
  admitted: number[];
  finished: number[];
  /** prompt tokens found in the prefix cache by this step's admissions */
  prefixCacheHitTokens: number;
  kvBlocksUsed: number;
  kvBlocksTotal: number;
  /** tokens held in used blocks (each shared block counted once) */
  liveTokens: number;
  /** tokens held summed over running sequences (shared blocks counted per sequence) */
  seqTokens: number;
  /** liveTokens / (kvBlocksUsed * blockSize); 1 when nothing is held */
  liveTokenShare: number;
  blockTables?: BlockTableSnapshot[];
  /** speculative decoding (lesson 4): this step's speculative decodes, drafts and their verdicts */
  spec?: StepSpecMetrics;
}

/** A step's speculative decodes: tokens drafted, accepted and emitted over the batch. */
export interface StepSpecMetrics {
  numSeqs: number;
  drafted: number;
  accepted: number;
  /** tokens committed: accepted drafts + one resampled or bonus token per sequence (up to stops) */
  emitted: number;
  /** wall ms of the draft phase (gamma draft calls) and the one verify call */
  draftMs: number;
  verifyMs: number;
}

/** Metrics of a sequence from its timestamps. */
export function sequenceMetrics(seq: Sequence): SequenceMetrics {
  const t = seq.times;
  const { ttftMs, tpotMs, itlMs, e2eMs } = seq.output.latencies(t.arrival, t.finished ?? t.arrival);
  const first = seq.output.times[0] ?? t.finished ?? t.arrival; // the first token (or the end, with none)
  const scheduled = t.firstScheduled ?? first;
  const prefillStart = t.lastPrefillStepStart ?? scheduled;
  return {
    arrivalMs: t.arrival,
    promptTokens: seq.numPromptTokens,
    outputTokens: seq.numOutputTokens,
    cachedPromptTokens: seq.numCachedTokens,
    numPreemptions: seq.numPreemptions,
    queueMs: scheduled - t.arrival,
    ttftMs,
    ttftQueueMs: scheduled - t.arrival,
    ttftPrefillMs: prefillStart - scheduled,
    ttftFirstTokenMs: first - prefillStart,
    tpotMs,
    itlMs,
    e2eMs,
  };
}

/** Figures of a whole run. */
export interface RunSummary {
  numSequences: number;
  outputTokens: number;
  promptTokens: number;
  /** engine clock from the first arrival to the last token (ms) */
  durationMs: number;
  /** summed measured wall time of all steps (ms) */
  stepWallMs: number;
  /** output tokens per second of engine clock */
  outputTokensPerSecond: number;
  ttftMs: { p50: number; p99: number; mean: number };
  tpotMs: { p50: number; p99: number; mean: number };
  e2eMs: { p50: number; p99: number };
  numSteps: number;
  numPreemptions: number;
  /** mean over steps of liveTokenShare, weighted by blocks used */
  liveTokenShare: number;
  prefixCacheHitTokens: number;
  peakKvBlocksUsed: number;
}

const mean = (v: readonly number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);

/** Summarize per-sequence and per-step metrics of a run (lesson 5's benchmark figures). */
export function summarizeRun(seqs: readonly SequenceMetrics[], steps: readonly StepMetrics[], blockSize: number): RunSummary {
  const outputTokens = seqs.reduce((a, s) => a + s.outputTokens, 0);
  const start = Math.min(...seqs.map((s) => s.arrivalMs));
  const end = Math.max(...seqs.map((s) => s.arrivalMs + s.e2eMs));
  const durationMs = seqs.length ? end - start : 0;
  const ttft = seqs.map((s) => s.ttftMs);
  const tpot = seqs.filter((s) => s.outputTokens > 1).map((s) => s.tpotMs);
  let live = 0;
  let alloc = 0;
  for (const st of steps) {
    live += st.liveTokens;
    alloc += st.kvBlocksUsed * blockSize;
  }
  return {
    numSequences: seqs.length,
    outputTokens,
    promptTokens: seqs.reduce((a, s) => a + s.promptTokens, 0),
    durationMs,
    stepWallMs: steps.reduce((a, s) => a + s.wallMs, 0),
    outputTokensPerSecond: durationMs > 0 ? (outputTokens * 1000) / durationMs : 0,
    ttftMs: { p50: percentile(ttft, 50), p99: percentile(ttft, 99), mean: mean(ttft) },
    tpotMs: { p50: percentile(tpot, 50), p99: percentile(tpot, 99), mean: mean(tpot) },
    e2eMs: { p50: percentile(seqs.map((s) => s.e2eMs), 50), p99: percentile(seqs.map((s) => s.e2eMs), 99) },
    numSteps: steps.length,
    numPreemptions: steps.reduce((a, s) => a + s.preempted.length, 0),
    liveTokenShare: alloc > 0 ? live / alloc : 1,
    prefixCacheHitTokens: steps.reduce((a, s) => a + s.prefixCacheHitTokens, 0),
    peakKvBlocksUsed: Math.max(0, ...steps.map((s) => s.kvBlocksUsed)),
  };
}
