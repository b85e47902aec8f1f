// Shared by the model tests: small configs, an HF checkpoint writer, and an independent
// float64 reference forward in plain JS (no tfjs) to check the tfjs model against.
import * as fs from 'fs';
import * as path from 'path';

import { resolveLlamaConfig, type LlamaConfig } from '../lib/model/config';
import { fillUniform } from '../lib/model/presets';
import { writeSafetensors, type SafetensorsDtype } from '../lib/formats/safetensors';
import { llamaTensorSpecs, type WeightSource } from '../lib/model/weights';

export function argmax(x: ArrayLike<number>, offset = 0, n = x.length - offset): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (x[offset + i] > x[offset + best]) best = i;
  return best;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** A tiny TinyLlama-shaped config: GQA, untied head, non-default theta. */
export function tinyConfig(overrides: Partial<LlamaConfig> = {}): LlamaConfig {
  return resolveLlamaConfig({
    vocabSize: 96,
    hiddenSize: 32,
    intermediateSize: 48,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    maxPositions: 64,
    rmsNormEps: 1e-5,
    ropeTheta: 500,
    tieWordEmbeddings: false,
    bosTokenId: 1,
    eosTokenIds: [2],
    ...overrides,
  });
}

/** HF-layout weights for a config: uniform(std) from the preset PRNG, norms random near 1. */
export function makeWeights(config: LlamaConfig, seed: number, std = 0.08): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const s of llamaTensorSpecs(config)) {
    const data = fillUniform(new Float32Array(s.shape.reduce((a, b) => a * b, 1)), seed, s.name, std);
    if (s.isNorm) for (let i = 0; i < data.length; i++) data[i] += 1;
    out.set(s.name, data);
  }
  return out;
}

export function weightSource(config: LlamaConfig, weights: Map<string, Float32Array>): WeightSource {
  const shapes = new Map(llamaTensorSpecs(config).map((s) => [s.name, s.shape]));
  return {
    description: 'test weights',
    has: (n) => weights.has(n),
    get: (n) => ({ shape: shapes.get(n)!, data: weights.get(n)! }),
  };
}

/**
 * Write an HF checkpoint directory the way transformers 4 saves a SmolLM2 / TinyLlama model:
 * config.json (top-level rope_theta, rope_scaling null, torch_dtype), model.safetensors or
 * `shards` files with model.safetensors.index.json.
 */
export function writeCheckpoint(
  dir: string,
  config: LlamaConfig,
  weights: Map<string, Float32Array>,
  dtype: SafetensorsDtype,
  shards = 1,
): void {
  fs.mkdirSync(dir, { recursive: true });
  const hf = {
    architectures: ['LlamaForCausalLM'],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenIds[0],
    hidden_act: 'silu',
    hidden_size: config.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: config.intermediateSize,
    max_position_embeddings: config.maxPositions,
    mlp_bias: false,
    model_type: 'llama',
    num_attention_heads: config.numHeads,
    num_hidden_layers: config.numLayers,
    num_key_value_heads: config.numKvHeads,
    pretraining_tp: 1,
    rms_norm_eps: config.rmsNormEps,
    rope_scaling: null,
    rope_theta: config.ropeTheta,
    tie_word_embeddings: config.tieWordEmbeddings,
    torch_dtype: dtype === 'F32' ? 'float32' : dtype === 'F16' ? 'float16' : 'bfloat16',
    transformers_version: '4.40.1',
    use_cache: true,
    vocab_size: config.vocabSize,
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hf, null, 2));
  const specs = llamaTensorSpecs(config);
  // tensors missing from `weights` are left out (to test incomplete checkpoints)
  const tensors = specs
    .filter((s) => weights.has(s.name))
    .map((s) => ({ name: s.name, shape: s.shape, data: weights.get(s.name)!, dtype }));
  if (shards === 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    return;
  }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / shards);
  let total = 0;
  for (let i = 0; i < shards; i++) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.slice(i * per, (i + 1) * per);
    for (const t of part) {
      weightMap[t.name] = file;
      total += t.data.length * (dtype === 'F32' ? 4 : 2);
    }
    writeSafetensors(path.join(dir, file), part, { format: 'pt' });
  }
  fs.writeFileSync(
    path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
  );
}

// ---- float64 reference forward, straight from the HF modeling code's maths

function matVec(w: Float32Array, rows: number, cols: number, x: Float64Array): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += w[r * cols + c] * x[c];
    out[r] = s;
  }
  return out;
}

function rmsNorm(x: Float64Array, g: Float32Array, eps: number): Float64Array {
  let ms = 0;
  for (const v of x) ms += v * v;
  const r = 1 / Math.sqrt(ms / x.length + eps);
  return x.map((v, i) => v * r * g[i]);
}

function rope(x: Float64Array, heads: number, D: number, pos: number, theta: number): void {
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < D / 2; i++) {
      const angle = pos / theta ** ((2 * i) / D);
      const a = x[h * D + i];
      const b = x[h * D + i + D / 2];
      x[h * D + i] = a * Math.cos(angle) - b * Math.sin(angle);
      x[h * D + i + D / 2] = b * Math.cos(angle) + a * Math.sin(angle);
    }
  }
}

/** Logits [T][V] of a causal LM over `ids` (positions 0..T-1), in float64. */
export function referenceLogits(c: LlamaConfig, w: Map<string, Float32Array>, ids: number[]): Float64Array[] {
  const { hiddenSize: Dm, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F, vocabSize: V } = c;
  const G = H / Hkv;
  const embed = w.get('model.embed_tokens.weight')!;
  let xs = ids.map((id) => Float64Array.from(embed.subarray(id * Dm, (id + 1) * Dm)));
  for (let l = 0; l < c.numLayers; l++) {
    const p = (n: string) => w.get(`model.layers.${l}.${n}.weight`)!;
    const qs: Float64Array[] = [];
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    xs.forEach((x, t) => {
      const h = rmsNorm(x, p('input_layernorm'), c.rmsNormEps);
      const q = matVec(p('self_attn.q_proj'), H * D, Dm, h);
      const k = matVec(p('self_attn.k_proj'), Hkv * D, Dm, h);
      rope(q, H, D, t, c.ropeTheta);
      rope(k, Hkv, D, t, c.ropeTheta);
      qs.push(q);
      ks.push(k);
      vs.push(matVec(p('self_attn.v_proj'), Hkv * D, Dm, h));
    });
    xs = xs.map((x, t) => {
      const att = new Float64Array(H * D);
      for (let h = 0; h < H; h++) {
        const j = Math.floor(h / G);
        const scores = [];
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qs[t][h * D + d] * ks[s][j * D + d];
          scores.push(dot / Math.sqrt(D));
        }
        const m = Math.max(...scores);
        const e = scores.map((v) => Math.exp(v - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let s = 0; s <= t; s++) for (let d = 0; d < D; d++) att[h * D + d] += (e[s] / z) * vs[s][j * D + d];
      }
      const o = matVec(p('self_attn.o_proj'), Dm, H * D, att);
      const x1 = x.map((v, i) => v + o[i]);
      const h2 = rmsNorm(x1, p('post_attention_layernorm'), c.rmsNormEps);
      const g = matVec(p('mlp.gate_proj'), F, Dm, h2);
      const u = matVec(p('mlp.up_proj'), F, Dm, h2);
      const a = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
      const down = matVec(p('mlp.down_proj'), Dm, F, a);
      return x1.map((v, i) => v + down[i]);
    });
  }
  const head = c.tieWordEmbeddings ? embed : w.get('lm_head.weight')!;
  return xs.map((x) => matVec(head, V, Dm, rmsNorm(x, w.get('model.norm.weight')!, c.rmsNormEps)));
}
