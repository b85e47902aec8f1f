// Random-weight presets: real model shapes (SmolLM2-135M, TinyLlama-1.1B, Llama-3-8B) with
// weights generated at load from a seed, never stored. The rule, from data/presets/*.json:
// each tensor is filled from its own PRNG stream seeded by (seed, tensor name), uniform in
// [-std*sqrt(3), std*sqrt(3)] (so its standard deviation is std); RMSNorm gains are 1.
//
// The stream, exactly (so other tools can reproduce it):
//   state = fnv1a32(utf8(`${seed}:${name}`))                      (32-bit FNV-1a)
//   next  = mulberry32(state)                                      (uint32 per call)
//   bound = std * sqrt(3)                                          (float64)
//   value = fround(next * (bound * 2^-31) - bound)                 (row-major over the HF shape)

import * as fs from 'fs';
import * as path from 'path';

import { configFromHF, type LlamaConfig } from './config';
import type { HostTensor } from '../formats/safetensors';
import { llamaTensorSpecs, type TensorSpec, type WeightSource } from './weights';

/** The `inference_lab.random_init` block of a preset file. */
export interface RandomInit {
  seed: number;
  std: number;
  distribution: 'uniform';
}

/** A preset: an HF config plus how to generate its weights. */
export interface Preset {
  name: string;
  config: LlamaConfig;
  init: RandomInit;
  /** the file it was read from, if any */
  file?: string;
  note?: string;
}

/** 32-bit FNV-1a of a string's UTF-8 bytes. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(s)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The PRNG stream seed of one tensor. */
export function tensorStreamSeed(seed: number, name: string): number {
  return fnv1a32(`${seed}:${name}`);
}

/** Fill `out` from the stream of (seed, name): uniform in [-std*sqrt(3), std*sqrt(3)). */
export function fillUniform(out: Float32Array, seed: number, name: string, std: number): Float32Array {
  const scale = std * Math.sqrt(3) * 2 ** -31;
  const bound = std * Math.sqrt(3);
  let a = tensorStreamSeed(seed, name) | 0;
  for (let i = 0; i < out.length; i++) {
    // mulberry32
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = ((t ^ (t >>> 14)) >>> 0) * scale - bound;
  }
  return out;
}

function checkInit(seed: number, std: number, where: string): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new Error(`${where}: seed must be an integer in [0, 2^32), got ${seed}`);
  }
  if (!(typeof std === 'number' && std > 0 && Number.isFinite(std))) {
    throw new Error(`${where}: std must be a positive number, got ${std}`);
  }
}

/**
 * Random weights for a config, generated tensor by tensor when the model asks for them
 * (lesson: "models too big to download": real shapes, no files).
 */
export function randomWeights(config: LlamaConfig, seed: number, std: number): WeightSource {
  checkInit(seed, std, 'randomWeights');
  const specs = new Map<string, TensorSpec>(llamaTensorSpecs(config).map((s) => [s.name, s]));
  return {
    description: `random weights (seed ${seed}, std ${std})`,
    has: (name) => specs.has(name),
    get(name): HostTensor {
      const s = specs.get(name);
      if (!s) throw new Error(`random weights: no tensor '${name}' in this config`);
      const data = new Float32Array(s.shape.reduce((a, b) => a * b, 1));
      if (s.isNorm) data.fill(1);
      else fillUniform(data, seed, name, std);
      return { shape: s.shape, data };
    },
  };
}

/** Directories searched for a preset given by name. */
export function presetDirs(): string[] {
  // lib/model/ (sources) and dist/model/ (compiled) both sit two levels under the package root;
  // an ES-module bundle has no __dirname and relies on the working directory
  const dirs = [path.resolve('data', 'presets')];
  if (typeof __dirname === 'string') dirs.unshift(path.resolve(__dirname, '..', '..', 'data', 'presets'));
  return dirs;
}

/** Names of the presets found in data/presets. */
export function listPresets(): string[] {
  const names = new Set<string>();
  for (const dir of presetDirs()) {
    if (!fs.existsSync(dir)) continue;
    for (const f of fs.readdirSync(dir)) if (f.endsWith('.json')) names.add(f.slice(0, -5));
  }
  return [...names].sort();
}

/** Is this JSON object a preset (an HF config with an `inference_lab.random_init` block)? */
export function isPresetJson(json: unknown): boolean {
  const lab = (json as { inference_lab?: { random_init?: unknown } } | null)?.inference_lab;
  return typeof lab === 'object' && lab !== null && typeof lab.random_init === 'object';
}

/** Read a preset from a parsed preset JSON object. */
export function presetFromJson(json: unknown, source = 'preset'): Preset {
  if (!isPresetJson(json)) {
    throw new Error(`${source}: not a preset (no inference_lab.random_init block)`);
  }
  const lab = (json as { inference_lab: { preset?: string; note?: string; random_init: Record<string, unknown> } }).inference_lab;
  const ri = lab.random_init;
  if (ri.distribution !== 'uniform') {
    throw new Error(`${source}: inference_lab.random_init.distribution must be 'uniform', got ${JSON.stringify(ri.distribution)}`);
  }
  const seed = ri.seed as number;
  const std = ri.std as number;
  checkInit(seed, std, `${source}: inference_lab.random_init`);
  return {
    name: lab.preset ?? path.basename(source, '.json'),
    config: configFromHF(json, source),
    init: { seed, std, distribution: 'uniform' },
    note: lab.note,
  };
}

/** Find and read a preset by name (`random-125m`) or by path to its JSON file. */
export function loadPreset(nameOrPath: string): Preset {
  let file: string | undefined;
  if (nameOrPath.endsWith('.json') || nameOrPath.includes('/') || nameOrPath.includes('\\')) {
    if (fs.existsSync(nameOrPath)) file = nameOrPath;
  } else {
    file = presetDirs()
      .map((d) => path.join(d, `${nameOrPath}.json`))
      .find((f) => fs.existsSync(f));
  }
  if (!file) {
    throw new Error(`preset '${nameOrPath}' not found (known presets: ${listPresets().join(', ') || 'none'})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return { ...presetFromJson(json, file), file };
}
