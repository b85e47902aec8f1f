// loadModel: an HF checkpoint directory (config.json + safetensors, single or sharded, F32 /
// F16 / BF16) or a random-weight preset (a name from data/presets, or a path to such a JSON).

import * as fs from 'fs';
import * as path from 'path';

import { configFromHF, type LlamaConfig } from './config';
import { LlamaModel, type CpuWeightFormat, type ModelOptions } from './llama';
import { CpuThreadPool } from './kernels/threads';
import { isPresetJson, listPresets, loadPreset, presetFromJson, randomWeights, type Preset } from './presets';
import { SafetensorsCheckpoint } from '../formats/safetensors';
import type { WeightSource } from './weights';

/** Options of loadModel. */
export interface LoadModelOptions {
  /** presets only: replace the preset's seed */
  seed?: number;
  /** presets only: replace the preset's std */
  std?: number;
  /** how the weights are held on CPU (LlamaModel's ModelOptions): default 'f32' */
  cpuWeights?: CpuWeightFormat;
  /** wasm in Node: threads for the decode GEMV (worker_threads over shared memory); default 1 (see below) */
  cpuThreads?: number;
}

// cpuThreads stays 1 unless asked (issue 15): on this project's 2-core machine, shared with
// another process, 2 threads did not win reliably. bench:peers on the target, median step ms, 1
// thread vs 2 (2026-11-30, two runs minutes apart): f32 batch 1 8.2 vs 7.5 then 8.0 vs 9.8; f32
// batch 8 20.6 vs 15.7 then 21.6 vs 26.1; bf16 batch 1 6.7 vs 11.0 then 6.2 vs 9.3; bf16 batch 8
// 20.7 vs 22.0 then 19.7 vs 25.7. The split GEMV
// meets at a barrier after every matmul (33 a step), so a descheduled worker stalls the step, as
// llama.cpp's threads do here (data/bench/peers.json). The kernels alone do win with 2 threads
// (bench:core --gemm, interleaved: 6.0 vs 5.1 ms at 1 row, 16.5 vs 10.4 at 8): on an idle machine
// with more cores, pass cpuThreads: os.availableParallelism().
// the model's options from loadModel's
function modelOptions(options: LoadModelOptions): ModelOptions {
  const threads = options.cpuThreads ?? 1;
  return { cpuWeights: options.cpuWeights, threadPool: threads > 1 ? new CpuThreadPool(threads) : undefined };
}

/** Read an HF directory's config.json. */
export function readHFConfig(dir: string) {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) throw new Error(`${dir}: no config.json (not an HF model directory)`);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return configFromHF(json, file);
}

/** The weights of an HF checkpoint directory, read tensor by tensor. */
export function checkpointWeights(dir: string): WeightSource {
  const ck = SafetensorsCheckpoint.open(dir);
  return {
    description: dir,
    has: (name) => ck.has(name),
    get: (name) => ck.get(name),
    close: () => ck.close(),
  };
}

/** Build the model of a preset (weights generated now, never stored). */
export function modelFromPreset(preset: Preset, options: LoadModelOptions = {}): LlamaModel {
  const seed = options.seed ?? preset.init.seed;
  const std = options.std ?? preset.init.std;
  return LlamaModel.fromWeights(preset.config, randomWeights(preset.config, seed, std), preset.name, modelOptions(options));
}

/** A checkpoint directory's or preset's config and name, and how to open its weights. */
export interface ModelSource {
  config: LlamaConfig;
  name: string;
  /** the weights, tensor by tensor (close() them when done) */
  open(): WeightSource;
}

/**
 * Resolve `dirOrPreset` (an HF directory, a preset JSON path or a preset name) without reading
 * any weights: what loadModel builds the tfjs model from, and lib/gpu's loadGpuModel the GPU one.
 */
export function modelSource(dirOrPreset: string, options: LoadModelOptions = {}): ModelSource {
  const p = dirOrPreset;
  if (fs.existsSync(p) && fs.statSync(p).isDirectory()) {
    if (options.seed !== undefined || options.std !== undefined) {
      throw new Error(`${p}: seed and std apply to random-weight presets only`);
    }
    return { config: readHFConfig(p), name: path.basename(path.resolve(p)), open: () => checkpointWeights(p) };
  }
  let preset: Preset;
  if (fs.existsSync(p) && fs.statSync(p).isFile()) {
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(p, 'utf8'));
    } catch (e) {
      throw new Error(`${p}: not valid JSON (${(e as Error).message})`);
    }
    if (!isPresetJson(json)) {
      throw new Error(`${p}: not a preset (no inference_lab.random_init); to load a checkpoint, pass its directory`);
    }
    preset = { ...presetFromJson(json, p), file: p };
  } else if (!/[\\/]/.test(p) && !p.endsWith('.json') && listPresets().includes(p)) {
    preset = loadPreset(p);
  } else {
    throw new Error(`'${p}' is neither a model directory nor a preset (known presets: ${listPresets().join(', ') || 'none'})`);
  }
  const seed = options.seed ?? preset.init.seed;
  const std = options.std ?? preset.init.std;
  return { config: preset.config, name: preset.name, open: () => randomWeights(preset.config, seed, std) };
}

/**
 * Load a model (lesson: "loading a checkpoint"): `dirOrPreset` is an HF directory
 * (`data/models/target`, a SmolLM2 / TinyLlama-style download), a preset name
 * (`random-125m`) or a preset JSON path. Weights become fp32 tensors on the current backend.
 */
export async function loadModel(dirOrPreset: string, options: LoadModelOptions = {}): Promise<LlamaModel> {
  const { config, name, open } = modelSource(dirOrPreset, options);
  const weights = open();
  try {
    return LlamaModel.fromWeights(config, weights, name, modelOptions(options));
  } finally {
    weights.close?.();
  }
}
