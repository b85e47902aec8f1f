// Llama model configuration: the typed config, its checks, and every derived size in one place.
//
// Shape letters used across lib/model and lib/kv:
//   B batch (sequences), T new tokens this step, S key slots attended over, V vocab,
//   Dm hidden size, H query heads, Hkv key/value heads, G = H / Hkv heads per kv group,
//   D head dim, F MLP intermediate size, L layers.

/** Architecture of a Llama-family decoder (lesson: "the model"). HF names in comments. */
export interface LlamaConfig {
  /** vocab_size (V) */
  vocabSize: number;
  /** hidden_size (Dm) */
  hiddenSize: number;
  /** intermediate_size (F) */
  intermediateSize: number;
  /** num_hidden_layers (L) */
  numLayers: number;
  /** num_attention_heads (H) */
  numHeads: number;
  /** num_key_value_heads (Hkv); equals numHeads for plain multi-head attention */
  numKvHeads: number;
  /** head_dim (D); hiddenSize / numHeads unless the checkpoint says otherwise */
  headDim: number;
  /** max_position_embeddings: the context length the model was trained for */
  maxPositions: number;
  /** rms_norm_eps */
  rmsNormEps: number;
  /** rope_theta (top level, or rope_parameters.rope_theta in transformers 5) */
  ropeTheta: number;
  /** tie_word_embeddings: the LM head reuses the embedding matrix */
  tieWordEmbeddings: boolean;
  /** bos_token_id, null when the checkpoint has none */
  bosTokenId: number | null;
  /** eos_token_id as a list (HF allows a number or a list) */
  eosTokenIds: number[];
}

/** Parameter counts and byte sizes derived from a config (fp32 weights, fp32 KV cache). */
export interface LlamaSizes {
  /** all parameters, a tied embedding counted once */
  params: number;
  /** embedding matrix [V, Dm] */
  embeddingParams: number;
  /** one decoder layer: attention + MLP + two norms */
  layerParams: number;
  /** untied LM head [Dm, V], 0 when tied */
  lmHeadParams: number;
  /** bytes of weights held in fp32 */
  weightBytes: number;
  /** weight bytes read to decode one token: every layer, the final norm and the LM head
   * (the embedding lookup reads one row, counted as Dm floats) */
  weightBytesPerToken: number;
  /** KV-cache bytes per token of context: 2 (K and V) x L x Hkv x D x 4 bytes */
  kvBytesPerToken: number;
}

const INT_FIELDS = [
  'vocabSize',
  'hiddenSize',
  'intermediateSize',
  'numLayers',
  'numHeads',
  'numKvHeads',
  'headDim',
  'maxPositions',
] as const;

/** HF field name for each config field, used in error messages. */
const HF_NAMES: Record<keyof LlamaConfig, string> = {
  vocabSize: 'vocab_size',
  hiddenSize: 'hidden_size',
  intermediateSize: 'intermediate_size',
  numLayers: 'num_hidden_layers',
  numHeads: 'num_attention_heads',
  numKvHeads: 'num_key_value_heads',
  headDim: 'head_dim',
  maxPositions: 'max_position_embeddings',
  rmsNormEps: 'rms_norm_eps',
  ropeTheta: 'rope_theta',
  tieWordEmbeddings: 'tie_word_embeddings',
  bosTokenId: 'bos_token_id',
  eosTokenIds: 'eos_token_id',
};

/** The fields a config must give; the rest have defaults (see resolveLlamaConfig). */
export type LlamaConfigInput = Pick<LlamaConfig, 'vocabSize' | 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads'> &
  Partial<LlamaConfig>;

/**
 * Fill defaults and check a config: numKvHeads = numHeads, headDim = hiddenSize / numHeads,
 * maxPositions 2048, rmsNormEps 1e-5, ropeTheta 10000, untied, no bos, no eos.
 * Throws an Error naming the bad field (with its HF name) and the rule it breaks.
 */
export function resolveLlamaConfig(input: LlamaConfigInput, source = 'config'): LlamaConfig {
  const numHeads = input.numHeads;
  const c: LlamaConfig = {
    vocabSize: input.vocabSize,
    hiddenSize: input.hiddenSize,
    intermediateSize: input.intermediateSize,
    numLayers: input.numLayers,
    numHeads,
    numKvHeads: input.numKvHeads ?? numHeads,
    headDim: input.headDim ?? (Number.isInteger(input.hiddenSize / numHeads) ? input.hiddenSize / numHeads : NaN),
    maxPositions: input.maxPositions ?? 2048,
    rmsNormEps: input.rmsNormEps ?? 1e-5,
    ropeTheta: input.ropeTheta ?? 10000,
    tieWordEmbeddings: input.tieWordEmbeddings ?? false,
    bosTokenId: input.bosTokenId ?? null,
    eosTokenIds: input.eosTokenIds ?? [],
  };
  const bad = (field: keyof LlamaConfig, rule: string): never => {
    throw new Error(`${source}: invalid ${HF_NAMES[field]} (${field}) = ${JSON.stringify(c[field])}: ${rule}`);
  };
  for (const f of INT_FIELDS) {
    const v = c[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      if (f === 'headDim' && input.headDim === undefined) {
        bad('numHeads', `must divide hidden_size (${c.hiddenSize}) when head_dim is not given`);
      }
      bad(f, 'must be a positive integer');
    }
  }
  if (c.numHeads % c.numKvHeads !== 0) {
    bad('numKvHeads', `must divide num_attention_heads (${c.numHeads})`);
  }
  if (c.headDim % 2 !== 0) bad('headDim', 'must be even (RoPE rotates pairs)');
  if (!(typeof c.rmsNormEps === 'number' && c.rmsNormEps > 0 && c.rmsNormEps < 1)) {
    bad('rmsNormEps', 'must be a number in (0, 1)');
  }
  if (!(typeof c.ropeTheta === 'number' && Number.isFinite(c.ropeTheta) && c.ropeTheta > 1)) {
    bad('ropeTheta', 'must be a finite number > 1');
  }
  if (typeof c.tieWordEmbeddings !== 'boolean') bad('tieWordEmbeddings', 'must be a boolean');
  const isId = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < c.vocabSize;
  if (c.bosTokenId !== null && !isId(c.bosTokenId)) {
    bad('bosTokenId', `must be null or an integer in [0, ${c.vocabSize})`);
  }
  if (!Array.isArray(c.eosTokenIds) || !c.eosTokenIds.every(isId)) {
    bad('eosTokenIds', `must be a list of integers in [0, ${c.vocabSize})`);
  }
  return c;
}

type Json = Record<string, unknown>;

/**
 * Read an HF `config.json` object (LlamaForCausalLM, transformers 4 or 5 layout) into a
 * LlamaConfig. Rejects what this runtime does not implement (biases, other activations,
 * scaled RoPE, other architectures) with an error naming the field.
 */
export function configFromHF(json: unknown, source = 'config.json'): LlamaConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${source}: expected a JSON object`);
  }
  const j = json as Json;
  const fail = (field: string, rule: string): never => {
    throw new Error(`${source}: ${field} = ${JSON.stringify(j[field])}: ${rule}`);
  };
  const modelType = j.model_type;
  if (modelType !== undefined && modelType !== 'llama') {
    fail('model_type', `unsupported model type (only 'llama' is implemented)`);
  }
  const act = j.hidden_act ?? 'silu';
  if (act !== 'silu') fail('hidden_act', `unsupported activation (only 'silu')`);
  for (const f of ['attention_bias', 'mlp_bias']) {
    if (j[f] !== undefined && j[f] !== false) fail(f, 'biases are not supported');
  }
  if (j.pretraining_tp !== undefined && j.pretraining_tp !== 1) {
    fail('pretraining_tp', 'must be 1');
  }
  // rope: transformers 5 puts theta and type in rope_parameters; older ones use
  // top-level rope_theta and an optional rope_scaling
  const ropeParams = (j.rope_parameters ?? null) as Json | null;
  const ropeScaling = (j.rope_scaling ?? null) as Json | null;
  for (const [field, p] of [
    ['rope_parameters', ropeParams],
    ['rope_scaling', ropeScaling],
  ] as const) {
    if (p === null) continue;
    if (typeof p !== 'object') fail(field, 'must be an object or null');
    const type = p.rope_type ?? p.type ?? 'default';
    if (type !== 'default') {
      fail(field, `unsupported rope_type '${String(type)}' (only 'default' RoPE is implemented)`);
    }
  }
  const theta = ropeParams?.rope_theta ?? j.rope_theta;
  for (const f of ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads']) {
    if (j[f] === undefined) throw new Error(`${source}: missing required field ${f}`);
  }
  const num = (v: unknown) => v as number;
  const opt = (v: unknown) => (v === undefined || v === null ? undefined : (v as number));
  const eos = j.eos_token_id;
  const eosTokenIds = eos === undefined || eos === null ? [] : Array.isArray(eos) ? (eos as number[]) : [eos as number];
  return resolveLlamaConfig(
    {
      vocabSize: num(j.vocab_size),
      hiddenSize: num(j.hidden_size),
      intermediateSize: num(j.intermediate_size),
      numLayers: num(j.num_hidden_layers),
      numHeads: num(j.num_attention_heads),
      numKvHeads: opt(j.num_key_value_heads),
      headDim: opt(j.head_dim),
      maxPositions: opt(j.max_position_embeddings),
      rmsNormEps: opt(j.rms_norm_eps),
      ropeTheta: opt(theta),
      // transformers' LlamaConfig defaults tie_word_embeddings to false
      tieWordEmbeddings: (j.tie_word_embeddings ?? false) as boolean,
      bosTokenId: (j.bos_token_id ?? null) as number | null,
      eosTokenIds,
    },
    source,
  );
}

/** The inverse of configFromHF: an HF-style config.json object for this config. */
export function configToHF(c: LlamaConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    max_position_embeddings: c.maxPositions,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieWordEmbeddings,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
  };
}

/** Parameter counts and bytes for a config (lesson: "why decode is memory-bound"). */
export function llamaSizes(c: LlamaConfig): LlamaSizes {
  const { hiddenSize: Dm, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F } = c;
  const attn = Dm * H * D + 2 * Dm * Hkv * D + H * D * Dm; // q, k, v, o
  const mlp = 3 * Dm * F; // gate, up, down
  const layerParams = attn + mlp + 2 * Dm;
  const embeddingParams = c.vocabSize * Dm;
  const lmHeadParams = c.tieWordEmbeddings ? 0 : c.vocabSize * Dm;
  const params = embeddingParams + c.numLayers * layerParams + Dm + lmHeadParams;
  const perToken = c.numLayers * layerParams + Dm + c.vocabSize * Dm + Dm;
  return {
    params,
    embeddingParams,
    layerParams,
    lmHeadParams,
    weightBytes: 4 * params,
    weightBytesPerToken: 4 * perToken,
    kvBytesPerToken: 2 * c.numLayers * Hkv * D * 4,
  };
}
