// Loading: a user's own HF checkpoint (SmolLM2 / TinyLlama style, written here in exactly that
// format: F32, F16, BF16, 2 shards), random-weight presets, bad configs and checkpoints, the
// fp16/bf16 conversions, and the tokenizer against the oracle's encodings.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../lib/backend';
import { NoKVCache } from '../lib/kv/none';
import { configFromHF, configToHF, llamaSizes, type LlamaConfig } from '../lib/model/config';
import type { LlamaModel } from '../lib/model/llama';
import { loadModel } from '../lib/model/load';
import { listPresets, loadPreset, randomWeights } from '../lib/model/presets';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../lib/formats/dtype';
import { encodeSafetensors, SafetensorsFile } from '../lib/formats/safetensors';
import { loadTokenizer } from '../lib/generate/tokenizer';
import { makeWeights, maxAbsDiff, referenceLogits, tinyConfig, writeCheckpoint } from './model.helpers';

const IDS = [1, 17, 42, 5, 88, 3, 60, 9, 2, 31];
let tmp: string;

async function allLogits(model: LlamaModel, ids = IDS): Promise<Float32Array> {
  const logits = model.forward([ids], new NoKVCache(model.kvShape, 1), { logits: 'all' });
  const data = (await logits.data()) as Float32Array;
  logits.dispose();
  return data;
}

function flat(rows: Float64Array[]): Float64Array {
  const out = new Float64Array(rows.length * rows[0].length);
  rows.forEach((r, i) => out.set(r, i * r.length));
  return out;
}

function roundedTo(w: Map<string, Float32Array>, dtype: 'F16' | 'BF16'): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [k, v] of w) out.set(k, dtype === 'F16' ? f16ToF32(f32ToF16(v)) : bf16ToF32(f32ToBf16(v)));
  return out;
}

async function withModel<T>(dirOrPreset: string, f: (m: LlamaModel) => Promise<T>, options = {}): Promise<T> {
  const m = await loadModel(dirOrPreset, options);
  try {
    return await f(m);
  } finally {
    m.dispose();
  }
}

beforeAll(async () => {
  await initBackend({ prefer: 'wasm' });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'inference-lab-load-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('a user checkpoint in HF format (TinyLlama style: top-level rope_theta, untied head, GQA)', () => {
  const config = tinyConfig();
  const w = makeWeights(config, 1234);
  const wBf16 = roundedTo(w, 'BF16');
  const wF16 = roundedTo(w, 'F16');
  const dir = (name: string) => path.join(tmp, name);

  beforeAll(() => {
    writeCheckpoint(dir('f32'), config, w, 'F32');
    writeCheckpoint(dir('f32-bf16-values'), config, wBf16, 'F32');
    writeCheckpoint(dir('bf16'), config, w, 'BF16');
    writeCheckpoint(dir('bf16-2-shards'), config, w, 'BF16', 2);
    writeCheckpoint(dir('f32-f16-values'), config, wF16, 'F32');
    writeCheckpoint(dir('f16'), config, w, 'F16');
  });

  it('reads config.json as transformers 4 writes it', async () => {
    const json = JSON.parse(fs.readFileSync(path.join(dir('bf16'), 'config.json'), 'utf8'));
    expect(json.rope_theta).toBe(500);
    expect(json.rope_parameters).toBeUndefined();
    await withModel(dir('bf16'), async (m) => {
      expect(m.config).toEqual(config);
      expect(m.name).toBe('bf16');
    });
  });

  it('configToHF is the inverse of configFromHF', () => {
    expect(configFromHF(configToHF(config))).toEqual(config);
    const multiEos = { ...config, eosTokenIds: [2, 3] };
    expect(configFromHF(configToHF(multiEos))).toEqual(multiEos);
  });

  it('F32 logits match an independent float64 reference forward', async () => {
    const got = await withModel(dir('f32'), allLogits);
    const ref = flat(referenceLogits(config, w, IDS));
    const err = maxAbsDiff(got, ref);
    console.log(`[load] f32 checkpoint vs float64 reference: max abs diff ${err.toExponential(2)}`);
    expect(err).toBeLessThanOrEqual(1e-4);
  });

  it('BF16, 2-shard BF16 and F16 load to exactly the weights they store', async () => {
    const bf16Values = await withModel(dir('f32-bf16-values'), allLogits);
    expect(maxAbsDiff(await withModel(dir('bf16'), allLogits), bf16Values)).toBe(0);
    expect(fs.existsSync(path.join(dir('bf16-2-shards'), 'model.safetensors.index.json'))).toBe(true);
    expect(maxAbsDiff(await withModel(dir('bf16-2-shards'), allLogits), bf16Values)).toBe(0);
    const f16Values = await withModel(dir('f32-f16-values'), allLogits);
    expect(maxAbsDiff(await withModel(dir('f16'), allLogits), f16Values)).toBe(0);
  });

  it('F16 and BF16 logits are within their rounding of the F32 ones', async () => {
    const f32 = await withModel(dir('f32'), allLogits);
    const scale = Math.max(...f32.map(Math.abs));
    const errF16 = maxAbsDiff(await withModel(dir('f16'), allLogits), f32) / scale;
    const errBf16 = maxAbsDiff(await withModel(dir('bf16'), allLogits), f32) / scale;
    console.log(`[load] relative max diff to f32 logits: f16 ${errF16.toExponential(2)}, bf16 ${errBf16.toExponential(2)}`);
    // f16 keeps 11 significant bits, bf16 8: a few units of rounding through two layers
    expect(errF16).toBeLessThan(4 * 2 ** -11);
    expect(errBf16).toBeLessThan(4 * 2 ** -8);
    expect(errF16).toBeLessThan(errBf16);
  });

  it('transformers-5 config (rope_parameters) and a tied checkpoint (no lm_head tensor) load too', async () => {
    const t5 = dir('t5-tied');
    const tied: LlamaConfig = { ...config, tieWordEmbeddings: true };
    const tiedWeights = new Map([...w].filter(([k]) => k !== 'lm_head.weight'));
    writeCheckpoint(t5, tied, tiedWeights, 'F32');
    const json = JSON.parse(fs.readFileSync(path.join(t5, 'config.json'), 'utf8'));
    delete json.rope_theta;
    delete json.rope_scaling;
    json.rope_parameters = { rope_theta: 500, rope_type: 'default' };
    fs.writeFileSync(path.join(t5, 'config.json'), JSON.stringify(json));
    const got = await withModel(t5, async (m) => {
      expect(m.config.tieWordEmbeddings).toBe(true);
      expect(m.config.ropeTheta).toBe(500);
      expect(m.weights.embed).toBeNull(); // the embedding is stored once
      return allLogits(m);
    });
    expect(maxAbsDiff(got, flat(referenceLogits(tied, tiedWeights, IDS)))).toBeLessThanOrEqual(1e-4);
  });

  it('loading and disposing leaves no tensors', async () => {
    const start = tf.memory().numTensors;
    await withModel(dir('bf16-2-shards'), allLogits);
    expect(tf.memory().numTensors).toBe(start);
  });
});

describe('the shipped models', () => {
  it('parameter counts match the training report', async () => {
    const report = JSON.parse(fs.readFileSync('data/models/report.json', 'utf8'));
    for (const which of ['target', 'draft']) {
      const config = configFromHF(JSON.parse(fs.readFileSync(`data/models/${which}/config.json`, 'utf8')));
      expect(llamaSizes(config).params).toBe(report[which].params);
      await withModel(`data/models/${which}`, async (m) => {
        // tied: the embedding is held once, as the LM head; on wasm each matrix also has the
        // decode GEMV's tiled copy, as many bytes again
        const w = m.weights;
        const copies = [...w.layers.flatMap((L) => (L.packed ? Object.values(L.packed) : [])), w.lmHeadPacked];
        const copyBytes = copies.reduce((n, t) => n + (t ? t.size * 4 : 0), 0);
        expect(copyBytes).toBeGreaterThan(0);
        expect(m.weightBytes() - copyBytes).toBe(llamaSizes(config).weightBytes);
      });
    }
  });
});

describe('random-weight presets', () => {
  let shrunk: string;
  beforeAll(() => {
    // random-125m's rule and head layout, shrunk for speed
    const json = JSON.parse(fs.readFileSync('data/presets/random-125m.json', 'utf8'));
    Object.assign(json, {
      hidden_size: 72,
      intermediate_size: 96,
      num_hidden_layers: 2,
      vocab_size: 256,
      max_position_embeddings: 128,
    });
    json.inference_lab.preset = 'random-125m-shrunk';
    shrunk = path.join(tmp, 'random-125m-shrunk.json');
    fs.writeFileSync(shrunk, JSON.stringify(json));
  });

  it('are found by name and have the published parameter counts', () => {
    expect(listPresets()).toEqual(expect.arrayContaining(['random-125m', 'random-1b', 'random-llama3-8b']));
    // SmolLM2-135M, TinyLlama-1.1B, Meta-Llama-3-8B as published
    expect(llamaSizes(loadPreset('random-125m').config).params).toBe(134_515_008);
    expect(llamaSizes(loadPreset('random-1b').config).params).toBe(1_100_048_384);
    expect(llamaSizes(loadPreset('random-llama3-8b').config).params).toBe(8_030_261_248);
    expect(loadPreset('random-125m').init).toEqual({ seed: 0, std: 0.02, distribution: 'uniform' });
  });

  it('follow the rule: uniform in [-std*sqrt(3), std*sqrt(3)], own stream per tensor, norms 1', () => {
    const { config, init } = loadPreset(shrunk);
    const src = randomWeights(config, init.seed, init.std);
    const bound = init.std * Math.sqrt(3);
    const emb = src.get('model.embed_tokens.weight').data;
    let sum = 0;
    let sq = 0;
    for (const x of emb) {
      expect(Math.abs(x)).toBeLessThanOrEqual(bound);
      sum += x;
      sq += x * x;
    }
    const mean = sum / emb.length;
    const std = Math.sqrt(sq / emb.length - mean * mean);
    expect(Math.abs(mean)).toBeLessThan(0.05 * init.std);
    expect(Math.abs(std / init.std - 1)).toBeLessThan(0.05);
    expect(src.get('model.layers.0.input_layernorm.weight').data.every((x) => x === 1)).toBe(true);
    expect(src.get('model.norm.weight').data.every((x) => x === 1)).toBe(true);
    // same-shaped tensors get different streams
    const q0 = src.get('model.layers.0.self_attn.q_proj.weight').data;
    const q1 = src.get('model.layers.1.self_attn.q_proj.weight').data;
    expect(maxAbsDiff(q0, q1)).toBeGreaterThan(0);
    expect(src.get('model.layers.0.self_attn.q_proj.weight').data).toEqual(q0);
  });

  it('load from a preset file: same seed -> same weights, another seed -> different', async () => {
    const a = await withModel(shrunk, allLogits);
    const b = await withModel(shrunk, allLogits);
    expect(maxAbsDiff(a, b)).toBe(0);
    const c = await withModel(shrunk, allLogits, { seed: 1 });
    expect(maxAbsDiff(a, c)).toBeGreaterThan(0);
    const weights = await withModel(shrunk, async (m) => m.weights.layers[1].wDown.data());
    const weights1 = await withModel(shrunk, async (m) => m.weights.layers[1].wDown.data(), { seed: 1 });
    expect(maxAbsDiff(weights, weights1)).toBeGreaterThan(0);
    await withModel(shrunk, async (m) => {
      expect(m.name).toBe('random-125m-shrunk');
      expect(m.config.numKvHeads).toBe(3);
      expect(m.config.ropeTheta).toBe(100000);
    });
  });

  it('a preset too big for the wasm backend is refused before any weight is made', async () => {
    const start = tf.memory().numTensors;
    await expect(loadModel('random-1b')).rejects.toThrow(/4.4 GB of fp32 weights .* wasm backend can address/);
    expect(tf.memory().numTensors).toBe(start);
  });

  it('unknown presets and non-preset files are clear errors', async () => {
    await expect(loadModel('random-does-not-exist')).rejects.toThrow(
      /neither a model directory nor a preset \(known presets: .*random-125m/,
    );
    await expect(loadModel('data/models/target/config.json')).rejects.toThrow(/not a preset .*pass its directory/);
    await expect(loadModel(shrunk, { seed: -1 })).rejects.toThrow(/seed must be an integer/);
  });
});

describe('bad configs and checkpoints give clear errors', () => {
  const base = () => JSON.parse(fs.readFileSync('data/models/target/config.json', 'utf8'));
  const cases: [string, (j: Record<string, unknown>) => void, RegExp][] = [
    ['missing field', (j) => delete j.hidden_size, /missing required field hidden_size/],
    ['kv heads', (j) => (j.num_key_value_heads = 4), /num_key_value_heads \(numKvHeads\) = 4: must divide num_attention_heads \(6\)/],
    ['not an integer', (j) => (j.vocab_size = 'big'), /vocab_size \(vocabSize\) = "big": must be a positive integer/],
    ['odd head dim', (j) => (j.head_dim = 63), /head_dim \(headDim\) = 63: must be even/],
    [
      'scaled rope',
      (j) => (j.rope_parameters = { rope_type: 'llama3', rope_theta: 5e5 }),
      /rope_parameters .*unsupported rope_type 'llama3'/,
    ],
    ['old scaled rope', (j) => (j.rope_scaling = { type: 'linear', factor: 2 }), /rope_scaling .*unsupported rope_type 'linear'/],
    ['biases', (j) => (j.attention_bias = true), /attention_bias = true: biases are not supported/],
    ['architecture', (j) => (j.model_type = 'mistral'), /model_type = "mistral": unsupported model type/],
    ['activation', (j) => (j.hidden_act = 'gelu'), /hidden_act = "gelu": unsupported activation/],
    ['eos', (j) => (j.eos_token_id = [0, 9000]), /eos_token_id \(eosTokenIds\) = \[0,9000\]: must be a list of integers in \[0, 8192\)/],
  ];
  for (const [name, edit, message] of cases) {
    it(`config: ${name}`, () => {
      const j = base();
      edit(j);
      expect(() => configFromHF(j, 'config.json')).toThrow(message);
    });
  }

  it('checkpoint: bad JSON, missing or misshapen tensors, missing lm_head, missing shard, unsupported dtype', async () => {
    const start = tf.memory().numTensors;
    const config = tinyConfig();
    const w = makeWeights(config, 5);
    const make = (name: string, edit: (dir: string) => void) => {
      const d = path.join(tmp, `bad-${name}`);
      writeCheckpoint(d, config, w, 'BF16', name === 'shard' ? 2 : 1);
      edit(d);
      return d;
    };
    const noDown = new Map(w);
    noDown.delete('model.layers.1.mlp.down_proj.weight');
    await expect(loadModel(make('json', (d) => fs.writeFileSync(path.join(d, 'config.json'), '{"vocab_size": 9,')))).rejects.toThrow(
      /config.json: not valid JSON/,
    );
    await expect(loadModel(make('missing', (d) => writeCheckpoint(d, { ...config }, noDown, 'BF16')))).rejects.toThrow(
      /missing tensor 'model.layers.1.mlp.down_proj.weight'/,
    );
    await expect(
      loadModel(
        make('shape', (d) => {
          const j = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8'));
          j.intermediate_size = 40;
          fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(j));
        }),
      ),
    ).rejects.toThrow(/tensor 'model.layers.0.mlp.gate_proj.weight' has shape \[48,32\], config needs \[40,32\]/);
    const noHead = new Map(w);
    noHead.delete('lm_head.weight');
    await expect(
      loadModel(
        make('head', (d) => {
          fs.rmSync(path.join(d, 'model.safetensors'));
          writeCheckpoint(d, { ...config, tieWordEmbeddings: true }, noHead, 'BF16');
          const j = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8'));
          j.tie_word_embeddings = false;
          fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(j));
        }),
      ),
    ).rejects.toThrow(/tie_word_embeddings = false but there is no 'lm_head.weight'/);
    await expect(loadModel(make('shard', (d) => fs.rmSync(path.join(d, 'model-00002-of-00002.safetensors'))))).rejects.toThrow(
      /shard 'model-00002-of-00002.safetensors' .* does not exist/,
    );
    const f64 = make('dtype', (d) => {
      const bytes = encodeSafetensors([{ name: 'x', shape: [2], data: new Float32Array([1, 2]), dtype: 'F32' }]);
      const text = Buffer.from(bytes).toString('latin1').replace('"F32"', '"F64"');
      fs.writeFileSync(path.join(d, 'extra.safetensors'), Buffer.from(text, 'latin1'));
    });
    expect(() => SafetensorsFile.open(path.join(f64, 'extra.safetensors')).get('x')).toThrow(/unsupported dtype F64/);
    expect(() => SafetensorsFile.fromBytes(new Uint8Array([1, 0, 0]))).toThrow(/not a safetensors file/);
    expect(tf.memory().numTensors).toBe(start);
  });
});

describe('fp16 and bf16 conversions', () => {
  it('every float16 value survives f16 -> f32 -> f16', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f32ToF16(f16ToF32(all));
    for (let i = 0; i < 65536; i++) {
      const isNaN16 = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (isNaN16) expect(Number.isNaN(f16ToF32(new Uint16Array([back[i]]))[0])).toBe(true);
      else expect(back[i]).toBe(i);
    }
  });

  it('f32 -> f16 and f32 -> bf16 round to nearest even, overflow to infinity', () => {
    const half = (x: number) => f32ToF16(new Float32Array([x]))[0];
    expect(half(1)).toBe(0x3c00);
    expect(half(-2)).toBe(0xc000);
    expect(half(65504)).toBe(0x7bff);
    expect(half(65520)).toBe(0x7c00); // halfway to the next binade: rounds to even = inf
    expect(half(2 ** -24)).toBe(0x0001);
    expect(half(2 ** -25)).toBe(0x0000); // tie between 0 and the smallest subnormal: even
    expect(half(3 * 2 ** -25)).toBe(0x0002);
    expect(half(1 + 2 ** -11)).toBe(0x3c00); // tie: even
    expect(half(1 + 3 * 2 ** -11)).toBe(0x3c02);
    const bf = (x: number) => f32ToBf16(new Float32Array([x]))[0];
    expect(bf(1)).toBe(0x3f80);
    expect(bf(1 + 2 ** -8)).toBe(0x3f80); // tie: even
    expect(bf(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(bf16ToF32(new Uint16Array([0x3f82]))[0]).toBe(1 + 2 ** -6);
  });
});

describe('tokenizer', () => {
  it("encodes the oracle's texts to the oracle's ids and decodes them back", async () => {
    const golden = JSON.parse(fs.readFileSync('data/golden/golden.json', 'utf8'));
    const tok = await loadTokenizer('data/models/target');
    expect(tok.eosTokenIds).toEqual([0]);
    expect(tok.bosTokenId).toBe(0);
    expect(tok.vocabSize).toBe(8192);
    expect(tok.idToToken(0)).toBe('<|endoftext|>');
    for (const { text, ids } of golden.encodings as { text: string; ids: number[] }[]) {
      expect(tok.encode(text), JSON.stringify(text)).toEqual(ids);
      expect(tok.decode(ids)).toBe(text);
    }
    for (const p of golden.prompts as { text: string; ids: number[] }[]) expect(tok.encode(p.text)).toEqual(p.ids);
    expect(tok.decode([0, 296], { skipSpecialTokens: true })).toBe(tok.decode([296]));
    await expect(loadTokenizer(tmp)).rejects.toThrow(/no tokenizer.json/);
  });
});
