/**
 * Peers benchmark (issue 11, item 5; the lesson that compares runtimes reads its JSON). Not a test:
 * it prints figures and writes JSON, and asserts no timing. Same weights, same decode task
 * (32-token prompt, greedy, KV cache; decode steps timed apart from the prefill):
 *
 *   CPU (default):  ours on wasm (batch 1 and 8) vs llama.cpp through node-llama-cpp on GGUF exports
 *                   of the same weights (F32 and F16; 1 thread and all cores; batch 1)
 *                   -> data/bench/peers.json
 *   GPU:            ours on webgpu (every variant of oursVariants: tfjs eager now, the captured step
 *                   when it lands) at batch 1/8/32, plus HF transformers measured on the same machine
 *                   by scripts/peers/hf_peers.py and merged with --hf
 *                   -> data/bench/webgpu/peers-webgpu.json
 *
 *   npm run bench:peers [-- --quick|--full]
 *   python3 scripts/peers/hf_peers.py --out hf-peers.json          (on the GPU machine, first)
 *   npm run bench:peers -- --backend webgpu --hf hf-peers.json
 *
 * Flags: --backend wasm|webgpu|... (default wasm); --quick (default: 32 decode steps, random-125m at
 * batch 1 only) or --full (128 steps, every cell); --steps N; --prompt-tokens 32; --model DIR
 * (default data/models/target); --presets random-125m[,..] or none (CPU default random-125m, GPU
 * random-1b); --batches 1,8 (GPU: 1,8,32); --threads 1,all; --gguf F32,F16; --no-llamacpp;
 * --no-fma (our wasm kernels without fused multiply-adds); --hf FILE; --variants eager,eager-ops,.. (ours: only these, in this order; default all); --rounds N
 * (every cell measured N times in turn, its row over all rounds' steps; CPU default 3, GPU 1); --out PATH.
 * Paths resolve from the working directory, never the bundle.
 * A cell that fails or is skipped stays in the JSON with status and reason; numbers are only measured.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { initBackend, type BackendInfo, type BackendPreference } from '../lib/backend';
import { wasmThreadsRegistered } from '../lib/wasmThreads';
import { benchFlags, progressBar, writeBenchJson, runBench } from '../lib/bench/harness';
import { measureBandwidth } from '../lib/bench/roofline';
import { exportGGUF, llamaToGGUF, writeGGUF } from '../lib/formats/gguf';
import { ContiguousKVCache } from '../lib/kv/contiguous';
import { configToHF, llamaSizes } from '../lib/model/config';
import type { CpuWeightFormat, LlamaModel } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';
import { useWasmGemv } from '../lib/model/kernels/wasmGemv';
import { useWasmDecodeStep } from '../lib/model/kernels/wasmDecode';
import { loadPreset, randomWeights } from '../lib/model/presets';
import type { HostTensor } from '../lib/formats/safetensors';
import { llamaTensorSpecs } from '../lib/model/weights';
import { argmax } from '../lib/generate/sampling';
import { loadTokenizer } from '../lib/generate/tokenizer';
import { sharedGpu } from '../lib/gpu/device';
import type { WeightFormat } from '../lib/gpu/kernels';
import type { GpuLlama } from '../lib/gpu/llama';
import { loadGpuModel } from '../lib/gpu/load';

import type { Llama, Token } from 'node-llama-cpp' with { 'resolution-mode': 'import' };

// ---- flags

const argv = process.argv.slice(2);
const flags = benchFlags(argv);

function list(name: string, fallback: string[]): string[] {
  const v = flags.value(name);
  return v === undefined
    ? fallback
    : v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
}

function intList(name: string, fallback: number[]): number[] {
  const out = list(name, fallback.map(String)).map(Number);
  if (!out.length || out.some((n) => !Number.isInteger(n) || n < 1))
    throw new Error(`--${name} must be positive integers separated by commas`);
  return out;
}

interface Options {
  backend: BackendPreference;
  gpu: boolean;
  full: boolean;
  out: string;
  model: string;
  presets: string[];
  batches: number[];
  /** batches for the presets (a wide model at batch 32 on wasm takes long) */
  presetBatches: number[];
  steps: number;
  promptTokens: number;
  threads: ('all' | number)[];
  ggufTypes: ('F32' | 'F16')[];
  llamacpp: boolean;
  hf: string | null;
  /** our variants to run (by name); null = all */
  variants: string[] | null;
  /** every cell measured this many times, rounds in turn (a busy moment hits one round of each) */
  rounds: number;
}

function parseOptions(): Options {
  if (flags.has('quick') && flags.has('full')) throw new Error('give --quick or --full, not both');
  const full = flags.has('full');
  const backend = (flags.value('backend') ?? 'wasm') as BackendPreference;
  const gpu = backend === 'webgpu';
  const presets = list('presets', [gpu ? 'random-1b' : 'random-125m']).filter((p) => p !== 'none');
  const batches = intList('batches', gpu ? [1, 8, 32] : [1, 8]);
  const ggufTypes = list('gguf', ['F32', 'F16']).map((t) => t.toUpperCase());
  for (const t of ggufTypes) if (t !== 'F32' && t !== 'F16') throw new Error(`--gguf takes F32,F16; got ${t}`);
  const threads = list('threads', ['1', 'all']).map((t) => (t === 'all' ? 'all' : Number(t)));
  for (const t of threads)
    if (t !== 'all' && !(Number.isInteger(t) && t >= 1)) throw new Error(`--threads takes positive integers or 'all'`);
  return {
    backend,
    gpu,
    full,
    out: path.resolve(
      flags.value('out') ?? (gpu ? path.join('data', 'bench', 'webgpu', 'peers-webgpu.json') : path.join('data', 'bench', 'peers.json')),
    ),
    model: path.resolve(flags.value('model') ?? path.join('data', 'models', 'target')),
    presets,
    batches,
    presetBatches: gpu || full ? batches : [1],
    steps: intList('steps', [full || gpu ? 128 : 32])[0],
    promptTokens: intList('prompt-tokens', [32])[0],
    threads,
    ggufTypes: ggufTypes as ('F32' | 'F16')[],
    llamacpp: !gpu && !flags.has('no-llamacpp'),
    hf: flags.value('hf') ?? null,
    variants: flags.value('variants') === undefined ? null : list('variants', []),
    rounds: intList('rounds', [gpu ? 1 : 3])[0],
  };
}

// ---- result schema (what the JSON holds under "result")

/** One measured (or failed) cell: a peer decoding a batch of prompts. */
interface PeerRow {
  peer: 'ours' | 'llama.cpp' | 'hf';
  /** ours: 'eager' (tfjs ops), later 'captured'; llama.cpp: 'cpu'; hf: 'eager' | 'compiled' */
  variant: string;
  model: string;
  /** ours: fp32, or bf16 (wasm: cpuWeights 'bf16'; webgpu: the captured step's); llama.cpp: the GGUF type F32 | F16; hf: fp32 | bf16 */
  weights: string;
  /** where it ran: wasm / webgpu / 'llama.cpp CPU' / 'cuda' */
  device: string;
  /** CPU threads (llama.cpp; ours on wasm: the backend's); null on a GPU */
  threads: number | null;
  batch: number;
  promptTokens: number;
  /** decode steps timed (each makes one token per row) */
  steps: number;
  status: 'ok' | 'error' | 'skipped';
  note: string | null;
  prefillMs: number | null;
  stepMsMedian: number | null;
  stepMsMean: number | null;
  stepMsP10: number | null;
  stepMsP90: number | null;
  /** batch x 1000 / median step: robust to other processes stealing the CPU */
  tokPerS: number | null;
  /** batch x 1000 / mean step */
  tokPerSMean: number | null;
}

interface ModelFacts {
  name: string;
  source: string;
  params: number;
  /** fp32 bytes of all weights */
  weightBytes: number;
}

interface PeersResult {
  mode: 'quick' | 'full';
  backend: { name: string; reason: string };
  load: { cores: number; start: number[]; end: number[] };
  settings: { promptTokens: number; steps: number; batches: number[]; presetBatches: number[]; greedy: true; kvCache: string; rounds?: number };
  models: ModelFacts[];
  rows: PeerRow[];
  /** llama.cpp facts (version, CPU math cores); null when it did not run */
  llamacpp: { nodeLlamaCpp: string; cpuMathCores: number; kvCache: string; flashAttention: boolean } | null;
  /** the JSON of scripts/peers/hf_peers.py from the same machine, as written (--hf); null without */
  hf: unknown;
  /** ours / peer decode tok/s at equal model and batch */
  comparisons: { model: string; batch: number; ours: string; peer: string; ratio: number }[];
  /** CPU: the single-thread read rate (bench:core's roof: best of measureBandwidth's GEMVs over a
   * matrix larger than the caches, XNNPACK on one thread); null on a GPU or when not measured */
  readRate: { bestGBps: number; medianGBps: number; kernel: string } | null;
  /** batch-1 rows of ours against the read roof: weight bytes per token / readRate.bestGBps */
  readRoofs: ReadRoofRow[];
  notes: string[];
}

/** One of our batch-1 decode rows against the read roof (issue 15: random-125m >= 0.85x). */
interface ReadRoofRow {
  model: string;
  variant: string;
  weights: string;
  threads: number | null;
  /** weight bytes one decode step reads (fp32 4 bytes a weight, bf16 2; KV bytes not counted) */
  weightBytesPerToken: number;
  /** weightBytesPerToken / the read rate: the step time of a decode that only reads its weights once */
  roofMs: number;
  stepMsMedian: number;
  /** roofMs / ours' median step = ours tok/s / the roof's (1.0 = at the roof) */
  ratio: number;
}

// ---- timing helpers

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

// nearest rank
function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** What one decode run measured: the prefill, then each decode step's wall time. */
interface DecodeTiming {
  prefillMs: number;
  stepMs: number[];
}

type RowKey = Pick<PeerRow, 'peer' | 'variant' | 'model' | 'weights' | 'device' | 'threads' | 'batch' | 'promptTokens' | 'steps'>;

function okRow(key: RowKey, t: DecodeTiming, note: string | null = null): PeerRow {
  const med = median(t.stepMs);
  const mean = t.stepMs.reduce((s, v) => s + v, 0) / t.stepMs.length;
  return {
    ...key,
    status: 'ok',
    note,
    prefillMs: t.prefillMs,
    stepMsMedian: med,
    stepMsMean: mean,
    stepMsP10: percentile(t.stepMs, 0.1),
    stepMsP90: percentile(t.stepMs, 0.9),
    tokPerS: (key.batch * 1000) / med,
    tokPerSMean: (key.batch * 1000) / mean,
  };
}

/** The rounds of one cell as one timing: every round's steps, the median round's prefill. */
function mergeRuns(runs: DecodeTiming[]): DecodeTiming {
  return { prefillMs: median(runs.map((r) => r.prefillMs)), stepMs: runs.flatMap((r) => r.stepMs) };
}

function failedRow(key: RowKey, status: 'error' | 'skipped', note: string): PeerRow {
  return {
    ...key,
    status,
    note,
    prefillMs: null,
    stepMsMedian: null,
    stepMsMean: null,
    stepMsP10: null,
    stepMsP90: null,
    tokPerS: null,
    tokPerSMean: null,
  };
}

// ---- ours: the variants of our runtime

/**
 * One way of running our model's decode. `decode` prefills `prompts` (one row each), then makes
 * `steps` greedy decode steps and returns each step's wall time (logits readback and argmax
 * included, as generate() does them).
 */
export interface DecodeRunner {
  /** 'eager' (one tfjs op per kernel), 'captured' (lib/gpu: one recorded step) */
  name: string;
  description: string;
  /** weight storage (default fp32) */
  weights?: string;
  /** CPU threads it runs on (default: none recorded, one on wasm) */
  threads?: number;
  decode(prompts: number[][], steps: number, onStep?: () => void): Promise<DecodeTiming>;
  /** free what the runner built (the captured model's GPU buffers) */
  dispose?(): void;
}

/** The greedy token of each row of logits [B, 1, V]. */
function argmaxRows(logits: Float32Array, B: number, V: number): number[] {
  return Array.from({ length: B }, (_, b) => argmax(logits.subarray(b * V, (b + 1) * V)));
}

/**
 * The tfjs path: model.forward on a contiguous KV cache, logits read back each step. On wasm, a
 * decode step runs each layer as one call into wasm (the fused decode step) unless `fused` is false
 * (then ~15 tfjs kernels per layer, dispatched one by one), and its matmuls go to the AssemblyScript
 * GEMV unless `gemv` is false (XNNPACK's matMul, op by op).
 */
function eagerRunner(model: LlamaModel, name = 'eager', gemv = true, fused = true, weights?: string): DecodeRunner {
  const matmul = gemv ? 'decode matmuls in the AssemblyScript GEMV on wasm' : "decode matmuls in XNNPACK's matMul";
  const step =
    gemv && fused ? 'on wasm a decode step is one call into wasm per layer (fused decode step)' : 'tfjs ops dispatched one by one';
  return {
    name,
    weights,
    description: `LlamaModel.forward, contiguous KV cache; ${step}; ${matmul}; logits read back, argmax in JS`,
    async decode(prompts, steps, onStep) {
      useWasmGemv(gemv);
      useWasmDecodeStep(fused);
      try {
        return await eagerDecode(model, prompts, steps, onStep);
      } finally {
        useWasmGemv(true);
        useWasmDecodeStep(true);
      }
    },
  };
}

/**
 * eagerRunner over a model of its own, loaded on first use: bf16 weights (cpuWeights 'bf16', rounded
 * and packed two per int32, widened in the GEMV's registers: half the bytes) and/or on a wasm
 * backend of `threads` threads (main() switches the backend to them before it runs).
 */
function eagerOwnRunner(source: string, weights: CpuWeightFormat, threads: number, fused = true): DecodeRunner {
  let m: LlamaModel | null = null;
  const parts = [
    weights === 'bf16' ? 'weights rounded to bf16 and packed two per int32, widened inside the GEMV' : null,
    threads > 1 ? `tfjs-wasm's threaded build on ${threads} threads: the fused decode step and XNNPACK split over them` : null,
    threads === 1 && !fused ? 'tfjs ops dispatched one by one (fused decode step off)' : null,
  ];
  return {
    name: ['eager', weights === 'bf16' ? 'bf16' : null, threads > 1 ? `${threads}t` : null, fused ? null : 'ops'].filter(Boolean).join('-'),
    weights: weights === 'bf16' ? 'bf16' : 'fp32',
    threads,
    description: `as eager, ${parts.filter(Boolean).join('; ')}`,
    async decode(prompts, steps, onStep) {
      m ??= await loadModel(source, { cpuWeights: weights });
      useWasmDecodeStep(fused);
      try {
        return await eagerDecode(m, prompts, steps, onStep);
      } finally {
        useWasmDecodeStep(true);
      }
    },
    dispose() {
      m?.dispose();
      m = null;
    },
  };
}

async function eagerDecode(model: LlamaModel, prompts: number[][], steps: number, onStep?: () => void): Promise<DecodeTiming> {
  const B = prompts.length;
  const V = model.config.vocabSize;
  const cache = new ContiguousKVCache(model.kvShape, B);
  try {
    const t0 = performance.now();
    const first = model.forward(prompts, cache); // [B, 1, V]
    let tokens = argmaxRows((await first.data()) as Float32Array, B, V);
    first.dispose();
    const prefillMs = performance.now() - t0;
    const stepMs: number[] = [];
    for (let i = 0; i < steps; i++) {
      const s0 = performance.now();
      const logits = model.forward(
        tokens.map((t) => [t]),
        cache,
      ); // [B, 1, V]
      tokens = argmaxRows((await logits.data()) as Float32Array, B, V);
      logits.dispose();
      stepMs.push(performance.now() - s0);
      onStep?.();
    }
    return { prefillMs, stepMs };
  } finally {
    cache.dispose();
  }
}

/**
 * Our runtime's variants on this backend, each measured at every batch. The captured WebGPU step
 * (lib/gpu) joins here: push `{ name: 'captured', description, decode }` when the backend is webgpu.
 */
export function oursVariants(backend: string, model: LlamaModel, source: string): DecodeRunner[] {
  const variants = [eagerRunner(model)];
  if (backend === 'wasm') {
    variants.push(
      eagerRunner(model, 'eager-ops', true, false),
      eagerRunner(model, 'eager-xnnpack', false, false),
      eagerOwnRunner(source, 'bf16', 1),
      eagerOwnRunner(source, 'bf16', 1, false),
    );
    const cores = os.cpus().length;
    if (cores > 1) variants.push(eagerOwnRunner(source, 'f32', cores), eagerOwnRunner(source, 'bf16', cores));
  }
  if (backend === 'webgpu') variants.push(capturedRunner(source, 'f32'), capturedRunner(source, 'bf16'));
  return variants;
}

/**
 * The captured WebGPU step (lib/gpu): one command buffer per step, argmax on the GPU, the ids of
 * step k fed to step k+1 without leaving the GPU (read back one step late). Built on first use,
 * sized for the largest batch it sees.
 */
function capturedRunner(source: string, format: WeightFormat): DecodeRunner {
  let m: GpuLlama | null = null;
  return {
    name: format === 'f32' ? 'captured' : 'captured-bf16',
    weights: format === 'f32' ? 'fp32' : 'bf16',
    description: `captured WebGPU step (lib/gpu: 6L+3 fused dispatches in one command buffer, ${format} weights); greedy ids stay on the GPU`,
    async decode(prompts, steps, onStep) {
      const B = prompts.length;
      const tokens = prompts.reduce((a, p) => a + p.length, 0);
      if (!m || m.maxSeqs < B || m.maxTokens < tokens) {
        m?.dispose();
        m = await loadGpuModel(await sharedGpu(), source, { format, maxSeqs: Math.max(B, 32), maxTokens: Math.max(tokens, 32 * 32) });
      }
      const r = await m.greedyGenerate(prompts, steps, () => onStep?.());
      return { prefillMs: r.prefillMs, stepMs: r.stepMs };
    },
    dispose() {
      m?.dispose();
      m = null;
    },
  };
}

function unknownVariant(name: string, all: DecodeRunner[]): never {
  throw new Error(`--variants: no variant '${name}' here (${all.map((r) => r.name).join(', ')})`);
}

// ---- llama.cpp (node-llama-cpp, CPU)

// a specifier held in a variable: bundlers (the GPU pack's esbuild) leave it alone, so the GPU bundle,
// which never runs llama.cpp, does not try to pull in node-llama-cpp's native packages
const NODE_LLAMA_CPP = 'node-llama-cpp';

/** llama.cpp's CPU build, as lib/oracle/llamacpp.ts loads it (never compiled or downloaded at run time). */
async function loadLlamaCpp(): Promise<Llama> {
  const { getLlama } = (await import(NODE_LLAMA_CPP)) as typeof import('node-llama-cpp', { with: { 'resolution-mode': 'import' } });
  return getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
}

/** GGUF of a model directory (exported on demand to data/gguf/, as `npm run data:gguf` does). */
function ggufOfDir(dir: string, name: string, type: 'F32' | 'F16'): string {
  const file = path.resolve('data', 'gguf', `${name}-${type.toLowerCase()}.gguf`);
  if (!fs.existsSync(file)) {
    console.error(`exporting ${path.relative(process.cwd(), file)}...`);
    exportGGUF(dir, file, { type });
  }
  return file;
}

/**
 * GGUF of a random-weight preset: the same weights ours generates from the seed, with the target's
 * byte-level BPE tokenizer (the export pads the vocabulary to the preset's size; token ids are all
 * a speed test needs).
 */
function ggufOfPreset(preset: string, tokenizerDir: string, type: 'F32' | 'F16'): string {
  const file = path.resolve('data', 'gguf', `${preset}-${type.toLowerCase()}.gguf`);
  if (fs.existsSync(file)) return file;
  console.error(`exporting ${path.relative(process.cwd(), file)} (weights generated from the seed)...`);
  const p = loadPreset(preset);
  const source = randomWeights(p.config, p.init.seed, p.init.std);
  const weights = new Map<string, HostTensor>(llamaTensorSpecs(p.config).map((s) => [s.name, source.get(s.name)]));
  const tokenizer = JSON.parse(fs.readFileSync(path.join(tokenizerDir, 'tokenizer.json'), 'utf8')) as Parameters<typeof llamaToGGUF>[2];
  const hf = configToHF(p.config) as unknown as Parameters<typeof llamaToGGUF>[0];
  const { metadata, tensors } = llamaToGGUF(hf, weights, tokenizer, { name: preset, type });
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, writeGGUF(metadata, tensors));
  return file;
}

/**
 * Batch-1 greedy decode through node-llama-cpp: evaluate() yields one token per decode; the first
 * yield comes after the prefill, each later one after one decode step (the JS of node-llama-cpp's
 * generator included, as a user of it pays).
 */
async function llamaCppDecode(
  llama: Llama,
  modelPath: string,
  threads: number,
  prompt: number[],
  steps: number,
  label: string,
): Promise<DecodeTiming> {
  const model = await llama.loadModel({ modelPath });
  const size = Math.max(256, prompt.length + steps + 8);
  const context = await model.createContext({
    contextSize: size,
    batchSize: size,
    threads,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  });
  try {
    const sequence = context.getSequence();
    const run = async (n: number, bar?: { tick(): void }): Promise<DecodeTiming> => {
      await sequence.clearHistory();
      const t0 = performance.now();
      const stamps: number[] = [];
      for await (const token of sequence.evaluate(prompt as Token[], { temperature: 0, yieldEogToken: true })) {
        void token;
        stamps.push(performance.now());
        bar?.tick();
        if (stamps.length >= n + 1) break;
      }
      const stepMs = stamps.slice(1).map((t, i) => t - stamps[i]);
      return { prefillMs: stamps[0] - t0, stepMs };
    };
    await run(Math.min(8, steps)); // warm-up: first-touch of the weights, thread pool start
    const bar = progressBar(steps + 1, label);
    const t = await run(steps, bar);
    bar.done(`${((1000 / median(t.stepMs)) | 0).toString()} tok/s`);
    return t;
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

// ---- HF merge (GPU)

interface HfRecord {
  name: string;
  machine?: { gpu?: string };
  settings?: { promptTokens?: number; newTokens?: number };
  rows: {
    model: string;
    mode: string;
    dtype: string;
    batch: number;
    status: string;
    error: string | null;
    decodeMsPerStep: number | null;
    decodeTokPerS: number | null;
    streamerStepMsMedian: number | null;
    streamerStepMsP10: number | null;
    streamerStepMsP90: number | null;
    prefillMs: number | null;
  }[];
}

// the 1B in hf_peers.py is our random-1b preset's shapes (weights differ: random either way)
const HF_MODEL_NAMES: Record<string, string> = { target: 'target', 'tinyllama-1b': 'random-1b' };

function hfRows(hf: HfRecord): PeerRow[] {
  return hf.rows.map((r) => {
    const key: RowKey = {
      peer: 'hf',
      variant: r.mode,
      model: HF_MODEL_NAMES[r.model] ?? r.model,
      weights: r.dtype,
      device: 'cuda',
      threads: null,
      batch: r.batch,
      promptTokens: hf.settings?.promptTokens ?? 32,
      steps: hf.settings?.newTokens ?? 128,
    };
    if (r.status !== 'ok' && r.status !== 'suspect')
      return failedRow(key, r.status === 'skipped' ? 'skipped' : 'error', r.error ?? r.status);
    const ms = r.decodeMsPerStep;
    return {
      ...key,
      status: 'ok',
      note: `step = (t(generate 1+N) - t(generate 1)) / N${r.status === 'suspect' ? `; ${r.error}` : ''}`,
      prefillMs: r.prefillMs,
      stepMsMedian: ms,
      stepMsMean: ms,
      stepMsP10: r.streamerStepMsP10,
      stepMsP90: r.streamerStepMsP90,
      tokPerS: r.decodeTokPerS,
      tokPerSMean: r.decodeTokPerS,
    };
  });
}

// ---- printing

const fmt = (x: number | null | undefined, digits = 1) => (x === null || x === undefined ? '-' : x.toFixed(digits));
const pad = (s: string, n: number) => (s.length >= n ? s : ' '.repeat(n - s.length) + s);
const padR = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));

function printTable(r: PeersResult): void {
  const out: string[] = [];
  out.push(`bench:peers (${r.mode}) on ${r.backend.name}: ${r.backend.reason}`);
  const busy = Math.max(r.load.start[0], r.load.end[0]) > r.load.cores;
  out.push(
    `load average ${r.load.start[0].toFixed(1)} -> ${r.load.end[0].toFixed(1)} on ${r.load.cores} cores` +
      (busy ? ': other processes shared the CPU, so CPU figures are low and noisy' : ''),
  );
  out.push(
    `decode: ${r.settings.promptTokens}-token prompt, greedy, KV cache; step = median wall time of one decode step` +
      `${(r.settings.rounds ?? 1) > 1 ? ` over ${r.settings.rounds} rounds` : ''}; tok/s = batch x 1000 / step`,
  );
  out.push('');
  out.push(
    `${padR('peer', 11)}${padR('variant', 16)}${padR('model', 13)}${padR('weights', 8)}${padR('device', 15)}${pad('thr', 4)}${pad('batch', 6)}` +
      `${pad('steps', 6)}${pad('prefill ms', 11)}${pad('step ms', 9)}${pad('p10', 8)}${pad('p90', 8)}${pad('tok/s', 9)}${pad('mean', 9)}  note`,
  );
  for (const x of r.rows) {
    out.push(
      `${padR(x.peer, 11)}${padR(x.variant, 16)}${padR(x.model, 13)}${padR(x.weights, 8)}${padR(x.device, 15)}${pad(x.threads === null ? '-' : String(x.threads), 4)}` +
        `${pad(String(x.batch), 6)}${pad(String(x.steps), 6)}${pad(fmt(x.prefillMs), 11)}${pad(fmt(x.stepMsMedian, 2), 9)}${pad(fmt(x.stepMsP10, 2), 8)}` +
        `${pad(fmt(x.stepMsP90, 2), 8)}${pad(fmt(x.tokPerS), 9)}${pad(fmt(x.tokPerSMean), 9)}  ${x.status === 'ok' ? (x.note ?? '') : `${x.status}: ${x.note}`}`,
    );
  }
  if (r.comparisons.length) {
    out.push('');
    out.push('ours / peer (decode tok/s, same model and batch):');
    for (const c of r.comparisons)
      out.push(
        `  ${padR(c.model, 12)} batch ${pad(String(c.batch), 2)}  ${padR(c.ours, 22)} vs ${padR(c.peer, 32)} ${c.ratio.toFixed(2)}x`,
      );
  }
  if (r.readRate && r.readRoofs.length) {
    out.push('');
    out.push(
      `read roof (batch 1): weight bytes per token / ${fmt(r.readRate.bestGBps)} GB/s (single-thread read rate, best; median ${fmt(r.readRate.medianGBps)}); ours = roof ms / our step ms:`,
    );
    for (const x of r.readRoofs)
      out.push(
        `  ${padR(x.model, 12)} ${padR(x.variant, 16)} ${padR(x.weights, 5)} ${pad(x.threads === null ? '1' : String(x.threads), 2)}t  ` +
          `${pad(fmt(x.weightBytesPerToken / 1e6), 7)} MB/token  roof ${pad(fmt(x.roofMs, 2), 7)} ms  ours ${pad(fmt(x.stepMsMedian, 2), 7)} ms  ${x.ratio.toFixed(2)}x`,
      );
  }
  if (r.notes.length) {
    out.push('');
    for (const n of r.notes) out.push(`note: ${n}`);
  }
  console.log(out.join('\n'));
}

/** ours / peer at equal model and batch, for each of our variants and each peer cell that ran. */
function comparisons(rows: PeerRow[]): PeersResult['comparisons'] {
  const ok = rows.filter((r) => r.status === 'ok' && r.tokPerS !== null);
  const out: PeersResult['comparisons'] = [];
  for (const o of ok.filter((r) => r.peer === 'ours')) {
    for (const p of ok.filter((r) => r.peer !== 'ours' && r.model === o.model && r.batch === o.batch)) {
      const peer = `${p.peer} ${p.variant} ${p.weights}${p.threads === null ? '' : ` ${p.threads}t`}`;
      out.push({
        model: o.model,
        batch: o.batch,
        ours: `${o.variant} ${o.weights} ${o.device}`,
        peer,
        ratio: (o.tokPerS as number) / (p.tokPerS as number),
      });
    }
  }
  return out;
}

/** ours' batch-1 rows against weight bytes per token / the single-thread read rate */
function readRoofRows(rows: PeerRow[], sizes: Map<string, number>, readGBps: number): ReadRoofRow[] {
  const out: ReadRoofRow[] = [];
  for (const r of rows) {
    const perToken = sizes.get(r.model);
    if (r.peer !== 'ours' || r.batch !== 1 || r.status !== 'ok' || r.stepMsMedian === null || perToken === undefined) continue;
    const weightBytesPerToken = r.weights === 'bf16' ? perToken / 2 : perToken;
    const roofMs = weightBytesPerToken / (readGBps * 1e6);
    out.push({
      model: r.model,
      variant: r.variant,
      weights: r.weights,
      threads: r.threads,
      weightBytesPerToken,
      roofMs,
      stepMsMedian: r.stepMsMedian,
      ratio: roofMs / r.stepMsMedian,
    });
  }
  return out;
}

/** llama.cpp cells where more threads were slower than one (a busy CPU's signature). */
function multiThreadSlowdowns(rows: PeerRow[]): { model: string; weights: string; threads: number; tokPerS: number; oneThread: number }[] {
  const ok = rows.filter((r) => r.peer === 'llama.cpp' && r.status === 'ok' && r.tokPerS !== null);
  const out = [];
  for (const r of ok) {
    const one = ok.find((x) => x.model === r.model && x.weights === r.weights && x.threads === 1);
    if (one && r.threads !== null && r.threads > 1 && (r.tokPerS as number) < (one.tokPerS as number)) {
      out.push({ model: r.model, weights: r.weights, threads: r.threads, tokPerS: r.tokPerS as number, oneThread: one.tokPerS as number });
    }
  }
  return out;
}

// ---- main

/** B prompts of n ids: windows of the test split at different offsets (rows differ, like real traffic). */
function promptRows(ids: number[], n: number, B: number): number[][] {
  const stride = Math.max(1, Math.floor((ids.length - n) / Math.max(1, B)));
  return Array.from({ length: B }, (_, b) => ids.slice(b * stride, b * stride + n));
}

async function main(): Promise<void> {
  const opt = parseOptions();
  const loadStart = os.loadavg();
  // CPU: ours on one thread first (the read roof, the shared model), the -Nt variants later
  const info: BackendInfo = await initBackend({ prefer: opt.backend, log: true, wasmThreads: 1, wasmFma: flags.fma() });
  const notes: string[] = [];
  const rows: PeerRow[] = [];
  const models: ModelFacts[] = [];

  const tokenizer = await loadTokenizer(opt.model);
  const text = fs.readFileSync(path.resolve('data', 'corpus', 'test.txt'), 'utf8');
  const corpusIds = tokenizer.encode(text.slice(0, 200_000));
  const maxBatch = Math.max(...opt.batches, ...opt.presetBatches);
  if (corpusIds.length < opt.promptTokens * maxBatch) throw new Error(`data/corpus/test.txt gave only ${corpusIds.length} tokens`);

  let llama: Llama | null = null;
  if (opt.llamacpp) {
    try {
      llama = await loadLlamaCpp();
    } catch (e) {
      notes.push(`llama.cpp unavailable: ${(e as Error).message}`);
    }
  }
  // the read roof's rate, as bench:core measures it (CPU: XNNPACK's GEMV on one thread)
  let readRate: PeersResult['readRate'] = null;
  if (!opt.gpu) {
    const bw = await measureBandwidth({ repeats: 40 });
    readRate = { bestGBps: bw.bestGBps, medianGBps: bw.medianGBps, kernel: bw.kernel };
  }
  const weightBytesPerToken = new Map<string, number>();
  const allCores = llama?.cpuMathCores ?? os.cpus().length;
  const threadCounts = [...new Set(opt.threads.map((t) => (t === 'all' ? allCores : t)))];

  const targets = [{ name: path.basename(opt.model), source: opt.model, dir: opt.model as string | null }].concat(
    opt.presets.map((p) => ({ name: p, source: `preset ${p} (random weights from the seed)`, dir: null })),
  );
  for (const m of targets) {
    const isPreset = m.dir === null;
    const batches = isPreset ? opt.presetBatches : opt.batches;
    console.error(`loading ${m.name}...`);
    let loaded: LlamaModel | null;
    try {
      loaded = await loadModel(m.dir ?? m.name);
    } catch (e) {
      notes.push(`${m.name}: not loaded (${(e as Error).message})`);
      continue;
    }
    const sizes = llamaSizes(loaded.config);
    models.push({ name: m.name, source: m.source, params: sizes.params, weightBytes: sizes.weightBytes });
    weightBytesPerToken.set(m.name, sizes.weightBytesPerToken);
    const base = { model: m.name, promptTokens: opt.promptTokens, steps: opt.steps };
    // every cell's timings over the rounds, in the first round's order
    const cells = new Map<string, { key: RowKey; note: string | null; runs: DecodeTiming[]; failed: PeerRow | null }>();
    const cell = (key: RowKey, note: string | null) => {
      const id = JSON.stringify(key);
      let c = cells.get(id);
      if (!c) cells.set(id, (c = { key, note, runs: [], failed: null }));
      return c;
    };
    for (let round = 0; round < opt.rounds; round++) {
      const of = opt.rounds > 1 ? ` (round ${round + 1}/${opt.rounds})` : '';
      let shared: LlamaModel | null = loaded ?? (await loadModel(m.dir ?? m.name)); // the 1-thread variants' model
      loaded = null;
      try {
        // ---- ours
        const all = oursVariants(info.name, shared, m.dir ?? m.name);
        const chosen = opt.variants ? opt.variants.map((v) => all.find((r) => r.name === v) ?? unknownVariant(v, all)) : all;
        const runners = [...chosen].sort((a, b) => (a.threads ?? 1) - (b.threads ?? 1)); // one thread first
        for (const runner of runners) {
          const threads = runner.threads ?? 1;
          if (info.name === 'wasm' && threads !== wasmThreadsRegistered()) {
            // the threads are the backend's: restarting it needs no tensor alive on it
            shared?.dispose();
            shared = null;
            await initBackend({ prefer: 'wasm', wasmThreads: threads, wasmFma: flags.fma() });
          }
          // warm-up at every batch: XNNPACK packs weights, WebGPU compiles shaders per shape
          for (const B of batches) await runner.decode(promptRows(corpusIds, opt.promptTokens, B), Math.min(4, opt.steps));
          for (const B of batches) {
            const key: RowKey = {
              ...base,
              peer: 'ours',
              variant: runner.name,
              weights: runner.weights ?? 'fp32',
              device: info.name,
              threads: runner.threads ?? (info.name === 'wasm' ? 1 : null),
              batch: B,
            };
            const c = cell(key, runner.description);
            if (c.failed) continue;
            const bar = progressBar(opt.steps, `ours ${runner.name} ${m.name} batch ${B}${of}`);
            try {
              const t = await runner.decode(promptRows(corpusIds, opt.promptTokens, B), opt.steps, () => bar.tick());
              c.runs.push(t);
              bar.done(`${fmt(okRow(key, t).tokPerS)} tok/s`);
            } catch (e) {
              bar.done('failed');
              c.failed = failedRow(key, 'error', (e as Error).message);
            }
          }
          runner.dispose?.();
        }
      } finally {
        shared?.dispose();
        if (info.name === 'wasm' && wasmThreadsRegistered() !== 1) await initBackend({ prefer: 'wasm', wasmThreads: 1, wasmFma: flags.fma() });
      }

      // ---- llama.cpp, batch 1, same weights as GGUF
      if (!opt.llamacpp) continue;
      for (const type of opt.ggufTypes) {
        let file: string | null = null;
        let why = 'llama.cpp unavailable';
        if (llama) {
          try {
            file = isPreset ? ggufOfPreset(m.name, opt.model, type) : ggufOfDir(m.dir as string, m.name, type);
          } catch (e) {
            why = `GGUF export failed: ${(e as Error).message}`;
          }
        }
        for (const threads of threadCounts) {
          const key: RowKey = { ...base, peer: 'llama.cpp', variant: 'cpu', weights: type, device: 'llama.cpp CPU', threads, batch: 1 };
          const c = cell(key, file ? `${path.relative(process.cwd(), file)}; F32 KV cache, flash attention off` : null);
          if (c.failed) continue;
          if (!file || !llama) {
            c.failed = failedRow(key, 'skipped', why);
            continue;
          }
          try {
            const t = await llamaCppDecode(
              llama,
              file,
              threads,
              corpusIds.slice(0, opt.promptTokens),
              opt.steps,
              `llama.cpp ${type} ${m.name} ${threads} thread(s)${of}`,
            );
            c.runs.push(t);
          } catch (e) {
            c.failed = failedRow(key, 'error', (e as Error).message);
          }
        }
      }
    }
    // one row per cell: every round's steps together (the median and tails over all of them)
    for (const c of cells.values()) rows.push(c.failed ?? okRow(c.key, mergeRuns(c.runs), c.note));
  }

  // ---- HF transformers from the same machine (GPU)
  let hf: HfRecord | null = null;
  if (opt.hf) {
    hf = JSON.parse(fs.readFileSync(path.resolve(opt.hf), 'utf8')) as HfRecord;
    if (hf.name !== 'hf-peers' || !Array.isArray(hf.rows)) throw new Error(`${opt.hf}: not a scripts/peers/hf_peers.py record`);
    rows.push(...hfRows(hf));
    const adapter = info.facts.adapter?.device ?? info.facts.adapter?.description ?? null;
    notes.push(
      `hf: measured by scripts/peers/hf_peers.py on ${hf.machine?.gpu ?? 'an unnamed GPU'}; ours on adapter ${adapter ?? info.name}`,
    );
  } else if (opt.gpu) {
    notes.push('no --hf file: HF transformers rows absent (run scripts/peers/hf_peers.py on this machine first)');
  }

  notes.push(
    'ours: per-step wall time of LlamaModel.forward + logits readback + argmax, after a warm-up at each batch; the -Nt variants run on tfjs-wasm\'s threaded build with N threads (the fused decode step and XNNPACK split over them), the others on its single-threaded build',
  );
  if (opt.llamacpp) {
    notes.push(
      'llama.cpp: node-llama-cpp, CPU build, greedy, batch 1; step = interval between tokens its evaluate() yields; one warm-up run first',
    );
  }
  if (!opt.gpu) notes.push('random presets at batch 1 only with --quick; --full measures them at every batch');
  const loadEnd = os.loadavg();
  for (const slow of multiThreadSlowdowns(rows)) {
    notes.push(
      `llama.cpp ${slow.weights} ${slow.model}: ${slow.threads} threads ran at ${fmt(slow.tokPerS)} tok/s, slower than 1 thread ` +
        `(${fmt(slow.oneThread)}): its threads meet at a barrier after every op, so on a shared CPU (load average ` +
        `${Math.max(loadStart[0], loadEnd[0]).toFixed(1)} on ${os.cpus().length} cores) each op waits for the slowest descheduled thread`,
    );
  }

  const llamaVersion = (() => {
    try {
      return JSON.parse(fs.readFileSync(path.resolve('node_modules', 'node-llama-cpp', 'package.json'), 'utf8')).version as string;
    } catch {
      return 'unknown';
    }
  })();
  const result: PeersResult = {
    mode: opt.full ? 'full' : 'quick',
    backend: { name: info.name, reason: info.reason },
    load: { cores: os.cpus().length, start: loadStart, end: loadEnd },
    settings: {
      promptTokens: opt.promptTokens,
      steps: opt.steps,
      batches: opt.batches,
      presetBatches: opt.presetBatches,
      greedy: true,
      kvCache: 'contiguous fp32 (ours)',
      rounds: opt.rounds,
    },
    models,
    rows,
    llamacpp: llama ? { nodeLlamaCpp: llamaVersion, cpuMathCores: llama.cpuMathCores, kvCache: 'F32', flashAttention: false } : null,
    hf,
    comparisons: comparisons(rows),
    readRate,
    readRoofs: readRate ? readRoofRows(rows, weightBytesPerToken, readRate.bestGBps) : [],
    notes,
  };
  printTable(result);
  const file = writeBenchJson(path.basename(opt.out).replace(/\.json$/, ''), result, { dir: path.dirname(opt.out) });
  console.error(`wrote ${path.relative(process.cwd(), file) || file}`);
}

runBench(main);
