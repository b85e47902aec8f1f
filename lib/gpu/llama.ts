// The captured decode step (lesson 2, "eager vs captured"; WebGPU's answer to CUDA graphs).
//
// The eager tfjs path (lib/model/llama.ts) runs ~370 ops per decode step, and between two ops
// JavaScript allocates tensors, creates bind groups and uploads uniforms: on a GPU the step is
// bound by that overhead, not by the GPU. Here everything a step needs is created ONCE:
// pipelines, weight / KV-pool / activation buffers sized for the largest step, and one bind
// group per dispatch. A step then only
//   1. writes its metadata (token ids, (sequence, position) per token, block tables, the rows
//      that get logits, two counts) with queue.writeBuffer,
//   2. encodes the same 5L + 3 dispatches into one compute pass, one command buffer,
//   3. reads back the token ids (greedy argmax on the GPU) or the logits rows it asked for.
// KV lives in a paged pool (lesson 3's PagedAttention): blocks of `blockSize` slots, addressed
// through each sequence's block table, so the engine's block manager drives it unchanged.
//
// Shape letters as in lib/model/config.ts; N = tokens in a step, M = rows that get logits.

import { percentile } from '../eval/stats';
import { f32ToBf16 } from '../formats/dtype';
import type { LlamaConfig } from '../model/config';
import { ropeInvFreq } from '../model/llama';
import { EMBED_NAME, FINAL_NORM_NAME, LM_HEAD_NAME, layerTensorNames, readWeight, type WeightSource } from '../model/weights';
import { timePasses, type GpuContext } from './device';
import {
  argmaxKernel,
  capturedDispatches,
  embedKernel,
  PREVIOUS_PICK,
  MATMUL_TILE,
  MATMUL_TILE_SHARED,
  MATMUL_TILE_SHARED_UNSPLIT,
  matmulKernel,
  pagedAttentionKernel,
  ropeRowPairs,
  sharedTileBytes,
  type AttentionSpec,
  type LaneTile,
  type MatmulSpec,
  type MatmulTile,
  type SharedTile,
  type WeightFormat,
} from './kernels';

/** Sizes of the captured step's buffers (the largest step it will ever run). */
export interface GpuLlamaOptions {
  /** weight storage: 'f32' (default) or 'bf16' (two per u32: half the bytes per token) */
  format?: WeightFormat;
  /** most tokens in one step (decode batch, or a prefill chunk); default 256 */
  maxTokens?: number;
  /** most sequences in one step; default 64 */
  maxSeqs?: number;
  /** most rows that get logits in one step; default maxSeqs * 8 */
  maxLogitRows?: number;
  /** KV pool: slots per block (default 16) and blocks (default: maxSeqs full contexts) */
  blockSize?: number;
  numBlocks?: number;
  /**
   * dispatches per submit in `step` (0: the whole step in one submit): the GPU starts on the
   * first layers while the CPU still encodes the rest; default SUBMIT_EVERY. A step submitted
   * behind one not read yet (overlapped steps) goes in one submit: the GPU is busy meanwhile
   */
  submitEvery?: number;
  /** input rows from which each matmul over the step's tokens uses the shared-memory tile (a number: the same for all); default SHARED_FROM */
  sharedFrom?: SharedFrom;
  /** the shared-memory tile's shape (weight rows x tokens, K slices); default MATMUL_TILE_SHARED (K in 4 slices; unsplit on a device with less workgroup memory than sharedTileBytes asks) */
  sharedTile?: SharedTile;
  /** the LM head uses the shared-memory tile from this many logits rows; default HEAD_SHARED_FROM */
  headSharedFrom?: number;
  /** the decode tile's shape (weight rows x lanes x tokens); default MATMUL_TILE */
  decodeTile?: LaneTile;
  /** threads of the narrow attention workgroup (a power of two); default ATTENTION_NARROW_WG */
  attentionNarrowWg?: number;
  /** steps of at least this many tokens run attention on the narrow workgroup; default ATTENTION_NARROW_FROM */
  attentionNarrowFrom?: number;
}

/** The matmuls over a step's token rows (the LM head, over its logits rows, has headSharedFrom). */
export type TokenMatmul = 'qkv' | 'o' | 'gateUp' | 'down';

/** Input rows from which each token matmul runs on the shared-memory tile; a number sets them all. */
export type SharedFrom = number | Partial<Record<TokenMatmul, number>>;

/**
 * GpuLlama's default for sharedFrom: from this many input rows a matmul runs on the shared-memory
 * tile, below it on the decode tile, whose many small workgroups keep the GPU busier. The shared
 * tile's grid is R / 32 workgroups per 32 rows, so a wide matmul fills the GPU with it at fewer
 * rows: gate-up (R = 2F = 2048 for the target) at 32 rows already, qkv (640) from 128, o and down
 * (384) only from 224. bench:captured section 6 on the H200 (1c3dbb7, each kind's dispatches
 * summed, each timed alone; decode tile / shared 32x32/4): 56 decodes + a 48-token chunk,
 * gate-up 283 / 155 us, qkv 146 / 155, o 103 / 118, down 140 / 180; 64 decodes, gate-up 201 /
 * 132, o 88 / 119, down 107 / 183; 2 x 64 prompt tokens + 32 decodes, qkv 180 / 152, o 113 / 124,
 * down 176 / 182; 4 x 64 prompt tokens, o 141 / 130, down 230 / 188. (One threshold of 128 for
 * all, the default before: tileCompare, 0d9bee9 and 1f50a24, comments in git history.)
 */
export const SHARED_FROM: Readonly<Record<TokenMatmul, number>> = { qkv: 128, o: 224, gateUp: 32, down: 224 };

/** Every token matmul's shared-tile threshold: a number for all, or some of them over SHARED_FROM. */
export function sharedFromOf(x: SharedFrom): Record<TokenMatmul, number> {
  const out = typeof x === 'number' ? { qkv: x, o: x, gateUp: x, down: x } : { ...SHARED_FROM, ...x };
  for (const [k, v] of Object.entries(out)) {
    if (!(v >= 1)) throw new Error(`GpuLlama: sharedFrom.${k} must be at least 1 (Infinity: never), got ${v}`);
  }
  return out;
}

/**
 * GpuLlama's default for headSharedFrom. The LM head has V weight rows (8192 for our models), so
 * the shared tile has many workgroups at a few dozen logits rows already, where the decode tile
 * reads the whole head once per 4 rows. bench:captured on the H200 (2c884b0, target, GPU time):
 * the head alone at 64 rows 75.1 us on the decode tile, 40.0 on the shared one (whole step 493 ->
 * 459 us); tileCompare, every other matmul on the decode tile, head on decode / shared: 8 x 1
 * tokens 372 / 378 us, 32 x 1 564 / 536, 64 x 1 632 / 582. Hence 16.
 */
export const HEAD_SHARED_FROM = 16;

/**
 * GpuLlama's default dispatches per submit of a step. Encoding a step costs about as much CPU
 * time as the GPU takes to run it (each WebGPU call crosses into Dawn), so one submit at the end
 * leaves the GPU idle while the CPU encodes; submitting in parts overlaps the two, and each
 * submit costs CPU time too. bench:captured's roundTrip (the engine's kind of step, target,
 * medians of two alternating rounds; three H200 machine starts, 39470a4 to 7766a15), ms per step
 * at batch 1 / 8 / 32: one submit 1.38 / 0.57 / 0.65, 0.52 / 0.56 / 0.77, 0.73 / 0.76 / 0.86;
 * every 11 dispatches 0.91 / 0.53 / 0.57, 0.39 / 0.51 / 0.70, 0.59 / 0.64 / 0.68; every 22
 * 0.96 / 0.46 / 0.56, 0.42 / 0.43 / 0.74, 0.62 / 0.64 / 0.74; every 6 was slower than 11.
 */
export const SUBMIT_EVERY = 11;

/** GpuLlama's default for attentionNarrowWg: threads of the attention workgroup in steps of many tokens. */
export const ATTENTION_NARROW_WG = 64;

/** GpuLlama's default for attentionNarrowFrom: from this many tokens a step's attention runs on the narrow workgroup. */
export const ATTENTION_NARROW_FROM = Infinity;

/** One sequence's part of a step. */
export interface GpuStepSequence {
  /** new token ids; they take positions start, start+1, ... */
  tokens: readonly number[];
  /** tokens of this sequence already in the KV pool */
  start: number;
  /** block ids holding positions 0 .. start + tokens.length - 1, in order */
  blockTable: readonly number[];
  /** how many of the new tokens (the last ones) get a logits row: 0 .. tokens.length */
  logits: number;
}

/** What a step reads back: per logits row (sequences in order, their rows in order). */
export interface GpuStepResult {
  /** argmax of each logits row (greedy's next token) */
  ids: Int32Array;
  /** the log-probability of that token under the row's distribution */
  logprobs: Float32Array;
  /** logits rows [M, V], when asked for */
  logits: Float32Array | null;
  /** CPU milliseconds spent writing metadata and encoding the step */
  encodeMs: number;
}

/** Timings and counts of the captured step (for the lessons and bench:core). */
export interface GpuStepStats {
  dispatchesPerStep: number;
  /** shader modules compiled, and the milliseconds that took */
  pipelines: number;
  compileMs: number;
  weightBytes: number;
  kvPoolBytes: number;
}

const STORAGE = 0x80; // GPUBufferUsage.STORAGE (the constants exist only once Dawn's globals are installed)
const COPY_DST = 0x8;
const COPY_SRC = 0x4;
const UNIFORM = 0x40;
const MAP_READ = 0x1;

interface Dispatch {
  /** the kernel's role: embed, qkv, attention, o, gateUp, down, head, argmax */
  name: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  /** workgroups (x, or [x, y]) for a step of n tokens and m logits rows */
  count: (n: number, m: number) => number | [number, number];
  /**
   * the kernel for big steps, run when the step has at least `from()` rows: a matmul's shared-
   * memory tile (GpuLlama.sharedFrom input rows, or headSharedFrom logits rows for the LM head),
   * attention's narrow workgroup (GpuLlama.attentionNarrowFrom tokens)
   */
  big?: Variant & { rows: (n: number, m: number) => number; from: () => number };
}

/** A dispatch's other kernel (its own pipeline, bind group and grid). */
interface Variant {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  count: (n: number, m: number) => [number, number];
}

/**
 * A Llama model on the captured WebGPU path (lesson 2). Build with `GpuLlama.create`; call
 * `dispose()` when done. The KV pool's block tables come from the caller (the engine's block
 * manager, or `contiguousTables` for plain generation).
 */
export class GpuLlama {
  readonly config: LlamaConfig;
  readonly name: string;
  readonly format: WeightFormat;
  readonly maxTokens: number;
  readonly maxSeqs: number;
  readonly maxLogitRows: number;
  readonly blockSize: number;
  readonly numBlocks: number;
  /** block-table row length: blocks of one full context */
  readonly maxBlocks: number;
  readonly stats: GpuStepStats;
  /** dispatches per submit in `step` (GpuLlamaOptions.submitEvery); may be changed between steps */
  submitEvery: number;
  /** input rows from which each token matmul uses the shared-memory tile (GpuLlamaOptions.sharedFrom); may be changed between steps */
  get sharedFrom(): Readonly<Record<TokenMatmul, number>> {
    return this.sharedFromBy;
  }
  set sharedFrom(x: SharedFrom) {
    this.sharedFromBy = sharedFromOf(x);
  }
  /** logits rows from which the LM head uses the shared-memory tile (GpuLlamaOptions.headSharedFrom); may be changed between steps */
  headSharedFrom: number;
  /** tokens from which attention runs on the narrow workgroup (GpuLlamaOptions.attentionNarrowFrom); may be changed between steps */
  attentionNarrowFrom: number;

  private readonly ctx: GpuContext;
  private readonly sharedTile: SharedTile;
  private sharedFromBy: Record<TokenMatmul, number> = { ...SHARED_FROM };
  private readonly decodeTile: LaneTile;
  private readonly attentionNarrowWg: number;
  private readonly buffers: GPUBuffer[] = [];
  private readonly dispatches: Dispatch[] = [];
  /** every layer's K and V pool [numBlocks * blockSize, Hkv, D] */
  private readonly pools: GPUBuffer[] = [];
  private readonly b: Record<'step' | 'next' | 'logprob' | 'logits' | 'readLogits' | 'scratch', GPUBuffer>;
  /** two readbacks of a step's ids and logprobs, taken in turns: a step may be submitted before the last one's are read */
  private readonly readIds: [GPUBuffer, GPUBuffer];
  private readTurn = 0;
  /** submitted steps whose results are not read yet (at most two: the readbacks) */
  private unread = 0;
  /** where each input of a step lies in `b.step` (and in each slot of a chain's ring) */
  private readonly layout: StepLayout;
  /** the step's inputs as the CPU writes them: one slot of `layout.bytes` (reused every step) */
  private readonly words: Uint32Array;
  /** a chain's inputs, one slot per step, copied into `b.step` before each (grown on demand) */
  private ring: { buffer: GPUBuffer; words: Uint32Array; ids: GPUBuffer; read: GPUBuffer; slots: number } | null = null;

  private constructor(ctx: GpuContext, config: LlamaConfig, name: string, options: GpuLlamaOptions) {
    this.ctx = ctx;
    this.config = config;
    this.name = name;
    this.format = options.format ?? 'f32';
    this.maxTokens = options.maxTokens ?? 256;
    this.maxSeqs = options.maxSeqs ?? 64;
    this.maxLogitRows = options.maxLogitRows ?? this.maxSeqs * 8;
    this.blockSize = options.blockSize ?? 16;
    this.maxBlocks = Math.ceil(config.maxPositions / this.blockSize);
    this.numBlocks = options.numBlocks ?? this.maxSeqs * this.maxBlocks;
    this.submitEvery = options.submitEvery ?? SUBMIT_EVERY;
    if (!Number.isInteger(this.submitEvery) || this.submitEvery < 0)
      throw new Error(`GpuLlama: submitEvery must be a non-negative integer, got ${this.submitEvery}`);
    this.sharedFrom = options.sharedFrom ?? SHARED_FROM;
    this.headSharedFrom = options.headSharedFrom ?? HEAD_SHARED_FROM;
    if (!(this.headSharedFrom >= 1)) throw new Error(`GpuLlama: headSharedFrom must be at least 1 (Infinity: never), got ${this.headSharedFrom}`);
    this.attentionNarrowFrom = options.attentionNarrowFrom ?? ATTENTION_NARROW_FROM;
    if (!(this.attentionNarrowFrom >= 1))
      throw new Error(`GpuLlama: attentionNarrowFrom must be at least 1 (Infinity: never), got ${this.attentionNarrowFrom}`);
    this.attentionNarrowWg = options.attentionNarrowWg ?? ATTENTION_NARROW_WG;
    this.decodeTile = options.decodeTile ?? MATMUL_TILE;
    for (const [k, v] of Object.entries({
      maxTokens: this.maxTokens,
      maxSeqs: this.maxSeqs,
      maxLogitRows: this.maxLogitRows,
      blockSize: this.blockSize,
      numBlocks: this.numBlocks,
    })) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`GpuLlama: ${k} must be a positive integer, got ${v}`);
    }
    const { vocabSize: V } = config;
    // the split tile where the device has the workgroup memory for it (WebGPU promises 16 KB)
    this.sharedTile =
      options.sharedTile ?? (ctx.device.limits.maxComputeWorkgroupStorageSize >= sharedTileBytes(MATMUL_TILE_SHARED) ? MATMUL_TILE_SHARED : MATMUL_TILE_SHARED_UNSPLIT);
    const pad = Math.max(this.decodeTile.tokens, this.sharedTile.tokens); // the matmul reads whole tiles of rows indices
    this.layout = stepLayout(
      {
        params: 16,
        ids: 4 * this.maxTokens,
        meta: 8 * this.maxTokens,
        rows: 4 * (this.maxLogitRows + pad),
        table: 4 * this.maxSeqs * this.maxBlocks,
      },
      Math.max(ctx.device.limits.minStorageBufferOffsetAlignment, ctx.device.limits.minUniformBufferOffsetAlignment),
    );
    this.words = new Uint32Array(this.layout.bytes / 4);
    this.b = {
      step: this.buffer(this.layout.bytes, UNIFORM | STORAGE | COPY_DST),
      next: this.buffer(4 * this.maxLogitRows, STORAGE | COPY_SRC),
      logprob: this.buffer(4 * this.maxLogitRows, STORAGE | COPY_SRC),
      logits: this.buffer(4 * this.maxLogitRows * V, STORAGE | COPY_SRC),
      readLogits: this.buffer(4 * this.maxLogitRows * V, MAP_READ | COPY_DST),
      scratch: this.buffer(4 * this.blockSize * config.numKvHeads * config.headDim, COPY_SRC | COPY_DST),
    };
    this.readIds = [0, 1].map(() => this.buffer(8 * this.maxLogitRows, MAP_READ | COPY_DST)) as [GPUBuffer, GPUBuffer]; // ids, then their logprobs
    this.stats = { dispatchesPerStep: 0, pipelines: 0, compileMs: 0, weightBytes: 0, kvPoolBytes: 0 };
  }

  /**
   * Upload a model's weights (HF names and layout, as a checkpoint or preset provides them)
   * and build the captured step: buffers, pipelines and bind groups, once.
   */
  static async create(
    ctx: GpuContext,
    config: LlamaConfig,
    source: WeightSource,
    name: string,
    options: GpuLlamaOptions = {},
  ): Promise<GpuLlama> {
    const m = new GpuLlama(ctx, config, name, options);
    try {
      await m.build(source);
    } catch (e) {
      m.dispose();
      throw e;
    }
    return m;
  }

  // ---- building the step

  private async build(source: WeightSource): Promise<void> {
    const c = this.config;
    const { hiddenSize: Dm, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F, vocabSize: V, numLayers } = c;
    const N = this.maxTokens;
    const QKVW = (H + 2 * Hkv) * D;
    const read = (name: string, shape: number[]): Float32Array => readWeight(source, name, shape);
    const weight = (data: Float32Array) => this.weightBuffer(data);

    // ---- activations, rope tables, pools
    const x = this.buffer(4 * N * Dm, STORAGE);
    const qkv = this.buffer(4 * N * QKVW, STORAGE);
    const att = this.buffer(4 * N * H * D, STORAGE);
    const act = this.buffer(4 * N * F, STORAGE);
    const ropeTables = this.upload(ropeCosSin(c.maxPositions, ropeInvFreq(D, c.ropeTheta)));
    const slots = this.numBlocks * this.blockSize;
    const poolBytes = 4 * slots * Hkv * D;
    this.stats.kvPoolBytes = 2 * numLayers * poolBytes;

    // ---- pipelines: one per distinct kernel source, compiled in parallel
    const t0 = performance.now();
    const sources = new Map<string, Promise<GPUComputePipeline>>();
    const pipeline = (code: string): Promise<GPUComputePipeline> => {
      let p = sources.get(code);
      if (!p) {
        const module = this.ctx.device.createShaderModule({ code });
        // synchronous creation: Dawn's async path aborted the process on SwiftShader (seen 2026-11-30)
        p = Promise.resolve(this.ctx.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } }));
        sources.set(code, p);
      }
      return p;
    };
    const sg = this.ctx.info.subgroups32;
    const fmt = this.format;
    // (subgroupAdd sums a row's lanes when they are one 32-lane subgroup; the shared tile has no lanes to sum)
    const mm = (spec: Omit<MatmulSpec, 'format' | 'subgroups32'>) =>
      pipeline(matmulKernel({ ...spec, format: fmt, subgroups32: sg && (spec.tile?.kind !== 'lanes' || spec.tile.lanes === 32) }));
    const attSpec: AttentionSpec = { H, Hkv, D, blockSize: this.blockSize, maxBlocks: this.maxBlocks };
    const eps = { eps: c.rmsNormEps };
    const specs = {
      qkv: {
        K: Dm,
        R: QKVW,
        norm: eps,
        rows: 'tokens',
        epilogue: 'rope',
        rope: { ...attSpec, metaAt: this.layout.offset.meta / 4, tableAt: this.layout.offset.table / 4, maxPositions: c.maxPositions },
      },
      o: { K: H * D, R: Dm, rows: 'tokens', epilogue: 'residual' },
      gateUp: { K: Dm, R: 2 * F, norm: eps, rows: 'tokens', epilogue: 'siluMul' },
      down: { K: F, R: Dm, rows: 'tokens', epilogue: 'residual' },
      head: { K: Dm, R: V, norm: eps, rows: 'logitRows', epilogue: 'store' },
    } satisfies Record<string, Omit<MatmulSpec, 'format' | 'subgroups32'>>;
    const P = {
      embed: pipeline(embedKernel(Dm, fmt)),
      attention: pipeline(pagedAttentionKernel(attSpec)),
      attentionNarrow: pipeline(pagedAttentionKernel(attSpec, this.attentionNarrowWg)),
      argmax: pipeline(argmaxKernel(V)),
      ...Object.fromEntries(
        Object.entries(specs).flatMap(([k, spec]) => [
          [k, mm({ ...spec, tile: this.decodeTile })],
          [`${k}Shared`, mm({ ...spec, tile: this.sharedTile })],
        ]),
      ),
    } as Record<
      'embed' | 'attention' | 'attentionNarrow' | 'argmax' | keyof typeof specs | `${keyof typeof specs}Shared`,
      Promise<GPUComputePipeline>
    >;

    // ---- weights (uploaded while the shaders compile)
    const embedData = read(EMBED_NAME, [V, Dm]);
    const embed = weight(embedData);
    const head = c.tieWordEmbeddings ? embed : weight(read(LM_HEAD_NAME, [V, Dm]));
    const finalNorm = this.upload(read(FINAL_NORM_NAME, [Dm]));
    const layers = [];
    for (let i = 0; i < numLayers; i++) {
      const n = layerTensorNames(i);
      const wqkv = new Float32Array(QKVW * Dm); // q, k, v rows stacked: [(H + 2Hkv) * D, Dm]
      wqkv.set(read(n.q, [H * D, Dm]), 0);
      wqkv.set(read(n.k, [Hkv * D, Dm]), H * D * Dm);
      wqkv.set(read(n.v, [Hkv * D, Dm]), (H + Hkv) * D * Dm);
      const gate = read(n.gate, [F, Dm]);
      const up = read(n.up, [F, Dm]);
      const wgu = new Float32Array(2 * F * Dm); // rows interleaved: gate r at 2r, up r at 2r + 1
      for (let r = 0; r < F; r++) {
        wgu.set(gate.subarray(r * Dm, (r + 1) * Dm), 2 * r * Dm);
        wgu.set(up.subarray(r * Dm, (r + 1) * Dm), (2 * r + 1) * Dm);
      }
      layers.push({
        attnNorm: this.upload(read(n.attnNorm, [Dm])),
        wqkv: weight(ropeRowPairs(wqkv, attSpec, Dm)), // RoPE's pairs side by side (the epilogue's layout)
        wo: weight(read(n.o, [Dm, H * D])),
        mlpNorm: this.upload(read(n.mlpNorm, [Dm])),
        wgu: weight(wgu),
        wdown: weight(read(n.down, [Dm, F])),
        k: this.buffer(poolBytes, STORAGE | COPY_SRC | COPY_DST),
        v: this.buffer(poolBytes, STORAGE | COPY_SRC | COPY_DST),
      });
      this.pools.push(layers[i].k, layers[i].v);
    }
    const resolved = Object.fromEntries(await Promise.all(Object.entries(P).map(async ([k, p]) => [k, await p] as const))) as Record<
      keyof typeof P,
      GPUComputePipeline
    >;
    this.stats.compileMs = performance.now() - t0;
    this.stats.pipelines = sources.size;

    // ---- the dispatch list, with its bind groups: made once, encoded every step
    type Binding = GPUBuffer | GPUBufferBinding;
    const b = { ...this.b, ...this.regions() };
    const bindGroup = (p: GPUComputePipeline, entries: Binding[] | Record<number, Binding>) => {
      const list = Array.isArray(entries)
        ? entries.map((buf, i) => [i, buf] as const)
        : Object.entries(entries).map(([i, buf]) => [Number(i), buf] as const);
      return this.ctx.device.createBindGroup({
        layout: p.getBindGroupLayout(0),
        entries: list.map(([binding, res]) => ({ binding, resource: 'buffer' in res ? res : { buffer: res } })),
      });
    };
    const add = (name: 'embed' | 'attention' | 'argmax', entries: Binding[], count: Dispatch['count'], big?: Dispatch['big']) => {
      this.dispatches.push({ name, pipeline: resolved[name], bindGroup: bindGroup(resolved[name], entries), count, big });
    };
    // a matmul, with its shared-memory tile; its grid: weight rows x tiles of tokens (or of logits rows, for the head)
    const matmul = (name: keyof typeof specs, entries: Record<number, Binding>) => {
      const { R, rows } = specs[name];
      const inputRows = (n: number, m: number) => (rows === 'logitRows' ? m : n);
      const grid =
        (tile: MatmulTile) =>
        (n: number, m: number): [number, number] => [Math.ceil(R / tile.rows), Math.ceil(inputRows(n, m) / tile.tokens)];
      const variant = (pipeline: GPUComputePipeline, tile: MatmulTile): Variant => ({ pipeline, bindGroup: bindGroup(pipeline, entries), count: grid(tile) });
      this.dispatches.push({
        name,
        ...variant(resolved[name], this.decodeTile),
        // from sharedFrom input rows, or headSharedFrom logits rows (the LM head's V weight rows fill the GPU sooner)
        big: { ...variant(resolved[`${name}Shared`], this.sharedTile), rows: inputRows, from: name === 'head' ? () => this.headSharedFrom : () => this.sharedFromBy[name] },
      });
    };
    add('embed', [embed, b.ids, x, b.next], (n) => n); // (next: the previous step's picks, for PREVIOUS_PICK ids)
    for (const L of layers) {
      matmul('qkv', { 0: b.params, 1: L.wqkv, 2: x, 3: qkv, 4: L.attnNorm, 6: L.k, 7: L.v, 8: this.b.step, 9: ropeTables });
      const attention = [qkv, L.k, L.v, b.meta, b.table, att];
      const narrow = resolved.attentionNarrow; // (from attentionNarrowFrom tokens)
      add('attention', attention, (n) => n * H, {
        pipeline: narrow,
        bindGroup: bindGroup(narrow, attention),
        count: (n) => [n * H, 1],
        rows: (n) => n,
        from: () => this.attentionNarrowFrom,
      });
      matmul('o', { 0: b.params, 1: L.wo, 2: att, 3: x });
      matmul('gateUp', { 0: b.params, 1: L.wgu, 2: x, 3: act, 4: L.mlpNorm });
      matmul('down', { 0: b.params, 1: L.wdown, 2: act, 3: x });
    }
    matmul('head', { 0: b.params, 1: head, 2: x, 3: b.logits, 4: finalNorm, 5: b.rows });
    add('argmax', [b.logits, b.next, b.logprob], (_n, m) => m);
    this.stats.dispatchesPerStep = this.dispatches.length;
    if (this.dispatches.length !== capturedDispatches(numLayers))
      throw new Error(`captured step: ${this.dispatches.length} dispatches, capturedDispatches says ${capturedDispatches(numLayers)}`);
  }

  // the step's inputs as bindings: regions of the one `step` buffer
  private regions(): Record<keyof StepInputs, GPUBufferBinding> {
    const L = this.layout;
    const region = (k: keyof StepInputs): GPUBufferBinding => ({ buffer: this.b.step, offset: L.offset[k], size: L.size[k] });
    return { params: region('params'), ids: region('ids'), meta: region('meta'), rows: region('rows'), table: region('table') };
  }

  private buffer(size: number, usage: number): GPUBuffer {
    const buf = this.ctx.device.createBuffer({ size: Math.max(16, Math.ceil(size / 16) * 16), usage });
    this.buffers.push(buf);
    return buf;
  }

  private upload(data: Float32Array | Uint32Array): GPUBuffer {
    const buf = this.buffer(data.byteLength, STORAGE | COPY_DST);
    this.ctx.device.queue.writeBuffer(buf, 0, data.buffer, data.byteOffset, data.byteLength);
    return buf;
  }

  private weightBuffer(data: Float32Array): GPUBuffer {
    const stored = this.format === 'f32' ? data : packBf16(data);
    this.stats.weightBytes += stored.byteLength;
    return this.upload(stored);
  }

  // ---- a step

  /**
   * Run one captured step over `seqs` (any mix of prefill chunks, decodes and verify runs).
   * `read`: 'ids' reads back only the argmax of each logits row; 'logits' the rows as well.
   */
  async step(
    seqs: readonly GpuStepSequence[],
    read: 'ids' | 'logits' = 'ids',
    before?: (encoder: GPUCommandEncoder) => void,
  ): Promise<GpuStepResult> {
    return this.submit(seqs, read, before).read();
  }

  /**
   * Write, encode and submit a step without waiting for it; `read()` waits for its results. The
   * next step may be submitted before this one is read (the engine's overlapped steps: the CPU
   * schedules and encodes step k+1 while the GPU runs step k), and its token ids may name this
   * step's picks (PREVIOUS_PICK | row, written as -(row + 1) in GpuStepSequence.tokens): they
   * never leave the GPU. At most two steps wait unread, and only one that reads logits.
   */
  submit(seqs: readonly GpuStepSequence[], read: 'ids' | 'logits' = 'ids', before?: (encoder: GPUCommandEncoder) => void): { encodeMs: number; read: () => Promise<GpuStepResult> } {
    if (this.unread >= 2 || (read === 'logits' && this.unread > 0))
      throw new Error(`submit: ${this.unread} step(s) not read yet; read them first (two may wait, and none beside a step that reads logits)`);
    const t0 = performance.now();
    const { n, m } = this.writeStep(seqs);
    const device = this.ctx.device;
    const first = device.createCommandEncoder();
    before?.(first); // (draftThenVerify's copies of the drafted ids into the step's inputs)
    const encoder = this.encodeSubmitting(first, n, m);
    const readIds = this.readIds[this.readTurn];
    this.readTurn ^= 1;
    if (m > 0) {
      encoder.copyBufferToBuffer(this.b.next, 0, readIds, 0, 4 * m);
      encoder.copyBufferToBuffer(this.b.logprob, 0, readIds, 4 * m, 4 * m);
    }
    if (m > 0 && read === 'logits') encoder.copyBufferToBuffer(this.b.logits, 0, this.b.readLogits, 0, 4 * m * this.config.vocabSize);
    device.queue.submit([encoder.finish()]);
    const encodeMs = performance.now() - t0;
    this.unread++;
    let done = false;
    const results = async (): Promise<GpuStepResult> => {
      if (done) throw new Error('submit: this step was read already');
      done = true;
      try {
        // a KV-only step (no logits rows): nothing to read back; the next step's queue order keeps it first
        if (m === 0) return { ids: new Int32Array(0), logprobs: new Float32Array(0), logits: read === 'logits' ? new Float32Array(0) : null, encodeMs };
        // both readbacks wait on the same submit: map them together
        const bytes = 4 * m * this.config.vocabSize;
        await Promise.all([readIds.mapAsync(MAP_READ, 0, 8 * m), read === 'logits' ? this.b.readLogits.mapAsync(MAP_READ, 0, bytes) : null]);
        const both = readIds.getMappedRange(0, 8 * m).slice(0);
        readIds.unmap();
        const ids = new Int32Array(both, 0, m);
        const logprobs = new Float32Array(both, 4 * m, m);
        let logits: Float32Array | null = null;
        if (read === 'logits') {
          logits = new Float32Array(this.b.readLogits.getMappedRange(0, bytes).slice(0));
          this.b.readLogits.unmap();
        }
        if (this.ctx.errors.length > 0) throw new Error(`GPU error during the step: ${this.ctx.errors[0]}`);
        return { ids, logprobs, logits, encodeMs };
      } finally {
        this.unread--;
      }
    };
    return { encodeMs, read: results };
  }

  /**
   * Greedy decode of a batch for `steps` tokens with the token ids never leaving the GPU between
   * steps: step k+1 reads step k's argmax straight from its buffer, so it is encoded and submitted
   * before step k's ids are read (they are read one step late, for streaming and stop checks).
   * `seqs` hold their prompts in the pool already; `first[b]` is the token each feeds first.
   * Returns ids [steps][B] (ids[k][b] is the token after step k) and each step's wall time.
   */
  async greedyDecode(
    seqs: readonly { start: number; blockTable: readonly number[] }[],
    first: readonly number[],
    steps: number,
    onStep?: (k: number, ids: Int32Array) => void,
  ): Promise<{ ids: Int32Array[]; stepMs: number[]; encodeMs: number[] }> {
    const B = seqs.length;
    if (first.length !== B) throw new Error(`greedyDecode: ${first.length} first tokens for ${B} sequences`);
    const device = this.ctx.device;
    // two staging buffers: step k's ids are mapped while step k+1 runs
    const staging = [0, 1].map(() => this.buffer(4 * B, MAP_READ | COPY_DST));
    const ids: Int32Array[] = [];
    const stepMs: number[] = [];
    const encodeMs: number[] = [];
    const pending: Promise<void>[] = [];
    const submit = (k: number) => {
      const t0 = performance.now();
      const step = seqs.map((s, b) => ({ tokens: [k === 0 ? first[b] : 0], start: s.start + k, blockTable: s.blockTable, logits: 1 }));
      const { n, m } = this.writeStep(step);
      const encoder = device.createCommandEncoder();
      if (k > 0) encoder.copyBufferToBuffer(this.b.next, 0, this.b.step, this.layout.offset.ids, 4 * B); // last step's argmax is this step's input
      this.encode(encoder, n, m);
      const st = staging[k % 2];
      encoder.copyBufferToBuffer(this.b.next, 0, st, 0, 4 * B);
      device.queue.submit([encoder.finish()]);
      encodeMs.push(performance.now() - t0);
      pending[k] = st.mapAsync(MAP_READ, 0, 4 * B).then(() => {
        ids[k] = new Int32Array(st.getMappedRange(0, 4 * B).slice(0));
        st.unmap();
        onStep?.(k, ids[k]);
      });
    };
    try {
      let last = performance.now();
      for (let k = 0; k < steps; k++) {
        if (k >= 2) await pending[k - 2]; // its staging buffer is reused now
        submit(k);
        if (k >= 1) {
          await pending[k - 1];
          const now = performance.now();
          stepMs.push(now - last);
          last = now;
        }
      }
      await pending[steps - 1];
      stepMs.push(performance.now() - last);
    } finally {
      for (const st of staging) {
        st.destroy();
        this.buffers.splice(this.buffers.indexOf(st), 1);
      }
    }
    if (this.ctx.errors.length > 0) throw new Error(`GPU error during decode: ${this.ctx.errors[0]}`);
    return { ids, stepMs, encodeMs };
  }

  /**
   * Greedy decoding of `steps` tokens per sequence with ONE readback (speculative drafting): step 0
   * feeds each sequence its tokens, every later step the previous step's argmax straight from the
   * GPU. Each step's inputs are written ahead into a slot of a ring buffer and copied into place
   * between the steps' passes; the ids come back once, at the end. Each sequence gets one logits
   * row per step, and its table must already hold the blocks for all `steps` positions.
   * Returns ids[b][k] and logprobs[b][k]: the token after step k for sequence b.
   */
  async greedyChain(seqs: readonly GpuStepSequence[], steps: number): Promise<{ ids: number[][]; logprobs: number[][]; encodeMs: number }> {
    const t0 = performance.now();
    const chain = this.submitChain(seqs, steps);
    const encodeMs = performance.now() - t0;
    return { ...(await chain.read()), encodeMs };
  }

  /**
   * Speculative decoding's draft and verify in one go, greedy (lesson 4): this (the draft)
   * runs its chain of `steps` steps, then `target` runs `verify`, whose drafted tokens are copied
   * on the GPU from the chain's argmax ids: row b's draft k goes to token draftedAt[b] + k of the
   * verify step (its placeholder there is overwritten). Nothing comes back in between; both
   * readbacks wait together. Returns the drafted ids [B][steps] and the target's picks per logits row.
   */
  async draftThenVerify(
    seqs: readonly GpuStepSequence[],
    steps: number,
    target: GpuLlama,
    verify: readonly GpuStepSequence[],
    draftedAt: readonly number[],
  ): Promise<{ drafted: number[][]; target: GpuStepResult }> {
    if (target.ctx.device !== this.ctx.device) throw new Error('draftThenVerify: the draft and the target must share one GPU device');
    if (draftedAt.length !== seqs.length)
      throw new Error(`draftThenVerify: ${draftedAt.length} draft positions for ${seqs.length} sequences`);
    const chain = this.submitChain(seqs, steps);
    const B = seqs.length;
    const res = target.step(verify, 'ids', (encoder) => {
      // each drafted token from the chain's ids [steps][B] into the verify step's token list
      // (one copy when there is one row: its drafts lie side by side)
      if (B === 1) encoder.copyBufferToBuffer(chain.ids, 0, target.b.step, target.layout.offset.ids + 4 * draftedAt[0], 4 * steps);
      else {
        for (let b = 0; b < B; b++) {
          for (let k = 0; k < steps; k++)
            encoder.copyBufferToBuffer(chain.ids, 4 * (k * B + b), target.b.step, target.layout.offset.ids + 4 * (draftedAt[b] + k), 4);
        }
      }
    });
    const [drafted, picks] = await Promise.all([chain.read(), res]);
    return { drafted: drafted.ids, target: picks };
  }

  // submit a greedy chain (greedyChain's first half): one submit per step, the ids kept in the
  // ring's `ids` buffer on the GPU; read() maps them
  private submitChain(
    seqs: readonly GpuStepSequence[],
    steps: number,
  ): { ids: GPUBuffer; read: () => Promise<{ ids: number[][]; logprobs: number[][] }> } {
    if (!Number.isInteger(steps) || steps < 1) throw new Error(`greedyChain: steps must be a positive integer, got ${steps}`);
    if (seqs.some((s) => s.logits !== 1)) throw new Error('greedyChain: each sequence gets exactly one logits row per step');
    const B = seqs.length;
    const L = this.layout;
    const ring = this.chainRing(steps);
    const used = [];
    for (let k = 0; k < steps; k++) {
      const step =
        k === 0 ? seqs : seqs.map((s) => ({ tokens: [0], start: s.start + s.tokens.length + k - 1, blockTable: s.blockTable, logits: 1 }));
      used.push(this.fillStep(step, ring.words, (k * L.bytes) / 4));
    }
    const device = this.ctx.device;
    device.queue.writeBuffer(ring.buffer, 0, ring.words.buffer, 0, steps * L.bytes);
    // one submit per step: the GPU runs step k while step k+1 is encoded (the queue keeps the order)
    used.forEach(({ n, m, bytes }, k) => {
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(ring.buffer, k * L.bytes, this.b.step, 0, bytes);
      if (k > 0) encoder.copyBufferToBuffer(this.b.next, 0, this.b.step, L.offset.ids, 4 * B); // last step's argmax is this step's input
      this.encode(encoder, n, m);
      encoder.copyBufferToBuffer(this.b.next, 0, ring.ids, 4 * B * k, 4 * B);
      encoder.copyBufferToBuffer(this.b.logprob, 0, ring.ids, 4 * B * (steps + k), 4 * B);
      if (k === steps - 1) encoder.copyBufferToBuffer(ring.ids, 0, ring.read, 0, 8 * B * steps);
      device.queue.submit([encoder.finish()]);
    });
    const read = async () => {
      await ring.read.mapAsync(MAP_READ, 0, 8 * B * steps);
      const out = ring.read.getMappedRange(0, 8 * B * steps).slice(0);
      ring.read.unmap();
      if (this.ctx.errors.length > 0) throw new Error(`GPU error during a chained step: ${this.ctx.errors[0]}`);
      const ids = new Int32Array(out, 0, B * steps);
      const logprobs = new Float32Array(out, 4 * B * steps, B * steps);
      return {
        ids: seqs.map((_, b) => Array.from({ length: steps }, (_, k) => ids[k * B + b])),
        logprobs: seqs.map((_, b) => Array.from({ length: steps }, (_, k) => logprobs[k * B + b])),
      };
    };
    return { ids: ring.ids, read };
  }

  // the ring of step inputs and the readback buffer of a chain of `steps`, grown on demand
  private chainRing(steps: number): { buffer: GPUBuffer; words: Uint32Array; ids: GPUBuffer; read: GPUBuffer } {
    if (this.ring && this.ring.slots >= steps) return this.ring;
    for (const old of this.ring ? [this.ring.buffer, this.ring.ids, this.ring.read] : []) {
      old.destroy();
      this.buffers.splice(this.buffers.indexOf(old), 1);
    }
    const slots = Math.max(steps, 8);
    this.ring = {
      buffer: this.buffer(slots * this.layout.bytes, COPY_SRC | COPY_DST),
      words: new Uint32Array((slots * this.layout.bytes) / 4),
      ids: this.buffer(8 * this.maxSeqs * slots, COPY_SRC | COPY_DST), // [steps][B] ids, then their logprobs
      read: this.buffer(8 * this.maxSeqs * slots, MAP_READ | COPY_DST),
      slots,
    };
    return this.ring;
  }

  /**
   * Greedy generation of a batch from an empty pool: the prompts prefilled in one step, then
   * `steps` chained decode steps (greedyDecode). Sequence b takes contiguousTables' blocks b.
   * Returns each sequence's steps + 1 tokens (the prefill's, then each step's) and the timings.
   */
  async greedyGenerate(
    prompts: readonly (readonly number[])[],
    steps: number,
    onStep?: (k: number) => void,
  ): Promise<{ tokens: number[][]; prefillMs: number; stepMs: number[]; encodeMs: number[] }> {
    const tables = contiguousTables(this, prompts.length);
    const t0 = performance.now();
    const pre = await this.step(
      prompts.map((p, b) => ({ tokens: p, start: 0, blockTable: tables[b], logits: 1 })),
      'ids',
    );
    const prefillMs = performance.now() - t0;
    const r = await this.greedyDecode(
      prompts.map((p, b) => ({ start: p.length, blockTable: tables[b] })),
      Array.from(pre.ids),
      steps,
      onStep && ((k) => onStep(k)),
    );
    const tokens = prompts.map((_, b) => [pre.ids[b], ...r.ids.map((ids) => ids[b])]);
    return { tokens, prefillMs, stepMs: r.stepMs, encodeMs: r.encodeMs };
  }

  /** Encode the step's dispatches (one compute pass) for n tokens and m logits rows. */
  encode(encoder: GPUCommandEncoder, n: number, m: number): void {
    const pass = encoder.beginComputePass();
    this.encodeDispatches(pass, this.dispatches, n, m);
    pass.end();
  }

  // encode the step's dispatches, submitting `encoder` and starting a new one after every
  // `submitEvery` of them; returns the open encoder that holds the last ones. Behind a step not
  // read yet (the engine's overlapped steps) the GPU is busy with that one: early submits would
  // only cost CPU time, so the step goes in one submit.
  private encodeSubmitting(encoder: GPUCommandEncoder, n: number, m: number): GPUCommandEncoder {
    const every = this.unread > 0 ? 0 : this.submitEvery;
    const all = this.dispatches.length;
    if (every === 0 || every >= all) {
      this.encode(encoder, n, m);
      return encoder;
    }
    for (let from = 0; from < all; from += every) {
      if (from > 0) {
        this.ctx.device.queue.submit([encoder.finish()]);
        encoder = this.ctx.device.createCommandEncoder();
      }
      const pass = encoder.beginComputePass();
      this.encodeDispatches(pass, this.dispatches, n, m, from, Math.min(all, from + every));
      pass.end();
    }
    return encoder;
  }

  // these dispatches (all of them, a range, or one to time it) into an open pass
  private encodeDispatches(
    pass: GPUComputePassEncoder,
    dispatches: readonly Dispatch[],
    n: number,
    m: number,
    from = 0,
    to = dispatches.length,
  ): void {
    for (let i = from; i < to; i++) {
      const d = this.tileOf(dispatches[i], n, m);
      const count = d.count(n, m);
      const [x, y] = typeof count === 'number' ? [count, 1] : count;
      if (x === 0 || y === 0) continue;
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(x, y);
    }
  }

  // the dispatch, or its kernel for big steps (a matmul's shared-memory tile, attention's narrow workgroup)
  private tileOf(d: Dispatch, n: number, m: number): Dispatch | Variant {
    return d.big && d.big.rows(n, m) >= d.big.from() ? d.big : d;
  }

  // the step's inputs into `into` (one slot of the layout, starting at word `at`); returns the
  // token and logits-row counts and the bytes of the slot in use (the table comes last)
  private fillStep(seqs: readonly GpuStepSequence[], into: Uint32Array, at: number): { n: number; m: number; bytes: number } {
    const c = this.config;
    if (seqs.length === 0) throw new Error('step: no sequences');
    if (seqs.length > this.maxSeqs) throw new Error(`step: ${seqs.length} sequences, this model was built for at most ${this.maxSeqs}`);
    let n = 0;
    let m = 0;
    for (const s of seqs) {
      n += s.tokens.length;
      m += s.logits;
    }
    if (n > this.maxTokens) throw new Error(`step: ${n} tokens, this model was built for at most ${this.maxTokens}`);
    if (m > this.maxLogitRows) throw new Error(`step: ${m} logits rows, this model was built for at most ${this.maxLogitRows}`);
    const o = this.layout.offset;
    const [ids, meta, rows, table] = [o.ids, o.meta, o.rows, o.table].map((bytes) => at + bytes / 4); // word offsets
    into.set([n, m, 0, 0], at + o.params / 4);
    let t = 0;
    let r = 0;
    seqs.forEach((s, i) => {
      const end = s.start + s.tokens.length;
      if (s.tokens.length === 0) throw new Error(`step: sequence ${i} has no new tokens`);
      if (end > c.maxPositions) throw new Error(`step: sequence ${i} reaches ${end} tokens, past the context length (${c.maxPositions})`);
      if (!Number.isInteger(s.logits) || s.logits < 0 || s.logits > s.tokens.length)
        throw new Error(`step: sequence ${i} asks logits for ${s.logits} of ${s.tokens.length} tokens`);
      const need = Math.ceil(end / this.blockSize);
      if (s.blockTable.length < need)
        throw new Error(`step: sequence ${i} needs ${need} blocks for ${end} tokens, its table has ${s.blockTable.length}`);
      for (let j = 0; j < need; j++) {
        const blk = s.blockTable[j];
        if (!Number.isInteger(blk) || blk < 0 || blk >= this.numBlocks)
          throw new Error(`step: sequence ${i}: block id ${blk} is not in [0, ${this.numBlocks})`);
        into[table + i * this.maxBlocks + j] = blk;
      }
      for (let j = 0; j < s.tokens.length; j++) {
        const id = s.tokens[j];
        // -(row + 1): the previous step's pick of that logits row (PREVIOUS_PICK)
        if (!Number.isInteger(id) || id >= c.vocabSize || id < -this.maxLogitRows)
          throw new Error(`step: sequence ${i}: token id ${id} is not an integer in [0, ${c.vocabSize}) (or -(row + 1) for a row of the previous step's picks)`);
        into[ids + t] = id >= 0 ? id : (PREVIOUS_PICK | (-id - 1)) >>> 0;
        into[meta + 2 * t] = i;
        into[meta + 2 * t + 1] = s.start + j;
        if (j >= s.tokens.length - s.logits) into[rows + r++] = t;
        t++;
      }
    });
    return { n, m, bytes: o.table + 4 * seqs.length * this.maxBlocks };
  }

  // the step's inputs into `b.step` with one writeBuffer
  private writeStep(seqs: readonly GpuStepSequence[]): { n: number; m: number } {
    const { n, m, bytes } = this.fillStep(seqs, this.words, 0);
    this.ctx.device.queue.writeBuffer(this.b.step, 0, this.words.buffer, 0, bytes);
    return { n, m };
  }

  /**
   * GPU time of one step over `seqs`, from timestamp queries (needs the adapter's
   * 'timestamp-query'): the whole step in one compute pass, as step() runs it, and each dispatch
   * alone in a pass of its own (which adds the cost of a pass to each). Microseconds; the
   * median of `repeats` runs after two warm-ups. The pool is written as a real step would.
   */
  async timeStep(seqs: readonly GpuStepSequence[], repeats = 5): Promise<{ stepUs: number; dispatches: { name: string; us: number }[] }> {
    const all = this.dispatches;
    const runs: number[][] = [];
    for (let rep = 0; rep < repeats + 2; rep++) {
      const { n, m } = this.writeStep(seqs);
      // passes: one per dispatch, then the whole step in one pass, as encode() runs it
      const us = await timePasses(this.ctx, all.length + 1, (pass, i) =>
        this.encodeDispatches(pass, i < all.length ? [all[i]] : all, n, m),
      );
      if (rep >= 2) runs.push(us); // two warm-ups
    }
    const median = (i: number) => percentile(runs.map((r) => r[i]), 50);
    return { stepUs: median(all.length), dispatches: all.map((d, i) => ({ name: d.name, us: median(i) })) };
  }

  /**
   * Copy whole blocks of every layer's K and V pool, src -> dst (the block manager's copy-on-
   * write). Goes through a one-block scratch buffer: WebGPU copies never read and write one buffer.
   */
  copyBlocks(copies: readonly (readonly [number, number])[]): void {
    if (copies.length === 0) return;
    const bytes = 4 * this.blockSize * this.config.numKvHeads * this.config.headDim;
    const encoder = this.ctx.device.createCommandEncoder();
    for (const [src, dst] of copies) {
      for (const id of [src, dst])
        if (!Number.isInteger(id) || id < 0 || id >= this.numBlocks)
          throw new Error(`copyBlocks: block id ${id} is not in [0, ${this.numBlocks})`);
      for (const pool of this.pools) {
        encoder.copyBufferToBuffer(pool, src * bytes, this.b.scratch, 0, bytes);
        encoder.copyBufferToBuffer(this.b.scratch, 0, pool, dst * bytes, bytes);
      }
    }
    this.ctx.device.queue.submit([encoder.finish()]);
  }

  /** Free every GPU buffer (the device stays: it belongs to the caller's GpuContext). */
  dispose(): void {
    for (const b of this.buffers) b.destroy();
    this.buffers.length = 0;
    this.dispatches.length = 0;
  }
}

/**
 * The RoPE epilogue's tables, cos and sin of position p times each inverse frequency, in fp32 as
 * HF computes them (the angle rounded to fp32 first). [maxPositions, D/2] each
 */
export function ropeHalfTables(maxPositions: number, invFreq: Float32Array): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const cos = new Float32Array(maxPositions * half);
  const sin = new Float32Array(maxPositions * half);
  for (let p = 0; p < maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * invFreq[i]);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** The RoPE epilogue's table: ropeHalfTables' cos [maxPositions, D/2], then its sin, in one array. */
export function ropeCosSin(maxPositions: number, invFreq: Float32Array): Float32Array {
  const { cos, sin } = ropeHalfTables(maxPositions, invFreq);
  const both = new Float32Array(cos.length + sin.length);
  both.set(cos);
  both.set(sin, cos.length);
  return both;
}

/** Block tables for plain generation: sequence b owns blocks b*maxBlocks .. (b+1)*maxBlocks - 1. */
export function contiguousTables(model: Pick<GpuLlama, 'maxBlocks' | 'numBlocks'>, batch: number): number[][] {
  if (batch * model.maxBlocks > model.numBlocks)
    throw new Error(`${batch} sequences of a full context need ${batch * model.maxBlocks} blocks; the pool has ${model.numBlocks}`);
  return Array.from({ length: batch }, (_, b) => Array.from({ length: model.maxBlocks }, (_, j) => b * model.maxBlocks + j));
}

/** fp32 -> bf16 (round to nearest even), two per u32: element 2i in the low half (little-endian). */
export function packBf16(data: Float32Array): Uint32Array {
  if (data.length % 2 !== 0) throw new Error(`packBf16: ${data.length} values, need an even count`);
  return new Uint32Array(f32ToBf16(data).buffer);
}

// ---- the step's inputs: one buffer, one aligned region each

/** Byte sizes of a step's inputs. */
interface StepInputs {
  params: number; // [n, m, 0, 0]: tokens and logits rows (a uniform)
  ids: number; // [N] token ids
  meta: number; // [N, 2] (sequence, position) per token
  rows: number; // [M + tile] the tokens that get logits rows
  table: number; // [S, maxBlocks] block tables (last: a step writes only its sequences' rows)
}

interface StepLayout {
  offset: StepInputs;
  size: StepInputs;
  bytes: number;
}

// each input at an offset aligned for binding (256 bytes on every adapter seen)
function stepLayout(size: StepInputs, align: number): StepLayout {
  const offset = { params: 0, ids: 0, meta: 0, rows: 0, table: 0 };
  let at = 0;
  for (const k of ['params', 'ids', 'meta', 'rows', 'table'] as const) {
    offset[k] = at;
    at = Math.ceil((at + size[k]) / align) * align;
  }
  return { offset, size, bytes: at };
}
