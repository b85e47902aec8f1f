/**
 * Speculative decoding benchmark (issue 6; lesson 4 "speculative decoding"). Not a test: it
 * prints figures and writes JSON for the charts, and asserts no timing.
 *
 *   1. costs: target and draft ms per decode step (plain generate), c = draft / target, and the
 *      cost of one target pass over gamma + 1 tokens relative to one decode step (verify ratio)
 *   2. batch-1 greedy, draft model, gamma sweep 1..8: measured speedup vs target-only decoding,
 *      alpha, tokens per step, predicted speedup (Leviathan's formula with measured alpha and c,
 *      and the same with the measured verify ratio), measured / predicted; adaptive gamma
 *   3. prompt lookup on repetitive (input-grounded) vs free text
 *   4. per-op overhead: kernels per forward, matmul kernel time vs the rest (tf.profile)
 *
 *   5. (webgpu) batch-1 speculative decoding inside the engine on the captured path (lib/gpu:
 *      target and draft as GpuLlama, maxNumSeqs 1): draft model gamma sweep (every shipped draft:
 *      `draft` and data/models/draft-*, unless --draft names one), prompt lookup on free text (ten
 *      golden prompts) and repetitive text, best gamma. Sections 1-4 drive speculativeGenerate over the tfjs
 *      LlamaModel and its KV caches: they are eager-only (the captured path's speculative
 *      decoding is the engine's), so on webgpu they measure the eager tfjs path beside section 5.
 *
 *   npm run bench:spec [-- --quick] [-- --smoke] [-- --tokens 64] [-- --repeats 2] [-- --backend wasm] [-- --out PATH]
 *     [-- --eager] (webgpu: skip section 5) [-- --captured-only] (webgpu: skip sections 1-4) [-- --format f32|bf16]
 *     [-- --model DIR] [-- --draft DIR] [-- --threads N|all] (wasm: CPU threads, default every core)
 * --smoke: a few tokens, gamma 2 only, one prompt (to check the code paths; SwiftShader).
 *
 * Timings are the minimum over repeats (interleaved: every configuration once per repeat), the
 * estimator least hurt by a busy machine. Speedup = target-only wall time / speculative wall
 * time for the same prompts and the same number of generated tokens (greedy, prefill included).
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

import { initBackend, type BackendPreference } from '../lib/backend';
import { progressBar, writeBenchJson, benchFlags, runBench } from '../lib/bench/harness';
import { generate, type LanguageModel } from '../lib/generate/generate';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import type { LlamaModel } from '../lib/model/llama';
import { extraDrafts, loadModel, modelSource } from '../lib/model/load';
import { speculativeGenerate, type SpeculativeOptions } from '../lib/spec/generate';
import { predictedSpeedup, type SpecSummary } from '../lib/spec/stats';
import { loadTokenizer } from '../lib/generate/tokenizer';
import { FREE_TEXT_PROMPTS, loadGolden, promptIds } from '../test/golden';
import { resolveEngineConfig, type EngineConfigInput, type SpeculativeEngineConfigInput } from '../lib/engine/config';
import { capturedOptionsFor, LLMEngine } from '../lib/engine/llmEngine';
import type { GpuLlama } from '../lib/gpu/llama';
import { sharedGpu } from '../lib/gpu/device';
import type { WeightFormat } from '../lib/gpu/kernels';
import { loadGpuModel } from '../lib/gpu/load';

// ---- flags

const argv = process.argv.slice(2);
const flags = benchFlags(argv);
const flag = flags.value;
const smoke = flags.has('smoke');
const quick = argv.includes('--quick') || smoke;
const TOKENS = Number(flag('tokens') ?? (smoke ? 3 : quick ? 32 : 64));
const REPEATS = Number(flag('repeats') ?? (quick ? 1 : 2));
const GAMMAS = smoke ? [2] : quick ? [1, 2, 4, 8] : [1, 2, 3, 4, 5, 6, 7, 8];
const EAGER_ONLY = flags.has('eager');
const CAPTURED_ONLY = flags.has('captured-only');
const FORMAT = (flag('format') ?? 'f32') as WeightFormat;
const TARGET_DIR = flag('model') ?? 'data/models/target';
const DRAFT_DIR = flag('draft') ?? 'data/models/draft';
// the captured section also races the extra drafts shipped beside `draft` (data/models/draft-*: other
// shapes, e.g. one wide layer; data/README.md), unless a --draft is given
const EXTRA_DRAFT_DIRS = flag('draft') ? [] : extraDrafts().map((d) => path.join('data/models', d));
// the captured section is cheap on a GPU: always the full gamma sweep, 64 tokens and ten free-text
// prompts there (every golden test-split prompt of 16-256 tokens: acceptance varies a lot from one
// prompt to the next, and the best gamma is picked from the same runs, so a few prompts flatter it)
const CAPTURED = smoke
  ? { tokens: 3, repeats: 1, gammas: [2], lookup: [4], free: ['test-16'] }
  : {
      tokens: Number(flag('tokens') ?? 64),
      repeats: Number(flag('repeats') ?? 3),
      gammas: [1, 2, 3, 4, 5, 6, 8],
      lookup: [2, 4, 8],
      free: FREE_TEXT_PROMPTS,
    };
const OUT = flag('out') ?? path.join('data', 'bench', 'spec.json');
const BACKEND = (flag('backend') ?? 'auto') as BackendPreference;

// ---- helpers

const min = (xs: number[]) => Math.min(...xs);
const r3 = (x: number) => Math.round(x * 1000) / 1000;

interface RunResult {
  ms: number;
  tokens: number;
  spec: SpecSummary | null;
}

// one pass over the prompts: total wall ms, tokens generated, pooled speculative stats
async function runTarget(lm: LanguageModel, prompts: number[][]): Promise<RunResult> {
  const t0 = performance.now();
  const outs = await generate(lm, prompts.length === 1 ? prompts[0] : prompts, { temperature: 0, maxTokens: TOKENS, ignoreEos: true });
  return { ms: performance.now() - t0, tokens: outs.reduce((n, o) => n + o.tokenIds.length, 0), spec: null };
}

async function runSpecPrompts(lm: LanguageModel, prompts: number[][], options: SpeculativeOptions): Promise<RunResult> {
  let ms = 0;
  let tokens = 0;
  const specs: SpecSummary[] = [];
  for (const p of prompts) {
    const t0 = performance.now();
    const [out] = await speculativeGenerate(lm, p, { temperature: 0, maxTokens: TOKENS, ignoreEos: true }, { ...options, trace: false });
    ms += performance.now() - t0;
    tokens += out.tokenIds.length;
    specs.push(out.spec);
  }
  return { ms, tokens, spec: pool(specs) };
}

async function runTargetPrompts(lm: LanguageModel, prompts: number[][]): Promise<RunResult> {
  let ms = 0;
  let tokens = 0;
  for (const p of prompts) {
    const r = await runTarget(lm, [p]);
    ms += r.ms;
    tokens += r.tokens;
  }
  return { ms, tokens, spec: null };
}

// pooled counters of several runs (alpha from the pooled counts)
function pool(specs: SpecSummary[]): SpecSummary {
  const steps = specs.reduce((n, s) => n + s.steps, 0);
  const drafted = specs.reduce((n, s) => n + s.drafted, 0);
  const accepted = specs.reduce((n, s) => n + s.accepted, 0);
  const rejections = specs.reduce((n, s) => n + (s.alpha > 0 ? s.accepted / s.alpha - s.accepted : s.steps), 0);
  const w = (f: (s: SpecSummary) => number) => specs.reduce((n, s) => n + f(s) * s.steps, 0) / steps;
  const positions = Math.max(...specs.map((s) => s.acceptanceByPosition.length));
  return {
    steps,
    drafted,
    accepted,
    meanTokensPerStep: (accepted + steps) / steps,
    meanAcceptedLength: accepted / steps,
    acceptanceRate: drafted ? accepted / drafted : 0,
    alpha: accepted + rejections > 0 ? accepted / (accepted + rejections) : 0,
    acceptanceByPosition: Array.from({ length: positions }, (_, i) => w((s) => s.acceptanceByPosition[i] ?? 0)),
    acceptedLengthHistogram: Array.from({ length: Math.max(...specs.map((s) => s.acceptedLengthHistogram.length)) }, (_, i) =>
      specs.reduce((n, s) => n + (s.acceptedLengthHistogram[i] ?? 0), 0),
    ),
    meanGamma: w((s) => s.meanGamma),
    draftMsPerToken: w((s) => s.draftMsPerToken),
    verifyMsPerStep: w((s) => s.verifyMsPerStep),
    acceptMsPerStep: w((s) => s.acceptMsPerStep),
  };
}

// ms of one forward of `T` new tokens at a context of `context` tokens (minimum over reps, the
// least noisy on a busy machine; the cache is truncated back after each)
async function forwardMs(model: LlamaModel, context: number, T: number, reps: number): Promise<number> {
  const cache = new ContiguousKVCache(model.kvShape, 1);
  const ids = (n: number, off: number) => Array.from({ length: n }, (_, i) => 1 + ((i * 131 + off) % (model.config.vocabSize - 1)));
  try {
    tf.dispose(model.forward([ids(context, 0)], cache));
    const times: number[] = [];
    for (let r = 0; r < reps + 2; r++) {
      const t0 = performance.now();
      const out = model.forward([ids(T, r)], cache, { logits: T === 1 ? 'last' : 'all' });
      await out.data();
      out.dispose();
      if (r >= 2) times.push(performance.now() - t0);
      cache.truncate([context]);
    }
    return min(times);
  } finally {
    cache.dispose();
  }
}

// where a forward's time goes: kernels, matmul kernel time, the rest per op
async function opProfile(model: LlamaModel, context: number, T: number) {
  const cache = new ContiguousKVCache(model.kvShape, 1);
  const ids = Array.from({ length: context }, (_, i) => 1 + (i % 1000));
  try {
    tf.dispose(model.forward([ids], cache));
    const wall = await forwardMs(model, context, T, 9);
    const info = await tf.profile(async () => {
      const out = model.forward([ids.slice(0, T)], cache, { logits: T === 1 ? 'last' : 'all' });
      await out.data();
      out.dispose();
      return 0;
    });
    let kernels = 0;
    let kernelMs = 0;
    let matmulMs = 0;
    let matmuls = 0;
    const byName = new Map<string, { count: number; ms: number }>();
    for (const k of info.kernels as unknown as { name: string; kernelTimeMs: number | { error: string } }[]) {
      if (!tf.getKernel(k.name, tf.getBackend())) continue; // op scopes, not kernels
      const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
      kernels++;
      kernelMs += ms;
      if (/MatMul/.test(k.name)) {
        matmuls++;
        matmulMs += ms;
      }
      const e = byName.get(k.name) ?? { count: 0, ms: 0 };
      e.count++;
      e.ms += ms;
      byName.set(k.name, e);
    }
    const nonMatmulMs = Math.max(0, wall - matmulMs);
    return {
      model: model.name,
      context,
      newTokens: T,
      wallMs: r3(wall),
      kernels,
      kernelMs: r3(kernelMs),
      matmuls,
      matmulMs: r3(matmulMs),
      /** wall - matmul kernel time: small kernels + engine/JS dispatch */
      nonMatmulMs: r3(nonMatmulMs),
      nonMatmulPercent: r3((100 * nonMatmulMs) / wall),
      nonMatmulUsPerOp: r3((1000 * nonMatmulMs) / Math.max(1, kernels - matmuls)),
      topKernels: [...byName.entries()]
        .sort((a, b) => b[1].ms - a[1].ms)
        .slice(0, 8)
        .map(([name, e]) => ({ name, count: e.count, ms: r3(e.ms) })),
    };
  } finally {
    cache.dispose();
  }
}

// repetitive text (KJV, Genesis 1:1-2 and 1:5, alternated): the target's greedy continuation
// keeps repeating phrases of it and of itself, which is what prompt lookup feeds on
const GEN_1_2 = 'In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.';
const GEN_1_5 = 'And God called the light Day, and the darkness he called Night. And the evening and the morning were the first day.';
const REPETITIVE = [GEN_1_2, GEN_1_5, GEN_1_2, GEN_1_5, GEN_1_2].join(' ');

// ---- 5. batch-1 speculative decoding in the engine on the captured path

interface EngineRun {
  ms: number;
  tokens: number;
  decodeMs: number;
  decodeTokens: number;
  decodeSteps: number;
  spec: SpecSummary | null;
  draftMs: number;
  verifyMs: number;
}

// every prompt alone through an engine with one seat (batch 1), greedy, TOKENS tokens each
async function engineRun(target: GpuLlama, prompts: number[][], config: EngineConfigInput, tokens: number): Promise<EngineRun> {
  const r: EngineRun = { ms: 0, tokens: 0, decodeMs: 0, decodeTokens: 0, decodeSteps: 0, spec: null, draftMs: 0, verifyMs: 0 };
  const specs: SpecSummary[] = [];
  for (const p of prompts) {
    const engine = new LLMEngine(target, null, config);
    try {
      engine.addRequest(p, { temperature: 0, maxTokens: tokens, ignoreEos: true });
      const t0 = performance.now();
      while (engine.hasUnfinished()) for (const out of await engine.step()) r.tokens += out.outputs[0].tokenIds.length;
      r.ms += performance.now() - t0;
      const decode = engine.steps.filter((s) => s.prefills.length === 0 && s.decodes.length > 0);
      r.decodeMs += decode.reduce((a, s) => a + s.wallMs, 0);
      r.decodeTokens += decode.reduce((a, s) => a + (s.spec ? s.spec.emitted : s.decodes.length), 0);
      r.decodeSteps += decode.length;
      r.draftMs += decode.reduce((a, s) => a + (s.spec?.draftMs ?? 0), 0);
      r.verifyMs += decode.reduce((a, s) => a + (s.spec?.verifyMs ?? 0), 0);
      if (engine.specStats) specs.push(engine.specStats.summary());
    } finally {
      engine.dispose();
    }
  }
  r.spec = specs.length > 0 ? pool(specs) : null;
  return r;
}

async function capturedSection(free: number[][], repetitive: number[][]): Promise<Record<string, unknown>> {
  const ctx = await sharedGpu();
  const maxPositions = modelSource(TARGET_DIR).config.maxPositions;
  // one seat, a pool of one full context; both models sized from this engine config
  const base: EngineConfigInput = { maxNumSeqs: 1, blockSize: 16, numBlocks: Math.ceil(maxPositions / 16), enablePrefixCaching: false };
  const sizes = capturedOptionsFor(resolveEngineConfig(base, maxPositions));
  const target = await loadGpuModel(ctx, TARGET_DIR, { ...sizes, format: FORMAT });
  const draft = await loadGpuModel(ctx, DRAFT_DIR, { ...sizes, format: FORMAT });
  const extras = await Promise.all(EXTRA_DRAFT_DIRS.map(async (dir) => ({ name: path.basename(dir), model: await loadGpuModel(ctx, dir, { ...sizes, format: FORMAT }) })));
  const extraNote = extras.map((e) => `, ${e.name} ${e.model.stats.dispatchesPerStep}`).join('');
  console.log(`\ncaptured path (engine, maxNumSeqs 1) on ${ctx.info.adapter}${ctx.info.software ? ' (software: correctness only, not timing)' : ''}: ${FORMAT} weights, target ${target.stats.dispatchesPerStep} dispatches/step, draft ${draft.stats.dispatchesPerStep}${extraNote}`);
  try {
    type Config = { label: string; set: 'free' | 'repetitive'; prompts: number[][]; gamma: number | null; drafter: 'none' | 'draft model' | 'prompt lookup'; model?: string; speculative: SpeculativeEngineConfigInput | null };
    const configs: Config[] = [
      { label: 'target only (free)', set: 'free', prompts: free, gamma: null, drafter: 'none', speculative: null },
      ...CAPTURED.gammas.map((g): Config => ({ label: `draft gamma=${g}`, set: 'free', prompts: free, gamma: g, drafter: 'draft model', model: path.basename(DRAFT_DIR), speculative: { draft, gamma: g } })),
      ...extras.flatMap((e) =>
        CAPTURED.gammas.map((g): Config => ({ label: `${e.name} gamma=${g}`, set: 'free', prompts: free, gamma: g, drafter: 'draft model', model: e.name, speculative: { draft: e.model, gamma: g } })),
      ),
      ...CAPTURED.lookup.map((g): Config => ({ label: `prompt lookup gamma=${g} (free)`, set: 'free', prompts: free, gamma: g, drafter: 'prompt lookup', speculative: { draft: 'prompt-lookup', gamma: g } })),
      { label: 'target only (repetitive)', set: 'repetitive', prompts: repetitive, gamma: null, drafter: 'none', speculative: null },
      ...CAPTURED.lookup.map((g): Config => ({ label: `prompt lookup gamma=${g} (repetitive)`, set: 'repetitive', prompts: repetitive, gamma: g, drafter: 'prompt lookup', speculative: { draft: 'prompt-lookup', gamma: g } })),
      { label: 'draft gamma=4 (repetitive)', set: 'repetitive', prompts: repetitive, gamma: 4, drafter: 'draft model', speculative: { draft, gamma: 4 } },
    ];
    const results: EngineRun[][] = configs.map(() => []);
    const bar = progressBar(configs.length * (CAPTURED.repeats + 1), 'captured');
    for (let r = 0; r <= CAPTURED.repeats; r++) {
      for (let i = 0; i < configs.length; i++) {
        const res = await engineRun(target, configs[i].prompts, { ...base, speculative: configs[i].speculative }, CAPTURED.tokens);
        if (r > 0) results[i].push(res);
        bar.tick(1, configs[i].label);
      }
    }
    bar.done();
    // best repeat: lowest wall time
    const bestOf = (i: number) => results[i].reduce((a, b) => (b.ms < a.ms ? b : a));
    const plainOf = (set: string) => bestOf(configs.findIndex((c) => c.speculative === null && c.set === set));
    const rows = configs.map((cfg, i) => {
      const b = bestOf(i);
      const plain = plainOf(cfg.set);
      const plainStepMs = plain.decodeMs / Math.max(1, plain.decodeSteps);
      const row: Record<string, unknown> = {
        config: cfg.label,
        set: cfg.set,
        drafter: cfg.drafter,
        ...(cfg.model ? { draftModel: cfg.model } : {}),
        gamma: cfg.gamma,
        ms: r3(b.ms),
        tokens: b.tokens,
        tokensPerSecond: r3((1000 * b.tokens) / b.ms),
        measuredSpeedup: r3(plain.ms / b.ms),
        decodeTokensPerSecond: r3((1000 * b.decodeTokens) / b.decodeMs),
        decodeSpeedup: r3(b.decodeTokens / b.decodeMs / (plain.decodeTokens / plain.decodeMs)),
        decodeStepMs: r3(b.decodeMs / Math.max(1, b.decodeSteps)),
      };
      if (b.spec && cfg.gamma !== null) {
        const steps = Math.max(1, b.decodeSteps);
        const c = cfg.drafter === 'draft model' ? b.draftMs / steps / cfg.gamma / plainStepMs : 0;
        const v = b.verifyMs / steps / plainStepMs;
        Object.assign(row, {
          alpha: r3(b.spec.alpha),
          acceptanceRate: r3(b.spec.acceptanceRate),
          tokensPerStep: r3(b.spec.meanTokensPerStep),
          draftMsPerStep: r3(b.draftMs / steps),
          verifyMsPerStep: r3(b.verifyMs / steps),
          c: r3(c),
          verifyRatio: r3(v),
          predictedSpeedup: r3(predictedSpeedup(b.spec.alpha, cfg.gamma, c)),
          predictedWithVerifyCost: r3(predictedSpeedup(b.spec.alpha, cfg.gamma, c, v)),
        });
      }
      return row;
    });
    console.log('\ncaptured, in the engine (batch 1)      tok/s   speedup  decode speedup  alpha  tok/step  step ms  c      v');
    for (const r of rows) {
      const f = (k: string, w: number, d = 2) => (typeof r[k] === 'number' ? (r[k] as number).toFixed(d) : '-').padStart(w);
      console.log(`${String(r.config).padEnd(38)} ${f('tokensPerSecond', 7, 1)} ${f('measuredSpeedup', 8)} ${f('decodeSpeedup', 15)} ${f('alpha', 6)} ${f('tokensPerStep', 9)} ${f('decodeStepMs', 8, 3)} ${f('c', 6, 3)} ${f('verifyRatio', 5)}`);
    }
    const draftRows = rows.filter((r) => r.drafter === 'draft model' && r.set === 'free');
    const bestOfRows = (rs: Record<string, unknown>[]) => rs.reduce((a, r) => ((r.measuredSpeedup as number) > (a.measuredSpeedup as number) ? r : a), rs[0]);
    const best = bestOfRows(draftRows);
    // each draft model's own best gamma
    const bestByDraft = Object.fromEntries(
      [...new Set(draftRows.map((r) => r.draftModel as string))].map((m) => {
        const b = bestOfRows(draftRows.filter((r) => r.draftModel === m));
        return [m, { gamma: b.gamma, measuredSpeedup: b.measuredSpeedup, decodeSpeedup: b.decodeSpeedup }];
      }),
    );
    const lookupRows = rows.filter((r) => r.drafter === 'prompt lookup' && r.set === 'repetitive');
    const bestLookup = lookupRows.reduce((a, r) => ((r.measuredSpeedup as number) > (a.measuredSpeedup as number) ? r : a), lookupRows[0]);
    console.log(`captured best gamma (draft model, free text): ${best.draftModel} at gamma ${best.gamma}, ${best.measuredSpeedup}x (goal >= 2x); prompt lookup on repetitive text: gamma ${bestLookup?.gamma} at ${bestLookup?.measuredSpeedup}x`);
    if (extras.length > 0) console.log(`best per draft model: ${Object.entries(bestByDraft).map(([m, b]) => `${m} gamma ${b.gamma} ${b.measuredSpeedup}x`).join(', ')}`);
    return {
      adapter: ctx.info,
      weights: FORMAT,
      engine: { ...base, maxNumBatchedTokens: sizes.maxTokens },
      settings: { tokens: CAPTURED.tokens, repeats: CAPTURED.repeats, gammas: CAPTURED.gammas, lookupGammas: CAPTURED.lookup, freePrompts: CAPTURED.free, batch: 1, target: TARGET_DIR, draft: DRAFT_DIR, extraDrafts: EXTRA_DRAFT_DIRS },
      dispatchesPerStep: { target: target.stats.dispatchesPerStep, draft: draft.stats.dispatchesPerStep, ...Object.fromEntries(extras.map((e) => [e.name, e.model.stats.dispatchesPerStep])) },
      runs: rows,
      best: { drafter: 'draft model', draftModel: best.draftModel, gamma: best.gamma, measuredSpeedup: best.measuredSpeedup, decodeSpeedup: best.decodeSpeedup },
      bestByDraft,
      bestPromptLookupRepetitive: bestLookup ? { gamma: bestLookup.gamma, measuredSpeedup: bestLookup.measuredSpeedup } : null,
      notes: [
        'each prompt alone through an LLMEngine with maxNumSeqs 1 on the captured path (target and draft GpuLlama), greedy, the same tokens per prompt; best of repeats (lowest wall time)',
        'measuredSpeedup = target-only wall time / speculative wall time (prefill included); decodeSpeedup: pure decode steps only',
        'c = draft ms per drafted token / plain decode step ms; v = verify ms per step / plain decode step ms; predicted as in the eager rows',
        'greedy rows on two captured models run draft and verify in one go (the drafts copied on the GPU, one readback): the draft model rows then show c = 0 and v = the whole speculative step',
        'rows `<name> gamma=k` race an extra draft shipped beside `draft` (data/models/<name>); best = the best draft model row, bestByDraft each one\'s',
        'issue 11 goal: draft model, best gamma, >= 2x at batch 1 inside the engine (measured, not asserted)',
      ],
    };
  } finally {
    target.dispose();
    draft.dispose();
    for (const e of extras) e.model.dispose();
  }
}

// ---- main

async function main(): Promise<void> {
  const backend = await initBackend({ prefer: BACKEND, wasmThreads: flags.threads(), wasmFma: flags.fma() });
  console.log(`backend: ${backend.name} (${backend.reason})`);
  const runCaptured = backend.name === 'webgpu' && !EAGER_ONLY;
  const runEager = !(runCaptured && CAPTURED_ONLY);
  const tokenizer = await loadTokenizer(TARGET_DIR);
  const golden = loadGolden();

  // free text: golden prompts cut from test-split chapters (16..128 tokens)
  const freeNames = smoke ? ['test-16'] : quick ? ['test-32', 'test-64'] : ['test-16', 'test-32', 'test-64', 'test-128'];
  const cut = (ids: number[]) => (smoke ? ids.slice(0, 6) : ids);
  const free = promptIds(golden, freeNames).map(cut);
  const repetitive = [smoke ? tokenizer.encode(REPETITIVE).slice(0, 24) : tokenizer.encode(REPETITIVE)];
  const capturedFree = promptIds(golden, CAPTURED.free).map(cut);

  const result: Record<string, unknown> = {
    backend: backend.name,
    settings: { tokens: TOKENS, repeats: REPEATS, gammas: GAMMAS, quick, smoke, greedy: true, batch: 1, freePrompts: freeNames, repetitivePromptTokens: repetitive[0].length },
  };
  if (runEager) Object.assign(result, await eagerSections(tokenizer, free, repetitive));
  else result.eager = 'skipped (--captured-only): sections 1-4 (speculativeGenerate over the tfjs LlamaModel and its KV caches) are eager-only';
  result.captured = runCaptured
    ? await capturedSection(capturedFree, repetitive)
    : backend.name === 'webgpu'
      ? 'skipped (--eager)'
      : `not run: the captured path needs the webgpu backend (this run: ${backend.name})`;
  const file = writeBenchJson(path.basename(OUT, '.json'), result, { dir: path.dirname(OUT) });
  console.log(`\nwrote ${file}`);
}

// sections 1-4: speculativeGenerate over the tfjs model (eager only)
async function eagerSections(tokenizer: Awaited<ReturnType<typeof loadTokenizer>>, free: number[][], repetitive: number[][]): Promise<Record<string, unknown>> {
  const lm: LanguageModel = { model: await loadModel(TARGET_DIR), tokenizer };
  const draftLm: LanguageModel = { model: await loadModel(DRAFT_DIR), tokenizer };
  const draft = draftLm.model;

  // ---- 1. costs
  const costsBar = progressBar(4, 'costs');
  const ctx = 64;
  const draftStepMs = await forwardMs(draft, ctx, 1, 15);
  costsBar.tick();
  // one decode step and passes of gamma + 1 tokens, interleaved so a busy CPU slows all alike
  const verifyMs: Record<number, number> = {};
  let targetStepMs = Infinity;
  for (let round = 0; round < 3; round++) {
    targetStepMs = Math.min(targetStepMs, await forwardMs(lm.model, ctx, 1, 5));
    for (const g of GAMMAS) verifyMs[g] = Math.min(verifyMs[g] ?? Infinity, await forwardMs(lm.model, ctx, g + 1, 3));
    costsBar.tick();
  }
  costsBar.done();
  const verifyRatio = (g: number) => verifyMs[g] / targetStepMs;
  // plain generate() loops of both models: their ms per token (sampling, stop checks included)
  const costRuns = { target: [] as number[], draft: [] as number[] };
  let freeTokens = 0;
  for (let r = 0; r < REPEATS; r++) {
    const t = await runTargetPrompts(lm, free);
    costRuns.target.push(t.ms);
    costRuns.draft.push((await runTargetPrompts(draftLm, free)).ms);
    freeTokens = t.tokens;
  }
  const targetMsPerToken = min(costRuns.target) / freeTokens;
  const cGenerateLoop = min(costRuns.draft) / min(costRuns.target);
  console.log(
    `forward only, context ${ctx}: target ${targetStepMs.toFixed(2)} ms/step, draft ${draftStepMs.toFixed(2)} ms/step (c = ${(draftStepMs / targetStepMs).toFixed(3)}); ` +
      `generate() loops: target ${targetMsPerToken.toFixed(2)} ms/token, c = ${cGenerateLoop.toFixed(3)}\n` +
      `verify: one target pass over gamma+1 tokens / one decode step: ${GAMMAS.map((g) => `${g}:${verifyRatio(g).toFixed(2)}`).join(' ')}`,
  );
  // c for adaptive gamma, before the sweep measures it inside speculation
  const c = draftStepMs / targetStepMs;

  // ---- 2 and 3. the sweep, interleaved per repeat
  type Config = { label: string; prompts: number[][]; options: SpeculativeOptions | null; gamma: number | null; set: string };
  const configs: Config[] = [
    { label: 'target only (free)', prompts: free, options: null, gamma: null, set: 'free' },
    ...GAMMAS.map((g) => ({ label: `draft gamma=${g}`, prompts: free, options: { draft, gamma: g }, gamma: g, set: 'free' })),
    { label: 'draft adaptive', prompts: free, options: { draft, gamma: 'adaptive' as const, adaptive: { c, verifyCost: (g: number) => verifyRatio(Math.min(8, g)) ?? 1 } }, gamma: null, set: 'free' },
    { label: 'prompt lookup gamma=4 (free)', prompts: free, options: { draft: 'prompt-lookup', gamma: 4 }, gamma: 4, set: 'free' },
    { label: 'target only (repetitive)', prompts: repetitive, options: null, gamma: null, set: 'repetitive' },
    { label: 'prompt lookup gamma=4 (repetitive)', prompts: repetitive, options: { draft: 'prompt-lookup', gamma: 4 }, gamma: 4, set: 'repetitive' },
    { label: 'prompt lookup gamma=8 (repetitive)', prompts: repetitive, options: { draft: 'prompt-lookup', gamma: 8 }, gamma: 8, set: 'repetitive' },
    { label: 'draft gamma=4 (repetitive)', prompts: repetitive, options: { draft, gamma: 4 }, gamma: 4, set: 'repetitive' },
  ];
  // warm-up: every configuration once, untimed (wasm kernels, XNNPACK packing)
  const bar = progressBar(configs.length * (REPEATS + 1), 'sweep');
  const results: RunResult[][] = configs.map(() => []);
  for (let r = 0; r <= REPEATS; r++) {
    for (let i = 0; i < configs.length; i++) {
      const cfg = configs[i];
      const res = cfg.options ? await runSpecPrompts(lm, cfg.prompts, cfg.options) : await runTargetPrompts(lm, cfg.prompts);
      if (r > 0) results[i].push(res);
      bar.tick(1, cfg.label);
    }
  }
  bar.done();

  const baseline = (set: string) => min(results[configs.findIndex((x) => x.options === null && x.set === set)].map((x) => x.ms));
  const rows = configs.map((cfg, i) => {
    const ms = min(results[i].map((x) => x.ms));
    const tokens = results[i][0].tokens;
    const spec = results[i][results[i].length - 1].spec;
    const speedup = baseline(cfg.set) / ms;
    const row: Record<string, unknown> = { config: cfg.label, set: cfg.set, ms: r3(ms), tokens, tokensPerSecond: r3((1000 * tokens) / ms), measuredSpeedup: r3(speedup) };
    if (spec) {
      const isDraft = cfg.options && cfg.options.draft !== 'prompt-lookup';
      const g = cfg.gamma ?? spec.meanGamma;
      // c as the formula means it: the draft's ms per drafted token inside speculative decoding
      // (forward, readback, argmax) over the target-only ms per generated token
      const cc = isDraft ? spec.draftMsPerToken / targetMsPerToken : 0;
      const textbook = predictedSpeedup(spec.alpha, g, cc);
      const vr = cfg.gamma !== null ? verifyRatio(Math.min(8, cfg.gamma)) : verifyRatio(Math.max(1, Math.min(8, Math.round(g))));
      const withVerify = predictedSpeedup(spec.alpha, g, cc, vr);
      Object.assign(row, {
        gamma: r3(g),
        alpha: r3(spec.alpha),
        acceptanceRate: r3(spec.acceptanceRate),
        tokensPerStep: r3(spec.meanTokensPerStep),
        acceptanceByPosition: spec.acceptanceByPosition.map(r3),
        acceptedLengthHistogram: spec.acceptedLengthHistogram,
        c: r3(cc),
        predictedSpeedup: r3(textbook),
        measuredOverPredicted: r3(speedup / textbook),
        verifyRatio: r3(vr),
        predictedWithVerifyCost: r3(withVerify),
        measuredOverPredictedWithVerifyCost: r3(speedup / withVerify),
        draftMsPerToken: r3(spec.draftMsPerToken),
        verifyMsPerStep: r3(spec.verifyMsPerStep),
        acceptMsPerStep: r3(spec.acceptMsPerStep),
      });
    }
    return row;
  });

  console.log('\nconfig                               tok/s   speedup  alpha  tok/step  predicted  meas/pred  pred(verify)  meas/pred(verify)');
  for (const r of rows) {
    const f = (k: string, w: number, d = 2) => (typeof r[k] === 'number' ? (r[k] as number).toFixed(d) : '-').padStart(w);
    console.log(
      `${String(r.config).padEnd(36)} ${f('tokensPerSecond', 6, 1)} ${f('measuredSpeedup', 8)} ${f('alpha', 6)} ${f('tokensPerStep', 9)} ${f('predictedSpeedup', 10)} ${f('measuredOverPredicted', 10)} ${f('predictedWithVerifyCost', 13)} ${f('measuredOverPredictedWithVerifyCost', 18)}`,
    );
  }

  // ---- 4. per-op overhead
  const profiles = [await opProfile(draft, ctx, 1), await opProfile(lm.model, ctx, 1), await opProfile(lm.model, ctx, 5)];
  console.log('\nper-op overhead (one forward, context 64):');
  for (const p of profiles) {
    console.log(
      `  ${p.model} T=${p.newTokens}: ${p.wallMs.toFixed(2)} ms wall, ${p.kernels} kernels (${p.matmuls} matmuls ${p.matmulMs.toFixed(2)} ms); ` +
        `everything else ${p.nonMatmulMs.toFixed(2)} ms = ${p.nonMatmulPercent.toFixed(0)}% = ${p.nonMatmulUsPerOp.toFixed(1)} us per non-matmul op`,
    );
  }

  const out = {
    costs: {
      targetMsPerToken: r3(targetMsPerToken),
      cGenerateLoop: r3(cGenerateLoop),
      contextTokens: ctx,
      targetStepMs: r3(targetStepMs),
      draftStepMs: r3(draftStepMs),
      cForwardOnly: r3(draftStepMs / targetStepMs),
      verifyMs: Object.fromEntries(GAMMAS.map((g) => [g, r3(verifyMs[g])])),
      verifyRatio: Object.fromEntries(GAMMAS.map((g) => [g, r3(verifyRatio(g))])),
    },
    runs: rows,
    opOverhead: profiles,
    notes: [
      'speedup = target-only wall time / speculative wall time, same prompts, same tokens (greedy, prefill included); minimum over repeats',
      'predicted = (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1)) with alpha and c measured; c = draft ms per drafted token inside speculation / target-only ms per token',
      'predictedWithVerifyCost replaces the 1 (one target step to verify) by the measured cost of one target pass over gamma + 1 tokens',
      'prompt lookup: c = 0 (drafting is a scan of the context)',
      'these rows are the eager tfjs path (speculativeGenerate over LlamaModel + KV caches); on webgpu, `captured` holds batch-1 speculative decoding inside the engine on the captured path',
    ],
  };
  lm.model.dispose();
  draft.dispose();
  return out;
}

runBench(main);
