// GGUF writer: file structure (parsed back by a minimal reader written here from the spec), Q/K row
// permutation for llama.cpp's adjacent-pair RoPE, F16 packing, and clear errors.
import { describe, expect, it } from 'vitest';

import { GGUF_ALIGNMENT, llamaToGGUF, permuteForAdjacentRope, writeGGUF, type GGUFValue, type HFLlamaConfig } from '../lib/formats/gguf';
import type { HostTensor } from '../lib/formats/safetensors';

/** Reads back header, metadata and tensor infos of a GGUF image (spec: ggml docs/gguf.md). */
function parseGGUF(buf: Buffer) {
  let o = 0;
  const u32 = () => { const v = buf.readUInt32LE(o); o += 4; return v; };
  const u64 = () => { const v = Number(buf.readBigUInt64LE(o)); o += 8; return v; };
  const str = () => { const n = u64(); const s = buf.subarray(o, o + n).toString('utf8'); o += n; return s; };
  const value = (type: number): unknown => {
    switch (type) {
      case 4: return u32();
      case 5: { const v = buf.readInt32LE(o); o += 4; return v; }
      case 6: { const v = buf.readFloatLE(o); o += 4; return v; }
      case 7: return buf[o++] === 1;
      case 8: return str();
      case 10: return u64();
      case 9: { const t = u32(); const n = u64(); return Array.from({ length: n }, () => value(t)); }
      default: throw new Error(`type ${type}`);
    }
  };
  const magic = buf.subarray(0, 4).toString('latin1'); o = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const meta = new Map<string, unknown>();
  for (let i = 0; i < nKv; i++) { const k = str(); meta.set(k, value(u32())); }
  const tensors = Array.from({ length: nTensors }, () => {
    const name = str();
    const dims = Array.from({ length: u32() }, () => u64());
    return { name, dims, type: u32(), offset: u64() };
  });
  const dataStart = Math.ceil(o / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  return { magic, version, meta, tensors, dataStart };
}

describe('writeGGUF', () => {
  it('writes a file a spec reader reads back: metadata, reversed dims, aligned data', () => {
    const a = Float32Array.from({ length: 6 }, (_, i) => i + 0.5); // torch shape [2, 3]
    const b = Float32Array.from([1, -2, 3]);
    const meta: [string, GGUFValue][] = [
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['x.count', { type: 'u32', value: 7 }],
      ['x.eps', { type: 'f32', value: 1e-5 }],
      ['x.flag', { type: 'bool', value: true }],
      ['x.list', { type: 'array', itemType: 'string', value: ['Ġa', 'b c', '<|endoftext|>'] }],
      ['x.ints', { type: 'array', itemType: 'i32', value: [1, -3, 5] }],
    ];
    const buf = writeGGUF(meta, [
      { name: 'a', shape: [2, 3], data: a, type: 'F32' },
      { name: 'b', shape: [3], data: b, type: 'F16' },
    ]);
    const g = parseGGUF(buf);
    expect(g.magic).toBe('GGUF');
    expect(g.version).toBe(3);
    expect(g.meta.get('general.architecture')).toBe('llama');
    expect(g.meta.get('x.count')).toBe(7);
    expect(g.meta.get('x.eps')).toBeCloseTo(1e-5, 10);
    expect(g.meta.get('x.flag')).toBe(true);
    expect(g.meta.get('x.list')).toEqual(['Ġa', 'b c', '<|endoftext|>']);
    expect(g.meta.get('x.ints')).toEqual([1, -3, 5]);
    expect(g.tensors.map((t) => [t.name, t.dims, t.type])).toEqual([['a', [3, 2], 0], ['b', [3], 1]]);
    for (const t of g.tensors) expect(t.offset % GGUF_ALIGNMENT).toBe(0);
    const at = g.dataStart + g.tensors[0].offset;
    expect(Array.from(new Float32Array(buf.buffer.slice(buf.byteOffset + at, buf.byteOffset + at + 24)))).toEqual(Array.from(a));
    const bt = g.dataStart + g.tensors[1].offset;
    expect([0, 1, 2].map((i) => buf.readUInt16LE(bt + 2 * i))).toEqual([0x3c00, 0xc000, 0x4200]); // 1, -2, 3 in f16
  });

  it('rejects a tensor whose data does not fill its shape', () => {
    expect(() => writeGGUF([], [{ name: 'w', shape: [2, 2], data: new Float32Array(3), type: 'F32' }])).toThrow(/w: shape \[2,2\] holds 4 values, data has 3/);
  });
});

describe('permuteForAdjacentRope', () => {
  it('moves HF half-split pairs (j, j + D/2) next to each other, per head', () => {
    const heads = 2, D = 4, cols = 1;
    const w = Float32Array.from({ length: heads * D }, (_, i) => i); // row r holds value r
    // head 0 rows [0 1 | 2 3] -> pairs (0,2) (1,3); head 1 rows [4 5 | 6 7] -> (4,6) (5,7)
    expect(Array.from(permuteForAdjacentRope(w, heads * D, cols, heads))).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
  });

  it('keeps whole rows together', () => {
    const w = Float32Array.from({ length: 4 * 3 }, (_, i) => i); // 4 rows of 3
    const p = permuteForAdjacentRope(w, 4, 3, 1);
    expect(Array.from(p)).toEqual([0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]);
  });
});

describe('llamaToGGUF', () => {
  const config: HFLlamaConfig = {
    vocab_size: 4, hidden_size: 4, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 2,
    num_key_value_heads: 1, max_position_embeddings: 16, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
  };
  const tokenizer = { model: { type: 'BPE', vocab: { a: 1, b: 2, ab: 3 }, merges: [['a', 'b'] as [string, string]] }, added_tokens: [{ id: 0, content: '<|endoftext|>', special: true }] };
  const t = (...shape: number[]): HostTensor => ({ shape, data: new Float32Array(shape.reduce((x, y) => x * y, 1)) });
  const weights = new Map<string, HostTensor>([
    ['model.embed_tokens.weight', t(4, 4)], ['model.norm.weight', t(4)],
    ['model.layers.0.input_layernorm.weight', t(4)], ['model.layers.0.post_attention_layernorm.weight', t(4)],
    ['model.layers.0.self_attn.q_proj.weight', t(4, 4)], ['model.layers.0.self_attn.k_proj.weight', t(2, 4)],
    ['model.layers.0.self_attn.v_proj.weight', t(2, 4)], ['model.layers.0.self_attn.o_proj.weight', t(4, 4)],
    ['model.layers.0.mlp.gate_proj.weight', t(8, 4)], ['model.layers.0.mlp.up_proj.weight', t(8, 4)],
    ['model.layers.0.mlp.down_proj.weight', t(4, 8)],
  ]);

  it('names tensors as llama.cpp expects, omits output.weight when tied, keeps norms F32', () => {
    const { metadata, tensors } = llamaToGGUF(config, weights, tokenizer, { name: 'tiny', type: 'F16' });
    expect(tensors.map((x) => x.name)).toEqual(['token_embd.weight', 'blk.0.attn_norm.weight', 'blk.0.attn_q.weight', 'blk.0.attn_k.weight',
      'blk.0.attn_v.weight', 'blk.0.attn_output.weight', 'blk.0.ffn_norm.weight', 'blk.0.ffn_gate.weight', 'blk.0.ffn_up.weight',
      'blk.0.ffn_down.weight', 'output_norm.weight']);
    expect(tensors.filter((x) => x.shape.length === 1).every((x) => x.type === 'F32')).toBe(true);
    expect(tensors.filter((x) => x.shape.length === 2).every((x) => x.type === 'F16')).toBe(true);
    const m = new Map(metadata);
    expect(m.get('llama.attention.head_count_kv')).toEqual({ type: 'u32', value: 1 });
    expect(m.get('tokenizer.ggml.tokens')).toEqual({ type: 'array', itemType: 'string', value: ['<|endoftext|>', 'a', 'b', 'ab'] });
    expect(m.get('tokenizer.ggml.token_type')).toEqual({ type: 'array', itemType: 'i32', value: [3, 1, 1, 1] });
    expect(m.get('tokenizer.ggml.merges')).toEqual({ type: 'array', itemType: 'string', value: ['a b'] });
  });

  it('adds output.weight for untied checkpoints and names what is missing', () => {
    expect(() => llamaToGGUF({ ...config, tie_word_embeddings: false }, weights, tokenizer, { name: 'x' })).toThrow(/no tensor lm_head.weight/);
    const withHead = new Map(weights).set('lm_head.weight', t(4, 4));
    expect(llamaToGGUF({ ...config, tie_word_embeddings: false }, withHead, tokenizer, { name: 'x' }).tensors.at(-1)?.name).toBe('output.weight');
  });

  it('refuses what it cannot represent', () => {
    expect(() => llamaToGGUF({ ...config, rope_parameters: { rope_type: 'llama3' } }, weights, tokenizer, { name: 'x' })).toThrow(/rope_type llama3/);
    expect(() => llamaToGGUF(config, weights, { model: { ...tokenizer.model, type: 'Unigram' } }, { name: 'x' })).toThrow(/byte-level BPE/);
  });
});
