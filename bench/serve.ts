/**
 * Serving benchmark (issue 5; lessons 3 "PagedAttention" and 5 "continuous batching"). Not a
 * test: it prints figures and writes data/bench/serve.json for the charts, and asserts nothing.
 *
 *   1. memory: live-token share of allocated KV, paged (continuous engine) vs contiguous
 *      preallocation (every running sequence reserving maxModelLen slots, or its own
 *      prompt + maxTokens as the static baseline does), on the same trace
 *   2. throughput: continuous vs static batching at equal KV memory (same pool, same
 *      maxNumSeqs) on a varied-output-length trace; p50/p99 TTFT and TPOT beside it
 *   3. prefix caching: TTFT with and without, on a shared-system-prompt workload (Poisson
 *      arrivals on a virtual clock), with the hit rate
 *   4. step time: one decode step through the paged cache vs the contiguous cache, same batch
 *
 *   npm run bench:serve [-- --full] [-- --model DIR] [-- --out PATH] [-- --backend wasm|webgpu|...]
 *
 * What runs is deterministic (seeded workloads; offline traces and a virtual clock for
 * arrivals), so reruns on a quiet machine time exactly the same steps. --quick (default) keeps
 * the run to a few minutes on 2 cores; --full uses longer traces and more batch sizes.
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

import { initBackend, type BackendPreference } from '../lib/backend';
import { writeBenchJson, benchFlags, runBench } from '../lib/bench/harness';
import { VirtualClock, RealClock, type Clock, type LinearStepCost } from '../lib/engine/clock';
import type { EngineConfigInput } from '../lib/engine/config';
import { LLMEngine } from '../lib/engine/llmEngine';
import { percentile } from '../lib/eval/stats';
import { summarizeRun, type RunSummary, type StepMetrics } from '../lib/engine/metrics';
import { makeWorkload, replay, type WorkloadRequest, type WorkloadSpec } from '../lib/engine/workload';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { PagedKVCache } from '../lib/kv/paged';
import type { LlamaModel } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';

// ---- flags

const argv = process.argv.slice(2);
const flags = benchFlags(argv);
const flag = flags.value;
const full = argv.includes('--full');
const modelDir = flag('model') ?? 'data/models/target';
const outPath = flag('out') ?? path.join('data', 'bench', 'serve.json');
const backendFlag = (flag('backend') ?? 'wasm') as BackendPreference;

const SIZES = full
  ? { traceRequests: 64, prefixRequests: 48, stepBatches: [1, 4, 8, 16], stepContexts: [256, 512], stepRepeats: 20 }
  : { traceRequests: 24, prefixRequests: 24, stepBatches: [1, 8, 16], stepContexts: [256], stepRepeats: 12 };

const BLOCK_SIZE = 16;
const NUM_BLOCKS = 128; // 2048 tokens of KV: the "equal KV memory" of both schedulers
const MAX_NUM_SEQS = 32;

// ---- helpers

const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

async function runTrace(model: LlamaModel, workload: WorkloadRequest[], config: EngineConfigInput, clock: Clock) {
  const engine = new LLMEngine(model, null, config, clock);
  const t0 = performance.now();
  const outs = await replay(engine, workload);
  const wallMs = performance.now() - t0;
  const failed = outs.filter((o) => o.error !== null).length;
  if (failed > 0) throw new Error(`${failed} requests failed`);
  const summary = summarizeRun(engine.finishedMetrics, engine.steps, engine.config.blockSize);
  engine.dispose();
  return { engine, summary, wallMs, steps: engine.steps, seqs: engine.finishedMetrics };
}

// contiguous preallocation baseline on the same steps: every running sequence reserves maxModelLen slots
function contiguousShare(steps: readonly StepMetrics[], maxModelLen: number): number {
  let live = 0;
  let alloc = 0;
  for (const s of steps) {
    live += s.seqTokens;
    alloc += s.numRunning * maxModelLen;
  }
  return alloc > 0 ? live / alloc : 1;
}

// the timeline a Gantt chart reads: per step, who prefilled (and how much), who decoded, who was preempted
function timeline(steps: readonly StepMetrics[]) {
  return steps.map((s) => ({
    step: s.step,
    startMs: s.startMs,
    endMs: s.endMs,
    prefills: s.prefills.map((p) => [p.requestId, p.start, p.numTokens]),
    decodes: s.decodes.map((d) => d.requestId),
    preempted: s.preempted,
    kvBlocksUsed: s.kvBlocksUsed,
    liveTokenShare: Number(s.liveTokenShare.toFixed(4)),
  }));
}

function brief(s: RunSummary) {
  return {
    outputTokens: s.outputTokens,
    durationMs: s.durationMs,
    outputTokensPerSecond: s.outputTokensPerSecond,
    ttftMs: s.ttftMs,
    tpotMs: s.tpotMs,
    e2eMs: s.e2eMs,
    numSteps: s.numSteps,
    numPreemptions: s.numPreemptions,
    liveTokenShare: s.liveTokenShare,
    peakKvBlocksUsed: s.peakKvBlocksUsed,
  };
}

// ---- 4. step time: paged vs contiguous, one decode step at batch B, context L

async function stepTime(model: LlamaModel, B: number, L: number, repeats: number) {
  const prompt = Array.from({ length: L }, (_, i) => ((i * 13) % (model.config.vocabSize - 1)) + 1);
  const nb = Math.ceil((L + 1) / BLOCK_SIZE);
  const contiguous = new ContiguousKVCache(model.kvShape, B);
  const paged = new PagedKVCache(model.kvShape, { numBlocks: nb * B, blockSize: BLOCK_SIZE });
  // interleaved block tables: sequence b owns blocks b, b + B, b + 2B, ...
  const tables = Array.from({ length: B }, (_, b) => Array.from({ length: nb }, (_, j) => j * B + b));
  const prompts = Array.from({ length: B }, () => prompt);
  tf.dispose(model.forward(prompts, contiguous));
  paged.setBatch(tables.map((t) => ({ blockTable: t, numCachedTokens: 0 })));
  tf.dispose(model.forward(prompts, paged));
  const tokens = Array.from({ length: B }, () => [5]);
  const c: number[] = [];
  const p: number[] = [];
  for (let i = 0; i < repeats + 2; i++) {
    let t0 = performance.now();
    let out = model.forward(tokens, contiguous);
    await out.data();
    out.dispose();
    contiguous.truncate(new Array(B).fill(L));
    if (i >= 2) c.push(performance.now() - t0);
    t0 = performance.now();
    paged.setBatch(tables.map((t) => ({ blockTable: t, numCachedTokens: L })));
    out = model.forward(tokens, paged);
    await out.data();
    out.dispose();
    if (i >= 2) p.push(performance.now() - t0);
  }
  contiguous.dispose();
  paged.dispose();
  const cm = percentile(c, 50);
  const pm = percentile(p, 50);
  return { batch: B, context: L, contiguousMedianMs: cm, pagedMedianMs: pm, ratio: pm / cm, contiguousMinMs: Math.min(...c), pagedMinMs: Math.min(...p) };
}

// ---- main

async function main() {
  const backend = await initBackend({ prefer: backendFlag });
  const model = await loadModel(modelDir);
  const V = model.config.vocabSize;
  const maxModelLen = model.config.maxPositions;
  console.log(`serve bench (${full ? 'full' : 'quick'}): ${modelDir} on ${backend.name}; pool ${NUM_BLOCKS} x ${BLOCK_SIZE} tokens, maxNumSeqs ${MAX_NUM_SEQS}`);

  // ---- 1 + 2: one varied-length trace, continuous vs static at equal KV memory
  const traceSpec: WorkloadSpec = {
    numRequests: SIZES.traceRequests,
    arrival: { kind: 'burst' },
    promptLen: { kind: 'lognormal', median: 48, sigma: 0.8, min: 4, max: 400 },
    outputLen: { kind: 'lognormal', median: 48, sigma: 0.9, min: 4, max: 320 },
    vocabSize: V,
    seed: 1,
  };
  const trace = makeWorkload(traceSpec);
  const common: EngineConfigInput = { blockSize: BLOCK_SIZE, numBlocks: NUM_BLOCKS, maxNumSeqs: MAX_NUM_SEQS, enablePrefixCaching: false };
  const cont = await runTrace(model, trace, { ...common, policy: 'continuous' }, new RealClock());
  console.log(`continuous: ${fmt(cont.summary.outputTokensPerSecond)} tok/s, ${cont.summary.numSteps} steps, ${cont.summary.numPreemptions} preemptions, wall ${fmt(cont.wallMs / 1000)} s`);
  const stat = await runTrace(model, trace, { ...common, policy: 'static' }, new RealClock());
  console.log(`static:     ${fmt(stat.summary.outputTokensPerSecond)} tok/s, ${stat.summary.numSteps} steps, wall ${fmt(stat.wallMs / 1000)} s`);

  // the same two schedules priced by a memory-bound cost model (a step costs about the same at
  // any small batch, as on a GPU): what batching buys where decode is bandwidth-bound
  const memoryBound: LinearStepCost = { stepMs: 10, perTokenMs: 0.02, perSeqMs: 0, perContextTokenMs: 0 };
  const priced = (steps: readonly StepMetrics[]) => steps.reduce((a, s) => a + memoryBound.stepMs + memoryBound.perTokenMs * s.numScheduledTokens, 0);
  const virtualRatio = (cont.summary.outputTokens / priced(cont.steps)) / (stat.summary.outputTokens / priced(stat.steps));

  const memory = {
    pagedLiveTokenShare: cont.summary.liveTokenShare,
    contiguousMaxModelLenShare: contiguousShare(cont.steps, maxModelLen),
    staticReservationShare: stat.summary.liveTokenShare,
    maxModelLen,
  };
  const throughput = {
    continuous: brief(cont.summary),
    static: brief(stat.summary),
    ratio: cont.summary.outputTokensPerSecond / stat.summary.outputTokensPerSecond,
    stepsRatio: stat.summary.numSteps / cont.summary.numSteps,
    memoryBoundCostModel: { cost: memoryBound, ratio: virtualRatio },
  };
  console.log(`live-token share: paged ${fmt(memory.pagedLiveTokenShare, 3)} | contiguous @maxModelLen ${fmt(memory.contiguousMaxModelLenShare, 3)} | static reservation ${fmt(memory.staticReservationShare, 3)}`);
  console.log(`continuous / static: ${fmt(throughput.ratio, 2)}x measured tok/s (${fmt(throughput.stepsRatio, 2)}x fewer steps; ${fmt(virtualRatio, 2)}x under a memory-bound step cost)`);
  console.log(`  TTFT p50/p99 ms: continuous ${fmt(cont.summary.ttftMs.p50, 0)}/${fmt(cont.summary.ttftMs.p99, 0)}, static ${fmt(stat.summary.ttftMs.p50, 0)}/${fmt(stat.summary.ttftMs.p99, 0)}`);
  console.log(`  TPOT p50/p99 ms: continuous ${fmt(cont.summary.tpotMs.p50)}/${fmt(cont.summary.tpotMs.p99)}, static ${fmt(stat.summary.tpotMs.p50)}/${fmt(stat.summary.tpotMs.p99)}`);

  // ---- 3: prefix caching on shared system prompts, Poisson arrivals on a virtual clock
  const prefixSpec: WorkloadSpec = {
    numRequests: SIZES.prefixRequests,
    arrival: { kind: 'poisson', ratePerSec: 4 },
    promptLen: { kind: 'uniform', min: 8, max: 48 },
    outputLen: { kind: 'uniform', min: 8, max: 24 },
    systemPrompts: { count: 3, length: 192, share: 0.9 },
    vocabSize: V,
    seed: 2,
  };
  const prefixTrace = makeWorkload(prefixSpec);
  const prefix: Record<string, unknown> = { spec: prefixSpec };
  for (const on of [false, true]) {
    const run = await runTrace(model, prefixTrace, { ...common, enablePrefixCaching: on }, new VirtualClock());
    // measured TTFT: the real time of the steps between a request's arrival and its first token
    const measured = run.seqs.map((m) => run.steps.filter((s) => s.startMs >= m.arrivalMs && s.endMs <= m.arrivalMs + m.ttftMs).reduce((a, s) => a + s.wallMs, 0));
    const computedPrefill = run.steps.reduce((a, s) => a + s.prefills.reduce((b, p) => b + p.numTokens, 0), 0);
    const hitTokens = run.summary.prefixCacheHitTokens;
    const r = {
      virtualTtftMs: run.summary.ttftMs,
      measuredTtftMs: { p50: percentile(measured, 50), p99: percentile(measured, 99), mean: measured.reduce((a, b) => a + b, 0) / measured.length },
      hitRate: hitTokens / run.summary.promptTokens,
      hitTokens,
      prefillTokensComputed: computedPrefill,
      stepWallMs: run.summary.stepWallMs,
    };
    prefix[on ? 'on' : 'off'] = r;
    console.log(`prefix caching ${on ? 'on ' : 'off'}: TTFT p50 ${fmt(r.measuredTtftMs.p50, 0)} ms measured (${fmt(r.virtualTtftMs.p50, 0)} virtual), hit rate ${fmt(r.hitRate, 3)}, prefill tokens computed ${computedPrefill}`);
  }
  const off = prefix.off as { measuredTtftMs: { p50: number }; virtualTtftMs: { p50: number } };
  const on = prefix.on as { measuredTtftMs: { p50: number }; virtualTtftMs: { p50: number } };
  prefix.ttftReductionMeasured = 1 - on.measuredTtftMs.p50 / off.measuredTtftMs.p50;
  prefix.ttftReductionVirtual = 1 - on.virtualTtftMs.p50 / off.virtualTtftMs.p50;
  console.log(`prefix caching: p50 TTFT -${fmt(100 * (prefix.ttftReductionMeasured as number), 0)}% measured, -${fmt(100 * (prefix.ttftReductionVirtual as number), 0)}% virtual`);

  // ---- 4: paged vs contiguous decode step
  const steps = [];
  for (const L of SIZES.stepContexts) {
    for (const B of SIZES.stepBatches) {
      const r = await stepTime(model, B, L, SIZES.stepRepeats);
      steps.push(r);
      console.log(`decode step B=${B} context ${L}: contiguous ${fmt(r.contiguousMedianMs)} ms, paged ${fmt(r.pagedMedianMs)} ms (${fmt(r.ratio, 2)}x)`);
    }
  }

  const file = writeBenchJson(
    path.basename(outPath, '.json'),
    {
      mode: full ? 'full' : 'quick',
      model: modelDir,
      pool: { numBlocks: NUM_BLOCKS, blockSize: BLOCK_SIZE, maxNumSeqs: MAX_NUM_SEQS, kvBytes: 2 * model.config.numLayers * NUM_BLOCKS * BLOCK_SIZE * model.config.numKvHeads * model.config.headDim * 4 },
      trace: { spec: traceSpec, promptTokens: trace.map((r) => r.promptTokenIds.length), outputTokens: trace.map((r) => r.maxTokens) },
      memory,
      throughput,
      prefixCaching: prefix,
      stepTime: steps,
      timeline: { continuous: timeline(cont.steps), static: timeline(stat.steps) },
    },
    { dir: path.dirname(outPath) },
  );
  console.log(`wrote ${file}`);
  model.dispose();
}

runBench(main);
