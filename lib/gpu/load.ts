// Loading a model onto the captured GPU path: the same directories and presets as loadModel
// (lib/model/load.ts resolves them), with weights read straight from the checkpoint in HF layout.

import { modelSource, type LoadModelOptions } from '../model/load';
import type { GpuContext } from './device';
import { GpuLlama, type GpuLlamaOptions } from './llama';

/**
 * Load an HF checkpoint directory or a random-weight preset onto the captured path (lesson 2):
 * weights go to GPU buffers (fp32, or bf16 with `format: 'bf16'`), never through tfjs.
 */
export async function loadGpuModel(ctx: GpuContext, dirOrPreset: string, options: GpuLlamaOptions & LoadModelOptions = {}): Promise<GpuLlama> {
  const { seed, std, ...gpuOptions } = options;
  const { config, name, open } = modelSource(dirOrPreset, { seed, std });
  const source = open();
  try {
    return await GpuLlama.create(ctx, config, source, name, gpuOptions);
  } finally {
    source.close?.();
  }
}
