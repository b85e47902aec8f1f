// loadModel: an HF checkpoint directory (config.json + safetensors, single or sharded, F32 /
// F16 / BF16) or a random-weight preset (a name from data/presets, or a path to such a JSON).

import * as fs from 'fs';
import * as path from 'path';

import { configFromHF, type LlamaConfig } from './config';
import { LlamaModel, type CpuWeightFormat, type ModelOptions } from './llama';
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
}

// the model's options from loadModel's (threads are the backend's: initBackend's wasmThreads)
function modelOptions(options: LoadModelOptions): ModelOptions {
  return { cpuWeights: options.cpuWeights };
}

/**
 * The extra drafts shipped beside `draft` in a models directory (data/models/draft-*: other shapes of
 * draft, e.g. one wide layer; data/README.md says why): their directory names, sorted.
 */
export function extraDrafts(modelsDir = 'data/models'): string[] {
  if (!fs.existsSync(modelsDir)) return [];
  return fs
    .readdirSync(modelsDir)
    .filter((d) => d.startsWith('draft-') && fs.existsSync(path.join(modelsDir, d, 'config.json')))
    .sort();
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
