// Weights in HF layout: the tensor names and shapes of a LlamaForCausalLM checkpoint, and the
// WeightSource interface the model is built from (a safetensors checkpoint or a random preset).

import type { LlamaConfig } from './config';
import type { HostTensor } from '../formats/safetensors';

/** A tensor name and its HF shape ([out, in] for linear layers). */
export interface TensorSpec {
  name: string;
  shape: number[];
  /** RMSNorm gains (initialised to 1 by the random presets) */
  isNorm: boolean;
}

/** Where a model's weights come from, one tensor at a time, in HF names and layout. */
export interface WeightSource {
  has(name: string): boolean;
  get(name: string): HostTensor;
  /** a description for error messages (a path or a preset name) */
  readonly description: string;
  close?(): void;
}

/** The name `source` holds for HF name `name` (checkpoints of LlamaModel lack "model."), or null. */
export function resolveWeight(source: WeightSource, name: string): string | null {
  const bare = name.replace(/^model\./, '');
  return source.has(name) ? name : source.has(bare) ? bare : null;
}

/** Read one tensor in HF layout, checking that it exists and has the shape the config needs. */
export function readWeight(source: WeightSource, name: string, shape: readonly number[]): Float32Array {
  const found = resolveWeight(source, name);
  if (found === null) throw new Error(`${source.description}: missing tensor '${name}'`);
  const t = source.get(found);
  if (t.shape.join() !== shape.join()) {
    throw new Error(`${source.description}: tensor '${name}' has shape [${t.shape}], config needs [${shape}]`);
  }
  return t.data;
}

/** HF names of layer `i`'s tensors. */
export function layerTensorNames(i: number) {
  const p = `model.layers.${i}.`;
  return {
    attnNorm: `${p}input_layernorm.weight`,
    q: `${p}self_attn.q_proj.weight`,
    k: `${p}self_attn.k_proj.weight`,
    v: `${p}self_attn.v_proj.weight`,
    o: `${p}self_attn.o_proj.weight`,
    mlpNorm: `${p}post_attention_layernorm.weight`,
    gate: `${p}mlp.gate_proj.weight`,
    up: `${p}mlp.up_proj.weight`,
    down: `${p}mlp.down_proj.weight`,
  };
}

export const EMBED_NAME = 'model.embed_tokens.weight';
export const FINAL_NORM_NAME = 'model.norm.weight';
export const LM_HEAD_NAME = 'lm_head.weight';

/** Every tensor of a LlamaForCausalLM checkpoint for this config, in HF order and shapes. */
export function llamaTensorSpecs(c: LlamaConfig): TensorSpec[] {
  const { hiddenSize: Dm, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F } = c;
  const specs: TensorSpec[] = [{ name: EMBED_NAME, shape: [c.vocabSize, Dm], isNorm: false }];
  for (let i = 0; i < c.numLayers; i++) {
    const n = layerTensorNames(i);
    specs.push(
      { name: n.attnNorm, shape: [Dm], isNorm: true },
      { name: n.q, shape: [H * D, Dm], isNorm: false },
      { name: n.k, shape: [Hkv * D, Dm], isNorm: false },
      { name: n.v, shape: [Hkv * D, Dm], isNorm: false },
      { name: n.o, shape: [Dm, H * D], isNorm: false },
      { name: n.mlpNorm, shape: [Dm], isNorm: true },
      { name: n.gate, shape: [F, Dm], isNorm: false },
      { name: n.up, shape: [F, Dm], isNorm: false },
      { name: n.down, shape: [Dm, F], isNorm: false },
    );
  }
  specs.push({ name: FINAL_NORM_NAME, shape: [Dm], isNorm: true });
  if (!c.tieWordEmbeddings) specs.push({ name: LM_HEAD_NAME, shape: [c.vocabSize, Dm], isNorm: false });
  return specs;
}
