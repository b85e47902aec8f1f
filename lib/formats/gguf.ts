// GGUF export: writes an HF Llama checkpoint as a GGUF file that llama.cpp (and node-llama-cpp) load.
// It gives the course a second, independent oracle on the CPU (lesson 0, "our models").
//
// Format (ggml docs/gguf.md, version 3), all little-endian:
//   magic "GGUF" | u32 version | u64 tensor count | u64 metadata count
//   metadata: (string key, u32 type, value)*      string = u64 byte length + UTF-8 bytes
//   tensor infos: (string name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset)*
//   padding to `general.alignment`, then tensor data, each tensor starting at an aligned offset.
// Dims are written innermost first (ggml's ne[0] = row length): a torch weight [out, in] is [in, out].
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { f32ToF16 } from './dtype';
import { HostTensor, SafetensorsCheckpoint } from './safetensors';

// ---- metadata values

const GGUF_TYPE = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;
type Scalar = 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'u64';

/** One typed GGUF metadata value. Arrays hold one scalar type. */
export type GGUFValue =
  | { type: 'u32' | 'i32' | 'f32'; value: number }
  | { type: 'u64'; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: 'i32' | 'string'; value: (number | string)[] };

/** A tensor to write: `shape` in torch (row-major, outermost first) order. */
export interface GGUFTensor {
  name: string;
  shape: number[];
  data: Float32Array;
  type: 'F32' | 'F16';
}

const GGML_TYPE = { F32: 0, F16: 1 } as const;
const BYTES = { F32: 4, F16: 2 } as const;
export const GGUF_ALIGNMENT = 32;

/** Appends little-endian values to a growing list of chunks. */
class ByteWriter {
  private chunks: Buffer[] = [];
  length = 0;
  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.push(b); }
  i32(v: number): void { const b = Buffer.alloc(4); b.writeInt32LE(v); this.push(b); }
  f32(v: number): void { const b = Buffer.alloc(4); b.writeFloatLE(v); this.push(b); }
  u64(v: bigint | number): void { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.push(b); }
  bool(v: boolean): void { this.push(Buffer.from([v ? 1 : 0])); }
  string(s: string): void { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.push(b); }
  bytes(b: Buffer): void { this.push(b); }
  pad(alignment: number): void { const n = (alignment - (this.length % alignment)) % alignment; if (n) this.push(Buffer.alloc(n)); }
  scalar(type: Scalar, v: number | string | boolean | bigint): void {
    if (type === 'string') this.string(v as string);
    else if (type === 'bool') this.bool(v as boolean);
    else if (type === 'u64') this.u64(v as bigint);
    else this[type](v as number);
  }
  toBuffer(): Buffer { return Buffer.concat(this.chunks, this.length); }
}

function tensorBytes(t: GGUFTensor): Buffer {
  if (t.type === 'F32') return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const half = f32ToF16(t.data);
  return Buffer.from(half.buffer, half.byteOffset, half.byteLength);
}

/** Serializes metadata and tensors into one GGUF v3 file image. */
export function writeGGUF(metadata: [string, GGUFValue][], tensors: GGUFTensor[]): Buffer {
  const w = new ByteWriter();
  w.u32(0x46554747); // "GGUF"
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, v] of metadata) {
    w.string(key);
    w.u32(GGUF_TYPE[v.type]);
    if (v.type === 'array') {
      w.u32(GGUF_TYPE[v.itemType]);
      w.u64(v.value.length);
      for (const item of v.value) w.scalar(v.itemType, item);
    } else {
      w.scalar(v.type, v.value);
    }
  }
  const datas = tensors.map(tensorBytes);
  let offset = 0;
  tensors.forEach((t, i) => {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new Error(`tensor ${t.name}: shape [${t.shape}] holds ${count} values, data has ${t.data.length}`);
    w.string(t.name);
    w.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) w.u64(d); // innermost first
    w.u32(GGML_TYPE[t.type]);
    w.u64(offset);
    offset += Math.ceil(datas[i].length / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
    if (datas[i].length !== count * BYTES[t.type]) throw new Error(`tensor ${t.name}: bad byte size`);
  });
  w.pad(GGUF_ALIGNMENT);
  for (const d of datas) {
    w.bytes(d);
    w.pad(GGUF_ALIGNMENT);
  }
  return w.toBuffer();
}

// ---- llama: HF names/layouts -> llama.cpp names/layouts

/**
 * HF applies RoPE to the two halves of each head (rotate_half); llama.cpp's `llama` arch rotates
 * adjacent pairs. Reorder each head's rows so that pair (2j, 2j+1) holds HF's (j, j + D/2):
 * new row h*D + 2j + t = old row h*D + t*D/2 + j  (convert_hf_to_gguf.py's `permute`).
 */
export function permuteForAdjacentRope(w: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const D = rows / heads;
  const half = D / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < half; j++)
      for (let t = 0; t < 2; t++) {
        const src = (h * D + t * half + j) * cols;
        const dst = (h * D + 2 * j + t) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
  return out;
}

/** The subset of an HF Llama config.json the export needs. */
export interface HFLlamaConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta?: number;
  rope_parameters?: { rope_theta?: number; rope_type?: string };
  tie_word_embeddings?: boolean;
  bos_token_id?: number;
  eos_token_id?: number | number[];
}


/** tokenizer.json (HF `tokenizers`) fields used for the byte-level BPE vocab. */
interface TokenizerJson {
  model: { type: string; vocab: Record<string, number>; merges: (string | [string, string])[] };
  added_tokens?: { id: number; content: string; special: boolean }[];
  pre_tokenizer?: { type: string };
}

/** GGUF tokenizer metadata for a byte-level BPE (GPT-2 style) tokenizer.json. */
export function tokenizerMetadata(tok: TokenizerJson, config: HFLlamaConfig): [string, GGUFValue][] {
  if (tok.model.type !== 'BPE') throw new Error(`GGUF export supports byte-level BPE tokenizers, got model type ${tok.model.type}`);
  const size = config.vocab_size;
  const tokens: string[] = new Array(size);
  const types: number[] = new Array(size).fill(1); // 1 = normal
  for (const [piece, id] of Object.entries(tok.model.vocab)) tokens[id] = piece;
  for (const a of tok.added_tokens ?? []) {
    tokens[a.id] = a.content;
    types[a.id] = a.special ? 3 : 4; // 3 = control, 4 = user defined
  }
  for (let i = 0; i < size; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`; // llama.cpp expects vocab_size entries
      types[i] = 5; // unused
    }
  }
  const merges = tok.model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const eos = Array.isArray(config.eos_token_id) ? config.eos_token_id[0] : config.eos_token_id;
  return [
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: 'gpt-2' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: types }],
    ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: merges }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: config.bos_token_id ?? eos ?? 0 }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: eos ?? 0 }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: false }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
  ];
}

/** Model metadata + renamed, re-laid-out tensors for llama.cpp's `llama` architecture. */
export function llamaToGGUF(
  config: HFLlamaConfig,
  weights: Map<string, HostTensor>,
  tokenizer: TokenizerJson,
  opts: { name: string; type?: 'F32' | 'F16' },
): { metadata: [string, GGUFValue][]; tensors: GGUFTensor[] } {
  const type = opts.type ?? 'F32';
  const H = config.num_attention_heads;
  const Hkv = config.num_key_value_heads ?? H;
  const D = config.head_dim ?? config.hidden_size / H;
  const ropeTheta = config.rope_parameters?.rope_theta ?? config.rope_theta ?? 10000;
  const ropeType = config.rope_parameters?.rope_type ?? 'default';
  if (ropeType !== 'default') throw new Error(`GGUF export: rope_type ${ropeType} is not supported (only default RoPE)`);
  const get = (name: string): HostTensor => {
    const t = weights.get(name);
    if (!t) throw new Error(`GGUF export: checkpoint has no tensor ${name}`);
    return t;
  };
  const tensors: GGUFTensor[] = [];
  // norms stay F32 (llama.cpp does the same); 2-D weights take the chosen type
  const add = (name: string, t: HostTensor, data = t.data): void => {
    tensors.push({ name, shape: t.shape, data, type: t.shape.length === 1 ? 'F32' : type });
  };
  add('token_embd.weight', get('model.embed_tokens.weight'));
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    const q = get(p + 'self_attn.q_proj.weight'); // [H*D, hidden]
    const k = get(p + 'self_attn.k_proj.weight'); // [Hkv*D, hidden]
    add(`blk.${l}.attn_norm.weight`, get(p + 'input_layernorm.weight'));
    add(`blk.${l}.attn_q.weight`, q, permuteForAdjacentRope(q.data, H * D, q.shape[1], H));
    add(`blk.${l}.attn_k.weight`, k, permuteForAdjacentRope(k.data, Hkv * D, k.shape[1], Hkv));
    add(`blk.${l}.attn_v.weight`, get(p + 'self_attn.v_proj.weight'));
    add(`blk.${l}.attn_output.weight`, get(p + 'self_attn.o_proj.weight'));
    add(`blk.${l}.ffn_norm.weight`, get(p + 'post_attention_layernorm.weight'));
    add(`blk.${l}.ffn_gate.weight`, get(p + 'mlp.gate_proj.weight'));
    add(`blk.${l}.ffn_up.weight`, get(p + 'mlp.up_proj.weight'));
    add(`blk.${l}.ffn_down.weight`, get(p + 'mlp.down_proj.weight'));
  }
  add('output_norm.weight', get('model.norm.weight'));
  // tied embeddings: llama.cpp reuses token_embd when output.weight is absent
  if (!config.tie_word_embeddings) add('output.weight', get('lm_head.weight'));

  const metadata: [string, GGUFValue][] = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: opts.name }],
    ['general.alignment', { type: 'u32', value: GGUF_ALIGNMENT }],
    ['general.file_type', { type: 'u32', value: type === 'F32' ? 0 : 1 }],
    ['llama.context_length', { type: 'u32', value: config.max_position_embeddings }],
    ['llama.embedding_length', { type: 'u32', value: config.hidden_size }],
    ['llama.block_count', { type: 'u32', value: config.num_hidden_layers }],
    ['llama.feed_forward_length', { type: 'u32', value: config.intermediate_size }],
    ['llama.attention.head_count', { type: 'u32', value: H }],
    ['llama.attention.head_count_kv', { type: 'u32', value: Hkv }],
    ['llama.attention.key_length', { type: 'u32', value: D }],
    ['llama.attention.value_length', { type: 'u32', value: D }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: config.rms_norm_eps }],
    ['llama.rope.freq_base', { type: 'f32', value: ropeTheta }],
    ['llama.rope.dimension_count', { type: 'u32', value: D }],
    ['llama.vocab_size', { type: 'u32', value: config.vocab_size }],
    ...tokenizerMetadata(tokenizer, config),
  ];
  return { metadata, tensors };
}

/**
 * Exports an HF Llama directory (config.json, safetensors, tokenizer.json) to a GGUF file.
 * Returns the file's size in bytes. Taught in lesson 0 ("our models and our oracles").
 */
export function exportGGUF(modelDir: string, outPath: string, opts: { type?: 'F32' | 'F16'; name?: string } = {}): number {
  const config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as HFLlamaConfig;
  const tokenizer = JSON.parse(readFileSync(join(modelDir, 'tokenizer.json'), 'utf8')) as TokenizerJson;
  const checkpoint = SafetensorsCheckpoint.open(modelDir);
  const weights = new Map(checkpoint.names().map((n) => [n, checkpoint.get(n)]));
  checkpoint.close();
  const { metadata, tensors } = llamaToGGUF(config, weights, tokenizer, {
    name: opts.name ?? modelDir.split('/').filter(Boolean).pop() ?? 'model',
    type: opts.type,
  });
  const bytes = writeGGUF(metadata, tensors);
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, bytes);
  return bytes.length;
}
