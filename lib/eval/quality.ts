// Quality of a KV cache against the float32 contiguous cache (lesson 3, "KV-cache optimizations"):
// perplexity on held-out text, next-token KL divergence, teacher-forced top-1 agreement and greedy
// agreement over generated continuations. (Attention-level measurements are in attention.ts.)
//
// Teacher-forced protocol (the perplexity protocol of data/README.md, made to exercise a cache):
// the token stream is cut into non-overlapping windows of `window` + 1 tokens; each window starts
// a fresh cache and is fed in chunks of `chunk` tokens with logits at every position. Every chunk
// attends over what the cache returns: for a quantized cache, the dequantized past and the chunk's
// own keys/values already quantized (they are quantized on insertion), so each prediction sees
// the quantized cache just as decoding one token at a time would (per-channel schemes quantize a
// token group when it fills, a little earlier than decoding would: pessimistic). One reference
// (float32 contiguous) pass per chunk is shared by every cache compared, in lockstep, so KL needs
// no stored logits.
//
// An evicting cache changes nothing until its first eviction: averaged over a whole window, the
// positions before the budget dilute its effect. A cache that reports `held()` is also scored
// over the positions where it really held fewer tokens than the reference (some layer evicted;
// eviction happens before a chunk is stored, so a chunk's positions are all affected or none),
// with the reference's perplexity over the same positions beside it (`evicted`).

import * as tf from '@tensorflow/tfjs-core';

import { generate, type LanguageModel } from '../generate/generate';
import type { KVCache, KVShape } from '../kv/cache';
import { ContiguousKVCache } from '../kv/contiguous';
import type { LlamaModel } from '../model/llama';

/** Makes a cache for a model's KV shape and a batch size (the `makeCache` of generate()). */
export type CacheFactory = (shape: KVShape, batchSize: number) => KVCache;

/** Options of the teacher-forced comparison (lesson 3). */
export interface TeacherForcedOptions {
  /** predictions per window (default 1024: the model's context) */
  window?: number;
  /** tokens fed per forward step (default 128) */
  chunk?: number;
  /** windows evaluated, from the start of the stream (default: all) */
  maxWindows?: number;
  /** called after each window */
  onWindow?: (done: number, total: number) => void;
}

/** Teacher-forced figures of one cache (lesson 3). */
export interface TeacherForcedResult {
  tokens: number;
  /** mean negative log-likelihood (nats) */
  nll: number;
  ppl: number;
  /** mean KL(p_fp32 || p_cache) of the next-token distribution (nats); 0 for the reference */
  kl: number;
  /** fraction of positions whose argmax equals the reference's */
  top1Agreement: number;
  /** cache bytes (tf.memory) at the end of a full window */
  bytes: number;
  /** theoretical bytes at the same point, when the cache reports them */
  theoreticalBytes: number | null;
  /**
   * For a cache that reports `held()` (eviction): the same figures over only the positions where
   * some layer held fewer tokens than the reference; null for other caches.
   */
  evicted: EvictedScore | null;
}

/** Teacher-forced figures over the positions where an evicting cache held fewer tokens than the reference (lesson 3). */
export interface EvictedScore {
  /** positions scored (0 when the cache never evicted) */
  tokens: number;
  ppl: number;
  /** the reference's perplexity over the same positions */
  referencePpl: number;
  kl: number;
  top1Agreement: number;
  /** mean over those positions of tokens held (all layers) / tokens the reference held */
  heldShare: number;
}

interface Acc {
  nll: number;
  kl: number;
  agree: number;
  n: number;
  bytes: number;
  theoretical: number | null;
  /** over evicted positions only: the cache's and the reference's nll, kl, agreement, held share */
  ev: { nll: number; refNll: number; kl: number; agree: number; n: number; held: number } | null;
}

/**
 * Run the reference (float32 contiguous) and every named cache over the same windows of `ids`,
 * in lockstep (lesson 3). Returns the reference's figures and each cache's.
 */
export function compareTeacherForced(
  model: LlamaModel,
  ids: readonly number[],
  caches: Record<string, CacheFactory>,
  options: TeacherForcedOptions = {},
): { reference: TeacherForcedResult; results: Record<string, TeacherForcedResult> } {
  const W = options.window ?? Math.min(1024, model.config.maxPositions);
  const C = options.chunk ?? 128;
  if (!Number.isInteger(C) || C < 1) throw new Error(`chunk must be a positive integer, got ${C}`);
  const starts: number[] = [];
  for (let s = 0; s + 1 < ids.length; s += W) starts.push(s);
  const windows = starts.slice(0, options.maxWindows ?? starts.length);
  const names = Object.keys(caches);
  const V = model.config.vocabSize;
  const acc = (): Acc => ({ nll: 0, kl: 0, agree: 0, n: 0, bytes: 0, theoretical: null, ev: null });
  const ref = acc();
  const accs = names.map(acc);

  windows.forEach((start, wi) => {
    const win = ids.slice(start, start + W + 1);
    const refCache = new ContiguousKVCache(model.kvShape, 1);
    const made = names.map((n) => caches[n](model.kvShape, 1));
    try {
      for (let c0 = 0; c0 + 1 < win.length; c0 += C) {
        const input = win.slice(c0, Math.min(c0 + C, win.length - 1));
        const targets = win.slice(c0 + 1, c0 + 1 + input.length);
        const logp = (cache: KVCache): Float32Array => {
          const opts = cache.observe ? { logits: 'all' as const, onAttention: cache.observe.bind(cache) } : { logits: 'all' as const };
          const lp = tf.tidy(() => tf.logSoftmax(model.forward([input], cache, opts)));
          const data = lp.dataSync() as Float32Array; // [T, V]
          lp.dispose();
          return data;
        };
        const r = logp(refCache);
        const refArg = new Int32Array(input.length);
        for (let t = 0; t < input.length; t++) {
          ref.nll -= r[t * V + targets[t]];
          refArg[t] = argmaxRow(r, t * V, V);
        }
        ref.n += input.length;
        made.forEach((cache, i) => {
          const q = logp(cache);
          const a = accs[i];
          // evicted: some layer holds fewer tokens than were fed (this chunk's included)
          const held = cache.held?.();
          const full = cache.lengths()[0];
          const evicted = held !== undefined && held.some((h) => h < full);
          if (held !== undefined && a.ev === null) a.ev = { nll: 0, refNll: 0, kl: 0, agree: 0, n: 0, held: 0 };
          for (let t = 0; t < input.length; t++) {
            const nll = -q[t * V + targets[t]];
            const kl = klRow(r, q, t * V, V);
            const agree = argmaxRow(q, t * V, V) === refArg[t] ? 1 : 0;
            a.nll += nll;
            a.kl += kl;
            a.agree += agree;
            if (evicted && a.ev) {
              // position c0 + t sees the held tokens before it plus this chunk's up to it
              const seen = c0 + t + 1;
              const chunkAfter = input.length - 1 - t; // this chunk's tokens after t: held, not seen by t
              a.ev.nll += nll;
              a.ev.refNll -= r[t * V + targets[t]];
              a.ev.kl += kl;
              a.ev.agree += agree;
              a.ev.n++;
              a.ev.held += held!.reduce((s, h) => s + Math.min(h - chunkAfter, seen), 0) / (held!.length * seen);
            }
          }
          a.n += input.length;
        });
      }
      if (win.length === W + 1) {
        ref.bytes = refCache.bytes();
        made.forEach((c, i) => {
          accs[i].bytes = c.bytes();
          accs[i].theoretical = c.theoreticalBytes?.() ?? null;
        });
      }
    } finally {
      refCache.dispose();
      for (const c of made) c.dispose();
    }
    options.onWindow?.(wi + 1, windows.length);
  });

  const result = (a: Acc, isRef = false): TeacherForcedResult => ({
    tokens: a.n,
    nll: a.nll / a.n,
    ppl: Math.exp(a.nll / a.n),
    kl: isRef ? 0 : a.kl / a.n,
    top1Agreement: isRef ? 1 : a.agree / a.n,
    bytes: a.bytes,
    theoreticalBytes: isRef ? a.bytes : a.theoretical,
    evicted:
      isRef || a.ev === null
        ? null
        : {
            tokens: a.ev.n,
            ppl: a.ev.n ? Math.exp(a.ev.nll / a.ev.n) : NaN,
            referencePpl: a.ev.n ? Math.exp(a.ev.refNll / a.ev.n) : NaN,
            kl: a.ev.n ? a.ev.kl / a.ev.n : NaN,
            top1Agreement: a.ev.n ? a.ev.agree / a.ev.n : NaN,
            heldShare: a.ev.n ? a.ev.held / a.ev.n : NaN,
          },
  });
  return { reference: result(ref, true), results: Object.fromEntries(names.map((n, i) => [n, result(accs[i])])) };
}

/** Perplexity of the model over `ids` with one cache, by the teacher-forced protocol above (lesson 3). */
export function perplexity(
  model: LlamaModel,
  ids: readonly number[],
  makeCache: CacheFactory,
  options: TeacherForcedOptions = {},
): TeacherForcedResult {
  return compareTeacherForced(model, ids, { cache: makeCache }, options).results.cache;
}

function argmaxRow(x: Float32Array, off: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (x[off + i] > x[off + best]) best = i;
  return best;
}

// KL(p || q) from log-probabilities of one row
function klRow(lp: Float32Array, lq: Float32Array, off: number, n: number): number {
  let kl = 0;
  for (let i = off; i < off + n; i++) kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
  return Math.max(0, kl);
}

// ---- greedy agreement

/** Greedy continuations with a cache against the float32 cache's (lesson 3). */
export interface GreedyAgreement {
  prompts: number;
  tokens: number;
  /** fraction of positions (all continuations) where the tokens are equal */
  positionAgreement: number;
  /** mean length of the identical prefix / continuation length */
  prefixAgreement: number;
  /** continuations identical from start to end */
  identical: number;
  /** decode tokens per second of the cache's run (mean over prompts) */
  decodeTokensPerSecond: number;
  /** decode tokens per second of the reference run */
  referenceTokensPerSecond: number;
}

/** Generate `maxTokens` greedy tokens per prompt, one prompt at a time, with the reference and with `makeCache`. */
export async function greedyAgreement(
  lm: LanguageModel,
  prompts: readonly (readonly number[])[],
  makeCache: CacheFactory,
  options: { maxTokens?: number; reference?: number[][] } = {},
): Promise<GreedyAgreement & { referenceTokens: number[][] }> {
  const maxTokens = options.maxTokens ?? 64;
  const params = { temperature: 0, maxTokens, ignoreEos: true };
  const refTokens: number[][] = [];
  const refTps: number[] = [];
  const tps: number[] = [];
  let same = 0;
  let prefix = 0;
  let identical = 0;
  let total = 0;
  for (let i = 0; i < prompts.length; i++) {
    let ref = options.reference?.[i];
    if (!ref) {
      const [o] = await generate(lm, [prompts[i]], params);
      ref = o.tokenIds;
      refTps.push(o.metrics.decodeTokensPerSecond);
    }
    refTokens.push(ref);
    const [o] = await generate(lm, [prompts[i]], params, { makeCache });
    tps.push(o.metrics.decodeTokensPerSecond);
    let k = 0;
    while (k < ref.length && o.tokenIds[k] === ref[k]) k++;
    prefix += k / ref.length;
    if (k === ref.length) identical++;
    for (let t = 0; t < ref.length; t++) if (o.tokenIds[t] === ref[t]) same++;
    total += ref.length;
  }
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  return {
    prompts: prompts.length,
    tokens: total,
    positionAgreement: same / total,
    prefixAgreement: prefix / prompts.length,
    identical,
    decodeTokensPerSecond: mean(tps),
    referenceTokensPerSecond: mean(refTps),
    referenceTokens: refTokens,
  };
}
