/**
 * Speculative decoding in the engine vs batch size (issue 6, item 4; lesson 4 "speculative
 * decoding", lesson 5 "continuous batching"). Not a test: it prints figures and writes
 * data/bench/spec-engine.json for the charts, and asserts no timing.
 *
 * vLLM's finding: speculation buys the most at batch 1, where a decode step is bound by reading
 * the weights and verifying gamma + 1 tokens costs about as much as decoding one. As the batch
 * grows the step turns compute-bound, verifying costs ~(gamma + 1)x a decode step, and the
 * benefit shrinks, then becomes a slowdown. Here: max(B, R) requests arrive at once (maxNumSeqs = B,
 * so the decode batch is B; R = 10 prompts on the captured path, else R = B), greedy, fixed output
 * length; for each B the plain engine and the speculative engine (draft model, several gamma) run
 * the same requests, interleaved per repeat.
 *
 * Figures per (B, config), from the engine's own step metrics:
 *   - decode tokens/s: tokens emitted by pure decode steps / their wall time (prefill excluded);
 *     speedup = speculative / plain at the same B
 *   - alpha, tokens per sequence-step, draft ms and verify ms per step, plain decode step ms
 *   - predicted speedup E(alpha, gamma) / (gamma c + v) with c = draft ms per drafted token /
 *     plain step ms and v = verify ms / plain step ms, both measured at this B: v is what grows
 *
 *   npm run bench:spec-engine [-- --full] [-- --smoke] [-- --tokens 32] [-- --repeats 3] [-- --backend wasm] [-- --out PATH]
 *     [-- --eager] [-- --format f32|bf16] [-- --model DIR] [-- --draft DIR] [-- --threads N|all] (wasm: CPU threads)
 *
 * With the webgpu backend target and draft both run on the captured path (lib/gpu: one GpuLlama
 * each, sized for the largest engine config here); --eager keeps the tfjs path. On the captured
 * path the sweep goes to batch 32 and gamma 1..6, with prompt lookup beside the draft model.
 * --smoke: batch 1 and 2, gamma 2, 3 tokens, one repeat (SwiftShader: use --model data/models/draft).
 * On the captured path the extra drafts shipped beside `draft` (data/models/draft-*) race in the same
 * rounds, against the same plain runs, unless --draft names one draft.
 */
import * as path from 'node:path';

import { initBackend, type BackendPreference } from '../lib/backend';
import { progressBar, writeBenchJson, benchFlags, runBench } from '../lib/bench/harness';
import { resolveEngineConfig, type EngineConfigInput, type SpeculativeEngineConfigInput } from '../lib/engine/config';
import { capturedOptionsFor, LLMEngine } from '../lib/engine/llmEngine';
import type { StepMetrics } from '../lib/engine/metrics';
import type { EngineModel } from '../lib/engine/pagedModel';
import { sharedGpu } from '../lib/gpu/device';
import type { WeightFormat } from '../lib/gpu/kernels';
import type { GpuLlama } from '../lib/gpu/llama';
import { loadGpuModel } from '../lib/gpu/load';
import { extraDrafts, loadModel, modelSource } from '../lib/model/load';
import { expectedTokensPerStep } from '../lib/spec/stats';
import { FREE_TEXT_PROMPTS, loadGolden, promptIds } from '../test/golden';

// ---- flags

const argv = process.argv.slice(2);
const flags = benchFlags(argv);
const flag = flags.value;
const full = argv.includes('--full');
const smoke = flags.has('smoke');
const EAGER = flags.has('eager');
const FORMAT = (flag('format') ?? 'f32') as WeightFormat;
const TARGET_DIR = flag('model') ?? 'data/models/target';
const DRAFT_DIR = flag('draft') ?? 'data/models/draft';
const OUT = flag('out') ?? path.join('data', 'bench', 'spec-engine.json');
// the plain engine stepping one step at a time (captured path), beside the default 'plain'
const PLAIN_NO_OVERLAP = 'plain, no overlap';
const BACKEND = (flag('backend') ?? 'auto') as BackendPreference;
// sizes are settled in main() once the path (captured or eager) is known
let TOKENS = 0;
let REPEATS = 0;
let BATCHES: number[] = [];
let GAMMAS: number[] = [];
let LOOKUP_GAMMAS: number[] = [];
const BLOCK_SIZE = 16;
// a pool with room for B sequences of the longest prompt, its new tokens and a block of slack
let MAX_PROMPT = 64;
const engineBlocks = (B: number) => Math.ceil((B * (MAX_PROMPT + TOKENS + 16)) / BLOCK_SIZE);

const r3 = (x: number) => Math.round(x * 1000) / 1000;

// ---- one run

interface RunFigures {
  /** output tokens / wall ms of the whole run (prefill included), per second */
  e2eTokensPerSecond: number;
  /** tokens emitted by pure decode steps / their wall time, per second */
  decodeTokensPerSecond: number;
  decodeSteps: number;
  /** mean wall ms of a pure decode step */
  decodeStepMs: number;
  /** speculative only */
  alpha?: number;
  tokensPerSeqStep?: number;
  draftMsPerStep?: number;
  verifyMsPerStep?: number;
  meanGamma?: number;
}

async function runOnce(model: EngineModel, prompts: number[][], config: EngineConfigInput): Promise<RunFigures> {
  const engine = new LLMEngine(model, null, config);
  try {
    for (const p of prompts) engine.addRequest(p, { temperature: 0, maxTokens: TOKENS, ignoreEos: true });
    const t0 = performance.now();
    let tokens = 0;
    while (engine.hasUnfinished()) for (const out of await engine.step()) tokens += out.outputs[0].tokenIds.length;
    const wall = performance.now() - t0;
    // pure decode steps: no prefill chunk in them
    const decode = engine.steps.filter((s: StepMetrics) => s.prefills.length === 0 && s.decodes.length > 0);
    const emitted = decode.reduce((a, s) => a + (s.spec ? s.spec.emitted : s.decodes.length), 0);
    const decodeMs = decode.reduce((a, s) => a + s.wallMs, 0);
    const fig: RunFigures = {
      e2eTokensPerSecond: (1000 * tokens) / wall,
      decodeTokensPerSecond: (1000 * emitted) / decodeMs,
      decodeSteps: decode.length,
      decodeStepMs: decodeMs / Math.max(1, decode.length),
    };
    if (engine.specStats) {
      const sum = engine.specStats.summary();
      const spec = decode.filter((s) => s.spec);
      const seqSteps = spec.reduce((a, s) => a + s.spec!.numSeqs, 0);
      Object.assign(fig, {
        alpha: sum.alpha,
        meanGamma: sum.meanGamma,
        tokensPerSeqStep: spec.reduce((a, s) => a + s.spec!.emitted, 0) / Math.max(1, seqSteps),
        draftMsPerStep: spec.reduce((a, s) => a + s.spec!.draftMs, 0) / Math.max(1, spec.length),
        verifyMsPerStep: spec.reduce((a, s) => a + s.spec!.verifyMs, 0) / Math.max(1, spec.length),
      });
    }
    return fig;
  } finally {
    engine.dispose();
  }
}

// ---- main

async function main(): Promise<void> {
  const backend = await initBackend({ prefer: BACKEND, wasmThreads: flags.threads(), wasmFma: flags.fma() });
  const captured = backend.name === 'webgpu' && !EAGER;
  TOKENS = Number(flag('tokens') ?? (smoke ? 3 : full || captured ? 64 : 32));
  REPEATS = Number(flag('repeats') ?? (smoke ? 1 : 3));
  BATCHES = smoke ? [1, 2] : full || captured ? [1, 2, 4, 8, 16, 32] : [1, 2, 4, 8, 16];
  GAMMAS = smoke ? [2] : captured ? [1, 2, 3, 4, 6] : full ? [1, 2, 4, 6] : [2, 4];
  LOOKUP_GAMMAS = smoke ? [] : captured ? [4] : [];
  console.log(
    `backend: ${backend.name} (${backend.reason}); ${captured ? `captured path (${FORMAT} weights)` : 'eager tfjs'}; ${TOKENS} tokens per request, batches ${BATCHES.join(', ')}, gammas ${GAMMAS.join(', ')}, ${REPEATS} repeats`,
  );
  // free text: golden prompts cut from test-split chapters. At batch B, max(B, requests) requests
  // through maxNumSeqs = B seats (the decode batch stays B). On the captured path ten prompts of 16-256
  // tokens, every one at every batch (acceptance varies a lot from prompt to prompt; batch 1 on one
  // prompt would be a sample of one); eager, three, and B requests.
  const golden = loadGolden();
  const promptNames = captured && !smoke ? FREE_TEXT_PROMPTS : ['test-16', 'test-32', 'test-64'];
  const free = promptIds(golden, promptNames).map((ids) => (smoke ? ids.slice(0, 6) : ids));
  const requestsAt = (B: number) => (captured && !smoke ? Math.max(B, free.length) : B);
  MAX_PROMPT = Math.max(64, ...free.map((p) => p.length));
  let target: EngineModel;
  let draft: EngineModel;
  let extras: { name: string; model: GpuLlama }[] = [];
  let adapter: unknown = null;
  if (captured) {
    // both pools are sized from the same (largest) engine config; the engine checks them
    const ctx = await sharedGpu();
    adapter = ctx.info;
    const Bmax = Math.max(...BATCHES);
    const sizes = capturedOptionsFor(resolveEngineConfig({ maxNumSeqs: Bmax, blockSize: BLOCK_SIZE, numBlocks: engineBlocks(Bmax) }, modelSource(TARGET_DIR).config.maxPositions));
    target = await loadGpuModel(ctx, TARGET_DIR, { ...sizes, format: FORMAT });
    draft = await loadGpuModel(ctx, DRAFT_DIR, { ...sizes, format: FORMAT });
    if (!flag('draft') && !smoke)
      extras = await Promise.all(extraDrafts().map(async (name) => ({ name, model: await loadGpuModel(ctx, path.join('data/models', name), { ...sizes, format: FORMAT }) })));
    const extraNote = extras.map((e) => `, ${e.name} ${e.model.stats.dispatchesPerStep}`).join('');
    console.log(`captured on ${ctx.info.adapter}${ctx.info.software ? ' (software: correctness only, not timing)' : ''}: target ${target.stats.dispatchesPerStep} dispatches/step, draft ${draft.stats.dispatchesPerStep}${extraNote}`);
  } else {
    target = await loadModel(TARGET_DIR);
    draft = await loadModel(DRAFT_DIR);
  }

  type Config = { label: string; gamma: number | null; draftModel?: string; speculative: SpeculativeEngineConfigInput | null; overlapSteps?: false };
  const configs: Config[] = [
    { label: 'plain', gamma: null, speculative: null },
    // (captured) the plain engine with overlapped steps off: speculative steps never overlap, so
    // part of what speculation bought before is what overlapping buys plain decoding now
    ...(captured ? [{ label: PLAIN_NO_OVERLAP, gamma: null, speculative: null, overlapSteps: false as const }] : []),
    ...GAMMAS.map((g) => ({ label: `draft gamma=${g}`, gamma: g, draftModel: path.basename(DRAFT_DIR), speculative: { draft, gamma: g } })),
    ...extras.flatMap((e) => GAMMAS.map((g) => ({ label: `${e.name} gamma=${g}`, gamma: g, draftModel: e.name, speculative: { draft: e.model, gamma: g } }))),
    ...LOOKUP_GAMMAS.map((g) => ({ label: `lookup gamma=${g}`, gamma: g, speculative: { draft: 'prompt-lookup' as const, gamma: g } })),
  ];
  const runs: { batch: number; config: Config; figs: RunFigures[] }[] = [];
  for (const B of BATCHES) for (const config of configs) runs.push({ batch: B, config, figs: [] });

  // warm-up (untimed), then REPEATS rounds with every configuration once per round
  const bar = progressBar(runs.length * (REPEATS + 1), 'spec-engine');
  for (let r = 0; r <= REPEATS; r++) {
    for (const run of runs) {
      const prompts = Array.from({ length: requestsAt(run.batch) }, (_, i) => free[i % free.length]);
      const engineConfig: EngineConfigInput = { maxNumSeqs: run.batch, blockSize: BLOCK_SIZE, numBlocks: engineBlocks(run.batch), speculative: run.config.speculative, overlapSteps: run.config.overlapSteps };
      const fig = await runOnce(target, prompts, engineConfig);
      if (r > 0) run.figs.push(fig);
      bar.tick(1, `B=${run.batch} ${run.config.label}`);
    }
  }
  bar.done();

  // best repeat (highest decode throughput): the estimator least hurt by a busy machine
  const best = (figs: RunFigures[]) => figs.reduce((a, b) => (b.decodeTokensPerSecond > a.decodeTokensPerSecond ? b : a));
  const rows = runs.map((run) => {
    const fig = best(run.figs);
    const plain = best(runs.find((x) => x.batch === run.batch && x.config.label === 'plain')!.figs);
    const row: Record<string, unknown> = {
      batch: run.batch,
      config: run.config.label,
      ...(run.config.draftModel ? { draftModel: run.config.draftModel } : {}),
      gamma: run.config.gamma,
      decodeTokensPerSecond: r3(fig.decodeTokensPerSecond),
      e2eTokensPerSecond: r3(fig.e2eTokensPerSecond),
      speedup: r3(fig.decodeTokensPerSecond / plain.decodeTokensPerSecond),
      e2eSpeedup: r3(fig.e2eTokensPerSecond / plain.e2eTokensPerSecond),
      decodeSteps: fig.decodeSteps,
      decodeStepMs: r3(fig.decodeStepMs),
    };
    if (fig.alpha !== undefined && run.config.gamma !== null) {
      const g = run.config.gamma;
      const c = fig.draftMsPerStep! / g / plain.decodeStepMs; // ~0 for prompt lookup
      const v = fig.verifyMsPerStep! / plain.decodeStepMs;
      Object.assign(row, {
        alpha: r3(fig.alpha),
        tokensPerSeqStep: r3(fig.tokensPerSeqStep!),
        draftMsPerStep: r3(fig.draftMsPerStep!),
        verifyMsPerStep: r3(fig.verifyMsPerStep!),
        c: r3(c),
        verifyRatio: r3(v),
        predictedSpeedup: r3(expectedTokensPerStep(fig.alpha, g) / (g * c + v)),
      });
    }
    return row;
  });

  // best gamma per batch (draft model): the issue's goal is >= 2x at batch 1 (measured, not asserted)
  const bestAt = (B: number, model?: string) => {
    const spec = rows.filter((r) => r.batch === B && r.draftModel !== undefined && (model === undefined || r.draftModel === model));
    const b = spec.reduce((a, r) => ((r.speedup as number) > (a.speedup as number) ? r : a), spec[0]);
    return { batch: B, draftModel: b?.draftModel ?? null, gamma: b?.gamma ?? null, speedup: b?.speedup ?? null, decodeTokensPerSecond: b?.decodeTokensPerSecond ?? null };
  };
  const bestRows = BATCHES.map((B) => bestAt(B));
  // the same best rows against the plain engine stepping one step at a time (captured only)
  const bestVsNoOverlap = rows
    .filter((r) => r.config === PLAIN_NO_OVERLAP)
    .map((p) => {
      const best = bestRows.find((x) => x.batch === p.batch)!.decodeTokensPerSecond as number | null;
      const plain = p.decodeTokensPerSecond as number;
      return { batch: p.batch as number, plainNoOverlapDecodeTokensPerSecond: plain, speedup: best === null ? null : r3(best / plain) };
    });
  if (bestVsNoOverlap.length > 0)
    console.log(`\nbest speculative row over the plain engine without overlapped steps: ${bestVsNoOverlap.map((b) => `B=${b.batch}: ${b.speedup ?? '-'}x`).join(', ')}`);
  // each draft model's own best gamma per batch
  const draftModels = [...new Set(configs.flatMap((c) => (c.draftModel ? [c.draftModel] : [])))];
  const bestByDraft = Object.fromEntries(draftModels.map((m) => [m, BATCHES.map((B) => bestAt(B, m))]));
  for (const [m, bs] of Object.entries(bestByDraft))
    console.log(`\nbest gamma (${m}) per batch: ` + bs.map((b) => `B=${b.batch}: gamma ${b.gamma} ${typeof b.speedup === 'number' ? b.speedup.toFixed(2) : '-'}x`).join(', ') + ' (goal at batch 1: >= 2x)');
  console.log('\n    B  config                  decode tok/s  speedup  e2e speedup  alpha  tok/seq-step  step ms  draft ms  verify ms  c      v(erify)  predicted');
  for (const r of rows) {
    const f = (k: string, w: number, d = 2) => (typeof r[k] === 'number' ? (r[k] as number).toFixed(d) : '-').padStart(w);
    console.log(
      `${String(r.batch).padStart(5)}  ${String(r.config).padEnd(22)} ${f('decodeTokensPerSecond', 13, 1)} ${f('speedup', 8)} ${f('e2eSpeedup', 12)} ${f('alpha', 6)} ${f('tokensPerSeqStep', 13)} ${f('decodeStepMs', 8)} ${f('draftMsPerStep', 9)} ${f('verifyMsPerStep', 10)} ${f('c', 6, 3)} ${f('verifyRatio', 9)} ${f('predictedSpeedup', 10)}`,
    );
  }

  const file = writeBenchJson(
    path.basename(OUT, '.json'),
    {
      backend: backend.name,
      path: captured ? 'captured' : 'eager',
      weights: captured ? FORMAT : 'eager-fp32',
      adapter,
      settings: { tokens: TOKENS, repeats: REPEATS, batches: BATCHES, gammas: GAMMAS, lookupGammas: LOOKUP_GAMMAS, full, smoke, greedy: true, drafter: 'draft model', target: TARGET_DIR, draft: DRAFT_DIR, extraDrafts: extras.map((e) => e.name), prompts: promptNames, requests: BATCHES.map(requestsAt) },
      runs: rows,
      best: bestRows,
      bestVsPlainWithoutOverlap: bestVsNoOverlap,
      bestByDraft,
      notes: [
        'max(B, requests) requests arrive at once (settings.requests), maxNumSeqs = B: the decode batch is B (it shrinks only at the very end)',
        'speedup = speculative / plain decode tokens per second at the same B; pure decode steps only (no prefill chunk in the step); best of repeats',
        'e2eSpeedup: whole run, prefill included',
        'predicted = E(alpha, gamma) / (gamma c + v): c = draft ms per drafted token / plain decode step ms, v = verify ms / plain decode step ms, measured at this B',
        'best: per batch, the draft model and gamma with the highest speedup (issue 11 goal: >= 2x at batch 1 on the captured path); bestByDraft: each draft model\'s',
        'rows `<name> gamma=k` race an extra draft shipped beside `draft` (data/models/<name>) in the same rounds, against the same plain runs',
        ...(captured
          ? [
              "captured path: 'plain' overlaps its steps (overlapSteps, the engine's default: step k+1 is submitted before step k's picks are read); speculative steps cannot (the next draft starts from the verdict), and 'plain, no overlap' is the plain engine one step at a time; bestVsPlainWithoutOverlap sets the best rows against it",
              'captured path: target and draft are GpuLlama models; greedy rows draft and verify in one go (the gamma draft steps and the verify submitted back to back, the drafts copied on the GPU, one readback), so c = 0 and v is the whole speculative step',
            ]
          : []),
      ],
    },
    { dir: path.dirname(OUT) },
  );
  console.log(`\nwrote ${file}`);
  target.dispose();
  draft.dispose();
  for (const e of extras) e.model.dispose();
}

runBench(main);
