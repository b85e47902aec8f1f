/**
 * The captured WebGPU decode step (lib/gpu; lesson 2, "eager vs captured"). Not a test: it prints
 * figures and writes JSON. On one GPU, in one run:
 *   1. kernel checks: every WGSL kernel against its plain-tfjs op chain on random shapes;
 *   2. the HF oracle on the captured path: logits error and greedy agreement, target and draft,
 *      fp32 and bf16 weights (all 23 golden prompts, 64 tokens each);
 *   3. step cost vs batch: greedy decode at batch 1..32 (ids stay on the GPU between steps),
 *      ms/step, tok/s, CPU encode ms and dispatches per step; the eager tfjs step beside it;
 *      then the engine's kind of step (ids read back before the next step is written), the
 *      step submitted whole or in parts (GpuLlama's submitEvery);
 *   4. bandwidth: a pure-read kernel's rate (the roof) and what a batch-1 step of a large model
 *      streams (weight bytes / step time), fp32 and bf16;
 *   5. where a step's GPU time goes (adapters with timestamp queries): each kernel timed alone,
 *      the whole step in one pass, and the floor of one dependent dispatch;
 *   6. the engine's steps (timestamp queries): steps shaped like continuous batching's (decodes
 *      at spread contexts beside prefill chunks), static batching's prefill, and decode alone,
 *      each timed on the GPU with every kernel choice (decode tile, shared tile and the rows it
 *      starts from, attention's workgroup), the choices taking turns: what GpuLlama's defaults
 *      are picked from.
 *
 *   npm run bench:captured [-- --quick] [--presets random-1b] [--out DIR] [--sections 3,5] [--shared-tiles 32x32,32x16]
 *
 * On a machine without a GPU it runs on SwiftShader (CPU Vulkan) when Chromium is installed:
 * correct, slow, for checking only (`--quick`). Writes data/bench/webgpu/captured-webgpu.json
 * (or DIR/captured-webgpu.json).
 */
import * as fs from 'node:fs';

import * as tf from '@tensorflow/tfjs-core';

import { initBackend, shutdownBackend } from '../lib/backend';
import { benchFlags, progressBar, thresholdText, writeBenchJson } from '../lib/bench/harness';
import { percentile } from '../lib/eval/stats';
import { argmax } from '../lib/generate/sampling';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { checkKernels, type KernelCheck } from '../lib/gpu/checks';
import { sharedGpu, timePasses, type GpuContext } from '../lib/gpu/device';
import { contiguousTables, GpuLlama, HEAD_SHARED_FROM, SHARED_FROM, sharedFromOf, type GpuLlamaOptions, type GpuStepSequence, type SharedFrom } from '../lib/gpu/llama';
import { loadGpuModel } from '../lib/gpu/load';
import type { SharedTile, WeightFormat } from '../lib/gpu/kernels';
import { llamaSizes } from '../lib/model/config';
import { extraDrafts, loadModel } from '../lib/model/load';
import { checkAgainstOracle, type OracleDecoder, type OracleReport } from '../lib/oracle/hf';

const flags = benchFlags(process.argv.slice(2));
const QUICK = flags.has('quick');
const OUT = flags.value('out') ?? undefined;
const PRESETS = (flags.value('presets') ?? (QUICK ? '' : 'random-1b')).split(',').filter(Boolean);
const BATCHES = QUICK ? [1, 4] : [1, 2, 4, 8, 16, 32];
const STEPS = QUICK ? 4 : 64;
const PROMPT = 32;
/** which numbered sections to run (default all; a partial record is for checking, not for committing) */
const SECTIONS = new Set((flags.value('sections') ?? '1,2,3,4,5,6').split(',').map(Number));
// section 5 with --shared-tiles 32x32,32x16,32x32/4...: the shared-memory tile's shapes against
// each other (/S: K split into S slices, SharedTile.splitK)
const SHARED_TILES: SharedTile[] = (flags.value('shared-tiles') ?? '')
  .split(',')
  .filter(Boolean)
  .map((s) => {
    const [shape, split = '1'] = s.split('/');
    const [rows, tokens] = shape.split('x').map(Number);
    const splitK = Number(split);
    if (!(Number.isInteger(rows) && rows > 0 && Number.isInteger(tokens) && tokens > 0 && Number.isInteger(splitK) && splitK > 0))
      throw new Error(`--shared-tiles: '${s}' is not ROWSxTOKENS or ROWSxTOKENS/SPLITK (e.g. 32x32, 32x32/4)`);
    return { kind: 'shared', rows, tokens, splitK };
  });
// a row threshold as the records write it (Infinity: 'never'); per matmul when they differ
const rowsOrNever = (x: number) => (Number.isFinite(x) ? x : 'never');
const fromLabel = (x: SharedFrom) => {
  const by = sharedFromOf(x);
  const all = Object.values(by);
  return all.every((v) => v === all[0]) ? rowsOrNever(all[0]) : Object.fromEntries(Object.entries(by).map(([k, v]) => [k, rowsOrNever(v)]));
};

/** The captured model as a one-sequence decoder for the oracle check. */
function capturedDecoder(m: GpuLlama): OracleDecoder {
  const table = contiguousTables(m, 1)[0];
  let len = 0;
  const run = async (tokens: readonly number[]) => {
    const r = await m.step([{ tokens, start: len, blockTable: table, logits: 1 }], 'logits');
    len += tokens.length;
    return r.logits!;
  };
  return { vocabSize: m.config.vocabSize, start: (p) => ((len = 0), run(p)), next: (t) => run([t]), end: () => undefined };
}

interface SweepRow {
  model: string;
  weights: WeightFormat | 'eager-fp32';
  batch: number;
  stepMsMedian: number;
  stepMsP90: number;
  tokPerS: number;
  encodeMsMedian: number | null;
  dispatchesPerStep: number | null;
}

// B prompts of PROMPT token ids, the same in every section
function benchPrompts(B: number, vocabSize: number): number[][] {
  return Array.from({ length: B }, (_, b) => Array.from({ length: PROMPT }, (_, i) => (b * 131 + i * 17 + 1) % vocabSize));
}

// greedy decode at batch B on the captured model: prefill in one step, then STEPS chained steps
async function sweepCaptured(m: GpuLlama, B: number, steps: number): Promise<SweepRow> {
  const prompts = benchPrompts(B, m.config.vocabSize);
  const r = await m.greedyGenerate(prompts, steps);
  const ms = r.stepMs.slice(1); // the first step waits for nothing before it: not a steady state
  const med = percentile(ms, 50);
  return {
    model: m.name,
    weights: m.format,
    batch: B,
    stepMsMedian: med,
    stepMsP90: percentile(ms, 90),
    tokPerS: (1000 * B) / med,
    encodeMsMedian: percentile(r.encodeMs, 50),
    dispatchesPerStep: m.stats.dispatchesPerStep,
  };
}

/** The engine's kind of step: written, encoded, submitted, its ids read back before the next. */
interface RoundTripRow {
  batch: number;
  /** dispatches per submit (0: the whole step in one submit) */
  submitEvery: number;
  stepMsMedian: number;
  encodeMsMedian: number;
}

async function roundTrip(m: GpuLlama, B: number, every: number, steps: number): Promise<RoundTripRow> {
  const tables = contiguousTables(m, B);
  const prompts = benchPrompts(B, m.config.vocabSize);
  const before = m.submitEvery;
  m.submitEvery = every;
  try {
    let r = await m.step(prompts.map((p, b) => ({ tokens: p, start: 0, blockTable: tables[b], logits: 1 })));
    const ms: number[] = [];
    const enc: number[] = [];
    for (let k = 0; k < steps; k++) {
      const t0 = performance.now();
      r = await m.step(tables.map((t, b) => ({ tokens: [r.ids[b]], start: PROMPT + k, blockTable: t, logits: 1 })));
      ms.push(performance.now() - t0);
      enc.push(r.encodeMs);
    }
    return { batch: B, submitEvery: every, stepMsMedian: percentile(ms.slice(2), 50), encodeMsMedian: percentile(enc.slice(2), 50) };
  } finally {
    m.submitEvery = before;
  }
}

// the eager tfjs step at batch B (logits read back, argmax in JS), for comparison
async function sweepEager(dir: string, B: number, steps: number): Promise<SweepRow> {
  const model = await loadModel(dir);
  const cache = new ContiguousKVCache(model.kvShape, B);
  try {
    const V = model.config.vocabSize;
    const prompts = benchPrompts(B, V);
    let logits = model.forward(prompts, cache);
    const ms: number[] = [];
    for (let k = 0; k < steps; k++) {
      const data = (await logits.data()) as Float32Array;
      logits.dispose();
      const next = Array.from({ length: B }, (_, b) => [argmax(data.subarray(b * V, (b + 1) * V))]);
      const t0 = performance.now();
      logits = model.forward(next, cache);
      await logits.data();
      ms.push(performance.now() - t0);
    }
    logits.dispose();
    const med = percentile(ms.slice(1), 50);
    return {
      model: model.name,
      weights: 'eager-fp32',
      batch: B,
      stepMsMedian: med,
      stepMsP90: percentile(ms.slice(1), 90),
      tokPerS: (1000 * B) / med,
      encodeMsMedian: null,
      dispatchesPerStep: null,
    };
  } finally {
    cache.dispose();
    model.dispose();
  }
}

// a pure-read kernel over a large buffer: the bandwidth roof a decode step can hope for. Ten
// passes per submit (so the submit and wait costs are spread), four loads in flight per thread.
async function readRoof(ctx: GpuContext, bytes: number): Promise<{ bytes: number; gbPerS: number; gpuGbPerS: number | null }> {
  const d = ctx.device;
  const n4 = Math.floor(bytes / 16);
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> A: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let stride = nw.x * 256u;
  var a0 = vec4f(0.0);
  var a1 = vec4f(0.0);
  var a2 = vec4f(0.0);
  var a3 = vec4f(0.0);
  var i = g.x;
  while (i + 3u * stride < ${n4}u) {
    a0 += A[i];
    a1 += A[i + stride];
    a2 += A[i + 2u * stride];
    a3 += A[i + 3u * stride];
    i += 4u * stride;
  }
  while (i < ${n4}u) { a0 += A[i]; i += stride; }
  let t = a0 + a1 + a2 + a3;
  if (t.x == 12345.678) { out[0] = t.y; } // keeps the loads; never true for zeros
}`;
  const pipe = d.createComputePipeline({ layout: 'auto', compute: { module: d.createShaderModule({ code }), entryPoint: 'main' } });
  const a = d.createBuffer({ size: n4 * 16, usage: 0x80 });
  const o = d.createBuffer({ size: 16, usage: 0x80 });
  const bg = d.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: a } },
      { binding: 1, resource: { buffer: o } },
    ],
  });
  const passes = 10;
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const e = d.createCommandEncoder();
    const p = e.beginComputePass();
    p.setPipeline(pipe);
    p.setBindGroup(0, bg);
    for (let k = 0; k < passes; k++) p.dispatchWorkgroups(32768);
    p.end();
    const t0 = performance.now();
    d.queue.submit([e.finish()]);
    await d.queue.onSubmittedWorkDone();
    times.push(performance.now() - t0);
  }
  const gpuUs = !ctx.info.timestamps
    ? null
    : await timePasses(ctx, 3, (p) => {
        p.setPipeline(pipe);
        p.setBindGroup(0, bg);
        for (let k = 0; k < passes; k++) p.dispatchWorkgroups(32768);
      });
  a.destroy();
  o.destroy();
  const gbPerS = (passes * n4 * 16) / (percentile(times.slice(1), 50) * 1e6);
  return { bytes: n4 * 16, gbPerS, gpuGbPerS: gpuUs === null ? null : (passes * n4 * 16) / (percentile(gpuUs.slice(1), 50) * 1e3) };
}

// the floor of a dispatch: a trivial kernel that depends on the one before it, 200 times in
// one pass (as the captured step runs) and one pass each (as per-kernel timing runs)
async function dispatchFloor(ctx: GpuContext): Promise<{ onePassUs: number; passEachUs: number }> {
  const d = ctx.device;
  const code =
    '@group(0) @binding(0) var<storage, read_write> B: array<f32>;\n@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { if (g.x == 0u) { B[0] = B[0] + 1.0; } }';
  const pipe = d.createComputePipeline({ layout: 'auto', compute: { module: d.createShaderModule({ code }), entryPoint: 'main' } });
  const buf = d.createBuffer({ size: 256, usage: 0x80 });
  const bg = d.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] });
  const one = await timePasses(ctx, 4, (p) => {
    p.setPipeline(pipe);
    p.setBindGroup(0, bg);
    for (let i = 0; i < 200; i++) p.dispatchWorkgroups(1);
  });
  const each = await timePasses(ctx, 200, (p) => {
    p.setPipeline(pipe);
    p.setBindGroup(0, bg);
    p.dispatchWorkgroups(1);
  });
  buf.destroy();
  return { onePassUs: percentile(one.slice(1), 50) / 200, passEachUs: percentile(each.slice(10), 50) };
}

// a step to time on the GPU: `batch` sequences whose first `context` positions are in the pool
// (filled in prefill steps of at most 256 tokens), each with `tokens` new tokens (1: decode, more:
// a chunk of prefill); `run` gets the model and the step, the model is disposed after
async function withFilledPool<T>(
  ctx: GpuContext,
  dir: string,
  batch: number,
  context: number,
  tokens: number,
  run: (m: GpuLlama, seqs: GpuStepSequence[]) => Promise<T>,
  options: GpuLlamaOptions = {},
): Promise<T> {
  const m = await loadGpuModel(ctx, dir, { maxTokens: Math.max(256, context, batch * tokens), maxSeqs: batch, ...options });
  try {
    const tables = contiguousTables(m, batch);
    const prompt = Array.from({ length: context }, (_, i) => (i * 7 + 3) % m.config.vocabSize);
    const perStep = Math.max(1, Math.floor(256 / context));
    for (let b = 0; b < batch; b += perStep) {
      await m.step(tables.slice(b, b + perStep).map((t) => ({ tokens: prompt, start: 0, blockTable: t, logits: 1 })));
    }
    return await run(
      m,
      tables.map((t) => ({ tokens: Array.from({ length: tokens }, (_, i) => 9 + i), start: context, blockTable: t, logits: 1 })),
    );
  } finally {
    m.dispose();
  }
}

// each kernel's GPU time in that step, and the whole step's
async function kernelTimes(ctx: GpuContext, dir: string, batch: number, context: number, tokens = 1, options: GpuLlamaOptions = {}) {
  const time = async (m: GpuLlama, seqs: GpuStepSequence[]) => {
    const r = await m.timeStep(seqs);
    const byKernel: Record<string, { count: number; usEach: number }> = {};
    for (const d of r.dispatches) {
      const k = (byKernel[d.name] ??= { count: 0, usEach: 0 });
      k.usEach = (k.usEach * k.count + d.us) / (k.count + 1);
      k.count++;
    }
    return {
      model: m.name,
      batch,
      context,
      tokens: batch * tokens,
      sharedFrom: fromLabel(m.sharedFrom),
      headSharedFrom: rowsOrNever(m.headSharedFrom),
      dispatches: r.dispatches.length,
      stepUs: r.stepUs,
      sumOfPassesUs: r.dispatches.reduce((a, d) => a + d.us, 0),
      byKernel,
    };
  };
  return withFilledPool(ctx, dir, batch, context, tokens, time, options);
}

// the matmul tile choices tileCompare times: the default (by rows), and each tile for every matmul
const TILE_SETTINGS = [
  { tile: 'default', sharedFrom: SHARED_FROM, headSharedFrom: HEAD_SHARED_FROM },
  { tile: 'decode', sharedFrom: Infinity, headSharedFrom: Infinity },
  { tile: 'shared', sharedFrom: 1, headSharedFrom: 1 },
  { tile: 'decode, head shared', sharedFrom: Infinity, headSharedFrom: 1 },
] as const;

// that step's GPU time (timestamps) with each choice of matmul tile, in turns, `rounds` times
async function tileCompare(ctx: GpuContext, dir: string, batch: number, context: number, tokens: number, sharedTile?: SharedTile, rounds = 4) {
  return withFilledPool(ctx, dir, batch, context, tokens, async (m, seqs) => {
    const us: number[][] = TILE_SETTINGS.map(() => []);
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < TILE_SETTINGS.length; i++) {
        m.sharedFrom = TILE_SETTINGS[i].sharedFrom;
        m.headSharedFrom = TILE_SETTINGS[i].headSharedFrom;
        us[i].push((await m.timeStep(seqs, 3)).stepUs);
      }
    }
    return {
      model: m.name,
      batch,
      context,
      tokens: batch * tokens,
      ...(sharedTile ? { sharedTile: `${sharedTile.rows}x${sharedTile.tokens}/${sharedTile.splitK ?? 1}` } : {}),
      settings: TILE_SETTINGS.map((s, i) => ({ tile: s.tile, sharedFrom: fromLabel(s.sharedFrom), headSharedFrom: rowsOrNever(s.headSharedFrom), stepUsMedian: percentile(us[i], 50) })),
    };
  }, sharedTile ? { sharedTile } : {});
}

// ---- 6. the engine's steps with every kernel choice

/** A kernel choice: what the model is built with (tiles, attention's narrow workgroup) and when each runs. */
interface KernelChoice {
  name: string;
  build: Pick<GpuLlamaOptions, 'decodeTile' | 'sharedTile' | 'attentionNarrowWg'>;
  /** rows from which the matmuls take the shared tile, tokens from which attention takes the narrow workgroup */
  sharedFrom: SharedFrom;
  attentionNarrowFrom: number;
}

/** A step as the engine builds one: decodes at the given contexts, then prefill chunks [start, tokens]. */
interface EngineStepShape {
  name: string;
  decodes: number[];
  chunks: [number, number][];
}

// contexts spread evenly over [lo, hi]
const spread = (count: number, lo: number, hi: number) => Array.from({ length: count }, (_, i) => Math.round(lo + ((hi - lo) * i) / Math.max(1, count - 1)));

const ENGINE_STEPS: EngineStepShape[] = QUICK
  ? [
      { name: '3 decodes + a 12-token chunk', decodes: spread(3, 8, 40), chunks: [[0, 12]] },
      { name: '2 chunks of 16', decodes: [], chunks: [[0, 16], [16, 16]] },
    ]
  : [
      // bench:serve's Poisson workload under continuous batching: ~58 decodes and ~45 prompt tokens a step
      { name: '56 decodes + a 48-token chunk', decodes: spread(56, 40, 300), chunks: [[0, 48]] },
      { name: '32 decodes + 2 chunks of 64', decodes: spread(32, 64, 256), chunks: [[0, 64], [0, 64]] },
      { name: '64 decodes', decodes: spread(64, 40, 300), chunks: [] },
      { name: '16 decodes', decodes: spread(16, 64, 256), chunks: [] },
      { name: '1 decode', decodes: [128], chunks: [] },
      // prefill: 4 chunks of 64 after 64 tokens, and static batching's step of 8 prompts of 64
      { name: '4 chunks of 64 at 64', decodes: [], chunks: [[64, 64], [64, 64], [64, 64], [64, 64]] },
      { name: '8 prompts of 64', decodes: [], chunks: Array.from({ length: 8 }, () => [0, 64] as [number, number]) },
    ];

const stepTokens = (s: EngineStepShape) => s.decodes.length + s.chunks.reduce((a, [, t]) => a + t, 0);

function kernelChoices(): KernelChoice[] {
  const base = { sharedFrom: SHARED_FROM, attentionNarrowFrom: Infinity };
  const narrow = (wg: number, from: number): KernelChoice => ({ name: `attention ${wg} threads from ${from} tokens`, build: { attentionNarrowWg: wg }, sharedFrom: SHARED_FROM, attentionNarrowFrom: from });
  const shared = (tile: SharedTile, from: number): KernelChoice => ({
    name: `shared ${tile.rows}x${tile.tokens}/${tile.splitK ?? 1} from ${from} rows`,
    build: { sharedTile: tile },
    sharedFrom: from,
    attentionNarrowFrom: Infinity,
  });
  const sharedTile = (rows: number, tokens: number, splitK: number): SharedTile => ({ kind: 'shared', rows, tokens, splitK });
  if (QUICK) return [{ name: 'defaults', build: {}, ...base }, narrow(16, 1), shared(sharedTile(32, 32, 4), 1)];
  return [
    { name: 'defaults', build: {}, ...base },
    { name: 'decode tile only', build: {}, sharedFrom: Infinity, attentionNarrowFrom: Infinity },
    { name: 'shared tile from 128 rows for all', build: {}, sharedFrom: 128, attentionNarrowFrom: Infinity },
    narrow(32, 1),
    narrow(64, 1),
    narrow(128, 1),
    { name: 'decode tile 4 rows x 8 tokens', build: { decodeTile: { kind: 'lanes', rows: 4, lanes: 32, tokens: 8 } }, ...base },
    { name: 'decode tile 8 rows x 4 tokens', build: { decodeTile: { kind: 'lanes', rows: 8, lanes: 32, tokens: 4 } }, ...base },
    ...[32, 64].map((from) => shared(sharedTile(32, 32, 4), from)),
    ...[32, 64, 128].map((from) => shared(sharedTile(32, 32, 2), from)),
    ...[32, 64, 128].map((from) => shared(sharedTile(64, 32, 2), from)),
    ...[32, 64, 128].map((from) => shared(sharedTile(32, 64, 2), from)),
    ...[32, 64, 128].map((from) => shared(sharedTile(16, 32, 4), from)),
  ];
}

// every engine-shaped step with every kernel choice: one model per build, the choices' turns
// interleaved `rounds` times; whole-step GPU time (one pass) and each kernel's sum alone
async function engineSteps(ctx: GpuContext, dir: string, rounds: number) {
  const choices = kernelChoices();
  // the choices grouped by what their model is built with
  const builds = new Map<string, { build: KernelChoice['build']; list: KernelChoice[] }>();
  for (const c of choices) {
    const k = JSON.stringify(c.build);
    if (!builds.has(k)) builds.set(k, { build: c.build, list: [] });
    builds.get(k)!.list.push(c);
  }
  const maxTokens = Math.max(...ENGINE_STEPS.map(stepTokens));
  const maxSeqs = Math.max(...ENGINE_STEPS.map((s) => s.decodes.length + s.chunks.length));
  const us = new Map<string, { step: number[]; byKernel: Record<string, number>[] }>();
  const key = (c: KernelChoice, s: EngineStepShape) => `${c.name} | ${s.name}`;
  const models: [GpuLlama, KernelChoice[]][] = [];
  try {
    for (const { build, list } of builds.values()) {
      const m = await loadGpuModel(ctx, dir, { maxTokens, maxSeqs, ...build });
      const reach = Math.max(...ENGINE_STEPS.flatMap((st) => [...st.decodes.map((c) => c + 1), ...st.chunks.map(([start, n]) => start + n)]));
      if (m.config.maxPositions < reach) throw new Error(`engine steps: ${dir} has ${m.config.maxPositions} positions, the steps reach ${reach}`);
      models.push([m, list]);
    }
    const bar = progressBar(rounds * choices.length, 'engine steps');
    for (let r = 0; r < rounds; r++) {
      for (const [m, list] of models) {
        const tables = contiguousTables(m, maxSeqs);
        for (const c of list) {
          m.sharedFrom = c.sharedFrom;
          m.attentionNarrowFrom = c.attentionNarrowFrom;
          for (const s of ENGINE_STEPS) {
            let t = 0;
            const seqs: GpuStepSequence[] = [
              ...s.decodes.map((ctxLen) => ({ tokens: [7], start: ctxLen, blockTable: tables[t++], logits: 1 })),
              ...s.chunks.map(([start, n]) => ({ tokens: Array.from({ length: n }, (_, i) => (i * 13 + 5) % m.config.vocabSize), start, blockTable: tables[t++], logits: 1 })),
            ];
            const timed = await m.timeStep(seqs, 3);
            const byKernel: Record<string, number> = {};
            for (const d of timed.dispatches) byKernel[d.name] = (byKernel[d.name] ?? 0) + d.us;
            const e = us.get(key(c, s)) ?? { step: [], byKernel: [] };
            e.step.push(timed.stepUs);
            e.byKernel.push(byKernel);
            us.set(key(c, s), e);
          }
          bar.tick();
        }
      }
    }
    bar.done();
  } finally {
    for (const [m] of models) m.dispose();
  }
  const rows = ENGINE_STEPS.map((s) => {
    const byChoice = choices.map((c) => {
      const e = us.get(key(c, s))!;
      const kernels = Object.keys(e.byKernel[0]);
      return {
        choice: c.name,
        stepUsMedian: percentile(e.step, 50),
        stepUs: e.step,
        aloneUsMedian: Object.fromEntries(kernels.map((k) => [k, percentile(e.byKernel.map((b) => b[k]), 50)])),
      };
    });
    return { step: s.name, tokens: stepTokens(s), decodes: s.decodes, chunks: s.chunks, byChoice };
  });
  return { meaning: "GPU microseconds of one step (one pass, timestamp queries) for each kernel choice; aloneUsMedian: each kernel kind's dispatches summed, each timed in a pass of its own; medians over the rounds", rounds, rows };
}

async function main(): Promise<void> {
  // tfjs for the reference op chains and the eager comparison: webgpu when present, else wasm
  const backend = await initBackend({ prefer: flags.value('backend') ?? 'auto' } as never);
  const ctx = await sharedGpu();
  console.log(
    `captured path on: ${ctx.info.adapter}${ctx.info.software ? ' (software: correctness only)' : ''}; tfjs eager on ${backend.name}`,
  );
  const result: Record<string, unknown> = {
    adapter: ctx.info,
    tfjsBackend: backend.name,
    quick: QUICK,
    promptTokens: PROMPT,
    steps: STEPS,
  };

  const show = (r: SweepRow) =>
    console.log(
      `  ${r.model} ${r.weights} batch ${r.batch}: ${r.stepMsMedian.toFixed(3)} ms/step, ${r.tokPerS.toFixed(0)} tok/s${r.encodeMsMedian !== null ? `, encode ${r.encodeMsMedian.toFixed(3)} ms, ${r.dispatchesPerStep} dispatches` : ''}`,
    );

  // ---- 1. kernel checks
  if (SECTIONS.has(1)) {
    const checks: KernelCheck[] = await checkKernels(ctx, { small: ctx.info.software, cases: 2, seed: 7 });
    const bad = checks.filter((c) => !c.ok);
    console.log(
      `kernel checks: ${checks.length - bad.length}/${checks.length} within tolerance${bad.length ? `; failing: ${bad.map((c) => c.kernel).join(', ')}` : ''}`,
    );
    result.kernelChecks = checks;
  }

  // ---- 2. oracle
  if (SECTIONS.has(2)) {
    const oracle: (OracleReport & { weights: WeightFormat })[] = [];
    for (const which of ['target', 'draft', ...extraDrafts()]) {
      for (const format of ['f32', 'bf16'] as WeightFormat[]) {
        const m = await loadGpuModel(ctx, `data/models/${which}`, { format, maxTokens: 1024, maxSeqs: 1 });
        const bar = progressBar(23, `oracle ${which} ${format}`);
        // every logit when the oracle's logits file is at hand, else its top 50 and logsumexp
        const compare = fs.existsSync(`data/golden/${which}.logits.safetensors`) ? 'full' : 'top50';
        const r = await checkAgainstOracle(capturedDecoder(m), which, {
          compare,
          prompts: QUICK ? [0, 1] : undefined,
          steps: QUICK ? 8 : 64,
          onPrompt: () => bar.tick(),
        });
        bar.done(
          `max |logit - oracle| ${r.maxAbsError.toExponential(2)}, greedy ${r.tokensAgreeing}/${r.tokens}, ties ${r.ties.length}, failures ${r.failures.length}`,
        );
        oracle.push({ ...r, weights: format });
        m.dispose();
      }
    }
    result.oracle = oracle;
  }

  // ---- 3. step cost vs batch
  if (SECTIONS.has(3)) {
    const sweep: SweepRow[] = [];
    for (const format of ['f32', 'bf16'] as WeightFormat[]) {
      const m = await loadGpuModel(ctx, 'data/models/target', {
        format,
        maxTokens: PROMPT * Math.max(...BATCHES),
        maxSeqs: Math.max(...BATCHES),
      });
      // warm-up: a second of decode, so the first batch sizes are not timed while the GPU (clocks)
      // and V8 (tiering) are still coming up to speed after the model's load (a 4-step warm-up left
      // batches 1-16 at 0.63-0.79 ms a step and batch 32 at 0.36 in one H200 run, 2026-12-01)
      for (const t0 = performance.now(); performance.now() - t0 < (QUICK ? 50 : 1000); ) await sweepCaptured(m, 1, 16);
      for (const B of BATCHES) {
        const r = await sweepCaptured(m, B, STEPS);
        sweep.push(r);
        show(r);
      }
      m.dispose();
    }
    {
      const m = await loadGpuModel(ctx, QUICK ? 'data/models/draft' : 'data/models/target', { maxTokens: PROMPT * 32, maxSeqs: 32 });
      const rows: RoundTripRow[] = [];
      const everies = [0, 6, 11, 22];
      await roundTrip(m, 1, 0, QUICK ? 2 : 16); // warm-up
      // two rounds, each setting in turn, so a drift of the machine does not favour one
      for (const B of QUICK ? [1] : [1, 8, 32]) {
        for (let round = 0; round < 2; round++) {
          for (const every of everies) {
            const r = await roundTrip(m, B, every, QUICK ? 4 : 48);
            rows.push(r);
            console.log(
              `  engine-style step, batch ${B}, ${every === 0 ? 'one submit' : `a submit every ${every} dispatches`}: ${r.stepMsMedian.toFixed(3)} ms (encode ${r.encodeMsMedian.toFixed(3)} ms)`,
            );
          }
        }
      }
      result.roundTrip = {
        meaning:
          "step() with its ids read back before the next step is written (the engine's step), batch 1/8/32 after a 32-token prompt; submitEvery = dispatches per submit, 0 = one submit",
        defaultSubmitEvery: m.submitEvery,
        rows,
      };
      m.dispose();
    }
    if (backend.name === 'webgpu' || !ctx.info.software) {
      for (const B of QUICK ? [1] : [1, 8, 32]) {
        const r = await sweepEager('data/models/target', B, QUICK ? 3 : 24);
        sweep.push(r);
        show(r);
      }
    }
    result.sweep = sweep;
  }

  // ---- 4. bandwidth
  if (SECTIONS.has(4)) {
    const roof = await readRoof(ctx, ctx.info.software ? 2 ** 25 : 2 ** 30);
    console.log(`read roof: ${roof.gbPerS.toFixed(0)} GB/s over ${(roof.bytes / 1e9).toFixed(2)} GB`);
    const bandwidth = [];
    for (const preset of PRESETS) {
      for (const format of ['f32', 'bf16'] as WeightFormat[]) {
        const m = await loadGpuModel(ctx, preset, { format, maxTokens: PROMPT, maxSeqs: 1 });
        await sweepCaptured(m, 1, 4);
        const r = await sweepCaptured(m, 1, STEPS);
        const kvBytes = llamaSizes(m.config).kvBytesPerToken * (PROMPT + STEPS / 2);
        const gbPerS = (m.stats.weightBytes + kvBytes) / (r.stepMsMedian * 1e6);
        bandwidth.push({ ...r, weightBytes: m.stats.weightBytes, gbPerS, fractionOfRoof: gbPerS / roof.gbPerS });
        show(r);
        console.log(`    streams ${gbPerS.toFixed(0)} GB/s = ${((100 * gbPerS) / roof.gbPerS).toFixed(0)}% of the read roof`);
        m.dispose();
      }
    }
    result.roof = roof;
    result.bandwidth = bandwidth;
  }

  // ---- 5. where a step's GPU time goes: each kernel timed on the GPU (timestamp queries)
  if (SECTIONS.has(5)) {
    if (ctx.info.timestamps) {
      const floor = await dispatchFloor(ctx);
      console.log(
        `dispatch floor: ${floor.onePassUs.toFixed(2)} us per trivial dependent dispatch in one pass, ${floor.passEachUs.toFixed(2)} us with a pass each`,
      );
      // decode steps, and a step of 4 chunks of 64 prefill tokens (a continuous-batching step's shape)
      const T = 'data/models/target';
      const cases: [string, number, number, number, GpuLlamaOptions?][] = QUICK
        ? [['data/models/draft', 1, 16, 1]]
        : [
            [T, 1, 64, 1],
            [T, 1, 512, 1],
            [T, 32, 64, 1],
            [T, 64, 64, 1],
            [T, 64, 64, 1, { headSharedFrom: Infinity }], // (the same step, the LM head on the decode tile)
            [T, 4, 64, 64],
            ['data/models/draft', 1, 64, 1],
          ];
      const kernels = [];
      for (const [dir, batch, context, tokens, options] of cases) {
        const k = await kernelTimes(ctx, dir, batch, context, tokens, options);
        kernels.push(k);
        const parts = Object.entries(k.byKernel).map(([name, v]) => `${name} ${v.usEach.toFixed(1)}${v.count > 1 ? `x${v.count}` : ''}`);
        console.log(
          `${k.model} B=${batch}${tokens > 1 ? ` x ${tokens} tokens` : ''} context ${context}, shared tile from ${thresholdText(k.sharedFrom)} rows (head ${k.headSharedFrom}): step ${k.stepUs.toFixed(0)} us on the GPU (${k.dispatches} dispatches); alone, us each: ${parts.join(', ')}`,
        );
      }
      // the matmul tile against the step's size: the whole step's GPU time with the default
      // choice and with each tile for every matmul, the settings taking turns
      const perTile = (t: Awaited<ReturnType<typeof tileCompare>>) => t.settings.map((x) => `${x.tile}: ${x.stepUsMedian.toFixed(0)}`).join(', ');
      const tiles = [];
      for (const [batch, tokens] of QUICK
        ? [[2, 8]]
        : [
            [8, 1],
            [32, 1],
            [64, 1],
            [1, 32],
            [1, 64],
            [2, 64],
            [4, 64],
          ]) {
        const t = await tileCompare(ctx, QUICK ? 'data/models/draft' : T, batch, 64, tokens);
        tiles.push(t);
        console.log(
          `${batch} x ${tokens} tokens: GPU us per step, ${perTile(t)}`,
        );
      }
      // the shared tile's shape: each candidate against the decode tile on the steps it would take
      const shapes = [];
      for (const tile of SHARED_TILES) {
        for (const [batch, tokens] of [
          [32, 1],
          [64, 1],
          [1, 64],
          [2, 64],
          [4, 64],
        ]) {
          const t = await tileCompare(ctx, T, batch, 64, tokens, tile);
          shapes.push(t);
          console.log(
            `shared tile ${tile.rows}x${tile.tokens}/${tile.splitK ?? 1}, ${batch} x ${tokens} tokens: GPU us per step, ${perTile(t)}`,
          );
        }
      }
      result.kernelTimes = { floor, kernels, tiles, ...(shapes.length > 0 ? { sharedTiles: shapes } : {}) };
    }
  }

  // ---- 6. the engine's steps with every kernel choice
  if (SECTIONS.has(6)) {
    if (ctx.info.timestamps) {
      const r = await engineSteps(ctx, QUICK ? 'data/models/draft' : 'data/models/target', QUICK ? 1 : 3);
      for (const row of r.rows) {
        const ranked = [...row.byChoice].sort((a, b) => a.stepUsMedian - b.stepUsMedian);
        const def = row.byChoice[0];
        console.log(
          `${row.step} (${row.tokens} tokens): defaults ${def.stepUsMedian.toFixed(0)} us; best ${ranked
            .slice(0, 4)
            .map((x) => `${x.choice} ${x.stepUsMedian.toFixed(0)}`)
            .join(', ')}`,
        );
      }
      result.engineSteps = r;
    } else {
      console.log('engine steps: this adapter has no timestamp queries, skipped');
    }
  }

  const file = writeBenchJson('captured-webgpu', result, { dir: OUT ?? 'data/bench/webgpu' });
  console.log(`wrote ${file}`);
  tf.engine().reset();
  await shutdownBackend();
}

main().then(
  () => process.exit(0), // the GPU device would keep Node alive
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
