// Speculative decoding (lesson 4), after Leviathan et al. 2023 and Chen et al. 2023, written the
// way gpt-fast writes it: small named functions, the accept rule spelled out.
//
// One speculative step, for each sequence (row) of a batch:
//   1. draftTokens  - a cheap drafter proposes gamma tokens d_1..d_gamma, each with the draft
//                     distribution q_i it was sampled from (a draft model, or prompt lookup);
//   2. verify       - the target scores the last committed token plus all gamma drafts in ONE
//                     forward pass: gamma + 1 distributions p_1..p_{gamma+1};
//   3. acceptReject - accept d_i with probability min(1, p_i(d_i) / q_i(d_i)), left to right; at the
//                     first rejection resample from norm(max(0, p_i - q_i)) and stop; if all gamma
//                     are accepted, draw a bonus token from p_{gamma+1};
//   4. rollback     - both KV caches forget the rejected drafts.
// Every step emits between 1 and gamma + 1 tokens, distributed exactly as the target alone would
// sample them. Greedy decoding is the same rule with one-hot p and q.
//
// Cache rule (both models): a cache holds every committed token except the newest one, which
// has not been fed yet. Each model is fed "whatever of the sequence its cache lacks", so the
// first step is also the prefill, and no model needs a separate prefill call.
//
// Shape letters: B sequences, V vocabulary, gamma drafted tokens per sequence.

import type { KVCache } from '../kv/cache';
import type { LlamaModel } from '../model/llama';
import { argmax, isGreedy, logitsToLogprobs, logitsToProbs, sampleFromProbs, topKIndices, type Rng, type SampledToken, type SamplingParams, type TokenHistory } from '../generate/sampling';

// ---- types

/** One sequence being decoded: the prompt and the tokens committed so far (lesson 4). */
export interface SpecRow {
  prompt: readonly number[];
  output: number[];
}

/**
 * What a drafter proposes for one row (lesson 4): gamma tokens and, per token, the distribution
 * q_i [V] it was drawn from. `probs` null means a deterministic drafter (greedy draft model,
 * prompt lookup): q_i is one-hot at tokens[i].
 */
export interface DraftProposal {
  tokens: number[];
  probs: Float32Array[] | null;
}

/** The verdict of acceptReject on one row (lesson 4). */
export interface AcceptResult {
  /** n: how many drafted tokens were accepted (a prefix d_1..d_n) */
  accepted: number;
  /** the token after them: the resampled correction (n < gamma) or the bonus (n = gamma) */
  token: number;
  kind: 'resampled' | 'bonus';
  /** min(1, p_i(d_i) / q_i(d_i)) for every drafted position looked at (n, or n + 1 with a rejection) */
  acceptProbs: number[];
}

/** Sampling parameters the speculative rule needs (those of logitsToProbs). */
export type SpecSamplingParams = Pick<
  SamplingParams,
  'temperature' | 'topK' | 'topP' | 'minP' | 'repetitionPenalty' | 'presencePenalty' | 'frequencyPenalty'
>;

/** Options of acceptReject. */
export interface AcceptOptions {
  /** greedy: p and q are one-hot; no random numbers are drawn */
  greedy: boolean;
  /**
   * @internal For the distribution test only: on rejection sample from p instead of the
   * residual norm(max(0, p - q)). This biases the output towards tokens the draft likes.
   */
  unsafeSkipCorrection?: boolean;
}

// ---- checks

/** Throws unless gamma is an integer >= 1 (tokens drafted per step). */
export function checkGamma(gamma: number, what = 'gamma'): void {
  if (!Number.isInteger(gamma) || gamma < 1) {
    throw new Error(`${what} must be an integer >= 1 (tokens drafted per step), got ${String(gamma)}`);
  }
}

/**
 * Drafts a speculative step may take (lesson 4): `wanted` capped so that the step fits what is
 * left. A step emits up to gamma + 1 tokens, so gamma < `tokensLeft` (output tokens still wanted);
 * verify writes gamma tokens after the newest, so gamma <= `room` (positions left in the context);
 * in the engine the newest token and the drafts share the step's token `budget`. Never below 0.
 * Shared by SpeculativeDecoder and the engine's scheduler.
 */
export function capGamma(wanted: number, limits: { tokensLeft: number; room: number; budget?: number }): number {
  return Math.max(0, Math.min(wanted, limits.tokensLeft - 1, limits.room, (limits.budget ?? Infinity) - 1));
}

/** Throws unless the draft scores the same token ids as the target (same vocabulary size). */
export function checkDraftCompatible(target: Pick<LlamaModel, 'name' | 'config'>, draft: Pick<LlamaModel, 'name' | 'config'>): void {
  const vt = target.config.vocabSize;
  const vd = draft.config.vocabSize;
  if (vt !== vd) {
    throw new Error(
      `draft model '${draft.name}' has a vocabulary of ${vd} tokens, the target '${target.name}' ${vt}: ` +
        'speculative decoding compares p and q over the same token ids, so both models need the same tokenizer',
    );
  }
}

// ---- the forward pass speculative decoding drives

/**
 * A batch of rows and whatever runs them (lesson 4): the eager tfjs model over a KV cache
 * (`modelForward`), or the captured GPU step (lib/engine/pagedModel.ts). `lengths()` are the
 * tokens each row's cache holds; `forward(feed, logits)` appends feed[b] to row b and returns
 * the logits rows [V] of its last logits[b] tokens.
 */
export interface BatchForward {
  readonly vocabSize: number;
  lengths(): number[];
  forward(feed: readonly (readonly number[])[], logits: readonly number[]): Promise<Float32Array[][]>;
  /**
   * The same step when every row is greedy (sampling.ts's greedyFastPath): each logits row's
   * argmax and its logprob instead of the row, computed where the logits are (the captured GPU
   * step); absent when the rows must come back anyway (eager tfjs).
   */
  forwardGreedy?(feed: readonly (readonly number[])[], logits: readonly number[]): Promise<SampledToken[][]>;
  /**
   * Greedy decoding of `steps` tokens for each row with something to feed, in one go: feed[b]
   * first, then each step's argmax fed to the next without coming back (the captured step's
   * chained ids, one submit). Returns [B][steps] (rows with nothing to feed get []); the last
   * token is not fed.
   */
  greedyChain?(feed: readonly (readonly number[])[], steps: number): Promise<number[][]>;
  /**
   * greedyChain, then `target`'s verify step over verifyFeed[b] followed by the drafted tokens,
   * in one go (the drafts copied on the GPU, one readback for both): the drafted ids [B][steps]
   * and the target's picks per row [counts[b]]. null when `target` cannot take part (another
   * kind of model, or another device): then draft and verify apart.
   */
  greedyChainThenVerify?(
    feed: readonly (readonly number[])[],
    steps: number,
    target: BatchForward,
    verifyFeed: readonly (readonly number[])[],
    counts: readonly number[],
  ): Promise<{ drafted: number[][]; picks: SampledToken[][] } | null>;
}

/** A tfjs model and its KV cache as a BatchForward (left padding undone row by row). */
export function modelForward(model: LlamaModel, cache: KVCache): BatchForward {
  const V = model.config.vocabSize;
  return {
    vocabSize: V,
    lengths: () => cache.lengths(),
    async forward(feed, logits) {
      const n = Math.max(1, ...logits);
      const out = model.forward(feed, cache, { logits: n }); // [B, n, V]
      const data = (await out.data()) as Float32Array;
      out.dispose();
      // left padding: row b's last logits[b] positions are the last of its n slots
      return logits.map((m, b) => Array.from({ length: m }, (_, i) => data.subarray((b * n + n - m + i) * V, (b * n + n - m + i + 1) * V)));
    },
  };
}

// ---- small helpers

/** The token history of row `row` with the first `k` drafted tokens appended (for penalties). */
export function historyWith(row: SpecRow, drafted: readonly number[], k: number): TokenHistory {
  return { promptTokenIds: row.prompt, outputTokenIds: k === 0 ? row.output : [...row.output, ...drafted.slice(0, k)] };
}

/** The whole sequence of a row: prompt then output. */
export function sequenceOf(row: SpecRow): number[] {
  return [...row.prompt, ...row.output];
}

/** What a cache lacks of a row's sequence (see the cache rule above). */
function pendingTokens(row: SpecRow, cached: number): number[] {
  return sequenceOf(row).slice(cached);
}

// ---- 1. draft

/**
 * Draft `gammas[b]` tokens for each row b with a small draft model (lesson 4), one token per
 * forward pass for the whole batch: feed what the draft cache lacks, sample d_i from q_i, feed
 * d_i, and so on. The last drafted token is not fed (the next step feeds it if accepted).
 * Rows with gamma 0 get an empty proposal. Draws from rngs[b] only when sampling. `params` is
 * one set for every row, or one per row (the engine's requests each have their own).
 */
export async function draftTokens(
  draft: BatchForward,
  rows: readonly SpecRow[],
  gammas: readonly number[],
  params: SpecSamplingParams | readonly SpecSamplingParams[],
  rngs: readonly Rng[],
): Promise<DraftProposal[]> {
  const paramsOf = (b: number): SpecSamplingParams => (Array.isArray(params) ? (params as readonly SpecSamplingParams[])[b] : (params as SpecSamplingParams));
  const greedy = rows.map((_, b) => isGreedy(paramsOf(b)));
  const proposals: DraftProposal[] = rows.map((_, b) => ({ tokens: [], probs: greedy[b] ? null : [] }));
  const lengths = draft.lengths();
  let feed = rows.map((row, b) => (gammas[b] > 0 ? pendingTokens(row, lengths[b]) : []));
  const maxGamma = Math.max(0, ...gammas);
  // all greedy with one gamma: the drafts chained on the GPU, read back once
  if (draft.greedyChain && maxGamma > 0 && greedy.every(Boolean) && gammas.every((g) => g === 0 || g === maxGamma)) {
    const chained = await draft.greedyChain(feed, maxGamma); // [B][gamma]
    chained.forEach((tokens, b) => proposals[b].tokens.push(...tokens));
    return proposals;
  }
  for (let i = 0; i < maxGamma; i++) {
    const want = feed.map((f) => (f.length > 0 ? 1 : 0));
    // all greedy: the draft's argmax alone (picked on the GPU by a captured draft model)
    const picked = draft.forwardGreedy && greedy.every(Boolean) ? await draft.forwardGreedy(feed, want) : null;
    const logits = picked ? null : await draft.forward(feed, want); // per row [1][V]
    feed = rows.map((row, b) => {
      const prop = proposals[b];
      if (i >= gammas[b]) return [];
      let token: number;
      if (picked) {
        token = picked[b][0].token;
      } else if (greedy[b]) {
        token = argmax(logits![b][0]);
      } else {
        const row0 = logits![b][0]; // [V]
        const q = logitsToProbs(row0, paramsOf(b), historyWith(row, prop.tokens, i)); // [V]
        token = sampleFromProbs(q, rngs[b]);
        prop.probs!.push(q);
      }
      prop.tokens.push(token);
      return i + 1 < gammas[b] ? [token] : []; // the last draft is not fed
    });
  }
  return proposals;
}

/**
 * Draft and verify greedy rows in one go when the models can (two captured models on one GPU,
 * BatchForward.greedyChainThenVerify): the same proposals and target picks as draftTokens then
 * verifyGreedy, with no readback in between. null when they cannot (then call those two).
 */
export async function draftAndVerifyGreedy(
  draft: BatchForward,
  target: BatchForward,
  rows: readonly SpecRow[],
  gammas: readonly number[],
): Promise<{ proposals: DraftProposal[]; picks: SampledToken[][] } | null> {
  const gamma = Math.max(0, ...gammas);
  if (!draft.greedyChainThenVerify || gamma === 0 || !gammas.every((g) => g === 0 || g === gamma)) return null;
  const draftLens = draft.lengths();
  const targetLens = target.lengths();
  const feed = rows.map((row, b) => (gammas[b] > 0 ? pendingTokens(row, draftLens[b]) : []));
  const verifyFeed = rows.map((row, b) => pendingTokens(row, targetLens[b])); // a row with gamma 0 is a plain decode
  const counts = gammas.map((g) => g + 1);
  const r = await draft.greedyChainThenVerify(feed, gamma, target, verifyFeed, counts);
  if (!r) return null;
  return { proposals: r.drafted.map((tokens) => ({ tokens, probs: null })), picks: r.picks };
}

// ---- 2. verify

/**
 * Score every row's drafts with the target in one forward pass (lesson 4): feed what the target
 * cache lacks (at least the newest committed token) followed by the drafts, and return per row
 * the gamma_b + 1 logits rows [gamma_b + 1][V]: row i scores the token after d_i (i = 0: after the
 * committed sequence). Rows with no tokens to feed (finished) get [].
 */
export async function verify(target: BatchForward, rows: readonly SpecRow[], proposals: readonly (DraftProposal | null)[]): Promise<Float32Array[][]> {
  const { feed, counts } = verifyFeed(target, rows, proposals);
  return target.forward(feed, counts); // per row [gamma_b + 1][V]
}

/**
 * verify() for greedy rows on a model that picks tokens itself (BatchForward.forwardGreedy):
 * per row the gamma_b + 1 argmax tokens with their logprobs instead of the logits rows.
 */
export async function verifyGreedy(target: BatchForward, rows: readonly SpecRow[], proposals: readonly (DraftProposal | null)[]): Promise<SampledToken[][]> {
  if (!target.forwardGreedy) throw new Error('verifyGreedy: this model returns logits rows, not tokens (use verify)');
  const { feed, counts } = verifyFeed(target, rows, proposals);
  return target.forwardGreedy(feed, counts); // per row [gamma_b + 1]
}

// what the target cache lacks of each row, then its drafts; and how many logits rows each needs
function verifyFeed(target: BatchForward, rows: readonly SpecRow[], proposals: readonly (DraftProposal | null)[]) {
  const lengths = target.lengths();
  const feed = rows.map((row, b) => {
    const prop = proposals[b];
    return prop ? [...pendingTokens(row, lengths[b]), ...prop.tokens] : [];
  });
  return { feed, counts: proposals.map((p) => (p ? p.tokens.length + 1 : 0)) };
}

/**
 * The greedy accept rule on picked tokens (lesson 4): accept drafts while they equal the
 * target's argmax, then emit the argmax where they first differ (or the bonus after all).
 * The same verdict as acceptReject with one-hot p and q, without any [V] row.
 */
export function acceptGreedy(picks: readonly SampledToken[], drafted: readonly number[]): AcceptResult {
  if (picks.length !== drafted.length + 1) throw new Error(`acceptGreedy: ${drafted.length} drafts need ${drafted.length + 1} picks, got ${picks.length}`);
  let n = 0;
  while (n < drafted.length && picks[n].token === drafted[n]) n++;
  const acceptProbs = drafted.slice(0, Math.min(n + 1, drafted.length)).map((_, i) => (i < n ? 1 : 0));
  return { accepted: n, token: picks[n].token, kind: n === drafted.length ? 'bonus' : 'resampled', acceptProbs };
}

/** The target distributions p_1..p_{gamma+1} of one row from its verify logits (lesson 4). */
export function targetProbs(logits: readonly Float32Array[], row: SpecRow, drafted: readonly number[], params: SpecSamplingParams): Float32Array[] {
  return logits.map((l, i) => logitsToProbs(l, params, historyWith(row, drafted, i)));
}

// ---- 3. accept / reject

/**
 * The residual distribution norm(max(0, p - q)) (unnormalised: sampleFromProbs normalises), where
 * q is `q` or, for a deterministic drafter, one-hot at `drafted`. [V]
 */
export function residual(p: Float32Array, q: Float32Array | null, drafted: number): Float32Array {
  const out = new Float32Array(p.length); // [V]
  let total = 0;
  for (let v = 0; v < p.length; v++) {
    const qv = q ? q[v] : v === drafted ? 1 : 0;
    out[v] = Math.max(0, p[v] - qv);
    total += out[v];
  }
  // p == q up to rounding: a rejection had probability ~0; p itself is then the right answer
  return total > 0 ? out : Float32Array.from(p);
}

/**
 * The speculative accept rule for one row (lesson 4). `p` holds gamma + 1 target distributions,
 * `draft` the gamma drafted tokens with their q. Returns how many drafts are accepted and the
 * token that follows them. Pure: no tensors, so a batched engine calls it once per row.
 */
export function acceptReject(p: readonly Float32Array[], draft: DraftProposal, rng: Rng, options: AcceptOptions): AcceptResult {
  const gamma = draft.tokens.length;
  if (p.length !== gamma + 1) throw new Error(`acceptReject: ${gamma} drafted tokens need ${gamma + 1} target distributions, got ${p.length}`);
  const acceptProbs: number[] = [];
  for (let i = 0; i < gamma; i++) {
    const x = draft.tokens[i];
    const q = draft.probs ? draft.probs[i] : null;
    const px = p[i][x];
    const qx = q ? q[x] : 1; // q(x) > 0: x was drawn from q
    // accept x with probability min(1, p(x) / q(x)):
    //   where the target likes x at least as much as the draft did, always keep it;
    //   otherwise keep it with probability p(x) / q(x), so x ends up drawn with exactly
    //   q(x) * min(1, p(x)/q(x)) = min(p(x), q(x)).
    const a = Math.min(1, px / qx);
    acceptProbs.push(a);
    if (a >= 1 || (a > 0 && !options.greedy && rng.next() < a)) continue;
    // rejected: draw the replacement from norm(max(0, p - q)), the mass of p that acceptance
    // under-covers; min(p, q) + (1 - sum min(p, q)) * norm(max(0, p - q)) = p. Greedy: p is
    // one-hot at the target's argmax, so the residual is that one-hot too.
    let token: number;
    if (options.greedy) token = argmax(p[i]);
    else if (options.unsafeSkipCorrection) token = sampleFromProbs(p[i], rng); // wrong on purpose (tests)
    else token = sampleFromProbs(residual(p[i], q, x), rng);
    return { accepted: i, token, kind: 'resampled', acceptProbs };
  }
  // all gamma accepted: the target already scored the next position, a bonus token for free
  const token = options.greedy ? argmax(p[gamma]) : sampleFromProbs(p[gamma], rng);
  return { accepted: gamma, token, kind: 'bonus', acceptProbs };
}

// ---- 4. rollback

/**
 * A committed token as the output records it (lesson 4): its logprob and, when
 * `numTopLogprobs` > 0, the top alternatives, under the target's raw distribution (the verify
 * logits row [V] that scored it), as sampleToken reports them.
 */
export function scoredToken(logits: Float32Array, token: number, numTopLogprobs: number): SampledToken {
  const raw = logitsToLogprobs(logits); // [V] the target's raw distribution
  const picked: SampledToken = { token, logprob: raw[token] };
  if (numTopLogprobs > 0) picked.topLogprobs = Array.from(topKIndices(raw, numTopLogprobs), (id) => ({ token: id, logprob: raw[id] }));
  return picked;
}

/**
 * Make a cache hold exactly the committed tokens but the newest (the cache rule) (lesson 4):
 * keep min(cached, committed - 1) tokens per row. Drafts past the accepted prefix are forgotten;
 * a cache that is behind (the draft never fed its last draft) stays behind and catches up next
 * step. `committed[b]` = prompt + output length of row b; null leaves the row as it is.
 */
export function rollback(cache: KVCache, committed: readonly (number | null)[]): void {
  const lengths = cache.lengths();
  const keep = lengths.map((n, b) => (committed[b] === null ? n : Math.min(n, committed[b]! - 1)));
  if (keep.some((k, b) => k !== lengths[b])) cache.truncate(keep);
}
