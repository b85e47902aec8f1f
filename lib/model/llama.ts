// Llama forward pass in TensorFlow.js: embedding, RMSNorm, RoPE (as HF applies it), grouped-
// query attention, SwiGLU MLP, tied or untied LM head. One forward = one step over a batch of
// sequences of different lengths; prefill and decode are the same call with more or fewer
// tokens. Keys and values go through a KVCache (lib/kv), which also lays out the batch.
//
// Shape letters: see config.ts. N = B*T rows of activations.

import * as tf from '@tensorflow/tfjs-core';

import { attentionMask, usedSpan, type KVCache, type KVShape, type StepPlan, type WritableLayerKV } from '../kv/cache';
import { llamaSizes, type LlamaConfig } from './config';
import { wasmAttentionAvailable, wasmPV, wasmQKT } from './kernels/wasmAttention';
import { wasmAddRmsNorm, wasmEmbedColumns, wasmFusedAvailable, wasmRope, wasmSiluMul } from './kernels/wasmFused';
import { GEMV_BF16_MAX_ROWS, GEMV_MAX_ROWS, gemvWeights, wasmGemv, wasmGemvAvailable, type PackedMatrices } from './kernels/wasmGemv';
import { wasmDecodeLayers, wasmDecodeStepAvailable, type DecodeLayerKV } from './kernels/wasmDecode';
import { bf16ToF32, f32ToBf16 } from '../formats/dtype';
import { EMBED_NAME, FINAL_NORM_NAME, LM_HEAD_NAME, layerTensorNames, readWeight, resolveWeight, type WeightSource } from './weights';

/** One decoder layer's weights, pre-transposed to [in, out] for matMul. */
export interface LayerWeights {
  /** input_layernorm gain [Dm] */
  attnNorm: tf.Tensor1D;
  /** q, k, v projections side by side [Dm, (H + 2*Hkv) * D]; the q columns are pre-scaled by
   * 1/sqrt(D), the attention scale (exact for D = 64, a power-of-two scale) */
  wqkv: tf.Tensor2D;
  /** o_proj [H*D, Dm] */
  wo: tf.Tensor2D;
  /** post_attention_layernorm gain [Dm] */
  mlpNorm: tf.Tensor1D;
  /** gate_proj and up_proj side by side [Dm, 2F] (gate's columns first) */
  wGateUp: tf.Tensor2D;
  /** down_proj [F, Dm] */
  wDown: tf.Tensor2D;
  /** on wasm: the four matrices in the decode GEMV's tiles (gemvWeights), f32 or bf16 pairs */
  packed?: PackedMatrices;
}

/**
 * How the weights are held on CPU: 'f32' (default, what the golden checks use), or 'bf16': every
 * matrix rounded to bf16, and on wasm the GEMV's copy packed two per int32 so a decode step reads
 * half the bytes (prefill still multiplies the rounded f32 copies through XNNPACK).
 */
export type CpuWeightFormat = 'f32' | 'bf16';

/** Options of LlamaModel.fromWeights. */
export interface ModelOptions {
  /** default 'f32' */
  cpuWeights?: CpuWeightFormat;
}

/** All weights of a model. */
export interface LlamaWeights {
  /** embed_tokens [V, Dm]; null when tied (rows are gathered from lmHead's columns) */
  embed: tf.Tensor2D | null;
  layers: LayerWeights[];
  /** model.norm gain [Dm] */
  finalNorm: tf.Tensor1D;
  /** lm_head, or the tied embedding, transposed [Dm, V] */
  lmHead: tf.Tensor2D;
  /** on wasm: lmHead in the GEMV's tiles (as LayerWeights.packed) */
  lmHeadPacked?: tf.Tensor2D;
}

/** Which positions get logits: the last of each sequence, every slot of the step, or the last n. */
export type LogitsSelection = 'last' | 'all' | number;

/** Options of LlamaModel.forward. */
export interface ForwardOptions {
  /** default 'last': logits [B, 1, V]; 'all' [B, T, V]; n: the last n slots [B, n, V] */
  logits?: LogitsSelection;
  /**
   * Attention observer (lesson 3, "KV-cache optimizations"): when set, each layer's attention
   * probabilities [B, H, T, S] are computed once more (only then) and passed with the key
   * positions [B, S] they cover. Read them synchronously: they are freed after the call.
   */
  onAttention?: (layer: number, probs: tf.Tensor4D, keyPositions: Int32Array) => void;
}

// bytes of weights (tensors, the GEMV's tiled copies and XNNPACK's packed ones) the wasm backend
// can hold, with room for activations and the KV cache
const WASM_MEMORY_LIMIT = 3.6e9;

/** RoPE inverse frequencies in fp32, as HF computes them: 1 / theta^(2i/D). [D/2] */
export function ropeInvFreq(headDim: number, theta: number): Float32Array {
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) {
    const exponent = Math.fround((2 * i) / headDim);
    out[i] = Math.fround(1 / Math.fround(theta ** exponent));
  }
  return out;
}

/**
 * cos and sin tables for the given positions (-1 = padding, treated as 0), in fp32 as HF
 * computes them: angle = fround(pos * invFreq), duplicated over both halves of D, repeated for
 * `rotated` heads, then cos = 1 and sin = 0 for `passThrough` heads (the v heads, so RoPE can
 * run over q, k and v in one go and leave v unchanged). Each [N, rotated + passThrough, D]
 */
export function ropeTables(
  positions: Int32Array,
  invFreq: Float32Array,
  rotated = 1,
  passThrough = 0,
): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const D = 2 * half;
  const heads = rotated + passThrough;
  const cos = new Float32Array(positions.length * heads * D);
  const sin = new Float32Array(positions.length * heads * D);
  const c = new Float32Array(D);
  const sn = new Float32Array(D);
  positions.forEach((p, n) => {
    const pos = Math.max(p, 0);
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * invFreq[i]);
      c[i] = c[half + i] = Math.fround(Math.cos(angle));
      sn[i] = sn[half + i] = Math.fround(Math.sin(angle));
    }
    const row = n * heads * D;
    for (let h = 0; h < rotated; h++) {
      cos.set(c, row + h * D);
      sin.set(sn, row + h * D);
    }
    cos.fill(1, row + rotated * D, row + heads * D);
  });
  return { cos, sin };
}

/** HF's rotate_half as a matrix: x @ R = [-x2, x1] for x = [x1, x2]. [D, D] */
export function rotateHalfMatrix(headDim: number): Float32Array {
  const half = headDim / 2;
  const R = new Float32Array(headDim * headDim);
  for (let j = 0; j < half; j++) {
    R[(j + half) * headDim + j] = -1; // out[j] = -x[j + half]
    R[j * headDim + j + half] = 1; // out[j + half] = x[j]
  }
  return R;
}

/**
 * A Llama-family causal LM whose weights live in tfjs tensors (lesson: "the model"). It owns
 * its tensors: call dispose() when done.
 */
export class LlamaModel {
  readonly config: LlamaConfig;
  readonly name: string;
  readonly weights: LlamaWeights;
  private readonly invFreq: Float32Array;
  /** RMSNorm's mean and eps as one product: x^2 @ meanVec + eps; [Dm, 1] of 1/Dm, and [1] */
  private readonly meanVec: tf.Tensor2D;
  private readonly eps: tf.Tensor1D;
  /** rotate_half as a matrix [D, D] */
  private readonly rotate: tf.Tensor2D;

  constructor(config: LlamaConfig, weights: LlamaWeights, name = 'llama') {
    this.config = config;
    this.weights = weights;
    this.name = name;
    this.invFreq = ropeInvFreq(config.headDim, config.ropeTheta);
    this.meanVec = tf.keep(tf.fill([config.hiddenSize, 1], 1 / config.hiddenSize)) as tf.Tensor2D;
    this.eps = tf.keep(tf.tensor1d([config.rmsNormEps]));
    this.rotate = tf.keep(tf.tensor2d(rotateHalfMatrix(config.headDim), [config.headDim, config.headDim]));
  }

  /** Build a model from HF-layout weights (a checkpoint or random weights). */
  static fromWeights(config: LlamaConfig, source: WeightSource, name = 'llama', options: ModelOptions = {}): LlamaModel {
    const format = options.cpuWeights ?? 'f32';
    if (format !== 'f32' && format !== 'bf16') throw new Error(`cpuWeights must be 'f32' or 'bf16', got '${String(format)}'`);
    // tfjs-wasm is wasm32 (4 GB); XNNPACK keeps a packed copy of every weight matrix, and the
    // decode GEMV its tiled one (half size for bf16)
    const bytes = llamaSizes(config).weightBytes;
    const copies = format === 'f32' ? 3 : 2.5;
    if (tf.getBackend() === 'wasm' && copies * bytes > WASM_MEMORY_LIMIT) {
      throw new Error(
        `${name}: ${(bytes / 1e9).toFixed(1)} GB of fp32 weights (${copies}x that with the GEMV's and XNNPACK's copies) ` +
          `do not fit the 4 GB the wasm backend can address; use the webgpu or tensorflow backend`,
      );
    }
    const { hiddenSize: Dm, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F, vocabSize: V } = config;
    // checkpoints saved from LlamaModel (not ...ForCausalLM) lack the "model." prefix
    const read = (n: string, shape: number[]): Float32Array => readWeight(source, n, shape);
    const mat = (n: string, rows: number, cols: number) => tf.tensor2d(read(n, [rows, cols]), [rows, cols]);
    const transposed = (n: string, rows: number, cols: number): tf.Tensor2D => tf.tidy(() => tf.transpose(mat(n, rows, cols))); // [cols, rows] = [in, out]
    const created: tf.Tensor[] = [];
    const keep = <T extends tf.Tensor>(t: T): T => {
      created.push(t);
      return t;
    };
    // a matrix [in, out] -> itself (bf16: rounded, the f32 one disposed) and, on wasm, the GEMV's
    // tiled copy (bf16: packed pairs), made once here
    const pack = tf.getBackend() === 'wasm' && wasmGemvAvailable(4, 8);
    const prepare = (t: tf.Tensor2D): { w: tf.Tensor2D; packed?: tf.Tensor2D } => {
      const [K, N] = t.shape;
      const tileable = pack && K % 4 === 0 && N % 8 === 0;
      if (format === 'f32') return { w: t, packed: tileable ? keep(gemvWeights(t.dataSync() as Float32Array, K, N, 'f32')) : undefined };
      const values = t.dataSync() as Float32Array;
      const w = keep(tf.tensor2d(bf16ToF32(f32ToBf16(values)), [K, N]));
      const packed = tileable ? keep(gemvWeights(values, K, N, 'bf16')) : undefined;
      created.splice(created.indexOf(t), 1);
      t.dispose();
      return { w, packed };
    };
    try {
      const layers: LayerWeights[] = [];
      for (let i = 0; i < config.numLayers; i++) {
        const n = layerTensorNames(i);
        const wqkv = keep(
          tf.tidy(() => {
            const q = tf.mul(mat(n.q, H * D, Dm), Math.fround(1 / Math.sqrt(D))); // [H*D, Dm]
            const k = mat(n.k, Hkv * D, Dm);
            const v = mat(n.v, Hkv * D, Dm);
            return tf.transpose(tf.concat([q, k, v], 0)) as tf.Tensor2D; // [Dm, (H+2Hkv)*D]
          }),
        );
        const qkv = prepare(wqkv);
        const o = prepare(keep(transposed(n.o, Dm, H * D)));
        const gateUp = prepare(keep(tf.tidy(() => tf.transpose(tf.concat([mat(n.gate, F, Dm), mat(n.up, F, Dm)], 0)) as tf.Tensor2D))); // [Dm, 2F]
        const down = prepare(keep(transposed(n.down, Dm, F)));
        const packed =
          qkv.packed && o.packed && gateUp.packed && down.packed
            ? { wqkv: qkv.packed, wo: o.packed, wGateUp: gateUp.packed, wDown: down.packed }
            : undefined;
        layers.push({
          attnNorm: keep(tf.tensor1d(read(n.attnNorm, [Dm]))),
          wqkv: qkv.w,
          wo: o.w,
          mlpNorm: keep(tf.tensor1d(read(n.mlpNorm, [Dm]))),
          wGateUp: gateUp.w,
          wDown: down.w,
          packed,
        });
      }
      let embed: tf.Tensor2D | null = null;
      let head: { w: tf.Tensor2D; packed?: tf.Tensor2D };
      if (config.tieWordEmbeddings) {
        head = prepare(keep(transposed(EMBED_NAME, V, Dm)));
      } else {
        if (resolveWeight(source, LM_HEAD_NAME) === null) {
          throw new Error(`${source.description}: config has tie_word_embeddings = false but there is no '${LM_HEAD_NAME}'`);
        }
        embed = keep(format === 'bf16' ? tf.tensor2d(bf16ToF32(f32ToBf16(read(EMBED_NAME, [V, Dm]))), [V, Dm]) : mat(EMBED_NAME, V, Dm));
        head = prepare(keep(transposed(LM_HEAD_NAME, V, Dm)));
      }
      const finalNorm = keep(tf.tensor1d(read(FINAL_NORM_NAME, [Dm])));
      return new LlamaModel(
        config,
        { embed, layers, finalNorm, lmHead: head.w, lmHeadPacked: head.packed },
        name,
      );
    } catch (e) {
      for (const t of created) t.dispose();
      throw e;
    }
  }

  /** The cache shape this model needs. */
  get kvShape(): KVShape {
    return { numLayers: this.config.numLayers, numKvHeads: this.config.numKvHeads, headDim: this.config.headDim };
  }

  /** Bytes of weight tensors held: the [in, out] matrices, plus on wasm the GEMV's tiled copies. */
  weightBytes(): number {
    let n = 0;
    for (const t of this.weightTensors()) n += t.size * 4;
    return n;
  }

  /**
   * One step: sequence b of the batch gets the new tokens `tokens[b]` (any number, 0 included),
   * attending over what `cache` holds for it plus these. Returns logits [B, n, V] (see
   * ForwardOptions), in the cache's left-padded layout: with 'all' or n > counts[b], the first
   * slots of a shorter sequence are padding and hold meaningless values. The caller disposes
   * the result.
   */
  forward(tokens: readonly (readonly number[])[], cache: KVCache, options: ForwardOptions = {}): tf.Tensor3D {
    const c = this.config;
    const { numHeads: H, numKvHeads: Hkv, vocabSize: V } = c;
    const B = tokens.length;
    if (B !== cache.batchSize) throw new Error(`forward got ${B} sequences, the cache holds ${cache.batchSize}`);
    const lengths = cache.lengths();
    tokens.forEach((seq, b) => {
      for (const id of seq) {
        if (!Number.isInteger(id) || id < 0 || id >= V) {
          throw new Error(`sequence ${b}: token id ${id} is not an integer in [0, ${V})`);
        }
      }
      if (lengths[b] + seq.length > c.maxPositions) {
        throw new Error(
          `sequence ${b}: ${lengths[b] + seq.length} tokens exceed the context length ` + `(max_position_embeddings = ${c.maxPositions})`,
        );
      }
    });

    const maxCount = Math.max(0, ...tokens.map((t) => t.length));
    const sel = options.logits ?? 'last';
    const n = sel === 'last' ? 1 : sel === 'all' ? maxCount : sel;
    if (!Number.isInteger(n) || n < 1 || n > Math.max(1, maxCount)) {
      throw new Error(`logits: expected 'last', 'all' or an integer in [1, ${maxCount}], got ${String(sel)}`);
    }

    // ---- prepare inputs: the only place numbers become tensors
    const plan = cache.beginStep(tokens.map((t) => t.length));
    try {
      const T = plan.T;
      const ids = new Int32Array(B * T);
      tokens.forEach((seq, b) => ids.set(seq, b * T + (T - seq.length)));
      // a decode step on wasm: one call into wasm per layer, the cache written in place
      const first = this.decodeStepApplies(plan, options) ? (cache.writableLayer?.(0) ?? null) : null;
      if (first) return this.decodeStep(plan, ids, cache, first);
      // the fused wasm kernels (wasmFused.ts) take one [D] row of tables per token; the plain
      // path one per head, cos 1 and sin 0 on the v heads
      const fused = wasmFusedAvailable(c.hiddenSize, c.headDim, c.intermediateSize);
      const { cos, sin } = fused
        ? ropeTables(plan.queryPositions, this.invFreq)
        : ropeTables(plan.queryPositions, this.invFreq, H + Hkv, Hkv);
      return this.run(plan, ids, cos, sin, fused, n, cache, options.onAttention);
    } catch (e) {
      // the cache planned this step; give its slots back so it stays usable
      cache.truncate(lengths);
      throw e;
    }
  }

  // the tensor part of forward(): inputs prepared, the cache has planned the step
  private run(
    plan: StepPlan,
    ids: Int32Array,
    cos: Float32Array,
    sin: Float32Array,
    fused: boolean,
    n: number,
    cache: KVCache,
    onAttention?: ForwardOptions['onAttention'],
  ): tf.Tensor3D {
    const { numHeads: H, numKvHeads: Hkv, headDim: D, hiddenSize: Dm, vocabSize: V } = this.config;
    const { batchSize: B, T, S } = plan;
    return tf.tidy(() => {
      const tableShape = fused ? [B * T, D] : [B * T, H + 2 * Hkv, D];
      const cosT = tf.tensor(cos, tableShape);
      const sinT = tf.tensor(sin, tableShape);
      const simd = wasmAttentionAvailable(D);
      const minRows = ATTENTION_LIMITS.perPairMinRows;
      const perPair = (H / Hkv) * T >= (simd ? minRows.simd : minRows.plain);
      // the SIMD kernels read just the slots in use of a cache with spare capacity (often
      // leaving nothing to mask); the other paths attend over all S slots
      const span = simd && !perPair ? usedSpan(plan) : S;
      const masks = maskTensors(attentionMask(plan, span), B, T, span, perPair);

      const step: Step = { B, T, cos: cosT, sin: sinT, masks, span, perPair, simd, fused, plan, onAttention };
      // the residual stream x and its normed copy h: each layer's last residual add is fused
      // with the next norm (the next layer's input norm, or the final norm after the last)
      const layers = this.weights.layers;
      let [x, h] = this.addNorm(this.embed(tf.tensor1d(ids, 'int32')), null, layers[0].attnNorm, fused); // [N, Dm] each
      layers.forEach((L, layer) => {
        const nextNorm = layer + 1 < layers.length ? layers[layer + 1].attnNorm : this.weights.finalNorm;
        // a tidy per layer: a long prefill never holds every layer's intermediates at once
        const next = tf.tidy(() => this.block(x, h, L, nextNorm, layer, cache, step));
        x.dispose();
        h.dispose();
        [x, h] = next;
      });

      // ---- logits only where asked (h is the final norm's output)
      let last = h;
      if (n < T) last = tf.reshape(tf.slice(tf.reshape(h, [B, T, Dm]), [0, T - n, 0], [B, n, Dm]), [B * n, Dm]);
      const logits = project(last, this.weights.lmHead, this.weights.lmHeadPacked); // [B*n, V]
      return tf.reshape(logits, [B, n, V]) as tf.Tensor3D;
    });
  }

  // ---- the fused decode step (wasm): one call per layer (kernels/wasmDecode.ts)

  // a step of one new token per sequence for a few sequences, on one thread, nobody observing
  // attention, every kernel switched on and the shapes they take (the cache is asked next)
  private decodeStepApplies(plan: StepPlan, options: ForwardOptions): boolean {
    const { hiddenSize: Dm, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F } = this.config;
    const B = plan.batchSize;
    const packed = this.weights.layers[0].packed;
    const bf16 = packed?.wqkv.dtype === 'int32';
    return (
      plan.T === 1 &&
      !options.onAttention &&
      packed !== undefined &&
      B <= (bf16 ? GEMV_BF16_MAX_ROWS : GEMV_MAX_ROWS) &&
      wasmDecodeStepAvailable(Dm, D, F) &&
      wasmGemvAvailable(Dm, (H + 2 * Hkv) * D) &&
      wasmGemvAvailable(H * D, Dm) &&
      wasmGemvAvailable(Dm, 2 * F) &&
      wasmGemvAvailable(F, Dm) &&
      wasmFusedAvailable(Dm, D, F) &&
      wasmAttentionAvailable(D)
    );
  }

  // the decode step: embeddings, then each layer in one call (the cache's tensors written in
  // place at slot `start`), then the final norm and the LM head. Layer 0's tensors come in (`first`).
  private decodeStep(plan: StepPlan, ids: Int32Array, cache: KVCache, first: WritableLayerKV): tf.Tensor3D {
    const { numHeads: H, numKvHeads: Hkv, headDim: D, vocabSize: V, rmsNormEps: eps } = this.config;
    const B = plan.batchSize;
    const { cos, sin } = ropeTables(plan.queryPositions, this.invFreq); // [B, D] each
    // the slots up to the last one in use; masked only where a sequence's slot is empty
    const span = usedSpan(plan);
    const mask = attentionMask(plan, span); // [B, 1, span] or null
    return tf.tidy(() => {
      const cosT = tf.tensor2d(cos, [B, D]);
      const sinT = tf.tensor2d(sin, [B, D]);
      const maskT = mask ? tf.tensor2d(mask, [B, span]) : null;
      const x = this.embed(tf.tensor1d(ids, 'int32')); // [B, Dm]
      const layers = this.weights.layers.map((L) => ({ ...L.packed!, attnNorm: L.attnNorm, mlpNorm: L.mlpNorm })); // the GEMV's tiles (decodeStepApplies)
      const kvs: DecodeLayerKV[] = layers.map((_, layer) => {
        const kv = layer === 0 ? first : cache.writableLayer!(layer)!;
        if (kv.start !== first.start) throw new Error(`decode step: layer ${layer} writes at slot ${kv.start}, layer 0 at ${first.start}`);
        return kv;
      });
      const y = wasmDecodeLayers(x, layers, kvs, cosT, sinT, maskT, { H, Hkv, eps, slot: first.start, span }); // [B, Dm]
      const [, h] = wasmAddRmsNorm(y, null, this.weights.finalNorm, eps); // [B, Dm]
      const logits = project(h, this.weights.lmHead, this.weights.lmHeadPacked, true); // [B, V], on every thread
      return tf.reshape(logits, [B, 1, V]) as tf.Tensor3D;
    });
  }

  // one decoder layer: x + attention(norm(x)), then + mlp(norm(.)); h = norm(x) comes in, and
  // the output goes out with its norm by `nextNorm`. x, h [N, Dm] -> [x', nextNorm(x')]
  private block(
    x: tf.Tensor2D,
    h: tf.Tensor2D,
    L: LayerWeights,
    nextNorm: tf.Tensor1D,
    layer: number,
    cache: KVCache,
    s: Step,
  ): [tf.Tensor2D, tf.Tensor2D] {
    const { numHeads: H, numKvHeads: Hkv, headDim: D } = this.config;
    const { B, T } = s;
    // ---- attention
    const qkv = project(h, L.wqkv, L.packed?.wqkv); // [N, (H+2Hkv)*D]
    const [q, kNew, vNew] = s.fused
      ? wasmRope(qkv, s.cos as tf.Tensor2D, s.sin as tf.Tensor2D, B, T, H, Hkv) // [N, H, D], [B, Hkv, T, D] x 2
      : ropeSplit(tf.reshape(qkv, [B * T, H + 2 * Hkv, D]), s.cos as tf.Tensor3D, s.sin as tf.Tensor3D, this.rotate, B, T, H, Hkv);
    // a cache whose layers keep different tokens (lib/kv/evicting.ts) also returns this layer's key positions
    const { k, v, keyPositions } = cache.update(layer, kNew, vNew);
    const ls = keyPositions ? layerStep(s, keyPositions, k.shape[2]) : s;
    const att = attention(q, k, v, ls, B, T); // [N, H*D]
    if (s.onAttention) s.onAttention(layer, attentionProbs(q, k, ls, B, T), ls.plan.keyPositions);
    const [x1, h2] = this.addNorm(x, project(att, L.wo, L.packed?.wo), L.mlpNorm, s.fused);
    // ---- MLP: down(silu(gate(h)) * up(h))
    const gateUp = project(h2, L.wGateUp, L.packed?.wGateUp); // [N, 2F]
    const act = s.fused ? wasmSiluMul(gateUp) : siluMul(gateUp); // [N, F]
    return this.addNorm(x1, project(act, L.wDown, L.packed?.wDown), nextNorm, s.fused); // [N, Dm] each
  }

  /** Free every weight tensor. */
  dispose(): void {
    for (const t of this.weightTensors()) t.dispose();
    this.eps.dispose();
    this.meanVec.dispose();
    this.rotate.dispose();
  }

  private weightTensors(): tf.Tensor[] {
    const w = this.weights;
    const out: tf.Tensor[] = [w.finalNorm, w.lmHead];
    if (w.embed) out.push(w.embed);
    if (w.lmHeadPacked) out.push(w.lmHeadPacked);
    for (const L of w.layers) {
      out.push(L.attnNorm, L.wqkv, L.wo, L.mlpNorm, L.wGateUp, L.wDown);
      if (L.packed) out.push(L.packed.wqkv, L.packed.wo, L.packed.wGateUp, L.packed.wDown);
    }
    return out;
  }

  // token ids [N] -> embeddings [N, Dm]
  private embed(ids: tf.Tensor1D): tf.Tensor2D {
    const w = this.weights;
    if (w.embed) return tf.gather(w.embed, ids) as tf.Tensor2D;
    const { hiddenSize: Dm, headDim: D, intermediateSize: F } = this.config;
    if (wasmFusedAvailable(Dm, D, F)) return wasmEmbedColumns(w.lmHead, ids); // one kernel, no transpose
    return tf.transpose(tf.gather(w.lmHead, ids, 1)) as tf.Tensor2D; // [Dm, N] -> [N, Dm]
  }

  // [x + delta, rmsNorm(x + delta)] (vLLM's fused_add_rms_norm); one kernel when fused (wasm),
  // else [x, rmsNorm(x)] without delta. The results are new tensors, never x itself.
  private addNorm(x: tf.Tensor2D, delta: tf.Tensor2D | null, gain: tf.Tensor1D, fused: boolean): [tf.Tensor2D, tf.Tensor2D] {
    if (fused) return wasmAddRmsNorm(x, delta, gain, this.config.rmsNormEps);
    const sum: tf.Tensor2D = delta ? tf.add(x, delta) : tf.clone(x);
    return [sum, this.rmsNorm(sum, gain)];
  }

  // RMSNorm as HF: gain * (x * rsqrt(mean(x^2) + eps)) over the last axis; mean and + eps are
  // one fused product (tfjs-wasm's Mean kernel is slow to call)
  private rmsNorm(x: tf.Tensor2D, gain: tf.Tensor1D): tf.Tensor2D {
    const ms = tf.fused.matMul({ a: tf.square(x), b: this.meanVec, bias: this.eps }); // [N, 1]
    return tf.mul(tf.mul(x, tf.rsqrt(ms)), gain);
  }
}

// x [N, in] @ W [in, out] -> [N, out]: a decode step's few rows go to the wasm GEMV (reading W's
// tiled copy, f32 or bf16 pairs, when the model has one), larger steps (batches, prefill) to
// tf.matMul (XNNPACK) over W, which splits over tfjs-wasm's threads; the GEMV splits over our
// kernel threads only with `threads` (after the fused decode step: wasmGemv.ts says why)
function project(x: tf.Tensor2D, W: tf.Tensor2D, packed: tf.Tensor2D | undefined, threads = false): tf.Tensor2D {
  const [K, N] = W.shape;
  const rows = x.shape[0];
  const bf16 = packed?.dtype === 'int32';
  if (!packed || rows > (bf16 ? GEMV_BF16_MAX_ROWS : GEMV_MAX_ROWS) || !wasmGemvAvailable(K, N)) return tf.matMul(x, W);
  return wasmGemv(x, packed, threads);
}

// silu(gate) * up for gu = [gate | up] [N, 2F] -> [N, F]
function siluMul(gu: tf.Tensor2D): tf.Tensor2D {
  const [gate, up] = tf.split(gu, 2, 1); // [N, F] each
  return tf.mul(tf.mul(gate, tf.sigmoid(gate)), up);
}

// ---- attention pieces

// RoPE as HF applies it: x*cos + rotate_half(x)*sin, rotate_half(x) = [-x2, x1] done as a
// product with the +-1 matrix R (exact; one XNNPACK call beats wasm's reverse + concat).
// x, cos, sin [N, heads, D], R [D, D]
function rope(x: tf.Tensor3D, cos: tf.Tensor3D, sin: tf.Tensor3D, R: tf.Tensor2D): tf.Tensor3D {
  const [N, heads, D] = x.shape;
  const rotated = tf.reshape(tf.matMul(tf.reshape(x, [N * heads, D]), R), [N, heads, D]); // [-x2, x1]
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
}

// the plain path: RoPE over qkv [N, H+2Hkv, D] (the tables leave the v heads as they are), then
// q [N, H, D] and k, v [B, Hkv, T, D]
function ropeSplit(
  qkv: tf.Tensor3D,
  cos: tf.Tensor3D,
  sin: tf.Tensor3D,
  R: tf.Tensor2D,
  B: number,
  T: number,
  H: number,
  Hkv: number,
): [tf.Tensor3D, tf.Tensor4D, tf.Tensor4D] {
  const [q, k, v] = tf.split(rope(qkv, cos, sin, R), [H, Hkv, Hkv], 1) as tf.Tensor3D[]; // [N, H|Hkv|Hkv, D]
  return [q, toHeadMajor(k, B, T), toHeadMajor(v, B, T)]; // [N, H, D], [B, Hkv, T, D] x 2
}

// [B*T, Hkv, D] -> [B, Hkv, T, D]
function toHeadMajor(x: tf.Tensor3D, B: number, T: number): tf.Tensor4D {
  const [, Hkv, D] = x.shape;
  if (T === 1) return tf.reshape(x, [B, Hkv, 1, D]);
  return tf.transpose(tf.reshape(x, [B, T, Hkv, D]), [0, 2, 1, 3]);
}

// Attention runs one of two ways. tfjs-wasm's XNNPACK matMul is fast but takes only a single
// [M, K] x [K, N] product without transposes; its batched matMul is a slow scalar loop.
// - batched: all (sequence, kv head) pairs at once, fewest ops; on wasm through the SIMD
//   kernels of wasmAttention.ts. Best for decode, where each product is small.
// - per pair: a loop of XNNPACK products, one (sequence, kv head) pair at a time; compute-
//   bound work such as prefill, once a group's query rows G*T reach perPairMinRows.
// Tuning knobs: perPairMinRows picks the per-pair path (with and without the SIMD kernels);
// maxScores caps the elements of one block of attention scores in the per-pair path.
export const ATTENTION_LIMITS = { perPairMinRows: { simd: 48, plain: 8 }, maxScores: 1 << 24 };

// what every layer of one forward step shares
interface Step {
  B: number;
  T: number;
  /** RoPE tables: fused, [N, D]; plain, [N, H+2Hkv, D] (cos 1 and sin 0 on the v heads) */
  cos: tf.Tensor;
  sin: tf.Tensor;
  masks: Masks;
  /** key slots attended over (the first `span` of the cache's S) */
  span: number;
  perPair: boolean;
  simd: boolean;
  /** the fused wasm kernels of wasmFused.ts run (wasm backend): add + norm, RoPE, silu * up */
  fused: boolean;
  plan: StepPlan;
  onAttention?: ForwardOptions['onAttention'];
}

// the step as seen by a layer whose key slots hold their own positions [B, S]
function layerStep(s: Step, keyPositions: Int32Array, S: number): Step {
  const plan = { ...s.plan, S, keyPositions };
  const span = s.simd && !s.perPair ? usedSpan(plan) : S;
  return { ...s, plan, span, masks: maskTensors(attentionMask(plan, span), s.B, s.T, span, s.perPair) };
}

// attention probabilities for an observer, plainly: q [B*T, H, D], k [B, Hkv, S, D] -> [B, H, T, S]
function attentionProbs(q: tf.Tensor3D, k: tf.Tensor4D, s: Step, B: number, T: number): tf.Tensor4D {
  const [, H, D] = q.shape;
  const [, Hkv, S] = k.shape;
  const qh = tf.transpose(tf.reshape(q, [B, T, H, D]), [0, 2, 1, 3]); // [B, H, T, D]
  const kh = tf.reshape(tf.tile(tf.reshape(k, [B, Hkv, 1, S, D]), [1, 1, H / Hkv, 1, 1]), [B, H, S, D]); // repeat_kv
  let scores: tf.Tensor = tf.matMul(qh, kh, false, true); // [B, H, T, S]
  const mask = attentionMask(s.plan);
  if (mask) scores = tf.add(scores, tf.tensor4d(mask, [B, 1, T, S]));
  return tf.softmax(scores) as tf.Tensor4D;
}

// the additive mask, shaped for the path: batched [B, 1, 1, T, S], per pair B x [1, T, S]
type Masks = { batched: tf.Tensor | null; perSeq: (tf.Tensor3D | null)[] };

function maskTensors(mask: Float32Array | null, B: number, T: number, S: number, perPair: boolean): Masks {
  if (!mask) return { batched: null, perSeq: new Array(B).fill(null) };
  if (!perPair) return { batched: tf.tensor(mask, [B, 1, 1, T, S]), perSeq: [] };
  const perSeq = Array.from({ length: B }, (_, b) => tf.tensor3d(mask.subarray(b * T * S, (b + 1) * T * S), [1, T, S]));
  return { batched: null, perSeq };
}

// grouped-query attention: query head h reads kv head floor(h / G), as HF's repeat_kv.
// q [B*T, H, D] (pre-scaled), k/v [B, Hkv, S, D] -> [B*T, H*D]. P = B*Hkv (sequence, kv head) pairs.
function attention(q: tf.Tensor3D, k: tf.Tensor4D, v: tf.Tensor4D, step: Step, B: number, T: number): tf.Tensor2D {
  const { masks, span, perPair, simd } = step;
  const [, H, D] = q.shape;
  const [, Hkv, S] = k.shape;
  const G = H / Hkv;
  const P = B * Hkv;
  // the query heads of one kv group side by side: [P, G*T, D]
  const qg: tf.Tensor3D =
    T === 1 ? tf.reshape(q, [P, G, D]) : tf.reshape(tf.transpose(tf.reshape(q, [B, T, Hkv, G, D]), [0, 2, 3, 1, 4]), [P, G * T, D]);
  const k3: tf.Tensor3D = tf.reshape(k, [P, S, D]);
  const v3: tf.Tensor3D = tf.reshape(v, [P, S, D]);
  const out = perPair ? attendPerPair(qg, k3, v3, masks.perSeq, Hkv, G, T) : attendBatched(qg, k3, v3, masks.batched, B, G, T, span, simd); // [P, G*T, D]
  if (T === 1) return tf.reshape(out, [B, H * D]);
  const tokenMajor = tf.transpose(tf.reshape(out, [B, Hkv, G, T, D]), [0, 3, 1, 2, 4]); // [B, T, Hkv, G, D]
  return tf.reshape(tokenMajor, [B * T, H * D]);
}

// softmax(q k^T + mask) v for all pairs at once. qg [P, G*T, D], k/v [P, S, D] -> [P, G*T, D];
// without the SIMD kernels span must be S
function attendBatched(
  qg: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  mask: tf.Tensor | null,
  B: number,
  G: number,
  T: number,
  span: number,
  simd: boolean,
): tf.Tensor3D {
  const P = k.shape[0];
  // scores over the first `span` slots (the kernels read them in place; tf.matMul takes all)
  let scores: tf.Tensor3D = simd ? wasmQKT(qg, k, span) : tf.matMul(qg, k, false, true); // [P, G*T, span]
  if (mask) scores = tf.reshape(tf.add(tf.reshape(scores, [B, P / B, G, T, span]), mask), [P, G * T, span]);
  const p = tf.softmax(scores);
  if (simd) return wasmPV(p, v);
  // with one pair, tfjs-wasm would run p @ v through XNNPACK, which caches a packed copy of v
  // by tensor id: stale once an in-place cache rewrites v. (v^T p^T)^T stays on the plain loop.
  if (P === 1 && tf.getBackend() === 'wasm') return tf.transpose(tf.matMul(v, p, true, true), [0, 2, 1]) as tf.Tensor3D;
  return tf.matMul(p, v);
}

// the same, one (sequence, kv head) pair at a time through XNNPACK products
function attendPerPair(
  qg: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  masks: (tf.Tensor3D | null)[],
  Hkv: number,
  G: number,
  T: number,
): tf.Tensor3D {
  const [P, GT, D] = qg.shape;
  const S = k.shape[1];
  // split copies each pair out: fresh tensors, so XNNPACK's packed-weights cache (keyed by
  // tensor id) never sees the KV cache's own, rewritten-in-place tensors
  const qs = tf.split(qg, P, 0);
  const ks = tf.split(k, P, 0);
  const vs = tf.split(v, P, 0);
  const outs: tf.Tensor2D[] = [];
  for (let i = 0; i < P; i++) {
    // a tidy per pair, and score blocks of at most ATTENTION_LIMITS.maxScores: a long prefill
    // holds one block of scores at a time
    outs.push(
      tf.tidy(() => {
        const qi = tf.reshape(qs[i], [GT, D]);
        const kT = tf.transpose(tf.reshape(ks[i], [S, D])); // [D, S]
        const vi = tf.reshape(vs[i], [S, D]);
        const mask = masks[Math.floor(i / Hkv)]; // [1, T, S]
        if (GT * S <= ATTENTION_LIMITS.maxScores) {
          let scores: tf.Tensor = tf.matMul(qi, kT); // [G*T, S]
          if (mask) scores = tf.add(tf.reshape(scores, [G, T, S]), mask); // [G, T, S]
          return tf.matMul(tf.reshape(tf.softmax(scores), [GT, S]), vi); // [G*T, D]
        }
        // blocks of query rows within one head of the group, so a block's mask rows are t0..t0+n
        const tBlock = Math.max(1, Math.floor(ATTENTION_LIMITS.maxScores / S));
        const blocks: tf.Tensor2D[] = [];
        for (let g = 0; g < G; g++) {
          for (let t0 = 0; t0 < T; t0 += tBlock) {
            const n = Math.min(tBlock, T - t0);
            blocks.push(
              tf.tidy(() => {
                let scores: tf.Tensor2D = tf.matMul(tf.slice(qi, [g * T + t0, 0], [n, D]), kT); // [n, S]
                if (mask) scores = tf.add(scores, tf.reshape(tf.slice(mask, [0, t0, 0], [1, n, S]), [n, S]));
                return tf.matMul(tf.softmax(scores), vi); // [n, D]
              }),
            );
          }
        }
        return tf.concat(blocks, 0); // [G*T, D], rows in (g, t) order
      }),
    );
  }
  return tf.stack(outs) as tf.Tensor3D; // [P, G*T, D]
}
