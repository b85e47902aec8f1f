// Loading a model onto the captured GPU path: the same directories and presets as loadModel
// (lib/model/load.ts), with weights read straight from the checkpoint in HF layout.

import * as fs from 'fs';
import * as path from 'path';

import { checkpointWeights, readHFConfig } from '../model/load';
import { isPresetJson, listPresets, loadPreset, presetFromJson, randomWeights } from '../model/presets';
import type { GpuContext } from './device';
import type { LlamaConfig } from '../model/config';
import type { WeightSource } from '../model/weights';
import { GpuLlama, type GpuLlamaOptions } from './llama';

/**
 * Load an HF checkpoint directory or a random-weight preset onto the captured path (lesson 2):
 * weights go to GPU buffers (fp32, or bf16 with `format: 'bf16'`), never through tfjs.
 */
export async function loadGpuModel(ctx: GpuContext, dirOrPreset: string, options: GpuLlamaOptions = {}): Promise<GpuLlama> {
  const { config, name, open } = modelSource(dirOrPreset);
  const source = open();
  try {
    return await GpuLlama.create(ctx, config, source, name, options);
  } finally {
    source.close?.();
  }
}

/** A checkpoint directory's or preset's config and name, and how to open its weights. */
export function modelSource(dirOrPreset: string): { config: LlamaConfig; name: string; open: () => WeightSource } {
  const p = dirOrPreset;
  if (fs.existsSync(p) && fs.statSync(p).isDirectory()) {
    return { config: readHFConfig(p), name: path.basename(path.resolve(p)), open: () => checkpointWeights(p) };
  }
  let preset;
  if (fs.existsSync(p) && fs.statSync(p).isFile()) {
    const json: unknown = JSON.parse(fs.readFileSync(p, 'utf8'));
    if (!isPresetJson(json)) throw new Error(`${p}: not a preset (no inference_lab.random_init); to load a checkpoint, pass its directory`);
    preset = presetFromJson(json, p);
  } else if (listPresets().includes(p)) {
    preset = loadPreset(p);
  } else {
    throw new Error(`'${p}' is neither a model directory nor a preset (known presets: ${listPresets().join(', ') || 'none'})`);
  }
  const pr = preset;
  return { config: pr.config, name: pr.name, open: () => randomWeights(pr.config, pr.init.seed, pr.init.std) };
}
