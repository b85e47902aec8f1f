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
 *      (captured path: the same paged step with contiguous block tables vs shuffled ones)
 *   5. Poisson steady state (issue 11): continuous vs static at equal KV memory with many seats,
 *      arrivals faster than either can serve (the queue never empties while requests arrive);
 *      output tok/s over the steady-state window (first step to the step that admits the last
 *      request: the drain tail after it is excluded) and over the whole run; the pair runs three
 *      times on the same trace and the round with the median ratio is reported (every round kept)
 *
 *   npm run bench:serve [-- --full] [-- --smoke] [-- --model DIR] [-- --out PATH] [-- --backend wasm|webgpu|...]
 *     [-- --eager] [-- --format f32|bf16] [-- --threads N|all] (wasm: CPU threads, default every core)
 *     [-- --head-shared-from N] (webgpu: the LM head on the shared-memory tile from N logits rows)
 *     [-- --shared-from N] [-- --split-k S] (webgpu: the matmuls' shared-memory tile from N rows, its K in S slices)
 *     [-- --attention-narrow-from N] [-- --attention-narrow-wg T] (webgpu: attention on T-thread workgroups in steps of N tokens or more)
 *
 * With the webgpu backend the engine runs on the captured path (lib/gpu, one GpuLlama sized for
 * the largest engine config here); --eager keeps the tfjs path. --smoke: a few requests of a few
 * tokens, to check the code paths end to end (SwiftShader; try --model data/models/draft).
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
import { resolveEngineConfig, type EngineConfigInput } from '../lib/engine/config';
import { capturedOptionsFor, LLMEngine } from '../lib/engine/llmEngine';
import type { EngineModel } from '../lib/engine/pagedModel';
import { sharedGpu } from '../lib/gpu/device';
import { MATMUL_TILE_SHARED, type WeightFormat } from '../lib/gpu/kernels';
import { GpuLlama } from '../lib/gpu/llama';
import { loadGpuModel } from '../lib/gpu/load';
import { Rng } from '../lib/generate/sampling';
import { percentile } from '../lib/eval/stats';
import { summarizeRun, type RunSummary, type StepMetrics } from '../lib/engine/metrics';
import { makeWorkload, replay, type WorkloadRequest, type WorkloadSpec } from '../lib/engine/workload';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { PagedKVCache } from '../lib/kv/paged';
import type { LlamaModel } from '../lib/model/llama';
import { loadModel, modelSource } from '../lib/model/load';

// ---- flags

const argv = process.argv.slice(2);
const flags = benchFlags(argv);
const flag = flags.value;
const full = argv.includes('--full');
const smoke = flags.has('smoke');
const eagerFlag = flags.has('eager');
const FORMAT = (flag('format') ?? 'f32') as WeightFormat;
const HEAD_SHARED = flag('head-shared-from'); // (webgpu) the LM head's shared-tile threshold, GpuLlamaOptions.headSharedFrom
const SHARED_FROM_FLAG = flag('shared-from'); // (webgpu) GpuLlamaOptions.sharedFrom
const SPLIT_K = flag('split-k'); // (webgpu) the shared tile's K slices, SharedTile.splitK
const NARROW_FROM = flag('attention-narrow-from'); // (webgpu) GpuLlamaOptions.attentionNarrowFrom
const NARROW_WG = flag('attention-narrow-wg'); // (webgpu) GpuLlamaOptions.attentionNarrowWg
const modelDir = flag('model') ?? 'data/models/target';
const outPath = flag('out') ?? path.join('data', 'bench', 'serve.json');
const backendFlag = (flag('backend') ?? 'wasm') as BackendPreference;

const SIZES = smoke
  ? { traceRequests: 3, prefixRequests: 3, stepBatches: [1, 2], stepContexts: [24], stepRepeats: 2, poissonRequests: 6 }
  : full
    ? { traceRequests: 64, prefixRequests: 48, stepBatches: [1, 4, 8, 16], stepContexts: [256, 512], stepRepeats: 20, poissonRequests: 1024 }
    : { traceRequests: 24, prefixRequests: 24, stepBatches: [1, 8, 16], stepContexts: [256], stepRepeats: 12, poissonRequests: 512 };
// the captured step is cheap: its paged-vs-contiguous table sweep and decode steps per timing
const CAPTURED_STEP = smoke ? { batches: [1, 2], contexts: [24], steps: 3, rounds: 1 } : { batches: [1, 8, 32], contexts: [128, 512], steps: 64, rounds: 3 };

const BLOCK_SIZE = 16;
const NUM_BLOCKS = 128; // 2048 tokens of KV: the "equal KV memory" of both schedulers
const MAX_NUM_SEQS = 32;
// the Poisson steady state: enough seats that a full batch is the norm, and a pool for them
const POISSON_SEATS = smoke ? 4 : 64;
const POISSON_BLOCKS = smoke ? 32 : 512; // 8192 tokens of KV, the same for both schedulers
// arrivals at this multiple of the continuous engine's measured service rate (from the burst run)
const POISSON_OVERLOAD = 2;
// rounds of the Poisson pair (the same trace each time)
const POISSON_ROUNDS = smoke ? 1 : 3;

// ---- helpers

const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

async function runTrace(model: EngineModel, workload: WorkloadRequest[], config: EngineConfigInput, clock: Clock) {
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

// tokens a step emits: one per decode, one per prefill chunk that finishes its prompt
function emittedTokens(s: StepMetrics, promptLen: ReadonlyMap<string, number>): number {
  if (s.spec) return s.spec.emitted + s.prefills.filter((p) => p.start + p.numTokens === promptLen.get(p.requestId)).length;
  return s.decodes.length + s.prefills.filter((p) => p.start + p.numTokens === promptLen.get(p.requestId)).length;
}

// ---- 5. Poisson steady state: the window from the first step to the step that admits the last
// request (after it only the drain tail is left: the batch can only shrink)
function steadyState(steps: readonly StepMetrics[], workload: readonly WorkloadRequest[]) {
  const promptLen = new Map(workload.map((r) => [r.id, r.promptTokenIds.length]));
  const firstPrefill = new Map<string, number>();
  steps.forEach((s, i) => s.prefills.forEach((p) => firstPrefill.has(p.requestId) || firstPrefill.set(p.requestId, i)));
  const lastAdmit = Math.max(...firstPrefill.values());
  const win = steps.slice(0, lastAdmit); // steps before the one that admits the last request
  const tokens = win.reduce((a, s) => a + emittedTokens(s, promptLen), 0);
  const ms = win.length > 0 ? win[win.length - 1].endMs - win[0].startMs : 0;
  const all = steps.reduce((a, s) => a + emittedTokens(s, promptLen), 0);
  const allMs = steps[steps.length - 1].endMs - steps[0].startMs;
  const busy = win.filter((s) => s.decodes.length + s.prefills.length > 0);
  return {
    windowSteps: win.length,
    windowMs: ms,
    windowOutputTokens: tokens,
    steadyStateOutputTokensPerSecond: ms > 0 ? (1000 * tokens) / ms : NaN,
    meanBatchInWindow: busy.reduce((a, s) => a + s.numRunning, 0) / Math.max(1, busy.length),
    meanWaitingInWindow: win.reduce((a, s) => a + s.numWaiting, 0) / Math.max(1, win.length),
    drainSteps: steps.length - win.length,
    drainMs: allMs - ms,
    wholeRunOutputTokens: all,
    wholeRunMs: allMs,
    wholeRunOutputTokensPerSecond: (1000 * all) / allMs,
    meanStepMs: steps.reduce((a, s) => a + s.wallMs, 0) / steps.length,
    stepCost: stepCost(win),
  };
}

// what a step of the Poisson window costs: a least-squares line through the steps' wall times,
// ms = fixed + perDecode * decodes + perPromptToken * prompt tokens, and the steps bucketed by
// tokens scheduled (count, mean decodes, prompt tokens and wall ms): where the time goes as a
// step fills with prefill
function stepCost(steps: readonly StepMetrics[]) {
  const rows = steps
    .filter((s) => s.decodes.length + s.prefills.length > 0)
    .map((s) => ({ d: s.decodes.length, p: s.prefills.reduce((a, e) => a + e.numTokens, 0), ms: s.wallMs }));
  // normal equations of [1, d, p] . beta = ms
  const A = [0, 1, 2].map(() => [0, 0, 0]);
  const y = [0, 0, 0];
  for (const r of rows) {
    const x = [1, r.d, r.p];
    for (let i = 0; i < 3; i++) {
      y[i] += x[i] * r.ms;
      for (let j = 0; j < 3; j++) A[i][j] += x[i] * x[j];
    }
  }
  const beta = solve3(A, y);
  const edges = [1, 17, 65, 129, 257, 513];
  const buckets = edges.slice(0, -1).flatMap((lo, i) => {
    const inB = rows.filter((r) => r.d + r.p >= lo && r.d + r.p < edges[i + 1]);
    if (inB.length === 0) return [];
    const mean = (f: (r: (typeof rows)[number]) => number) => inB.reduce((a, r) => a + f(r), 0) / inB.length;
    return [{ tokens: `${lo}-${edges[i + 1] - 1}`, steps: inB.length, meanDecodes: mean((r) => r.d), meanPromptTokens: mean((r) => r.p), meanWallMs: mean((r) => r.ms) }];
  });
  return {
    fit: beta ? { fixedMs: beta[0], perDecodeMs: beta[1], perPromptTokenMs: beta[2] } : null,
    fitMeaning: 'least squares over the steps: wall ms = fixedMs + perDecodeMs x decodes + perPromptTokenMs x prompt tokens',
    buckets,
  };
}

// A x = y for a 3 x 3 system (Gaussian elimination with partial pivoting); null when singular
function solve3(A: number[][], y: number[]): number[] | null {
  const M = A.map((row, i) => [...row, y[i]]);
  for (let c = 0; c < 3; c++) {
    const p = [c, c + 1, c + 2].filter((r) => r < 3).reduce((best, r) => (Math.abs(M[r][c]) > Math.abs(M[best][c]) ? r : best), c);
    if (Math.abs(M[p][c]) < 1e-12) return null;
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = 0; r < 3; r++) {
      if (r === c) continue;
      const f = M[r][c] / M[c][c];
      for (let k = c; k < 4; k++) M[r][k] -= f * M[c][k];
    }
  }
  return M.map((row, i) => row[3] / row[i]);
}

// ---- 4 (captured). the paged step with contiguous block tables (sequence b owns blocks
// b*nb .. b*nb + nb - 1) vs shuffled ones (blocks drawn at random from the whole pool): the
// attention kernel reads through the table either way; chained greedy steps, ids on the GPU
async function capturedStepTime(m: GpuLlama, B: number, L: number, steps: number, rounds: number) {
  const nb = Math.ceil((L + steps + 1) / BLOCK_SIZE);
  if (B * nb > m.numBlocks) throw new Error(`captured step time: ${B} x ${nb} blocks do not fit the pool (${m.numBlocks})`);
  const contiguous = Array.from({ length: B }, (_, b) => Array.from({ length: nb }, (_, j) => b * nb + j));
  const rng = new Rng(11 + B * 1000 + L);
  const perm = Array.from({ length: m.numBlocks }, (_, i) => i);
  for (let i = perm.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const shuffled = Array.from({ length: B }, (_, b) => perm.slice(b * nb, (b + 1) * nb));
  const first = Array.from({ length: B }, (_, b) => 1 + ((b * 131) % (m.config.vocabSize - 1)));
  // the KV pool holds whatever earlier runs left there: attention costs the same for any values
  const run = async (tables: number[][]) => (await m.greedyDecode(tables.map((t) => ({ start: L, blockTable: t })), first, steps)).stepMs.slice(1);
  // warm-up: both tables twice (the first case of a run was slow by up to 40% with one pass: clocks
  // and caches still settling after the Poisson runs)
  for (let w = 0; w < 2; w++) {
    await run(contiguous);
    await run(shuffled);
  }
  const c: number[] = [];
  const p: number[] = [];
  // the order flips every round (ABBA), so a drift of the machine falls on both alike
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      c.push(...(await run(contiguous)));
      p.push(...(await run(shuffled)));
    } else {
      p.push(...(await run(shuffled)));
      c.push(...(await run(contiguous)));
    }
  }
  return { ...pagedVsContiguous(B, L, c, p), stepsTimed: c.length };
}

// a step-time row: medians and minima of the contiguous (c) and paged (p) timings, ratio = paged / contiguous
function pagedVsContiguous(B: number, L: number, c: number[], p: number[]) {
  const cm = percentile(c, 50);
  const pm = percentile(p, 50);
  return { batch: B, context: L, contiguousMedianMs: cm, pagedMedianMs: pm, ratio: pm / cm, contiguousMinMs: Math.min(...c), pagedMinMs: Math.min(...p) };
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
  return pagedVsContiguous(B, L, c, p);
}

// ---- main

async function main() {
  const backend = await initBackend({ prefer: backendFlag, wasmThreads: flags.threads(), wasmFma: flags.fma() });
  const captured = backend.name === 'webgpu' && !eagerFlag;
  const common: EngineConfigInput = { blockSize: BLOCK_SIZE, numBlocks: NUM_BLOCKS, maxNumSeqs: MAX_NUM_SEQS, enablePrefixCaching: false };
  const poissonCommon: EngineConfigInput = { blockSize: BLOCK_SIZE, numBlocks: POISSON_BLOCKS, maxNumSeqs: POISSON_SEATS, enablePrefixCaching: false };
  // the captured model: one GpuLlama sized for the largest engine config and the step sweep here
  let model: EngineModel;
  let eagerModel: LlamaModel | null = null;
  let gpuModel: GpuLlama | null = null;
  let adapter: unknown = null;
  if (captured) {
    const ctx = await sharedGpu();
    adapter = ctx.info;
    const { config } = modelSource(modelDir);
    const sizes = [common, poissonCommon].map((c) => capturedOptionsFor(resolveEngineConfig(c, config.maxPositions)));
    const stepBlocks = Math.max(...CAPTURED_STEP.batches) * Math.ceil((Math.max(...CAPTURED_STEP.contexts) + CAPTURED_STEP.steps + 1) / BLOCK_SIZE);
    const opts = {
      maxTokens: Math.max(...sizes.map((x) => x.maxTokens)),
      maxSeqs: Math.max(...sizes.map((x) => x.maxSeqs), ...CAPTURED_STEP.batches),
      maxLogitRows: Math.max(...sizes.map((x) => x.maxLogitRows)),
      blockSize: BLOCK_SIZE,
      numBlocks: Math.max(stepBlocks, ...sizes.map((x) => x.numBlocks)),
    };
    gpuModel = await loadGpuModel(ctx, modelDir, {
      ...opts,
      format: FORMAT,
      ...(HEAD_SHARED ? { headSharedFrom: Number(HEAD_SHARED) } : {}),
      ...(SHARED_FROM_FLAG ? { sharedFrom: Number(SHARED_FROM_FLAG) } : {}),
      ...(SPLIT_K ? { sharedTile: { ...MATMUL_TILE_SHARED, splitK: Number(SPLIT_K) } } : {}),
      ...(NARROW_FROM ? { attentionNarrowFrom: Number(NARROW_FROM) } : {}),
      ...(NARROW_WG ? { attentionNarrowWg: Number(NARROW_WG) } : {}),
    });
    model = gpuModel;
    console.log(`captured path on ${ctx.info.adapter}${ctx.info.software ? ' (software: correctness only, not timing)' : ''}: ${FORMAT} weights, ${gpuModel.stats.dispatchesPerStep} dispatches/step, pool ${opts.numBlocks} blocks`);
  } else {
    eagerModel = await loadModel(modelDir);
    model = eagerModel;
  }
  const V = model.config.vocabSize;
  const maxModelLen = model.config.maxPositions;
  console.log(`serve bench (${smoke ? 'smoke' : full ? 'full' : 'quick'}): ${modelDir} on ${backend.name} (${captured ? 'captured' : 'eager tfjs'}); pool ${NUM_BLOCKS} x ${BLOCK_SIZE} tokens, maxNumSeqs ${MAX_NUM_SEQS}`);

  // ---- 1 + 2: one varied-length trace, continuous vs static at equal KV memory
  const traceSpec: WorkloadSpec = {
    numRequests: SIZES.traceRequests,
    arrival: { kind: 'burst' },
    promptLen: smoke ? { kind: 'uniform', min: 4, max: 8 } : { kind: 'lognormal', median: 48, sigma: 0.8, min: 4, max: 400 },
    outputLen: smoke ? { kind: 'uniform', min: 2, max: 4 } : { kind: 'lognormal', median: 48, sigma: 0.9, min: 4, max: 320 },
    vocabSize: V,
    seed: 1,
  };
  const trace = makeWorkload(traceSpec);
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
    promptLen: smoke ? { kind: 'uniform', min: 2, max: 4 } : { kind: 'uniform', min: 8, max: 48 },
    outputLen: smoke ? { kind: 'uniform', min: 2, max: 3 } : { kind: 'uniform', min: 8, max: 24 },
    systemPrompts: { count: smoke ? 1 : 3, length: smoke ? 20 : 192, share: 0.9 },
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
  if (gpuModel) {
    for (const L of CAPTURED_STEP.contexts) {
      for (const B of CAPTURED_STEP.batches) {
        const r = await capturedStepTime(gpuModel, B, L, CAPTURED_STEP.steps, CAPTURED_STEP.rounds);
        steps.push(r);
        console.log(`captured decode step B=${B} context ${L}: contiguous tables ${fmt(r.contiguousMedianMs, 3)} ms, shuffled tables ${fmt(r.pagedMedianMs, 3)} ms (shuffled / contiguous ${fmt(r.ratio, 3)}x)`);
      }
    }
  } else {
    for (const L of SIZES.stepContexts) {
      for (const B of SIZES.stepBatches) {
        const r = await stepTime(eagerModel!, B, L, SIZES.stepRepeats);
        steps.push(r);
        console.log(`decode step B=${B} context ${L}: contiguous ${fmt(r.contiguousMedianMs)} ms, paged ${fmt(r.pagedMedianMs)} ms (${fmt(r.ratio, 2)}x)`);
      }
    }
  }

  // ---- 5: Poisson steady state, continuous vs static at equal KV memory (same pool, same seats)
  // arrival rate: POISSON_OVERLOAD x the continuous engine's service rate measured on the burst
  // above (requests/s = output tok/s / mean output length), so requests queue under both
  // schedulers and each runs at its own capacity until the last request is admitted
  const poissonOutput: WorkloadSpec['outputLen'] = smoke ? { kind: 'uniform', min: 2, max: 4 } : { kind: 'lognormal', median: 48, sigma: 0.9, min: 4, max: 320 };
  const meanOut = trace.reduce((a, r) => a + r.maxTokens, 0) / trace.length;
  // the decode step at the burst run's fullest batches: its median wall time prices a full seat
  // of POISSON_SEATS (an underestimate of the step there, so the rate errs toward overload)
  const peak = Math.max(...cont.steps.map((s) => s.numRunning));
  const fullSteps = cont.steps.filter((s) => s.prefills.length === 0 && s.decodes.length > 0 && s.numRunning >= 0.75 * peak).map((s) => s.wallMs);
  const fullStepMs = fullSteps.length > 0 ? percentile(fullSteps, 50) : cont.summary.durationMs / Math.max(1, cont.summary.numSteps);
  const ratePerSec = (POISSON_OVERLOAD * POISSON_SEATS * 1000) / (meanOut * fullStepMs);
  const poissonSpec: WorkloadSpec = {
    numRequests: SIZES.poissonRequests,
    arrival: { kind: 'poisson', ratePerSec },
    promptLen: smoke ? { kind: 'uniform', min: 4, max: 8 } : { kind: 'lognormal', median: 48, sigma: 0.8, min: 4, max: 400 },
    outputLen: poissonOutput,
    vocabSize: V,
    seed: 3,
  };
  const poissonTrace = makeWorkload(poissonSpec);
  const poisson: Record<string, unknown> = {
    spec: poissonSpec,
    pool: { numBlocks: POISSON_BLOCKS, blockSize: BLOCK_SIZE, maxNumSeqs: POISSON_SEATS },
    rateRule: `${POISSON_OVERLOAD} x ${POISSON_SEATS} seats / (mean output length ${fmt(meanOut)} tokens x ${fmt(fullStepMs, 3)} ms, the burst run's median decode step at >= 75% of its peak batch ${peak})`,
    ratePerSec,
    lastArrivalMs: poissonTrace[poissonTrace.length - 1].arrivalMs,
    window: 'steady state: from the first step to the step that admits the last request (excluded); after it only the drain tail is left',
  };
  // the same trace POISSON_ROUNDS times, the two schedulers alternating: a pair takes ~2 s on a GPU,
  // and one pair's ratio moves by ~10% from run to run (one slow stretch of either side shifts it),
  // so the record keeps every round and reports the round with the median steady-state ratio
  const runPolicy = async (round: number, policy: 'continuous' | 'static', overlapSteps = true) => {
    const run = await runTrace(model, poissonTrace, { ...poissonCommon, policy, overlapSteps }, new RealClock());
    const ss = steadyState(run.steps, poissonTrace);
    console.log(
      `poisson ${overlapSteps ? `round ${round + 1}` : 'one step at a time'} ${policy.padEnd(10)}: steady state ${fmt(ss.steadyStateOutputTokensPerSecond, 2)} tok/s over ${fmt(ss.windowMs, 0)} ms (${ss.windowSteps} steps, mean batch ${fmt(ss.meanBatchInWindow)}, mean waiting ${fmt(ss.meanWaitingInWindow)}); ` +
        `whole run ${fmt(ss.wholeRunOutputTokensPerSecond, 2)} tok/s over ${fmt(ss.wholeRunMs, 0)} ms (drain ${ss.drainSteps} steps, ${fmt(ss.drainMs, 0)} ms)` +
        (ss.stepCost.fit ? `; a step ~ ${fmt(ss.stepCost.fit.fixedMs, 3)} ms + ${fmt(1000 * ss.stepCost.fit.perDecodeMs, 1)} us a decode + ${fmt(1000 * ss.stepCost.fit.perPromptTokenMs, 1)} us a prompt token` : ''),
    );
    return { ...ss, summary: brief(run.summary) };
  };
  const rounds = [];
  for (let r = 0; r < POISSON_ROUNDS; r++) {
    const c = await runPolicy(r, 'continuous');
    const s = await runPolicy(r, 'static');
    rounds.push({ continuous: c, static: s, steadyStateRatio: c.steadyStateOutputTokensPerSecond / s.steadyStateOutputTokensPerSecond, wholeRunRatio: c.wholeRunOutputTokensPerSecond / s.wholeRunOutputTokensPerSecond });
  }
  const byRatio = [...rounds].sort((a, b) => a.steadyStateRatio - b.steadyStateRatio);
  const median = byRatio[Math.floor((byRatio.length - 1) / 2)];
  poisson.continuous = median.continuous;
  poisson.static = median.static;
  poisson.steadyStateRatio = median.steadyStateRatio;
  poisson.wholeRunRatio = median.wholeRunRatio;
  poisson.rounds = rounds.map((r) => ({
    steadyStateRatio: r.steadyStateRatio,
    wholeRunRatio: r.wholeRunRatio,
    continuousSteadyStateOutputTokensPerSecond: r.continuous.steadyStateOutputTokensPerSecond,
    staticSteadyStateOutputTokensPerSecond: r.static.steadyStateOutputTokensPerSecond,
  }));
  poisson.medianRound = rounds.indexOf(median);
  // the ratio in two factors: continuous batching does more tokens a step (what the scheduler
  // buys), and pays for it with a dearer step (what the step's growth with batch takes back)
  const perStep = (r: { windowOutputTokens: number; windowSteps: number; windowMs: number }) => ({ tokens: r.windowOutputTokens / r.windowSteps, ms: r.windowMs / r.windowSteps });
  const [pc, ps] = [perStep(median.continuous), perStep(median.static)];
  poisson.ratioParts = {
    meaning: 'steadyStateRatio = tokensPerStepRatio / stepMsRatio, from the median round: output tokens a step (continuous / static) over wall ms a step (continuous / static)',
    continuous: { outputTokensPerStep: pc.tokens, msPerStep: pc.ms },
    static: { outputTokensPerStep: ps.tokens, msPerStep: ps.ms },
    tokensPerStepRatio: pc.tokens / ps.tokens,
    stepMsRatio: pc.ms / ps.ms,
  };
  console.log(
    `poisson ratio in two parts: continuous emits ${fmt(pc.tokens / ps.tokens, 2)}x the tokens a step (${fmt(pc.tokens)} vs ${fmt(ps.tokens)}) and its step costs ${fmt(pc.ms / ps.ms, 2)}x as long (${fmt(pc.ms, 3)} vs ${fmt(ps.ms, 3)} ms)`,
  );
  // the engine's overlapped steps (LLMEngine.step, overlapSteps) on and off: what hiding the CPU's work behind the GPU buys each scheduler
  if (captured) {
    const c = await runPolicy(0, 'continuous', false);
    const st = await runPolicy(0, 'static', false);
    poisson.withoutOverlap = {
      meaning: 'the same trace with overlapSteps off (each step scheduled, run and read before the next); the rounds above overlap',
      continuous: c,
      static: st,
      steadyStateRatio: c.steadyStateOutputTokensPerSecond / st.steadyStateOutputTokensPerSecond,
      overlapSpeedup: {
        continuous: median.continuous.steadyStateOutputTokensPerSecond / c.steadyStateOutputTokensPerSecond,
        static: median.static.steadyStateOutputTokensPerSecond / st.steadyStateOutputTokensPerSecond,
      },
    };
    console.log(
      `poisson without overlapped steps: continuous / static ${fmt(c.steadyStateOutputTokensPerSecond / st.steadyStateOutputTokensPerSecond, 2)}x; overlap buys continuous ${fmt(median.continuous.steadyStateOutputTokensPerSecond / c.steadyStateOutputTokensPerSecond, 2)}x, static ${fmt(median.static.steadyStateOutputTokensPerSecond / st.steadyStateOutputTokensPerSecond, 2)}x`,
    );
  }
  poisson.roundsMeaning = 'the same trace, continuous then static, in each round; continuous, static and the ratios above are the round with the median steady-state ratio';
  poisson.goal = 'issue 11: continuous / static >= 3x output tok/s on the Poisson workload at equal KV memory (measured, not asserted)';
  console.log(
    `poisson continuous / static: ${fmt(poisson.steadyStateRatio as number, 2)}x steady state, ${fmt(poisson.wholeRunRatio as number, 2)}x whole run (the median of ${rounds.length} round${rounds.length > 1 ? 's' : ''}: ${rounds.map((r) => fmt(r.steadyStateRatio, 2)).join(', ')}; goal >= 3x)`,
  );

  const file = writeBenchJson(
    path.basename(outPath, '.json'),
    {
      mode: smoke ? 'smoke' : full ? 'full' : 'quick',
      model: modelDir,
      path: captured ? 'captured' : 'eager',
      backend: backend.name,
      weights: captured ? FORMAT : 'eager-fp32',
      adapter,
      dispatchesPerStep: gpuModel?.stats.dispatchesPerStep ?? null,
      pool: { numBlocks: NUM_BLOCKS, blockSize: BLOCK_SIZE, maxNumSeqs: MAX_NUM_SEQS, kvBytes: 2 * model.config.numLayers * NUM_BLOCKS * BLOCK_SIZE * model.config.numKvHeads * model.config.headDim * 4 },
      trace: { spec: traceSpec, promptTokens: trace.map((r) => r.promptTokenIds.length), outputTokens: trace.map((r) => r.maxTokens) },
      memory,
      throughput,
      prefixCaching: prefix,
      stepTime: steps,
      stepTimeMeaning: captured
        ? 'captured step (chained greedy decode, ids on the GPU): contiguous* = block tables b*nb + j, paged* = shuffled tables drawn from the whole pool; ratio = shuffled / contiguous'
        : 'eager tfjs: contiguous* = ContiguousKVCache, paged* = PagedKVCache with interleaved tables; ratio = paged / contiguous',
      poisson,
      timeline: { continuous: timeline(cont.steps), static: timeline(stat.steps) },
    },
    { dir: path.dirname(outPath) },
  );
  console.log(`wrote ${file}`);
  model.dispose();
}

runBench(main);
